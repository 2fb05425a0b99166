"""Timing: random inputs, timed calls and their statistics (median, p90, sequences/s).

Latency is the wall time (``time.perf_counter``) of one call on one batch of ``(B, T)`` random
token ids (attention mask all ones): after ``warmup`` untimed calls, ``repeats`` timed calls give
the median, 90th percentile, mean, min and max in milliseconds.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable, Sequence

import numpy as np
import torch

from ..onnx import OUTPUT_NAME, ort_session
from .candidates import Candidate
from .options import ONNX_PRECISION, RUNTIMES, Settings

logger = logging.getLogger(__name__)


def make_inputs(known_ids: np.ndarray, batch_size: int, sequence_length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(batch_size, sequence_length)`` int64 ``input_ids`` drawn (seeded) from ``known_ids``
    and an all-ones ``attention_mask`` of the same shape."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(known_ids, size=(batch_size, sequence_length), replace=True).astype(np.int64)
    return ids, np.ones_like(ids)


def time_calls(call: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Run ``call`` ``warmup`` times untimed, then ``repeats`` times; return each timed call's wall time in ms."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def latency_stats(times_ms: Sequence[float], batch_size: int) -> dict:
    """``median_ms``, ``p90_ms`` (``np.percentile``, linear), ``mean_ms``, ``min_ms``, ``max_ms`` of
    per-batch times in ms, and ``sequences_per_second`` (``batch_size / median``)."""
    t = np.asarray(times_ms, dtype=np.float64)
    median = float(np.median(t))
    return {"median_ms": median, "p90_ms": float(np.percentile(t, 90)), "mean_ms": float(t.mean()),
            "min_ms": float(t.min()), "max_ms": float(t.max()),
            "sequences_per_second": batch_size / (median / 1000.0) if median > 0 else math.inf}


def torch_call(c: Candidate, ids: np.ndarray, mask: np.ndarray) -> Callable[[], object]:
    """A zero-argument call running ``c.forward`` on one batch under ``torch.inference_mode``
    (tensors made beforehand, outside the timing)."""
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)

    def call():
        with torch.inference_mode():
            return c.forward(t_ids, t_mask)
    return call


def ort_call(session, ids: np.ndarray, mask: np.ndarray) -> Callable[[], object]:
    """A zero-argument call running an ONNX Runtime session on one batch."""
    feed = {"input_ids": ids, "attention_mask": mask}
    return lambda: session.run([OUTPUT_NAME], feed)


def measure_runtime(c: Candidate, runtime: str, s: Settings) -> dict[int, dict]:
    """Latency statistics (:func:`latency_stats`, ms) of ``c`` in one runtime, per batch size.

    Raises:
        ConfigError: ONNX Runtime cannot load the candidate's ONNX file.
    """
    precision = ONNX_PRECISION.get(runtime)
    session = ort_session(c.onnx[precision], s.threads) if precision else None
    out = {}
    for b in s.batch_sizes:
        ids, mask = make_inputs(c.known_ids, b, s.sequence_length, s.seed)
        call = ort_call(session, ids, mask) if session is not None else torch_call(c, ids, mask)
        out[b] = latency_stats(time_calls(call, s.warmup, s.repeats), b)
        logger.info("%-40s %-10s batch %3d: median %9.3f ms, p90 %9.3f ms", c.name, runtime, b,
                    out[b]["median_ms"], out[b]["p90_ms"])
    return out


def measure(c: Candidate, s: Settings) -> dict[tuple[str, int], dict]:
    """Latency statistics of ``c`` per ``(runtime, batch_size)`` (see :func:`latency_stats`), all in ms.

    Raises:
        ConfigError: ONNX Runtime cannot load one of the candidate's ONNX files.
    """
    return {(runtime, b): st for runtime in RUNTIMES for b, st in measure_runtime(c, runtime, s).items()}
