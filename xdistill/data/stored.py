"""Encoded rows kept on disk: a transfer set's token ids, labels and word indices read by row with
positioned I/O, so the process holds only their offsets.

An :class:`~xdistill.data.types.Encoded` split holds three int32 values per token (input ids,
labels, word index): about 12 bytes a token, 85 MiB for 330,000 sentences, in memory for the
whole run. :func:`encoded_on_disk` writes them to ``.npy`` files (:mod:`xdistill.data.rowfile`) and
returns an ``Encoded`` whose fields are :class:`RaggedFile`: every read (a row, a batch of rows,
all rows in order) goes through ``os.pread`` and the operating system's page cache, which is not
this process's resident memory, so peak RSS stays flat as the transfer set grows (the issue's
"training reading rows from storage"; a memory map would count every page it touched).
:class:`EncodedWriter` appends rows part by part, so :func:`encode_to_disk` encodes a split a part at
a time and the split is never whole in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .rowfile import RowAppender, RowFile
from ..utils import publish_folder, staging_folder
from .types import Encoded, Ragged, merge_stats

#: values read per ``os.pread`` when every row is read in order (256 KiB of int32)
BLOCK_VALUES = 1 << 16
#: the fields of an ``Encoded`` that are stored (one ``FIELD.npy`` each)
FIELDS = ("input_ids", "labels", "word_index")


class RaggedFile(Ragged):
    """A :class:`~xdistill.data.types.Ragged` whose values stay in a ``(V, 1)`` int32 ``.npy`` file:
    only ``offsets`` and ``lengths`` (``(N + 1,)``, ``(N,)`` int64) are in memory.

    Rows are read on demand through :meth:`values` and :meth:`gather`, which the inherited
    :meth:`array`, :meth:`take` and :meth:`padded` call (a batch: one read for a contiguous run of
    rows, else one per row); iteration reads blocks of about :data:`BLOCK_VALUES` values. :attr:`flat` reads every value into memory (for small
    sets and tests; the pipeline reads rows).

    Raises:
        ValueError: ``offsets`` does not rise from 0 to the file's length.
    """

    __slots__ = ("_file",)

    def __init__(self, file: RowFile, offsets: np.ndarray):  # no super().__init__: there is no flat array
        self._file = file
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.lengths = np.diff(self.offsets)
        if file.shape[1] != 1 or len(self.offsets) == 0 or self.offsets[0] != 0 \
                or self.offsets[-1] != len(file) or (self.lengths < 0).any():
            raise ValueError(f"{file.path}: expected a ({int(self.offsets[-1])}, 1) array for these offsets, "
                             f"got {file.shape}")

    @property
    def flat(self) -> np.ndarray:
        """Every value, ``(V,)`` int32, read into memory."""
        return self.values(0, len(self._file))

    @property
    def path(self) -> Path:
        """The ``.npy`` file of the values."""
        return self._file.path

    def values(self, a: int, z: int) -> np.ndarray:
        """Values ``a..z-1``, ``(z - a,)`` int32, read with one ``os.pread``."""
        return self._file[a:z].reshape(-1)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The values of ``rows`` in order, concatenated: one read when they are consecutive, else one per row
        (what :meth:`take` and :meth:`padded` read)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) == 0:
            return np.zeros(0, np.int32)
        if (np.diff(rows) == 1).all():
            return self.values(int(self.offsets[rows[0]]), int(self.offsets[rows[-1] + 1]))
        return np.concatenate([self.array(int(r)) for r in rows])

    def iter_arrays(self) -> Iterator[np.ndarray]:
        """Every row in order as an int32 array, read a block of rows at a time."""
        n, i = len(self), 0
        while i < n:
            # rows i..j-1: at least one, and as many more as fit in a block
            j = max(i + 1, int(np.searchsorted(self.offsets, self.offsets[i] + BLOCK_VALUES, side="right")) - 1)
            j = min(j, n)
            block = self.values(int(self.offsets[i]), int(self.offsets[j]))
            base = self.offsets[i]
            for k in range(i, j):
                yield block[self.offsets[k] - base:self.offsets[k + 1] - base]
            i = j


def _append_values(ragged: Ragged, out: RowAppender) -> None:
    """Append ``ragged``'s values to ``out`` a block at a time (a :class:`RaggedFile` is copied without
    reading it whole)."""
    values = int(ragged.offsets[-1])
    for a in range(0, values, BLOCK_VALUES):
        out.append(ragged.values(a, min(a + BLOCK_VALUES, values))[:, None])


def write_values(ragged: Ragged, path: Path) -> None:
    """Write ``ragged``'s values to ``path``, a ``(V, 1)`` int32 ``.npy`` file, a block at a time."""
    out = RowAppender(path, 1, np.int32)
    try:
        _append_values(ragged, out)
    finally:
        out.close()


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """``(N + 1,)`` int64 row starts from ``(N,)`` row lengths."""
    return np.concatenate([np.zeros(1, np.int64), np.cumsum(lengths, dtype=np.int64)])


