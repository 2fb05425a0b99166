"""The teacher-feature cache: keys, compute-then-reuse, stored values per named feature, interrupted runs, stats,
rows copied from earlier caches."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch

import tiny_models as tm
from xdistill.data.types import Ragged, Feature
from xdistill.errors import ConfigError
from xdistill.transfer import cache
from xdistill.config import parse_hidden_storage
from xdistill.transfer.storage import HiddenStorage
from xdistill.reporting.report import _labeling
from xdistill.transfer.cache import CACHE_FORMAT, FeatureCache, cache_key, inputs_fingerprint, label_rows, row_ids

LAST = "hidden_states.2"  # the tiny teacher has 2 layers
SETTINGS = {"features": [LAST, "logits"], "dtype": "float16", "level": "token", "name": "transfer",
            "hidden": {LAST: "fp16"}}

# Transfer text of varied lengths (so batches get padding), tags dropped.
TRANSFER = tm.SENTENCES + [(["Anna", "and", "Bob", "visited", "the", "big", "Schweiz", "and", "Paris", "."], [])]


class CountingModel:
    """Wraps a model and counts forward calls (what the teacher uses: config, parameters, eval, __call__);
    ``rows`` records every input row it ran on (its non-padding ids, as a tuple)."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.calls = 0
        self.rows: list[tuple[int, ...]] = []

    def eval(self):
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    def __call__(self, *args, **kw):
        self.calls += 1
        ids = kw["input_ids"] if "input_ids" in kw else args[0]
        mask = kw.get("attention_mask", torch.ones_like(ids))
        self.rows += [tuple(i for i, keep in zip(row, m) if keep) for row, m in zip(ids.tolist(), mask.tolist())]
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


@pytest.fixture(scope="module")
def enc(adapter, tok):
    return tm.encode(adapter, tok, TRANSFER, labeled=False)


def run(model, adapter, enc, root, tok, layer=2, fingerprint="fp0", max_tokens=40, name="transfer", features=None,
        hidden="fp16"):
    features = features or [Feature("hidden_states", layer), Feature("logits")]
    return label_rows(tm.teacher_of(model, tok, fingerprint), adapter.level, enc, features, root,
                      max_tokens=max_tokens, name=name, hidden=hidden)


# --------------------------------------------------------------------------- cache_key


def test_cache_key_is_stable(enc):
    k = cache_key("fp0", enc, SETTINGS)
    assert k == cache_key("fp0", copy.deepcopy(enc), dict(reversed(list(SETTINGS.items()))))
    assert len(k) == 20 and all(c in "0123456789abcdef" for c in k)
    assert inputs_fingerprint(enc) == inputs_fingerprint(copy.deepcopy(enc))


def test_cache_key_changes_with_teacher_fingerprint(enc):
    assert cache_key("fp0", enc, SETTINGS) != cache_key("fp1", enc, SETTINGS)


def test_cache_key_changes_with_any_input_id(enc):
    base = cache_key("fp0", enc, SETTINGS)
    seen = {base}
    for r in range(len(enc)):
        for pos in range(len(enc.input_ids[r])):
            other = copy.deepcopy(enc)
            other.input_ids.flat[other.input_ids.offsets[r] + pos] += 1
            k = cache_key("fp0", other, SETTINGS)
            assert k not in seen, (r, pos)
            seen.add(k)


def test_cache_key_changes_with_rows_added_removed_or_reordered(enc):
    base = cache_key("fp0", enc, SETTINGS)
    n = len(enc)
    dropped = copy.deepcopy(enc)
    dropped.input_ids = dropped.input_ids[:-1]
    swapped = copy.deepcopy(enc)
    swapped.input_ids = swapped.input_ids.take([1, 0, *range(2, n)])
    added = copy.deepcopy(enc)
    added.input_ids = Ragged.concat([added.input_ids, [[2, 3]]])
    keys = {base, cache_key("fp0", dropped, SETTINGS), cache_key("fp0", swapped, SETTINGS),
            cache_key("fp0", added, SETTINGS)}
    assert len(keys) == 4


