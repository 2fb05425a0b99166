#!/usr/bin/env python
"""Benchmark: a full distillation run on CPU with the cpu preset (goals: 60 minutes, peak RSS < 8 GiB on 2 cores;
issue 10: NER teacher mean F1 >= 64, student >= 97% of it and >= 5 F1 above the stronger no-distillation
baseline; IMDB teacher accuracy >= 85, student within 1.5 points).

``ner``: ``python -m xdistill ner --langs all --preset cpu --data-dir DATA``;
``classify``: ``python -m xdistill classify --task imdb --preset cpu --data-dir DATA``
(extra arguments are passed through). Reads ``OUTPUT/report.json`` and prints
the machine, threads, per-phase minutes, peak RSS, padding fraction, the mean
scores and whether each goal of the issue is met. Writes ``OUTPUT/benchmark.json``.

Usage: python scripts/benchmark_cpu.py {ner,classify} [--data-dir ../shared/data] [--output-dir DIR] [-- extra args]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

GOALS = {"minutes": 60.0, "peak_rss_mib": 8 * 1024, "padding_fraction": 0.15}
# per command: the least gain of the distilled student over the stronger no-distillation student, in metric points
GAIN = {"ner": 5.0, "classify": 5.0}
# per command (issue 10): the teacher's least mean score; the student's least share of it (ner) or most
# points below it (classify)
TEACHER = {"ner": 64.0, "classify": 85.0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["ner", "classify"])
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR", "../shared/data"))
    p.add_argument("--output-dir", default=None, help="default runs/ner-cpu or runs/classify-cpu")
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    out = a.output_dir or f"runs/{a.command}-cpu"
    what = ["--langs", "all"] if a.command == "ner" else ["--task", "imdb"]
    cmd = [sys.executable, "-m", "xdistill", a.command, *what, "--preset", "cpu", "--data-dir", a.data_dir,
           "--output-dir", out, *extra]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    if rc != 0:
        print(f"xdistill ner failed with exit status {rc}", file=sys.stderr)
        return rc
    r = json.loads((Path(out) / "report.json").read_text())
    import torch

    from xdistill.utils import cpu_model

    tm, m = r["timing"], r["mean"]
    result = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": tm["threads"],
                    "python": platform.python_version(), "torch": torch.__version__},
        "command": " ".join(cmd),
        "wall_minutes": wall / 60,
        "phase_minutes": {k: v / 60 for k, v in tm["seconds"].items()},
        "peak_rss_mib": tm["peak_rss_mib"],
        "teacher_tokens_per_second": tm["teacher_tokens_per_second"],
        "padding_fraction": tm["padding_fraction"],
        "groups": len(r["groups"]),
        "metric": r["metric"],
        "mean": m,
        "models": [{k: x.get(k) for k in ("model", "parameters", "compression_vs_reference", r["metric"])} for x in r["models"]],
        "teacher": r["teacher"]["description"],
        "student_parameters": r["student"]["parameters"],
        "reference": r["reference"]["name"],
        "compression_vs_reference": r["student"]["compression_vs_reference"],
        "generation": {k: v for k, v in (r.get("generation") or {}).items() if k != "samples"} or None,
    }
    result["goals"] = {
        "minutes <= 60": wall / 60 <= GOALS["minutes"],
        "peak RSS < 8 GiB": tm["peak_rss_mib"] < GOALS["peak_rss_mib"],
        f"distilled - stronger baseline >= {GAIN[a.command]:g} points": m["gain_over_stronger_baseline"] >= GAIN[a.command],
        "padding fraction < 15%": (tm["padding_fraction"] or 0) < GOALS["padding_fraction"],
        f"teacher >= {TEACHER[a.command]:g}": m[f"teacher_{r['metric']}"] >= TEACHER[a.command],
    }
    if a.command == "ner":
        result["goals"]["student/teacher >= 0.97"] = (m["student_to_teacher"] or 0) >= 0.97
    else:
        result["goals"]["student within 1.5 points of the teacher"] = (
            m[f"teacher_{r['metric']}"] - m[f"student_{r['metric']}"] <= 1.5)
    result["phases"] = r.get("phases")
    Path(out, "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
