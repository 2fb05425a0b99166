"""Peak RSS that does not grow with the transfer set (issue 14, transfer sets beyond memory):
:class:`~xdistill.data.types.Ragged`, its builder, chunked dataset reads,
:class:`~xdistill.transfer.rowfile.RowFile`/``RowWriter``, whose reads leave the process's resident
set flat where a memory map grows with the file."""

from __future__ import annotations

import os

import datasets
import numpy as np
import pytest

from xdistill.data.types import Encoded, Ragged, RaggedBuilder, iter_examples
from xdistill.transfer.rowfile import RowFile, RowWriter

ROWS = [[2, 5, 6, 3], [2, 3], [2, 7, 8, 9, 10, 3], [1]]


def test_ragged_rows_slices_take_and_equality():
    r = Ragged.from_rows(ROWS)
    assert len(r) == 4 and r.flat.dtype == np.int32 and r.lengths.tolist() == [4, 2, 6, 1]
    assert r[0] == [2, 5, 6, 3] and r[-1] == [1] and isinstance(r[2], list)
    assert r == ROWS and r[1:3] == ROWS[1:3] and isinstance(r[1:3], Ragged)
    assert r.take([3, 0, 0]) == [ROWS[3], ROWS[0], ROWS[0]] and r.take([]) == []
    assert list(r) == ROWS and r != ROWS[:3] and r != [[0]] * 4
    assert Ragged.concat([r[:1], ROWS[1:], []]) == r and Ragged.concat([]) == []
    with pytest.raises(IndexError):
        r[4]
    with pytest.raises(ValueError, match="offsets"):
        Ragged(np.arange(3), np.array([0, 2]))


def test_ragged_builder_across_chunks_matches_lists():
    rng = np.random.default_rng(0)
    rows = [rng.integers(-100, 120000, size=int(n)).tolist() for n in rng.integers(0, 9, size=200)]
    b = RaggedBuilder(chunk=7)  # many flushes
    for x in rows:
        b.append(x)
    assert len(b) == 200 and b.build() == rows


def test_encoded_holds_ragged_fields_and_subsets():
    enc = Encoded(ROWS, [[-100] * len(x) for x in ROWS], [[-1] * len(x) for x in ROWS], [0, 0, 1, 2], [3, 1, 1])
    assert isinstance(enc.input_ids, Ragged) and enc.lengths.tolist() == [4, 2, 6, 1]
    sub = enc.subset_examples([2, 0])
    assert sub.input_ids == [ROWS[0], ROWS[1], ROWS[3]] and sub.example == [1, 1, 0] and sub.n_words == [1, 3]


def test_iter_examples_reads_a_dataset_in_chunks_like_the_columns():
    data = {"tokens": [["a", "b"], ["c"], [], ["d"]], "tags": [["O", "O"], ["O"], [], ["O"]]}
    ds = datasets.Dataset.from_dict(data)
    assert list(iter_examples(ds, ("tokens", "tags"), chunk=3)) == list(zip(data["tokens"], data["tags"]))
    assert list(iter_examples(data, ("tokens", "tags"))) == list(zip(data["tokens"], data["tags"]))


def test_row_writer_and_file_round_trip(tmp_path):
    x = np.random.default_rng(1).standard_normal((50, 6)).astype(np.float16)
    w = RowWriter(tmp_path / "a.npy", x.shape, np.float16)
    for a in np.random.default_rng(2).permutation(10):  # rows written out of order, in blocks of 5
        w[5 * a:5 * a + 5] = x[5 * a:5 * a + 5]
    w.close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), x)  # an ordinary .npy file
    f = RowFile(tmp_path / "a.npy")
    assert f.shape == (50, 6) and f.dtype == np.float16 and len(f) == 50
    np.testing.assert_array_equal(f[7:19], x[7:19])
    assert f[3:3].shape == (0, 6)
    np.testing.assert_array_equal(f.load(), x)
    with pytest.raises(TypeError, match="contiguous"):
        f[[1, 2]]
    with pytest.raises(ValueError, match="shape"):
        RowWriter(tmp_path / "b.npy", (4, 6), np.float16)[0:2] = np.zeros((2, 5))


def test_row_file_names_a_truncated_file(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((10, 4), np.float32))
    f = RowFile(tmp_path / "a.npy")
    os.truncate(tmp_path / "a.npy", os.path.getsize(tmp_path / "a.npy") - 40)
    with pytest.raises(OSError, match="a.npy: short read"):
        f[5:10]


def _rss_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc (Linux)")
def test_reading_every_row_leaves_rss_flat_where_a_memory_map_grows(tmp_path):
    rows, width = 64 * 1024, 512  # 64 MiB of float16
    w = RowWriter(tmp_path / "big.npy", (rows, width), np.float16)
    block = np.ones((1024, width), np.float16)
    for a in range(0, rows, 1024):
        w[a:a + 1024] = block
    w.close()
    f = RowFile(tmp_path / "big.npy")
    before = _rss_mib()
    total = sum(float(f[a:a + 64][:, 0].sum()) for a in range(0, rows, 64))
    grew = _rss_mib() - before
    assert total == rows and grew < 16, grew
    m = np.load(tmp_path / "big.npy", mmap_mode="r")  # the reference: a memory map keeps what it touched
    before = _rss_mib()
    assert sum(float(m[a:a + 64][:, 0].sum()) for a in range(0, rows, 64)) == rows
    assert _rss_mib() - before > 48

