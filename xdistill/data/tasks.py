"""Task data: the splits of every group (languages for NER, the task itself for classification).

:func:`load_task_data` picks the loader for the task type from :data:`LOADERS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..taskspec import TaskSpec


@dataclass
class TaskData:
    """Splits per group (``groups[name]`` is a :class:`~xdistill.data.ner.LanguageData`), the groups asked for
    but missing, where the data came from, and how the labeled budgets were set (for the report)."""

    groups: dict
    missing: list
    source: str
    requested: str
    student_budget: str
    teacher_budget: str
    unit: str = "sentences"
    group_name: str | None = None  # the report's name for the groups ("languages" for NER)


def _ner(spec, args, registry, tokenizer) -> TaskData:
    from .ner import build_ner_data

    return build_ner_data(spec, args, registry, tokenizer)


def _text(spec, args, registry, tokenizer) -> TaskData:
    from .text import build_text_data

    return build_text_data(spec, args, registry, tokenizer)


LOADERS = {"token-classification": _ner, "sequence-classification": _text}


def load_task_data(spec: TaskSpec, args, registry, tokenizer) -> TaskData:
    """Build every split of the task.

    Raises:
        ConfigError: no loader for the task type, or an error of the loader.
    """
    if spec.type not in LOADERS:
        raise ConfigError(f"{spec.path}: no data loader for task type {spec.type!r}")
    return LOADERS[spec.type](spec, args, registry, tokenizer)
