"""Teachers: :class:`~xdistill.teachers.base.Teacher` (a task model and its tokenizer, returning
named features), building one (:mod:`~xdistill.teachers.build`: tokenizer, scratch architectures,
checkpoints), fine-tuning it (:mod:`~xdistill.teachers.finetune`) and the reference model each
teacher family is compared with (:mod:`~xdistill.teachers.references`).

Serving imports this package; it must not import the fine-tuning module, which is training code.
"""

from .base import TEACHER_META, Teacher, TeacherInfo, usable_positions, weights_fingerprint
from .references import REFERENCE_MODELS, ReferenceModel, get_reference, reference_for

__all__ = ["REFERENCE_MODELS", "TEACHER_META", "ReferenceModel", "Teacher", "TeacherInfo", "get_reference",
           "reference_for", "usable_positions", "weights_fingerprint"]
