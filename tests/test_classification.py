"""Text classification: the sequence-classification adapter, pooled BiLSTM students, the teacher-output
cache at sequence level, Encoded.concat / FeatureCache.rows, inference and the CLI on a tiny student,
and the classify options (GenerationArguments, TextDataArguments)."""

from __future__ import annotations

import copy
import io
import json
import math

import numpy as np
import pytest
import torch

import tiny_models as tm
from xdistill.adapters import SEQUENCE, SequenceClassificationAdapter, load_task, make_adapter
from xdistill.cli import main
from xdistill.config import GenerationArguments, TextDataArguments
from xdistill.data.types import Encoded, Feature
from xdistill.errors import ConfigError
from xdistill.students import load_student
from xdistill.students.bilstm import BiLSTMStudent
from xdistill.transfer import CachedTargets, FeatureCache, FeatureCacheView, label_rows

LABELS = ("neg", "pos")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tm.single_thread():
        yield


@pytest.fixture(scope="module")
def adapter() -> SequenceClassificationAdapter:
    return make_adapter(load_task("imdb"))


def ds(texts, labels):
    return {"text": list(texts), "label": list(labels)}


def tokens(tok, ids):
    return tok.convert_ids_to_tokens(list(ids))


# --------------------------------------------------------------------------- adapter: basics


def test_make_adapter_gives_the_sequence_adapter(adapter):
    assert isinstance(adapter, SequenceClassificationAdapter)
    assert adapter.level is SEQUENCE and adapter.command == "classify" and adapter.unit == "texts"
    assert adapter.primary_metric == "accuracy"
    assert adapter.labels == LABELS and adapter.num_labels == 2
    assert adapter.label2id == {"neg": 0, "pos": 1}
    level = adapter.level
    assert level.student_pooling("max") == "max" and level.student_pooling("attention") == "attention"
    assert level.positions(np.array([5, 9, 3])).tolist() == [1, 1, 1]


# --------------------------------------------------------------------------- encode


def test_encode_one_row_per_text_with_cls_sep_and_labels(adapter, tok):
    enc = adapter.encode(ds(["Anna visited Berlin .", "Bob", "Carl met Anna"], ["pos", "neg", ""]), tok, 32)
    assert len(enc) == 3
    assert enc.example == [0, 1, 2]
    assert enc.n_words == [1, 1, 1]
    assert tokens(tok, enc.input_ids[0]) == ["[CLS]", "Anna", "visited", "Berlin", ".", "[SEP]"]
    assert tokens(tok, enc.input_ids[1]) == ["[CLS]", "Bob", "[SEP]"]
    assert tokens(tok, enc.input_ids[2]) == ["[CLS]", "Carl", "met", "Anna", "[SEP]"]
    assert enc.labels == [[1], [0], [-100]]
    assert enc.word_index == [[-1] * len(r) for r in enc.input_ids]
    assert enc.stats == {"examples": 3, "windows": 3, "examples_truncated": 0, "tokens_cut": 0, "max_length": 32}


# 6, 1, 3 and 6 subwords ("Parising is big" -> Paris ##ing is b ##i ##g): two of them longer than a budget of 3
LONG_AND_SHORT = ds(["Anna visited Berlin in Paris .", "Bob", "Carl met Anna", "Parising is big"],
                    ["pos", "neg", "pos", "neg"])


def test_encode_truncates_and_counts_exactly(adapter, tok):
    enc = adapter.encode(LONG_AND_SHORT, tok, 5)   # budget 5 - 2 = 3
    assert tokens(tok, enc.input_ids[0]) == ["[CLS]", "Anna", "visited", "Berlin", "[SEP]"]
    assert tokens(tok, enc.input_ids[1]) == ["[CLS]", "Bob", "[SEP]"]
    assert tokens(tok, enc.input_ids[2]) == ["[CLS]", "Carl", "met", "Anna", "[SEP]"]
    assert tokens(tok, enc.input_ids[3]) == ["[CLS]", "Paris", "##ing", "is", "[SEP]"]
    assert all(len(r) <= 5 for r in enc.input_ids)
    assert enc.stats["examples_truncated"] == 2
    assert enc.stats["tokens_cut"] == (6 - 3) + (6 - 3)
    assert enc.stats["examples"] == enc.stats["windows"] == 4
    assert enc.stats["max_length"] == 5


