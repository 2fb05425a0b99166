"""ONNX export, int8 dynamic quantization and ONNX Runtime inference of students.

``python -m xdistill export --model DIR --format onnx [--quantize int8]`` writes

* ``DIR/onnx/model.onnx``: the student's inference forward (:meth:`Student.export_module`) with
  inputs ``input_ids`` and ``attention_mask`` (int64, dynamic ``batch`` and ``sequence`` axes) and
  output ``logits`` (``(B, T, C)`` for token tasks, ``(B, C)`` for sequence tasks);
* ``DIR/onnx/model.int8.onnx``: the same graph after ``onnxruntime.quantization.quantize_dynamic``
  with int8 weights (``QuantType.QInt8``; activations are quantized per batch at run time);
* ``DIR/onnx/parity.json``: the check on real inputs (the task's evaluation split): the largest
  absolute logit difference of ONNX Runtime fp32 against PyTorch (export fails above 1e-3) and
  the metric (F1 or accuracy) of PyTorch, ORT fp32 and ORT int8.

Each ONNX file carries the SHA-256 of the student's ``model.safetensors`` in its metadata, so that
an ONNX file copied next to another student is refused at load time.

The exporter is ``torch.onnx.export``'s TorchScript path (``dynamo=False``): in torch 2.13 the
dynamo exporter specialises the LSTM's sequence length to the example's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import ConfigError, XDistillError
from .utils import atomic_write_json

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
ONNX_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
PARITY_FILE = "parity.json"
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
#: largest absolute fp32 logit difference (ORT vs PyTorch) an export may have
FP32_TOLERANCE = 1e-3
OPSET = 17
META_FINGERPRINT = "xdistill_student_sha256"


class ExportError(XDistillError):
    """The export or its parity check failed."""


def onnx_path(student_dir: str | Path, precision: str = "fp32") -> Path:
    """``DIR/onnx/model.onnx`` (``"fp32"``) or ``DIR/onnx/model.int8.onnx`` (``"int8"``).

    Raises:
        ConfigError: an unknown precision.
    """
    if precision not in ONNX_FILES:
        raise ConfigError(f"--precision: expected one of {', '.join(ONNX_FILES)}, got {precision!r}")
    return Path(student_dir) / ONNX_DIR / ONNX_FILES[precision]


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _ort():
    try:
        import onnxruntime
    except ImportError as e:  # a declared dependency, but a trimmed install may lack it
        raise ConfigError("ONNX Runtime is not installed: pip install onnxruntime") from e
    return onnxruntime


def ort_session(path: str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU with a fixed thread count.

    ``threads`` sets ``intra_op_num_threads`` (default: ``torch.get_num_threads()``, so both
    runtimes use the same number); inter-op parallelism is off (sequential execution).

    Raises:
        ConfigError: the file is missing or is not a valid ONNX model.
    """
    ort = _ort()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no ONNX model here; run `python -m xdistill export --model {path.parent.parent} --format onnx`")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: ORT warns about symbolic output shapes
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise ConfigError(f"{path}: ONNX Runtime cannot load it: {e}") from e


def export_module_to_onnx(module: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor], path: str | Path,
                          token_level: bool, metadata: dict[str, str] | None = None) -> Path:
    """Export ``module(input_ids, attention_mask) -> logits`` to ``path`` atomically.

    ``example``: two ``(B, T)`` int64 tensors used for tracing. Axes 0 (``batch``) and 1
    (``sequence``) of both inputs are dynamic, as are the output's batch axis and, when
    ``token_level``, its sequence axis. ``metadata`` goes into the model's ``metadata_props``.

    Raises:
        ExportError: ``torch.onnx.export`` or the ONNX checker failed.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT_NAME: {0: "batch", 1: "sequence"} if token_level else {0: "batch"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
            torch.onnx.export(module, example, str(tmp), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        model = onnx.load(str(tmp))
        for k, v in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, str(v)
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{path}: ONNX export of {type(module).__name__} failed: {e}") from e
    os.replace(tmp, path)
    return path


def quantize_int8(src: str | Path, dst: str | Path) -> dict:
    """Dynamic int8 quantization with ``onnxruntime.quantization.quantize_dynamic``.

    Weights of MatMul/Gemm, LSTM and Gather (embedding) nodes are stored as signed int8
    (``weight_type=QuantType.QInt8``, per tensor); activations are quantized per batch at run
    time. The source's ``metadata_props`` are kept. Returns the settings (for ``parity.json``).

    Raises:
        ExportError: the quantizer failed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    settings = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8", "per_channel": False,
                "op_types": ["MatMul", "Gemm", "LSTM", "Gather", "Attention"]}
    before = logging.root.manager.disable
    logging.disable(max(before, logging.WARNING))  # the quantizer logs a line per tensor, and generic advice, on the root logger
    try:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=False,
                         op_types_to_quantize=settings["op_types"])
        q = onnx.load(str(tmp))
        have = {p.key for p in q.metadata_props}
        for p in onnx.load(str(src), load_external_data=False).metadata_props:
            if p.key not in have:
                e = q.metadata_props.add()
                e.key, e.value = p.key, p.value
        onnx.save(q, str(tmp))
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{dst}: int8 quantization of {src} failed: {e}") from e
    finally:
        logging.disable(before)
    os.replace(tmp, dst)
    return settings


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (weights not loaded)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@dataclass
class OnnxStudent:
    """A student's ONNX graph in an ONNX Runtime session; ``logits`` has the signature of
    :func:`xdistill.distill.student_logits` so that :class:`~xdistill.inference.InferenceModel`
    uses either runtime the same way."""

    session: object
    adapter: object
    path: Path
    precision: str
    batch_size: int = 64

    def logits(self, encoded, pad_id: int) -> list[np.ndarray]:
        """Per-row logits (``(T_i, C)`` or ``(C,)``) for encoded windows, in row order."""
        from .batching import bucket_batches

        out: list = [None] * len(encoded)
        lengths = encoded.lengths
        for rows in bucket_batches(lengths, batch_size=self.batch_size):
            b = self.adapter.collate(encoded, rows, pad_id)
            lg = self.session.run([OUTPUT_NAME], {"input_ids": b["input_ids"].numpy(),
                                                  "attention_mask": b["attention_mask"].numpy()})[0]
            for r, x in zip(rows, self.adapter.row_logits(torch.from_numpy(lg), [int(lengths[r]) for r in rows])):
                out[r] = x
        return out


