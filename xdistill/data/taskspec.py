"""Declarative task specs (``tasks/*.toml``).

A task file names its adapter type, label set, metric and data sources; the
pipeline reads it instead of branching on task names. This module checks the
file's structure (unknown keys and wrong types raise
:class:`~xdistill.errors.ConfigError` naming the file and key); what a key may
hold for a given task type is checked by that type's adapter
(:func:`xdistill.adapters.load_task`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ConfigError

_SCHEMA: dict[str, dict[str, type | tuple]] = {
    "": {"name": str, "type": str, "description": str, "labels": list, "metric": str, "word_splitter": str,
         "hub": dict, "local": dict, "cleaning": dict},
    "hub": {"path": str, "config": str, "tokens_column": str, "tags_column": str, "text_column": str,
            "label_column": str, "train_split": str, "eval_split": str, "unlabeled_split": str},
    "local": {"format": str, "train": str, "eval": str, "unlabeled": (bool, str), "text_column": str,
              "label_column": str, "label_values": dict},
    "label_values": {},
    "cleaning": {"replace": list},
}
_REQUIRED = ("name", "type", "labels", "metric")


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task file. ``labels`` is the label set in model output order."""

    name: str
    type: str
    labels: tuple[str, ...]
    metric: str
    description: str = ""
    hub: dict = field(default_factory=dict)
    local: dict = field(default_factory=dict)
    cleaning: dict = field(default_factory=dict)
    path: str = ""
    word_splitter: str | None = None


def tasks_dir() -> Path:
    """The folder of the packaged task files (source checkout first, then the installed package)."""
    here = Path(__file__).resolve().parents[2] / "tasks"
    if here.is_dir():
        return here
    return Path(str(resources.files("xdistill._tasks")))


def _type_name(t) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def _check(path: Path, table: str, data: dict) -> None:
    schema = _SCHEMA[table]
    for key, value in data.items():
        dotted = f"{table}.{key}" if table else key
        if table == "label_values":  # free keys: raw label value -> label name
            if not isinstance(value, str):
                raise ConfigError(f"{path}: key 'local.label_values.{key}' must be str, got {type(value).__name__}")
            continue
        if key not in schema:
            raise ConfigError(f"{path}: unknown key {dotted!r}; expected one of {', '.join(sorted(schema))}")
        allowed = schema[key]
        if not isinstance(value, allowed) or (allowed is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: key {dotted!r} must be {_type_name(allowed)}, got {type(value).__name__}")
        if allowed is dict:
            _check(path, key, value)
    if table == "cleaning":
        for pair in data.get("replace", []):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair) and pair[0]):
                raise ConfigError(f"{path}: key 'cleaning.replace' must be a list of [old, new] string pairs, got {pair!r}")


def read_task_file(name_or_path: str | Path) -> TaskSpec:
    """Read ``tasks/NAME.toml`` or a task file by path and check its structure.

    Raises:
        ConfigError: missing file, invalid TOML, unknown key, wrong type or missing key.
    """
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = tasks_dir() / f"{name_or_path}.toml"
    if not p.is_file():
        known = sorted(x.stem for x in tasks_dir().glob("*.toml"))
        raise ConfigError(f"task {name_or_path!r}: no file {p}; known tasks: {', '.join(known)}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not a valid UTF-8 TOML file: {e}") from e
    if "defaults" in data:
        raise ConfigError(f"{p}: key 'defaults' is not supported: presets and the command line set options "
                          "(e.g. --max-length); remove the [defaults] table")
    _check(p, "", data)
    for key in _REQUIRED:
        if key not in data:
            raise ConfigError(f"{p}: missing key {key!r}")
    labels = data["labels"]
    if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise ConfigError(f"{p}: key 'labels' must be a non-empty list of distinct strings")
    return TaskSpec(name=data["name"], type=data["type"], labels=tuple(labels), metric=data["metric"],
                    description=data.get("description", ""), hub=data.get("hub", {}),
                    local=data.get("local", {}),
                    cleaning=data.get("cleaning", {}), path=str(p), word_splitter=data.get("word_splitter"))
