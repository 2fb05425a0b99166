"""Task adapters: one per task type (see :class:`~xdistill.adapters.base.TaskAdapter`)."""

from __future__ import annotations

from ..errors import ConfigError
from ..taskspec import TaskSpec
from .base import Encoded, TaskAdapter
from .sequence_classification import SequenceClassificationAdapter
from .token_classification import TokenClassificationAdapter

ADAPTERS: dict[str, type[TaskAdapter]] = {
    "token-classification": TokenClassificationAdapter,
    "sequence-classification": SequenceClassificationAdapter,
}


def make_adapter(spec: TaskSpec) -> TaskAdapter:
    """The adapter for ``spec.type``.

    Raises:
        ConfigError: no adapter for that type.
    """
    try:
        return ADAPTERS[spec.type](spec)
    except KeyError:
        raise ConfigError(f"{spec.path or spec.name}: task type {spec.type!r} has no adapter; expected one of {', '.join(ADAPTERS)}") from None


__all__ = ["ADAPTERS", "Encoded", "SequenceClassificationAdapter", "TaskAdapter", "TokenClassificationAdapter",
           "make_adapter"]
