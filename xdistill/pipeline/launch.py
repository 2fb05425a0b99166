"""How a run was launched: one process (``python -m xdistill``) or several (``accelerate launch``,
``torchrun``), and what a multi-process run supports (:mod:`xdistill.parallel`).

A multi-process run is data parallel in every phase it supports: the teacher's fine-tuning
(``transformers.Trainer``'s own DDP, the global batch kept at ``--teacher-batch-size``), the
teacher's labeling (one cache shard per process), distillation and the baselines (each rank
takes its part of every global batch of ``--batch-size``; gradients summed over the ranks),
validation and evaluation (sharded, gathered). Only the main process writes shared files.
"""

from __future__ import annotations

import logging
import os

import torch

from .. import parallel
from ..config import RunSettings
from ..errors import ConfigError

logger = logging.getLogger(__name__)


def compute_device() -> torch.device:
    """The device ``accelerate`` picks for this process (its GPU when there is one, else the CPU)."""
    return parallel.state().device


def unsupported_in_parallel(settings: RunSettings, sources: list[str]) -> list[str]:
    """The options of ``settings`` that a multi-process run does not support yet (they write shared
    files from one process only: the generator and its samples, the MLM encoder, the zero-shot loop)."""
    out = []
    if settings.zero_shot.enabled:
        out.append("--zero-shot")
    if settings.teacher.mlm_enabled:
        out.append("--teacher-mlm")
    if "generated" in sources:
        out.append("--augment generate (the transfer sets generated and both)")
    return out


def check_launch(settings: RunSettings, sources: list[str]) -> int:
    """Check how the run was launched; returns the number of processes.

    Raises:
        ConfigError: ``ACCELERATE_MIXED_PRECISION`` is not one accelerate's ``no``/``fp16``/``bf16``;
            several processes were launched but the process group did not form, the
            options need one process (:func:`unsupported_in_parallel`), or ``--teacher-batch-size``
            cannot be split evenly over the processes.
    """
    requested = parallel.requested_mixed_precision()  # an unknown value fails here, not hours later
    if requested != parallel.mixed_precision():
        logger.info("accelerate's mixed precision %s applies on GPUs only: this CPU run uses float32", requested)
    launched = parallel.launched_processes()
    if launched == 1:
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true":
            logger.info("accelerate launch --cpu starts one process; for N processes on CPUs use accelerate launch "
                        "--multi_gpu --num_processes N (gloo) or torchrun --nproc_per_node N")
        return 1
    n = parallel.world_size()
    if n != launched:
        raise ConfigError(f"{launched} processes were launched (WORLD_SIZE) but accelerate formed a group of {n}; "
                          "launch with accelerate launch --multi_gpu --num_processes N or torchrun --nproc_per_node N")
    bad = unsupported_in_parallel(settings, sources)
    if bad:
        raise ConfigError(f"{n} processes were launched: {'; '.join(bad)} runs in one process only for now; launch it "
                          "with python -m xdistill, or leave the option out (classify: --augment none "
                          "--transfer unlabeled)")
    if settings.teacher.teacher_batch_size % n:
        raise ConfigError(f"--teacher-batch-size {settings.teacher.teacher_batch_size}: must be a multiple of the "
                          f"{n} processes (each fine-tunes the teacher on an equal part of every batch)")
    return n
