"""PPMI-SVD word embeddings of a scratch teacher (``--teacher-embeddings ppmi``): counts, PPMI and the
SVD on hand-made rows, the embedding rows set and kept, the option's errors, a tiny teacher built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tiny_models as tm
from datasets import concatenate_datasets
from xdistill.adapters import load_task, make_adapter
from xdistill.config import NERDataArguments, TeacherArguments
from xdistill.errors import ConfigError
from xdistill.teachers.cooccurrence import cooccurrence_counts, init_word_embeddings, ppmi, ppmi_svd_vectors
from xdistill.teachers.finetune import TeacherTrainer
from xdistill.pipeline.pretraining_text import check_sources, pretraining_text
from xdistill.teachers.mlm import encode_mlm_text


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tm.single_thread():
        yield


def test_counts_hand_example_dynamic_window_and_rows_apart():
    # rows [1 2 3] and [3 2], window 2: 1-2 and 2-3 one apart (weight 1), 1-3 two apart (weight 1/2);
    # in the second row 3-2 once more; nothing across rows
    c = cooccurrence_counts([[1, 2, 3], [3, 2]], 5, 2).toarray()
    want = np.zeros((5, 5))
    want[1, 2] = want[2, 1] = 1.0
    want[1, 3] = want[3, 1] = 0.5
    want[2, 3] = want[3, 2] = 2.0
    np.testing.assert_allclose(c, want)


def test_special_tokens_are_removed_before_counting():
    # [CLS]=0 and [SEP]=4 left out: 1 and 2 become neighbours, nothing pairs with 0 or 4
    c = cooccurrence_counts([[0, 1, 4, 2, 4]], 5, 1, skip_ids=[0, 4]).toarray()
    assert c[1, 2] == c[2, 1] == 1.0
    assert c[0].sum() == c[4].sum() == c[:, 0].sum() == c[:, 4].sum() == 0


@pytest.mark.parametrize("bad, match", [(dict(window=0), "window"), (dict(rows=[[1, 9]]), r"\[0, 5\)")])
def test_bad_counts_arguments(bad, match):
    kw = {"rows": [[1, 2]], "window": 1, **bad}
    with pytest.raises(ValueError, match=match):
        cooccurrence_counts(kw["rows"], 5, kw["window"])


def test_ppmi_hand_values():
    counts = cooccurrence_counts([[1, 2, 3], [3, 2]], 5, 2)
    p = ppmi(counts, alpha=0.75).toarray()
    n = counts.toarray()
    rows = n.sum(1)
    ctx = n.sum(0) ** 0.75
    ctx_p = ctx / ctx.sum()
    for w, c in [(1, 2), (1, 3), (2, 3), (3, 2), (2, 1)]:
        want = max(0.0, math.log(n[w, c]) - math.log(rows[w]) - math.log(ctx_p[c]))
        assert p[w, c] == pytest.approx(want)
    assert (p >= 0).all() and p[0].sum() == 0


def test_subwords_in_the_same_contexts_get_the_same_vector():
    # 5 and 6 always appear between the same neighbours; 7 in other contexts
    rows = [[1, 5, 2], [1, 6, 2], [3, 5, 4], [3, 6, 4], [8, 7, 9], [9, 7, 8], [1, 2, 3, 4]] * 3
    vectors, seen, report = ppmi_svd_vectors(rows, 12, 4, window=1, seed=0)
    assert vectors.shape == (12, 4) and vectors.dtype == np.float32
    assert seen.tolist() == [False] + [True] * 9 + [False, False]
    assert not vectors[~seen].any()

    def cos(a, b):
        return float(vectors[a] @ vectors[b] / np.linalg.norm(vectors[a]) / np.linalg.norm(vectors[b]))
    assert cos(5, 6) > 0.99
    assert cos(5, 7) < 0.5
    assert report.pieces == 9 and report.dim == 4 and report.tokens == 3 * 22 and report.method == "ppmi-svd"


def test_fewer_subwords_than_dimensions_leave_the_last_columns_zero():
    vectors, seen, report = ppmi_svd_vectors([[1, 2, 3, 1, 2, 3]], 4, 8, window=1)
    assert report.dim == 2 and not vectors[:, 2:].any() and vectors[:, :2].any()


def test_nothing_to_factorise_is_an_error():
    with pytest.raises(ValueError, match="co-occur"):
        ppmi_svd_vectors([[1], [2]], 4, 2)


def test_init_sets_the_rows_of_the_text_at_the_random_scale_and_keeps_the_others():
    torch.manual_seed(0)
    model = torch.nn.Module()
    emb = torch.nn.Embedding(50, 8)
    torch.nn.init.normal_(emb.weight, std=0.02)
    model.get_input_embeddings = lambda: emb
    before = emb.weight.detach().clone()
    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 30, size=12).tolist() for _ in range(40)]
    report = init_word_embeddings(model, rows, skip_ids=[0], seed=0)
    seen = sorted({i for r in rows for i in r})
    assert report.pieces == len(seen)
    w = emb.weight.detach()
    torch.testing.assert_close(w[30:], before[30:])   # never in the text: untouched
    torch.testing.assert_close(w[0], before[0])       # a special token: untouched
    assert not torch.allclose(w[seen], before[seen])
    assert float(w[seen].std()) == pytest.approx(float(before.std()), rel=1e-3)


def test_option_errors():
    with pytest.raises(ConfigError, match="--teacher-embeddings"):
        TeacherArguments(teacher_embeddings="glove")
    with pytest.raises(ConfigError, match=r"--teacher-embeddings ppmi \(the cpu preset's for ner\) with --teacher-mlm"):
        TeacherArguments(teacher_embeddings="ppmi", teacher_mlm="10")
    assert TeacherArguments(teacher_embeddings="ppmi").reads_text
    assert not TeacherArguments().reads_text
    # a checkpoint keeps its own embeddings (as its own vocabulary): the cpu preset works with --teacher
    ckpt = TeacherArguments(teacher="some/checkpoint", teacher_embeddings="ppmi")
    assert not ckpt.ppmi_embeddings and not ckpt.reads_text
    TeacherArguments(teacher="some/checkpoint", teacher_embeddings="ppmi", teacher_mlm="10")  # continued MLM: fine


SIZES = dict(teacher_hidden_size=32, teacher_layers=1, teacher_heads=2, teacher_intermediate_size=37,
             teacher_epochs=1.0, teacher_batch_size=4, teacher_lr=1e-3)


def test_scratch_teacher_starts_from_the_text_vectors(tmp_path):
    adapter = tm.wikiann_adapter()
    tok = tm.make_tokenizer(tmp_path / "tok")
    enc = tm.encode(adapter, tok, tm.SENTENCES)
    text = encode_mlm_text([" ".join(w) for w, _ in tm.SENTENCES] * 4, tok, 32)
    trainer = TeacherTrainer(adapter, TeacherArguments(teacher_embeddings="ppmi", **SIZES), tmp_path / "out", 0, {"t": 1})
    model, needs_training = trainer._build(tok, text)
    assert needs_training
    report = trainer.embeddings_report
    assert report["method"] == "ppmi-svd" and report["pieces"] > 10
    assert report["dim"] == min(32, report["pieces"] - 1)   # the tiny vocabulary: fewer pieces than dimensions
    vectors, seen, _ = ppmi_svd_vectors(text.input_ids, len(tok), 32, tok.all_special_ids, seed=0)
    emb = model.get_input_embeddings().weight.detach()
    got, want = emb[torch.from_numpy(seen)], torch.from_numpy(vectors[seen])
    scale = float(got.norm() / want.norm())
    torch.testing.assert_close(got, want * scale)   # the SVD vectors, rescaled
    teacher = trainer.prepare(tok, enc, enc, False, "8 labeled sentences", text=text)
    assert teacher.info.embeddings == report
    assert "word embeddings from PPMI-SVD of the task text" in teacher.info.description


# --------------------------------------------------------------------------- --mlm-text train


def _write_panx(path, n, lang):
    path.write_text("\n".join(f"{lang}{i}\tB-PER\nrest{i}\tO\n" for i in range(n)), encoding="utf-8")


def test_ner_train_texts_are_every_train_sentence_and_exclude_validation(tmp_path):
    (tmp_path / "wikiann").mkdir()
    for lang, n in (("en", 40), ("de", 25)):
        _write_panx(tmp_path / "wikiann" / f"train-{lang}.tsv", n, lang)
        _write_panx(tmp_path / "wikiann" / f"dev-{lang}.tsv", 5, lang)
    args = NERDataArguments(data_dir=str(tmp_path), source="local", langs="en,de", labeled_per_lang=5,
                            teacher_labeled_per_lang=10, validation_per_lang=4, transfer_per_lang=3,
                            unlabeled_per_lang=0, eval_per_lang=5, seed=1)
    adapter = make_adapter(load_task("wikiann"))
    texts = adapter.train_texts(args, ["en", "de"])
    assert texts == [f"en{i} rest{i}" for i in range(40)] + [f"de{i} rest{i}" for i in range(25)]
    data = adapter.load_data(args)
    splits = {name: concatenate_datasets([getattr(g, name) for g in data.groups.values()])
              for name in ("validation", "transfer", "teacher_labeled")}
    tok = tm.make_tokenizer(tmp_path / "tok")
    targs = TeacherArguments(teacher_embeddings="ppmi", mlm_text="train,transfer")
    text = pretraining_text(adapter, targs, args, splits, ["en", "de"], 32, tok)
    val = adapter.texts(splits["validation"])
    assert len(val) == 8 and set(val) <= set(texts)
    assert text.sources == {"train": 65 - 8, "transfer": 6}   # the 4 + 4 validation sentences left out
    assert len(text) == 57 + 6
    assert text.texts == 63


def test_train_text_of_a_classification_task_and_unknown_sources_are_errors(tmp_path):
    adapter = make_adapter(load_task("imdb"))
    with pytest.raises(ConfigError, match="--mlm-text train: the sequence-classification task reads no train text"):
        adapter.train_texts(None, ["imdb"])
    with pytest.raises(ConfigError, match="--mlm-text: nothere.txt: no such file; expected transfer, labeled, train"):
        check_sources(TeacherArguments(teacher_embeddings="ppmi", mlm_text="transfer,nothere.txt"))
    check_sources(TeacherArguments(mlm_text="nothere.txt"))   # read by no one: not checked
