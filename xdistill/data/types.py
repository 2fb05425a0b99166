"""The types every layer shares: encoded rows, the splits of a task, and named model features.

They live in one module at the bottom of the package so that nothing above has to import a
sibling to name them (no import cycles).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """``concat(arange(c) for c in counts)``: ``(sum(counts),)`` int64, without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


class Ragged(Sequence):
    """Integer rows of different lengths in one flat ``int32`` array: row ``i`` is
    ``flat[offsets[i]:offsets[i + 1]]``.

    A read-only sequence of rows: ``ragged[i]`` is row ``i`` as a list of ints, ``ragged[a:b]`` and
    :meth:`take` are ``Ragged`` again, and a ``Ragged`` equals any sequence with the same rows. About 4
    bytes per value against about 36 for a list of Python ints, so a transfer set of hundreds of
    thousands of rows costs tens of MiB, not hundreds.

    Raises:
        ValueError: ``offsets`` is not a non-decreasing ``(N + 1,)`` array from 0 to ``len(flat)``.
    """

    __slots__ = ("flat", "offsets", "lengths")

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat = np.asarray(flat, dtype=np.int32)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        #: ``(N,)`` int64: values per row
        self.lengths = np.diff(self.offsets)
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0 \
                or self.offsets[-1] != len(self.flat) or (self.lengths < 0).any():
            raise ValueError(f"Ragged: offsets must rise from 0 to {len(self.flat)}, got {self.offsets[:5]}...")

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[int]]) -> "Ragged":
        """A ``Ragged`` of the given rows (lists, arrays or another ``Ragged``)."""
        if isinstance(rows, Ragged):
            return rows
        b = RaggedBuilder()
        for r in rows:
            b.append(r)
        return b.build()

    @classmethod
    def concat(cls, parts: Sequence["Ragged"]) -> "Ragged":
        """The rows of ``parts`` in order."""
        parts = [cls.from_rows(p) for p in parts]
        if not parts:
            return cls(np.zeros(0, np.int32), np.zeros(1, np.int64))
        starts = np.cumsum([0] + [len(p.flat) for p in parts[:-1]])
        offsets = np.concatenate([np.zeros(1, np.int64)] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return cls(np.concatenate([p.flat for p in parts]), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def values(self, a: int, z: int) -> np.ndarray:
        """Values ``a..z-1`` of all rows flattened, ``(z - a,)`` int32 (a view; subclasses may read them)."""
        return self.flat[a:z]

    def array(self, i: int) -> np.ndarray:
        """Row ``i`` as an ``int32`` array (a view, no copy)."""
        return self.values(int(self.offsets[i]), int(self.offsets[i + 1]))

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The values of ``rows`` (``(K,)`` int64 indices) in that order, concatenated."""
        lens = self.lengths[rows]
        # every value's source position: its row's start plus its place within the row
        return self.flat[np.repeat(self.offsets[rows], lens) + ragged_arange(lens)]

    def take(self, rows: Sequence[int]) -> "Ragged":
        """The rows ``rows`` in that order (``(K,)`` indices), as an in-memory ``Ragged``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(self.lengths[rows], out=offsets[1:])
        return Ragged(self.gather(rows), offsets)

    def padded(self, rows: Sequence[int], value: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows ``rows`` right-padded with ``value`` into one ``(B, T)`` int64 array (``T``: the
        longest of them), and the ``(B, T)`` bool mask of real positions; no Python loop over rows."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        lens = self.lengths[rows]
        mask = np.arange(int(lens.max()) if len(rows) else 0) < lens[:, None]
        out = np.full(mask.shape, value, np.int64)
        out[mask] = self.gather(rows)  # row-major order of the mask's true cells: each row's values in order
        return out, mask

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(range(len(self))[i])
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} out of range for {n} rows")
        return self.array(i % n).tolist()

    def iter_arrays(self) -> Iterator[np.ndarray]:
        """Every row in order as an ``int32`` array view."""
        flat, off = self.flat, self.offsets
        for i in range(len(self)):
            yield flat[off[i]:off[i + 1]]

    def __iter__(self) -> Iterator[list[int]]:
        return (a.tolist() for a in self.iter_arrays())

    def __eq__(self, other) -> bool:
        if isinstance(other, Ragged):
            return np.array_equal(self.offsets, other.offsets) and np.array_equal(self.flat, other.flat)
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(other) == len(self) and all(list(a) == list(b) for a, b in zip(self, other))

    __hash__ = None  # mutable-looking container semantics, like list

    def __repr__(self) -> str:
        head = ", ".join(str(r) for r in self[:3]) if len(self) else ""
        return f"Ragged({len(self)} rows: {head}{', ...' if len(self) > 3 else ''})"


class RaggedBuilder:
    """Builds a :class:`Ragged` row by row, converting to ``int32`` arrays every ``chunk`` values, so
    building never holds more than one chunk as Python ints."""

    def __init__(self, chunk: int = 1 << 16):
        self.chunk = chunk
        self._parts: list[np.ndarray] = []
        self._pending: list[int] = []
        self._lengths: list[int] = []

    def append(self, row: Sequence[int]) -> None:
        """Add one row at the end."""
        self._pending.extend(row)
        self._lengths.append(len(row))
        if len(self._pending) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        self._parts.append(np.asarray(self._pending, dtype=np.int32))
        self._pending = []

    def __len__(self) -> int:
        return len(self._lengths)

    def build(self) -> Ragged:
        """The rows appended so far."""
        self._flush()
        offsets = np.zeros(len(self._lengths) + 1, np.int64)
        np.cumsum(np.asarray(self._lengths, dtype=np.int64), out=offsets[1:])
        return Ragged(np.concatenate(self._parts) if self._parts else np.zeros(0, np.int32), offsets)


@dataclass
class Encoded:
    """Model inputs for a split: one row per window (a sentence longer than the
    maximum length becomes several windows; nothing is truncated).

    ``input_ids[i]`` are the teacher tokenizer's ids with its special tokens (``[CLS]``/``[SEP]``
    or ``<s>``/``</s>``); ``labels[i]`` is per position for token tasks (-100 where unlabeled)
    or a one-element list for sequence tasks; ``word_index[i]`` maps each position to the word it
    starts (-1 elsewhere); ``example[i]`` is the row's source example. ``n_words[e]`` is the word
    count of example ``e``. The three per-position fields are :class:`Ragged` (lists given to the
    constructor are converted), so a large transfer set is held compactly.
    """

    input_ids: Ragged
    labels: Ragged
    word_index: Ragged
    example: list[int]
    n_words: list[int]
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_ids = Ragged.from_rows(self.input_ids)
        self.labels = Ragged.from_rows(self.labels)
        self.word_index = Ragged.from_rows(self.word_index)
        self.example = list(self.example)
        self.n_words = list(self.n_words)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        """``(N,)`` int64: tokens per row, special tokens included."""
        return self.input_ids.lengths

    @staticmethod
    def concat(parts: Sequence["Encoded"]) -> "Encoded":
        """Rows of ``parts`` in order, examples renumbered; stats summed where numeric."""
        example, n_words = [], []
        for p in parts:
            base = len(n_words)
            example += [e + base for e in p.example]
            n_words += p.n_words
        return Encoded(Ragged.concat([p.input_ids for p in parts]), Ragged.concat([p.labels for p in parts]),
                       Ragged.concat([p.word_index for p in parts]), example, n_words,
                       merge_stats([p.stats for p in parts]))

    def subset_examples(self, keep: Sequence[int]) -> "Encoded":
        """Rows of the given examples (renumbered 0..len(keep)-1)."""
        remap = {e: i for i, e in enumerate(keep)}
        rows = [r for r, e in enumerate(self.example) if e in remap]
        return Encoded(
            input_ids=self.input_ids.take(rows), labels=self.labels.take(rows), word_index=self.word_index.take(rows),
            example=[remap[self.example[r]] for r in rows], n_words=[self.n_words[e] for e in keep],
            stats=dict(self.stats))


def merge_stats(parts: Sequence[dict]) -> dict:
    """The encoding counts of several parts of a split: numbers summed (``max_length`` excepted),
    anything else as the first part has it."""
    stats: dict = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "max_length":
                stats[k] = stats.get(k, 0) + v
            else:
                stats.setdefault(k, v)
    return stats


class EncodedBuilder:
    """Builds an :class:`Encoded` row by row (:class:`RaggedBuilder` per field), for the adapters' encoders."""

    def __init__(self):
        self.input_ids, self.labels, self.word_index = RaggedBuilder(), RaggedBuilder(), RaggedBuilder()
        self.example: list[int] = []
        self.n_words: list[int] = []

    def add_row(self, input_ids: Sequence[int], labels: Sequence[int], word_index: Sequence[int], example: int) -> None:
        """One window of example ``example``."""
        self.input_ids.append(input_ids)
        self.labels.append(labels)
        self.word_index.append(word_index)
        self.example.append(example)

    def build(self, stats: dict) -> Encoded:
        """The rows added so far, with ``stats``."""
        return Encoded(self.input_ids.build(), self.labels.build(), self.word_index.build(), self.example,
                       self.n_words, stats)


def iter_examples(dataset, columns: Sequence[str], chunk: int = 2000) -> Iterator[tuple]:
    """Per example, the values of ``columns``: a ``datasets.Dataset`` read ``chunk`` rows at a time
    (never a whole column in memory), or a mapping of column lists."""
    if hasattr(dataset, "iter"):
        for batch in dataset.iter(batch_size=chunk):
            yield from zip(*(batch[c] for c in columns))
    else:
        yield from zip(*(dataset[c] for c in columns))


@dataclass
class GroupData:
    """All splits of one group: a language for NER, the task itself for classification.

    Each split is a ``datasets.Dataset``: NER columns ``tokens`` (words), ``tags`` (IOB2; empty in
    ``transfer``) and ``lang``; classification columns ``text`` and ``label`` (empty in ``transfer``).
    ``evaluation_in_train`` holds the positions of the evaluation rows whose text also stands in the
    train file (scored apart too: :meth:`~xdistill.adapters.base.TaskAdapter.score_unseen`).
    """

    lang: str
    labeled: object
    validation: object
    teacher_labeled: object
    transfer: object
    evaluation: object
    counts: dict = field(default_factory=dict)
    evaluation_in_train: list[int] = field(default_factory=list)


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
