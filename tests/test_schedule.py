"""Tests for the staged schedule: steps, the Distiller run, checkpoints, resume and early stopping.

Teacher outputs come from :func:`xdistill.cache.teacher_outputs` run on a tiny random BERT.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from tiny import (  # single_thread: an autouse fixture
    make_adapter,
    make_student,
    make_teacher,
    make_tokenizer,
    sentences,
    single_thread,  # noqa: F401
    state_equal,
)
from xdistill.cache import TeacherOutputs, teacher_outputs
from xdistill.config import DistillArguments
from xdistill.distill import DistillData, Distiller, Step, make_schedule, student_logits

STAGES = ["representation", "logits", "labeled"]
GROUPS = ("projection", "classifier", "encoder", "embeddings")


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tokenizer, adapter, teacher, encoded splits and cached teacher outputs (tiny)."""
    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    adapter = make_adapter()
    teacher = make_teacher(tok)
    transfer = adapter.encode(sentences(12, seed=1, labeled=False), tok, 16)
    labeled = adapter.encode(sentences(10, seed=2), tok, 16)
    val_data = sentences(6, seed=3)
    validation = adapter.encode(val_data, tok, 16)
    cache = tmp_path_factory.mktemp("cache")
    t_out, stats = teacher_outputs(teacher, adapter, transfer, cache, "tinyteacher", layer=2,
                                   pad_id=tok.pad_token_id, max_tokens=64, name="transfer")
    v_out, _ = teacher_outputs(teacher, adapter, validation, cache, "tinyteacher", layer=2,
                               pad_id=tok.pad_token_id, max_tokens=64, name="validation")
    assert not stats["cached"] and len(t_out) == len(transfer)
    data = DistillData(transfer=transfer, transfer_teacher=t_out, labeled=labeled, validation=validation,
                       validation_teacher=v_out, validation_gold=adapter.gold(val_data))
    return {"tok": tok, "adapter": adapter, "teacher": teacher, "data": data,
            "encodings": [transfer, labeled, validation]}


def student(world, seed=0):
    return make_student(world["tok"], world["teacher"], world["encodings"], seed=seed)


def distiller(world, directory, seed=0, student_seed=0, **kw) -> Distiller:
    args = DistillArguments(**{"batch_size": 4, "lr": 3e-3, "max_epochs": 1, "patience": 1, **kw})
    return Distiller(student(world, student_seed), world["adapter"], args, world["data"], directory,
                     pad_id=world["tok"].pad_token_id, seed=seed)


def batches(encoded, batch_size: int = 4) -> int:
    return -(-len(encoded) // batch_size)


def without_time(done: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != "seconds"} for d in done]


# --------------------------------------------------------------------------- make_schedule


def test_make_schedule_gradual(world):
    steps = make_schedule(student(world), STAGES, gradual=True)
    assert [(s.name, s.trainable) for s in steps] == [
        ("representation:1", ("projection",)),
        ("representation:2", ("projection", "encoder")),
        ("representation:3", ("projection", "encoder", "embeddings")),
        ("logits:1", ("classifier",)),
        ("logits:2", ("classifier", "encoder")),
        ("logits:3", ("classifier", "encoder", "embeddings")),
        ("labeled:1", ("classifier",)),
        ("labeled:2", ("classifier", "encoder")),
        ("labeled:3", ("classifier", "encoder", "embeddings")),
    ]
    assert steps[4] == Step("logits", 2, ("classifier", "encoder"))


def test_make_schedule_not_gradual(world):
    steps = make_schedule(student(world), STAGES, gradual=False)
    assert steps == [Step("representation", 1, ("projection", "encoder", "embeddings")),
                     Step("logits", 1, ("classifier", "encoder", "embeddings")),
                     Step("labeled", 1, ("classifier", "encoder", "embeddings"))]
    assert [s.name for s in make_schedule(student(world), ["labeled"], gradual=True)] == \
        ["labeled:1", "labeled:2", "labeled:3"]