def test_encode_left_truncation_keeps_the_end(adapter, tok):
    """``truncation_side="left"`` keeps the last ``max_length - 2`` subwords; counts as for the right side."""
    left = copy.deepcopy(tok)
    left.truncation_side = "left"
    enc = adapter.encode(LONG_AND_SHORT, left, 5)
    assert tokens(left, enc.input_ids[0]) == ["[CLS]", "in", "Paris", ".", "[SEP]"]
    assert tokens(left, enc.input_ids[1]) == ["[CLS]", "Bob", "[SEP]"]
    assert tokens(left, enc.input_ids[2]) == ["[CLS]", "Carl", "met", "Anna", "[SEP]"]
    assert tokens(left, enc.input_ids[3]) == ["[CLS]", "b", "##i", "##g", "[SEP]"]
    right = adapter.encode(LONG_AND_SHORT, tok, 5)
    assert enc.stats == right.stats and enc.labels == right.labels


def test_truncation_side_option_reaches_the_saved_tokenizer_and_serving(adapter, tok, tmp_path):
    """``--truncation-side left`` is the teacher tokenizer's ``truncation_side``, written to
    tokenizer_config.json, kept by the student's pruned tokenizer and read back by ``load_model``."""
    from transformers import AutoTokenizer

    from xdistill.config import TeacherArguments
    from xdistill.serving.inference import load_model
    from xdistill.students.tokenizer import pruned_tokenizer
    from xdistill.teachers.build import load_tokenizer

    tok.save_pretrained(tmp_path / "tok")
    data = TextDataArguments(data_dir=str(tmp_path), truncation_side="left")
    loaded = load_tokenizer(TeacherArguments(tokenizer=str(tmp_path / "tok")), data)
    assert loaded.truncation_side == "left"
    student_tok = pruned_tokenizer(loaded, sorted(set(loaded.get_vocab().values())))
    assert student_tok.truncation_side == "left"
    student = save_student(tmp_path / "student", student_tok)
    assert AutoTokenizer.from_pretrained(student).truncation_side == "left"
    m = load_model(student)
    enc = m.adapter.encode(ds(["Anna visited Berlin " * 20 + "in Paris ."], [""]), m.tokenizer, m.max_length)
    assert tokens(m.tokenizer, enc.input_ids[0])[-4:] == ["in", "Paris", ".", "[SEP]"]
    assert load_tokenizer(TeacherArguments(tokenizer=str(tmp_path / "tok")),
                          TextDataArguments(data_dir=str(tmp_path))).truncation_side == "right"
    with pytest.raises(ConfigError, match="--truncation-side: expected one of right, left, got 'middle'"):
        TextDataArguments(data_dir=str(tmp_path), truncation_side="middle")


def test_encode_empty_split_and_too_small_max_length(adapter, tok):
    enc = adapter.encode(ds([], []), tok, 8)
    assert len(enc) == 0 and enc.stats["examples"] == 0
    with pytest.raises(ValueError, match="max_length"):
        adapter.encode(ds(["Bob"], ["pos"]), tok, 2)


# --------------------------------------------------------------------------- decode, score


def test_decode_argmax_per_example(adapter, tok):
    enc = adapter.encode(ds(["Bob", "Anna", "Carl"], ["", "", ""]), tok, 8)
    logits = [np.array([0.3, -1.0]), np.array([-2.0, 2.0]), np.array([0.0, 0.1], dtype=np.float16)]
    assert adapter.decode(logits, enc) == ["neg", "pos", "pos"]


def test_score_hand_computed(adapter):
    gold = ["neg", "pos", "neg", "neg"]
    pred = ["neg", "pos", "pos", "neg"]  # 3 of 4 right
    s = adapter.score(pred, gold)
    assert s["accuracy"] == pytest.approx(75.0)
    # neg: P = 2/2, R = 2/3 -> F1 0.8; pos: P = 1/2, R = 1/1 -> F1 2/3
    assert s["per_class"]["neg"] == pytest.approx(80.0)
    assert s["per_class"]["pos"] == pytest.approx(200 / 3)
    assert s["macro_f1"] == pytest.approx((80.0 + 200 / 3) / 2)
    assert s["n"] == 4


def test_score_all_right_empty_and_length_mismatch(adapter):
    s = adapter.score(["pos", "neg"], ["pos", "neg"])
    assert s["accuracy"] == pytest.approx(100.0) and s["macro_f1"] == pytest.approx(100.0)
    assert adapter.score([], [])["n"] == 0
    with pytest.raises(ValueError):
        adapter.score(["pos"], ["pos", "neg"])


