#!/usr/bin/env python
"""Does generated transfer text pay? (issue 13; generation-distillation, Melas-Kyriazi et al. 2019).

Runs ``python -m xdistill COMMAND --preset cpu --augment generate --transfer unlabeled,generated,both``
(one student per transfer set, one report) into ``ROOT/COMMAND/generate`` (``--teacher-run DIR`` reuses
a finished run's ``teacher/``; its training minutes are added to the total from that run's report),
then writes ``ROOT/COMMAND/generation.md`` and ``.json``:

- the metric of each student, mean over groups, and ``both - unlabeled``;
- NER: the same for the languages with 100 labeled train sentences (:data:`LOW_RESOURCE`) and per
  language, with how many sentences of real transfer text each had and how many generated ones were kept;
- what the teacher predicts on each transfer set (class balance; NER: entity rates);
- generation's share of the run time, total minutes and peak RSS.

Usage: python scripts/benchmark_generation.py ner [--data-dir ../shared/data] [--root runs/generation]
       [--teacher-run DIR] [-- extra options of the run]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from xdistill.utils import atomic_write_json, atomic_write_text, split_passthrough  # noqa: E402

#: WikiANN languages with 100 train sentences (the issue's low-resource goal)
LOW_RESOURCE = ("gu", "jv", "my", "pa", "qu", "yo")
SETS = ("unlabeled", "generated", "both")


def run(cmd: list[str]) -> None:
    """Run a command, echoing it; exit with its status when it fails."""
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    if rc:
        sys.exit(rc)


def per_group(report: dict) -> pd.DataFrame:
    """Per group: each student's metric, ``both - unlabeled``, real transfer sentences, generated kept."""
    k = report["metric"]
    first = report["student"]["transfer"]
    cols = {s: f"student_{k}" if s == first else f"student_{s}_{k}" for s in SETS}
    rows = {}
    gen = report["generation"]["per_group"]
    for g, scores in report["groups"].items():
        row = {s: scores[c] for s, c in cols.items()}
        row["both - unlabeled"] = row["both"] - row["unlabeled"]
        row["teacher"] = scores[f"teacher_{k}"]
        row["real transfer"] = report["data"]["per_group"][g].get("transfer", 0)
        row["generated kept"] = gen.get(g, {}).get("kept", 0)
        rows[g] = row
    return pd.DataFrame(rows).T


def summarise(report: dict, teacher_minutes: float) -> tuple[dict, str]:
    """The benchmark's JSON summary and its Markdown."""
    k = report["metric"]
    df = per_group(report)
    tm = report["timing"]
    gen_s = tm["seconds"].get("generation", 0.0)
    total = tm["total_seconds"] / 60 + teacher_minutes
    means = {"all": df.mean(numeric_only=True).to_dict()}
    low = [g for g in LOW_RESOURCE if g in df.index]
    if low and len(df) > 1:
        means["low_resource"] = df.loc[low].mean(numeric_only=True).to_dict()
    g = report["generation"]
    summary = {"metric": k, "means": means, "groups": df.to_dict("index"), "profile": report.get("transfer_profile"),
               "generation": {x: g[x] for x in ("generator", "train_texts", "sampled", "kept", "removed", "perplexity",
                                                "distinct", "seconds_training", "seconds_sampling", "seconds_filtering")},
               "generation_minutes": gen_s / 60, "generation_share": gen_s / 60 / total, "minutes": total,
               "teacher_minutes_added": teacher_minutes, "peak_rss_mib": tm["peak_rss_mib"], "command": report["command"]}
    prof = pd.DataFrame({s: {x: v for x, v in p.items() if x != "labels"} | {f"{lab} %": v for lab, v in p["labels"].items()}
                         for s, p in (report.get("transfer_profile") or {}).items()}).T
    lines = [f"# Generated transfer text: {report['task']} (cpu preset)", "", f"Command: `{report['command']}`", "",
             "## Mean " + k, "", pd.DataFrame(means).T[list(SETS) + ["both - unlabeled", "teacher"]].to_markdown(floatfmt=".2f"), ""]
    if low and len(df) > 1:
        lines += ["## Languages with 100 train sentences", "", df.loc[low].to_markdown(floatfmt=".2f"), ""]
    lines += ["## The teacher's predictions on each transfer set", "", prof.to_markdown(floatfmt=".2f"), "",
              f"Generation: {g['sampled']} sampled, {g['kept']} kept; generator perplexity on its samples "
              f"{g['perplexity']['samples']:.1f}, on held-out real text {g['perplexity']['held_out']:.1f}. "
              f"Generation {gen_s / 60:.1f} min of {total:.1f} min ({100 * gen_s / 60 / total:.0f}%"
              + (f"; the reused teacher's {teacher_minutes:.1f} min included" if teacher_minutes else "")
              + f"); peak RSS {tm['peak_rss_mib']:.0f} MiB.", "", "## Per group", "", df.to_markdown(floatfmt=".2f"), ""]
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv, extra = split_passthrough(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("ner", "classify"))
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data")))
    p.add_argument("--root", default="runs/generation")
    p.add_argument("--teacher-run", default=None, help="a finished run folder whose teacher/ is reused")
    a = p.parse_args(argv)
    root = Path(a.root) / a.command
    out = root / "generate"
    teacher, teacher_minutes = [], 0.0
    if a.teacher_run:
        teacher = ["--teacher", str(Path(a.teacher_run) / "teacher")]
        prev = json.loads((Path(a.teacher_run) / "report.json").read_text(encoding="utf-8"))
        teacher_minutes = (prev["phases"]["fine_tuning"]["minutes"] if prev.get("phases") else
                           prev["timing"]["seconds"].get("teacher", 0.0) / 60)
    run([sys.executable, "-m", "xdistill", a.command, "--preset", "cpu", "--data-dir", a.data_dir, "--output-dir", str(out),
         "--augment", "generate", "--transfer", ",".join(SETS), *teacher, *extra])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary, md = summarise(report, teacher_minutes)
    atomic_write_json(root / "generation.json", summary)
    atomic_write_text(root / "generation.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
