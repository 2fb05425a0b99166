#!/usr/bin/env python
"""Scaling of a NER distillation run with the transfer set and the number of processes (issue 14).

For each transfer size (``--sizes``: transfer sentences per language, WikiANN train sentences
without their labels; ``-1`` for all of them; a suffix ``xK`` repeats each language's transfer
text K times in shuffled copies, ``--transfer-repeat K``, flagged in the tables) and each process
count (``--processes``) it runs ``python -m xdistill ner``
(one process, ``--threads 1``) or ``torchrun --nproc_per_node P -m xdistill ner`` (P processes of
one thread each, gloo) into ``ROOT/sSIZE-pP``, every run with the same teacher: the first run trains
it (or ``--teacher-run DIR`` names a finished run whose ``teacher/`` is copied), the others reuse it
(the cpu preset's PPMI teacher then reads ``--mlm-text labeled,train``, not the transfer text, which
changes with the size: see :func:`same_teacher_text`).
With ``--compare-teacher`` one more run with the largest process count trains its own teacher
(``transformers.Trainer``'s DDP) into ``ROOT/teacher-pP``. By default every run has the preset's
``--batch-size`` (the global batch: P processes split it); ``--scale-batch`` gives a P-process run P
times that batch instead, the same rows per process and step (weak scaling, as accelerate's and the
Trainer's per-device batch size do), and P times the preset's ``--lr`` (the linear scaling rule, Goyal
et al. 2017, arXiv 1706.02677: 1/P of the optimizer steps per epoch, each P times as large).

It writes ``ROOT/scale.json`` and ``ROOT/scale.md``: per run the transfer rows and tokens, teacher
labeling seconds and tokens/s, distillation seconds, epochs and seconds per epoch, cache bytes per
token, peak RSS per process, mean F1 of teacher, student and baselines; per size the speedup of
P processes over one (labeling tokens/s, distillation seconds per epoch) and the F1 difference; and
per process count the growth against the smallest set (rows, labeling and epoch seconds per row,
peak RSS: linear time means a per-row ratio near 1, flat memory an RSS ratio near 1).
Compare speeds only within one invocation on a quiet machine.

Usage: python scripts/benchmark_scale.py --root runs/scale --data-dir ../shared/data --langs LANGS
       [--sizes 850,6900,16500x2] [--processes 1,2] [--teacher-run DIR] [--compare-teacher] [--scale-batch]
       [-- extra ner options]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pandas as pd
import torch
from transformers import BertConfig, BertForTokenClassification

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from xdistill.config import TeacherArguments  # noqa: E402
from xdistill.config.presets import PRESETS  # noqa: E402
from xdistill.utils import atomic_write_json, atomic_write_text, cpu_model, split_passthrough  # noqa: E402


def same_teacher_text(preset: dict) -> list[str]:
    """Options that keep one teacher for every transfer size: a preset whose teacher reads the transfer
    text before fine-tuning (``--teacher-embeddings ppmi`` or ``--teacher-mlm`` over ``--mlm-text
    transfer,...``, the cpu preset's) would train a new teacher per size, so its text leaves the
    transfer set out (``--mlm-text`` of the rest; options after ``--`` still override it)."""
    names = {f.name for f in fields(TeacherArguments)}
    t = TeacherArguments(**{k: v for k, v in preset.items() if k in names})
    if not t.reads_text or "transfer" not in t.mlm_sources:
        return []
    rest = [x for x in t.mlm_sources if x != "transfer"]
    if not rest:
        raise SystemExit(f"the preset's teacher reads only the transfer text (--mlm-text {t.mlm_text}); "
                         "give --mlm-text after -- to train one teacher for every size")
    print(f"the teacher's --mlm-text leaves out the transfer set: --mlm-text {','.join(rest)} (one teacher for "
          "every size)", flush=True)
    return ["--mlm-text", ",".join(rest)]


def launch(processes: int, args: list[str], port: int) -> list[str]:
    """The command line of a run with ``processes`` processes of one thread each."""
    if processes == 1:
        return [sys.executable, "-m", "xdistill", "ner", *args, "--threads", "1"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(port), "-m", "xdistill", "ner", *args]


def run(cmd: list[str]) -> float:
    """Run a command (one thread per process), echoing it; exit with its status when it fails. Returns seconds."""
    print("+", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if rc:
        sys.exit(rc)
    return time.perf_counter() - t0


def transfer_cache(out: Path) -> dict:
    """The transfer cache's rows, real tokens and feature-file bytes per real token."""
    for d in (out / "cache").glob("transfer-*"):
        if ".tmp" in d.name or not (d / "meta.json").is_file():
            continue
        stats = json.loads((d / "meta.json").read_text())["stats"]
        size = sum(p.stat().st_size for p in d.glob("*.npy") if p.name != "offsets.npy")
        return {"transfer_rows": stats["rows"], "cache_bytes_per_token": size / max(stats["real_tokens"], 1)}
    return {"transfer_rows": None, "cache_bytes_per_token": None}


def parse_size(text: str) -> tuple[int, int]:
    """``"16500x2"`` -> ``(16500, 2)``: transfer sentences per language and copies of the transfer text.

    Raises:
        SystemExit: not ``N`` or ``NxK`` with integers, K at least 1.
    """
    n, _, k = text.partition("x")
    try:
        size, repeat = int(n), int(k or 1)
    except ValueError:
        sys.exit(f"--sizes: expected N or NxK (integers), got {text!r}")
    if repeat < 1:
        sys.exit(f"--sizes: the repeat K in {text!r} must be at least 1")
    return size, repeat


def growth(df: pd.DataFrame) -> pd.DataFrame:
    """Per process count, each size against the smallest: rows ratio, labeling and epoch seconds per row
    ratio (1 = linear), peak RSS ratio (1 = flat)."""
    out = []
    runs = df[df.run.str.startswith("s")]
    for procs, g in runs.groupby("processes"):
        g = g.sort_values("transfer_rows")
        b = g.iloc[0]
        for _, x in g.iloc[1:].iterrows():
            out.append({"processes": procs, "run": x.run, "against": b.run, "rows_ratio": x.transfer_rows / b.transfer_rows,
                        "labeling_s_per_row_ratio": (x.labeling_s / x.transfer_rows) / (b.labeling_s / b.transfer_rows),
                        "epoch_s_per_row_ratio": (x.s_per_epoch / x.transfer_rows) / (b.s_per_epoch / b.transfer_rows),
                        "peak_rss_ratio": x.peak_rss_mib / b.peak_rss_mib})
    return pd.DataFrame(out)


def row(name: str, size: int, repeat: int, processes: int, out: Path, wall: float) -> dict:
    """What one run measured (from its report.json and cache); ``repeat`` copies of the transfer text."""
    r = json.loads((out / "report.json").read_text())
    t, m = r["timing"], r["mean"]
    epochs = sum(s["epochs"] for steps in r.get("schedules", {}).values() for s in steps) if r.get("schedules") \
        else None
    seconds = t["seconds"]
    return {"run": name, "transfer_per_lang": size, "transfer_repeat": repeat, "processes": t.get("world_size", processes),
            "batch_size": r["settings"]["distill"]["batch_size"], "lr": r["settings"]["distill"]["lr"],
            **transfer_cache(out), "transfer_tokens": t.get("transfer_tokens"),
            "teacher_s": seconds.get("teacher"), "labeling_s": seconds.get("teacher_labeling"),
            "labeling_tokens_per_s": t.get("teacher_tokens_per_second"), "labeling_cached": t.get("teacher_labeling_cached"),
            "distillation_s": seconds.get("distillation"), "epochs": epochs,
            "s_per_epoch": seconds.get("distillation") / epochs if epochs else None,
            "peak_rss_mib": t["peak_rss_mib"],
            "peak_rss_mib_per_process": t.get("peak_rss_mib_per_process"), "minutes": wall / 60,
            **{k: m.get(f"{k}_f1") for k in ("teacher", "student", "baseline", "baseline_svd")}}


def speedups(df: pd.DataFrame) -> pd.DataFrame:
    """Per size and process count: labeling and distillation throughput over one process's, F1 difference."""
    rows = []
    for (size, _), g in df[df.run.str.startswith("s")].groupby(["transfer_per_lang", "transfer_repeat"]):
        base = g[g.processes == 1]
        if base.empty:
            continue
        b = base.iloc[0]
        for _, x in g[g.processes > 1].iterrows():
            rows.append({"run": x.run, "transfer_per_lang": size, "processes": x.processes,
                         "batch_size": f"{x.get('batch_size')} vs {b.get('batch_size')}",
                         "labeling_speedup": x.labeling_tokens_per_s / b.labeling_tokens_per_s,
                         "distillation_speedup": b.s_per_epoch / x.s_per_epoch,
                         "student_f1_difference": x.student - b.student,
                         "baseline_f1_difference": x.baseline - b.baseline})
    return pd.DataFrame(rows)


#: one process's share of :func:`parallel_ceiling`: wait for the common start time, then time 1,500
#: single-thread 512 x 512 matrix products (about 2 s on one core)
CEILING_WORK = ("import sys, time, torch; torch.set_num_threads(1); a = torch.randn(512, 512); [a @ a for _ in range(20)]; "
                "time.sleep(max(0.0, float(sys.argv[1]) - time.time())); t = time.perf_counter(); "
                "[a @ a for _ in range(1500)]; print(time.perf_counter() - t)")


def parallel_ceiling(processes: int) -> float:
    """What this machine gives ``processes`` compute-bound processes of one thread at once: their total
    throughput over one process's alone (``processes`` on independent cores; less where the cores
    share execution units, e.g. hyperthreads of one core, or a host busy with other machines). The
    same workload for every process, started together: a reference for the speedups of the runs."""
    def slowest(n: int) -> float:
        start = time.time() + 8.0  # after every process has imported torch
        procs = [subprocess.Popen([sys.executable, "-c", CEILING_WORK, str(start)], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}) for _ in range(n)]
        return max(float(p.communicate()[0]) for p in procs)
    alone = slowest(1)
    return processes * alone / slowest(processes)