def test_probabilities_are_a_softmax(adapter):
    p = adapter.probabilities([np.array([0.0, 0.0]), np.array([0.0, math.log(3.0)])])
    np.testing.assert_allclose(p[0], [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(p[1], [0.25, 0.75], atol=1e-6)


# --------------------------------------------------------------------------- distillation plumbing


def test_distill_mask_is_one_per_example(adapter):
    att = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    m = adapter.level.distill_mask(att)
    assert m.shape == (3,) and m.dtype == torch.bool and bool(m.all())


def test_teacher_outputs_per_row(adapter):
    torch.manual_seed(0)
    logits, hidden = torch.randn(3, 2), torch.randn(3, 5, 4)
    lg, hd = adapter.level.feature_rows(logits, [5, 3, 2]), adapter.level.feature_rows(hidden, [5, 3, 2])
    assert len(lg) == len(hd) == 3
    for i in range(3):
        assert lg[i].shape == (1, 2) and hd[i].shape == (1, 4)
        assert torch.equal(lg[i][0], logits[i])
        assert torch.equal(hd[i][0], hidden[i, 0])  # the first ([CLS]) position


def make_outputs(logits: np.ndarray, hidden: np.ndarray, offsets) -> FeatureCache:
    return FeatureCache(path=None, shard_arrays={"logits": [np.asarray(logits, dtype=np.float16)],
                                                 "hidden_states.2": [np.asarray(hidden, dtype=np.float16)]},
                        offsets=np.asarray(offsets), shards=np.array([0, len(offsets) - 1]), meta={})


def target_batch(adapter, cache, rows, width):
    batch = {"input_ids": torch.zeros(len(rows), width, dtype=torch.long)}
    t = CachedTargets(cache, adapter.level).batch(rows, batch, ["logits", "hidden_states.2"])
    return t["logits"], t["hidden_states.2"]


def test_teacher_batch_from_cached_outputs(adapter):
    rng = np.random.default_rng(0)
    lg, hd = rng.normal(size=(4, 2)), rng.normal(size=(4, 3))
    out = make_outputs(lg, hd, [0, 1, 2, 3, 4])
    b_lg, b_hd = target_batch(adapter, out, [2, 0, 3], width=7)
    assert b_lg.shape == (3, 2) and b_hd.shape == (3, 3)
    assert b_lg.dtype == torch.float32
    np.testing.assert_allclose(b_lg.numpy(), lg[[2, 0, 3]].astype(np.float16), rtol=0, atol=0)
    np.testing.assert_allclose(b_hd.numpy(), hd[[2, 0, 3]].astype(np.float16), rtol=0, atol=0)
    # and through a view of some rows
    v_lg, v_hd = target_batch(adapter, out.rows([3, 1]), [1, 0], width=2)
    np.testing.assert_array_equal(v_lg.numpy(), lg[[1, 3]].astype(np.float16))
    np.testing.assert_array_equal(v_hd.numpy(), hd[[1, 3]].astype(np.float16))


def test_collate_and_row_logits(adapter, tok):
    enc = adapter.encode(ds(["Anna visited Berlin .", "Bob", "Carl met"], ["pos", "neg", ""]), tok, 32)
    b = adapter.collate(enc, [1, 0, 2], tok.pad_token_id)
    assert b["input_ids"].shape == (3, 6) and b["attention_mask"].shape == (3, 6)
    assert b["labels"].shape == (3,)
    assert b["labels"].tolist() == [0, 1, -100]
    assert b["attention_mask"].sum(1).tolist() == [3, 6, 4]
    assert b["input_ids"][0, 3:].tolist() == [tok.pad_token_id] * 3
    logits = torch.tensor([[0.5, -0.5], [1.0, 2.0], [3.0, 0.0]], dtype=torch.float64)
    rows = adapter.level.row_logits(logits, [3, 6, 4])
    assert len(rows) == 3
    for j, r in enumerate(rows):
        assert r.shape == (2,) and r.dtype == np.float32
        np.testing.assert_allclose(r, logits[j].numpy())


def test_trainer_example_collator_and_metrics(adapter, tok):
    enc = adapter.encode(ds(["Anna visited Berlin .", "Bob"], ["pos", "neg"]), tok, 32)
    ex = [adapter.level.trainer_example(enc, i) for i in range(2)]
    assert ex[0] == {"input_ids": enc.input_ids[0], "labels": 1}
    assert ex[1] == {"input_ids": enc.input_ids[1], "labels": 0}
    batch = adapter.level.trainer_collator(tok)(ex)
    assert batch["input_ids"].shape == (2, 6)
    assert batch["labels"].tolist() == [1, 0]
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, -1.0]])  # neg pos pos neg
    labels = np.array([0, 1, 0, 0])  # neg pos neg neg: 3 of 4 right
    m = adapter.trainer_metrics(logits, labels)
    assert set(m) == {"accuracy", "macro_f1"}
    assert m["accuracy"] == pytest.approx(75.0)
    assert m["macro_f1"] == pytest.approx((80.0 + 200 / 3) / 2)