# --------------------------------------------------------------------------- teacher outputs


def test_teacher_outputs_cache_matches_teacher(world, tmp_path):
    d, teacher, tok = world["data"], world["teacher"], world["tok"]
    enc, out = d.validation, d.validation_teacher
    assert len(out) == len(enc)
    assert out.logits_flat.dtype == np.float16 and out.hidden_flat.shape[1] == teacher.config.hidden_size
    with torch.no_grad():
        ref = teacher(input_ids=torch.tensor([enc.input_ids[1]]), output_hidden_states=True)
    np.testing.assert_allclose(out.logits(1), ref.logits[0].numpy(), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(out.hidden(1), ref.hidden_states[2][0].numpy(), atol=2e-2, rtol=1e-2)
    lg, hd = out.batch([3, 1], width=20)
    assert lg.shape == (2, 20, 7) and hd.shape == (2, 20, 32) and lg.dtype == torch.float32
    n = len(enc.input_ids[1])
    assert torch.equal(lg[1, :n], torch.from_numpy(out.logits(1).astype(np.float32)))
    assert lg[1, n:].abs().sum() == 0
    # a directly constructed TeacherOutputs behaves the same
    direct = TeacherOutputs(path=tmp_path, logits_flat=np.asarray(out.logits_flat), hidden_flat=np.asarray(out.hidden_flat),
                            offsets=out.offsets, meta={})
    assert torch.equal(direct.batch([3, 1], 20)[1], hd)


# --------------------------------------------------------------------------- a full run


def test_distiller_runs_every_step_and_checkpoints(world, tmp_path):
    dist = distiller(world, tmp_path / "ckpt")
    steps = make_schedule(dist.student, STAGES, gradual=True)
    seen, frozen_ok = [], []
    orig = dist.train_step

    def spy(step, max_epochs):
        before = copy.deepcopy(dist.student.state_dict())
        res = orig(step, max_epochs)
        after = dist.student.state_dict()
        frozen = [g for g in GROUPS if g not in step.trainable]
        frozen_ok.append(all(torch.equal(before[k], after[k]) for k in after
                             if k.split(".")[0] in frozen or k == "vocab_map"))
        return res

    dist.train_step = spy
    done = dist.run(steps, max_epochs=1, on_step=seen.append)
    assert [d["step"] for d in done] == [s.name for s in steps]
    assert [r.step for r in seen] == [s.name for s in steps]
    assert all(frozen_ok)  # each step trains only its groups
    for d, s in zip(done, steps):
        rows = len(world["data"].labeled if s.stage == "labeled" else world["data"].transfer)
        assert d["updates"] == -(-rows // 4)  # one epoch in batches of 4
        assert d["metric"] == ("neg_representation_loss" if s.stage == "representation" else "f1")
        assert d["best_score"] >= d["history"][0]["score"]  # never worse than the start of the step
        assert d["best_score"] == max(h["score"] for h in d["history"])
    prog = json.loads((tmp_path / "ckpt" / "progress.json").read_text())
    assert prog["steps"] == [s.name for s in steps]
    assert without_time(prog["done"]) == without_time(json.loads(json.dumps(done)))
    saved = torch.load(tmp_path / "ckpt" / "student.pt", map_location="cpu")
    assert state_equal(saved, dist.student.state_dict())
    # stage 1 learned something: the representation loss went down
    assert done[0]["best_score"] > done[0]["history"][0]["score"]


def test_distiller_without_transfer_rows_raises(world, tmp_path):
    dist = distiller(world, tmp_path)
    dist.data = DistillData(transfer=None, transfer_teacher=None, labeled=world["data"].labeled,
                            validation=world["data"].validation, validation_teacher=None,
                            validation_gold=world["data"].validation_gold)
    with pytest.raises(ValueError, match="no transfer rows"):
        dist.train_step(Step("logits", 1, ("classifier",)), 1)
    # the labeled-only baseline schedule runs without transfer data
    done = dist.run([Step("labeled", 1, ("classifier", "encoder", "embeddings"))], max_epochs=1)
    assert len(done) == 1 and done[0]["metric"] == "f1"


# --------------------------------------------------------------------------- resume


def spy_on_steps(d):
    """Record each step a distiller trains (``calls``) and the student's state when it starts (``at_start``)."""
    calls, at_start = [], []
    orig = d.train_step

    def spy(step, max_epochs):
        calls.append(step.name)
        at_start.append(copy.deepcopy(d.student.state_dict()))
        return orig(step, max_epochs)

    d.train_step = spy
    return calls, at_start


def test_resume_skips_finished_steps_and_loads_weights(world, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = distiller(world, ckpt)
    steps = make_schedule(first.student, STAGES, gradual=True)
    states = []

    def interrupt_after_two(res):
        states.append(copy.deepcopy(first.student.state_dict()))
        if len(states) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        first.run(steps, max_epochs=1, on_step=interrupt_after_two)
    prog = json.loads((ckpt / "progress.json").read_text())
    assert [d["step"] for d in prog["done"]] == ["representation:1", "representation:2"]

    second = distiller(world, ckpt, student_seed=7)  # other initial weights: they must be replaced
    assert not state_equal(second.student.state_dict(), states[1])
    calls, at_start = spy_on_steps(second)
    done = second.run(steps, max_epochs=1, resume=True)
    assert calls == [s.name for s in steps[2:]]
    assert state_equal(at_start[0], states[1])  # continued from the checkpoint
    assert [d["step"] for d in done] == [s.name for s in steps]
    assert done[:2] == prog["done"]

    # the same run without the interruption ends in the same place
    straight = distiller(world, tmp_path / "straight")
    straight_done = straight.run(steps, max_epochs=1)
    assert without_time(straight_done) == without_time(json.loads(json.dumps(done)))
    assert state_equal(straight.student.state_dict(), second.student.state_dict())

    # resuming a finished run trains nothing and restores the final student
    third = distiller(world, ckpt, student_seed=8)
    third.train_step = lambda step, max_epochs: pytest.fail(f"step {step.name} trained again")
    again = third.run(steps, max_epochs=1, resume=True)
    assert again == json.loads((ckpt / "progress.json").read_text())["done"]
    assert state_equal(third.student.state_dict(), second.student.state_dict())


def test_resume_with_another_schedule_starts_over(world, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = distiller(world, ckpt)
    full = make_schedule(first.student, STAGES, gradual=True)
    first.run(full[:2], max_epochs=1)  # progress for a 2-step schedule
    second = distiller(world, ckpt, student_seed=7)
    initial = copy.deepcopy(second.student.state_dict())
    calls, at_start = spy_on_steps(second)
    second.run(full[:3], max_epochs=1, resume=True)
    assert calls == [s.name for s in full[:3]]
    assert state_equal(at_start[0], initial)  # the other schedule's checkpoint was not loaded
    assert json.loads((ckpt / "progress.json").read_text())["steps"] == [s.name for s in full[:3]]


def test_no_resume_ignores_checkpoint(world, tmp_path):
    first = distiller(world, tmp_path)
    steps = [Step("labeled", 1, ("classifier",))]
    first.run(steps, max_epochs=1)
    second = distiller(world, tmp_path, student_seed=3)
    calls = []
    orig = second.train_step
    second.train_step = lambda step, e: calls.append(step.name) or orig(step, e)
    second.run(steps, max_epochs=1, resume=False)
    assert calls == ["labeled:1"]


# --------------------------------------------------------------------------- early stopping


def scripted(dist: Distiller, scores: list[float], metric: str = "f1"):
    """Replace validation by a script of scores; record the student's state at every validation."""
    snapshots = []
    it = iter(scores)

    def fake_validate(stage):
        snapshots.append(copy.deepcopy(dist.student.state_dict()))
        return next(it), metric

    dist.validate = fake_validate
    return snapshots


def test_early_stopping_after_patience_and_best_state_kept(world, tmp_path):
    dist = distiller(world, tmp_path, patience=2)
    snaps = scripted(dist, [0.0, 1.0, 3.0, 2.0, 2.5, 99.0, 99.0])
    res = dist.train_step(Step("labeled", 3, ("classifier", "encoder", "embeddings")), max_epochs=10)
    # start, epoch 1 (better), epoch 2 (best), epoch 3 (worse), epoch 4 (worse: patience 2 reached)
    assert len(snaps) == 5
    assert res.epochs == 4.0 and res.updates == 4 * batches(world["data"].labeled)
    assert res.best_score == 3.0
    assert [h["score"] for h in res.history] == [0.0, 1.0, 3.0, 2.0, 2.5]
    assert state_equal(dist.student.state_dict(), snaps[2])  # the best validation state
    assert not state_equal(snaps[2], snaps[4])


def test_early_stopping_keeps_start_when_nothing_improves(world, tmp_path):
    dist = distiller(world, tmp_path, patience=1)
    snaps = scripted(dist, [5.0, 1.0, 99.0])
    res = dist.train_step(Step("logits", 1, ("classifier",)), max_epochs=10)
    assert len(snaps) == 2 and res.epochs == 1.0 and res.best_score == 5.0
    assert state_equal(dist.student.state_dict(), snaps[0])


def test_equal_score_is_not_an_improvement(world, tmp_path):
    dist = distiller(world, tmp_path, patience=2)
    snaps = scripted(dist, [1.0, 2.0, 2.0, 2.0, 99.0])
    res = dist.train_step(Step("labeled", 1, ("classifier",)), max_epochs=10)
    assert len(snaps) == 4 and res.best_score == 2.0
    assert state_equal(dist.student.state_dict(), snaps[1])


def test_runs_max_epochs_while_improving_and_evals_per_epoch(world, tmp_path):
    dist = distiller(world, tmp_path, patience=1, evals_per_epoch=3)
    snaps = scripted(dist, [float(i) for i in range(100)], metric="neg_representation_loss")
    res = dist.train_step(Step("representation", 1, ("projection",)), max_epochs=2)
    # transfer stages validate evals_per_epoch times per epoch (3 batches per epoch here)
    assert batches(world["data"].transfer) >= 3
    assert len(snaps) == 1 + 2 * 3
    assert res.updates == 2 * batches(world["data"].transfer) and res.epochs == 2.0
    assert [h["epoch"] for h in res.history] == [0.0, 0.333, 0.667, 1.0, 1.333, 1.667, 2.0]
    # the last validation was the best: the student keeps the weights it ended with
    assert res.best_score == 6.0
    assert state_equal(dist.student.state_dict(), snaps[-1])


# --------------------------------------------------------------------------- validation / student_logits


def test_validate_scores(world, tmp_path):
    dist = distiller(world, tmp_path)
    score, metric = dist.validate("representation")
    assert metric == "neg_representation_loss" and score < 0
    score, metric = dist.validate("labeled")
    assert metric == "f1" and 0.0 <= score <= 100.0
    assert dist.validate("logits") == (score, "f1")


def test_student_logits_rows_in_order(world):
    s = student(world)
    s.train()
    enc = world["data"].validation
    out = student_logits(s, world["adapter"], enc, pad_id=0, batch_size=2)
    assert s.training  # the mode is restored
    assert [x.shape for x in out] == [(len(r), 7) for r in enc.input_ids]
    s.eval()
    with torch.no_grad():
        ref = s(torch.tensor([enc.input_ids[4]]), torch.ones(1, len(enc.input_ids[4]), dtype=torch.long)).logits[0]
    np.testing.assert_allclose(out[4], ref.numpy(), atol=1e-5, rtol=1e-5)
