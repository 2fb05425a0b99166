#!/usr/bin/env python
"""Benchmark: the full NER distillation on CPU (issue: 60 minutes, peak RSS < 8 GiB on 2 cores).

Runs ``python -m xdistill ner --langs all --preset cpu --data-dir DATA`` (extra
arguments are passed through), then reads ``OUTPUT/report.json`` and prints the
machine, threads, per-phase minutes, peak RSS, padding fraction, mean F1s and
whether each goal is met. Writes ``OUTPUT/benchmark.json``.

Usage: python scripts/benchmark_ner_cpu.py [--data-dir ../shared/data] [--output-dir runs/ner-cpu] [-- extra ner args]
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

GOALS = {"minutes": 60.0, "peak_rss_mib": 8 * 1024, "distillation_gain": 3.0, "student_to_teacher": 0.95,
         "padding_fraction": 0.15}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("XDISTILL_DATA_DIR", "../shared/data"))
    p.add_argument("--output-dir", default="runs/ner-cpu")
    p.add_argument("--langs", default="all")
    a, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    cmd = [sys.executable, "-m", "xdistill", "ner", "--langs", a.langs, "--preset", "cpu", "--data-dir", a.data_dir,
           "--output-dir", a.output_dir, *extra]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    if rc != 0:
        print(f"xdistill ner failed with exit status {rc}", file=sys.stderr)
        return rc
    r = json.loads((Path(a.output_dir) / "report.json").read_text())
    import torch

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
        "languages": len(r["languages"]),
        "mean": m,
        "teacher": r["teacher"]["description"],
        "student_parameters": r["student"]["parameters"],
        "compression_vs_mbert_base": r["student"]["compression_vs_mbert_base"],
    }
    result["goals"] = {
        "minutes <= 60": wall / 60 <= GOALS["minutes"],
        "peak RSS < 8 GiB": tm["peak_rss_mib"] < GOALS["peak_rss_mib"],
        "distilled - baseline >= 3 F1": m["distillation_gain"] >= GOALS["distillation_gain"],
        "student/teacher >= 0.95": (m["student_to_teacher"] or 0) >= GOALS["student_to_teacher"],
        "padding fraction < 15%": (tm["padding_fraction"] or 0) < GOALS["padding_fraction"],
    }
    Path(a.output_dir, "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
