"""The registry of student kinds (``--student``), the factory, and loading saved students.

A new student kind is a module of this package with a :class:`~xdistill.students.base.Student`
subclass decorated with :func:`register_student`, imported in ``xdistill/students/__init__.py``
(or registered from outside the package: the decorator is public).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from safetensors.torch import load_file

from ..config import StudentArguments
from ..errors import ConfigError
from .base import STUDENT_CONFIG, STUDENT_MARKER, STUDENT_WEIGHTS, Student, StudentContext

logger = logging.getLogger(__name__)

#: student kind -> class
STUDENTS: dict[str, type[Student]] = {}


def register_student(cls: type[Student]) -> type[Student]:
    """Class decorator: register a student class under ``cls.kind``.

    Raises:
        ValueError: the class has no ``kind`` or the kind is taken by another class.
    """
    if not cls.kind:
        raise ValueError(f"{cls.__name__}: a student class needs a non-empty `kind`")
    if STUDENTS.get(cls.kind, cls) is not cls:
        raise ValueError(f"student kind {cls.kind!r} is already registered by {STUDENTS[cls.kind].__name__}")
    STUDENTS[cls.kind] = cls
    return cls


def student_class(kind: str, where: str = "--student") -> type[Student]:
    """The class registered as ``kind``.

    Raises:
        ConfigError: an unknown kind (``where`` names the option or file).
    """
    if kind not in STUDENTS:
        raise ConfigError(f"{where}: unknown student kind {kind!r}; expected one of {', '.join(sorted(STUDENTS))}")
    return STUDENTS[kind]


def build_student(args: StudentArguments, ctx: StudentContext) -> Student:
    """A new student of kind ``args.student`` for a run.

    Raises:
        ConfigError: an unknown kind.
    """
    return student_class(args.student).create(args, ctx)


def is_student_dir(directory: str | Path) -> bool:
    """Whether ``directory`` holds a saved xdistill student (``config.json`` with the marker)."""
    p = Path(directory) / STUDENT_CONFIG
    if not p.is_file():
        return False
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and bool(data.get(STUDENT_MARKER))


def run_folder_hint(directory: str | Path) -> str:
    """`` (did you mean DIR/student?)`` when ``directory`` is a run's output folder holding a student, else ``""``."""
    d = Path(directory)
    found = [c for c in sorted(d.glob("student*")) if is_student_dir(c)] if d.is_dir() else []
    return f" (did you mean {found[0]}?)" if found else ""


#: weights of training-only heads that students saved before version 0.2 carried (the BiLSTM's
#: stage-1 projection); they are not part of the student and are left out when loading
LEGACY_TRAINING_KEYS = ("projection.weight", "projection.bias")


def load_student(directory: str | Path) -> tuple[Student, dict]:
    """Rebuild a saved student: ``(model in eval mode, config dict)``.

    Raises:
        ConfigError: the folder holds no student, an unknown student kind, or weights that do not
            match the configuration.
    """
    d = Path(directory)
    if not is_student_dir(d):
        raise ConfigError(f"--model {d}: no xdistill student here (expected {STUDENT_CONFIG} with \"{STUDENT_MARKER}\": true "
                          f"and {STUDENT_WEIGHTS}){run_folder_hint(d)}")
    cfg = json.loads((d / STUDENT_CONFIG).read_text())
    cls = student_class(cfg.get("kind"), str(d / STUDENT_CONFIG))
    weights = d / STUDENT_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"--model {d}: {STUDENT_WEIGHTS} is missing")
    model = cls.from_config(cfg)
    state = load_file(str(weights))
    expected = model.state_dict()
    legacy = [k for k in LEGACY_TRAINING_KEYS if k in state and k not in expected]
    if legacy:
        logger.info("%s: leaving out the training-only weights %s", weights, ", ".join(legacy))
        state = {k: v for k, v in state.items() if k not in legacy}
    wrong = [f"{k}: {tuple(v.shape)} vs config {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if wrong or missing or unexpected:
        raise ConfigError(f"{weights}: weights do not match {d / STUDENT_CONFIG} (shape mismatches {wrong}, "
                          f"missing {missing}, unexpected {unexpected})")
    model.load_state_dict(state)
    model.eval()
    return model, cfg
