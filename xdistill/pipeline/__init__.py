"""The distillation run (``python -m xdistill ner``/``classify``): its phases (:mod:`~xdistill.pipeline.run`)
and its output folder (:mod:`~xdistill.pipeline.folder`: the lock, the record of the settings a resume
must match)."""

from .folder import RunFolder
from .run import check_settings, check_single_process, compute_device, run, student_dir, transfer_sets

__all__ = ["RunFolder", "check_settings", "check_single_process", "compute_device", "run", "student_dir", "transfer_sets"]
