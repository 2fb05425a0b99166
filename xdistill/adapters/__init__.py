"""Task adapters: the registry of task types, and loading task files through them.

This package is the one place where a task type (``token-classification``) or a command
(``ner``) maps to code: :data:`ADAPTERS`. A new task type is a new adapter module plus one
line here.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Sequence

from ..config import COMMON_ARGUMENTS, PRESETS
from ..data.taskspec import TaskSpec, read_task_file
from ..errors import ConfigError
from .base import TaskAdapter
from .levels import LEVELS, SEQUENCE, TOKEN, OutputLevel, batched_logits
from .sequence_classification import SequenceClassificationAdapter
from .token_classification import TokenClassificationAdapter

#: task type -> adapter class
ADAPTERS: dict[str, type[TaskAdapter]] = {
    TokenClassificationAdapter.type: TokenClassificationAdapter,
    SequenceClassificationAdapter.type: SequenceClassificationAdapter,
}
#: command -> adapter class
COMMANDS: dict[str, type[TaskAdapter]] = {cls.command: cls for cls in ADAPTERS.values()}


def adapter_class(task_type: str, where: str = "task") -> type[TaskAdapter]:
    """The adapter class of a task type.

    Raises:
        ConfigError: no adapter for that type (``where`` names the file).
    """
    if task_type not in ADAPTERS:
        raise ConfigError(f"{where}: key 'type' must be one of {', '.join(ADAPTERS)}, got {task_type!r}")
    return ADAPTERS[task_type]


def load_task(name_or_path: str | Path) -> TaskSpec:
    """Read ``tasks/NAME.toml`` or a task file, and check it against its type's adapter.

    Raises:
        ConfigError: a missing or malformed file, an unknown type, or a key its type does not allow.
    """
    spec = read_task_file(name_or_path)
    adapter_class(spec.type, spec.path).check_spec(spec)
    return spec


def make_adapter(spec: TaskSpec) -> TaskAdapter:
    """The adapter for ``spec.type``.

    Raises:
        ConfigError: no adapter for that type, or a key its type does not allow.
    """
    cls = adapter_class(spec.type, spec.path or spec.name)
    cls.check_spec(spec)
    return cls(spec)


def adapter_for_saved(config: dict) -> TaskAdapter:
    """The adapter of a saved model from what it recorded (``task_file``, ``task``, ``labels``,
    ``task_type``): its task file when that is still there with the same labels (columns,
    cleaning, word splitter), else a minimal spec of the recorded type.

    Raises:
        ConfigError: the recorded task type has no adapter.
    """
    labels = tuple(config["labels"])
    task_type = config.get("task_type", TokenClassificationAdapter.type)
    for ref in (config.get("task_file"), config.get("task")):
        if ref:
            try:
                spec = load_task(ref)
            except (ConfigError, OSError):  # the task file moved or changed: fall back to what was recorded
                continue
            if spec.labels == labels and spec.type == task_type:
                return make_adapter(spec)
    cls = adapter_class(task_type, "the model's config.json")
    return cls(TaskSpec(name=config.get("task", "task"), type=task_type, labels=labels, metric=next(iter(cls.metrics))))


def level_of_architectures(architectures: Sequence[str] | None) -> OutputLevel | None:
    """The output level of a ``transformers`` checkpoint from its ``architectures``
    (``BertForTokenClassification`` -> :data:`TOKEN`), or ``None`` for a base model."""
    names = " ".join(architectures or [])
    for level in LEVELS.values():
        if f"For{level.head}" in names:
            return level
    return None


def adapter_type_of_level(level: OutputLevel) -> str:
    """The task type whose adapter has this output level (the first registered)."""
    return next(t for t, cls in ADAPTERS.items() if cls.level is level)


def check_presets() -> None:
    """Every preset names only options of its command's argument classes.

    Raises:
        AssertionError: a preset sets an unknown option (a programming error, caught at import).
    """
    for preset, by_command in PRESETS.items():
        for command, values in by_command.items():
            if command not in COMMANDS:
                raise AssertionError(f"preset {preset!r} names an unknown command {command!r}")
            names = {f.name for cls in (*COMMANDS[command].arguments, *COMMON_ARGUMENTS) for f in fields(cls)}
            unknown = set(values) - names
            if unknown:
                raise AssertionError(f"preset {preset!r} ({command}) sets unknown options {sorted(unknown)}")


check_presets()

__all__ = ["ADAPTERS", "COMMANDS", "LEVELS", "SEQUENCE", "TOKEN", "OutputLevel", "SequenceClassificationAdapter",
           "TaskAdapter", "TokenClassificationAdapter", "adapter_class", "adapter_for_saved", "adapter_type_of_level",
           "batched_logits", "check_presets", "level_of_architectures", "load_task", "make_adapter"]
