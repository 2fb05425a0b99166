"""Output levels: what follows from a task predicting one label per token or one per sequence.

A task adapter owns one level (:data:`TOKEN` or :data:`SEQUENCE`). Code that handles model
outputs (the teacher-output cache, the losses' masks, students, inference, ONNX export, the
benchmark) asks the level instead of branching on the task type:

=================  ==================================  ==================================
                   ``TOKEN``                           ``SEQUENCE``
=================  ==================================  ==================================
logits             ``(B, T, C)``                       ``(B, C)``
labels             ``(B, T)``, -100 where unlabeled    ``(B,)``
distilled outputs  real subwords, ``[CLS]``/final      one per row (mask ``(B,)``)
                   ``[SEP]`` excluded (mask ``(B, T)``)
cached positions   every position of a row             the first (``[CLS]``) position
student pooling    none                                the student's (``max``, ``attention``)
=================  ==================================  ==================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch
from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification,
                          DataCollatorForTokenClassification, DataCollatorWithPadding)

from ..data.batching import IGNORE, bucket_batches, collate_inputs, pad_rows
from ..data.types import Encoded


class OutputLevel(ABC):
    """The output granularity of a task. Subclasses: :class:`TokenLevel`, :class:`SequenceLevel`."""

    name: ClassVar[str]
    #: the ``transformers`` architecture suffix of a checkpoint at this level (``...ForTokenClassification``)
    head: ClassVar[str]
    #: the ``transformers.pipeline`` task of a model at this level, and the options that make it label
    #: words as xdistill does (a word's label is its first subword's)
    pipeline_task: ClassVar[str]
    pipeline_options: ClassVar[str]

    @property
    @abstractmethod
    def auto_model_class(self):
        """The ``transformers`` auto class of a classifier at this level."""

    @abstractmethod
    def labels_tensor(self, labels: Sequence[Sequence[int]]) -> torch.Tensor:
        """Batch labels: ``(B, T)`` padded with -100, or ``(B,)``."""

    @abstractmethod
    def distill_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Which outputs are distilled: ``(B, T)`` bool for token tasks, ``(B,)`` for sequence tasks."""

    @abstractmethod
    def positions(self, lengths: np.ndarray) -> np.ndarray:
        """``(N,)``: how many positions of each row the teacher-output cache stores."""

    @abstractmethod
    def feature_rows(self, feature: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
        """Split a batch feature into the per-row arrays the cache stores, ``(P_i, F)`` each:
        ``(B, T, F)`` -> the row's first ``lengths[i]`` positions (token) or its first position
        (sequence); ``(B, F)`` (sequence logits) -> ``(1, F)``."""

    @abstractmethod
    def target_batch(self, fetch: Callable[[Sequence[int], int], torch.Tensor], rows: Sequence[int],
                     width: int) -> torch.Tensor:
        """A cached feature shaped like the student's output: ``fetch(rows, width)`` gives
        ``(B, width, F)`` zero-padded; the result is that (token) or ``(B, F)`` (sequence)."""

    @abstractmethod
    def reduce(self, feature: torch.Tensor) -> torch.Tensor:
        """A live teacher feature shaped like the student's output: unchanged (token), or a
        per-position ``(B, T, F)`` feature's first position ``(B, F)`` (sequence)."""

    @abstractmethod
    def row_logits(self, logits: torch.Tensor, lengths: Sequence[int]) -> list[np.ndarray]:
        """Split a batch's logits into float32 rows, ``(T_i, C)`` or ``(C,)``."""

    @abstractmethod
    def student_pooling(self, requested: str) -> str:
        """The student's pooling: ``"none"`` (one output per position) or ``requested``."""

    @abstractmethod
    def trainer_example(self, encoded: Encoded, i: int) -> dict:
        """Row ``i`` as a ``transformers.Trainer`` example (``input_ids``, ``labels``)."""

    @abstractmethod
    def trainer_collator(self, tokenizer):
        """A ``transformers`` data collator for :meth:`trainer_example` rows."""

    @abstractmethod
    def trainer_predictions(self, logits: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> tuple[list, list]:
        """``(predictions, gold)`` label names from ``Trainer`` evaluation arrays (first-subword
        positions of each row for token tasks)."""

    @property
    @abstractmethod
    def output_axes(self) -> dict[int, str]:
        """Dynamic axes of the logits in an exported ONNX graph."""

    @abstractmethod
    def pseudo_labels(self, logits: np.ndarray, word_index: Sequence[int]) -> list[int]:
        """A row's hard labels from a model's logits, in the place gold labels take in
        :class:`~xdistill.data.types.Encoded` (self-training): the argmax of ``(T, C)`` logits at each
        position that starts a word (``word_index >= 0``) and -100 elsewhere, or ``[argmax]`` of ``(C,)``."""

    def collate(self, encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """Batch tensors: ``input_ids``/``attention_mask`` ``(B, T)`` and ``labels`` (see :meth:`labels_tensor`)."""
        b = collate_inputs(encoded, rows, pad_id)
        b["labels"] = self.labels_tensor([encoded.labels[r] for r in rows])
        return b

    def __repr__(self) -> str:
        return f"<{self.name} level>"


class TokenLevel(OutputLevel):
    """One output per subword position (NER)."""

    name = "token"
    head = "TokenClassification"
    pipeline_task = "token-classification"
    pipeline_options = 'aggregation_strategy="first"'

    @property
    def auto_model_class(self):
        return AutoModelForTokenClassification

    def labels_tensor(self, labels):
        return pad_rows(labels, IGNORE)

    def distill_mask(self, attention_mask):
        """Real subword positions without ``[CLS]`` (position 0) and the final ``[SEP]``."""
        mask = attention_mask.bool().clone()
        mask[:, 0] = False
        lengths = attention_mask.sum(1)
        mask[torch.arange(mask.size(0)), lengths - 1] = False
        return mask

    def positions(self, lengths):
        return np.asarray(lengths)

    def feature_rows(self, feature, lengths):
        return [feature[i, :n] for i, n in enumerate(lengths)]

    def target_batch(self, fetch, rows, width):
        return fetch(rows, width)

    def reduce(self, feature):
        return feature

    def row_logits(self, logits, lengths):
        x = logits.float().numpy()  # one conversion per batch; rows are numpy views of it
        return [x[j, :n] for j, n in enumerate(lengths)]

    def student_pooling(self, requested):
        return "none"

    def trainer_example(self, encoded, i):
        return {"input_ids": encoded.input_ids[i], "labels": encoded.labels[i]}

    def trainer_collator(self, tokenizer):
        return DataCollatorForTokenClassification(tokenizer)

    def trainer_predictions(self, logits, labels, names):
        preds = logits.argmax(-1)
        gold_seqs, pred_seqs = [], []
        for pr, lb in zip(preds, labels):
            keep = lb != IGNORE
            gold_seqs.append([names[i] for i in lb[keep]])
            pred_seqs.append([names[i] for i in pr[keep]])
        return pred_seqs, gold_seqs

    @property
    def output_axes(self):
        return {0: "batch", 1: "sequence"}

    def pseudo_labels(self, logits, word_index):
        return np.where(np.asarray(word_index) >= 0, logits.argmax(-1), IGNORE).tolist()


class SequenceLevel(OutputLevel):
    """One output per row (text classification); the teacher's sequence representation is its
    first-token (``[CLS]``) hidden state."""

    name = "sequence"
    head = "SequenceClassification"
    pipeline_task = "text-classification"
    pipeline_options = ""

    @property
    def auto_model_class(self):
        return AutoModelForSequenceClassification

    def labels_tensor(self, labels):
        return torch.tensor([x[0] for x in labels], dtype=torch.long)

    def distill_mask(self, attention_mask):
        """``(B,)`` all true: one output per example."""
        return torch.ones(attention_mask.size(0), dtype=torch.bool, device=attention_mask.device)

    def positions(self, lengths):
        return np.ones_like(np.asarray(lengths))

    def feature_rows(self, feature, lengths):
        if feature.dim() == 3:
            return [feature[i, :1] for i in range(len(lengths))]
        return [feature[i: i + 1] for i in range(len(lengths))]

    def target_batch(self, fetch, rows, width):
        return fetch(rows, 1)[:, 0]

    def reduce(self, feature):
        return feature[:, 0] if feature.dim() == 3 else feature

    def row_logits(self, logits, lengths):
        x = logits.float().numpy()
        return [x[j] for j in range(len(lengths))]

    def student_pooling(self, requested):
        return requested

    def trainer_example(self, encoded, i):
        return {"input_ids": encoded.input_ids[i], "labels": encoded.labels[i][0]}

    def trainer_collator(self, tokenizer):
        return DataCollatorWithPadding(tokenizer)

    def trainer_predictions(self, logits, labels, names):
        return [names[i] for i in logits.argmax(-1)], [names[i] for i in labels]

    @property
    def output_axes(self):
        return {0: "batch"}

    def pseudo_labels(self, logits, word_index):
        return [int(logits.argmax(-1))]


TOKEN = TokenLevel()
SEQUENCE = SequenceLevel()
LEVELS: dict[str, OutputLevel] = {TOKEN.name: TOKEN, SEQUENCE.name: SEQUENCE}


@torch.no_grad()
def batched_logits(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], level: OutputLevel,
                   encoded: Encoded, pad_id: int, batch_size: int = 256, max_tokens: int | None = None,
                   device: torch.device | str = "cpu") -> list[np.ndarray]:
    """Run ``forward(input_ids, attention_mask) -> logits`` over every row of ``encoded`` in
    length-bucketed batches (at most ``batch_size`` rows and ``max_tokens`` padded tokens) and
    return per-row float32 logits in row order: ``(T_i, C)`` (token) or ``(C,)`` (sequence).
    The same loop serves teachers, PyTorch students and ONNX Runtime sessions."""
    out: list = [None] * len(encoded)
    lengths = encoded.lengths
    for rows in bucket_batches(lengths, batch_size=batch_size, max_tokens=max_tokens):
        b = collate_inputs(encoded, rows, pad_id)
        logits = forward(b["input_ids"].to(device), b["attention_mask"].to(device))
        for r, x in zip(rows, level.row_logits(torch.as_tensor(logits).cpu(), [int(lengths[r]) for r in rows])):
            out[r] = x
    return out