@pytest.mark.parametrize("change", [{"features": ["hidden_states.1", "logits"]}, {"features": [LAST]},
                                    {"dtype": "float32"}, {"level": "sequence"}, {"name": "validation"}, {"extra": True}])
def test_cache_key_changes_with_any_setting(enc, change):
    assert cache_key("fp0", enc, SETTINGS) != cache_key("fp0", enc, {**SETTINGS, **change})


def test_cache_key_ignores_labels_and_word_index(enc):
    other = copy.deepcopy(enc)
    other.labels = [[0] * len(x) for x in other.labels]
    other.word_index = [[-1] * len(x) for x in other.word_index]
    assert cache_key("fp0", enc, SETTINGS) == cache_key("fp0", other, SETTINGS)


# --------------------------------------------------------------------------- compute, then reuse


def test_teacher_outputs_computes_then_reuses(tmp_path, teacher, adapter, enc, tok):
    model = CountingModel(teacher)
    out1, stats1 = run(model, adapter, enc, tmp_path, tok)
    assert stats1["cached"] is False
    calls = model.calls
    assert calls >= 2  # max_tokens=40 splits the rows into several batches

    out2, stats2 = run(model, adapter, enc, tmp_path, tok)
    assert stats2["cached"] is True
    assert model.calls == calls  # not one more forward pass
    assert out2.path == out1.path
    for key in ("logits", LAST):
        np.testing.assert_array_equal(np.asarray(out2.arrays[key]), np.asarray(out1.arrays[key]))
    np.testing.assert_array_equal(out2.offsets, out1.offsets)
    for k in ("seconds", "real_tokens", "tokens_per_second", "padding_fraction", "rows", "batches"):
        assert stats2[k] == stats1[k]

    # one cache folder, named NAME-KEY, with its files; no temporary folder left
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert entries == [out1.path.name]
    assert out1.path.name == "transfer-" + cache_key("fp0", enc, SETTINGS)
    assert {p.name for p in out1.path.iterdir()} == {"logits.0.npy", f"{LAST}.0.npy", "offsets.npy", "row_ids.npy",
                                                     "meta.json"}
    meta = json.loads((out1.path / "meta.json").read_text())
    assert meta["teacher"] == "fp0" and meta["settings"] == SETTINGS and meta["teacher_layers"] == 2
    assert meta["format"] == CACHE_FORMAT and stats1["reused_rows"] == 0 and stats1["reused_from"] == []
    assert meta["features"] == {LAST: 32, "logits": 7}


def test_another_teacher_layer_or_fingerprint_is_recomputed(tmp_path, teacher, adapter, enc, tok):
    model = CountingModel(teacher)
    out_a, _ = run(model, adapter, enc, tmp_path, tok)
    n = model.calls
    out_b, stats_b = run(model, adapter, enc, tmp_path, tok, layer=1)
    assert stats_b["cached"] is False and model.calls > n
    n = model.calls
    out_c, stats_c = run(model, adapter, enc, tmp_path, tok, fingerprint="fp-other")
    assert stats_c["cached"] is False and model.calls > n
    assert len({out_a.path, out_b.path, out_c.path}) == 3
    # the same logits under another layer setting, different hidden states
    np.testing.assert_array_equal(np.asarray(out_a.arrays["logits"]), np.asarray(out_b.arrays["logits"]))
    assert not np.array_equal(np.asarray(out_a.arrays[LAST]), np.asarray(out_b.arrays["hidden_states.1"]))


# --------------------------------------------------------------------------- stored values


