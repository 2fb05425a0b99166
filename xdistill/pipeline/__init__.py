"""The distillation run (``python -m xdistill ner``/``classify``): its phases (:mod:`~xdistill.pipeline.run`;
zero-shot distillation's in :mod:`~xdistill.pipeline.zero_shot`), how it was launched
(:mod:`~xdistill.pipeline.launch`: one process or several) and its output folder (:mod:`~xdistill.pipeline.folder`: the lock, the record of the settings a resume
must match)."""

from .folder import RunFolder
from .launch import check_launch, compute_device
from .run import check_settings, run, student_dir, transfer_sets
from .zero_shot import run_zero_shot

__all__ = ["RunFolder", "check_launch", "check_settings", "compute_device", "run", "run_zero_shot", "student_dir",
           "transfer_sets"]
