"""``python -m xdistill export``: a saved student to ONNX (and int8), with a parity check on real data.

The check runs on a seeded sample of the task's evaluation files: the largest absolute logit
difference of ONNX Runtime fp32 against PyTorch (the export fails above 1e-3 and leaves no
``model.onnx``), and the metric (F1 or accuracy) in PyTorch, ORT fp32 and ORT int8, written
to ``DIR/onnx/parity.json``. The ONNX primitives are in :mod:`xdistill.serving.onnx`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.types import Encoded
from ..errors import ConfigError
from ..students import is_student_dir, run_folder_hint
from ..utils import atomic_write_json, file_sha256
from .inference import InferenceModel, load_model
from .onnx import (FP32_TOLERANCE, INPUT_NAMES, META_FINGERPRINT, ONNX_DIR, OPSET, OUTPUT_NAME, PARITY_FILE, ExportError,
                   OnnxStudent, export_module_to_onnx, onnx_metadata, onnx_path, ort_session, quantize_int8,
                   versions)

logger = logging.getLogger(__name__)


def evaluation_files(spec, groups: Sequence[str], data_dir: str | Path) -> list[Path]:
    """The task's local evaluation file for each group (``[local] eval`` of the task file, ``{lang}`` filled).

    Raises:
        ConfigError: the task file names no local evaluation file, or a file is missing.
    """
    template = (spec.local or {}).get("eval")
    if not template:
        raise ConfigError(f"{spec.path}: [local] has no 'eval' file; pass --data FILE instead")
    files = []
    for g in dict.fromkeys(groups):  # keep order, drop repeats (a task without {lang} has one file)
        p = Path(data_dir) / template.format(lang=g)
        if not p.is_file():
            raise ConfigError(f"--data-dir {data_dir}: evaluation file {p} for {g!r} does not exist")
        files.append(p)
    return list(dict.fromkeys(files))


@dataclass
class ParityData:
    """The rows the parity check runs on: encoded rows, gold labels, and where they came from."""

    encoded: Encoded
    gold: list
    sources: list[dict]

    @property
    def tokens(self) -> int:
        return int(self.encoded.lengths.sum())


def parity_data(im: InferenceModel, files: Sequence[str | Path], max_examples: int | None, seed: int) -> ParityData:
    """A seeded sample of ``max_examples`` examples of each labeled file (all with ``None``), in file order.

    Raises:
        ConfigError: a file without labeled examples (and whatever reading it raises).
    """
    adapter = im.adapter
    parts, sources = [], []
    for f in files:
        ds, _ = adapter.read_labeled_file(f, "auto")
        n = len(adapter.gold(ds))
        if max_examples is not None and n > max_examples:
            # a seeded sample, in file order: files may be sorted by label (IMDB's test file is)
            keep = np.sort(np.random.default_rng(seed).choice(n, size=max_examples, replace=False))
            ds = ds.select(keep) if hasattr(ds, "select") else {k: [list(v)[i] for i in keep] for k, v in ds.items()}
            n = max_examples
        if n == 0:
            raise ConfigError(f"--data {f}: no labeled examples")
        parts.append((ds, adapter.encode(ds, im.tokenizer, im.max_length)))
        sources.append({"file": str(f), "examples": n})
    data = ParityData(Encoded.concat([e for _, e in parts]), [g for ds, _ in parts for g in adapter.gold(ds)], sources)
    logger.info("parity data: %d files, %d examples, %d rows, %d tokens", len(sources), len(data.gold),
                len(data.encoded), data.tokens)
    return data


def compare(ref: list[np.ndarray], got: list[np.ndarray]) -> dict:
    """Per-position comparison of two runtimes' logits: the largest and the mean absolute difference
    and the agreement of their argmax (the predicted label), over real positions."""
    d_all = np.concatenate([np.abs(x - y).ravel() for x, y in zip(ref, got)])
    agree = np.mean(np.concatenate([(np.asarray(x).argmax(-1) == np.asarray(y).argmax(-1)).ravel()
                                    for x, y in zip(ref, got)]))
    return {"max_abs_logit_diff": float(d_all.max()), "mean_abs_logit_diff": float(d_all.mean()),
            "argmax_agreement": float(agree)}


def _trace_example(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T) = (2, 4)`` inputs to trace with, in the student's vocabulary: ``[CLS] x x [SEP]`` and
    ``[CLS] x [SEP] [PAD]`` (one padded row, so the mask takes part)."""
    t, x = tokenizer, tokenizer.unk_token_id
    return (torch.tensor([[t.cls_token_id, x, x, t.sep_token_id], [t.cls_token_id, x, t.sep_token_id, t.pad_token_id]]),
            torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))


