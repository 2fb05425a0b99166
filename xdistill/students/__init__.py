"""Students: the BiLSTM of XtremeDistil; later kinds plug in through :class:`~xdistill.students.base.Student`."""

from .base import STUDENT_KINDS, Student, StudentOutput, is_student_dir, load_student
from .bilstm import BiLSTMStudent, prune_vocabulary, svd_embeddings

__all__ = ["STUDENT_KINDS", "Student", "StudentOutput", "BiLSTMStudent", "is_student_dir", "load_student",
           "prune_vocabulary", "svd_embeddings"]
