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
import tiny_models as tm
from xdistill.config import DistillArguments
from xdistill.data.types import Feature
from xdistill.distill import (DataSource, DistillData, DistillPlugin, Distiller, Step, StepCallback, Trainee,
                              StageContext, build_stages, make_schedule)
from xdistill.distill.optim import step_schedule
from xdistill.errors import ConfigError
from xdistill.transfer import CachedTargets, LiveTeacherTargets, label_rows

STAGE_NAMES = ["representation", "logits", "labeled"]
STAGES = build_stages(STAGE_NAMES, DistillArguments(), StageContext(teacher_layer=2))
S = {st.name: st for st in STAGES}
GROUPS = ("projection", "classifier", "encoder", "embeddings")
HIDDEN = "hidden_states.2"


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tokenizer, adapter, teacher, encoded splits and cached teacher features (tiny)."""
    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    adapter = make_adapter()
    teacher = tm.teacher_of(make_teacher(tok), tok, "tinyteacher")
    transfer = adapter.encode(sentences(12, seed=1, labeled=False), tok, 16)
    labeled = adapter.encode(sentences(10, seed=2), tok, 16)
    val_data = sentences(6, seed=3)
    validation = adapter.encode(val_data, tok, 16)
    cache = tmp_path_factory.mktemp("cache")
    features = [Feature("hidden_states", 2), Feature("logits")]
    t_out, stats = label_rows(teacher, adapter.level, transfer, features, cache, max_tokens=64, name="transfer")
    v_out, _ = label_rows(teacher, adapter.level, validation, features, cache, max_tokens=64, name="validation")
    assert not stats["cached"] and len(t_out) == len(transfer)
    return {"tok": tok, "adapter": adapter, "teacher": teacher, "transfer": transfer, "labeled": labeled,
            "validation": validation, "t_out": t_out, "v_out": v_out, "gold": adapter.gold(val_data),
            "encodings": [transfer, labeled, validation]}


def trainee(world, seed=0) -> Trainee:
    s = make_student(world["tok"], world["teacher"].model, world["encodings"], seed=seed)
    return Trainee(s, [m for st in STAGES for m in st.matches], {HIDDEN: 32})


def distiller(world, directory, seed=0, student_seed=0, live=False, plugins=(), **kw) -> Distiller:
    args = DistillArguments(**{"batch_size": 4, "lr": 3e-3, "max_epochs": 1, "patience": 1, **kw})
    level = world["adapter"].level
    targets = LiveTeacherTargets(world["teacher"], level) if live else CachedTargets(world["t_out"], level)
    sources = {"transfer": DataSource(world["transfer"], targets), "labeled": DataSource(world["labeled"])}
    validation = DataSource(world["validation"], CachedTargets(world["v_out"], level))
    data = DistillData(sources, validation, world["gold"], pad_id=world["tok"].pad_token_id)
    return Distiller(trainee(world, student_seed), world["adapter"], args, data, directory, seed=seed, plugins=plugins)


def batches(encoded, batch_size: int = 4) -> int:
    return -(-len(encoded) // batch_size)


def without_time(done: list[dict]) -> list[dict]:
    return [{k: v for k, v in d.items() if k != "seconds"} for d in done]


def group_of(key: str) -> str:
    """The unfreezing group a trainee state-dict key belongs to."""
    return "projection" if key.startswith("projections.") else key.split(".")[1]


# --------------------------------------------------------------------------- stages and make_schedule


def test_xtremedistil_stages_as_data():
    rep, logits, labeled = STAGES
    (m,) = rep.matches
    assert (m.student, m.target, m.loss, m.projection) == ("hidden_states.-1", HIDDEN, "mse", "linear-gelu")
    assert rep.data == "transfer" and rep.select_by == "loss"
    assert [(x.student, x.target, x.loss) for x in logits.matches] == [("logits", "logits", "mse")]
    assert logits.select_by == "metric" and logits.checks_per_epoch is None
    assert [(x.student, x.target, x.loss) for x in labeled.matches] == [("logits", "labels", "cross_entropy")]
    assert labeled.data == "labeled" and labeled.checks_per_epoch == 1
    assert [f.key for f in rep.teacher_features] == [HIDDEN] and labeled.teacher_features == []
    kl = build_stages(["logits"], DistillArguments(logits_loss="kl", temperature=2.0), StageContext(2))[0].matches[0]
    assert kl.loss == "kl" and kl.temperature == 2.0


def test_make_schedule_gradual(world):
    steps = make_schedule(trainee(world), STAGES, gradual=True)
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
    assert steps[4] == Step(S["logits"], 2, ("classifier", "encoder"))


def test_make_schedule_frozen_embeddings(world):
    """--freeze-embeddings: no step trains the embeddings, so they end the run as they started."""
    steps = make_schedule(trainee(world), STAGES, gradual=True, frozen=DistillArguments(freeze_embeddings=True).frozen_groups())
    assert [(s.name, s.trainable) for s in steps] == [
        ("representation:1", ("projection",)),
        ("representation:2", ("projection", "encoder")),
        ("logits:1", ("classifier",)),
        ("logits:2", ("classifier", "encoder")),
        ("labeled:1", ("classifier",)),
        ("labeled:2", ("classifier", "encoder")),
    ]
    (step,) = make_schedule(trainee(world), [S["logits"]], gradual=False, frozen=("embeddings",))
    assert step.trainable == ("classifier", "encoder")
    assert DistillArguments().frozen_groups() == ()
    with pytest.raises(ConfigError, match="'decoder'.*body groups encoder, embeddings"):
        make_schedule(trainee(world), STAGES, gradual=True, frozen=("decoder",))


def test_frozen_embeddings_keep_their_weights(world, tmp_path):
    """A distillation run with the embeddings frozen changes the encoder but not one embedding weight."""
    dist = distiller(world, tmp_path)
    before = dist.trainee.student.embeddings.weight.detach().clone()
    encoder = [p.detach().clone() for p in dist.trainee.student.encoder.parameters()]
    dist.run(make_schedule(dist.trainee, STAGES[:2], gradual=True, frozen=("embeddings",)), 1)
    assert torch.equal(dist.trainee.student.embeddings.weight, before)
    assert any(not torch.equal(a, b) for a, b in zip(encoder, dist.trainee.student.encoder.parameters()))


def test_make_schedule_not_gradual(world):
    steps = make_schedule(trainee(world), STAGES, gradual=False)
    assert steps == [Step(S["representation"], 1, ("projection", "encoder", "embeddings")),
                     Step(S["logits"], 1, ("classifier", "encoder", "embeddings")),
                     Step(S["labeled"], 1, ("classifier", "encoder", "embeddings"))]
    assert [s.name for s in make_schedule(trainee(world), [S["labeled"]], gradual=True)] == \
        ["labeled:1", "labeled:2", "labeled:3"]


# --------------------------------------------------------------------------- teacher targets


def test_cached_targets_match_the_teacher(world):
    teacher, enc = world["teacher"], world["validation"]
    out = world["v_out"]
    with torch.no_grad():
        ref = teacher.model(input_ids=torch.tensor([enc.input_ids[1]]), output_hidden_states=True)
    np.testing.assert_allclose(out.row("logits", 1), ref.logits[0].numpy(), atol=2e-2, rtol=1e-2)
    np.testing.assert_allclose(out.row(HIDDEN, 1), ref.hidden_states[2][0].numpy(), atol=2e-2, rtol=1e-2)
    b = world["adapter"].collate(enc, [3, 1], 0)
    targets = CachedTargets(out, world["adapter"].level).batch([3, 1], b, ["logits", HIDDEN])
    width = b["input_ids"].size(1)
    assert targets["logits"].shape == (2, width, 7) and targets[HIDDEN].shape == (2, width, 32)
    n = len(enc.input_ids[1])
    assert torch.equal(targets["logits"][1, :n], torch.from_numpy(out.row("logits", 1).astype(np.float32)))
    assert targets["logits"][1, n:].abs().sum() == 0


def test_live_teacher_targets_equal_the_cache_up_to_float16(world):
    enc, level = world["validation"], world["adapter"].level
    rows = [0, 2, 5]
    b = world["adapter"].collate(enc, rows, 0)
    cached = CachedTargets(world["v_out"], level).batch(rows, b, ["logits", HIDDEN])
    live = LiveTeacherTargets(world["teacher"], level).batch(rows, b, ["logits", HIDDEN])
    mask = level.distill_mask(b["attention_mask"])
    for k in ("logits", HIDDEN):
        assert live[k].shape == cached[k].shape
        torch.testing.assert_close(live[k][mask], cached[k][mask], atol=2e-2, rtol=1e-2)


# --------------------------------------------------------------------------- a full run


def test_distiller_runs_every_step_and_checkpoints(world, tmp_path):
    seen = []
    dist = distiller(world, tmp_path / "ckpt", plugins=[StepCallback(seen.append)])
    steps = make_schedule(dist.trainee, STAGES, gradual=True)
    frozen_ok = []
    orig = dist.train_step

    def spy(step, max_epochs):
        before = copy.deepcopy(dist.trainee.state_dict())
        res = orig(step, max_epochs)
        after = dist.trainee.state_dict()
        frozen = [g for g in GROUPS if g not in step.trainable]
        frozen_ok.append(all(torch.equal(before[k], after[k]) for k in after
                             if group_of(k) in frozen or k.endswith("vocab_map")))
        return res

    dist.train_step = spy
    done = dist.run(steps, max_epochs=1)
    assert [d["step"] for d in done] == [s.name for s in steps]
    assert [r.step for r in seen] == [s.name for s in steps]
    assert all(frozen_ok)  # each step trains only its groups
    for d, s in zip(done, steps):
        rows = len(world["labeled"] if s.stage.name == "labeled" else world["transfer"])
        assert d["updates"] == -(-rows // 4)  # one epoch in batches of 4
        assert d["metric"] == ("neg_representation_loss" if s.stage.name == "representation" else "f1")
        assert d["best_score"] >= d["history"][0]["score"]  # never worse than the start of the step
        assert d["best_score"] == max(h["score"] for h in d["history"])
    prog = json.loads((tmp_path / "ckpt" / "progress.json").read_text())
    assert prog["steps"] == [s.name for s in steps]
    assert without_time(prog["done"]) == without_time(json.loads(json.dumps(done)))
    prog_file = prog["checkpoint"]
    assert prog_file["file"] == f"student-{len(steps):02d}.pt"
    assert [p.name for p in (tmp_path / "ckpt").glob("student-*.pt")] == [prog_file["file"]]  # older steps' files go
    saved = torch.load(tmp_path / "ckpt" / prog_file["file"], map_location="cpu", weights_only=False)
    assert saved["step"] == steps[-1].name and set(saved["rng"]) >= {"torch", "numpy", "python"}
    assert state_equal(saved["trainee"], dist.trainee.state_dict())
    assert any(k.startswith("projections.") for k in saved["trainee"])  # the distillation heads are checkpointed too
    assert {p.name for p in (tmp_path / "ckpt").glob("stage-*.pt")} == {f"stage-{n}.pt" for n in STAGE_NAMES}
    # stage 1 learned something: the representation loss went down
    assert done[0]["best_score"] > done[0]["history"][0]["score"]


def test_distiller_without_transfer_rows_raises(world, tmp_path):
    dist = distiller(world, tmp_path)
    del dist.sources["transfer"]
    with pytest.raises(ValueError, match="no transfer rows"):
        dist.train_step(Step(S["logits"], 1, ("classifier",)), 1)
    # the labeled-only baseline schedule runs without transfer data
    done = dist.run([Step(S["labeled"], 1, ("classifier", "encoder", "embeddings"))], max_epochs=1)
    assert len(done) == 1 and done[0]["metric"] == "f1"


def test_a_stage_that_needs_teacher_targets_refuses_gold_only_data(world, tmp_path):
    dist = distiller(world, tmp_path)
    dist.sources["transfer"] = DataSource(world["transfer"])  # no targets
    with pytest.raises(ValueError, match="logits: its data has no teacher targets"):
        dist.train_step(Step(S["logits"], 1, ("classifier",)), 1)


def test_unknown_group_in_a_step_is_an_error(world, tmp_path):
    with pytest.raises(ValueError, match="unknown groups.*'projection'"):
        distiller(world, tmp_path).train_step(Step(S["logits"], 1, ("projection",)), 1)


# --------------------------------------------------------------------------- resume


def spy_on_steps(d):
    """Record each step a distiller trains (``calls``) and the student's state when it starts (``at_start``)."""
    calls, at_start = [], []
    orig = d.train_step

    def spy(step, max_epochs):
        calls.append(step.name)
        at_start.append(copy.deepcopy(d.trainee.state_dict()))
        return orig(step, max_epochs)

    d.train_step = spy
    return calls, at_start


