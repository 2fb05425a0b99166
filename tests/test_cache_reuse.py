"""Rows an earlier cache holds are copied, not labeled again: a changed transfer set (new generated rows,
a language added) runs the teacher on its new rows only, and the result equals a fresh labeling."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import tiny_models as tm
from xdistill.data.types import Feature
from xdistill.reporting.report import _labeling
from xdistill.transfer.cache import FeatureCache, label_rows, row_ids

OLD = tm.SENTENCES[:5]
NEW = [(["Anna", "and", "Bob", "visited", "the", "big", "Schweiz", "and", "Paris", "."], []),
       (["Zürich", "is", "the", "big", "Schweiz"], [])]


class RowCounter:
    """Wraps a model and records every input row it runs on (as a tuple of its non-padding ids)."""

    def __init__(self, model, pad_id: int):
        self.model, self.config, self.pad_id = model, model.config, pad_id
        self.rows: list[tuple[int, ...]] = []

    def eval(self):
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    def __call__(self, *args, **kw):
        ids = kw["input_ids"] if "input_ids" in kw else args[0]
        mask = kw.get("attention_mask")
        for row, m in zip(ids.tolist(), mask.tolist() if mask is not None else [[1] * ids.shape[1]] * len(ids)):
            self.rows.append(tuple(i for i, keep in zip(row, m) if keep))
        return self.model(*args, **kw)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tm.single_thread():
        yield


@pytest.fixture(scope="module")
def adapter():
    return tm.wikiann_adapter()


@pytest.fixture(scope="module")
def teacher(tok):
    return tm.make_teacher(len(tok))


def encode(adapter, tok, sentences):
    return tm.encode(adapter, tok, [(w, []) for w, _ in sentences], labeled=False)


def label(model, adapter, tok, enc, root, fingerprint="fp0", name="transfer", hidden="fp16", layer=2):
    return label_rows(tm.teacher_of(model, tok, fingerprint), adapter.level, enc,
                      [Feature("hidden_states", layer), Feature("logits")], root, max_tokens=40, name=name,
                      hidden=hidden)


def rows_of(enc, indices):
    return {tuple(enc.input_ids[i]) for i in indices}


def assert_same_features(a: FeatureCache, b: FeatureCache, exact: bool = False):
    assert len(a) == len(b) and a.keys == b.keys
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for k in a.keys:
        for i in range(len(a)):
            x, y = a.row(k, i).astype(np.float32), b.row(k, i).astype(np.float32)
            if exact:
                np.testing.assert_array_equal(x, y)
            else:
                np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-3)


def test_row_ids_are_equal_exactly_for_equal_rows(adapter, tok):
    enc = encode(adapter, tok, OLD + OLD[:2] + NEW)
    ids = row_ids(enc)
    assert ids.shape == (len(enc), 2) and ids.dtype == np.uint64
    keys = [h.tobytes() for h in ids]
    for i in range(len(enc)):
        for j in range(len(enc)):
            assert (keys[i] == keys[j]) == (list(enc.input_ids[i]) == list(enc.input_ids[j]))


def test_new_rows_only_are_labeled_and_the_cache_equals_a_fresh_one(tmp_path, teacher, adapter, tok):
    old = encode(adapter, tok, OLD)
    grown = encode(adapter, tok, NEW[:1] + OLD[::-1] + NEW[1:] + OLD[:1])  # new rows, reordered, a duplicate
    donor, _ = label(teacher, adapter, tok, old, tmp_path / "cache")
    counter = RowCounter(teacher, tok.pad_token_id)
    cache, stats = label(counter, adapter, tok, grown, tmp_path / "cache")
    assert sorted(counter.rows) == sorted(rows_of(grown, [0, len(grown) - 2]))  # the two new rows, once each
    assert stats["cached"] is False and stats["reused_rows"] == len(OLD) + 1
    assert stats["reused_from"] == [donor.path.name]
    assert stats["labeled_tokens"] == int(grown.lengths[[0, len(grown) - 2]].sum())
    assert stats["real_tokens"] == int(grown.lengths.sum())
    # copied rows are the donor's as stored; the whole cache is a fresh labeling's within rounding
    for i, j in [(1, 4), (2, 3), (5, 0), (len(grown) - 1, 0)]:
        for k in cache.keys:
            np.testing.assert_array_equal(cache.row(k, i), donor.row(k, j))
    fresh, fresh_stats = label(teacher, adapter, tok, grown, tmp_path / "elsewhere")
    assert fresh_stats["reused_rows"] == 0 and fresh.path.name == cache.path.name
    assert_same_features(cache, fresh)
    # the new entry stands on its own: the donor may go
    for p in donor.path.iterdir():
        p.unlink()
    donor.path.rmdir()
    again, stats = label(counter, adapter, tok, grown, tmp_path / "cache")
    assert stats["cached"] is True and FeatureCache.damage(again.path) is None
    assert_same_features(again, fresh)


def test_a_set_held_whole_by_earlier_caches_runs_no_teacher(tmp_path, teacher, adapter, tok):
    """Rows from two earlier caches (one of them named otherwise, e.g. the validation split's) make up a new set."""
    label(teacher, adapter, tok, encode(adapter, tok, OLD), tmp_path, name="validation")
    label(teacher, adapter, tok, encode(adapter, tok, NEW), tmp_path)
    union = encode(adapter, tok, OLD + NEW)
    counter = RowCounter(teacher, tok.pad_token_id)
    cache, stats = label(counter, adapter, tok, union, tmp_path, name="union")
    assert counter.rows == [] and stats["reused_rows"] == len(union) and len(stats["reused_from"]) == 2
    assert stats["tokens_per_second"] is None and stats["batches"] == 0
    assert_same_features(cache, label(teacher, adapter, tok, union, tmp_path / "fresh")[0])


@pytest.mark.parametrize("change", [dict(fingerprint="fp-other"), dict(layer=1), dict(hidden="int8"),
                                    dict(hidden="pca:4")])
def test_no_rows_are_copied_across_teachers_or_settings(tmp_path, teacher, adapter, tok, change):
    old = encode(adapter, tok, OLD)
    label(teacher, adapter, tok, old, tmp_path, **{k: v for k, v in change.items() if k == "hidden" and v == "pca:4"})
    counter = RowCounter(teacher, tok.pad_token_id)
    grown = encode(adapter, tok, OLD + NEW)
    _, stats = label(counter, adapter, tok, grown, tmp_path, **change)
    assert stats["reused_rows"] == 0 and set(counter.rows) == rows_of(grown, range(len(grown)))  # (pca:K also samples)


def test_int8_codes_and_scales_are_copied(tmp_path, teacher, adapter, tok):
    donor, _ = label(teacher, adapter, tok, encode(adapter, tok, OLD), tmp_path, hidden="int8")
    grown = encode(adapter, tok, OLD + NEW)
    cache, stats = label(teacher, adapter, tok, grown, tmp_path, hidden="int8")
    assert stats["reused_rows"] == len(OLD)
    for i in range(len(OLD)):
        codes, scale = cache.stored_row("hidden_states.2", i)
        want_codes, want_scale = donor.stored_row("hidden_states.2", i)
        assert codes.dtype == np.int8 and scale is not None
        np.testing.assert_array_equal(codes, want_codes)
        np.testing.assert_array_equal(scale, want_scale)
    assert_same_features(cache, label(teacher, adapter, tok, grown, tmp_path / "fresh", hidden="int8")[0])


def test_a_damaged_donor_is_passed_over_with_a_warning(tmp_path, teacher, adapter, tok, caplog):
    donor, _ = label(teacher, adapter, tok, encode(adapter, tok, OLD), tmp_path)
    with open(donor.path / "logits.0.npy", "r+b") as f:  # one byte changed after the checksums were taken
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    counter = RowCounter(teacher, tok.pad_token_id)
    with caplog.at_level(logging.WARNING, logger="xdistill.transfer.cache"):
        _, stats = label(counter, adapter, tok, encode(adapter, tok, OLD + NEW), tmp_path)
    assert stats["reused_rows"] == 0 and len(counter.rows) == len(OLD) + len(NEW)
    assert any("damaged" in r.message and "none of its rows is reused" in r.message for r in caplog.records)


def test_caches_without_row_ids_or_of_another_format_donate_nothing(tmp_path, teacher, adapter, tok):
    donor, _ = label(teacher, adapter, tok, encode(adapter, tok, OLD), tmp_path)
    meta = json.loads((donor.path / "meta.json").read_text())
    (donor.path / "meta.json").write_text(json.dumps({**meta, "format": meta["format"] - 1}))
    _, stats = label(teacher, adapter, tok, encode(adapter, tok, OLD + NEW), tmp_path)
    assert stats["reused_rows"] == 0


def test_the_report_says_how_the_teacher_outputs_were_had():
    base = {"teacher_tokens_per_second": 1234.4, "padding_fraction": 0.25, "teacher_rows": 1000}
    assert _labeling({**base, "teacher_rows_copied": 0}) == "1234 real tokens/s, padding fraction 25.0%"
    assert _labeling({**base, "teacher_rows_copied": 900}) == ("1234 real tokens/s, padding fraction 25.0%, "
                                                                "900 of 1,000 rows copied from earlier caches")
    assert _labeling({**base, "teacher_tokens_per_second": None, "teacher_rows_copied": 1000}) == \
        "all 1,000 rows copied from earlier caches"
    assert _labeling({**base, "teacher_labeling_cached": True, "teacher_rows_copied": 900}).endswith("(read from cache)")
