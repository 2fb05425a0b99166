"""Distillation: losses registered by name (:mod:`~xdistill.distill.losses`), matches between
teacher and student features (:mod:`~xdistill.distill.matches`), stages and the schedule
(:mod:`~xdistill.distill.stages`), and the training loop with hooks
(:mod:`~xdistill.distill.loop`, :mod:`~xdistill.distill.hooks`)."""

from .hooks import DistillPlugin, StepCallback
from .losses import LOSSES, get_loss, register_loss
from . import attention_losses  # noqa: F401,I001  (registers attention_mse, attention_kl, relation_kl)
from .loop import DataSource, DistillData, Distiller, StepResult
from .matches import PROJECTIONS, Match, Trainee
from .stages import (STAGES, Stage, StageContext, Step, build_stages, check_stage_names, distill_schedule, layer_map,
                     make_schedule, register_stage)

__all__ = ["DataSource", "DistillData", "DistillPlugin", "Distiller", "LOSSES", "Match", "PROJECTIONS", "STAGES", "Stage", "StageContext", "Step",
           "StepCallback", "StepResult", "Trainee", "build_stages", "check_stage_names", "distill_schedule", "layer_map", "get_loss", "make_schedule", "register_loss",
           "register_stage"]
