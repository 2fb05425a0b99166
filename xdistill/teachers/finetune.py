"""Preparing the teacher for a run: reuse the one saved in ``OUTPUT/teacher``, load a checkpoint,
or build one from scratch (:mod:`xdistill.teachers.build`), then fine-tune it.

Fine-tuning uses ``transformers.Trainer`` with length-grouped batches, early stopping and
model selection on the validation split (held out of train). The result is saved with
``save_pretrained`` next to ``xdistill_teacher.json`` (what the report says about it and the
key of the settings it was made with, so a later run with the same settings reuses it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from .. import parallel
from ..adapters import TaskAdapter
from ..config import TeacherArguments
from ..data.types import Encoded
from ..errors import ConfigError
from ..utils import count_parameters
from .base import (TEACHER_META, Teacher, TeacherInfo, check_vocabulary, describe_teacher, vocabulary_kind,
                   weights_fingerprint)
from .build import (build_scratch, check_not_fine_tuned, load_checkpoint, load_pretrained_encoder,
                    scratch_config)
from .cooccurrence import init_word_embeddings
from .mlm import MLMPretrainer, MLMText
from .references import reference_for
from .self_training import agreement, label_shares, labeled_positions, pseudo_labeled
from .training import load_verified_meta, pin_memory, quiet, resume_checkpoint, save_verified

logger = logging.getLogger(__name__)


class _EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, enc: Encoded, adapter: TaskAdapter):
        self.enc = enc
        self.adapter = adapter

    def __len__(self):
        return len(self.enc)

    def __getitem__(self, i):
        return self.adapter.level.trainer_example(self.enc, i)


class TeacherTrainer:
    """Prepares the teacher for a run: reuse a saved one, load a checkpoint, or fine-tune.

    Args:
        adapter: the task adapter (label set, output level, validation metric).
        targs: the teacher options.
        out_dir: the run's output folder (``teacher/`` and ``checkpoints/teacher/`` go there).
        seed: seed of the scratch initialisation and of the ``Trainer``.
        setup: what the teacher's training depends on; its hash decides whether a saved teacher is reused.
        pruned_from: size of the vocabulary the scratch teacher's was pruned from (``--teacher-vocab
            pruned``; 0: not pruned), for the teacher's description.
    """

    def __init__(self, adapter: TaskAdapter, targs: TeacherArguments, out_dir: Path, seed: int, setup: dict,
                 pruned_from: int = 0):
        self.adapter = adapter
        self.pruned_from = pruned_from
        self.targs = targs
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.setup_key = hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.mlm_report: dict | None = None
        self.embeddings_report: dict | None = None
        self.self_training_report: list[dict] | None = None

    @property
    def saved_dir(self) -> Path:
        return self.out_dir / "teacher"

    def _load_saved(self, tokenizer) -> Teacher | None:
        meta = load_verified_meta(self.saved_dir, TEACHER_META, "setup_key", self.setup_key, "the saved teacher",
                                  "train or load the teacher again")
        if meta is None:
            return None
        model = self.adapter.level.auto_model_class.from_pretrained(self.saved_dir)
        info = TeacherInfo.from_dict(meta["info"])
        info.reused = True
        logger.info("reusing the teacher saved in %s (%s)", self.saved_dir,
                    "trained from scratch" if info.trained_from_scratch else info.source)
        return Teacher(model, tokenizer, info, task=meta.get("task"))

    def _build(self, tokenizer, text: MLMText | None = None, resume: bool = False):
        """The initial model and whether it still needs fine-tuning. With ``text`` and ``--teacher-mlm``,
        built on the encoder pretrained on that text (its report in :attr:`mlm_report`); with
        ``--teacher-embeddings ppmi``, a scratch model whose word embeddings are the text's PPMI-SVD
        vectors (:mod:`xdistill.teachers.cooccurrence`; its report in :attr:`embeddings_report`)."""
        self.mlm_report = self.embeddings_report = None
        labels = list(self.adapter.labels)
        auto = self.adapter.level.auto_model_class
        mlm = text if self.targs.mlm_enabled else None
        if mlm is not None:
            if not self.targs.from_scratch:
                check_not_fine_tuned(self.targs.teacher, labels)
            report = MLMPretrainer(self.targs, self.out_dir, self.seed).run(
                mlm, tokenizer, resume, lambda: scratch_config(self.targs, tokenizer, labels))
            self.mlm_report = asdict(report)
            return load_pretrained_encoder(report.path, auto, labels, self.seed), True
        if self.targs.from_scratch:
            model = build_scratch(self.targs, tokenizer, auto, labels, self.seed)
            if self.targs.ppmi_embeddings:
                if text is None:
                    raise ValueError("--teacher-embeddings ppmi: the --mlm-text rows were not given to the teacher")
                try:
                    report = init_word_embeddings(model, text.input_ids, tokenizer.all_special_ids, self.seed)
                except ValueError as e:
                    raise ConfigError(f"--teacher-embeddings ppmi on --mlm-text {self.targs.mlm_text}: {e}") from None
                report.sources = dict(text.sources)
                self.embeddings_report = report.as_dict()
            return model, True
        if self.targs.teacher_embeddings != "random":
            logger.info("--teacher-embeddings %s applies to a scratch teacher; the checkpoint %s keeps its own",
                        self.targs.teacher_embeddings, self.targs.teacher)
        return load_checkpoint(self.targs.teacher, auto, labels)

    def prepare(self, tokenizer, train: Encoded, validation: Encoded, resume: bool, labeled_desc: str,
                text: MLMText | None = None, pool: Encoded | None = None) -> Teacher:
        """The teacher ready to label the transfer set, saved in ``OUTPUT/teacher``; with ``text`` (the
        ``--mlm-text`` rows), its encoder is first pretrained on that text (``--teacher-mlm``,
        :mod:`xdistill.teachers.mlm`) or its word embeddings computed from it (``--teacher-embeddings``);
        with ``--teacher-self-training N``, ``N`` rounds of self-training on ``pool`` (the transfer rows,
        :mod:`xdistill.teachers.self_training`) follow its fine-tuning.

        Raises:
            ConfigError: the checkpoint cannot be loaded, has other labels, or (with ``mlm``) is
                already fine-tuned or has no MLM architecture.
            ValueError: ``--teacher-self-training`` without a ``pool``.
        """
        saved = self._load_saved(tokenizer)
        if saved is not None:
            return saved
        t0 = time.perf_counter()
        model, needs_training = self._build(tokenizer, text, resume)
        mlm_report = self.mlm_report
        check_vocabulary(model, tokenizer, self.targs.teacher or "scratch")
        best = None
        if needs_training:
            rounds = self.targs.teacher_self_training
            if rounds and pool is None:
                raise ValueError("--teacher-self-training: no transfer rows were given to the teacher")
            # every round starts where the first fine-tuning did (no second PPMI-SVD or MLM pass)
            initial = copy.deepcopy(model) if rounds else None
            best = self._fine_tune(model, tokenizer, train, validation, resume)
            if rounds:
                model, best = self._self_train(model, best, tokenizer, train, validation, resume, initial, pool)
        cfg = model.config
        ref = reference_for(cfg.model_type)
        source = self.targs.teacher or "scratch"
        info = TeacherInfo(
            source=source, trained_from_scratch=self.targs.from_scratch,
            fine_tuned_here=needs_training, architecture=type(model).__name__, parameters=count_parameters(model),
            hidden_size=int(getattr(cfg, "hidden_size", 0)), num_layers=int(getattr(cfg, "num_hidden_layers", 0)),
            path=str(self.saved_dir), fingerprint=weights_fingerprint(model),
            labeled_data=labeled_desc if needs_training else "none here (checkpoint used as is)",
            best_validation_score=best, family=cfg.model_type, reference=ref.key,
            vocabulary=vocabulary_kind(tokenizer), vocab_size=len(tokenizer),
            description=describe_teacher(cfg.model_type, self.targs.from_scratch, source, len(tokenizer), ref,
                                         mlm=mlm_report is not None, pruned_from=self.pruned_from,
                                         ppmi=self.embeddings_report is not None),
            mlm=mlm_report, embeddings=self.embeddings_report, self_training=self.self_training_report,
            minutes=round((time.perf_counter() - t0) / 60, 2) if needs_training else None)
        task = {"task": self.adapter.spec.name, "task_file": self.adapter.spec.path}
        parallel.main_does(lambda: save_verified(model, tokenizer, self.saved_dir, TEACHER_META,
                                                 {"setup_key": self.setup_key, "info": asdict(info), "task": task}),
                           f"saved the teacher in {self.saved_dir}")
        return Teacher(model, tokenizer, info, task=task)

    def _self_train(self, model, best: float | None, tokenizer, train: Encoded, validation: Encoded, resume: bool,
                    initial, pool: Encoded):
        """``--teacher-self-training`` rounds after the first fine-tuning: each round's teacher labels
        ``pool`` and a new one, a copy of ``initial`` (the model before the first fine-tuning), is
        fine-tuned on ``train`` and those rows; returns the last round's model and best validation score. Each finished round
        is saved in ``checkpoints/teacher-roundK`` so that ``--resume`` continues from it exactly."""
        names = list(self.adapter.labels)
        rounds, previous = [], None
        for k in range(1, self.targs.teacher_self_training + 1):
            t0 = time.perf_counter()
            silver = pseudo_labeled(model, self.adapter.level, pool, tokenizer.pad_token_id,
                                    self.targs.label_tokens_per_batch, self.targs.teacher_self_training_confidence)
            if not len(silver):
                logger.warning("teacher self-training round %d: no pseudo label of the %d transfer rows reaches "
                               "--teacher-self-training-confidence %s; the round trains on the labeled rows alone",
                               k, len(pool), self.targs.teacher_self_training_confidence)
            done = self.out_dir / "checkpoints" / f"teacher-round{k}"
            meta = load_verified_meta(done, TEACHER_META, "setup_key", self.setup_key, f"self-training round {k}",
                                      "run again without --resume") if resume else None
            if meta is not None:
                model = self.adapter.level.auto_model_class.from_pretrained(done)
                best = meta["best"]
                logger.info("teacher self-training round %d: reusing %s", k, done)
            else:
                model = copy.deepcopy(initial)
                best = self._fine_tune(model, tokenizer, Encoded.concat([train, silver]), validation, resume,
                                       f"teacher-self{k}")
                parallel.main_does(lambda: save_verified(model, tokenizer, done, TEACHER_META,
                                                         {"setup_key": self.setup_key, "best": best}),
                                   f"saved self-training round {k} in {done}")
            rounds.append({"round": k, "pseudo_labeled_rows": len(silver), "labeled_rows": len(train),
                           "pseudo_labels": labeled_positions(silver), "pool_rows": len(pool),
                           "pseudo_label_shares": label_shares(silver, names),
                           "agreement_with_previous_round": None if previous is None or len(previous) != len(silver)
                           else agreement(previous, silver),
                           "best_validation_score": best, "minutes": round((time.perf_counter() - t0) / 60, 2)})
            logger.info("teacher self-training round %d: %d pseudo-labeled rows, best validation %s", k, len(silver),
                        best)
            previous = silver
        self.self_training_report = rounds
        return model, best

    def _fine_tune(self, model, tokenizer, train: Encoded, validation: Encoded, resume: bool,
                   name: str = "teacher") -> float | None:
        """Fine-tune with ``transformers.Trainer`` (validation and a checkpoint per epoch or every
        ``--teacher-eval-steps`` steps, early stopping after 2 checks without improvement, the best
        checkpoint kept, in ``checkpoints/NAME``); with ``resume``, from the latest complete checkpoint.
        Returns the best validation score.

        Raises:
            ConfigError: ``resume`` with a corrupted checkpoint.
        """
        t = self.targs
        ckpt_dir = self.out_dir / "checkpoints" / name
        strategy = "steps" if t.teacher_eval_steps else "epoch"
        precision = parallel.mixed_precision()
        args = TrainingArguments(
            output_dir=str(ckpt_dir), num_train_epochs=t.teacher_epochs, learning_rate=t.teacher_lr,
            # DDP over the run's processes keeps the global batch at --teacher-batch-size
            per_device_train_batch_size=t.teacher_batch_size // parallel.world_size(), per_device_eval_batch_size=64,
            use_cpu=not torch.cuda.is_available(),
            # mixed precision from accelerate's launch config, on GPUs only (float32 on CPUs)
            bf16=precision == "bf16", fp16=precision == "fp16",
            ddp_find_unused_parameters=False if t.from_scratch else None,  # scratch teachers use every parameter
            warmup_steps=0.1, weight_decay=0.01, optim="adamw_torch_fused",
            eval_strategy=strategy, save_strategy=strategy,
            eval_steps=t.teacher_eval_steps or None, save_steps=t.teacher_eval_steps or None,
            load_best_model_at_end=True, metric_for_best_model=self.adapter.primary_metric, greater_is_better=True,
            save_total_limit=2, train_sampling_strategy="group_by_length", logging_steps=50,
            label_smoothing_factor=t.teacher_label_smoothing,
            report_to=[], seed=self.seed, dataloader_num_workers=0, disable_tqdm=True,
            dataloader_pin_memory=pin_memory(),
        )
        adapter = self.adapter

        def compute_metrics(p):
            return adapter.trainer_metrics(p.predictions, p.label_ids)

        trainer = quiet(Trainer(
            model=model, args=args, train_dataset=_EncodedDataset(train, adapter), eval_dataset=_EncodedDataset(validation, adapter),
            data_collator=adapter.level.trainer_collator(tokenizer), compute_metrics=compute_metrics,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=2)],
        ), name)
        start = resume_checkpoint(ckpt_dir) if resume else None
        if start is not None:
            logger.info("%s: resuming fine-tuning from %s", name, start)
        trainer.train(resume_from_checkpoint=str(start) if start is not None else None)
        best = trainer.state.best_metric
        logger.info("%s fine-tuned: best validation %s %.2f", name, adapter.primary_metric, best if best is not None else float("nan"))
        return None if best is None else float(best)
