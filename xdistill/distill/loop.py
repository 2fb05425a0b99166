"""The training loop: a schedule of unfreezing steps with early stopping, checkpoints and resume.

:class:`Distiller` runs :class:`~xdistill.distill.stages.Step` s on a
:class:`~xdistill.distill.matches.Trainee`. Each step trains the step's groups with Adam on
its stage's data source in length-bucketed, shuffled batches; the loss of a batch is the sum
of the stage's weighted match losses (teacher targets come from the source's
:class:`~xdistill.transfer.targets.Targets`: the cache, or a live teacher). Validation on the
split held out of train (never the evaluation split) picks the best state of each step:
the task metric, or minus the stage's loss on the validation rows.

After every step the trainee, every random state and the progress are checkpointed
(``student-K.pt`` after K steps, and ``progress.json`` naming it with its size and SHA-256; the
state at the end of each stage also as ``stage-NAME.pt``). ``resume`` verifies the checkpoint,
skips the finished steps and restores the random states, so that a run killed anywhere and
resumed ends exactly as an uninterrupted one: a step that was cut off trains again from its
start, and the order of its batches depends only on the seed, the step and the epoch. Plugins
(:mod:`xdistill.distill.hooks`) extend the loop without editing it.

Under ``accelerate launch``/``torchrun`` (:mod:`xdistill.parallel`) the loop is data parallel: the
ranks start from the main process's weights, each computes the loss on its part of every global
batch and the gradients are summed over the ranks before the (identical) optimizer steps;
validation is sharded and gathered, so every rank takes the same early-stopping decisions; the
main process writes the checkpoints, which hold every rank's random state.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..adapters import TaskAdapter
from ..config import DistillArguments
from ..data.batching import bucket_batches
from ..data.types import Encoded
from .. import parallel
from ..transfer import Targets
from ..errors import ConfigError
from ..utils import atomic_torch_save, atomic_write_json, capture_rng, digest_problem, file_digest, restore_rng
from .hooks import DistillPlugin
from .matches import Trainee
from .stages import Stage, Step
from .optim import adam, step_schedule

logger = logging.getLogger(__name__)

PROGRESS = "progress.json"
#: seconds of training without a log line after which a step says where it is
HEARTBEAT_S = 60.0
#: the layout of a checkpoint ``student-K.pt``: ``{"format", "trainee", "rng", "step"}``
CHECKPOINT_FORMAT = 2


@dataclass
class DataSource:
    """Rows a stage trains or validates on, the teacher targets for them (``None`` for gold data
    only) and, optionally, the rows one training epoch visits: ``(M,)`` indices into ``encoded``,
    repeats allowed (temperature-based sampling over languages); ``None``: every row once."""

    encoded: Encoded
    targets: Targets | None = None
    epoch_rows: np.ndarray | None = None

    def epoch_batches(self, batch_size: int, seed: int) -> list[np.ndarray]:
        """One epoch's training batches of row indices, length-bucketed and shuffled (seeded)."""
        if self.epoch_rows is None:
            return bucket_batches(self.encoded.lengths, batch_size=batch_size, shuffle=True, seed=seed)
        batches = bucket_batches(self.encoded.lengths[self.epoch_rows], batch_size=batch_size, shuffle=True, seed=seed)
        return [self.epoch_rows[b] for b in batches]


@dataclass
class DistillData:
    """What a schedule trains and validates on.

    Attributes:
        sources: data sources by name (``transfer``, ``labeled``, ...), as stages name them.
        validation: the validation rows (held out of train), with teacher targets for stages
            selected by their loss.
        validation_gold: gold labels of the validation examples (for the task metric).
        pad_id: the tokenizer's padding id.
    """

    sources: dict[str, DataSource]
    validation: DataSource
    validation_gold: list
    pad_id: int


@dataclass
class StepResult:
    """What one unfreezing step did: epochs run, optimizer updates, the best validation score
    (``metric`` names it), wall seconds and the validation history."""

    step: str
    epochs: float
    updates: int
    best_score: float
    metric: str
    seconds: float
    history: list = field(default_factory=list)


