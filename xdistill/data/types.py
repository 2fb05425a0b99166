"""The types every layer shares: encoded rows, the splits of a task, and named model features.

They live in one module at the bottom of the package so that nothing above has to import a
sibling to name them (no import cycles).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ConfigError


@dataclass
class Encoded:
    """Model inputs for a split: one row per window (a sentence longer than the
    maximum length becomes several windows; nothing is truncated).

    ``input_ids[i]`` are the teacher tokenizer's ids with its special tokens (``[CLS]``/``[SEP]``
    or ``<s>``/``</s>``); ``labels[i]`` is per position for token tasks (-100 where unlabeled)
    or a one-element list for sequence tasks; ``word_index[i]`` maps each position to the word it
    starts (-1 elsewhere); ``example[i]`` is the row's source example. ``n_words[e]`` is the word
    count of example ``e``.
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
        """``(N,)`` int64: tokens per row, special tokens included."""
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


@dataclass
class GroupData:
    """All splits of one group: a language for NER, the task itself for classification.

    Each split is a ``datasets.Dataset``: NER columns ``tokens`` (words), ``tags`` (IOB2; empty in
    ``transfer``) and ``lang``; classification columns ``text`` and ``label`` (empty in ``transfer``).
    """

    lang: str
    labeled: object
    validation: object
    teacher_labeled: object
    transfer: object
    evaluation: object
    counts: dict = field(default_factory=dict)


@dataclass
class TaskData:
    """Splits per group, the groups asked for but missing, where the data came from, and how the
    labeled budgets were set (for the report)."""

    groups: dict[str, GroupData]
    missing: list
    source: str
    requested: str
    student_budget: str
    teacher_budget: str


#: the feature names a teacher or a student can return
FEATURE_NAMES = ("logits", "hidden_states", "attentions", "queries", "keys", "values")
#: features compared across positions (see :attr:`Feature.relational`)
RELATIONAL = ("attentions", "queries", "keys", "values")
#: features with a layer index
LAYERED = ("hidden_states", "attentions", "queries", "keys", "values")
_KEY = re.compile(r"^(logits|labels)$|^(hidden_states|attentions|queries|keys|values)\.(-?[0-9]+)$")


@dataclass(frozen=True)
class Feature:
    """A named model output: ``logits`` (``(B, T, C)`` or ``(B, C)``), ``hidden_states`` of layer
    ``layer`` (``(B, T, D)``; layer 0 is the embedding output, as in ``transformers``) or
    ``attentions`` of layer ``layer`` (``(B, A, T, T)``, softmax over the last axis), or the
    ``queries``, ``keys`` or ``values`` of attention layer ``layer`` (``(B, T, D)``, heads
    concatenated; read by :mod:`xdistill.modeling`). Attention layers are ``1..L``. ``labels``
    names the gold labels of a batch (a distillation target that is not a model output).

    ``key`` is the string form used in caches and reports: ``logits``, ``hidden_states.4``.
    """

    name: str
    layer: int | None = None

    def __post_init__(self) -> None:
        layered = self.name in LAYERED
        if self.name not in FEATURE_NAMES + ("labels",):
            raise ConfigError(f"feature {self.name!r}: expected one of {', '.join(FEATURE_NAMES)} or labels")
        if layered == (self.layer is None):
            raise ConfigError(f"feature {self.name!r}: " + ("needs a layer" if layered else "takes no layer"))

    @property
    def relational(self) -> bool:
        """Whether the feature relates positions to each other (attention maps, and the queries, keys
        and values whose relations MiniLM matches): kept for every position whatever the task's output
        level, and read from a live teacher, not the cache."""
        return self.name in RELATIONAL

    @property
    def key(self) -> str:
        """``logits``, ``hidden_states.4``: the name, and the layer when there is one."""
        return self.name if self.layer is None else f"{self.name}.{self.layer}"

    @classmethod
    def parse(cls, key: str) -> "Feature":
        """``"hidden_states.4"`` -> ``Feature("hidden_states", 4)``.

        Raises:
            ConfigError: not a feature key.
        """
        m = _KEY.match(key)
        if not m:
            raise ConfigError(f"feature {key!r}: expected logits, labels, hidden_states.L, attentions.L, queries.L, keys.L "
                              "or values.L")
        return cls(m.group(1)) if m.group(1) else cls(m.group(2), int(m.group(3)))

    def __str__(self) -> str:
        return self.key
