#!/usr/bin/env python
"""The latency/quality frontier of students (issue 11; XtremeDistil, Mukherjee & Hassan Awadallah
2020, Table 15: a BiLSTM wins at the lowest latencies, transformers of three or more layers above).

For one command (``ner``: WikiANN, ``--langs``; ``classify``: IMDB) and the cpu preset, it

1. distils each student of ``--students`` into ``ROOT/COMMAND/NAME`` (``python -m xdistill``): the
   first trains the teacher (unless ``--teacher DIR`` gives one), the others reuse it (``--teacher
   ROOT/COMMAND/FIRST/teacher``) and the shared teacher-output cache (``--cache-dir ROOT/COMMAND/cache``:
   a feature set is labeled once); a student whose ``ROOT/COMMAND/NAME/report.json`` exists is not
   trained again (``--retrain`` to force; a finished run folder may be linked there);
2. exports each to ONNX fp32 and int8 with the parity check (``python -m xdistill export``);
3. times all of them and mBERT-base in one benchmark run (``python -m xdistill benchmark``: PyTorch
   fp32, ONNX Runtime fp32 and int8, batch sizes 1 and 32, sequence length 32, median of the timed
   repeats after warm-up, the same threads for every runtime);
4. writes ``ROOT/COMMAND/frontier.json``, ``frontier.md`` (one table: mean metric, percent of the
   teacher, parameters, compression against mBERT-base, batch latency per runtime and batch size,
   speedup against mBERT-base; training minutes and peak RSS of each run) and ``frontier.png``
   (metric against ONNX Runtime int8 batch-32 latency, the Pareto front marked).

Speeds are compared only within one run on one machine (the CPU model changes between sessions).

Usage: python scripts/benchmark_frontier.py ner --langs all [--data-dir ../shared/data] [--root runs/frontier]
       [--students NAME=OPTIONS ...] [--quick] [--retrain] [-- extra options for every run]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from xdistill.utils import atomic_write_json, atomic_write_text  # noqa: E402

#: the default students: name -> options of ``python -m xdistill`` (the cpu preset's BiLSTM first)
STUDENTS = {
    "bilstm-e50-h200": "--student bilstm --embedding-dim 50 --hidden-size 200",
    "bilstm-e32-h64": "--student bilstm --embedding-dim 32 --hidden-size 64",
    "transformer-l2-h128-a2": "--student transformer --student-shape l2-h128-a2",
    "transformer-l4-h128-a2": "--student transformer --student-shape l4-h128-a2",
    "transformer-l4-h192-a3": "--student transformer --student-shape l4-h192-a3",
}
#: runtime and batch size of the latency the front is drawn over
FRONT_RUNTIME, FRONT_BATCH = "onnx-int8", 32


def parse_students(items: list[str] | None) -> dict[str, str]:
    """``NAME=OPTIONS`` items -> ``{name: options}`` (the defaults when none are given).

    Raises:
        SystemExit: an item without ``=`` (argparse-style error).
    """
    if not items:
        return dict(STUDENTS)
    out = {}
    for item in items:
        name, sep, opts = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--students: expected NAME=OPTIONS (e.g. tiny='--student transformer "
                             f"--student-shape l2-h64-a2'), got {item!r}")
        out[name.strip()] = opts
    return out


def run(cmd: list[str]) -> None:
    """Run a command, echoing it; raises SystemExit with its status when it fails."""
    print("running:", " ".join(shlex.quote(c) for c in cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        raise SystemExit(f"failed with exit status {rc}: {' '.join(cmd)}")


def train(a: argparse.Namespace, students: dict[str, str], extra: list[str]) -> dict[str, Path]:
    """Distil each student (the first trains the teacher; the others reuse it and the cache); returns
    ``{name: run folder}``."""
    root = Path(a.root) / a.command
    what = ["--langs", a.langs] if a.command == "ner" else ["--task", a.task]
    runs, teacher = {}, (Path(a.teacher) if a.teacher else None)
    for name, opts in students.items():
        out = root / name
        runs[name] = out
        if (out / "report.json").is_file() and not a.retrain:
            print(f"{name}: {out / 'report.json'} exists; not trained again (--retrain to force)", flush=True)
        else:
            reuse = ["--teacher", str(teacher)] if teacher is not None else []
            run([sys.executable, "-m", "xdistill", a.command, *what, "--preset", a.preset, "--data-dir", a.data_dir,
                 "--output-dir", str(out), "--cache-dir", str(root / "cache"), *reuse, *shlex.split(opts), *extra])
        if teacher is None:
            teacher = out / "teacher"
        if not (out / "student" / "onnx" / "model.int8.onnx").is_file() or a.retrain:
            run([sys.executable, "-m", "xdistill", "export", "--model", str(out / "student"), "--quantize", "int8",
                 "--data-dir", a.data_dir])
    return runs


def benchmark(a: argparse.Namespace, runs: dict[str, Path]) -> dict:
    """One latency run over every student (and mBERT-base); returns its ``latency.json``."""
    out = Path(a.root) / a.command / "latency"
    cmd = [sys.executable, "-m", "xdistill", "benchmark", "--students", *[str(p / "student") for p in runs.values()],
           "--no-teachers", "--output-dir", str(out)]
    if a.quick:
        cmd.append("--quick")
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    run(cmd)
    return json.loads((out / "latency.json").read_text(encoding="utf-8"))


def frontier_table(runs: dict[str, Path], latency: dict) -> pd.DataFrame:
    """One row per student: mean metric, percent of the teacher, size, training cost and latency."""
    rows = pd.DataFrame(latency["rows"])
    table = []
    for name, out in runs.items():
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        metric, mean = report["metric"], report["mean"]
        path = str((out / "student").resolve())
        mine = rows[(rows["role"] == "student") & (rows["path"].map(lambda x: str(Path(x).resolve())) == path)]
        row = {"student": name, "summary": report["student"].get("summary", ""),
               metric: mean[f"student_{metric}"], "teacher": mean[f"teacher_{metric}"],
               "percent_of_teacher": 100 * (mean["student_to_teacher"] or 0),
               "parameters_m": report["student"]["parameters"] / 1e6,
               "compression_vs_mbert": report["student"].get("compression_vs_reference"),
               "train_minutes": report["timing"]["total_seconds"] / 60, "peak_rss_mib": report["timing"]["peak_rss_mib"]}
        for _, r in mine.iterrows():
            key = f"{r['runtime']}_b{int(r['batch_size'])}"
            row[f"{key}_ms"] = r["median_ms"]
            if "speedup_vs_reference" in r and pd.notna(r["speedup_vs_reference"]):
                row[f"{key}_speedup"] = r["speedup_vs_reference"]
        table.append(row)
    return pd.DataFrame(table).set_index("student")


def pareto(df: pd.DataFrame, metric: str, latency: str) -> list[str]:
    """The students no other student beats on both: higher metric and lower latency."""
    front = []
    for name, r in df.iterrows():
        dominated = ((df[metric] >= r[metric]) & (df[latency] <= r[latency])
                     & ((df[metric] > r[metric]) | (df[latency] < r[latency]))).any()
        if not dominated:
            front.append(name)
    return front


def plot(df: pd.DataFrame, metric: str, latency: str, front: list[str], path: Path, title: str) -> None:
    """Metric against latency, one point per student, the Pareto front joined."""
    import matplotlib  # deferred: plotting is optional and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: see above

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter(df[latency], df[metric], color="tab:blue")
    for name, r in df.iterrows():
        ax.annotate(name, (r[latency], r[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    f = df.loc[front].sort_values(latency)
    ax.plot(f[latency], f[metric], color="tab:red", marker="o", label="Pareto front")
    ax.axhline(df["teacher"].iloc[0], color="gray", linestyle="--", label="teacher")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 2, 3, 4 ms rather than 2x10^0
    ax.xaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel(f"batch latency, {FRONT_RUNTIME}, batch {FRONT_BATCH} (ms, log scale)")
    ax.set_ylabel(f"mean {metric}")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["ner", "classify"])
    p.add_argument("--langs", default="all", help="ner: languages (default all)")
    p.add_argument("--task", default="imdb", help="classify: the task (default imdb)")
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR", "../shared/data"))
    p.add_argument("--root", default="runs/frontier")
    p.add_argument("--preset", default="cpu", help="preset of every run (default cpu; smoke for a quick check)")
    p.add_argument("--students", nargs="+", default=None, metavar="NAME=OPTIONS")
    p.add_argument("--teacher", default=None, help="a fine-tuned teacher folder every student reuses (default: the "
                   "first student's run trains it)")
    p.add_argument("--threads", type=int, default=0, help="benchmark threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="fewer timed repeats")
    p.add_argument("--retrain", action="store_true", help="train and export again even where results exist")
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    runs = train(a, parse_students(a.students), extra)
    latency = benchmark(a, runs)
    df = frontier_table(runs, latency)
    metric = json.loads((next(iter(runs.values())) / "report.json").read_text())["metric"]
    lat = f"{FRONT_RUNTIME}_b{FRONT_BATCH}_ms"
    front = pareto(df, metric, lat) if lat in df.columns else []
    root = Path(a.root) / a.command
    machine = latency.get("machine", {})
    settings = latency.get("settings", {})
    result = {"command": a.command, "machine": machine, "settings": settings, "front_latency": lat, "pareto": front,
              "students": df.reset_index().to_dict(orient="records")}
    atomic_write_json(root / "frontier.json", result)
    head = (f"Frontier ({a.command}, {a.preset} preset) on {machine.get('cpu', '?')}, {settings.get('threads')} threads; "
            f"latency: median of {settings.get('repeats')} timed calls after {settings.get('warmup')} warm-up calls, "
            f"sequence length {settings.get('sequence_length')}; speedup against mBERT-base in the same runtime and "
            "batch size, measured in the same run. Pareto front (higher metric, lower "
            f"{FRONT_RUNTIME} batch-{FRONT_BATCH} latency): {', '.join(front) or '-'}.")
    atomic_write_text(root / "frontier.md", head + "\n\n" + df.to_markdown(floatfmt=".2f") + "\n")
    if front:
        plot(df, metric, lat, front, root / "frontier.png", f"{a.command}: students of one teacher")
    print(head)
    print(df.to_markdown(floatfmt=".2f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