def test_texts_gold_and_unlabeled_dataset(adapter):
    d = adapter.from_texts(["a b", "c"])
    assert list(d["text"]) == ["a b", "c"] and list(d["label"]) == ["", ""]
    assert adapter.texts(d) == ["a b", "c"]
    assert adapter.gold(ds(["x", "y"], ["pos", "neg"])) == ["pos", "neg"]


def test_read_labeled_file_formats(adapter, tmp_path):
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("text,label\ngood<br />film,1\nbad,0\n", encoding="utf-8")
    d, counts = adapter.read_labeled_file(csv_path, "auto")
    assert list(d["text"]) == ["good film", "bad"] and list(d["label"]) == ["pos", "neg"]
    assert counts == {"texts": 2, "cleaned": 1, "label_counts": {"pos": 1, "neg": 1}}
    jl = tmp_path / "e.jsonl"
    jl.write_text('{"text": "fine", "label": 1}\n{"text": "poor", "label": "0"}\n', encoding="utf-8")
    d, counts = adapter.read_labeled_file(jl, "auto")
    assert list(d["label"]) == ["pos", "neg"] and counts["texts"] == 2
    with pytest.raises(ConfigError, match="--format"):
        adapter.read_labeled_file(csv_path, "panx")


# --------------------------------------------------------------------------- a tiny teacher through the cache