def checked_onnx_path(student_dir: str | Path, precision: str = "fp32", option: str = "--runtime onnx",
                      hint_int8: bool | None = None) -> Path:
    """``DIR/onnx/model[.int8].onnx`` after checking that it exists, is readable and was exported from
    this student's current ``model.safetensors`` (the SHA-256 in its metadata). ``option`` starts the messages;
    the export command they suggest has ``--quantize int8`` when ``hint_int8`` (default: for the int8 file).

    Raises:
        ConfigError: no ONNX file (the message gives the export command), an unreadable file, or a
            file exported from another student.
    """
    d = Path(student_dir)
    path = onnx_path(d, precision)
    hint = f"run `python -m xdistill export --model {d} --format onnx{' --quantize int8' if (precision == 'int8' if hint_int8 is None else hint_int8) else ''}`"
    if not path.is_file():
        raise ConfigError(f"{option}: {path} does not exist; {hint}")
    try:
        have = onnx_metadata(path).get(META_FINGERPRINT)
    except Exception as e:
        raise ConfigError(f"{option}: {path} is not a readable ONNX model: {e}") from e
    want = file_sha256(d / "model.safetensors")
    if have != want:
        raise ConfigError(f"{option}: {path} was exported from another student (weights sha256 {str(have)[:12]}..., "
                          f"this student's {want[:12]}...); re-{hint[0].lower()}{hint[1:]}")
    return path


def load_onnx_student(student_dir: str | Path, adapter, precision: str = "fp32", threads: int | None = None) -> OnnxStudent:
    """Open the student's ONNX file (see :func:`checked_onnx_path`) in an ONNX Runtime session.

    Raises:
        ConfigError: see :func:`checked_onnx_path`; or inputs/outputs that do not fit this student.
    """
    path = checked_onnx_path(student_dir, precision)
    session = ort_session(path, threads)
    names = [i.name for i in session.get_inputs()]
    if names != list(INPUT_NAMES):
        raise ConfigError(f"{path}: inputs {names}; expected {list(INPUT_NAMES)}")
    out_shape = session.get_outputs()[0].shape
    if out_shape[-1] != adapter.num_labels:
        raise ConfigError(f"{path}: {out_shape[-1]} output classes; this student has {adapter.num_labels} labels")
    return OnnxStudent(session, adapter, path, precision)


def _versions() -> dict:
    import onnx

    ort = _ort()
    return {"torch": torch.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "python": platform.python_version()}


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
    from .adapters.base import Encoded
    from .distill import student_logits
    from .inference import load_model
    from .students.base import is_student_dir, run_folder_hint

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
            "xdistill_task": str(im.adapter.spec.name), "xdistill_level": adapter.level}
    token_level = adapter.level == "token"
    t = im.tokenizer  # a traced example in the student's own vocabulary: [CLS] x x [SEP] / [CLS] x [SEP] [PAD]
    x = t.unk_token_id
    example = (torch.tensor([[t.cls_token_id, x, x, t.sep_token_id], [t.cls_token_id, x, t.sep_token_id, pad_id]]),
               torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    module = student.export_module().eval()
    fp32_path = onnx_path(d, "fp32")
    staged = fp32_path.with_name(".model.unchecked.onnx")
    export_module_to_onnx(module, example, staged, token_level, meta)

    def run_onnx(path) -> list[np.ndarray]:
        return OnnxStudent(ort_session(path, threads), adapter, Path(path), "").logits(enc, pad_id)

    def score(logits) -> dict:
        s = adapter.score(adapter.decode(logits, enc), gold)
        return {k: v for k, v in s.items() if isinstance(v, (int, float))}

    def diff(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float, float]:
        """max and mean absolute difference over real positions, and argmax agreement."""
        d_all = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)])
        agree = np.mean(np.concatenate([(np.asarray(x).argmax(-1) == np.asarray(y).argmax(-1)).ravel() for x, y in zip(a, b)]))
        return float(d_all.max()), float(d_all.mean()), float(agree)

    ref = student_logits(student, adapter, enc, pad_id)
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
        "versions": _versions(), "threads": int(threads or torch.get_num_threads()),
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
