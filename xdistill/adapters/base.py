"""The task adapter interface.

NER and sequence classification differ only in their adapter (the pattern of
flair's ``flair/nn/model.py``): how labels align to subword tokens, which
positions' logits and hidden states are distilled, how predictions are decoded
and which metric scores them. Everything else (teacher, cache, student, staged
schedule, report) is shared and never branches on the task.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..taskspec import TaskSpec


@dataclass
class Encoded:
    """Model inputs for a split: one row per window (a sentence longer than the
    maximum length becomes several windows; nothing is truncated).

    ``input_ids[i]`` are the teacher tokenizer's ids with ``[CLS]``/``[SEP]``;
    ``labels[i]`` is per position for token tasks (-100 where unlabeled) or a
    one-element list for sequence tasks; ``word_index[i]`` maps each position to
    the word it starts (-1 elsewhere); ``example[i]`` is the row's source
    example. ``n_words[e]`` is the word count of example ``e``.
    """

    input_ids: list[list[int]]
    labels: list[list[int]]
    word_index: list[list[int]]
    example: list[int]
    n_words: list[int]
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    @staticmethod
    def concat(parts: Sequence["Encoded"]) -> "Encoded":
        """Rows of ``parts`` in order, examples renumbered; stats summed where numeric."""
        out = Encoded([], [], [], [], [])
        for p in parts:
            base = len(out.n_words)
            out.input_ids += p.input_ids
            out.labels += p.labels
            out.word_index += p.word_index
            out.example += [e + base for e in p.example]
            out.n_words += p.n_words
            for k, v in p.stats.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "max_length":
                    out.stats[k] = out.stats.get(k, 0) + v
                else:
                    out.stats.setdefault(k, v)
        return out

    def subset_examples(self, keep: Sequence[int]) -> "Encoded":
        """Rows of the given examples (renumbered 0..len(keep)-1)."""
        remap = {e: i for i, e in enumerate(keep)}
        rows = [r for r, e in enumerate(self.example) if e in remap]
        return Encoded(
            input_ids=[self.input_ids[r] for r in rows], labels=[self.labels[r] for r in rows],
            word_index=[self.word_index[r] for r in rows], example=[remap[self.example[r]] for r in rows],
            n_words=[self.n_words[e] for e in keep], stats=dict(self.stats))


class TaskAdapter(ABC):
    """What a task must say to be distilled. Subclasses implement the abstract methods.

    Attributes:
        level: ``"token"`` (outputs per position, ``(B, T, C)``) or ``"sequence"`` (``(B, C)``).
        primary_metric: key of :meth:`score`'s result used for model selection (higher is better).
    """

    level: str = "token"
    primary_metric: str = "f1"

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.labels: tuple[str, ...] = spec.labels
        self.label2id = {label: i for i, label in enumerate(self.labels)}

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    @abstractmethod
    def auto_model_class(self):
        """The ``transformers`` auto class of a teacher for this task."""

    @abstractmethod
    def encode(self, dataset, tokenizer, max_length: int) -> Encoded:
        """Tokenize a split (a ``datasets.Dataset``) into windows of at most ``max_length`` tokens."""

    @abstractmethod
    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list:
        """Predictions per example from per-row logits (``(T_i, C)`` or ``(C,)`` each)."""

    @abstractmethod
    def gold(self, dataset) -> list:
        """Gold labels per example, in the form :meth:`decode` returns."""

    @abstractmethod
    def score(self, predictions: list, gold: list) -> dict[str, Any]:
        """Metrics in percent; includes :attr:`primary_metric`."""

    @abstractmethod
    def distill_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Which outputs are distilled: ``(B, T)`` for token tasks, ``(B,)`` for sequence tasks."""

    @abstractmethod
    def teacher_outputs(self, logits: torch.Tensor, hidden: torch.Tensor, lengths: Sequence[int]) -> tuple[list, list]:
        """Per-row teacher logits and representation to cache, from a batch's ``(B, T, C)`` logits and ``(B, T, D)`` hidden states."""

    @abstractmethod
    def positions_per_row(self, lengths: np.ndarray) -> np.ndarray:
        """How many cached teacher positions each row has (its length, or 1 for sequence tasks)."""

    @abstractmethod
    def collate(self, encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """Batch tensors: ``input_ids``/``attention_mask`` ``(B, T)`` and ``labels`` ``(B, T)`` or ``(B,)``."""

    @abstractmethod
    def row_logits(self, logits: torch.Tensor, lengths: Sequence[int]) -> list[np.ndarray]:
        """Split a batch's model logits into per-row arrays (``(T_i, C)`` or ``(C,)``)."""

    @abstractmethod
    def teacher_batch(self, teacher, rows: Sequence[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached teacher logits and hidden states for ``rows``, shaped like the student's outputs
        (``(B, T, C)``/``(B, T, D)`` padded to ``width``, or ``(B, C)``/``(B, D)``)."""

    @abstractmethod
    def student_pooling(self, requested: str) -> str:
        """The student's pooling for this task: ``"none"`` (one output per position) or ``requested``."""

    @abstractmethod
    def trainer_example(self, encoded: Encoded, i: int) -> dict:
        """Row ``i`` as a ``transformers.Trainer`` example (``input_ids``, ``labels``)."""

    @abstractmethod
    def trainer_collator(self, tokenizer):
        """A ``transformers`` data collator for :meth:`trainer_example` rows."""

    @abstractmethod
    def trainer_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Validation metrics for ``Trainer`` (``compute_metrics``): includes :attr:`primary_metric`."""

    @abstractmethod
    def texts(self, dataset) -> list[str]:
        """Plain text of each example (for a generator's training data and overlap filters)."""

    @abstractmethod
    def unlabeled_dataset(self, texts: Sequence[str]):
        """A split of unlabeled examples made from raw texts (generated transfer text)."""

    @abstractmethod
    def predict_texts(self, model, texts: Sequence[str]) -> list[dict]:
        """Predictions for raw texts with an :class:`~xdistill.inference.InferenceModel` (one dict per text)."""

    @abstractmethod
    def read_labeled_file(self, path, fmt: str) -> tuple[Any, dict]:
        """A labeled evaluation file as a split (``datasets.Dataset``-like) and its read counts."""