def test_sequence_teacher_outputs_cached(adapter, tok, tmp_path):
    """A tiny BERT sequence classifier labels rows through ``cache.label_rows``: per row (1, C)
    logits and the [CLS] hidden state of the chosen layer; cached targets are (B, C) and (B, D)."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tm.bert_config(len(tok), LABELS, hidden_dropout_prob=0.0,
                                                         attention_probs_dropout_prob=0.0)).eval()
    enc = adapter.encode(ds(["Anna visited Berlin .", "Bob", "Carl met Anna in Paris", "the"], [""] * 4), tok, 32)
    teacher = tm.teacher_of(model, tok, "fp")
    features = [Feature("hidden_states", 2), Feature("logits")]
    out, stats = label_rows(teacher, adapter.level, enc, features, tmp_path / "cache", 64, "transfer")
    assert stats["cached"] is False and len(out) == 4
    assert out.offsets.tolist() == [0, 1, 2, 3, 4]
    with torch.no_grad():
        for i, ids in enumerate(enc.input_ids):
            t = torch.tensor([ids])
            ref = model(input_ids=t, attention_mask=torch.ones_like(t), output_hidden_states=True)
            assert out.row("logits", i).shape == (1, 2) and out.row("hidden_states.2", i).shape == (1, 32)
            np.testing.assert_allclose(out.row("logits", i)[0].astype(np.float32), ref.logits[0].numpy(), atol=2e-2)
            np.testing.assert_allclose(out.row("hidden_states.2", i)[0].astype(np.float32),
                                       ref.hidden_states[-1][0, 0].numpy(), atol=2e-2)
    lg, hd = target_batch(adapter, out, [3, 1], width=9)
    assert lg.shape == (2, 2) and hd.shape == (2, 32)
    np.testing.assert_array_equal(lg[0].numpy(), out.row("logits", 3)[0].astype(np.float32))
    again, stats2 = label_rows(teacher, adapter.level, enc, features, tmp_path / "cache", 64, "transfer")
    assert stats2["cached"] is True
    np.testing.assert_array_equal(np.asarray(again.arrays["logits"]), np.asarray(out.arrays["logits"]))


# --------------------------------------------------------------------------- Encoded.concat, FeatureCache.rows


def test_encoded_concat_renumbers_and_sums(adapter, tok):
    a = adapter.encode(ds(["Anna visited Berlin in Paris .", "Bob"], ["pos", "neg"]), tok, 5)
    b = adapter.encode(ds(["Carl met Anna in Berlin", "the", "Paris"], ["", "", "neg"]), tok, 5)
    c = Encoded.concat([a, b])
    assert len(c) == 5
    assert c.input_ids == [*a.input_ids, *b.input_ids]
    assert c.labels == [*a.labels, *b.labels]
    assert c.example == [0, 1, 2, 3, 4]
    assert c.n_words == [1] * 5
    assert c.stats == {"examples": 5, "windows": 5, "examples_truncated": 2, "tokens_cut": 3 + 2, "max_length": 5}
    # parts whose examples span several rows (token windows) are renumbered by example, not by row
    p = Encoded([[1], [2], [3]], [[0], [0], [0]], [[0], [0], [0]], [0, 0, 1], [4, 2], {"windows": 3, "flag": True})
    q = Encoded([[4], [5]], [[0], [0]], [[0], [0]], [0, 0], [7], {"windows": 2, "flag": False, "name": "x"})
    pq = Encoded.concat([p, q])
    assert pq.example == [0, 0, 1, 2, 2]
    assert pq.n_words == [4, 2, 7]
    assert pq.stats == {"windows": 5, "flag": True, "name": "x"}
    assert len(Encoded.concat([])) == 0


def test_teacher_outputs_rows_view_maps_rows(tmp_path):
    rng = np.random.default_rng(1)
    offsets = np.array([0, 2, 5, 6, 9], dtype=np.int64)  # ragged rows of 2, 3, 1 and 3 positions
    lg = rng.normal(size=(9, 3)).astype(np.float16)
    hd = rng.normal(size=(9, 4)).astype(np.float16)
    d = tmp_path / "cache"
    d.mkdir()
    # two shards (as two processes write them): rows 0-1 (positions 0-4) and rows 2-3 (positions 5-8)
    for k, a in (("logits", lg), ("hidden_states.1", hd)):
        np.save(d / f"{k}.0.npy", a[:5])
        np.save(d / f"{k}.1.npy", a[5:])
    np.save(d / "offsets.npy", offsets)
    (d / "meta.json").write_text(json.dumps({"stats": {}, "features": {"logits": 3, "hidden_states.1": 4},
                                             "shards": [0, 2, 4]}))
    base = FeatureCache.open(d)
    np.testing.assert_array_equal(base.arrays["logits"], lg)  # the shards in row order
    for r in range(4):
        np.testing.assert_array_equal(base.row("logits", r), lg[offsets[r]: offsets[r + 1]])
    assert len(base) == 4
    view = base.rows([3, 1])
    assert isinstance(view, FeatureCacheView) and len(view) == 2
    np.testing.assert_array_equal(view.row("logits", 0), lg[6:9])
    np.testing.assert_array_equal(view.row("hidden_states.1", 0), hd[6:9])
    np.testing.assert_array_equal(view.row("logits", 1), lg[2:5])
    v_lg, v_hd = view.batch("logits", [1, 0], 4), view.batch("hidden_states.1", [1, 0], 4)
    b_lg, b_hd = base.batch("logits", [1, 3], 4), base.batch("hidden_states.1", [1, 3], 4)
    assert torch.equal(v_lg, b_lg) and torch.equal(v_hd, b_hd)
    assert v_lg.shape == (2, 4, 3)
    assert torch.all(v_lg[0, 3:] == 0)  # row 1 has 3 positions: padded to width 4 with zeros
    # a view over a range (as the pipeline takes one transfer set out of the union)
    tail = base.rows(range(2, 4))
    np.testing.assert_array_equal(tail.row("hidden_states.1", 1), hd[6:9])


# --------------------------------------------------------------------------- BiLSTM pooling


def pooled_student(pooling: str, seed: int = 0) -> BiLSTMStudent:
    return BiLSTMStudent.build(vocab_map=np.arange(20), student_vocab_size=20, embedding_dim=6, hidden_size=5,
                               num_labels=3, dropout=0.1, pooling=pooling, seed=seed)


@pytest.mark.parametrize("pooling", ["max", "mean", "attention"])
def test_pooling_shapes(pooling):
    m = pooled_student(pooling).eval()
    ids = torch.tensor([[2, 5, 7, 3, 0], [2, 9, 3, 0, 0]])
    out = m(ids, (ids != 0).long())
    assert out.logits.shape == (2, 3)
    assert out.hidden_states[0].shape == (2, 10)  # the pooled 2H state


@pytest.mark.parametrize("pooling", ["max", "mean", "attention"])
@pytest.mark.parametrize("pad_value", [0, 11])
def test_pooling_ignores_padding(pooling, pad_value):
    m = pooled_student(pooling).eval()
    short, long = [2, 5, 7, 3], [2, 9, 4, 12, 8, 6, 3]
    with torch.no_grad():
        alone = m(torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long))
        ids = torch.full((2, len(long)), pad_value, dtype=torch.long)
        ids[0, : len(short)] = torch.tensor(short)
        ids[1] = torch.tensor(long)
        att = torch.zeros_like(ids)
        att[0, : len(short)] = 1
        att[1] = 1
        both = m(ids, att)
        long_alone = m(torch.tensor([long]), torch.ones(1, len(long), dtype=torch.long))
    torch.testing.assert_close(both.logits[0], alone.logits[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both.hidden_states[0][0], alone.hidden_states[0][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both.logits[1], long_alone.logits[0], atol=1e-6, rtol=1e-5)


def test_max_pooling_is_the_max_over_real_positions():
    m = pooled_student("max").eval()
    h = torch.tensor([[[1.0, -2.0], [3.0, -1.0], [9.0, 9.0]]])
    att = torch.tensor([[1, 1, 0]])
    assert m.pool(h, att).tolist() == [[3.0, -1.0]]


def test_mean_pooling_is_the_average_over_real_positions():
    m = pooled_student("mean").eval()
    h = torch.tensor([[[1.0, -2.0], [3.0, -1.0], [9.0, 9.0]], [[4.0, 2.0], [0.0, 0.0], [0.0, 0.0]]])
    att = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert m.pool(h, att).tolist() == [[2.0, -1.5], [4.0, 2.0]]


def test_mean_pooling_scale_does_not_grow_with_the_length():
    """A text repeated k times keeps its mean-pooled state (a maximum over more positions can only rise)."""
    h = torch.randn(1, 5, 4)
    long = h.repeat(1, 3, 1)
    mean = pooled_student("mean")
    assert torch.allclose(mean.pool(long, torch.ones(1, 15)), mean.pool(h, torch.ones(1, 5)))


def test_attention_pooling_weights_sum_to_one_over_real_positions():
    m = pooled_student("attention").eval()
    h = torch.randn(1, 4, 10)
    att = torch.tensor([[1, 1, 1, 0]])
    # with constant states the weighted sum is that state whatever the weights
    same = torch.ones(1, 4, 10) * 0.3
    same[0, 3] = 5.0  # a padded position: must get zero weight
    torch.testing.assert_close(m.pool(same, att), torch.full((1, 10), 0.3))
    assert m.pool(h, att).shape == (1, 10)


def test_attention_parameters_belong_to_both_heads():
    """The attention pooling trains with whichever head a stage trains: the classifier (logits) or the
    stage-1 projection (hidden states)."""
    from xdistill.distill import StageContext, Trainee, build_stages
    from xdistill.config import DistillArguments

    m = pooled_student("attention")
    att = {id(p) for p in m.attention.parameters()}
    assert att
    stages = build_stages(["representation", "logits"], DistillArguments(), StageContext(teacher_layer=2))
    trainee = Trainee(m, [x for st in stages for x in st.matches], {"hidden_states.2": 7})
    for stage, head in zip(stages, (trainee.projections, m.classifier)):
        name, top = trainee.stage_groups(stage.matches)[0]
        ids = {id(p) for p in top}
        assert att <= ids and {id(p) for p in head.parameters()} <= ids
        assert name == ("projection" if stage.name == "representation" else "classifier")
    for group in ("encoder", "embeddings"):
        assert not att & {id(p) for p in m.group_parameters(group)}
    every = {id(p) for g in ("classifier", "pooling", "encoder", "embeddings") for p in m.group_parameters(g)}
    assert every == {id(p) for p in m.parameters()}
    trainee.set_trainable(trainee.stage_groups(stages[0].matches)[0][1])
    assert all(p.requires_grad for p in m.attention.parameters())
    assert not m.classifier.weight.requires_grad


def test_max_pooling_has_no_attention_parameters():
    m = pooled_student("max")
    assert m.attention is None
    assert {id(p) for p in m.group_parameters("classifier")} == {id(p) for p in m.classifier.parameters()}


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="pooling"):
        pooled_student("sum")


def test_attention_student_save_load_roundtrip(tmp_path):
    m = pooled_student("attention", seed=3).eval()
    m.save(tmp_path / "s", extra={"labels": ["a", "b", "c"]})
    loaded, cfg = load_student(tmp_path / "s")
    assert cfg["pooling"] == "attention"
    ids = torch.tensor([[2, 5, 7, 3, 0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, (ids != 0).long()).logits, m(ids, (ids != 0).long()).logits)


# --------------------------------------------------------------------------- inference and CLI on a tiny student


def save_student(directory, tok, pooling="max", constant: str | None = None, seed: int = 0):
    return tm.make_classifier_dir(directory, tok, pooling=pooling, constant=constant, seed=seed)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tok):
    return save_student(tmp_path_factory.mktemp("student") / "student", tok)


@pytest.fixture(scope="module")
def pos_student_dir(tmp_path_factory, tok):
    """A student that says ``pos`` for every text."""
    return save_student(tmp_path_factory.mktemp("student") / "student", tok, pooling="attention", constant="pos")


def test_load_model_predict(student_dir):
    from xdistill.serving.inference import load_model

    m = load_model(student_dir)
    assert m.kind == "student" and m.max_length == 32
    assert isinstance(m.adapter, SequenceClassificationAdapter)
    assert m.adapter.spec.local.get("label_values") == {"0": "neg", "1": "pos"}  # the imdb task file
    res = m.predict(["great movie", "a " * 100])
    assert len(res) == 2
    for r in res:
        assert r["label"] in LABELS
        assert 0.5 <= r["probability"] <= 1.0
        assert set(r["probabilities"]) == set(LABELS)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["probability"] == pytest.approx(r["probabilities"][r["label"]])
    assert res[0]["text"] == "great movie" and res[0]["tokens_cut"] == 0
    assert res[1]["tokens_cut"] > 0  # 100 words, maximum length 32: truncated as in training, and said so


def test_predict_cleans_text_as_training_did(student_dir, tmp_path):
    """Served text gets the task file's cleaning (IMDB: ``<br />`` to a space), as the training and
    evaluation files did: ``predict`` and ``evaluate_file`` agree on raw IMDB rows."""
    from xdistill.serving.inference import load_model

    m = load_model(student_dir)
    raw = ["great movie.<br /><br />The end was bad<br />", "a<br />b   c"]
    clean = ["great movie. The end was bad", "a b c"]
    got, want = m.predict(raw), m.predict(clean)
    assert [r["text"] for r in got] == raw  # the text as given
    for g, w in zip(got, want):
        assert g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-6)
        assert g["tokens_cut"] == w["tokens_cut"]
    path = tmp_path / "rows.csv"
    path.write_text("text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(raw)), encoding="utf-8")
    ev = m.evaluate_file(path)
    hits = [(r["label"] == "pos") == (i % 2 == 1) for i, r in enumerate(got)]
    assert ev["accuracy"] == pytest.approx(100 * sum(hits) / len(hits))


def test_predict_empty_text_is_a_clear_error(student_dir, capsys, monkeypatch):
    import io

    from xdistill.errors import EmptyTextError
    from xdistill.serving.inference import load_model

    with pytest.raises(EmptyTextError, match="text 2 is empty"):
        load_model(student_dir).predict(["great movie", "  ", "bad"])
    # only what the task's cleaning removes (IMDB <br />): empty as a labeled file's row would be
    with pytest.raises(EmptyTextError, match="text 1, 3 is empty"):
        load_model(student_dir).predict(["<br /><br />", "good", " <br /> "])
    monkeypatch.setattr("sys.stdin", io.StringIO("good\n\nbad\n"))
    assert main(["predict", "--model", str(student_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: stdin line 2: empty text")


def test_cli_predict(student_dir, capsys):
    assert main(["predict", "--model", str(student_dir), "--text", "x", "--text", "great movie"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert [r["text"] for r in lines] == ["x", "great movie"]
    for r in lines:
        assert r["label"] in LABELS and 0.5 <= r["probability"] <= 1.0


def test_cli_predict_from_stdin(pos_student_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("good film\nfine\nbad one\n"))
    assert main(["predict", "--model", str(pos_student_dir), "--batch-lines", "2"]) == 0
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert [r["text"] for r in lines] == ["good film", "fine", "bad one"]
    assert all(r["label"] == "pos" and r["probability"] > 0.99 for r in lines)


def test_cli_evaluate_csv(pos_student_dir, tmp_path, capsys):
    data = tmp_path / "eval.csv"
    data.write_text('text,label\n"a fine<br />film",1\nboring,0\n"great, great",1\nawful,0\n', encoding="utf-8")
    assert main(["evaluate", "--model", str(pos_student_dir), "--data", str(data)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["texts"] == 4 and res["cleaned"] == 1
    assert res["label_counts"] == {"pos": 2, "neg": 2}
    # every prediction is pos: accuracy 2/4; F1 pos = 2 * 0.5 * 1 / 1.5, F1 neg = 0
    assert res["accuracy"] == pytest.approx(50.0)
    assert res["macro_f1"] == pytest.approx(100 / 3)
    assert res["model_kind"] == "student"


def test_cli_evaluate_random_student_reports_metrics(student_dir, tmp_path, capsys):
    data = tmp_path / "eval.csv"
    data.write_text("text,label\ngood,1\nbad,0\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(student_dir), "--data", str(data), "--format", "csv"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert 0.0 <= res["accuracy"] <= 100.0 and 0.0 <= res["macro_f1"] <= 100.0


def test_cli_evaluate_bad_label_is_one_error_line(student_dir, tmp_path, capsys):
    data = tmp_path / "eval.csv"
    data.write_text("text,label\ngood,1\nbad,7\n", encoding="utf-8")
    assert main(["evaluate", "--model", str(student_dir), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{data}:3" in err and "outside the declared set" in err


# --------------------------------------------------------------------------- options


def gen(**kw):
    base = dict(augment="generate", transfer="unlabeled,generated", min_words=5, max_words=50, near_duplicate=0.8)
    base.update(kw)
    return GenerationArguments(**base)


@pytest.mark.parametrize("transfer", ["generated", "unlabeled,generated", "both"])
def test_generated_transfer_needs_augment(transfer):
    from xdistill.transfer import resolve_transfer_sets

    g = GenerationArguments(augment="none", transfer=transfer)
    with pytest.raises(ConfigError, match="--augment generate"):
        resolve_transfer_sets(g.transfer_sets, g)
    assert resolve_transfer_sets(g.transfer_sets, gen(transfer=transfer)) == ["unlabeled", "generated"][
        1 if transfer == "generated" else 0:]


def test_generation_arguments_valid():
    a = gen(transfer="unlabeled, generated,unlabeled,both")
    assert a.transfer_sets == ["unlabeled", "generated", "both"]
    assert GenerationArguments().transfer_sets == ["unlabeled"]
    assert gen(top_p=1.0).top_p == 1.0


@pytest.mark.parametrize("kw, option", [
    (dict(top_p=0.0), "--top-p"), (dict(top_p=1.5), "--top-p"), (dict(top_p=-0.1), "--top-p"),
    (dict(transfer=" , "), "--transfer"),
    (dict(augment="maybe"), "--augment"), (dict(near_duplicate=0.0), "--near-duplicate"),
    (dict(min_words=60, max_words=50), "--min-words"), (dict(generator_hidden_size=33, generator_heads=2), "--generator-hidden-size"),
    (dict(prompt="none"), "--prompt"), (dict(generate=0), "--generate"),
])
def test_generation_arguments_rejected(kw, option):
    with pytest.raises(ConfigError, match=option):
        gen(**kw)


def test_text_data_arguments(tmp_path):
    a = TextDataArguments(data_dir=str(tmp_path), source="local", labeled_per_class=5, teacher_labeled_per_class=5)
    assert a.source == "local"
    TextDataArguments(data_dir=str(tmp_path), source="local", labeled_per_class=5, teacher_labeled_per_class=-1)
    with pytest.raises(ConfigError, match="--teacher-labeled-per-class"):
        TextDataArguments(data_dir=str(tmp_path), source="local", labeled_per_class=5, teacher_labeled_per_class=4)
    with pytest.raises(ConfigError, match="--labeled-per-class"):
        TextDataArguments(data_dir=str(tmp_path), source="local", labeled_per_class=0)
    with pytest.raises(ConfigError, match="--eval-limit"):
        TextDataArguments(data_dir=str(tmp_path), source="local", eval_limit=-2)
    with pytest.raises(ConfigError, match="--data-dir"):
        TextDataArguments(data_dir=str(tmp_path / "missing"), source="local")
