"""The distillation run (``python -m xdistill ner``/``classify``): its phases (:mod:`~xdistill.pipeline.run`;
zero-shot distillation's in :mod:`~xdistill.pipeline.zero_shot`) and its output folder (:mod:`~xdistill.pipeline.folder`: the lock, the record of the settings a resume
must match)."""

from .folder import RunFolder
from .run import check_settings, check_single_process, compute_device, run, student_dir, transfer_sets
from .zero_shot import run_zero_shot

__all__ = ["RunFolder", "check_settings", "check_single_process", "compute_device", "run", "run_zero_shot", "student_dir",
           "transfer_sets"]
