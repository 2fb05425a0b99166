#!/usr/bin/env python
"""Batch-inference latency of students, their teachers and the reference model of each (mBERT-base
or XLM-R-base) in PyTorch fp32, ONNX Runtime fp32 and int8 (XtremeDistil setting: sequence length 32,
batch sizes 1 and 32, CPU).

The same as ``python -m xdistill benchmark`` (see :mod:`xdistill.serving.benchmark`); writes
``OUTPUT/latency.json``, ``latency.md``, ``latency.png`` and each student's ``latency.json`` and model card.

Usage: python scripts/benchmark_latency.py --students runs/ner-cpu/student [--batch-sizes 1,32]
       [--sequence-length 32] [--warmup 3] [--repeats 20] [--threads N] [--quick] [--output-dir runs/latency]
       [--reference KEY=ID_OR_DIR ...] [--mbert ID_OR_DIR]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from xdistill.serving.benchmark import main  # noqa: E402
from xdistill.errors import XDistillError  # noqa: E402


def run(argv: list[str]) -> int:
    """``main(argv)`` with logging to stderr; input errors print one line (no traceback), exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "urllib3", "filelock", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return main(argv)
    except XDistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