@pytest.mark.parametrize("layer", [2, 1])
def test_stored_arrays_match_the_model(tmp_path, teacher, adapter, enc, tok, layer):
    out, _ = run(teacher, adapter, enc, tmp_path, tok, layer=layer)
    hidden = f"hidden_states.{layer}"
    assert isinstance(out, FeatureCache)
    assert len(out) == len(enc) and out.keys == [hidden, "logits"]
    assert out.arrays["logits"].dtype == np.float16 and out.arrays[hidden].dtype == np.float16
    assert all(isinstance(a, np.memmap) for a in out.arrays.values())
    assert out.offsets[0] == 0 and out.offsets[-1] == enc.lengths.sum()
    for i, ids in enumerate(enc.input_ids):
        lg, hd = out.row("logits", i), out.row(hidden, i)
        assert lg.shape == (len(ids), 7)
        assert hd.shape == (len(ids), 32)
        ref_lg, ref_hd = tm.reference_outputs(teacher, ids, layer)
        np.testing.assert_allclose(lg.astype(np.float32), ref_lg, rtol=1e-2, atol=3e-3)
        np.testing.assert_allclose(hd.astype(np.float32), ref_hd, rtol=1e-2, atol=3e-3)


def test_layer_selects_that_hidden_state(tmp_path, teacher, adapter, enc, tok):
    """layer=1 is the first transformer layer's output, not the last one's (they differ)."""
    out1, _ = run(teacher, adapter, enc, tmp_path, tok, layer=1)
    ids = enc.input_ids[0]
    _, last = tm.reference_outputs(teacher, ids, -1)
    _, first = tm.reference_outputs(teacher, ids, 1)
    stored = out1.row("hidden_states.1", 0).astype(np.float32)
    assert np.abs(first - last).max() > 0.1
    assert np.abs(stored - first).max() < 0.02 < np.abs(stored - last).max()


def test_batch_pads_rows_with_zeros(tmp_path, teacher, adapter, enc, tok):
    out, _ = run(teacher, adapter, enc, tmp_path, tok)
    rows = [0, len(enc) - 1]
    width = int(max(enc.lengths[r] for r in rows)) + 2
    lg, hd = out.batch("logits", rows, width), out.batch(LAST, rows, width)
    assert lg.dtype == torch.float32 and lg.shape == (2, width, 7) and hd.shape == (2, width, 32)
    for j, r in enumerate(rows):
        n = int(enc.lengths[r])
        np.testing.assert_array_equal(lg[j, :n].numpy(), out.row("logits", r).astype(np.float32))
        assert torch.all(lg[j, n:] == 0) and torch.all(hd[j, n:] == 0)
    with pytest.raises(KeyError, match="attentions.1.*not in the cache"):
        out.batch("attentions.1", rows, width)


def test_only_the_requested_features_are_computed_and_stored(tmp_path, teacher, adapter, enc, tok):
    out, _ = run(teacher, adapter, enc, tmp_path, tok, features=[Feature("logits")])
    assert out.keys == ["logits"]
    assert not list(out.path.glob(f"{LAST}.*npy"))


def test_views_select_and_renumber_rows(tmp_path, teacher, adapter, enc, tok):
    out, _ = run(teacher, adapter, enc, tmp_path, tok)
    view = out.rows([3, 1])
    assert len(view) == 2
    np.testing.assert_array_equal(view.row("logits", 0), out.row("logits", 3))
    np.testing.assert_array_equal(view.rows([1]).row(LAST, 0), out.row(LAST, 1))
    torch.testing.assert_close(view.batch("logits", [1, 0], 12), out.batch("logits", [1, 3], 12))


def test_attention_maps_are_not_cacheable(tmp_path, teacher, adapter, enc, tok):
    with pytest.raises(ConfigError, match="attentions.1.*cannot be cached.*live teacher"):
        run(teacher, adapter, enc, tmp_path, tok, features=[Feature("attentions", 1)])


# --------------------------------------------------------------------------- interrupted runs


def test_leftover_tmp_folder_is_not_a_cache(tmp_path, teacher, adapter, enc, tok):
    done, _ = run(teacher, adapter, enc, tmp_path / "a", tok)
    root = tmp_path / "b"
    root.mkdir()
    # A complete-looking folder under the temporary name of another (killed) process, with wrong values.
    leftover = root / f"{done.path.name}.tmp99999999"
    shutil.copytree(done.path, leftover)
    lg = np.load(leftover / "logits.0.npy", mmap_mode="r+")
    lg[:] = 0
    lg.flush()
    del lg
    model = CountingModel(teacher)
    out, stats = run(model, adapter, enc, root, tok)
    assert stats["cached"] is False
    assert model.calls > 0
    assert out.path == root / done.path.name
    np.testing.assert_array_equal(np.asarray(out.arrays["logits"]), np.asarray(done.arrays["logits"]))


