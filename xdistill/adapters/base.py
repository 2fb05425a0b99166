"""The task adapter interface: the one place that knows a task's type.

NER and text classification differ only in their adapter (the pattern of flair's
``flair/nn/model.py``): how their data is read and split, how labels align to subword
tokens, how predictions are decoded and which metric scores them. What follows only from
predicting per token or per sequence (shapes, masks, cached positions, pooling) is the
adapter's :class:`~xdistill.adapters.levels.OutputLevel`. Everything else (teacher, cache,
students, schedule, serving, report) asks the adapter or its level and never branches on
the task type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..data.taskspec import TaskSpec
from ..data.types import Encoded, TaskData
from ..errors import ConfigError
from .levels import OutputLevel


class TaskAdapter(ABC):
    """What a task must say to be distilled. Subclasses set the class attributes and implement
    the nine abstract methods (data: :meth:`load_data`, :meth:`read_labeled_file`,
    :meth:`from_texts`, :meth:`texts`, :meth:`gold`; model inputs and outputs: :meth:`encode`,
    :meth:`decode`, :meth:`score`, :meth:`predict_texts`).

    Attributes:
        type: the task type a task file names (``token-classification``).
        command: the command that distils it (``ner``).
        level: the output level (:data:`~xdistill.adapters.levels.TOKEN` or ``SEQUENCE``).
        arguments: the task's own argument dataclasses (its data budgets, generation options).
        formats: file formats its task files may name in ``[local] format``.
        metrics: the values a task file's ``metric`` may take -> the key of :meth:`score`'s result
            it selects models by (higher is better); ``primary_metric`` is the task file's.
        unit: what one example is called in reports (``sentences``, ``texts``).
        group_name: the report's name for the groups (``languages``), or ``None`` for one group.
    """

    type: ClassVar[str]
    command: ClassVar[str]
    level: ClassVar[OutputLevel]
    arguments: ClassVar[tuple[type, ...]]
    formats: ClassVar[tuple[str, ...]]
    metrics: ClassVar[dict[str, str]]
    unit: ClassVar[str]
    group_name: ClassVar[str | None] = None
    description: ClassVar[str] = ""

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.labels: tuple[str, ...] = spec.labels
        self.label2id = {label: i for i, label in enumerate(self.labels)}
        #: the key of :meth:`score`'s result that model selection and reports use (the task file's metric)
        self.primary_metric: str = self.metrics.get(spec.metric, next(iter(self.metrics.values())))

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def metric_description(self) -> str:
        """How :attr:`primary_metric` is computed, for reports."""
        return f"{self.primary_metric}, %"

    @classmethod
    def check_spec(cls, spec: TaskSpec) -> None:
        """Check what the task file's keys may hold for this task type (here: ``metric`` is one of
        :attr:`metrics`, ``local.format`` one of :attr:`formats`; subclasses add their own checks).

        Raises:
            ConfigError: naming the file and key.
        """
        if spec.metric not in cls.metrics:
            raise ConfigError(f"{spec.path or spec.name}: key 'metric' must be one of {', '.join(cls.metrics)} for a "
                              f"{cls.type} task, got {spec.metric!r}")
        fmt = spec.local.get("format")
        if fmt is not None and fmt not in cls.formats:
            raise ConfigError(f"{spec.path or spec.name}: key 'local.format' must be one of {', '.join(cls.formats)} "
                              f"for a {cls.type} task, got {fmt!r}")

    # -- data ---------------------------------------------------------------------------------
    @abstractmethod
    def load_data(self, args) -> TaskData:
        """Every split of every group, from local files or the hub, as ``args`` (this task's
        data arguments) asks."""

    @abstractmethod
    def read_labeled_file(self, path, fmt: str) -> tuple[Any, dict]:
        """A labeled evaluation file as a split (``datasets.Dataset``-like) and its read counts."""

    @abstractmethod
    def from_texts(self, texts: Sequence[str], group: str = "generated"):
        """A split of unlabeled examples made from raw texts (e.g. generated transfer text) of ``group``."""

    def words(self, texts: Sequence[str]) -> list[list[str]]:
        """Per text, its words as the task splits them (here: at whitespace), e.g. for ``--ood-span``."""
        return [t.split() for t in texts]

    @abstractmethod
    def texts(self, dataset) -> list[str]:
        """Plain text of each example (for a generator's training data and overlap filters)."""

    def train_texts(self, args, groups: Sequence[str]) -> list[str]:
        """Plain text of every example of the task's train files for ``groups`` (labels unused; as
        :meth:`texts` writes them): ``--mlm-text train``.

        Raises:
            ConfigError: the task has no train files beyond its splits (names the option).
        """
        raise ConfigError(f"--mlm-text train: the {self.type} task reads no train text beyond its splits; expected "
                          "transfer, labeled or text files")

    def label_all_tokens(self, encoded: Encoded) -> Encoded:
        """Training rows with every subword of a word labeled (``--teacher-label-all-tokens``); a task
        whose labels are not per word has none.

        Raises:
            ConfigError: the task has one label per example (its rows carry no per-subword labels).
        """
        raise ConfigError(f"--teacher-label-all-tokens: the {self.type} task has one label per example, not per "
                          "word; the option applies to token tasks (ner)")

    @abstractmethod
    def gold(self, dataset) -> list:
        """Gold labels per example, in the form :meth:`decode` returns."""

    # -- model inputs and outputs -------------------------------------------------------------
    @abstractmethod
    def encode(self, dataset, tokenizer, max_length: int, split: str = "") -> Encoded:
        """Tokenize a split into rows of at most ``max_length`` tokens (``split`` names it in log lines)."""

    @abstractmethod
    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list:
        """Predictions per example from per-row logits (``(T_i, C)`` or ``(C,)`` each)."""

    @abstractmethod
    def score(self, predictions: list, gold: list) -> dict[str, Any]:
        """Metrics in percent; includes :attr:`primary_metric`."""

    def score_unseen(self, predictions: list, gold: list, seen: Sequence[int]) -> dict[str, Any]:
        """:meth:`score` of all examples, with ``unseen``: the same metrics over the examples whose
        position is not in ``seen`` (the evaluation rows whose text also stands in the train file,
        :attr:`~xdistill.data.types.GroupData.evaluation_in_train`), the score that does not reward
        memory of training text.

        Raises:
            ValueError: ``predictions`` and ``gold`` differ in length, or a position is out of range.
        """
        if len(predictions) != len(gold) or any(not 0 <= i < len(gold) for i in seen):
            raise ValueError(f"score_unseen: {len(predictions)} predictions, {len(gold)} gold examples, "
                             f"seen positions {min(seen, default=0)}..{max(seen, default=0)}")
        held = set(seen)
        keep = [i for i in range(len(gold)) if i not in held]
        return {**self.score(predictions, gold), "unseen": self.score([predictions[i] for i in keep], [gold[i] for i in keep])}

    @abstractmethod
    def predict_texts(self, model, texts: Sequence[str]) -> list[dict]:
        """Predictions for raw texts with an inference model (anything with ``tokenizer``,
        ``max_length`` and ``logits(encoded)``), one dict per text."""

    def result_words(self, result: dict) -> int:
        """Words in one :meth:`predict_texts` result, for throughput (words/s): whitespace-separated
        words of its text unless an adapter counts otherwise."""
        return len(result["text"].split())

    # -- transfer text -------------------------------------------------------------------------
    def group_script(self, group: str) -> str | None:
        """The ISO 15924 script a group's text is written in (``None``: unknown, no script filter)."""
        return None

    def informative(self, prediction) -> bool:
        """Whether the teacher's prediction on a transfer text (as :meth:`decode` gives it) carries
        task signal (NER: an entity); every prediction does unless an adapter says otherwise."""
        return True

    def prediction_profile(self, predictions: list) -> dict[str, Any]:
        """What the teacher's predictions on a transfer set look like: ``labels`` (the share of each
        predicted label, percent) over ``n`` examples (NER adds entity rates)."""
        flat = [p for x in predictions for p in (x if isinstance(x, list) else [x])]
        n = max(1, len(flat))
        return {"n": len(predictions), "labels": {lab: round(100 * sum(p == lab for p in flat) / n, 2)
                                                   for lab in self.labels}}

    # -- shared, from the level -----------------------------------------------------------------
    def collate(self, encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        """Batch tensors: ``input_ids``/``attention_mask`` ``(B, T)`` and ``labels``."""
        return self.level.collate(encoded, rows, pad_id)

    def trainer_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Validation metrics for ``transformers.Trainer`` (``compute_metrics``): the float
        scores of :meth:`score`, :attr:`primary_metric` among them."""
        preds, gold = self.level.trainer_predictions(logits, labels, self.labels)
        return {k: v for k, v in self.score(preds, gold).items() if isinstance(v, float)}
