"""The staged distillation schedule (XtremeDistil, Mukherjee & Hassan Awadallah 2020, Algorithm 1).

Stages, in order:

1. ``representation``: representation loss (MSE, or KL) between the student's
   projected states GELU(W h + b) and the teacher's layer-l hidden states, on
   the transfer set;
2. ``logits``: MSE (or temperature KL) between student and teacher logits on
   the transfer set;
3. ``labeled``: cross-entropy on the labeled data.

Within each stage, gradual unfreezing: the student's layer groups are
unfrozen from the top down, one step each, and every step trains until early
stopping on the validation split (held out of train): stage 1 on the
representation loss of the validation rows, stages 2 and 3 on the task metric.
The best state of each step is kept. After every step the student and the
progress are checkpointed (``student.pt``, ``progress.json``; the state at the
end of each stage also as ``stage-NAME.pt``); ``resume`` skips finished steps. Teacher outputs
come from the cache (:mod:`xdistill.cache`), never from the teacher.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import losses
from .adapters.base import Encoded, TaskAdapter
from .batching import bucket_batches
from .cache import TeacherOutputs
from .config import DistillArguments
from .students.base import Student
from .utils import atomic_torch_save, atomic_write_json

logger = logging.getLogger(__name__)

STAGE_DATA = {"representation": "transfer", "logits": "transfer", "labeled": "labeled"}


@dataclass(frozen=True)
class Step:
    """One unfreezing step: train ``trainable`` groups of the student in ``stage``."""

    stage: str
    index: int
    trainable: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.stage}:{self.index}"


def make_schedule(student: Student, stages: list[str], gradual: bool) -> list[Step]:
    """The steps of Algorithm 1: per stage, top group first, then one more group per step."""
    steps = []
    for stage in stages:
        groups = student.unfreeze_groups(stage)
        if gradual:
            steps.extend(Step(stage, k, tuple(groups[:k])) for k in range(1, len(groups) + 1))
        else:
            steps.append(Step(stage, 1, tuple(groups)))
    return steps


@dataclass
class DistillData:
    """What the schedule trains and validates on.

    ``transfer``/``transfer_teacher``: transfer-set rows and their cached teacher
    outputs; ``labeled``: the student's labeled rows; ``validation``: validation
    rows with ``validation_teacher`` outputs and ``validation_gold`` labels.
    """

    transfer: Encoded | None
    transfer_teacher: TeacherOutputs | None
    labeled: Encoded
    validation: Encoded
    validation_teacher: TeacherOutputs | None
    validation_gold: list


@dataclass
class StepResult:
    step: str
    epochs: float
    updates: int
    best_score: float
    metric: str
    seconds: float
    history: list = field(default_factory=list)


@torch.no_grad()
def student_logits(student: Student, adapter: TaskAdapter, encoded: Encoded, pad_id: int,
                   batch_size: int = 256) -> list[np.ndarray]:
    """Per-row student logits (``(T_i, C)`` or ``(C,)``), in row order."""
    was = student.training
    student.eval()
    out: list = [None] * len(encoded)
    lengths = encoded.lengths
    device = next(student.parameters()).device
    for rows in bucket_batches(lengths, batch_size=batch_size):
        b = adapter.collate(encoded, rows, pad_id)
        lg = student.inference_logits(b["input_ids"].to(device), b["attention_mask"].to(device)).cpu()
        for r, x in zip(rows, adapter.row_logits(lg, [int(lengths[r]) for r in rows])):
            out[r] = x
    student.train(was)
    return out


class Distiller:
    """Runs a schedule of :class:`Step` on a student, with early stopping, checkpoints and resume."""

    def __init__(self, student: Student, adapter: TaskAdapter, args: DistillArguments, data: DistillData,
                 checkpoint_dir: Path, pad_id: int, seed: int, name: str = "student"):
        self.student = student
        self.adapter = adapter
        self.args = args
        self.data = data
        self.dir = Path(checkpoint_dir)
        self.pad_id = pad_id
        self.seed = seed
        self.name = name

    # -- losses -------------------------------------------------------------------------------
    def _loss(self, stage: str, encoded: Encoded, teacher: TeacherOutputs | None, rows) -> torch.Tensor:
        dev = next(self.student.parameters()).device
        b = {k: v.to(dev) for k, v in self.adapter.collate(encoded, rows, self.pad_id).items()}
        out = self.student(b["input_ids"], b["attention_mask"])
        if stage == "labeled":
            return losses.cross_entropy_loss(out.logits, b["labels"])
        mask = self.adapter.distill_mask(b["attention_mask"])
        t_logits, t_hidden = (t.to(dev) for t in self.adapter.teacher_batch(teacher, rows, b["input_ids"].size(1)))
        if stage == "representation":
            return losses.representation_loss(out.projected, t_hidden, mask, kind=self.args.representation_loss,
                                               temperature=self.args.temperature)
        return losses.logits_loss(out.logits, t_logits, mask, kind=self.args.logits_loss,
                                  temperature=self.args.temperature)

    # -- validation ---------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, stage: str) -> tuple[float, str]:
        """Score on the validation split, higher is better: minus the representation loss for
        stage 1, the task metric (e.g. entity F1) otherwise."""
        d = self.data
        if stage == "representation":
            self.student.eval()
            total, n = 0.0, 0
            for rows in bucket_batches(d.validation.lengths, batch_size=256):
                total += float(self._loss(stage, d.validation, d.validation_teacher, rows)) * len(rows)
                n += len(rows)
            self.student.train()
            return -total / max(n, 1), "neg_representation_loss"
        preds = self.adapter.decode(student_logits(self.student, self.adapter, d.validation, self.pad_id), d.validation)
        return float(self.adapter.score(preds, d.validation_gold)[self.adapter.primary_metric]), self.adapter.primary_metric

    # -- one step -------------------------------------------------------------------------------
    def train_step(self, step: Step, max_epochs: int) -> StepResult:
        d = self.data
        source = STAGE_DATA[step.stage]
        encoded, teacher = (d.transfer, d.transfer_teacher) if source == "transfer" else (d.labeled, None)
        if encoded is None or len(encoded) == 0:
            raise ValueError(f"stage {step.stage}: no {source} rows")
        params = self.student.set_trainable(list(step.trainable))
        opt = torch.optim.Adam(params, lr=self.args.lr)
        checks_per_epoch = self.args.evals_per_epoch if source == "transfer" else 1
        best, metric = self.validate(step.stage)
        best_state = copy.deepcopy(self.student.state_dict())
        bad, updates, epochs_done, history = 0, 0, 0.0, [{"epoch": 0.0, "score": best}]
        t0 = time.perf_counter()
        self.student.train()
        stop = False
        for epoch in range(max_epochs):
            batches = bucket_batches(encoded.lengths, batch_size=self.args.batch_size, shuffle=True,
                                     seed=self.seed * 1000 + epoch + 17 * step.index)
            check_at = set(int(round(len(batches) * (k + 1) / checks_per_epoch)) - 1 for k in range(checks_per_epoch))
            for bi, rows in enumerate(batches):
                loss = self._loss(step.stage, encoded, teacher, rows)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                updates += 1
                if bi in check_at:
                    score, metric = self.validate(step.stage)
                    epochs_done = epoch + (bi + 1) / len(batches)
                    history.append({"epoch": round(epochs_done, 3), "score": score, "loss": float(loss.detach())})
                    if score > best + 1e-6:
                        best, bad = score, 0
                        best_state = copy.deepcopy(self.student.state_dict())
                    else:
                        bad += 1
                    logger.info("%s %s epoch %.2f: validation %s %.4f (best %.4f)", self.name, step.name,
                                epochs_done, metric, score, best)
                    if bad >= self.args.patience:
                        stop = True
                        break
            if stop:
                break
        self.student.load_state_dict(best_state)
        return StepResult(step=step.name, epochs=round(epochs_done, 3), updates=updates, best_score=best,
                          metric=metric, seconds=time.perf_counter() - t0, history=history)

    # -- the schedule -----------------------------------------------------------------------------
    def run(self, steps: list[Step], max_epochs: int, resume: bool = False,
            on_step: Callable[[StepResult], None] | None = None) -> list[dict]:
        """Run ``steps`` in order; checkpoint after each; with ``resume`` skip finished ones."""
        self.dir.mkdir(parents=True, exist_ok=True)
        progress_path = self.dir / "progress.json"
        done: list[dict] = []
        if resume and progress_path.is_file():
            prog = json.loads(progress_path.read_text())
            if prog.get("steps") == [s.name for s in steps]:
                done = prog["done"]
                if done:
                    state = torch.load(self.dir / "student.pt", map_location=next(self.student.parameters()).device)
                    self.student.load_state_dict(state)
                    logger.info("%s: resuming after %s (%d of %d steps done)", self.name, done[-1]["step"], len(done), len(steps))
            else:
                logger.warning("%s: checkpoint in %s is for another schedule; starting over", self.name, self.dir)
        for step in steps[len(done):]:
            logger.info("%s: step %s, training %s", self.name, step.name, "+".join(step.trainable))
            res = self.train_step(step, max_epochs)
            done.append(asdict(res))
            atomic_torch_save(self.student.state_dict(), self.dir / "student.pt")
            if step is steps[-1] or steps[steps.index(step) + 1].stage != step.stage:
                atomic_torch_save(self.student.state_dict(), self.dir / f"stage-{step.stage}.pt")
            atomic_write_json(progress_path, {"steps": [s.name for s in steps], "done": done})
            if on_step:
                on_step(res)
        return done
