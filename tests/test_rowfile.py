"""Peak RSS that does not grow with the transfer set (issue 14, transfer sets beyond memory):
:class:`~xdistill.data.types.Ragged`, its builder, chunked dataset reads,
:class:`~xdistill.data.rowfile.RowFile`/``RowWriter``, whose reads leave the process's resident
set flat where a memory map grows with the file."""

from __future__ import annotations

import os
import tracemalloc

import datasets
import numpy as np
import pytest

from xdistill.data.types import Encoded, Ragged, RaggedBuilder, iter_examples
from xdistill.adapters import load_task, make_adapter
from xdistill.data.rowfile import RowAppender, RowFile, RowWriter
from xdistill.data.stored import EncodedWriter, RaggedFile, encode_to_disk, encoded_on_disk, is_on_disk, write_values
from xdistill.data import stored

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


def _random_rows(n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-100, 120000, size=int(k)).tolist() for k in rng.integers(0, 12, size=n)]


def test_ragged_file_reads_the_rows_the_ragged_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(stored, "BLOCK_VALUES", 5)  # iteration crosses many blocks, some rows longer than one
    rows = _random_rows(300)
    r = Ragged.from_rows(rows)
    write_values(r, tmp_path / "v.npy")
    f = RaggedFile(RowFile(tmp_path / "v.npy"), r.offsets)
    assert isinstance(f, Ragged) and len(f) == 300 and f.lengths.tolist() == r.lengths.tolist()
    assert list(f) == rows and f == r and f[7] == rows[7] and f[-1] == rows[-1]
    assert [a.tolist() for a in f.iter_arrays()] == rows and f.flat.tolist() == r.flat.tolist()
    for pick in ([5, 6, 7, 8], [9, 2, 2, 150], [], [299]):  # consecutive rows (one read) and scattered ones
        assert f.take(pick) == r.take(pick) and type(f.take(pick)) is Ragged
        if pick:
            for got, want in zip(f.padded(pick, 0), r.padded(pick, 0)):
                np.testing.assert_array_equal(got, want)
    assert f[10:20] == rows[10:20]
    write_values(f, tmp_path / "copy.npy")  # a RaggedFile copies block by block
    assert RaggedFile(RowFile(tmp_path / "copy.npy"), r.offsets) == rows
    with pytest.raises(ValueError, match=r"v.npy: expected a \(3, 1\) array"):
        RaggedFile(RowFile(tmp_path / "v.npy"), np.array([0, 3]))


def test_encoded_on_disk_keeps_the_rows_and_replaces_an_older_folder(tmp_path):
    rows = _random_rows(40, seed=3)
    enc = Encoded(rows, [[-100] * len(x) for x in rows], [list(range(len(x))) for x in rows], list(range(40)),
                  [max(1, len(x)) for x in rows], {"windows": 40})
    (tmp_path / "rows" / "transfer").mkdir(parents=True)
    (tmp_path / "rows" / "transfer" / "stale.npy").write_bytes(b"old")  # a killed run's folder
    disk = encoded_on_disk(enc, tmp_path / "rows" / "transfer")
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["transfer"]  # no temporary folder left
    assert sorted(p.name for p in (tmp_path / "rows" / "transfer").iterdir()) == [
        "input_ids.npy", "labels.npy", "word_index.npy"]
    assert all(isinstance(getattr(disk, k), RaggedFile) for k in ("input_ids", "labels", "word_index"))
    assert disk.input_ids == enc.input_ids and disk.labels == enc.labels and disk.word_index == enc.word_index
    assert disk.example == enc.example and disk.n_words == enc.n_words and disk.stats == enc.stats
    sub = disk.subset_examples([5, 1])
    assert sub.input_ids == [rows[1], rows[5]] and sub.word_index == enc.subset_examples([5, 1]).word_index


def test_row_appender_grows_the_header_in_place(tmp_path):
    path = tmp_path / "a.npy"
    out = RowAppender(path, 2, np.int32)
    assert np.load(path).shape == (0, 2)  # until closed, a killed process's file reads as empty
    out.append(np.arange(6).reshape(3, 2))
    out.append(np.zeros((0, 2)))
    big = np.arange(2 * 70000).reshape(70000, 2)  # more digits in the shape than at the start
    out.append(big)
    with pytest.raises(ValueError, match=r"a.npy: expected rows of shape \(k, 2\), got \(3,\)"):
        out.append(np.arange(3))
    out.close()
    got = np.load(path)
    assert got.shape == (70003, 2) and got.dtype == np.int32
    np.testing.assert_array_equal(got[:3], np.arange(6).reshape(3, 2))
    np.testing.assert_array_equal(got[3:], big)
    assert RowFile(path)[70001:70003].tolist() == big[-2:].tolist()


def _encoded(rows, first_example=0, windows=None):
    return Encoded(rows, [[-100] * len(x) for x in rows], [list(range(len(x))) for x in rows],
                   list(range(len(rows))), [len(x) + first_example for x in rows],
                   {"windows": windows if windows is not None else len(rows), "max_length": 16})