def test_own_stale_tmp_folder_is_replaced(tmp_path, teacher, adapter, enc, tok):
    """A half-written folder under this process's temporary name is cleared, then renamed when complete."""
    key = cache_key("fp0", enc, SETTINGS)
    stale = tmp_path / f"transfer-{key}.tmp{os.getpid()}"
    stale.mkdir()
    (stale / "logits.0.npy").write_bytes(b"half written")
    out, stats = run(teacher, adapter, enc, tmp_path, tok)
    assert stats["cached"] is False
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir()] == [f"transfer-{key}"]
    assert out.row("logits", 0).shape == (len(enc.input_ids[0]), 7)


def test_final_folder_without_meta_is_recomputed(tmp_path, teacher, adapter, enc, tok):
    key = cache_key("fp0", enc, SETTINGS)
    broken = tmp_path / f"transfer-{key}"
    broken.mkdir()
    (broken / "logits.0.npy").write_bytes(b"garbage")
    model = CountingModel(teacher)
    out, stats = run(model, adapter, enc, tmp_path, tok)
    assert stats["cached"] is False and model.calls > 0
    assert (out.path / "meta.json").is_file()
    ref_lg, _ = tm.reference_outputs(teacher, enc.input_ids[0], -1)
    np.testing.assert_allclose(out.row("logits", 0).astype(np.float32), ref_lg, rtol=1e-2, atol=3e-3)


# --------------------------------------------------------------------------- stats


def test_stats_report_tokens_per_second_and_padding(tmp_path, teacher, adapter, enc, tok):
    _, stats = run(teacher, adapter, enc, tmp_path, tok, max_tokens=40)
    assert stats["rows"] == len(enc)
    assert stats["real_tokens"] == int(enc.lengths.sum())
    assert stats["tokens_per_second"] is not None and stats["tokens_per_second"] > 0
    assert stats["seconds"] > 0
    assert 0.0 < stats["padding_fraction"] < 1.0  # rows of different lengths share batches
    assert stats["batches"] >= 2


def test_padding_fraction_is_zero_for_equal_lengths(tmp_path, teacher, adapter, tok):
    same = tm.encode(adapter, tok, [(["Anna", "visited", "Berlin"], []), (["Bob", "visited", "Paris"], []),
                                    (["Carl", "met", "Anna"], [])], labeled=False)
    assert len(set(same.lengths.tolist())) == 1
    _, stats = run(teacher, adapter, same, tmp_path, tok, max_tokens=1000, name="validation")
    assert stats["padding_fraction"] == 0.0
    assert stats["batches"] == 1


def test_format_version_is_part_of_the_key(enc, monkeypatch):
    k = cache_key("fp0", enc, SETTINGS)
    monkeypatch.setattr(cache, "CACHE_FORMAT", CACHE_FORMAT + 1)
    assert cache.cache_key("fp0", enc, SETTINGS) != k


# --------------------------------------------------------------------------- cheaper hidden-state storage


def test_int8_code_is_within_half_a_step_per_value():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 24)).astype(np.float32) * rng.uniform(0.1, 10, size=(50, 1)).astype(np.float32)
    x[3] = 0.0  # a zero vector: scale 0, decoded as zeros
    code = HiddenStorage.parse("int8")
    q, scale = code.encode(x)
    assert q.dtype == np.int8 and scale.shape == (50, 1) and scale.dtype == np.float16
    back = code.decode(q, scale)
    assert np.all(np.abs(back - x) <= scale.astype(np.float32) * 0.5 + 1e-3 * np.abs(x) + 1e-6)
    assert np.all(back[3] == 0)
    assert code.bytes_per_position(768) == 770


