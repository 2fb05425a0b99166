"""Temperature-based sampling over languages for the student's transfer set
(``--transfer-lang-temperature``, :mod:`xdistill.transfer.sampling`)."""

from __future__ import annotations

import numpy as np
import pytest

from xdistill.config import DistillArguments
from xdistill.data.types import Encoded
from xdistill.distill.loop import DataSource
from xdistill.errors import ConfigError
from xdistill.transfer import row_groups, sampled_transfer_rows
from xdistill.transfer.sampling import epoch_rows


def _encoded(example: list[int], lengths: list[int] | None = None) -> Encoded:
    lengths = lengths or [3] * len(example)
    ids = [[1] * n for n in lengths]
    return Encoded(ids, [[-100] * n for n in lengths], [[-1] * n for n in lengths], example,
                   [1] * (max(example) + 1 if example else 0))


def test_epoch_rows_repeat_small_groups_by_temperature():
    groups = ["de"] * 400 + ["yo"] * 25 + [None] * 3
    rows, repeats = epoch_rows(groups, 2.0)
    assert repeats == {"de": 1, "yo": 4}  # sqrt(400 / 25)
    counts = np.bincount(rows, minlength=len(groups))
    assert (counts[:400] == 1).all() and (counts[400:425] == 4).all() and (counts[425:] == 1).all()
    assert len(rows) == 400 + 4 * 25 + 3
    # yo's share of an epoch: 100 / 500 = 0.2, close to sqrt(25) / (sqrt(400) + sqrt(25)) = 0.2
    assert epoch_rows(groups, 1.0) == (None, {})
    assert epoch_rows(["a"] * 5 + ["b"] * 5, 3.0) == (None, {})  # equal groups: nothing to repeat
    assert epoch_rows([None] * 4, 2.0) == (None, {})


def test_row_groups_follow_each_rows_example_across_sources():
    first = _encoded([0, 0, 1, 2])  # example 0 was split into two windows
    second = _encoded([0, 1])
    groups = row_groups([(first, ["en", "en", "sw"]), (second, None)])
    assert groups == ["en", "en", "en", "sw", None, None]


def test_epoch_batches_visit_each_row_as_often_as_sampled():
    enc = _encoded(list(range(6)), [2, 5, 3, 4, 2, 6])
    source = DataSource(enc)
    once = np.concatenate(source.epoch_batches(batch_size=4, seed=0))
    assert sorted(once.tolist()) == list(range(6))
    rows, record = sampled_transfer_rows("unlabeled", ["a", "a", "a", "a", "b", None], 2.0)
    assert record == {"temperature": 2.0, "repeats": {"b": 2}, "rows": 6, "rows_per_epoch": 7}
    assert sampled_transfer_rows("unlabeled", ["a", "b"], 2.0) == (None, None)
    sampled = DataSource(enc, epoch_rows=rows).epoch_batches(batch_size=4, seed=0)
    visits = np.bincount(np.concatenate(sampled), minlength=6)
    assert visits.tolist() == [1, 1, 1, 1, 2, 1]  # b: sqrt(4 / 1) = 2 repeats; no group: once
    assert all(len(b) <= 4 for b in sampled)


def test_transfer_lang_temperature_below_one_is_rejected():
    with pytest.raises(ConfigError, match="--transfer-lang-temperature"):
        DistillArguments(transfer_lang_temperature=0.5)
