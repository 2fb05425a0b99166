"""ONNX primitives: export a module, int8 dynamic quantization, ONNX Runtime sessions, and the
ONNX Runtime student (:class:`OnnxStudent`). The ``export`` command itself (with its parity check
on real data) is :mod:`xdistill.serving.export`.

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

import logging
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from ..adapters import OutputLevel, batched_logits
from ..errors import ConfigError, XDistillError
from ..utils import file_sha256

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


def ort_session(path: str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU with a fixed thread count.

    ``threads`` sets ``intra_op_num_threads`` (default: ``torch.get_num_threads()``, so both
    runtimes use the same number); inter-op parallelism is off (sequential execution).

    Raises:
        ConfigError: the file is missing or is not a valid ONNX model.
    """
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
                          level: OutputLevel, metadata: dict[str, str] | None = None) -> Path:
    """Export ``module(input_ids, attention_mask) -> logits`` to ``path`` atomically.

    ``example``: two ``(B, T)`` int64 tensors used for tracing. Axes 0 (``batch``) and 1
    (``sequence``) of both inputs are dynamic, as are the output's axes that ``level`` names
    (batch, and sequence for token tasks). ``metadata`` goes into the model's ``metadata_props``.

    Raises:
        ExportError: ``torch.onnx.export`` or the ONNX checker failed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT_NAME: dict(level.output_axes)}
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
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@dataclass
class OnnxStudent:
    """A student's ONNX graph in an ONNX Runtime session; :meth:`logits` has the signature of
    :meth:`xdistill.students.Student.logits`, so that an inference model uses either runtime the
    same way."""

    session: object
    path: Path
    precision: str
    batch_size: int = 64

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        """``(B, T)`` int64 inputs -> the graph's ``logits`` (numpy)."""
        return self.session.run([OUTPUT_NAME], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})[0]

    def logits(self, level: OutputLevel, encoded, pad_id: int, batch_size: int | None = None) -> list[np.ndarray]:
        """Per-row logits (``(T_i, C)`` or ``(C,)``) for encoded rows, in row order, in length-bucketed
        batches of ``batch_size`` rows (default :attr:`batch_size`)."""
        return batched_logits(self.forward, level, encoded, pad_id, batch_size=batch_size or self.batch_size)


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


def load_onnx_student(student_dir: str | Path, num_labels: int, precision: str = "fp32",
                      threads: int | None = None) -> OnnxStudent:
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
    if out_shape[-1] != num_labels:
        raise ConfigError(f"{path}: {out_shape[-1]} output classes; this student has {num_labels} labels")
    return OnnxStudent(session, path, precision)


def versions() -> dict:
    """Versions of the libraries an export depends on."""
    return {"torch": torch.__version__, "onnxruntime": ort.__version__, "onnx": onnx.__version__,
            "python": platform.python_version()}