def test_pca_code_keeps_the_top_components():
    rng = np.random.default_rng(1)
    # 5 directions carry the variance, the other 11 a little noise
    x = (rng.normal(size=(400, 5)) * [9, 7, 5, 3, 2]) @ rng.normal(size=(5, 16)) + 0.01 * rng.normal(size=(400, 16))
    x = x.astype(np.float32) + 3.0
    full, top = HiddenStorage.parse("pca:16"), HiddenStorage.parse("pca:5")
    full.fit(x)
    top.fit(x)
    assert top.basis.shape == (16, 5) and top.stored_width(16) == 5 and top.bytes_per_position(768) == 10
    assert np.abs(full.decode(*full.encode(x)) - x).max() < 0.05  # float16 coordinates
    err = np.abs(top.decode(*top.encode(x)) - x).mean()
    assert err < 0.05 * np.abs(x - x.mean(0)).mean()
    assert HiddenStorage.parse("pca:256").bytes_per_position(768) == 512


@pytest.mark.parametrize("spec", ["int8", "pca:4"])
def test_cheaper_storage_round_trips_through_the_cache(tmp_path, teacher, adapter, enc, tok, spec):
    exact, _ = run(teacher, adapter, enc, tmp_path / "fp16", tok)
    coded, _ = run(teacher, adapter, enc, tmp_path / spec.replace(":", ""), tok, hidden=spec)
    assert coded.path.name != exact.path.name  # the storage is part of the key
    assert coded.meta["storage"] == {LAST: spec}
    width = exact.row(LAST, 0).shape[1]
    assert coded.meta["bytes_per_position"][LAST] == (width + 2 if spec == "int8" else 8)
    np.testing.assert_array_equal(coded.row("logits", 2), exact.row("logits", 2))  # logits stay float16
    for r in range(len(enc)):
        a, b = exact.row(LAST, r).astype(np.float32), coded.row(LAST, r)
        assert b.shape == a.shape and b.dtype == np.float32
        if spec == "int8":
            np.testing.assert_allclose(b, a, atol=float(np.abs(a).max()) / 127 + 1e-3)
    again = FeatureCache.open(coded.path)  # read back: the code's files are in the folder and checksummed
    np.testing.assert_array_equal(again.batch(LAST, [0, 1], 12), coded.batch(LAST, [0, 1], 12))
    assert FeatureCache.damage(coded.path) is None
    if spec == "pca:4":  # 4 of the tiny teacher's components: the reconstruction keeps most of the variance
        x = np.concatenate([exact.row(LAST, r).astype(np.float32) for r in range(len(enc))])
        y = np.concatenate([coded.row(LAST, r) for r in range(len(enc))])
        assert ((x - y) ** 2).sum() < ((x - x.mean(0)) ** 2).sum()


def test_cache_hidden_option_is_checked():
    assert parse_hidden_storage("PCA:64") == ("pca", 64) and parse_hidden_storage("int8") == ("int8", 0)
    for bad in ("pca:0", "pca", "int4", "bf16"):
        with pytest.raises(ConfigError, match="--cache-hidden: expected fp16, int8 or pca:K"):
            parse_hidden_storage(bad)


# --------------------------------------------------------------------------- rows copied from earlier caches
# A changed transfer set (new generated rows, a language added) runs the teacher on its new rows only, and the
# result equals a fresh labeling.

OLD = tm.SENTENCES[:5]
NEW = [(["Anna", "and", "Bob", "visited", "the", "big", "Schweiz", "and", "Paris", "."], []),
       (["Zürich", "is", "the", "big", "Schweiz"], [])]


def encode_words(adapter, tok, sentences):
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
    enc = encode_words(adapter, tok, OLD + OLD[:2] + NEW)
    ids = row_ids(enc)
    assert ids.shape == (len(enc), 2) and ids.dtype == np.uint64
    keys = [h.tobytes() for h in ids]
    for i in range(len(enc)):
        for j in range(len(enc)):
            assert (keys[i] == keys[j]) == (list(enc.input_ids[i]) == list(enc.input_ids[j]))


