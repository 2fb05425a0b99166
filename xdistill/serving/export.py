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
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.types import Encoded
from ..errors import ConfigError
from ..students import is_student_dir, run_folder_hint
from ..utils import atomic_write_json
from .inference import load_model
from .onnx import (FP32_TOLERANCE, INPUT_NAMES, META_FINGERPRINT, ONNX_DIR, OPSET, OUTPUT_NAME, PARITY_FILE, ExportError,
                   OnnxStudent, export_module_to_onnx, file_sha256, onnx_metadata, onnx_path, ort_session, quantize_int8,
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


def export_student(student_dir: str | Path, data_files: Sequence[str | Path], quantize: str | None = None,
                   max_examples: int | None = 2000, threads: int | None = None,
                   tolerance: float = FP32_TOLERANCE, seed: int = 0) -> dict:
    """Export a saved student to ONNX, optionally quantize it, and check parity on real inputs.

    ``data_files``: labeled evaluation files the task adapter reads (PAN-X/CoNLL for NER, CSV or
    JSON lines for classification); a seeded sample of ``max_examples`` examples of each is used
    (all with ``None``), kept in file order. Returns the parity dictionary, also written to ``DIR/onnx/parity.json``.

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
    student, adapter, pad_id = im.model, im.adapter, im.tokenizer.pad_token_id
    level = adapter.level
    if threads:
        torch.set_num_threads(threads)

    parts, sources = [], []
    for f in data_files:
        ds, counts = adapter.read_labeled_file(f, "auto")
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
    enc = Encoded.concat([e for _, e in parts])
    gold = [g for ds, _ in parts for g in adapter.gold(ds)]
    real_tokens = int(enc.lengths.sum())
    logger.info("parity data: %d files, %d examples, %d rows, %d tokens", len(sources), len(gold), len(enc), real_tokens)

    fingerprint = file_sha256(d / "model.safetensors")
    meta = {META_FINGERPRINT: fingerprint, "xdistill_kind": student.kind, "xdistill_labels": json.dumps(list(adapter.labels)),
            "xdistill_task": str(im.adapter.spec.name), "xdistill_level": level.name}
    t = im.tokenizer  # a traced example in the student's own vocabulary: [CLS] x x [SEP] / [CLS] x [SEP] [PAD]
    x = t.unk_token_id
    example = (torch.tensor([[t.cls_token_id, x, x, t.sep_token_id], [t.cls_token_id, x, t.sep_token_id, pad_id]]),
               torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    module = student.export_module().eval()
    fp32_path = onnx_path(d, "fp32")
    staged = fp32_path.with_name(".model.unchecked.onnx")
    export_module_to_onnx(module, example, staged, level, meta)

    def run_onnx(path) -> list[np.ndarray]:
        return OnnxStudent(ort_session(path, threads), Path(path), "").logits(level, enc, pad_id)

    def score(logits) -> dict:
        s = adapter.score(adapter.decode(logits, enc), gold)
        return {k: v for k, v in s.items() if isinstance(v, (int, float))}

    def diff(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float, float]:
        """max and mean absolute difference over real positions, and argmax agreement."""
        d_all = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)])
        agree = np.mean(np.concatenate([(np.asarray(x).argmax(-1) == np.asarray(y).argmax(-1)).ravel() for x, y in zip(a, b)]))
        return float(d_all.max()), float(d_all.mean()), float(agree)

    ref = student.logits(level, enc, pad_id)
    k = adapter.primary_metric
    scores = {"torch_fp32": score(ref)}
    onnx_fp32 = run_onnx(staged)
    mx, mean, agree = diff(ref, onnx_fp32)
    scores["onnx_fp32"] = score(onnx_fp32)
    parity = {
        "student": str(d), "student_sha256": fingerprint, "kind": student.kind, "task": adapter.spec.name,
        "metric": k, "max_length": im.max_length,
        "data": {"files": sources, "examples": len(gold), "rows": len(enc), "tokens": real_tokens,
                 "max_examples_per_file": max_examples, "sample_seed": seed},
        "fp32": {"file": str(fp32_path.relative_to(d)), "max_abs_logit_diff": mx, "mean_abs_logit_diff": mean,
                 "argmax_agreement": agree, "tolerance": tolerance, "passed": mx <= tolerance,
                 "metric_diff": scores["onnx_fp32"][k] - scores["torch_fp32"][k]},
        "int8": None,
        "scores": scores,
        "exporter": {"torch.onnx.export": "TorchScript (dynamo=False)", "opset": OPSET,
                     "inputs": list(INPUT_NAMES), "output": OUTPUT_NAME, "dynamic_axes": ["batch", "sequence"]},
        "versions": versions(), "threads": int(threads or torch.get_num_threads()),
    }
    parity_path = d / ONNX_DIR / PARITY_FILE
    if mx > tolerance:
        staged.unlink(missing_ok=True)
        parity["seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(parity_path, parity)
        raise ExportError(f"{d}: ONNX Runtime fp32 logits differ from PyTorch by up to {mx:.2e} (> {tolerance:g}) on "
                          f"{len(enc)} rows of {', '.join(s['file'] for s in sources)}; no model.onnx written; see {parity_path}")
    os.replace(staged, fp32_path)
    logger.info("fp32 ONNX: max |logit diff| %.2e, %s torch %.2f / onnx %.2f", mx, k, scores["torch_fp32"][k], scores["onnx_fp32"][k])

    int8_path = onnx_path(d, "int8")
    if quantize == "int8":
        settings = quantize_int8(fp32_path, int8_path)
        onnx_int8 = run_onnx(int8_path)
        mx8, mean8, agree8 = diff(ref, onnx_int8)
        scores["onnx_int8"] = score(onnx_int8)
        parity["int8"] = {"file": str(int8_path.relative_to(d)), "quantization": settings, "max_abs_logit_diff": mx8,
                          "mean_abs_logit_diff": mean8, "argmax_agreement": agree8,
                          "metric_diff": scores["onnx_int8"][k] - scores["onnx_fp32"][k]}
        logger.info("int8 ONNX: %s %.2f (%.2f vs fp32)", k, scores["onnx_int8"][k], parity["int8"]["metric_diff"])
    elif int8_path.is_file() and onnx_metadata(int8_path).get(META_FINGERPRINT) != fingerprint:
        int8_path.unlink()  # left by an export of other weights: it would be refused at load time anyway
    parity["file_mib"] = {p.name: round(p.stat().st_size / 2**20, 2) for p in (fp32_path, int8_path) if p.is_file()}
    parity["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(parity_path, parity)
    return parity