class EncodedWriter:
    """Writes the rows of an :class:`~xdistill.data.types.Encoded` split to ``folder`` part by part
    and returns them read from there (:meth:`finish`): the split is never whole in memory.

    Parts are appended in order (:meth:`add`), their examples renumbered after the earlier parts'
    and their counts summed (:func:`~xdistill.data.types.merge_stats`). The files go into
    ``FOLDER.tmpPID`` and are renamed to ``folder`` by :meth:`finish`, so a killed run never leaves
    a folder that looks complete; an existing ``folder`` (an earlier run's) is replaced.

    Raises:
        OSError: the folder cannot be written.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._tmp = staging_folder(self.folder)
        self._out = {name: RowAppender(self._tmp / f"{name}.npy", 1, np.int32) for name in FIELDS}
        self._lengths: dict[str, list[np.ndarray]] = {name: [] for name in FIELDS}  # (N_part,) per part
        self._example: list[int] = []
        self._n_words: list[int] = []
        self._stats: list[dict] = []

    def add(self, part: Encoded) -> None:
        """Append the rows of ``part`` (in memory or on disk)."""
        base = len(self._n_words)
        for name in FIELDS:
            ragged = getattr(part, name)
            _append_values(ragged, self._out[name])
            self._lengths[name].append(ragged.lengths)
        self._example += part.example if base == 0 else [e + base for e in part.example]  # no new ints when 0
        self._n_words += part.n_words
        self._stats.append(part.stats)

    def finish(self) -> Encoded:
        """Close the files, move them to ``folder`` and return the rows read from there
        (:class:`RaggedFile` fields; examples, word counts and stats in memory)."""
        for out in self._out.values():
            out.close()
        lengths = {name: np.concatenate([np.zeros(0, np.int64), *parts]) for name, parts in self._lengths.items()}
        self._lengths = {name: [] for name in FIELDS}
        ids = _offsets(lengths["input_ids"])
        # the per-token fields share the input ids' offsets; a sequence task's one label per row has its own
        offsets = {name: ids if np.array_equal(n, lengths["input_ids"]) else _offsets(n) for name, n in lengths.items()}
        publish_folder(self._tmp, self.folder)
        return Encoded(**{name: RaggedFile(RowFile(self.folder / f"{name}.npy"), offsets[name]) for name in FIELDS},
                       example=self._example, n_words=self._n_words, stats=merge_stats(self._stats))


def encoded_on_disk(encoded: Encoded, folder: Path) -> Encoded:
    """``encoded`` with its per-position fields written under ``folder`` (``input_ids.npy``,
    ``labels.npy``, ``word_index.npy``) and read back from there (:class:`RaggedFile`); examples,
    word counts and stats stay in memory (see :class:`EncodedWriter`). The caller keeps no other
    reference to ``encoded`` if its memory is to be freed.

    Raises:
        OSError: the folder cannot be written.
    """
    writer = EncodedWriter(folder)
    writer.add(encoded)
    return writer.finish()


def is_on_disk(encoded: Encoded) -> bool:
    """Whether every per-position field of ``encoded`` is read from a file (:class:`RaggedFile`)."""
    return all(isinstance(getattr(encoded, name), RaggedFile) for name in FIELDS)


#: examples encoded at a time by :func:`encode_to_disk`
PART_EXAMPLES = 1 << 15


def encode_to_disk(encode: Callable[[object], Encoded], dataset, folder: Path,
                   part_examples: int = PART_EXAMPLES) -> Encoded:
    """``encode(dataset)``, the split encoded ``part_examples`` examples at a time (contiguous
    ``dataset.select`` slices of a ``datasets.Dataset``) and each part written under ``folder`` before
    the next is encoded (:class:`EncodedWriter`): memory holds one part's rows, not the split's. The
    rows are those of ``encode(dataset)``; an empty split is encoded once, for its counts.

    Raises:
        OSError: the folder cannot be written; whatever ``encode`` raises.
    """
    writer = EncodedWriter(folder)
    n = len(dataset)
    for a in range(0, max(n, 1), part_examples):
        writer.add(encode(dataset.select(range(a, min(a + part_examples, n)))))
    return writer.finish()