class _Parity:
    """Runs the student's rows through each runtime and scores them on the parity data."""

    def __init__(self, im: InferenceModel, data: ParityData, threads: int | None):
        self.im, self.data, self.threads = im, data, threads
        self.level, self.pad = im.adapter.level, im.tokenizer.pad_token_id
        self.reference = im.model.logits(self.level, data.encoded, self.pad)

    def onnx_logits(self, path: Path) -> list[np.ndarray]:
        return OnnxStudent(ort_session(path, self.threads), Path(path), "").logits(self.level, self.data.encoded, self.pad)

    def score(self, logits: list[np.ndarray]) -> dict:
        a = self.im.adapter
        s = a.score(a.decode(logits, self.data.encoded), self.data.gold)
        return {k: v for k, v in s.items() if isinstance(v, (int, float))}


def export_student(student_dir: str | Path, data_files: Sequence[str | Path], quantize: str | None = None,
                   max_examples: int | None = 2000, threads: int | None = None,
                   tolerance: float = FP32_TOLERANCE, seed: int = 0) -> dict:
    """Export a saved student to ONNX, optionally quantize it, and check parity on real inputs.

    ``data_files``: labeled evaluation files the task adapter reads (PAN-X/CoNLL for NER, CSV or
    JSON lines for classification); see :func:`parity_data`. Returns the parity dictionary, also
    written to ``DIR/onnx/parity.json``.

    Raises:
        ConfigError: not a student folder, bad data files or options.
        ExportError: the export or quantization failed, or fp32 logits differ from PyTorch by
            more than ``tolerance`` (the fp32 file is then removed; ``parity.json`` says why).
    """
    if quantize not in (None, "int8"):
        raise ConfigError(f"--quantize: expected int8, got {quantize!r}")
    if not data_files:
        raise ConfigError("export needs labeled evaluation data for the parity check: --data-dir or --data FILE")
    t0 = time.perf_counter()
    d = Path(student_dir)
    if not is_student_dir(d):
        raise ConfigError(f"--model {d}: no xdistill student here (expected config.json with \"xdistill_student\": true "
                          f"and model.safetensors, as `xdistill ner`/`classify` save in OUTPUT/student){run_folder_hint(d)}")
    im = load_model(d)
    if threads:
        torch.set_num_threads(threads)
    data = parity_data(im, data_files, max_examples, seed)
    check = _Parity(im, data, threads)
    parity = _export_fp32(d, im, check, tolerance)
    parity["data"].update(max_examples_per_file=max_examples, sample_seed=seed)
    parity["threads"] = int(threads or torch.get_num_threads())
    parity_path = d / ONNX_DIR / PARITY_FILE
    if not parity["fp32"]["passed"]:
        parity["seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(parity_path, parity)
        raise ExportError(f"{d}: ONNX Runtime fp32 logits differ from PyTorch by up to "
                          f"{parity['fp32']['max_abs_logit_diff']:.2e} (> {tolerance:g}) on {len(data.encoded)} rows of "
                          f"{', '.join(s['file'] for s in data.sources)}; no model.onnx written; see {parity_path}")
    int8_path = onnx_path(d, "int8")
    if quantize == "int8":
        parity["int8"] = _quantize(onnx_path(d, "fp32"), int8_path, check, parity["scores"], d)
    elif int8_path.is_file() and onnx_metadata(int8_path).get(META_FINGERPRINT) != parity["student_sha256"]:
        int8_path.unlink()  # left by an export of other weights: it would be refused at load time anyway
    parity["file_mib"] = {p.name: round(p.stat().st_size / 2**20, 2) for p in (onnx_path(d), int8_path) if p.is_file()}
    parity["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(parity_path, parity)
    return parity


def _export_fp32(d: Path, im: InferenceModel, check: _Parity, tolerance: float) -> dict:
    """Export to a staged file, compare it with PyTorch, and move it to ``onnx/model.onnx`` when
    within ``tolerance``; the parity dictionary (``fp32.passed`` says whether it was)."""
    student, adapter, level = im.model, im.adapter, im.adapter.level
    fingerprint = file_sha256(d / "model.safetensors")
    meta = {META_FINGERPRINT: fingerprint, "xdistill_kind": student.kind, "xdistill_labels": json.dumps(list(adapter.labels)),
            "xdistill_task": str(adapter.spec.name), "xdistill_level": level.name}
    fp32_path = onnx_path(d, "fp32")
    staged = fp32_path.with_name(".model.unchecked.onnx")
    export_module_to_onnx(student.export_module().eval(), _trace_example(im.tokenizer), staged, level, meta)
    k = adapter.primary_metric
    onnx_fp32 = check.onnx_logits(staged)
    scores = {"torch_fp32": check.score(check.reference), "onnx_fp32": check.score(onnx_fp32)}
    diff = compare(check.reference, onnx_fp32)
    passed = diff["max_abs_logit_diff"] <= tolerance
    if passed:
        os.replace(staged, fp32_path)
        logger.info("fp32 ONNX: max |logit diff| %.2e, %s torch %.2f / onnx %.2f", diff["max_abs_logit_diff"], k,
                    scores["torch_fp32"][k], scores["onnx_fp32"][k])
    else:
        staged.unlink(missing_ok=True)
    data = check.data
    return {
        "student": str(d), "student_sha256": fingerprint, "kind": student.kind, "task": adapter.spec.name,
        "metric": k, "max_length": im.max_length,
        "data": {"files": data.sources, "examples": len(data.gold), "rows": len(data.encoded), "tokens": data.tokens},
        "fp32": {"file": str(fp32_path.relative_to(d)), **diff, "tolerance": tolerance, "passed": passed,
                 "metric_diff": scores["onnx_fp32"][k] - scores["torch_fp32"][k]},
        "int8": None,
        "scores": scores,
        "exporter": {"torch.onnx.export": "TorchScript (dynamo=False)", "opset": OPSET,
                     "inputs": list(INPUT_NAMES), "output": OUTPUT_NAME, "dynamic_axes": ["batch", "sequence"]},
        "versions": versions(),
    }


def _quantize(fp32_path: Path, int8_path: Path, check: _Parity, scores: dict, d: Path) -> dict:
    """Dynamic int8 quantization of the fp32 file, compared with PyTorch and scored (adds ``onnx_int8`` to ``scores``)."""
    k = check.im.adapter.primary_metric
    settings = quantize_int8(fp32_path, int8_path)
    onnx_int8 = check.onnx_logits(int8_path)
    scores["onnx_int8"] = check.score(onnx_int8)
    out = {"file": str(int8_path.relative_to(d)), "quantization": settings, **compare(check.reference, onnx_int8),
           "metric_diff": scores["onnx_int8"][k] - scores["onnx_fp32"][k]}
    logger.info("int8 ONNX: %s %.2f (%.2f vs fp32)", k, scores["onnx_int8"][k], out["metric_diff"])
    return out
