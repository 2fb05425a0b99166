"""Loading a saved student (or a teacher folder) for evaluation and prediction.

:func:`load_model` returns an :class:`InferenceModel` that tokenizes words
with the model's tokenizer, splits long sentences into windows (as in
training, so every word gets a prediction) and returns word-level tags, entity
spans over raw text, or scores on a labeled file.
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
    """A model ready for inference: ``kind`` is ``"student"`` or ``"teacher"``."""

    kind: str
    model: object
    tokenizer: object
    adapter: object
    max_length: int
    path: str

    def logits(self, encoded) -> list[np.ndarray]:
        """Per-row logits ``(T_i, C)`` for encoded windows."""
        from .distill import student_logits
        from .teacher import predict_logits

        if self.kind == "student":
            return student_logits(self.model, self.adapter, encoded, self.tokenizer.pad_token_id)
        return predict_logits(self.model, self.adapter, encoded, self.tokenizer.pad_token_id)

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
        return {"model": self.path, "model_kind": self.kind, "data": str(path), **counts, **scores}


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


def load_model(directory: str | Path, max_length: int | None = None) -> InferenceModel:
    """Load a saved student (``xdistill`` student folder) or a teacher (``save_pretrained`` folder).

    Raises:
        ConfigError: the folder holds neither.
    """
    from transformers import AutoConfig, AutoTokenizer

    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"--model: {d} is not a directory")
    if is_student_dir(d):
        model, cfg = load_student(d)
        spec = _spec_for(cfg, tuple(cfg["labels"]), cfg.get("task_type", "token-classification"))
        tok = AutoTokenizer.from_pretrained(d)
        return InferenceModel("student", model, tok, make_adapter(spec), max_length if max_length is not None else int(cfg.get("max_length", 128)), str(d))
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
    raise ConfigError(f"--model {d}: no student (config.json with \"xdistill_student\") or transformers checkpoint (config.json) here")
