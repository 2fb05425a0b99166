"""Transfer sources: where the text the teacher labels for the student comes from.

A :class:`TransferSource` turns the run's context into encoded rows of unlabeled text. Sources
are registered by name in :data:`TRANSFER_SOURCES`; a *transfer set* (what one student is
distilled on, ``--transfer``) is a named combination of sources in :data:`TRANSFER_SETS`.
The teacher labels the union of the sources a run needs once; each set is a view of it.

Built in: ``unlabeled`` (the task's train text with labels dropped plus its unlabeled text)
and ``generated`` (generation-distillation, Melas-Kyriazi et al. 2019: text written by a
language model, :mod:`xdistill.transfer.generation`). A new source is a class here (or in
its own module of this package) with ``@register_source``, and a line in ``TRANSFER_SETS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Sequence

from ..config import GenerationOptions
from ..errors import ConfigError
from .context import TransferContext, TransferText
from .generated import generated_text
from .generation import check_generator


class TransferSource(ABC):
    """A source of transfer text.

    Attributes:
        name: the registry name, used in ``TRANSFER_SETS`` and the report.
        phase: the report's timing phase for building it (``None``: not timed separately).
        encoding: the key of its rows in the report's encoding statistics.
        section: the report's key for what :meth:`build` says about the text (``None``: nothing to say).
    """

    name: ClassVar[str]
    phase: ClassVar[str | None] = None
    encoding: ClassVar[str]
    section: ClassVar[str | None] = None

    @classmethod
    def check(cls, generation: GenerationOptions | None) -> None:
        """Raise ConfigError (naming the option) when the run's options cannot build this source."""

    @abstractmethod
    def build(self, ctx: TransferContext) -> TransferText:
        """The source's rows for this run."""


#: name -> source class, in the order their rows are concatenated
TRANSFER_SOURCES: dict[str, type[TransferSource]] = {}


def register_source(cls: type[TransferSource]) -> type[TransferSource]:
    """Class decorator: register a :class:`TransferSource` under ``cls.name``."""
    TRANSFER_SOURCES[cls.name] = cls
    return cls


@register_source
class UnlabeledText(TransferSource):
    """The task's transfer split: train text outside the labeled budget and validation (labels
    dropped) plus the task's unlabeled text, as the data layer built it."""

    name = "unlabeled"
    encoding = "transfer"

    def build(self, ctx: TransferContext) -> TransferText:
        groups = [g for g, d in ctx.data.groups.items() for _ in range(len(d.transfer))]
        return TransferText(ctx.encodings["transfer"], groups=groups)


@register_source
class GeneratedText(TransferSource):
    """Text written by a causal language model fine-tuned (or trained from scratch) on the
    task's text, sampled per group (language), filtered and cached (``--augment generate``;
    :mod:`xdistill.transfer.generated`)."""

    name = "generated"
    phase = "generation"
    encoding = "generated"
    section = "generation"

    @classmethod
    def check(cls, generation: GenerationOptions | None) -> None:
        if generation is None or generation.augment != "generate":
            raise ConfigError("--transfer: generated text needs --augment generate")
        check_generator(generation)

    def build(self, ctx: TransferContext) -> TransferText:
        return generated_text(ctx)


#: transfer set (``--transfer``) -> the sources it is made of
TRANSFER_SETS: dict[str, tuple[str, ...]] = {
    "unlabeled": ("unlabeled",),
    "generated": ("generated",),
    "both": ("unlabeled", "generated"),
}


def resolve_transfer_sets(names: Sequence[str], generation: GenerationOptions | None) -> list[str]:
    """The sources the requested transfer sets need, in registry order.

    Raises:
        ConfigError: an unknown set, or a source the options cannot build (both name ``--transfer``).
    """
    unknown = [n for n in names if n not in TRANSFER_SETS]
    if unknown or not names:
        raise ConfigError(f"--transfer: expected a comma-separated subset of {', '.join(TRANSFER_SETS)}, "
                          f"got {','.join(names)!r}")
    needed = {s for n in names for s in TRANSFER_SETS[n]}
    sources = [s for s in TRANSFER_SOURCES if s in needed]
    for s in sources:
        TRANSFER_SOURCES[s].check(generation)
    if generation is not None and generation.augment == "generate" and "generated" not in sources:
        raise ConfigError(f"--augment generate: no transfer set in --transfer {','.join(names)} uses generated text; "
                          "add generated or both (e.g. --transfer unlabeled,generated,both), or drop --augment")
    return sources


def set_rows(sources: Sequence[str], sizes: dict[str, int]) -> Callable[[str], list[int]]:
    """``rows(set_name)``: the set's row indices in the union of ``sources`` (concatenated in that
    order, ``sizes[source]`` rows each)."""
    starts, at = {}, 0
    for s in sources:
        starts[s] = at
        at += sizes[s]

    def rows(name: str) -> list[int]:
        return [starts[s] + i for s in TRANSFER_SETS[name] for i in range(sizes[s])]

    return rows
