"""Sequence classification adapter: one label per text, [CLS] representation, accuracy and macro F1."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..batching import collate
from .base import Encoded, TaskAdapter

logger = logging.getLogger(__name__)

IGNORE = -100


class SequenceClassificationAdapter(TaskAdapter):
    """Text classification.

    Each example is one row: ``[CLS]`` + the first ``max_length - 2`` subwords
    + ``[SEP]``. Long texts are truncated deliberately (the preset sets the
    maximum length) and the truncation is counted in ``Encoded.stats``
    (``examples_truncated``, ``tokens_cut``), which the report shows. The
    distilled outputs are the teacher's sequence logits ``(B, C)`` and its
    first-token (``[CLS]``) hidden state ``(B, D)``, matched by a pooled
    student state. Metrics: accuracy and macro F1 in percent.
    """

    level = "sequence"
    primary_metric = "accuracy"

    @property
    def auto_model_class(self):
        from transformers import AutoModelForSequenceClassification
        return AutoModelForSequenceClassification

    def encode(self, dataset, tokenizer, max_length: int) -> Encoded:
        """One row per text (``dataset["text"]``; ``dataset["label"]`` label names or empty for transfer text)."""
        texts, labels = list(dataset["text"]), list(dataset["label"])
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        return self.encode_ids(ids, labels, tokenizer, max_length)

    def encode_ids(self, ids: Sequence[Sequence[int]], labels: Sequence[str], tokenizer, max_length: int) -> Encoded:
        """:meth:`encode` from subword ids already computed (without special tokens).

        Raises:
            ValueError: ``max_length`` below 3.
        """
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS], one token, [SEP]), got {max_length}")
        budget = max_length - 2
        enc = Encoded([], [], [], [], [])
        truncated = cut = 0
        for e, (x, lab) in enumerate(zip(ids, labels)):
            if len(x) > budget:
                truncated += 1
                cut += len(x) - budget
                x = x[:budget]
            row = [tokenizer.cls_token_id, *x, tokenizer.sep_token_id]
            enc.input_ids.append(row)
            enc.labels.append([self.label2id[lab] if lab else IGNORE])
            enc.word_index.append([-1] * len(row))
            enc.example.append(e)
            enc.n_words.append(1)
        enc.stats = {"examples": len(ids), "windows": len(ids), "examples_truncated": truncated, "tokens_cut": cut,
                     "max_length": max_length}
        if truncated:
            logger.info("%d of %d texts longer than %d tokens were truncated (%d tokens cut)", truncated, len(ids), max_length, cut)
        return enc

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list[str]:
        """The argmax label name per example."""
        out: list[str | None] = [None] * len(encoded.n_words)
        for row, lg in enumerate(logits):
            out[encoded.example[row]] = self.labels[int(np.asarray(lg).argmax(-1))]
        return out  # type: ignore[return-value]

    def probabilities(self, logits: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Softmax over classes per row."""
        return [torch.softmax(torch.as_tensor(np.asarray(x, dtype=np.float32)), -1).numpy() for x in logits]

    def gold(self, dataset) -> list[str]:
        return list(dataset["label"])

    def score(self, predictions: list[str], gold: list[str]) -> dict[str, Any]:
        """``accuracy`` and ``macro_f1`` in percent, plus per-class F1 (scikit-learn)."""
        from sklearn.metrics import accuracy_score, f1_score

        if len(predictions) != len(gold):
            raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold labels")
        if not gold:
            return {"accuracy": 0.0, "macro_f1": 0.0, "per_class": {}, "n": 0}
        per = f1_score(gold, predictions, labels=list(self.labels), average=None, zero_division=0)
        return {"accuracy": 100 * accuracy_score(gold, predictions),
                "macro_f1": 100 * f1_score(gold, predictions, labels=list(self.labels), average="macro", zero_division=0),
                "per_class": {lab: 100 * float(f) for lab, f in zip(self.labels, per)}, "n": len(gold)}

    def distill_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B,)`` all true: one output per example."""
        return torch.ones(attention_mask.size(0), dtype=torch.bool, device=attention_mask.device)

    def teacher_outputs(self, logits: torch.Tensor, hidden: torch.Tensor, lengths: Sequence[int]):
        """Per row: logits ``(1, C)`` and the first-token hidden state ``(1, D)``."""
        return [logits[i: i + 1] for i in range(len(lengths))], [hidden[i, :1] for i in range(len(lengths))]

    def positions_per_row(self, lengths: np.ndarray) -> np.ndarray:
        return np.ones_like(np.asarray(lengths))

    def collate(self, encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        return collate(encoded, rows, pad_id, sequence_level=True)

    def row_logits(self, logits: torch.Tensor, lengths: Sequence[int]) -> list[np.ndarray]:
        """Per row a ``(C,)`` float32 array."""
        return [logits[j].float().numpy() for j in range(len(lengths))]

    def teacher_batch(self, teacher, rows: Sequence[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C)`` logits and ``(B, D)`` first-token hidden states."""
        lg, hd = teacher.batch(rows, 1)
        return lg[:, 0], hd[:, 0]

    def student_pooling(self, requested: str) -> str:
        return requested

    def trainer_example(self, encoded: Encoded, i: int) -> dict:
        return {"input_ids": encoded.input_ids[i], "labels": encoded.labels[i][0]}

    def trainer_collator(self, tokenizer):
        from transformers import DataCollatorWithPadding
        return DataCollatorWithPadding(tokenizer)

    def trainer_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        preds = [self.labels[i] for i in logits.argmax(-1)]
        gold = [self.labels[i] for i in labels]
        s = self.score(preds, gold)
        return {"accuracy": s["accuracy"], "macro_f1": s["macro_f1"]}

    def texts(self, dataset) -> list[str]:
        return list(dataset["text"])

    def predict_texts(self, model, texts: Sequence[str]) -> list[dict]:
        """Per text: the class and its probability, every class's probability, and ``tokens_cut``
        (subwords beyond the maximum length, dropped as in training; 0 for most texts).

        Raises:
            EmptyTextError: a text is empty or only whitespace (``indices`` name them).
        """
        from ..errors import EmptyTextError

        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise EmptyTextError(empty)
        ids = model.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
        enc = self.encode_ids(ids, [""] * len(ids), model.tokenizer, model.max_length)
        probs = self.probabilities(model.logits(enc))
        cut = [max(0, len(x) - (model.max_length - 2)) for x in ids]
        return [{"text": t, "label": self.labels[int(p.argmax())], "probability": float(p.max()),
                 "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}, "tokens_cut": c}
                for t, p, c in zip(texts, probs, cut)]

    def read_labeled_file(self, path, fmt: str):
        """A CSV or JSON-lines file read with the task file's columns, label values and cleaning
        (``fmt``: auto picks jsonl for ``.jsonl``/``.jsonl.gz`` names, else csv)."""
        from dataclasses import replace as dc_replace

        from ..data.text import read_text_file, to_dataset

        if fmt == "auto":
            name = Path(path).name.removesuffix(".gz")
            fmt = "jsonl" if name.endswith((".jsonl", ".json")) else "csv"
        if fmt not in ("csv", "jsonl"):
            from ..errors import ConfigError
            raise ConfigError(f"--format: a text-classification model reads csv or jsonl files, got {fmt!r}")
        spec = dc_replace(self.spec, local={**self.spec.local, "format": fmt})
        pairs, stats = read_text_file(path, spec, labeled=True)
        return to_dataset(pairs), {"texts": stats.rows, "cleaned": stats.cleaned, "label_counts": stats.label_counts}

    def unlabeled_dataset(self, texts: Sequence[str]):
        from ..data.text import to_dataset
        return to_dataset([(t, "") for t in texts])