def test_encoded_writer_appends_parts_like_concat(tmp_path):
    a, b = _encoded(_random_rows(30, seed=1)), _encoded(_random_rows(25, seed=2))
    disk_b = encoded_on_disk(b, tmp_path / "b")  # a part on disk is copied file to file
    w = EncodedWriter(tmp_path / "rows" / "union")
    for part in (a, disk_b, _encoded([])):
        w.add(part)
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["union.tmp" + str(os.getpid())]
    got, want = w.finish(), Encoded.concat([a, b])
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["union"] and is_on_disk(got)
    assert got.input_ids == want.input_ids and got.labels == want.labels and got.word_index == want.word_index
    assert got.example == want.example and got.example[30] == 30 and got.n_words == want.n_words
    assert got.stats == {"windows": 55, "max_length": 16} == want.stats
    assert not is_on_disk(a) and is_on_disk(disk_b)
    assert got.labels.offsets is got.input_ids.offsets  # one offsets array for fields of the same lengths


@pytest.mark.parametrize("task", ["wikiann", "imdb"])
def test_encode_to_disk_gives_the_rows_of_one_encode(tmp_path, tok, task):
    """Parts of 7 examples (the token task's sentences windowed at max_length 8, the text task's truncated)
    written one after the other equal the split encoded whole: rows, examples, word counts and counts."""
    adapter = make_adapter(load_task(task))
    words = [["Anna", "lives", "in", "Hamburg"] * (i % 4 + 1) for i in range(40)]
    ds = datasets.Dataset.from_dict(
        {"tokens": words, "tags": [[] for _ in words], "lang": ["en"] * 40} if task == "wikiann"
        else {"text": [" ".join(w) for w in words], "label": [""] * 40})
    whole = adapter.encode(ds, tok, 8)
    got = encode_to_disk(lambda part: adapter.encode(part, tok, 8), ds, tmp_path / "rows", part_examples=7)
    assert is_on_disk(got) and len(got) == len(whole) and (len(got) == 40 if task == "imdb" else len(got) > 40)
    assert got.input_ids == whole.input_ids and got.labels == whole.labels and got.word_index == whole.word_index
    assert got.example == whole.example and got.n_words == whole.n_words and got.stats == whole.stats
    empty = encode_to_disk(lambda part: adapter.encode(part, tok, 8), ds.select([]), tmp_path / "empty")
    assert len(empty) == 0 and empty.stats == adapter.encode(ds.select([]), tok, 8).stats


def test_rows_on_disk_free_their_memory(tmp_path):
    """Counted with tracemalloc (numpy reports its buffers to it), not RSS: whether freed memory goes back
    to the system is glibc's choice (its mmap threshold rises in a long-lived process)."""
    n = 1 << 22  # 4 Mi tokens: 48 MiB as three int32 fields in memory
    tracemalloc.start()
    try:
        offsets = np.arange(0, n + 1, 16, dtype=np.int64)
        flat = np.random.default_rng(0).integers(0, 1000, size=n).astype(np.int32)
        enc = Encoded(Ragged(flat, offsets), Ragged(flat.copy(), offsets), Ragged(flat.copy(), offsets),
                      range(len(offsets) - 1), [16] * (len(offsets) - 1))
        del flat
        with_rows = tracemalloc.get_traced_memory()[0]
        disk = encoded_on_disk(enc, tmp_path / "rows")
        del enc
        on_disk = tracemalloc.get_traced_memory()[0]
        assert with_rows - on_disk > 44 * 2 ** 20, (with_rows, on_disk)
        tracemalloc.reset_peak()
        assert sum(len(a) for a in disk.input_ids.iter_arrays()) == n  # every row read, a block at a time
        assert tracemalloc.get_traced_memory()[1] - on_disk < 2 * 2 ** 20
    finally:
        tracemalloc.stop()


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



def test_transfer_split_on_disk_is_one_memory_mapped_arrow_file_sliced_per_group(tmp_path):
    from datasets.utils import are_progress_bars_disabled

    from xdistill.data.types import GroupData, TaskData
    from xdistill.pipeline.splits import concat_groups, transfer_split_on_disk

    def split(lang, sentences):
        return datasets.Dataset.from_dict({"tokens": sentences, "tags": [[] for _ in sentences],
                                           "lang": [lang] * len(sentences)})

    texts = {"de": [["Anna", "lebt"], ["in", "Hamburg", "."]], "sw": [], "yo": [["Ade"], ["Ibadan", "ni"], ["o"]]}
    groups = {lang: GroupData(lang, *(split(lang, [["x"]]) for _ in range(3)), split(lang, t), split(lang, []))
              for lang, t in texts.items()}
    data = TaskData(groups, [], "test", "de,sw,yo", "", "")
    splits = concat_groups(data)
    (tmp_path / "splits" / "transfer.rank0").mkdir(parents=True)  # an earlier run's folder is replaced
    before = are_progress_bars_disabled()
    transfer_split_on_disk(data, splits, tmp_path)
    assert are_progress_bars_disabled() == before
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == ["transfer.rank0"]
    stored = splits["transfer"]
    assert stored.cache_files and stored.cache_files[0]["filename"].startswith(str(tmp_path / "splits"))
    assert stored["tokens"] == texts["de"] + texts["yo"] and len(splits["labeled"]) == 3
    for lang, t in texts.items():  # each group's transfer split: its own rows, a view of the same file
        assert data.groups[lang].transfer["tokens"] == t and data.groups[lang].transfer["lang"] == [lang] * len(t)
        assert data.groups[lang].transfer.cache_files == stored.cache_files
