"""Rows of ``latency.json`` (one per model, runtime and batch size), speedups and compression
against each model's reference model, the issue's goals, and the machine description."""

from __future__ import annotations

import os
import platform
from typing import Sequence

import numpy as np
import onnxruntime
import psutil
import torch
import transformers

from ...adapters import TOKEN
from ...utils import cpu_model
from .candidates import Candidate
from .options import RUNTIMES, Settings

#: output level name -> speedup goal (PyTorch, against the reference model, at the largest batch
#: size); the 300x of the issue is for NER, i.e. token-level students
SPEEDUP_GOALS = {TOKEN.name: 300.0}
#: compression goal (reference parameters / student parameters)
GOAL_COMPRESSION = 35.0


def machine_info(threads: int) -> dict:
    """CPU, cores, threads and library versions for ``latency.json``."""
    return {"cpu": cpu_model(), "physical_cores": psutil.cpu_count(logical=False), "logical_cores": os.cpu_count(),
            "threads": threads, "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__}


def make_rows(measured: list[tuple[Candidate, dict]], refs: dict[tuple[str, str, int], Candidate], s: Settings) -> list[dict]:
    """One row per (model, runtime, batch size) in the ``latency.json`` schema: latency statistics
    (ms, sequences/s), parameters, ``reference`` (the row name of the reference model it is
    compared with), ``compression_vs_reference`` (its parameters / the model's) and
    ``speedup_vs_reference`` (its median / the model's, same runtime and batch size; ``None``
    when the reference was not timed)."""
    by_name = {c.name: m for c, m in measured}
    rows = []
    for c, m in measured:
        ref = refs[c.ref_key]
        ref_m = by_name.get(ref.name)
        for runtime in RUNTIMES:
            for b in s.batch_sizes:
                st = m[(runtime, b)]
                ref_ms = ref_m[(runtime, b)]["median_ms"] if ref_m else None
                rows.append({"model": c.name, "role": c.role, "task": c.task, "level": c.level.name, "path": c.path,
                             "reference": ref.name, "runtime": runtime, "batch_size": b,
                             "sequence_length": s.sequence_length, **st, "parameters": int(c.parameters),
                             "compression_vs_reference": ref.parameters / c.parameters,
                             "metric": c.metric, "metric_value": c.metric_values.get(runtime),
                             "speedup_vs_reference": ref_ms / st["median_ms"] if ref_ms and st["median_ms"] > 0 else None})
    return rows


def find_row(rows: list[dict], model: str, runtime: str, b: int) -> dict:
    """The row of ``model`` in ``runtime`` at batch size ``b``.

    Raises:
        StopIteration: no such row.
    """
    return next(r for r in rows if r["model"] == model and r["runtime"] == runtime and r["batch_size"] == b)


def _ratios(rows: list[dict], model: str, slow: str, fast: str, batch_sizes: Sequence[int]) -> dict[str, float]:
    """``{batch size: median of runtime slow / median of runtime fast}`` (> 1: ``fast`` is faster)."""
    return {str(b): find_row(rows, model, slow, b)["median_ms"] / find_row(rows, model, fast, b)["median_ms"]
            for b in batch_sizes}


def student_goals(c: Candidate, rows: list[dict], s: Settings) -> dict:
    """The issue's goals for one student: speedup against its reference model in PyTorch at the largest
    batch size (>= 300x for a token-level student, see :data:`SPEEDUP_GOALS`), ORT fp32 not slower than
    PyTorch and int8 faster than ORT fp32 at every batch size, compression >= 35x; numbers and booleans."""
    b = max(s.batch_sizes)
    torch_row = find_row(rows, c.name, "torch-fp32", b)
    speedup = torch_row["speedup_vs_reference"]
    speedup_goal = SPEEDUP_GOALS.get(c.level.name)
    ort_vs_torch = _ratios(rows, c.name, "torch-fp32", "onnx-fp32", s.batch_sizes)
    int8_vs_fp32 = _ratios(rows, c.name, "onnx-fp32", "onnx-int8", s.batch_sizes)
    compression = torch_row["compression_vs_reference"]
    g = {"task": c.task, "level": c.level.name, "reference": torch_row["reference"], "batch_size": b,
         "speedup_torch_vs_reference": speedup, "speedup_goal": speedup_goal,
         "speedup_goal_met": (speedup is not None and speedup >= speedup_goal) if speedup_goal else None,
         "onnx_fp32_speedup_vs_torch": ort_vs_torch,
         "onnx_fp32_not_slower_than_torch": all(v >= 1.0 for v in ort_vs_torch.values()),
         "int8_speedup_vs_fp32": int8_vs_fp32, "int8_faster_than_fp32": all(v > 1.0 for v in int8_vs_fp32.values()),
         "compression_vs_reference": compression, "compression_goal": GOAL_COMPRESSION,
         "compression_goal_met": compression >= GOAL_COMPRESSION}
    checks = [g["speedup_goal_met"], g["onnx_fp32_not_slower_than_torch"], g["int8_faster_than_fp32"], g["compression_goal_met"]]
    g["all_met"] = all(x for x in checks if x is not None)
    return g


def goals(students: Sequence[Candidate], rows: list[dict], s: Settings) -> dict:
    """``latency.json``'s ``goals``: the targets and :func:`student_goals` per student."""
    return {"batch_size": max(s.batch_sizes),
            "targets": {"speedup_torch_vs_reference": dict(SPEEDUP_GOALS), "onnx_fp32_not_slower_than_torch": True,
                        "int8_faster_than_fp32": True, "compression_vs_reference": GOAL_COMPRESSION},
            "students": {c.name: student_goals(c, rows, s) for c in students}}


def student_result(result: dict, c: Candidate) -> dict:
    """``STUDENT/latency.json``: the schema of ``latency.json`` with only this student's rows, goals and
    reference model (its rows and its ``references`` entry)."""
    ref_name = next(r["reference"] for r in result["rows"] if r["model"] == c.name)
    rows = [r for r in result["rows"] if r["model"] in (c.name, ref_name)]
    g = {**result["goals"], "students": {c.name: result["goals"]["students"][c.name]}}
    refs = [i for i in result["references"] if i["name"] == ref_name]
    return {**{k: v for k, v in result.items() if k not in ("rows", "goals", "references")},
            "references": refs, "rows": rows, "goals": g}
