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
from collections.abc import Iterator
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


def write_values(ragged: Ragged, path: Path) -> None:
    """Write ``ragged``'s values to ``path``, a ``(V, 1)`` int32 ``.npy`` file, a block at a time
    (a :class:`RaggedFile` is copied without reading it whole)."""
    values = int(ragged.offsets[-1])
    writer = RowWriter(path, (values, 1), np.int32)
    try:
        for a in range(0, values, BLOCK_VALUES):
            z = min(a + BLOCK_VALUES, values)
            writer[a:z] = ragged.values(a, z)[:, None]
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
