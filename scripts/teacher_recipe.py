#!/usr/bin/env python
"""Benchmark: the teacher alone (MLM pretraining, fine-tuning, evaluation), to tune its recipe.

Runs the data and teacher phases of ``python -m xdistill COMMAND ...`` with the options given
(no transfer labeling, no students), evaluates the teacher on every group's evaluation split, and
prints one JSON line: the machine, threads, minutes per phase (MLM pretraining, fine-tuning), peak
RSS (MiB), the final held-out MLM loss, the best validation score and the mean evaluation score. The
line is also appended to ``--results`` (JSON lines), so several recipes can be compared.

Each recipe needs its own ``--output-dir`` (or the saved teacher of the same settings is reused).

Usage: python scripts/teacher_recipe.py ner --preset cpu --langs all --data-dir ../shared/data \\
           --output-dir /tmp/t1 --teacher-mlm 3000 [--results teacher-recipes.jsonl]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from xdistill.adapters import COMMANDS, load_task, make_adapter
from xdistill.cli import parse_distill_args
from xdistill.errors import exit_status
from xdistill.pipeline import RunFolder
from xdistill.pipeline.run import Run, check_settings, prepare_data, prepare_teacher
from xdistill.utils import peak_rss_mib


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _mean_score(r: Run) -> tuple[float, dict]:
    a, level = r.adapter, r.adapter.level
    per = {g: a.score(a.decode(r.teacher.logits(level, e, r.pad_id), e), r.eval_gold[g])[a.primary_metric]
           for g, e in r.eval_enc.items()}
    return sum(per.values()) / len(per), per


def parse_args(argv: list[str]) -> tuple[str, str | None, list[str]]:
    """``COMMAND [--results FILE] [options of python -m xdistill COMMAND]`` -> (command, results, options).

    ``--help`` before the command prints this script's usage; after it, the command's options.

    Raises:
        SystemExit: status 2 with a usage message when the command is missing or unknown, or
            ``--results`` has no file.
    """
    parser = argparse.ArgumentParser(prog="teacher_recipe.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=sorted(COMMANDS), help="the xdistill command whose teacher to train")
    # --results is taken out by hand (listed for --help): argparse would take the command's --help too
    parser.add_argument("--results", metavar="FILE", help="append the JSON line to this file (JSON lines)")
    results = None
    if "--results" in argv:
        i = argv.index("--results")
        if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
            parser.error("--results: expected a file name")
        results, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    return parser.parse_args(argv[:1]).command, results, argv[1:]


def main(argv: list[str]) -> int:
    """Run the recipe; returns the exit status (2 with ``error: ...`` on bad options or input, no traceback)."""
    command, results, rest = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return exit_status(_run, command, results, rest)


def _run(command: str, results: str | None, rest: list[str]) -> int:
    settings = parse_distill_args(rest, command)
    if settings.run.threads:
        torch.set_num_threads(settings.run.threads)
    adapter = make_adapter(load_task(settings.run.task))
    check_settings(settings)
    t0 = time.perf_counter()
    with RunFolder(settings.run.output_dir, settings, adapter.spec.path, " ".join(sys.argv)):
        r = Run(adapter, settings, Path(settings.run.output_dir))
        torch.manual_seed(settings.data.seed)
        with r.timer.phase("data"):
            prepare_data(r)
        with r.timer.phase("teacher"):
            prepare_teacher(r)
        with r.timer.phase("evaluation"):
            mean, per = _mean_score(r)
    info = r.teacher.info
    mlm = info.mlm or {}
    line = {"command": " ".join([command, *rest]), "machine": _cpu_name(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "minutes": {k: round(v / 60, 2) for k, v in r.timer.seconds.items()},
            "total_minutes": round((time.perf_counter() - t0) / 60, 2),
            "mlm_minutes": mlm.get("minutes"), "mlm_steps": mlm.get("steps"), "mlm_epochs": mlm.get("epochs"),
            "mlm_held_out_loss": (mlm.get("held_out_loss") or [[None, None]])[-1][1],
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "teacher": info.description, "parameters": info.parameters,
            "self_training": info.self_training,
            "best_validation": info.best_validation_score, f"mean_{adapter.primary_metric}": round(mean, 2),
            "per_group": {g: round(v, 2) for g, v in per.items()}}
    print(json.dumps(line), flush=True)
    if results:
        with open(results, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
