"""What a transfer source is given (:class:`TransferContext`) and what it returns (:class:`TransferText`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..adapters import TaskAdapter
from ..config import GenerationOptions
from ..data.types import Encoded, TaskData
from ..teachers import Teacher


@dataclass
class TransferContext:
    """What a source may use: the task adapter, the teacher (trained or loaded; generated text is
    filtered by its predictions) and its tokenizer, the task's data (``splits`` are the groups'
    splits concatenated: ``labeled``, ``validation``, ``teacher_labeled``, ``transfer``;
    ``encodings`` the same, encoded), the generation options (``None`` for a command without them),
    the output folder and the seed."""

    adapter: TaskAdapter
    tokenizer: object
    data: TaskData
    splits: dict
    encodings: dict[str, Encoded]
    max_length: int
    generation: GenerationOptions | None
    out_dir: Path
    seed: int
    teacher: Teacher | None = None


@dataclass
class TransferText:
    """A source's encoded rows, the report's section about them (or ``None``) and the group
    (language) of each of its examples, in example order (``None``: not known; its rows are then
    never sampled by group, ``--transfer-lang-temperature``)."""

    encoded: Encoded
    report: dict | None = None
    groups: list[str] | None = None
