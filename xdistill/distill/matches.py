"""Matches: which target trains which student output, with which loss, weight and projection.

A :class:`Match` is data (the model is TextBrewer's ``IntermediateMatch(layer_T, layer_S,
weight, loss, feature, proj)``): a student feature key (``logits``, ``hidden_states.-1``), a
target key (a teacher feature such as ``hidden_states.4``, or ``labels`` for the gold labels),
a registered loss name (:data:`xdistill.distill.losses.LOSSES`), a weight, a temperature, and
optionally a projection (:data:`PROJECTIONS`) that maps the student feature to the target's
width. XtremeDistil's stage 1 is ``Match("hidden_states.-1", "hidden_states.L", "mse",
projection="linear-gelu")``: the student's BiLSTM states through GELU(W h + b) against the
teacher's layer-L hidden states (sec. 3.2).

A :class:`Trainee` is the student plus the projections of every match a run uses: trained
together, checkpointed together; only the student is saved at the end.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..data.types import Feature
from ..errors import ConfigError
from ..students import Student, StudentOutput
from .losses import get_loss

#: projection name -> ``(in_features, out_features) -> nn.Module``
PROJECTIONS: dict[str, Callable[[int, int], nn.Module]] = {
    "linear": lambda i, o: nn.Linear(i, o),
    # XtremeDistil sec. 3.2: z = GELU(W h + b)
    "linear-gelu": lambda i, o: nn.Sequential(nn.Linear(i, o), nn.GELU()),
}
#: ``projection="auto"``: a linear projection where the widths differ, none where they agree
AUTO = "auto"


@dataclass(frozen=True)
class Match:
    """One distillation signal (see the module docstring).

    Attributes:
        student: key of the student feature (``logits``, ``hidden_states.L``, ``attentions.L``).
        target: key of the target: a teacher feature, or ``labels`` (the batch's gold labels).
        loss: a name in :data:`~xdistill.distill.losses.LOSSES`.
        weight: the loss's weight in the stage's sum.
        temperature: passed to the loss (used by ``kl``).
        projection: a name in :data:`PROJECTIONS`, ``auto`` (``linear`` where the widths differ,
            none where they agree), or ``None``.
        relation_heads: for ``relation_kl``: the relation heads (MiniLMv2); passed to the loss.
    """

    student: str
    target: str
    loss: str = "mse"
    weight: float = 1.0
    temperature: float = 1.0
    projection: str | None = None
    relation_heads: int | None = None

    def __post_init__(self) -> None:
        Feature.parse(self.student)
        Feature.parse(self.target)
        get_loss(self.loss, f"match {self.student} <- {self.target}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"match {self.student} <- {self.target}: temperature must be a finite number > 0, got {t!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not math.isfinite(self.weight):
            raise ConfigError(f"match {self.student} <- {self.target}: weight must be a finite number, got {self.weight!r}")
        if self.projection is not None and self.projection not in PROJECTIONS and self.projection != AUTO:
            raise ConfigError(f"match {self.student} <- {self.target}: unknown projection {self.projection!r}; "
                              f"expected one of {', '.join(PROJECTIONS)}")

    @property
    def student_feature(self) -> Feature:
        return Feature.parse(self.student)

    @property
    def target_feature(self) -> Feature:
        return Feature.parse(self.target)

    @property
    def from_teacher(self) -> bool:
        """Whether the target is a teacher feature (not the gold labels)."""
        return self.target != "labels"

    @property
    def name(self) -> str:
        """A module-safe name, e.g. ``hidden_states_m1__hidden_states_4``."""
        return re.sub(r"[^A-Za-z0-9_]", "_", f"{self.student}__{self.target}".replace("-", "m"))

    def loss_value(self, student: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The weighted loss of one batch (the weight is applied only when it is not 1)."""
        fn = get_loss(self.loss)
        if self.relation_heads is None:
            value = fn(student, target, mask, self.temperature)
        else:
            value = fn(student, target, mask, self.temperature, relation_heads=self.relation_heads)
        return value if self.weight == 1.0 else self.weight * value


class Trainee(nn.Module):
    """A student and the projections of the run's matches.

    Args:
        student: the student.
        matches: every match the run may train (projections are created in this order, right
            after the student, so a seed gives the same initial weights whichever stages run).
        target_widths: the last axis of each projected target (``{target key: width}``).

    Raises:
        ConfigError: a projected match whose target width is unknown.
    """

    def __init__(self, student: Student, matches: Sequence[Match], target_widths: dict[str, int]):
        super().__init__()
        self.student = student
        self.projections = nn.ModuleDict()
        for m in matches:
            if m.projection is None or m.name in self.projections:
                continue
            if m.target not in target_widths:
                raise ConfigError(f"match {m.student} <- {m.target}: the width of {m.target} is unknown")
            width = student.output_size(m.student_feature)
            if m.projection == AUTO and width == target_widths[m.target]:
                continue
            kind = "linear" if m.projection == AUTO else m.projection
            self.projections[m.name] = PROJECTIONS[kind](width, target_widths[m.target])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: Sequence[Feature] = ()) -> StudentOutput:
        """The student's named outputs for ``(B, T)`` inputs, with the relational ``features`` asked
        for (projections are applied per match)."""
        return self.student(input_ids, attention_mask, features)

    def student_output(self, out: StudentOutput, m: Match) -> torch.Tensor:
        """The student side of a match: the named output, projected when the match has a projection."""
        x = out.feature(m.student_feature)
        return self.projections[m.name](x) if m.name in self.projections else x

    def stage_groups(self, matches: Sequence[Match]) -> list[tuple[str, list[nn.Parameter]]]:
        """The unfreezing groups of a stage, top first: its heads (the projections of its matches,
        then the student's head groups of the outputs it matches), then the student's body groups."""
        top: list[nn.Parameter] = []
        for m in matches:
            if m.name in self.projections:
                top += list(self.projections[m.name].parameters())
        heads: list[str] = []
        for m in matches:
            heads += [g for g in self.student.head_groups(m.student_feature.name) if g not in heads]
        for g in heads:
            top += self.student.group_parameters(g)
        name = "projection" if any(m.name in self.projections for m in matches) else (heads[0] if heads else "head")
        return [(name, top)] + [(g, self.student.group_parameters(g)) for g in self.student.body_groups()]

    def set_trainable(self, params: Sequence[nn.Parameter]) -> None:
        """Freeze everything, then unfreeze ``params``."""
        for p in self.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