def test_resume_skips_finished_steps_and_loads_weights(world, tmp_path):
    ckpt = tmp_path / "ckpt"
    states = []

    def interrupt_after_two(res):
        states.append(copy.deepcopy(first.trainee.state_dict()))
        if len(states) == 2:
            raise Interrupted

    first = distiller(world, ckpt, plugins=[StepCallback(interrupt_after_two)])
    steps = make_schedule(first.trainee, STAGES, gradual=True)
    with pytest.raises(Interrupted):
        first.run(steps, max_epochs=1)
    prog = json.loads((ckpt / "progress.json").read_text())
    assert [d["step"] for d in prog["done"]] == ["representation:1", "representation:2"]

    second = distiller(world, ckpt, student_seed=7)  # other initial weights: they must be replaced
    assert not state_equal(second.trainee.state_dict(), states[1])
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
    assert state_equal(straight.trainee.state_dict(), second.trainee.state_dict())

    # resuming a finished run trains nothing and restores the final student
    third = distiller(world, ckpt, student_seed=8)
    third.train_step = lambda step, max_epochs: pytest.fail(f"step {step.name} trained again")
    again = third.run(steps, max_epochs=1, resume=True)
    assert again == json.loads((ckpt / "progress.json").read_text())["done"]
    assert state_equal(third.trainee.state_dict(), second.trainee.state_dict())


