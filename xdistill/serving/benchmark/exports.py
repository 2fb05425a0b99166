"""ONNX files of teachers and reference models, cached in ``$XDISTILL_CACHE/onnx`` (default
``~/.cache/xdistill/onnx``), outside students and benchmark outputs, and reused across runs.

Exporting and quantizing a 12-layer reference model takes a while, so each file carries an
identity in its metadata (the teacher's weight files' SHA-256, or the reference's source, weights
kind, configuration, head and seed) and is reused while the identity matches. Students use their
own ``onnx/model[.int8].onnx`` from ``python -m xdistill export``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import torch

from ...utils import cache_root, file_sha256
from ..onnx import OUTPUT_NAME, export_module_to_onnx, onnx_metadata, ort_session, quantize_int8
from .candidates import Candidate
from .references import ReferenceSource

logger = logging.getLogger(__name__)

ONNX_CACHE_DIR = "onnx"
#: metadata key of the identity of a cached file
REFERENCE_META = "xdistill_reference"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower()


def teacher_export(c: Candidate) -> tuple[str, str]:
    """``(file name stem, identity)`` of a teacher's cached ONNX files: ``teacher-<name>-<path hash>``,
    and its folder and weight files' SHA-256."""
    d = Path(c.path)
    files = sorted(d.glob("*.safetensors")) + sorted(d.glob("pytorch_model*.bin"))
    ident = {"teacher": str(d.resolve()), "weights": {f.name: file_sha256(f) for f in files},
             "level": c.level.name, "num_labels": c.num_labels}
    stem = f"teacher-{_slug(c.name)}-{hashlib.sha256(str(d.resolve()).encode()).hexdigest()[:8]}"
    return stem, json.dumps(ident, sort_keys=True)


def reference_export(c: Candidate, src: ReferenceSource, weights: str, seed: int) -> tuple[str, str]:
    """``(file name stem, identity)`` of a reference model's cached ONNX files: ``<key>-<level>-<labels>``
    (``mbert-base-token-7``), and its source, weights kind, configuration, head and seed (random weights)."""
    cfg = hashlib.sha256(src.config.to_json_string(use_diff=False).encode()).hexdigest()
    ident = {"reference": src.model.key, "spec": src.choice.spec, "weights": weights, "config_sha256": cfg,
             "seed": seed if weights == "random" else None, "level": c.level.name, "num_labels": c.num_labels}
    return f"{src.model.key}-{c.level.name}-{c.num_labels}", json.dumps(ident, sort_keys=True)


def onnx_cache_paths(stem: str) -> dict[str, Path]:
    """``{"fp32": CACHE/onnx/<stem>.onnx, "int8": CACHE/onnx/<stem>.int8.onnx}`` (CACHE: :func:`~xdistill.utils.cache_root`)."""
    d = cache_root() / ONNX_CACHE_DIR
    return {"fp32": d / f"{stem}.onnx", "int8": d / f"{stem}.int8.onnx"}


def _matches(path: Path, identity: str) -> bool:
    try:
        return path.is_file() and onnx_metadata(path).get(REFERENCE_META) == identity
    except Exception:  # an unreadable or truncated file is exported again
        return False


def _parity(c: Candidate, path: Path, threads: int) -> float:
    """Largest absolute logit difference of ONNX Runtime fp32 against PyTorch on a ``(2, 8)`` batch."""
    check = torch.as_tensor(np.resize(c.known_ids, 16).reshape(2, 8))
    with torch.inference_mode():
        want = c.forward(check, torch.ones_like(check)).numpy()
    got = ort_session(path, threads).run([OUTPUT_NAME], {"input_ids": check.numpy(),
                                                         "attention_mask": np.ones_like(check.numpy())})[0]
    return float(np.abs(got - want).max())


def prepare_onnx(c: Candidate, stem: str, identity: str, threads: int) -> dict:
    """Export ``c.forward`` to ONNX fp32 and int8 as ``CACHE/onnx/<stem>[.int8].onnx`` unless files with
    the same ``identity`` are there; sets ``c.onnx``. Returns ``{"cached", "export_seconds",
    "quantize_seconds", "max_abs_logit_diff"}`` (seconds; the last is ORT fp32 against PyTorch on a
    ``(2, 8)`` batch after a new export; all ``None`` when reused).

    Raises:
        ExportError: the export or quantization failed.
        ConfigError: ONNX Runtime cannot load the exported file.
    """
    paths = onnx_cache_paths(stem)
    c.onnx = paths
    if all(_matches(p, identity) for p in paths.values()):
        logger.info("%s: reusing %s and %s", c.name, paths["fp32"], paths["int8"])
        return {"cached": True, "export_seconds": None, "quantize_seconds": None, "max_abs_logit_diff": None}
    ids = torch.as_tensor(c.known_ids[np.arange(8) % len(c.known_ids)])
    example = (torch.stack([ids[:4], ids[4:]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    logger.info("%s: exporting to %s (this takes a while for a 12-layer reference model)", c.name, paths["fp32"])
    t0 = time.perf_counter()
    export_module_to_onnx(c.forward, example, paths["fp32"], c.level, {REFERENCE_META: identity})
    t1 = time.perf_counter()
    quantize_int8(paths["fp32"], paths["int8"])
    t2 = time.perf_counter()
    diff = _parity(c, paths["fp32"], threads)
    logger.info("%s: export %.1f s, int8 quantization %.1f s, ORT fp32 vs torch max |diff| %.1e", c.name, t1 - t0, t2 - t1, diff)
    return {"cached": False, "export_seconds": round(t1 - t0, 2), "quantize_seconds": round(t2 - t1, 2), "max_abs_logit_diff": diff}


def prepare_teacher_onnx(c: Candidate, threads: int) -> dict:
    """:func:`prepare_onnx` for a teacher (see :func:`teacher_export`).

    Raises:
        ExportError: the export or quantization failed.
    """
    return prepare_onnx(c, *teacher_export(c), threads)


def prepare_reference_onnx(c: Candidate, src: ReferenceSource, weights: str, seed: int, threads: int) -> dict:
    """:func:`prepare_onnx` for a reference model (see :func:`reference_export`).

    Raises:
        ExportError: the export or quantization failed.
    """
    return prepare_onnx(c, *reference_export(c, src, weights, seed), threads)