#: the paper's transfer set (Mukherjee & Hassan Awadallah 2020, sec. 5): 7.2 million sentences labeled by mBERT-base
PAPER_SENTENCES = 7_200_000


def paper_estimate(tokens_per_sentence: float, labels: int = 7, repeats: int = 5) -> dict:
    """The paper's scale on paper: an mBERT-base-shaped teacher (12 layers, hidden 768, 119,547 ids; random
    weights: speed does not depend on them) timed here on batches of ``tokens_per_sentence`` tokens, one and
    all cores; the hours to label 7.2 million sentences and the cache's size per ``--cache-hidden`` choice."""
    model = BertForTokenClassification(BertConfig(vocab_size=119547, num_labels=labels)).eval()
    t = max(int(round(tokens_per_sentence)), 2)
    ids = torch.randint(1000, 119000, (64, t))
    out = {"tokens_per_sentence": tokens_per_sentence, "sentences": PAPER_SENTENCES, "batch": [64, t]}
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        with torch.no_grad():
            model(input_ids=ids, output_hidden_states=True)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(input_ids=ids, output_hidden_states=True)
                times.append(time.perf_counter() - t0)
        tps = ids.numel() / sorted(times)[len(times) // 2]
        out[f"tokens_per_second_{threads}_threads"] = tps
        out[f"hours_{threads}_threads"] = PAPER_SENTENCES * tokens_per_sentence / tps / 3600
    tokens = PAPER_SENTENCES * tokens_per_sentence
    for name, per_token in {"fp16": 768 * 2, "int8": 768 + 2, "pca:256": 256 * 2}.items():
        out[f"cache_gb_{name}"] = tokens * (per_token + 2 * labels) / 1e9
    return out


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True)
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR"))
    p.add_argument("--langs", default="all")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--sizes", default="1200", help="transfer sentences per language, comma-separated")
    p.add_argument("--processes", default="1,2")
    p.add_argument("--teacher-run", default=None)
    p.add_argument("--compare-teacher", action="store_true")
    p.add_argument("--port", type=int, default=29611)
    p.add_argument("--scale-batch", action="store_true", help="P processes get P times the preset's --batch-size and --lr")
    a = p.parse_args(argv)
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    procs = [int(s) for s in a.processes.split(",")]
    preset = PRESETS[a.preset]["ner"]
    common = ["--preset", a.preset, "--langs", a.langs, *(["--data-dir", a.data_dir] if a.data_dir else []),
              *same_teacher_text(preset), *extra]
    teacher = Path(a.teacher_run) / "teacher" if a.teacher_run else None
    top = max(procs)
    ceiling_before = parallel_ceiling(top) if top > 1 else None
    rows = []
    for size, repeat in sizes:
        for n in procs:
            out = root / f"s{size}{f'x{repeat}' if repeat > 1 else ''}-p{n}"
            if teacher is not None and not (out / "teacher").exists():
                out.mkdir(parents=True, exist_ok=True)
                shutil.copytree(teacher, out / "teacher")
            batch = ["--batch-size", str(n * preset["batch_size"]), "--lr", str(n * preset["lr"])] if a.scale_batch else []
            wall = run(launch(n, [*common, "--transfer-per-lang", str(size), "--transfer-repeat", str(repeat),
                                  *batch, "--output-dir", str(out)], a.port))
            rows.append(row(out.name, size, repeat, n, out, wall))
            teacher = teacher or out / "teacher"
    if a.compare_teacher:
        n = max(procs)
        out = root / f"teacher-p{n}"
        wall = run(launch(n, [*common, "--transfer-per-lang", str(sizes[0][0]), "--transfer-repeat", str(sizes[0][1]),
                              "--output-dir", str(out)], a.port))
        rows.append(row(out.name, *sizes[0], n, out, wall))
    ceiling = {"processes": top, "before": ceiling_before, "after": parallel_ceiling(top)} if top > 1 else None
    df = pd.DataFrame(rows)
    sp = speedups(df)
    gr = growth(df)
    first = df.iloc[0]
    paper = paper_estimate(first.transfer_tokens / first.transfer_rows)
    info = {"machine": cpu_model(), "cpu_count": os.cpu_count(), "threads_per_process": 1, "langs": a.langs,
            "preset": a.preset, "extra": extra, "runs": rows, "speedups": sp.to_dict("records"), "growth": gr.to_dict("records"),
            "paper_estimate": paper, "parallel_ceiling": ceiling}
    atomic_write_json(root / "scale.json", info)
    md = [f"# Scaling with the transfer set and processes ({a.preset} preset, --langs {a.langs})", "",
          f"Machine: {info['machine']}, {info['cpu_count']} cores, one thread per process. Extra options: "
          f"{' '.join(extra) or 'none'}.", "", df.round(3).to_markdown(index=False), ""]
    if not sp.empty:
        md += ["## Speedup over one process", "", sp.round(3).to_markdown(index=False), ""]
    if ceiling:
        md += [f"The machine's ceiling: {top} compute-bound processes of one thread at once give "
               f"{ceiling['before']:.2f}x (before the runs) and {ceiling['after']:.2f}x (after) the throughput of one "
               "alone (the same matrix products in each): what the cores give compute-bound work at once, which moves "
               "with the host's load; a reference for the speedups above, measured apart from them.", ""]
    if not gr.empty:
        md += ["## Growth with the transfer set (against the smallest, per process count)", "",
               "Ratios of seconds per row (1 = linear time) and of peak RSS (1 = flat memory). Runs with "
               "transfer_repeat > 1 use shuffled copies of the same text.", "", gr.round(3).to_markdown(index=False), ""]
    md += ["## The paper's scale, estimated", "",
           f"An mBERT-base-shaped teacher labels {paper['tokens_per_second_1_threads']:.0f} tokens/s on one core of this "
           f"machine ({paper['batch'][0]} sentences of {paper['batch'][1]} tokens, median of 5): 7.2 million sentences "
           f"of {paper['tokens_per_sentence']:.1f} tokens take {paper['hours_1_threads']:.0f} hours on one core"
           + "".join(f", {paper[f'hours_{n}_threads']:.0f} hours with {n} threads" for n in [os.cpu_count()]
                     if f"hours_{n}_threads" in paper and n != 1)
           + ". The cache at mBERT width (hidden states of one layer and the logits): "
           + ", ".join(f"{k.removeprefix('cache_gb_')} {v:.0f} GB" for k, v in paper.items() if k.startswith("cache_gb_"))
           + ". An estimate from CPU throughput; no GPU was measured.", ""]
    atomic_write_text(root / "scale.md", "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
