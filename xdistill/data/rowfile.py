"""Row-range reads and writes of ``(N, F)`` ``.npy`` files with positioned I/O, not memory maps.

A memory map keeps every page it has touched in the process's resident set: labeling a transfer
set into a writable map, or reading every row of a cache once per epoch, makes peak RSS grow with
the cache (about 400 bytes per token at the cpu preset's width, gigabytes for hundreds of
thousands of sentences). ``os.pread``/``os.pwrite`` go through the operating system's page cache
instead, which the kernel can reclaim and which is not counted as this process's memory, so peak
RSS stays flat as the transfer set grows. The files are ordinary ``.npy`` files (format 1.0,
C order): ``numpy.load(path, mmap_mode="r")`` still reads them whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset in bytes)`` of a C-order ``.npy`` file.

    Raises:
        ValueError: not a ``.npy`` file, or a Fortran-order one.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError(f"{path}: a Fortran-order array; expected C order")
        return shape, dtype, f.tell()


class RowFile:
    """A ``(N, F)`` ``.npy`` file read by row ranges: ``f[a:z]`` is ``(z - a, F)``, a read-only array
    read with one ``os.pread`` (nothing stays mapped into the process).

    Attributes:
        path: the file.
        shape: ``(N, F)``.
        dtype: the stored dtype.

    Raises:
        ValueError: the file is not a 2-D ``.npy`` array.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        shape, self.dtype, self._offset = _header(self.path)
        if len(shape) != 2:
            raise ValueError(f"{self.path}: expected a 2-D array, got shape {shape}")
        self.shape = shape
        self._row_bytes = int(shape[1]) * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError(f"{self.path}: RowFile reads contiguous row ranges f[a:z], got {rows!r}")
        a, z, _ = rows.indices(len(self))
        n = max(0, z - a)
        want = n * self._row_bytes
        buf = os.pread(self._fd, want, self._offset + a * self._row_bytes) if want else b""
        if len(buf) != want:
            raise OSError(f"{self.path}: short read ({len(buf)} of {want} bytes at row {a}); the file was truncated")
        return np.frombuffer(buf, dtype=self.dtype).reshape(n, self.shape[1])

    def load(self) -> np.ndarray:
        """The whole array, memory-mapped read-only (for inspection)."""
        return np.load(self.path, mmap_mode="r")

    def close(self) -> None:
        """Close the file descriptor (also done when the object is collected)."""
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state) -> None:
        self.__init__(state["path"])


class RowWriter:
    """A new ``(N, F)`` ``.npy`` file (zero-filled, sparse) written by row ranges with ``os.pwrite``:
    ``w[a:z] = x`` writes rows ``a..z-1``. Call :meth:`close` when done.

    Raises:
        ValueError: an assignment whose shape is not ``(z - a, F)``.
    """

    def __init__(self, path: Path, shape: tuple[int, int], dtype):
        self.path = Path(path)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        with open(self.path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                    "fortran_order": False, "shape": self.shape})
            self._offset = f.tell()
            f.truncate(self._offset + self.shape[0] * self._row_bytes)
        self._fd = os.open(self.path, os.O_WRONLY)

    def __setitem__(self, rows: slice, values: np.ndarray) -> None:
        a, z, _ = rows.indices(self.shape[0])
        x = np.ascontiguousarray(values, dtype=self.dtype)
        if x.shape != (max(0, z - a), self.shape[1]):
            raise ValueError(f"{self.path}: rows {a}:{z} need shape ({z - a}, {self.shape[1]}), got {x.shape}")
        view = memoryview(x).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self._offset + a * self._row_bytes + done)

    def close(self) -> None:
        """Flush to the operating system and close the file."""
        if getattr(self, "_fd", None) is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None


class RowAppender:
    """A new ``(N, F)`` ``.npy`` file whose rows are appended (``N`` unknown until the end):
    :meth:`append` writes ``(k, F)`` rows after the last, :meth:`close` writes the final shape into
    the header. numpy leaves room in every header for the first axis to grow to 21 digits
    (``GROWTH_AXIS_MAX_DIGITS``), so the header keeps its length and the data never moves. Until
    :meth:`close` the header says ``(0, F)``: a file left by a killed process reads as empty, never as
    rows that were not all written.

    Raises:
        ValueError: an append whose shape is not ``(k, F)``.
    """

    def __init__(self, path: Path, width: int, dtype):
        self.path = Path(path)
        self.width = int(width)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._f = open(self.path, "wb")
        self._write_header()
        self._f.flush()
        self._offset = self._f.tell()

    def _write_header(self) -> None:
        np.lib.format.write_array_header_1_0(self._f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                       "fortran_order": False, "shape": (self.rows, self.width)})

    def append(self, values: np.ndarray) -> None:
        """Write ``values`` (``(k, F)``) after the rows written so far."""
        x = np.ascontiguousarray(values, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.width:
            raise ValueError(f"{self.path}: expected rows of shape (k, {self.width}), got {x.shape}")
        self._f.write(x.reshape(-1).view(np.uint8))  # the buffer itself, no copy
        self.rows += len(x)

    def close(self) -> None:
        """Write the final shape into the header, flush to the operating system and close."""
        if self._f is None:
            return
        self._f.seek(0)
        self._write_header()
        if self._f.tell() != self._offset:  # numpy's spare header space guarantees this
            raise RuntimeError(f"{self.path}: the header changed length ({self._offset} -> {self._f.tell()} bytes)")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None

    def __del__(self) -> None:
        if getattr(self, "_f", None) is not None:
            self._f.close()
            self._f = None
