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
from .data.ner import words_of
from .data.readers import read_ner_file
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
        """IOB2 tag per word for each sentence (a list of words)."""
        ds = {"tokens": [list(s) for s in sentences], "tags": [[] for _ in sentences]}
        enc = self.adapter.encode(ds, self.tokenizer, self.max_length)
        return self.adapter.decode(self.logits(enc), enc)

    def tag_text(self, texts: Sequence[str]) -> list[dict]:
        """Entity spans in raw texts: ``{"text", "entities": [{"text", "type", "start", "end"}]}`` (character offsets)."""
        words = words_of(self.tokenizer, texts)
        tags = self.tag_words([[w for w, _, _ in ws] for ws in words]) if words else []
        out = []
        for text, ws, tg in zip(texts, words, tags):
            ents, cur = [], None
            for (w, s, e), t in zip(ws, tg):
                if t.startswith("B-") or (t.startswith("I-") and (cur is None or cur["type"] != t[2:])):
                    cur = {"type": t[2:], "start": s, "end": e}
                    ents.append(cur)
                elif t.startswith("I-"):
                    cur["end"] = e
                else:
                    cur = None
            out.append({"text": text, "entities": [{"text": text[x["start"]:x["end"]], **x} for x in ents]})
        return out

    def evaluate_file(self, path: str | Path, fmt: str = "auto") -> dict:
        """Score the model on a labeled file (PAN-X or CoNLL); metrics in percent."""
        sentences, stats = read_ner_file(path, format=fmt, label_set=self.adapter.labels)
        preds = self.tag_words([s.tokens for s in sentences])
        scores = self.adapter.score(preds, [list(s.tags) for s in sentences])
        return {"model": self.path, "model_kind": self.kind, "data": str(path), "sentences": stats.n_sentences,
                "tokens": stats.n_tokens, "repaired_tags": stats.n_repaired, **scores}


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
        spec = TaskSpec(name=cfg.get("task", "task"), type=cfg.get("task_type", "token-classification"),
                        labels=tuple(cfg["labels"]), metric="seqeval")
        tok = AutoTokenizer.from_pretrained(d)
        return InferenceModel("student", model, tok, make_adapter(spec), max_length if max_length is not None else int(cfg.get("max_length", 128)), str(d))
    if (d / "config.json").is_file():
        cfg = AutoConfig.from_pretrained(d)
        labels = tuple(cfg.id2label[i] for i in range(len(cfg.id2label)))
        spec = TaskSpec(name="teacher", type="token-classification", labels=labels, metric="seqeval")
        adapter = make_adapter(spec)
        model = adapter.auto_model_class.from_pretrained(d)
        model.eval()
        tok = AutoTokenizer.from_pretrained(d)
        ml = max_length if max_length is not None else min(512, int(getattr(cfg, "max_position_embeddings", 512)))
        return InferenceModel("teacher", model, tok, adapter, ml, str(d))
    raise ConfigError(f"--model {d}: no student (config.json with \"xdistill_student\") or transformers checkpoint (config.json) here")
