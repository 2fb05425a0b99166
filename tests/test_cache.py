"""The teacher-feature cache: keys, compute-then-reuse, stored values per named feature, interrupted runs, stats."""

from __future__ import annotations

import copy
import json
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
from xdistill.transfer.cache import CACHE_FORMAT, FeatureCache, cache_key, inputs_fingerprint, label_rows

LAST = "hidden_states.2"  # the tiny teacher has 2 layers
SETTINGS = {"features": [LAST, "logits"], "dtype": "float16", "level": "token", "name": "transfer",
            "hidden": {LAST: "fp16"}}

# Transfer text of varied lengths (so batches get padding), tags dropped.
TRANSFER = tm.SENTENCES + [(["Anna", "and", "Bob", "visited", "the", "big", "Schweiz", "and", "Paris", "."], [])]


class CountingModel:
    """Wraps a model and counts forward calls (what the teacher uses: config, parameters, eval, __call__)."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.calls = 0

    def eval(self):
        self.model.eval()
        return self

    def parameters(self):
        return self.model.parameters()

    def __call__(self, *args, **kw):
        self.calls += 1
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
