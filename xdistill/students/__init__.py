"""Students: the :class:`~xdistill.students.base.Student` interface with named outputs, the
registry of kinds keyed by ``--student`` (:data:`STUDENTS`, :func:`build_student`), saving and
loading, and the XtremeDistil BiLSTM (:mod:`~xdistill.students.bilstm`).

To add a kind: a module here with a ``Student`` subclass decorated ``@register_student``, and
its import below (the registry line).
"""

from .base import STUDENT_CONFIG, STUDENT_MARKER, STUDENT_WEIGHTS, Student, StudentContext, StudentOutput
from .registry import (STUDENTS, build_student, is_student_dir, load_student, register_student, run_folder_hint,
                       student_class)
from .bilstm import BiLSTMStudent  # noqa: E402,I001  (registers "bilstm")

__all__ = ["STUDENTS", "STUDENT_CONFIG", "STUDENT_MARKER", "STUDENT_WEIGHTS", "BiLSTMStudent", "Student",
           "StudentContext", "StudentOutput", "build_student", "is_student_dir", "load_student", "register_student",
           "run_folder_hint", "student_class"]
