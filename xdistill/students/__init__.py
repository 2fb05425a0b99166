"""Students: the :class:`~xdistill.students.base.Student` interface with named outputs, the
registry of kinds keyed by ``--student`` (:data:`STUDENTS`, :func:`build_student`), saving and
loading, the XtremeDistil BiLSTM (:mod:`~xdistill.students.bilstm`) and small transformers saved as
standard ``transformers`` models (:mod:`~xdistill.students.transformer`).

To add a kind: a module here with a ``Student`` subclass decorated ``@register_student``, and
its import below (the registry line).
"""

from .base import (STUDENT_CONFIG, STUDENT_MARKER, STUDENT_WEIGHTS, Student, StudentContext, StudentOutput,
                   StudentShape)
from .registry import (SETTINGS_KEY, STUDENTS, build_student, is_student_dir, load_student, register_student,
                       run_folder_hint, saved_settings, student_class)
from .bilstm import BiLSTMStudent  # noqa: E402,I001  (registers "bilstm")
from .transformer import TransformerStudent  # noqa: E402,I001  (registers "transformer")

__all__ = ["SETTINGS_KEY", "STUDENTS", "STUDENT_CONFIG", "STUDENT_MARKER", "STUDENT_WEIGHTS", "BiLSTMStudent", "Student",
           "StudentContext", "StudentOutput", "StudentShape", "TransformerStudent", "build_student", "is_student_dir", "load_student", "register_student",
           "run_folder_hint", "saved_settings", "student_class"]
