"""A student kind, a loss and a transfer source are added from outside the package through the
registries (no xdistill module edited), and trained for one step with the stock loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tiny_models as tm
from tiny import make_adapter, make_teacher, make_tokenizer, sentences, single_thread  # noqa: F401
from xdistill.config import DistillArguments, StudentArguments
from xdistill.data.types import Encoded, Feature
from xdistill.distill import (LOSSES, DataSource, DistillData, DistillPlugin, Distiller, Match, Stage, Trainee,
                              make_schedule, register_loss)
from xdistill.distill.losses import masked_mean
from xdistill.students import (STUDENTS, Student, StudentContext, StudentOutput, StudentShape, build_student,
                               register_student)
from xdistill.transfer import (TRANSFER_SETS, TRANSFER_SOURCES, CachedTargets, TransferSource, TransferText,
                               label_rows, register_source, resolve_transfer_sets)


class ToyStudent(Student):
    """Bag of embeddings: an embedding per teacher id and a linear tag head (no context at all)."""

    kind = "toy"

    def __init__(self, config):
        super().__init__(config)
        self.embeddings = nn.Embedding(config["vocab_size"], config["dim"])
        self.classifier = nn.Linear(config["dim"], config["num_labels"])

    @classmethod
    def create(cls, args: StudentArguments, ctx: StudentContext) -> "ToyStudent":
        torch.manual_seed(ctx.seed)
        return cls({"vocab_size": ctx.vocab_size, "dim": args.hidden_size, "num_labels": ctx.num_labels})

    @classmethod
    def shape(cls, args):
        return StudentShape(layers=0, heads=0, hidden=args.hidden_size)

    def forward(self, input_ids, attention_mask, features=()):
        h = self.embeddings(input_ids)
        return StudentOutput(logits=self.classifier(h), hidden_states=(h,))

    def inference_logits(self, input_ids, attention_mask):
        return self.forward(input_ids, attention_mask).logits

    def export_module(self):
        return self

    def body_groups(self):
        return ["embeddings"]

    def head_groups(self, feature):
        return ["classifier"] if feature == "logits" else []

    def group_parameters(self, group):
        return list(getattr(self, group).parameters())

    def output_size(self, feature: Feature) -> int:
        return self.config["num_labels"] if feature.name == "logits" else self.config["dim"]

    def known_input_ids(self):
        return np.arange(self.config["vocab_size"])

    def describe(self):
        return {"name": "Toy", "architecture": "bag of embeddings", "summary": f"D={self.config['dim']}"}


def toy_l1(student, target, mask, temperature=1.0):
    """Masked mean absolute difference over the last axis: ``(B, T, F)`` with a ``(B, T)`` mask."""
    return masked_mean((student - target.to(student.dtype)).abs().mean(-1), mask)


class RepeatedText(TransferSource):
    """Every transfer row twice (a toy source)."""

    name = "repeated"
    encoding = "repeated"

    def build(self, ctx):
        enc = ctx.encodings["transfer"]
        return TransferText(Encoded.concat([enc, enc]), {"rows": 2 * len(enc)})


@pytest.fixture
def registered():
    """Register the toy student, loss and source as a user would; remove them afterwards."""
    register_student(ToyStudent)
    register_loss("toy_l1")(toy_l1)
    register_source(RepeatedText)
    TRANSFER_SETS["repeated"] = ("repeated",)
    yield
    del STUDENTS["toy"], LOSSES["toy_l1"], TRANSFER_SOURCES["repeated"], TRANSFER_SETS["repeated"]


def test_a_toy_student_and_loss_train_one_step(registered, tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    adapter = make_adapter()
    teacher = tm.teacher_of(make_teacher(tok), tok)
    transfer = adapter.encode(sentences(8, seed=1, labeled=False), tok, 16)
    validation = adapter.encode(sentences(4, seed=2), tok, 16)
    ctx = StudentContext.for_tokenizer(tok, num_labels=7, level=adapter.level, rows=[transfer],
                                       teacher_embeddings=None, seed=0)
    student = build_student(StudentArguments(student="toy", hidden_size=12), ctx)  # the factory finds it by name
    assert isinstance(student, ToyStudent)

    stage = Stage("toy", (Match("logits", "logits", "toy_l1"),
                          Match("hidden_states.-1", "hidden_states.2", "toy_l1", weight=0.5, projection="linear")))
    cache, _ = label_rows(teacher, adapter.level, transfer, stage.teacher_features, tmp_path / "cache", 64, "transfer")
    trainee = Trainee(student, stage.matches, {"hidden_states.2": teacher.hidden_size})
    sources = {"transfer": DataSource(transfer, CachedTargets(cache, adapter.level))}
    after_update = AfterUpdate()
    data = DistillData(sources, DataSource(validation), adapter.gold(sentences(4, seed=2)), tok.pad_token_id)
    distiller = Distiller(trainee, adapter, DistillArguments(batch_size=8, max_epochs=1, patience=1), data,
                          tmp_path / "ckpt", seed=0, plugins=[after_update])
    (step,) = make_schedule(trainee, [stage], gradual=False)
    # the toy's heads: the projection of the hidden-state match; its classifier, for the logits match; then its body
    assert step.trainable == ("projection", "embeddings")
    before = {k: v.clone() for k, v in trainee.state_dict().items()}
    result = distiller.train_step(step, max_epochs=1)
    assert result.updates == 1 and np.isfinite(result.history[-1]["loss"]) and result.history[-1]["loss"] > 0
    (state,) = after_update.states
    changed = {k for k, v in state.items() if not torch.equal(v, before[k])}
    assert changed == {"student.embeddings.weight", "student.classifier.weight", "student.classifier.bias",
                       "projections.hidden_states_m1__hidden_states_2.weight",
                       "projections.hidden_states_m1__hidden_states_2.bias"}


class AfterUpdate(DistillPlugin):
    """Keeps the trainee's weights after each optimizer update."""

    def __init__(self):
        self.states = []

    def after_update(self, distiller, step, update):
        self.states.append({k: v.clone() for k, v in distiller.trainee.state_dict().items()})


def test_a_toy_transfer_source_is_a_transfer_set(registered):
    assert resolve_transfer_sets(["unlabeled", "repeated"], None) == ["unlabeled", "repeated"]
    with pytest.raises(Exception, match="--transfer"):
        resolve_transfer_sets(["nonsense"], None)
