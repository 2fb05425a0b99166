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

XtremeDistilTransformers (Mukherjee, Hassan Awadallah & Gao 2021, arXiv 2106.04563) replaces
stage 1 by ``intermediate``: every student hidden layer ``0..L`` matched to a teacher layer
(``--layer-map``: uniform, top or explicit pairs; MSE, through a linear projection when the
widths differ) plus attention matches (``--attention-loss``: KL or MSE between the attention maps
of mapped layers when the head counts agree, or MiniLM's self-attention relations of the last
layer's queries, keys and values), all trained together end to end (no gradual unfreezing).
``--stages auto`` takes the student's own stages (:attr:`~xdistill.students.Student.default_stages`).

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
        gradual: whether the stage unfreezes its groups one by one (with ``--gradual-unfreezing``);
            ``False`` trains every group at once (XtremeDistilTransformers' stage 1).
    """

    name: str
    matches: tuple[Match, ...]
    data: str = "transfer"
    select_by: str = "metric"
    checks_per_epoch: int | None = None
    gradual: bool = True

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

    @property
    def student_features(self) -> list[Feature]:
        """The relational student features its matches read (attention maps, queries, keys, values),
        which a student computes only when asked."""
        keys = dict.fromkeys(m.student for m in self.matches if m.student_feature.relational)
        return [Feature.parse(k) for k in keys]


@dataclass(frozen=True)
class StageContext:
    """What stage builders know of the two models.

    Attributes:
        teacher_layer: ``--teacher-layer`` as a non-negative index into the teacher's hidden states.
        teacher_layers: the teacher's transformer layers ``L_t`` (hidden states ``0..L_t``).
        teacher_heads: its attention heads per layer.
        teacher_hidden: its width.
        student_layers: the student's transformer layers ``L_s`` (hidden states ``0..L_s``); 0 for a
            student with one hidden state and no attention (the BiLSTM).
        student_heads: its attention heads per layer (0: none).
        student_hidden: the width of its hidden states.
    """

    teacher_layer: int
    teacher_layers: int = 0
    teacher_heads: int = 0
    teacher_hidden: int = 0
    student_layers: int = 0
    student_heads: int = 0
    student_hidden: int = 0


#: ``(distill options, what is known of the models) -> Stage``
StageBuilder = Callable[[DistillArguments, StageContext], Stage]
#: stage name -> builder
STAGES: dict[str, StageBuilder] = {}


def register_stage(name: str) -> Callable[[StageBuilder], StageBuilder]:
    """Decorator: register a stage builder as ``name`` (a value of ``--stages``)."""
    def deco(fn: StageBuilder) -> StageBuilder:
        STAGES[name] = fn
        return fn
    return deco


@register_stage("representation")
def representation_stage(args: DistillArguments, ctx: StageContext) -> Stage:
    """XtremeDistil stage 1 (sec. 3.2, representation loss), selected on its validation loss."""
    return Stage("representation", (Match("hidden_states.-1", f"hidden_states.{ctx.teacher_layer}", args.representation_loss,
                                          temperature=args.temperature, projection="linear-gelu"),),
                 data="transfer", select_by="loss")


@register_stage("logits")
def logits_stage(args: DistillArguments, ctx: StageContext) -> Stage:
    """XtremeDistil stage 2 (sec. 3.2, logit loss), selected on the task metric."""
    return Stage("logits", (Match("logits", "logits", args.logits_loss, temperature=args.temperature),), data="transfer")


@register_stage("labeled")
def labeled_stage(args: DistillArguments, ctx: StageContext) -> Stage:
    """XtremeDistil stage 3: cross-entropy on the labeled budget, validated once per epoch."""
    return Stage("labeled", (Match("logits", "labels", "cross_entropy"),), data="labeled", checks_per_epoch=1)


@register_stage("intermediate")
def intermediate_stage(args: DistillArguments, ctx: StageContext) -> Stage:
    """XtremeDistilTransformers' stage 1: hidden-state matches of every mapped layer pair (MSE, a
    linear projection where the widths differ) and the attention matches of
    :func:`attention_matches`, trained end to end, selected on its validation loss.

    Raises:
        ConfigError: see :func:`layer_map` and :func:`attention_matches`.
    """
    pairs = layer_map(args.layer_map, ctx.student_layers, ctx.teacher_layers)
    hidden = tuple(Match(f"hidden_states.{s}", f"hidden_states.{t}", "mse", projection="auto") for s, t in pairs)
    return Stage("intermediate", hidden + attention_matches(args, ctx, pairs), data="transfer", select_by="loss",
                 gradual=False)


def layer_map(spec: str, student_layers: int, teacher_layers: int, option: str = "--layer-map") -> list[tuple[int, int]]:
    """Pairs ``(student layer, teacher layer)`` of hidden states (layer 0 is the embedding output).

    ``uniform``: student layer ``s`` of ``L_s`` takes teacher layer ``round(s * L_t / L_s)`` (every
    k-th, as TinyBERT's and DistilBERT's layer choice); ``top``: the last ``L_s + 1`` teacher layers,
    ``s -> L_t - L_s + s`` (XtremeDistilTransformers); explicit: ``"0:0,2:4,4:8"``. A student with
    one hidden state (``L_s = 0``, the BiLSTM) matches the teacher's last layer.

    Raises:
        ConfigError: ``top`` with more student than teacher layers, or an explicit pair naming a
            layer that does not exist (names ``option`` and the valid ranges).
    """
    spec = spec.replace(" ", "")
    if student_layers == 0 and spec in ("uniform", "top"):
        return [(0, teacher_layers)]
    if spec == "uniform":
        return [(s, round(s * teacher_layers / student_layers)) for s in range(student_layers + 1)]
    if spec == "top":
        if student_layers > teacher_layers:
            raise ConfigError(f"{option} top: the student has {student_layers} layers, the teacher only "
                              f"{teacher_layers}; use uniform or explicit pairs")
        return [(s, teacher_layers - student_layers + s) for s in range(student_layers + 1)]
    pairs = [tuple(int(x) for x in p.split(":")) for p in spec.split(",")]
    bad = [f"{s}:{t}" for s, t in pairs if not (0 <= s <= student_layers and 0 <= t <= teacher_layers)]
    if bad:
        raise ConfigError(f"{option}: {', '.join(bad)} names a layer that does not exist; student layers are "
                          f"0..{student_layers}, teacher layers 0..{teacher_layers} (0 is the embedding output)")
    return pairs


def relation_heads(args: DistillArguments, ctx: StageContext) -> int:
    """``--relation-heads``, or by default the student's head count lowered until it divides both widths.

    Raises:
        ConfigError: a given count that does not divide both widths.
    """
    r = args.relation_heads
    if r:
        if ctx.student_hidden % r or ctx.teacher_hidden % r:
            raise ConfigError(f"--relation-heads {r}: must divide the student's width {ctx.student_hidden} and the "
                              f"teacher's {ctx.teacher_hidden}")
        return r
    r = max(1, ctx.student_heads)
    while ctx.student_hidden % r or ctx.teacher_hidden % r:
        r -= 1
    return r


def attention_matches(args: DistillArguments, ctx: StageContext, pairs: Sequence[tuple[int, int]]) -> tuple[Match, ...]:
    """The attention matches of stage ``intermediate`` (``--attention-loss``):

    - ``kl``/``mse``: the attention maps ``(B, A, T, T)`` of every mapped pair of attention layers
      (student and teacher layers >= 1), KL (MiniLM eq. 7) or MSE (TinyBERT eq. 7); the head
      counts must agree;
    - ``relation``: MiniLM's self-attention relations (queries-queries, keys-keys, values-values,
      softmax of scaled dot products; Wang et al. 2020 arXiv 2002.10957, MiniLMv2 arXiv 2012.15828
      sec. 3.1) between the student's last layer and the teacher layer it maps to, in
      :func:`relation_heads` heads: no equal heads or widths needed;
    - ``auto``: ``kl`` when the head counts agree, else ``relation``; nothing for a student without
      attention (the BiLSTM); ``off``: nothing.

    Raises:
        ConfigError: ``kl``/``mse`` with different head counts, or any attention loss for a student
            without attention.
    """
    kind = args.attention_loss
    if kind == "off" or (kind == "auto" and ctx.student_heads == 0):
        return ()
    if ctx.student_heads == 0:
        raise ConfigError(f"--attention-loss {kind}: this student has no attention; use off or auto")
    if kind == "auto":
        kind = "kl" if ctx.student_heads == ctx.teacher_heads else "relation"
    if kind in ("kl", "mse"):
        if ctx.student_heads != ctx.teacher_heads:
            raise ConfigError(f"--attention-loss {kind}: the student has {ctx.student_heads} heads, the teacher "
                              f"{ctx.teacher_heads}; attention maps are compared head by head. Use relation (MiniLM), "
                              "which needs no equal heads")
        return tuple(Match(f"attentions.{s}", f"attentions.{t}", f"attention_{kind}") for s, t in pairs if s and t)
    top_s = ctx.student_layers
    top_t = dict(pairs).get(top_s) or ctx.teacher_layers
    heads = relation_heads(args, ctx)
    return tuple(Match(f"{name}.{top_s}", f"{name}.{top_t}", "relation_kl", relation_heads=heads)
                 for name in ("queries", "keys", "values"))


def check_stage_names(names: Sequence[str]) -> None:
    """Raises ConfigError for a name of ``--stages`` that is not registered (listing the registered ones)."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ConfigError(f"--stages: unknown stage(s) {', '.join(map(repr, unknown))}; expected a comma-separated "
                          f"subset of {', '.join(STAGES)}")