def test_new_rows_only_are_labeled_and_the_cache_equals_a_fresh_one(tmp_path, teacher, adapter, tok):
    old = encode_words(adapter, tok, OLD)
    grown = encode_words(adapter, tok, NEW[:1] + OLD[::-1] + NEW[1:] + OLD[:1])  # new rows, reordered, a duplicate
    donor, _ = label(teacher, adapter, tok, old, tmp_path / "cache")
    counter = CountingModel(teacher)
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
    label(teacher, adapter, tok, encode_words(adapter, tok, OLD), tmp_path, name="validation")
    label(teacher, adapter, tok, encode_words(adapter, tok, NEW), tmp_path)
    union = encode_words(adapter, tok, OLD + NEW)
    counter = CountingModel(teacher)
    cache, stats = label(counter, adapter, tok, union, tmp_path, name="union")
    assert counter.rows == [] and stats["reused_rows"] == len(union) and len(stats["reused_from"]) == 2
    assert stats["tokens_per_second"] is None and stats["batches"] == 0
    assert_same_features(cache, label(teacher, adapter, tok, union, tmp_path / "fresh")[0])


@pytest.mark.parametrize("change", [dict(fingerprint="fp-other"), dict(layer=1), dict(hidden="int8"),
                                    dict(hidden="pca:4")])
def test_no_rows_are_copied_across_teachers_or_settings(tmp_path, teacher, adapter, tok, change):
    old = encode_words(adapter, tok, OLD)
    label(teacher, adapter, tok, old, tmp_path, **{k: v for k, v in change.items() if k == "hidden" and v == "pca:4"})
    counter = CountingModel(teacher)
    grown = encode_words(adapter, tok, OLD + NEW)
    _, stats = label(counter, adapter, tok, grown, tmp_path, **change)
    assert stats["reused_rows"] == 0 and set(counter.rows) == rows_of(grown, range(len(grown)))  # (pca:K also samples)


def test_int8_codes_and_scales_are_copied(tmp_path, teacher, adapter, tok):
    donor, _ = label(teacher, adapter, tok, encode_words(adapter, tok, OLD), tmp_path, hidden="int8")
    grown = encode_words(adapter, tok, OLD + NEW)
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
    donor, _ = label(teacher, adapter, tok, encode_words(adapter, tok, OLD), tmp_path)
    with open(donor.path / "logits.0.npy", "r+b") as f:  # one byte changed after the checksums were taken
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    counter = CountingModel(teacher)
    with caplog.at_level(logging.WARNING, logger="xdistill.transfer.cache"):
        _, stats = label(counter, adapter, tok, encode_words(adapter, tok, OLD + NEW), tmp_path)
    assert stats["reused_rows"] == 0 and len(counter.rows) == len(OLD) + len(NEW)
    assert any("damaged" in r.message and "none of its rows is reused" in r.message for r in caplog.records)


def test_caches_without_row_ids_or_of_another_format_donate_nothing(tmp_path, teacher, adapter, tok):
    donor, _ = label(teacher, adapter, tok, encode_words(adapter, tok, OLD), tmp_path)
    meta = json.loads((donor.path / "meta.json").read_text())
    (donor.path / "meta.json").write_text(json.dumps({**meta, "format": meta["format"] - 1}))
    _, stats = label(teacher, adapter, tok, encode_words(adapter, tok, OLD + NEW), tmp_path)
    assert stats["reused_rows"] == 0


def test_the_report_says_how_the_teacher_outputs_were_had():
    base = {"teacher_tokens_per_second": 1234.4, "padding_fraction": 0.25, "teacher_rows": 1000}
    assert _labeling({**base, "teacher_rows_copied": 0}) == "1234 real tokens/s, padding fraction 25.0%"
    assert _labeling({**base, "teacher_rows_copied": 900}) == ("1234 real tokens/s, padding fraction 25.0%, "
                                                                "900 of 1,000 rows copied from earlier caches")
    assert _labeling({**base, "teacher_tokens_per_second": None, "teacher_rows_copied": 1000}) == \
        "all 1,000 rows copied from earlier caches"
    assert _labeling({**base, "teacher_labeling_cached": True, "teacher_rows_copied": 900}).endswith("(read from cache)")