def test_resume_with_another_schedule_starts_over(world, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = distiller(world, ckpt)
    full = make_schedule(first.trainee, STAGES, gradual=True)
    first.run(full[:2], max_epochs=1)  # progress for a 2-step schedule
    second = distiller(world, ckpt, student_seed=7)
    initial = copy.deepcopy(second.trainee.state_dict())
    calls, at_start = spy_on_steps(second)
    second.run(full[:3], max_epochs=1, resume=True)
    assert calls == [s.name for s in full[:3]]
    assert state_equal(at_start[0], initial)  # the other schedule's checkpoint was not loaded
    assert json.loads((ckpt / "progress.json").read_text())["steps"] == [s.name for s in full[:3]]


def test_resume_with_a_checkpoint_of_another_student_names_it(world, tmp_path):
    first = distiller(world, tmp_path)
    steps = make_schedule(first.trainee, STAGES, gradual=True)[:2]
    first.run(steps, max_epochs=1)
    second = distiller(world, tmp_path)
    second.trainee.register_parameter("extra", torch.nn.Parameter(torch.zeros(1)))  # not in the checkpoint
    with pytest.raises(ConfigError, match=r"--resume: the checkpoint .*student.* does not fit .*extra"):
        second.run(steps, max_epochs=1, resume=True)


def test_no_resume_ignores_checkpoint(world, tmp_path):
    first = distiller(world, tmp_path)
    steps = [Step(S["labeled"], 1, ("classifier",))]
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
        snapshots.append(copy.deepcopy(dist.trainee.state_dict()))
        return next(it), metric

    dist.validate = fake_validate
    return snapshots


def test_early_stopping_after_patience_and_best_state_kept(world, tmp_path):
    dist = distiller(world, tmp_path, patience=2)
    snaps = scripted(dist, [0.0, 1.0, 3.0, 2.0, 2.5, 99.0, 99.0])
    res = dist.train_step(Step(S["labeled"], 3, ("classifier", "encoder", "embeddings")), max_epochs=10)
    # start, epoch 1 (better), epoch 2 (best), epoch 3 (worse), epoch 4 (worse: patience 2 reached)
    assert len(snaps) == 5
    assert res.epochs == 4.0 and res.updates == 4 * batches(world["labeled"])
    assert res.best_score == 3.0
    assert [h["score"] for h in res.history] == [0.0, 1.0, 3.0, 2.0, 2.5]
    assert state_equal(dist.trainee.state_dict(), snaps[2])  # the best validation state
    assert not state_equal(snaps[2], snaps[4])


def test_early_stopping_keeps_start_when_nothing_improves(world, tmp_path):
    dist = distiller(world, tmp_path, patience=1)
    snaps = scripted(dist, [5.0, 1.0, 99.0])
    res = dist.train_step(Step(S["logits"], 1, ("classifier",)), max_epochs=10)
    assert len(snaps) == 2 and res.epochs == 1.0 and res.best_score == 5.0
    assert state_equal(dist.trainee.state_dict(), snaps[0])


def test_equal_score_is_not_an_improvement(world, tmp_path):
    dist = distiller(world, tmp_path, patience=2)
    snaps = scripted(dist, [1.0, 2.0, 2.0, 2.0, 99.0])
    res = dist.train_step(Step(S["labeled"], 1, ("classifier",)), max_epochs=10)
    assert len(snaps) == 4 and res.best_score == 2.0
    assert state_equal(dist.trainee.state_dict(), snaps[1])


def test_runs_max_epochs_while_improving_and_evals_per_epoch(world, tmp_path):
    dist = distiller(world, tmp_path, patience=1, evals_per_epoch=3)
    snaps = scripted(dist, [float(i) for i in range(100)], metric="neg_representation_loss")
    res = dist.train_step(Step(S["representation"], 1, ("projection",)), max_epochs=2)
    # transfer stages validate evals_per_epoch times per epoch (3 batches per epoch here)
    assert batches(world["transfer"]) >= 3
    assert len(snaps) == 1 + 2 * 3
    assert res.updates == 2 * batches(world["transfer"]) and res.epochs == 2.0
    assert [h["epoch"] for h in res.history] == [0.0, 0.333, 0.667, 1.0, 1.333, 1.667, 2.0]
    # the last validation was the best: the student keeps the weights it ended with
    assert res.best_score == 6.0
    assert state_equal(dist.trainee.state_dict(), snaps[-1])


# --------------------------------------------------------------------------- validation, student logits


def test_validate_scores(world, tmp_path):
    dist = distiller(world, tmp_path)
    score, metric = dist.validate(S["representation"])
    assert metric == "neg_representation_loss" and score < 0
    score, metric = dist.validate(S["labeled"])
    assert metric == "f1" and 0.0 <= score <= 100.0
    assert dist.validate(S["logits"]) == (score, "f1")


def test_student_logits_rows_in_order(world):
    s = trainee(world).student
    s.train()
    enc = world["validation"]
    out = s.logits(world["adapter"].level, enc, pad_id=0, batch_size=2)
    assert s.training  # the mode is restored
    assert [x.shape for x in out] == [(len(r), 7) for r in enc.input_ids]
    s.eval()
    with torch.no_grad():
        ref = s(torch.tensor([enc.input_ids[4]]), torch.ones(1, len(enc.input_ids[4]), dtype=torch.long)).logits[0]
    np.testing.assert_allclose(out[4], ref.numpy(), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- plugins, live teacher


class Recorder(DistillPlugin):
    """Records every hook call; scales each batch loss by ``factor`` (0 freezes learning)."""

    def __init__(self, factor=1.0):
        self.calls, self.factor = [], factor

    def on_run_start(self, distiller, steps):
        self.calls.append(("run", len(steps)))

    def on_step_start(self, distiller, step, optimizer):
        self.calls.append(("start", step.name))

    def batch_loss(self, distiller, step, batch, rows, loss):
        assert batch["input_ids"].size(0) == len(rows) and loss.requires_grad
        self.calls.append(("batch", step.name))
        return loss * self.factor

    def after_update(self, distiller, step, update):
        self.calls.append(("update", update))

    def after_validation(self, distiller, step, score, best):
        self.calls.append(("validation", step.name))

    def on_step_end(self, distiller, step, result):
        self.calls.append(("end", result.step))


def test_plugins_see_every_hook_in_order(world, tmp_path):
    rec = Recorder()
    dist = distiller(world, tmp_path, plugins=[rec])
    steps = [Step(S["logits"], 1, ("classifier",)), Step(S["labeled"], 1, ("classifier",))]
    dist.run(steps, max_epochs=1)
    n_t, n_l = batches(world["transfer"]), batches(world["labeled"])
    kinds = [c[0] for c in rec.calls]
    assert rec.calls[0] == ("run", 2) and rec.calls[1] == ("start", "logits:1")
    assert kinds.count("batch") == kinds.count("update") == n_t + n_l
    assert [c for c in rec.calls if c[0] == "end"] == [("end", "logits:1"), ("end", "labeled:1")]
    assert kinds.count("validation") == 1 + 1  # evals_per_epoch 1 for logits, 1 for labeled


class LearningRates(DistillPlugin):
    """Records the optimizer's learning rate after each update."""

    def __init__(self):
        self.lrs, self.opt = [], None

    def on_step_start(self, distiller, step, optimizer):
        self.opt = optimizer

    def after_update(self, distiller, step, update):
        self.lrs.append(self.opt.param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_lr_schedule_within_a_step(world, tmp_path, schedule):
    rec = LearningRates()
    dist = distiller(world, tmp_path, plugins=[rec], lr_schedule=schedule, max_epochs=2, patience=5)
    dist.run([Step(S["logits"], 1, ("classifier",))], max_epochs=2)
    n = 2 * batches(world["transfer"])
    assert len(rec.lrs) == n
    want = [3e-3] * n if schedule == "constant" else [3e-3 * (1 - u / n) for u in range(1, n + 1)]
    np.testing.assert_allclose(rec.lrs, want, rtol=1e-6, atol=1e-12)  # linear: 0 after the last planned update


def test_step_schedule_refuses_bad_values():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    with pytest.raises(ValueError, match="cosine.*constant, linear"):
        step_schedule(opt, "cosine", 10)
    with pytest.raises(ValueError, match="total_updates"):
        step_schedule(opt, "linear", 0)


def test_a_plugin_can_change_the_loss(world, tmp_path):
    """A plugin's batch_loss is what is minimised: a zero loss leaves the weights unchanged."""
    dist = distiller(world, tmp_path, plugins=[Recorder(factor=0.0)], patience=5)
    before = copy.deepcopy(dist.trainee.state_dict())
    dist.scripted = scripted(dist, [0.0, 1.0, 2.0])  # the last state is the best: it is kept
    dist.train_step(Step(S["logits"], 1, ("classifier",)), max_epochs=1)
    assert state_equal(dist.trainee.state_dict(), before)


def test_distillation_runs_with_a_live_teacher(world, tmp_path):
    """The same loop with targets computed by the teacher on each batch instead of the cache."""
    cached = distiller(world, tmp_path / "a").train_step(Step(S["logits"], 1, ("classifier",)), max_epochs=1)
    live = distiller(world, tmp_path / "b", live=True).train_step(Step(S["logits"], 1, ("classifier",)), max_epochs=1)
    assert live.updates == cached.updates
    assert live.history[0]["score"] == cached.history[0]["score"]  # validation reads the same student
    assert abs(live.history[-1]["loss"] - cached.history[-1]["loss"]) < 0.05  # float16 cache vs float32 live