def sharded_predictions(student, adapter: TaskAdapter, encoded: Encoded, pad_id: int) -> list:
    """The adapter's predictions (one per example) of ``student`` on ``encoded``; in a multi-process
    run each rank decodes a contiguous shard of the examples (about equal words) and the shards are
    gathered in order, so every rank holds all predictions."""
    n_examples = len(encoded.n_words)
    start, end = parallel.shard_range(encoded.n_words)
    part = encoded if (start, end) == (0, n_examples) else encoded.subset_examples(range(start, end))
    preds = adapter.decode(student.logits(adapter.level, part, pad_id), part) if end > start else []
    return [p for shard in parallel.all_gather(preds) for p in shard]


class Distiller:
    """Runs a schedule of steps on a trainee (see the module docstring).

    Args:
        trainee: the student and its distillation heads.
        adapter: the task adapter (collation, masks, decoding, the validation metric).
        args: the distillation options (batch size, learning rate, patience, checks per epoch).
        data: the sources, the validation rows and their gold labels (:class:`DistillData`).
        checkpoint_dir: where ``student-K.pt``, ``stage-NAME.pt`` and ``progress.json`` go.
        seed: seeds the batch order.
        name: the name in logs.
        plugins: loop plugins (:class:`~xdistill.distill.hooks.DistillPlugin`).
    """

    def __init__(self, trainee: Trainee, adapter: TaskAdapter, args: DistillArguments, data: DistillData,
                 checkpoint_dir: Path, seed: int, name: str = "student", plugins: Sequence[DistillPlugin] = ()):
        self.trainee = trainee
        self.adapter = adapter
        self.args = args
        self.data = data
        self.dir = Path(checkpoint_dir)
        self.seed = seed
        self.name = name
        self.plugins = list(plugins)

    @property
    def student(self):
        return self.trainee.student

    @property
    def sources(self) -> dict[str, DataSource]:
        return self.data.sources

    @property
    def pad_id(self) -> int:
        return self.data.pad_id

    @property
    def device(self) -> torch.device:
        return next(self.trainee.parameters()).device

    # -- losses -------------------------------------------------------------------------------
    def stage_loss(self, stage: Stage, source: DataSource, rows: Sequence[int]) -> torch.Tensor:
        """The stage's loss on ``rows`` of ``source``: the sum of its matches' weighted losses.

        Raises:
            ValueError: the stage needs teacher targets and the source has none.
        """
        return self._loss_and_batch(stage, source, rows)[0]

    def _loss_and_batch(self, stage: Stage, source: DataSource,
                        rows: Sequence[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        dev = self.device
        b = {k: v.to(dev) for k, v in self.adapter.collate(source.encoded, rows, self.pad_id).items()}
        out = self.trainee(b["input_ids"], b["attention_mask"], stage.student_features)
        keys = [f.key for f in stage.teacher_features]
        targets, mask = {}, None
        if keys:
            if source.targets is None:
                raise ValueError(f"stage {stage.name}: its data has no teacher targets")
            targets = source.targets.batch(rows, b, keys)
            mask = self.adapter.level.distill_mask(b["attention_mask"])
        total = None
        for m in stage.matches:
            target = targets[m.target] if m.from_teacher else b["labels"]
            # relational features (attention maps, queries/keys/values) relate every real position
            m_mask = b["attention_mask"] if m.student_feature.relational else mask
            value = m.loss_value(self.trainee.student_output(out, m), target, m_mask)
            total = value if total is None else total + value
        return total, b

    def _backward(self, step: Step, source: DataSource, rows: Sequence[int],
                  params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
        """Gradients of the stage's loss on a global batch ``rows`` in ``params``; returns this process's loss.

        In a multi-process run (:mod:`xdistill.parallel`) each rank computes the loss on its part of
        the batch, scaled by that part's share of the batch, and the gradients are summed over the
        ranks: the gradient of the batch's mean loss, as one process computes it.
        """
        local = parallel.local_rows(rows)
        loss = torch.zeros(())
        if local:
            loss, batch = self._loss_and_batch(step.stage, source, local)
            for p in self.plugins:
                loss = p.batch_loss(self, step, batch, local, loss)
            (loss * (len(local) / len(rows))).backward()
        parallel.all_reduce_gradients(params)
        return loss

    # -- validation ---------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, stage: Stage) -> tuple[float, str]:
        """Score on the validation split, higher is better: minus the stage's loss (``select_by
        = "loss"``) or the task metric (e.g. entity F1)."""
        v = self.data.validation
        if stage.select_by == "loss":
            self.trainee.eval()
            start, end = parallel.shard_range(v.encoded.lengths)  # each rank its shard of the rows
            total, n = 0.0, 0
            for rows in bucket_batches(v.encoded.lengths[start:end], batch_size=256):
                total += float(self.stage_loss(stage, v, rows + start)) * len(rows)
                n += len(rows)
            total, n = parallel.all_reduce_sum([total, n])
            self.trainee.train()
            return -total / max(n, 1), f"neg_{stage.name}_loss"
        k = self.adapter.primary_metric
        preds = sharded_predictions(self.student, self.adapter, v.encoded, self.pad_id)
        return float(self.adapter.score(preds, self.data.validation_gold)[k]), k

    # -- one step -------------------------------------------------------------------------------
    def _trainable(self, step: Step) -> list[torch.nn.Parameter]:
        groups = dict(self.trainee.stage_groups(step.stage.matches))
        unknown = [g for g in step.trainable if g not in groups]
        if unknown:
            raise ValueError(f"step {step.name}: unknown groups {unknown}; the stage has {list(groups)}")
        return [p for g in step.trainable for p in groups[g]]

    def train_step(self, step: Step, max_epochs: int) -> StepResult:
        """Train one step until early stopping; the trainee ends in the step's best state.

        Raises:
            ValueError: the stage's data source is missing or empty.
        """
        stage = step.stage
        source = self.sources.get(stage.data)
        if source is None or len(source.encoded) == 0:
            raise ValueError(f"stage {stage.name}: no {stage.data} rows")
        params = self._trainable(step)
        self.trainee.set_trainable(params)
        opt = adam(params, lr=self.args.lr)
        for p in self.plugins:
            p.on_step_start(self, step, opt)
        checks_per_epoch = stage.checks_per_epoch or self.args.evals_per_epoch
        best, metric = self.validate(stage)
        best_state = copy.deepcopy(self.trainee.state_dict())
        bad, updates, epochs_done, history = 0, 0, 0.0, [{"epoch": 0.0, "score": best}]
        t0 = last_log = time.perf_counter()
        self.trainee.train()
        stop = False
        for epoch in range(max_epochs):
            batches = source.epoch_batches(self.args.batch_size, self.seed * 1000 + epoch + 17 * step.index)
            if epoch == 0:
                schedule = step_schedule(opt, self.args.lr_schedule, max_epochs * len(batches))
            check_at = set(int(round(len(batches) * (k + 1) / checks_per_epoch)) - 1 for k in range(checks_per_epoch))
            for bi, rows in enumerate(batches):
                opt.zero_grad(set_to_none=True)
                loss = self._backward(step, source, rows, params)
                torch.nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                schedule.step()
                updates += 1
                for p in self.plugins:
                    p.after_update(self, step, updates)
                if time.perf_counter() - last_log >= HEARTBEAT_S and bi not in check_at:
                    logger.info("%s %s epoch %d: batch %d of %d, loss %.4f", self.name, step.name, epoch + 1, bi + 1,
                                len(batches), float(loss.detach()))
                    last_log = time.perf_counter()
                if bi in check_at:
                    score, metric = self.validate(stage)
                    epochs_done = epoch + (bi + 1) / len(batches)
                    history.append({"epoch": round(epochs_done, 3), "score": score, "loss": float(loss.detach())})
                    if score > best + 1e-6:
                        best, bad = score, 0
                        best_state = copy.deepcopy(self.trainee.state_dict())
                    else:
                        bad += 1
                    for p in self.plugins:
                        p.after_validation(self, step, score, best)
                    logger.info("%s %s epoch %.2f: validation %s %.4f (best %.4f)", self.name, step.name,
                                epochs_done, metric, score, best)
                    last_log = time.perf_counter()
                    if bad >= self.args.patience:
                        stop = True
                        break
            if stop:
                break
        self.trainee.load_state_dict(best_state)
        return StepResult(step=step.name, epochs=round(epochs_done, 3), updates=updates, best_score=best,
                          metric=metric, seconds=time.perf_counter() - t0, history=history)

    # -- the schedule -----------------------------------------------------------------------------
    def _save_checkpoint(self, names: list[str], done: list[dict], stage_ends: bool, stage: str,
                         rngs: list[dict]) -> None:
        """The trainee's weights and every random state after the last finished step, in a file of
        its own (``student-K.pt`` after K steps; ``stage-STAGE.pt`` too when a stage ends); then
        ``progress.json``, which names it with its size and SHA-256, replaces the old one atomically;
        then the previous step's file goes. A kill anywhere leaves a progress file whose checkpoint
        is complete. ``rngs`` are the random states of every process, in rank order."""
        name = f"student-{len(done):02d}.pt"
        checkpoint = {"format": CHECKPOINT_FORMAT, "trainee": self.trainee.state_dict(), "rng": rngs[0],
                      "step": done[-1]["step"], "plugins": [p.state_dict() for p in self.plugins]}
        if len(rngs) > 1:
            checkpoint["rng_ranks"] = rngs
        atomic_torch_save(checkpoint, self.dir / name)
        if stage_ends:
            atomic_torch_save(checkpoint, self.dir / f"stage-{stage}.pt")
        atomic_write_json(self.dir / PROGRESS, {"steps": names, "done": done,
                                                "checkpoint": {"file": name, **file_digest(self.dir / name)}})
        for old in self.dir.glob("student-*.pt"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def _resume(self, names: list[str]) -> list[dict]:
        """The finished steps of an interrupted run of the same schedule, with the trainee's weights and
        the random states restored to where the last of them ended (so the next step trains exactly as
        it would have without the interruption); ``[]`` when there is nothing to resume.

        Raises:
            ConfigError: the checkpoint is truncated or corrupted (its size or SHA-256 differs from
                the one recorded when it was written), or from an older version of xdistill.
        """
        prog = json.loads((self.dir / PROGRESS).read_text())
        if prog.get("steps") != names:
            logger.warning("%s: checkpoint in %s is for another schedule; starting over", self.name, self.dir)
            return []
        done = prog["done"]
        if not done:
            return []
        recorded = prog.get("checkpoint")
        path = self.dir / (recorded["file"] if recorded else "student.pt")
        problem = "it has no recorded checksum (an older xdistill wrote it)" if recorded is None \
            else digest_problem(path, recorded)
        if problem is not None:
            raise ConfigError(f"--resume: the checkpoint {path} cannot be used: {problem}. Remove {self.dir} to "
                              f"retrain this student from its first step, or run without --resume")
        checkpoint = torch.load(path, map_location=self.device, weights_only=False)
        try:
            self.trainee.load_state_dict(checkpoint["trainee"])
        except RuntimeError as err:  # another student shape or other matches than this run's
            raise ConfigError(f"--resume: the checkpoint {path} does not fit this run's student and distillation "
                              f"signals ({str(err).splitlines()[-1].strip()}). Remove {self.dir} to retrain this "
                              f"student from its first step, or run without --resume") from None
        for plugin, state in zip(self.plugins, checkpoint.get("plugins") or []):
            if state is not None:
                plugin.load_state_dict(state)
        ranks = checkpoint.get("rng_ranks") or [checkpoint["rng"]]
        if len(ranks) != parallel.world_size():
            logger.warning("%s: the checkpoint was written by %d processes, this run has %d: every process restarts "
                           "from the main process's random state", self.name, len(ranks), parallel.world_size())
        restore_rng(ranks[parallel.rank()] if len(ranks) == parallel.world_size() else checkpoint["rng"])
        logger.info("%s: resuming after %s (%d of %d steps done)", self.name, done[-1]["step"], len(done), len(names))
        return done

    def run(self, steps: Sequence[Step], max_epochs: int, resume: bool = False) -> list[dict]:
        """Run ``steps`` in order; checkpoint after each; with ``resume`` skip the finished ones and go
        on exactly where the last of them ended. Returns each step's :class:`StepResult` as a dict.

        Raises:
            ConfigError: ``resume`` with a truncated or corrupted checkpoint.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        names = [s.name for s in steps]
        done = self._resume(names) if resume and (self.dir / PROGRESS).is_file() else []
        parallel.broadcast_parameters(self.trainee)  # every process starts from the main process's weights
        todo = list(steps[len(done):])
        for p in self.plugins:
            p.on_run_start(self, todo)
        for i, step in enumerate(steps):
            if i < len(done):
                continue
            logger.info("%s: step %s, training %s", self.name, step.name, "+".join(step.trainable))
            res = self.train_step(step, max_epochs)
            done.append(asdict(res))
            stage_ends = i == len(steps) - 1 or steps[i + 1].stage.name != step.stage.name
            rngs = parallel.all_gather(capture_rng())
            parallel.main_does(lambda: self._save_checkpoint(names, done, stage_ends, step.stage.name, rngs),
                               f"saved {self.name}'s checkpoint in {self.dir}")
            for p in self.plugins:
                p.on_step_end(self, step, res)
        return done
