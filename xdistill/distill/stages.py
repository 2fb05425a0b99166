"""Stages and the schedule (XtremeDistil, Mukherjee & Hassan Awadallah 2020, Algorithm 1).

A :class:`Stage` is data: its matches (what trains what, :mod:`xdistill.distill.matches`), the
data source it trains on (``transfer``: teacher-labeled text; ``labeled``: the gold budget),
and how it selects the best state (``metric``: the task metric on the validation split;
``loss``: minus the stage's own loss on the validation rows). Its unfreezing groups follow
from the matches: the heads they train, then the student's body from the top down.

:data:`STAGES` registers stage builders by name; ``--stages`` picks from it. XtremeDistil's:

1. ``representation``: the student's top hidden states, projected by GELU(W h + b), against the
   teacher's layer-L hidden states (``--representation-loss``, MSE by default), on the transfer set;
2. ``logits``: student logits against teacher logits (``--logits-loss``: MSE, or KL at
   ``--temperature``), on the transfer set;
3. ``labeled``: cross-entropy on the gold labels of the labeled budget.

A schedule is a list of :class:`Step`: per stage, with gradual unfreezing, the top group first,
then one more group per step, each trained until early stopping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..config import DistillArguments
from ..data.types import Feature
from ..errors import ConfigError
from .matches import Match, Trainee

SELECTIONS = ("metric", "loss")


@dataclass(frozen=True)
class Stage:
    """A stage of the schedule (see the module docstring).

    Attributes:
        name: the stage's name in reports and checkpoints.
        matches: its distillation signals (their weighted losses are summed).
        data: the data source it trains on (a key of the loop's sources).
        select_by: ``metric`` or ``loss`` (see the module docstring).
        checks_per_epoch: validation checks per epoch; ``None`` takes ``--evals-per-epoch``.
    """

    name: str
    matches: tuple[Match, ...]
    data: str = "transfer"
    select_by: str = "metric"
    checks_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.select_by not in SELECTIONS:
            raise ConfigError(f"stage {self.name}: select_by must be one of {', '.join(SELECTIONS)}, got {self.select_by!r}")
        if not self.matches:
            raise ConfigError(f"stage {self.name}: needs at least one match")

    @property
    def teacher_features(self) -> list[Feature]:
        """The teacher features its matches read (no repeats, in order)."""
        keys = dict.fromkeys(m.target for m in self.matches if m.from_teacher)
        return [Feature.parse(k) for k in keys]


#: ``(distill options, teacher layer as a non-negative index) -> Stage``
StageBuilder = Callable[[DistillArguments, int], Stage]
#: stage name -> builder
STAGES: dict[str, StageBuilder] = {}


def register_stage(name: str) -> Callable[[StageBuilder], StageBuilder]:
    """Decorator: register a stage builder as ``name`` (a value of ``--stages``)."""
    def deco(fn: StageBuilder) -> StageBuilder:
        STAGES[name] = fn
        return fn
    return deco


@register_stage("representation")
def representation_stage(args: DistillArguments, teacher_layer: int) -> Stage:
    """XtremeDistil stage 1 (sec. 3.2, representation loss), selected on its validation loss."""
    return Stage("representation", (Match("hidden_states.-1", f"hidden_states.{teacher_layer}", args.representation_loss,
                                          temperature=args.temperature, projection="linear-gelu"),),
                 data="transfer", select_by="loss")


@register_stage("logits")
def logits_stage(args: DistillArguments, teacher_layer: int) -> Stage:
    """XtremeDistil stage 2 (sec. 3.2, logit loss), selected on the task metric."""
    return Stage("logits", (Match("logits", "logits", args.logits_loss, temperature=args.temperature),), data="transfer")


@register_stage("labeled")
def labeled_stage(args: DistillArguments, teacher_layer: int) -> Stage:
    """XtremeDistil stage 3: cross-entropy on the labeled budget, validated once per epoch."""
    return Stage("labeled", (Match("logits", "labels", "cross_entropy"),), data="labeled", checks_per_epoch=1)


def build_stages(names: Sequence[str], args: DistillArguments, teacher_layer: int) -> list[Stage]:
    """The stages ``names`` (``--stages``) in order.

    Raises:
        ConfigError: an unknown name (lists the registered ones), or a bad loss name.
    """
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ConfigError(f"--stages: unknown stage(s) {', '.join(map(repr, unknown))}; expected a comma-separated "
                          f"subset of {', '.join(STAGES)}")
    return [STAGES[n](args, teacher_layer) for n in names]


@dataclass(frozen=True)
class Step:
    """One unfreezing step: train the groups ``trainable`` of the trainee in ``stage``."""

    stage: Stage
    index: int
    trainable: tuple[str, ...]

    @property
    def name(self) -> str:
        """``STAGE:INDEX``, e.g. ``logits:2`` (in reports, logs and ``progress.json``)."""
        return f"{self.stage.name}:{self.index}"


def make_schedule(trainee: Trainee, stages: Sequence[Stage], gradual: bool) -> list[Step]:
    """The steps of Algorithm 1: per stage, the top group first, then one more group per step
    (``gradual``), or one step with every group."""
    steps = []
    for stage in stages:
        groups = [name for name, _ in trainee.stage_groups(stage.matches)]
        if gradual:
            steps.extend(Step(stage, k, tuple(groups[:k])) for k in range(1, len(groups) + 1))
        else:
            steps.append(Step(stage, 1, tuple(groups)))
    return steps
