"""Loading a saved student (or a teacher folder) for evaluation and prediction.

:func:`load_model` returns an :class:`InferenceModel` that tokenizes words
with the model's tokenizer, splits long sentences into windows (as in
training, so every word gets a prediction) and returns word-level tags, entity
spans over raw text, or scores on a labeled file. A student runs in PyTorch
(``runtime="torch"``) or in ONNX Runtime (``runtime="onnx"``, fp32 or int8,
after ``python -m xdistill export``); everything but the logits is shared, so
both runtimes give the same outputs up to the export's logit tolerance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .adapters import make_adapter
from .errors import ConfigError
from .students.base import is_student_dir, load_student
from .taskspec import TaskSpec


@dataclass
class InferenceModel:
    """A model ready for inference.

    ``kind`` is ``"student"`` or ``"teacher"``; ``runtime`` is ``"torch"`` or ``"onnx"`` (then
    ``model`` is an :class:`~xdistill.onnx_export.OnnxStudent`); ``precision`` is ``"fp32"`` or
    ``"int8"`` (ONNX only).
    """

    kind: str
    model: object
    tokenizer: object
    adapter: object
    max_length: int
    path: str
    runtime: str = "torch"
    precision: str = "fp32"

    def logits(self, encoded) -> list[np.ndarray]:
        """Per-row logits (``(T_i, C)`` for token tasks, ``(C,)`` for sequence tasks) for encoded windows."""
        from .distill import student_logits
        from .teacher import predict_logits

        pad = self.tokenizer.pad_token_id
        if self.runtime == "onnx":
            return self.model.logits(encoded, pad)
        if self.kind == "student":
            return student_logits(self.model, self.adapter, encoded, pad)
        return predict_logits(self.model, self.adapter, encoded, pad)

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """IOB2 tag per word for each sentence (a list of words); token-classification models only."""
        ds = {"tokens": [list(s) for s in sentences], "tags": [[] for _ in sentences]}
        enc = self.adapter.encode(ds, self.tokenizer, self.max_length)
        return self.adapter.decode(self.logits(enc), enc)

    def predict(self, texts: Sequence[str]) -> list[dict]:
        """Raw texts -> one dict per text: entity spans (NER) or class and probability (classification)."""
        return self.adapter.predict_texts(self, list(texts))

    def evaluate_file(self, path: str | Path, fmt: str = "auto") -> dict:
        """Score the model on a labeled file; metrics in percent.

        NER: PAN-X or CoNLL files; classification: CSV or JSON lines with the task file's columns.
        """
        ds, counts = self.adapter.read_labeled_file(path, fmt)
        enc = self.adapter.encode(ds, self.tokenizer, self.max_length)
        preds = self.adapter.decode(self.logits(enc), enc)
        scores = self.adapter.score(preds, self.adapter.gold(ds))
        return {"model": self.path, "model_kind": self.kind, "runtime": f"{self.runtime}-{self.precision}",
                "data": str(path), **counts, **scores}


def _spec_for(cfg: dict, labels: tuple[str, ...], task_type: str) -> TaskSpec:
    """The saved task file when it is still there (columns, cleaning), else a minimal spec."""
    from .taskspec import load_task

    for ref in (cfg.get("task_file"), cfg.get("task")):
        if ref:
            try:
                spec = load_task(ref)
            except Exception:
                continue
            if spec.labels == labels and spec.type == task_type:
                return spec
    return TaskSpec(name=cfg.get("task", "task"), type=task_type, labels=labels,
                    metric="seqeval" if task_type == "token-classification" else "accuracy")


RUNTIMES = ("torch", "onnx")
PRECISIONS = ("fp32", "int8")


def load_model(directory: str | Path, max_length: int | None = None, runtime: str = "torch",
               precision: str = "fp32", threads: int | None = None) -> InferenceModel:
    """Load a saved student (``xdistill`` student folder) or a teacher (``save_pretrained`` folder).

    ``runtime="onnx"`` runs a student's ``onnx/model.onnx`` (``precision="fp32"``) or
    ``onnx/model.int8.onnx`` (``"int8"``) in ONNX Runtime with ``threads`` intra-op threads
    (default ``torch.get_num_threads()``); tokenization, windowing and decoding are the same as
    with ``runtime="torch"``. Use it inside a service::

        model = load_model("runs/ner-cpu/student", runtime="onnx")
        model.predict(["Angela Merkel besuchte Paris."])

    Raises:
        ConfigError: the folder holds neither; an unknown runtime or precision; ``runtime="onnx"``
            for a teacher or for a student without (matching) ONNX files.
    """
    from transformers import AutoConfig, AutoTokenizer

    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if runtime == "torch" and precision != "fp32":
        raise ConfigError("--precision int8 needs --runtime onnx (int8 models are ONNX Runtime files)")
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"--model: {d} is not a directory")
    if is_student_dir(d):
        model, cfg = load_student(d)
        spec = _spec_for(cfg, tuple(cfg["labels"]), cfg.get("task_type", "token-classification"))
        tok = AutoTokenizer.from_pretrained(d)
        adapter = make_adapter(spec)
        if runtime == "onnx":
            from .onnx_export import load_onnx_student

            model = load_onnx_student(d, adapter, precision, threads)
        ml = max_length if max_length is not None else int(cfg.get("max_length", 128))
        return InferenceModel("student", model, tok, adapter, ml, str(d), runtime, precision)
    if runtime == "onnx" and (d / "config.json").is_file():
        raise ConfigError(f"--model {d}: a teacher checkpoint; --runtime onnx serves xdistill students "
                          "(export a teacher with transformers' own ONNX tools)")
    if (d / "config.json").is_file():
        cfg = AutoConfig.from_pretrained(d)
        labels = tuple(cfg.id2label[i] for i in range(len(cfg.id2label)))
        archs = " ".join(cfg.architectures or [])
        task_type = "sequence-classification" if "SequenceClassification" in archs else "token-classification"
        meta = d / "xdistill_teacher.json"
        saved = json.loads(meta.read_text()).get("task", {}) if meta.is_file() else {}
        spec = _spec_for(saved, labels, task_type)
        adapter = make_adapter(spec)
        model = adapter.auto_model_class.from_pretrained(d)
        model.eval()
        tok = AutoTokenizer.from_pretrained(d)
        ml = max_length if max_length is not None else min(512, int(getattr(cfg, "max_position_embeddings", 512)))
        return InferenceModel("teacher", model, tok, adapter, ml, str(d))
    from .students.base import run_folder_hint

    raise ConfigError(f"--model {d}: no student (config.json with \"xdistill_student\") or transformers checkpoint "
                      f"(config.json) here{run_folder_hint(d)}")