def build_stages(names: Sequence[str], args: DistillArguments, ctx: StageContext) -> list[Stage]:
    """The stages ``names`` (``--stages``) in order.

    Raises:
        ConfigError: an unknown name (lists the registered ones), a bad loss name, or a layer map or
            attention loss that does not fit the models.
    """
    check_stage_names(names)
    return [STAGES[n](args, ctx) for n in names]


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


def make_schedule(trainee: Trainee, stages: Sequence[Stage], gradual: bool, frozen: Sequence[str] = ()) -> list[Step]:
    """The steps of Algorithm 1: per stage, the top group first, then one more group per step
    (``gradual`` and the stage's own ``gradual``), or one step with every group. Groups named in
    ``frozen`` (``--freeze-embeddings``) are left out of every step, so they keep their initial weights.

    Raises:
        ConfigError: a name in ``frozen`` that is not one of the student's body groups.
    """
    body = trainee.student.body_groups()
    unknown = [g for g in frozen if g not in body]
    if unknown:
        raise ConfigError(f"frozen layer group(s) (--freeze-embeddings) {', '.join(map(repr, unknown))}: the student "
                          f"{type(trainee.student).__name__} has the body groups {', '.join(body)}")
    steps = []
    for stage in stages:
        groups = [name for name, _ in trainee.stage_groups(stage.matches) if name not in frozen]
        if gradual and stage.gradual:
            steps.extend(Step(stage, k, tuple(groups[:k])) for k in range(1, len(groups) + 1))
        else:
            steps.append(Step(stage, 1, tuple(groups)))
    return steps


def distill_schedule(trainee: Trainee, stages: Sequence[Stage], args: DistillArguments) -> list[Step]:
    """The distilled student's steps under the run's options: :func:`make_schedule` with
    ``--gradual-unfreezing`` and ``--freeze-embeddings`` (every pipeline's students share it)."""
    return make_schedule(trainee, stages, args.gradual_unfreezing, args.frozen_groups())
