"""Teacher self-training (--teacher-self-training): pseudo labels, the rounds, resume, the option."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tiny_models as tm
from xdistill.adapters import SEQUENCE, TOKEN
from xdistill.config import TeacherArguments
from xdistill.data.batching import IGNORE
from xdistill.errors import ConfigError
from xdistill.teachers import TEACHER_META
from xdistill.teachers.finetune import TeacherTrainer
from xdistill.teachers.self_training import agreement, confident_labels, label_shares, labeled_positions, pseudo_labeled

SIZES = tm.SCRATCH_TEACHER_SIZES


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with tm.single_thread():
        yield


def test_token_pseudo_labels_are_the_argmax_at_word_starts_only():
    logits = np.array([[0, 5, 0], [9, 0, 0], [0, 0, 3], [1, 0, 0]], dtype=np.float32)  # (T, C)
    assert TOKEN.pseudo_labels(logits, [-1, 0, -1, 1]) == [IGNORE, 0, IGNORE, 0]
    assert TOKEN.pseudo_labels(logits, [0, 1, 2, -1]) == [1, 0, 2, IGNORE]


def test_sequence_pseudo_label_is_one_argmax():
    assert SEQUENCE.pseudo_labels(np.array([0.1, 2.0, -1.0], dtype=np.float32), [-1, -1]) == [1]


def test_pseudo_labeled_rows_keep_the_inputs_and_follow_the_model(adapter, tok):
    pool = tm.encode(adapter, tok, tm.SENTENCES, labeled=False)
    model = tm.make_teacher(len(tok))
    silver = pseudo_labeled(model, TOKEN, pool, tok.pad_token_id)
    assert len(silver) == len(pool)
    assert list(silver.input_ids) == list(pool.input_ids) and list(silver.word_index) == list(pool.word_index)
    logits = tm.teacher_of(model, tok).logits(TOKEN, pool, tok.pad_token_id)
    for i in range(len(pool)):
        wi = np.asarray(pool.word_index[i])
        lab = np.asarray(silver.labels[i])
        assert (lab[wi < 0] == IGNORE).all()
        np.testing.assert_array_equal(lab[wi >= 0], logits[i].argmax(-1)[wi >= 0])
    # one label per word
    assert sum(int((np.asarray(r) != IGNORE).sum()) for r in silver.labels) == sum(pool.n_words)


def test_label_shares_and_agreement(adapter, tok):
    enc = tm.encode(adapter, tok, tm.SENTENCES)
    shares = label_shares(enc, tm.LABELS)
    assert set(shares) == set(tm.LABELS) and abs(sum(shares.values()) - 100) < 0.1
    gold = [t for s in tm.SENTENCES for t in s[1]] if isinstance(tm.SENTENCES[0], tuple) else None
    if gold is not None:
        assert shares["O"] == pytest.approx(100 * gold.count("O") / len(gold), abs=0.01)
    assert agreement(enc, enc) == 100.0


def test_option_is_validated():
    with pytest.raises(ConfigError, match="--teacher-self-training"):
        TeacherArguments(teacher_self_training=-1)
    assert TeacherArguments().teacher_self_training == 0


@pytest.fixture(scope="module")
def self_trained(tmp_path_factory, tok, adapter):
    out = tmp_path_factory.mktemp("selftrain")
    train = tm.encode(adapter, tok, tm.SENTENCES[:5])
    validation = tm.encode(adapter, tok, tm.SENTENCES[5:])
    pool = tm.encode(adapter, tok, tm.SENTENCES, labeled=False)
    trainer = TeacherTrainer(adapter, TeacherArguments(**SIZES, teacher_self_training=2), out, 0, {"x": 1})
    calls = []
    original = TeacherTrainer._fine_tune

    def counting(self, model, tokenizer, rows, val, resume, name="teacher"):
        calls.append((name, len(rows)))
        return original(self, model, tokenizer, rows, val, resume, name)

    TeacherTrainer._fine_tune = counting
    try:
        teacher = trainer.prepare(tok, train, validation, False, "5 sentences", pool=pool)
    finally:
        TeacherTrainer._fine_tune = original
    return out, teacher, calls, (train, validation, pool)


def test_each_round_fine_tunes_a_new_teacher_on_labeled_and_pseudo_labeled_rows(self_trained):
    out, teacher, calls, (train, _, pool) = self_trained
    assert calls == [("teacher", len(train)), ("teacher-self1", len(train) + len(pool)),
                     ("teacher-self2", len(train) + len(pool))]
    rounds = teacher.info.self_training
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(r["pseudo_labeled_rows"] == len(pool) and r["labeled_rows"] == len(train) for r in rounds)
    assert rounds[0]["agreement_with_previous_round"] is None
    assert 0 <= rounds[1]["agreement_with_previous_round"] <= 100
    assert teacher.info.best_validation_score == rounds[-1]["best_validation_score"]
    for k in (1, 2):
        assert (out / "checkpoints" / f"teacher-round{k}" / TEACHER_META).is_file()
    saved = json.loads((out / "teacher" / TEACHER_META).read_text())
    assert saved["info"]["self_training"] == rounds


def test_resume_reuses_finished_rounds(self_trained, tok, adapter, tmp_path, monkeypatch):
    import shutil

    out0, teacher, _, (train, validation, pool) = self_trained
    out = tmp_path / "resumed"
    shutil.copytree(out0 / "checkpoints", out / "checkpoints")  # the teacher itself not saved yet: killed before
    fine_tuned = []
    original = TeacherTrainer._fine_tune

    def only_first(self, model, tokenizer, rows, val, resume, name="teacher"):
        fine_tuned.append(name)
        return original(self, model, tokenizer, rows, val, resume, name)

    monkeypatch.setattr(TeacherTrainer, "_fine_tune", only_first)
    again = TeacherTrainer(adapter, TeacherArguments(**SIZES, teacher_self_training=2), out, 0, {"x": 1})
    resumed = again.prepare(tok, train, validation, True, "5 sentences", pool=pool)
    assert fine_tuned == ["teacher"]  # the first fine-tuning resumes from its checkpoint; the rounds are reused
    assert resumed.info.fingerprint == teacher.info.fingerprint


def test_self_training_needs_the_transfer_rows(tok, adapter, tmp_path):
    train = tm.encode(adapter, tok, tm.SENTENCES[:5])
    trainer = TeacherTrainer(adapter, TeacherArguments(**SIZES, teacher_self_training=1), tmp_path, 0, {"x": 1})
    with pytest.raises(ValueError, match="--teacher-self-training"):
        trainer.prepare(tok, train, train, False, "5 sentences")


def test_confident_labels_leave_out_uncertain_positions():
    logits = np.array([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 9.0]], dtype=np.float32)  # (T, C)
    # softmax maxima: 0.96, 0.36, 1.00
    assert confident_labels(logits, [0, 0, 2], 0.9) == [0, IGNORE, 2]
    assert confident_labels(logits, [0, 0, 2], 0.3) == [0, 0, 2]
    assert confident_labels(np.array([0.0, 0.1], dtype=np.float32), [1], 0.9) == [IGNORE]  # (C,)


def test_pseudo_labeled_with_a_confidence_floor_drops_rows_without_a_label(adapter, tok):
    pool = tm.encode(adapter, tok, tm.SENTENCES, labeled=False)
    model = tm.make_teacher(len(tok))
    everything = pseudo_labeled(model, TOKEN, pool, tok.pad_token_id)
    assert labeled_positions(everything) == sum(pool.n_words)
    nothing_sure = pseudo_labeled(model, TOKEN, pool, tok.pad_token_id, min_confidence=0.999)
    assert len(nothing_sure) == 0  # a random 7-label model is never that sure
    some = pseudo_labeled(model, TOKEN, pool, tok.pad_token_id, min_confidence=0.2)
    assert 0 < labeled_positions(some) <= labeled_positions(everything)
    assert all(any(v != IGNORE for v in row) for row in some.labels)


def test_confidence_option_is_validated():
    with pytest.raises(ConfigError, match="--teacher-self-training-confidence"):
        TeacherArguments(teacher_self_training_confidence=1.0)


@pytest.mark.integration
def test_self_trained_teacher_end_to_end_on_real_data(tmp_path, data_dir):
    """``--teacher-self-training 1`` in a smoke run on real Swahili data: the report's phases give the
    round, its pseudo labels are the transfer rows', and report.md says what it gave."""
    import torch

    from xdistill.cli import main

    argv = ["ner", "--preset", "smoke", "--source", "local", "--data-dir", str(data_dir), "--output-dir", str(tmp_path),
            "--langs", "sw", "--labeled-per-lang", "60", "--teacher-labeled-per-lang", "200", "--validation-per-lang",
            "40", "--transfer-per-lang", "150", "--unlabeled-per-lang", "100", "--eval-per-lang", "60",
            "--max-length", "64", "--teacher-epochs", "1", "--teacher-batch-size", "16", "--max-epochs", "1",
            "--baseline-max-epochs", "2", "--embedding-dim", "16", "--hidden-size", "16", "--teacher-hidden-size", "32",
            "--teacher-heads", "2", "--teacher-intermediate-size", "64", "--teacher-layers", "1",
            "--teacher-self-training", "1", "--teacher-self-training-confidence", "0.2"]
    torch.set_num_threads(2)
    assert main(argv) == 0
    r = json.loads((tmp_path / "report.json").read_text())
    (rnd,) = r["teacher"]["self_training"]
    assert rnd["round"] == 1 and rnd["pool_rows"] >= 150 and 0 < rnd["pseudo_labeled_rows"] <= rnd["pool_rows"]
    assert 0 < rnd["pseudo_labels"] and abs(sum(rnd["pseudo_label_shares"].values()) - 100) < 0.1
    assert r["teacher"]["best_validation_score"] == rnd["best_validation_score"]
    (ph,) = r["phases"]["self_training"]
    assert ph["round"] == 1 and ph["pseudo_labeled_rows"] == rnd["pseudo_labeled_rows"]
    assert "- Teacher self-training round 1: fine-tuned again on the labeled and" in (tmp_path / "report.md").read_text()
