"""Tests for length-bucketed batching, the padding fraction and collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tiny import single_thread  # noqa: F401  (autouse fixture)
from xdistill.data.types import Encoded
from xdistill.adapters import SEQUENCE, TOKEN
from xdistill.data.batching import IGNORE, bucket_batches, pad_rows, padding_fraction


def random_lengths(n: int = 57, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 31, size=n)


def flat(batches) -> list[int]:
    return sorted(int(i) for b in batches for i in b)


# --------------------------------------------------------------------------- bucket_batches


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size,max_tokens", [(8, None), (None, 60), (5, 40), (1, None), (100, None), (None, 1)])
def test_bucket_batches_cover_each_row_once_and_respect_limits(batch_size, max_tokens, shuffle):
    lengths = random_lengths()
    batches = bucket_batches(lengths, batch_size=batch_size, max_tokens=max_tokens, shuffle=shuffle, seed=3)
    assert flat(batches) == list(range(len(lengths)))
    for b in batches:
        assert len(b) >= 1
        if batch_size is not None:
            assert len(b) <= batch_size
        if max_tokens is not None and len(b) > 1:
            assert len(b) * lengths[b].max() <= max_tokens


def test_bucket_batches_sorted_by_length_without_shuffle():
    lengths = random_lengths()
    batches = bucket_batches(lengths, batch_size=7)
    order = np.concatenate(batches)
    assert list(lengths[order]) == sorted(lengths)
    assert all(len(b) == 7 for b in batches[:-1])  # only the last batch can be short
    # equal lengths keep their row order (stable)
    for length in set(lengths.tolist()):
        rows = [int(i) for i in order if lengths[i] == length]
        assert rows == sorted(rows)


def test_bucket_batches_hand_example():
    lengths = [5, 1, 3, 1, 9, 3]
    got = bucket_batches(lengths, batch_size=2)
    assert [b.tolist() for b in got] == [[1, 3], [2, 5], [0, 4]]
    # max_tokens 9: [1,3] -> 2x1; adding row 2 (3) -> 3x3 = 9 ok; adding 5 -> 4x3 = 12 > 9
    got = bucket_batches(lengths, max_tokens=9)
    assert [b.tolist() for b in got] == [[1, 3, 2], [5], [0], [4]]


def test_bucket_batches_overlong_row_gets_own_batch():
    lengths = [2, 2, 50, 2]
    batches = bucket_batches(lengths, max_tokens=10)
    assert [b.tolist() for b in batches] == [[0, 1, 3], [2]]


def test_bucket_batches_shuffle_deterministic_per_seed():
    lengths = random_lengths()
    a = bucket_batches(lengths, batch_size=4, shuffle=True, seed=11)
    b = bucket_batches(lengths, batch_size=4, shuffle=True, seed=11)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    c = bucket_batches(lengths, batch_size=4, shuffle=True, seed=12)
    assert [x.tolist() for x in a] != [x.tolist() for x in c]
    plain = bucket_batches(lengths, batch_size=4)
    assert [x.tolist() for x in a] != [x.tolist() for x in plain]
    # shuffling only reorders rows of equal length and the batches: each batch holds the same lengths
    key = lambda bs: sorted(tuple(sorted(lengths[x].tolist())) for x in bs)  # noqa: E731
    assert key(a) == key(plain)


def test_bucket_batches_shuffle_mixes_equal_lengths():
    lengths = [4] * 40
    orders = {tuple(np.concatenate(bucket_batches(lengths, batch_size=5, shuffle=True, seed=s)).tolist())
              for s in range(4)}
    assert len(orders) == 4


def test_bucket_batches_needs_a_limit_and_handles_empty():
    with pytest.raises(ValueError):
        bucket_batches([1, 2, 3])
    assert bucket_batches([], batch_size=4) == []


# --------------------------------------------------------------------------- padding_fraction


def test_padding_fraction_hand_values():
    lengths = [2, 4, 4, 1]
    # real 2+4 + 4+1 = 11, padded 4*2 + 4*2 = 16
    assert padding_fraction(lengths, [np.array([0, 1]), np.array([2, 3])]) == pytest.approx(1 - 11 / 16)
    # real 4+4 + 2+1 = 11, padded 4*2 + 2*2 = 12
    assert padding_fraction(lengths, [np.array([1, 2]), np.array([0, 3])]) == pytest.approx(1 / 12)
    assert padding_fraction([3, 3, 3], [np.array([0, 1, 2])]) == 0.0
    assert padding_fraction([], []) == 0.0
    assert padding_fraction(lengths, [np.array([i]) for i in range(4)]) == 0.0


def test_bucketing_pads_less_than_random_batches():
    lengths = random_lengths(200, seed=1)
    bucketed = padding_fraction(lengths, bucket_batches(lengths, batch_size=16))
    naive = padding_fraction(lengths, np.array_split(np.arange(200), 200 // 16))
    assert bucketed < naive and bucketed < 0.1


# --------------------------------------------------------------------------- collate


def tiny_encoded() -> Encoded:
    return Encoded(input_ids=[[2, 5, 6, 3], [2, 7, 3], [2, 8, 9, 10, 11, 3]],
                   labels=[[-100, 1, 0, -100], [-100, 5, -100], [-100, 0, -100, 3, 4, -100]],
                   word_index=[[-1, 0, 1, -1], [-1, 0, -1], [-1, 0, -1, 1, 2, -1]],
                   example=[0, 1, 2], n_words=[2, 1, 3])


def test_collate_token_level():
    enc = tiny_encoded()
    b = TOKEN.collate(enc, [1, 0], pad_id=0)
    assert set(b) == {"input_ids", "attention_mask", "labels"}
    assert b["input_ids"].dtype == b["attention_mask"].dtype == b["labels"].dtype == torch.long
    assert b["input_ids"].tolist() == [[2, 7, 3, 0], [2, 5, 6, 3]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert b["labels"].tolist() == [[-100, 5, -100, IGNORE], [-100, 1, 0, -100]]
    b = TOKEN.collate(enc, np.array([0, 1, 2]), pad_id=99)
    assert b["input_ids"].shape == b["attention_mask"].shape == b["labels"].shape == (3, 6)
    assert b["input_ids"][1].tolist() == [2, 7, 3, 99, 99, 99]
    assert b["labels"][1, 3:].tolist() == [IGNORE] * 3
    assert b["attention_mask"].sum(1).tolist() == [4, 3, 6]


def test_collate_sequence_level():
    enc = Encoded(input_ids=[[2, 5, 3], [2, 5, 6, 7, 3]], labels=[[1], [0]], word_index=[[-1] * 3, [-1] * 5],
                  example=[0, 1], n_words=[1, 3])
    b = SEQUENCE.collate(enc, [1, 0], pad_id=0)
    assert b["labels"].shape == (2,) and b["labels"].tolist() == [0, 1]
    assert b["input_ids"].shape == (2, 5)
    assert b["input_ids"][1].tolist() == [2, 5, 3, 0, 0]


def test_pad_rows():
    t = pad_rows([[1], [1, 2, 3], []], value=-7)
    assert t.tolist() == [[1, -7, -7], [1, 2, 3], [-7, -7, -7]] and t.dtype == torch.long
