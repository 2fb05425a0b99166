"""Encoded rows kept on disk: a transfer set's token ids, labels and word indices read by row with
positioned I/O, so the process holds only their offsets.

An :class:`~xdistill.data.types.Encoded` split holds three int32 values per token (input ids,
labels, word index): about 12 bytes a token, 85 MiB for 330,000 sentences, in memory for the
whole run. :func:`encoded_on_disk` writes them to ``.npy`` files (:mod:`xdistill.data.rowfile`) and
returns an ``Encoded`` whose fields are :class:`RaggedFile`: every read (a row, a batch of rows,
all rows in order) goes through ``os.pread`` and the operating system's page cache, which is not
this process's resident memory, so peak RSS stays flat as the transfer set grows (the issue's
"training reading rows from storage"; a memory map would count every page it touched).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .rowfile import RowFile, RowWriter
from .types import Encoded, Ragged

#: values read per ``os.pread`` when every row is read in order (256 KiB of int32)
BLOCK_VALUES = 1 << 16
#: the fields of an ``Encoded`` that are stored (one ``FIELD.npy`` each)
FIELDS = ("input_ids", "labels", "word_index")


class RaggedFile(Ragged):
    """A :class:`~xdistill.data.types.Ragged` whose values stay in a ``(V, 1)`` int32 ``.npy`` file:
    only ``offsets`` and ``lengths`` (``(N + 1,)``, ``(N,)`` int64) are in memory.

    Rows are read on demand: :meth:`array` (one row), :meth:`take` and :meth:`padded` (a batch: one
    read for a contiguous run of rows, else one per row), iteration (blocks of about
    :data:`BLOCK_VALUES` values per read). :attr:`flat` reads every value into memory (for small
    sets and tests; the pipeline reads rows).

    Raises:
        ValueError: ``offsets`` does not rise from 0 to the file's length.
    """

    __slots__ = ("_file",)

    def __init__(self, file: RowFile, offsets: np.ndarray):  # noqa: D107 (no super().__init__: no flat array)
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
        return self._values(0, len(self._file))

    @property
    def path(self) -> Path:
        """The ``.npy`` file of the values."""
        return self._file.path

    def _values(self, a: int, z: int) -> np.ndarray:
        return self._file[a:z].reshape(-1)

    def array(self, i: int) -> np.ndarray:
        """Row ``i``, ``(L_i,)`` int32 (read from the file)."""
        return self._values(int(self.offsets[i]), int(self.offsets[i + 1]))

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """The values of ``rows`` in order, concatenated: one read when they are consecutive."""
        if len(rows) == 0:
            return np.zeros(0, np.int32)
        if (np.diff(rows) == 1).all():
            return self._values(int(self.offsets[rows[0]]), int(self.offsets[rows[-1] + 1]))
        return np.concatenate([self.array(int(r)) for r in rows])

    def take(self, rows: Sequence[int]) -> Ragged:
        """The rows ``rows`` in that order, as an in-memory :class:`~xdistill.data.types.Ragged`."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(self.lengths[rows], out=offsets[1:])
        return Ragged(self._gather(rows), offsets)

    def padded(self, rows: Sequence[int], value: int) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`Ragged.padded <xdistill.data.types.Ragged.padded>`: ``(B, T)`` int64 values and
        ``(B, T)`` bool mask, the rows read from the file."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        lens = self.lengths[rows]
        mask = np.arange(int(lens.max()) if len(rows) else 0) < lens[:, None]
        out = np.full(mask.shape, value, np.int64)
        out[mask] = self._gather(rows)
        return out, mask

    def iter_arrays(self) -> Iterator[np.ndarray]:
        """Every row in order as an int32 array, read a block of rows at a time."""
        n, i = len(self), 0
        while i < n:
            # rows i..j-1: at least one, and as many more as fit in a block
            j = max(i + 1, int(np.searchsorted(self.offsets, self.offsets[i] + BLOCK_VALUES, side="right")) - 1)
            j = min(j, n)
            block = self._values(int(self.offsets[i]), int(self.offsets[j]))
            base = self.offsets[i]
            for k in range(i, j):
                yield block[self.offsets[k] - base:self.offsets[k + 1] - base]
            i = j

    def __iter__(self) -> Iterator[list[int]]:
        return (a.tolist() for a in self.iter_arrays())

    def __reduce__(self):
        return RaggedFile, (self._file, self.offsets)


def write_values(ragged: Ragged, path: Path) -> None:
    """Write ``ragged``'s values to ``path``, a ``(V, 1)`` int32 ``.npy`` file, a block at a time
    (a :class:`RaggedFile` is copied without reading it whole)."""
    values = int(ragged.offsets[-1])
    flat = ragged._values if isinstance(ragged, RaggedFile) else (lambda a, z, f=ragged.flat: f[a:z])
    writer = RowWriter(path, (values, 1), np.int32)
    try:
        for a in range(0, values, BLOCK_VALUES):
            z = min(a + BLOCK_VALUES, values)
            writer[a:z] = flat(a, z)[:, None]
    finally:
        writer.close()


def encoded_on_disk(encoded: Encoded, folder: Path) -> Encoded:
    """``encoded`` with its per-position fields written under ``folder`` (``input_ids.npy``,
    ``labels.npy``, ``word_index.npy``) and read back from there (:class:`RaggedFile`); examples,
    word counts and stats stay in memory.

    The files are written into ``FOLDER.tmp`` and renamed, so a killed run never leaves a folder
    that looks complete; an existing ``folder`` (an earlier run's) is replaced. The caller keeps no
    other reference to ``encoded`` if its memory is to be freed.

    Raises:
        OSError: the folder cannot be written.
    """
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in FIELDS:
        write_values(getattr(encoded, name), tmp / f"{name}.npy")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    fields = {name: RaggedFile(RowFile(folder / f"{name}.npy"), getattr(encoded, name).offsets) for name in FIELDS}
    return Encoded(**fields, example=encoded.example, n_words=encoded.n_words, stats=dict(encoded.stats))
