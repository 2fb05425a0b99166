"""The registry of student kinds (``--student``), the factory, and loading saved students.

A new student kind is a module of this package with a :class:`~xdistill.students.base.Student`
subclass decorated with :func:`register_student`, imported in ``xdistill/students/__init__.py``
(or registered from outside the package: the decorator is public).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import StudentArguments
from ..errors import ConfigError
from .base import STUDENT_CONFIG, STUDENT_MARKER, STUDENT_WEIGHTS, Student, StudentContext

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


#: the key of ``config.json`` under which a student saved as a ``transformers`` model keeps xdistill's
#: settings (task, labels, max_length, ...): top-level keys would mix with the model configuration's
SETTINGS_KEY = "xdistill"


def saved_settings(directory: str | Path) -> dict:
    """A saved student's ``config.json`` with the settings under :data:`SETTINGS_KEY` merged in (the
    same keys a BiLSTM student's ``config.json`` holds at its top level).

    Raises:
        OSError, json.JSONDecodeError: an unreadable ``config.json``.
    """
    cfg = json.loads((Path(directory) / STUDENT_CONFIG).read_text(encoding="utf-8"))
    nested = cfg.get(SETTINGS_KEY)
    return {**cfg, **nested} if isinstance(nested, dict) else cfg


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
    return cls.load(d, cfg)
