"""Hooks into the distillation loop (the pattern of flair's trainer plugins).

A :class:`DistillPlugin` overrides the hooks it needs; the loop
(:class:`xdistill.distill.loop.Distiller`) calls every plugin's hook at these points, so that
a later method (adversarial examples, a live teacher, extra logging) extends training without
editing the loop:

=====================  ====================================================================
hook                   when, and what it may do
=====================  ====================================================================
``on_run_start``       before the first step that still has to run
``on_step_start``      before an unfreezing step trains (after its optimizer exists)
``batch_loss``         after a training batch's loss is computed: return it, or it plus more
                       terms (e.g. a loss on perturbed inputs)
``after_update``       after each optimizer step (e.g. a generator's own update)
``after_validation``   after each validation check, with the score and the best so far
``on_step_end``        after a step, with its :class:`~xdistill.distill.loop.StepResult`
``state_dict``         when a step's checkpoint is written: the plugin's own state (e.g. a
                       generator and its optimizer), restored by ``load_state_dict`` on resume
=====================  ====================================================================
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

if TYPE_CHECKING:  # only for annotations: the loop imports this module
    from .loop import Distiller, StepResult
    from .stages import Step


class DistillPlugin:
    """Base class of loop plugins; every hook does nothing by default."""

    def on_run_start(self, distiller: "Distiller", steps: Sequence["Step"]) -> None:
        """Before the first step that still has to run (resumed steps are skipped)."""

    def on_step_start(self, distiller: "Distiller", step: "Step", optimizer: torch.optim.Optimizer) -> None:
        """Before ``step`` trains."""

    def batch_loss(self, distiller: "Distiller", step: "Step", batch: dict[str, torch.Tensor], rows: Sequence[int],
                   loss: torch.Tensor) -> torch.Tensor:
        """The loss to minimise for this batch (``loss`` unchanged by default)."""
        return loss

    def after_update(self, distiller: "Distiller", step: "Step", update: int) -> None:
        """After optimizer update number ``update`` (1-based within the step)."""

    def after_validation(self, distiller: "Distiller", step: "Step", score: float, best: float) -> None:
        """After a validation check."""

    def on_step_end(self, distiller: "Distiller", step: "Step", result: "StepResult") -> None:
        """After ``step`` finished and was checkpointed."""

    def state_dict(self) -> dict | None:
        """What the plugin must carry across an interruption (saved in each step's checkpoint, given back
        to :meth:`load_state_dict` on ``--resume``); ``None``: nothing."""
        return None

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


class StepCallback(DistillPlugin):
    """Calls ``fn(result)`` after every step (a plugin for a plain function)."""

    def __init__(self, fn):
        self.fn = fn

    def on_step_end(self, distiller, step, result):
        self.fn(result)
