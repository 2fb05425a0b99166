"""Masked-language-model pretraining of the teacher on the task's own text, before fine-tuning.

XtremeDistil's recipe (Mukherjee & Hassan Awadallah 2020, sec. 4; MSR-LIT/XtremeDistil ``distil_ner``)
continues the teacher's masked-language-model pretraining on the unlabeled task text before it is
fine-tuned: domain-adaptive pretraining (Gururangan et al. 2020, "Don't Stop Pretraining", sec. 3).
For a teacher trained from scratch it is the only pretraining it gets; for a hub checkpoint
(``AutoModelForMaskedLM``) it is continued pretraining.

* **Text** (:func:`encode_mlm_text`): whitespace words of each text, windows of at most
  ``max_length`` subword tokens (longer texts become several windows).
* **Masking** (:class:`WholeWordMaskCollator`): dynamic (new masks every time a row is drawn),
  whole-word (Devlin et al. 2019, the BERT repository's whole-word-masking models): a word is chosen
  with probability ``p`` and every one of its subwords is masked (``transformers``'
  ``DataCollatorForLanguageModeling(whole_word_mask=True)``); of the masked positions 80% become
  ``[MASK]``, 10% a random token and 10% stay (Devlin et al. 2019, sec. 3.1).
* **Loss** (:class:`MaskedPositionsTrainer`): cross-entropy over the vocabulary at masked positions
  only; the output layer is applied to those ``(M, D)`` hidden states, not to all ``(B, T, D)``
  (with mBERT's 119,547-token vocabulary it would cost more than the encoder).
* **Budget**: a number of optimizer steps (linear decay after a 6% warm-up) or of minutes (constant
  after a 300-step warm-up; stopped at the first step past the budget, elapsed time kept across
  resumes; not reproducible across machines: use steps for that).
* Length-bucketed batches, checkpoints (verified, resumable), and the result saved with
  ``save_pretrained`` in ``OUTPUT/teacher-mlm`` with its head, the tokenizer and
  ``xdistill_mlm.json`` (what it saw, for how long, the loss curves, and the key of its inputs: a
  later run with the same inputs reuses it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from transformers import (AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainerCallback,
                          TrainingArguments)
from transformers.trainer_callback import ExportableState
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from ..config import TeacherArguments
from ..data.types import Ragged, RaggedBuilder
from ..errors import ConfigError
from .training import load_verified_meta, pin_memory, quiet, resume_checkpoint, save_verified

logger = logging.getLogger(__name__)

MLM_META = "xdistill_mlm.json"
#: warm-up steps under a budget in minutes (the number of steps is not known in advance)
MINUTES_WARMUP_STEPS = 300
#: the module of a ``...ForMaskedLM`` model that maps ``(..., D)`` hidden states to ``(..., V)`` logits
MLM_HEADS = {"bert": "cls", "roberta": "lm_head", "xlm-roberta": "lm_head", "camembert": "lm_head"}


@dataclass
class MLMText:
    """Rows for masked-language-model pretraining.

    ``input_ids[i]``: the row's token ids with the tokenizer's special tokens; ``word_ids[i]``: per
    position the index of the whitespace word it belongs to in its text (``-1`` for special tokens).
    Both are :class:`~xdistill.data.types.Ragged` (int32, about 8 bytes a token for the two; lists
    given to the constructor are converted). ``sources``: texts per source name (``transfer``,
    ``labeled``, a file path).
    """

    input_ids: Ragged
    word_ids: Ragged
    texts: int = 0
    words: int = 0
    sources: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.input_ids = Ragged.from_rows(self.input_ids)
        self.word_ids = Ragged.from_rows(self.word_ids)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def tokens(self) -> int:
        """Real tokens over all rows, special tokens included."""
        return int(self.input_ids.lengths.sum())

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of every row's ids and word ids (as int64)."""
        h = hashlib.sha256()
        for ids, wid in zip(self.input_ids.iter_arrays(), self.word_ids.iter_arrays()):
            h.update(ids.astype(np.int64).tobytes())
            h.update(wid.astype(np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()[:16]

    def split(self, held_out: int, seed: int) -> tuple["MLMText", "MLMText"]:
        """``(train, held_out)``: ``held_out`` rows drawn with ``seed`` are kept out of training (the
        held-out MLM loss is measured on them)."""
        order = np.random.default_rng(seed).permutation(len(self))
        out_rows, in_rows = np.sort(order[:held_out]), np.sort(order[held_out:])
        return (MLMText(self.input_ids.take(in_rows), self.word_ids.take(in_rows)),
                MLMText(self.input_ids.take(out_rows), self.word_ids.take(out_rows)))


def encode_mlm_text(texts: Sequence[str], tokenizer, max_length: int, chunk: int = 1000) -> MLMText:
    """Each text's whitespace words tokenized (``is_split_into_words``), cut into windows of at most
    ``max_length`` tokens (special tokens included) with the tokenizer's overflow; texts without
    words are skipped. The texts are split and tokenized ``chunk`` at a time, so only one chunk's
    words and ids are ever Python objects.

    Raises:
        ConfigError: the tokenizer is not a fast (Rust) tokenizer, which ``word_ids()`` needs.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("--teacher-mlm: whole-word masking needs a fast tokenizer (tokenizer.json or a WordPiece "
                          f"vocab.txt); {type(tokenizer).__name__} is not one")
    ids, word_ids = RaggedBuilder(), RaggedBuilder()
    n_texts = n_words = 0
    for start in range(0, len(texts), chunk):
        words = [w for w in (t.split() for t in texts[start:start + chunk]) if w]
        if not words:
            continue
        n_texts += len(words)
        n_words += sum(len(w) for w in words)
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length,
                        return_overflowing_tokens=True, stride=0)
        for i, row in enumerate(enc["input_ids"]):
            ids.append(row)
            word_ids.append([-1 if w is None else w for w in enc.word_ids(i)])
    return MLMText(ids.build(), word_ids.build(), texts=n_texts, words=n_words)


class WholeWordMaskCollator:
    """Pads rows of :class:`MLMText` and masks them with ``transformers``'
    ``DataCollatorForLanguageModeling(whole_word_mask=True)``: a word is chosen with probability
    ``mlm_probability`` and all its subwords are masked (80% ``[MASK]``, 10% random, 10% kept).

    The library finds words from offsets; each row's word ids are given to it as offsets
    ``(k, k + 1)`` for the ``k``-th subword of a word, so a word starts exactly where the task's word does.

    The masks of a batch are drawn from a generator seeded with ``seed``, the epoch (:attr:`epoch`, set
    by :class:`MaskEpoch`) and the batch's row keys: new masks every epoch (dynamic masking), the same
    after a resume as in the uninterrupted run, and fixed masks for held-out rows (negative keys), so
    held-out losses at different steps are comparable.

    Returns ``input_ids``, ``attention_mask`` and ``labels`` (``(B, T)`` int64; ``labels`` is
    ``-100`` where nothing is predicted).
    """

    def __init__(self, tokenizer, mlm_probability: float, seed: int = 0):
        self.tokenizer = tokenizer
        self.seed = seed
        self.epoch = 0
        # transformers' whole-word masking replaces every chosen position with [MASK]; the 10% random
        # and 10% kept of BERT (Devlin et al. 2019, sec. 3.1) are applied after it (:meth:`_replace`).
        self.masker = DataCollatorForLanguageModeling(tokenizer, mlm=True, whole_word_mask=True,
                                                      mlm_probability=mlm_probability, mask_replace_prob=1.0,
                                                      random_replace_prob=0.0)
        self.special_ids = torch.as_tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def _generator(self, keys: list[int]) -> torch.Generator:
        held_out = bool(keys) and keys[0] < 0
        entropy = [self.seed, 0 if held_out else self.epoch + 1, *(abs(k) for k in keys)]
        state = np.random.SeedSequence(entropy).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def _replace(self, masked: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Of the masked positions, 10% get a random non-special token and 10% their own token back."""
        chosen = labels != -100
        u = torch.rand(labels.shape, generator=g)
        keep = chosen & (u < 0.1)
        rand = chosen & (u >= 0.1) & (u < 0.2)
        masked[keep] = labels[keep]
        random_ids = torch.randint(len(self.tokenizer), labels.shape, generator=g)
        random_ids[torch.isin(random_ids, self.special_ids)] = self.tokenizer.mask_token_id
        masked[rand] = random_ids[rand]
        return masked

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        n, t = len(examples), max(len(e["input_ids"]) for e in examples)
        ids = torch.full((n, t), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, t), dtype=torch.long)
        special = torch.ones((n, t), dtype=torch.long)
        offsets = torch.zeros((n, t, 2), dtype=torch.long)
        for i, e in enumerate(examples):
            row, wid = e["input_ids"], e["word_ids"]
            ids[i, :len(row)] = torch.as_tensor(row)
            attention[i, :len(row)] = 1
            k, prev = 0, None
            for j, w in enumerate(wid):
                if w < 0:
                    prev = None
                    continue
                k = k + 1 if w == prev else 0
                special[i, j] = 0
                offsets[i, j, 0], offsets[i, j, 1] = k, k + 1
                prev = w
        g = self._generator([int(e.get("key", 0)) for e in examples])
        self.masker.generator = g
        masked, labels = self.masker.torch_mask_tokens(ids, special_tokens_mask=special, offset_mapping=offsets)
        return {"input_ids": self._replace(masked, labels, g), "attention_mask": attention, "labels": labels}


class MaskEpoch(TrainerCallback):
    """Tells the collator and the sampler which epoch the Trainer is in (new masks and order each epoch)."""

    def __init__(self, collator: WholeWordMaskCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kw):
        self.collator.epoch = int(state.epoch or 0)
        sampler = getattr(getattr(train_dataloader, "batch_sampler", None), "sampler", None)
        if isinstance(sampler, EpochSeededLengthSampler):
            sampler.set_epoch(self.collator.epoch)


class _RowsDataset(torch.utils.data.Dataset):
    """Rows with their key for the masks: the row index, or ``-1 - index`` for held-out rows (fixed masks)."""

    def __init__(self, text: MLMText, held_out: bool = False):
        self.text = text
        self.held_out = held_out

    def __len__(self):
        return len(self.text)

    def __getitem__(self, i):
        return {"input_ids": self.text.input_ids[i], "word_ids": self.text.word_ids[i],
                "key": -1 - i if self.held_out else i}


def mlm_head(model) -> torch.nn.Module | None:
    """The output head of a ``...ForMaskedLM`` model (:data:`MLM_HEADS`), or ``None`` when unknown."""
    name = MLM_HEADS.get(getattr(model.config, "model_type", ""))
    return getattr(model, name, None) if name else None


def masked_lm_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    """Mean cross-entropy at masked positions.

    Args:
        hidden: ``(B, T, D)`` encoder output.
        labels: ``(B, T)`` the original token id at masked positions, ``-100`` elsewhere.
        head: maps ``(M, D)`` to ``(M, V)`` logits; applied to the ``M`` masked positions only.
    Returns:
        A scalar (0 with a gradient when nothing is masked).
    """
    sel = labels != -100
    if not bool(sel.any()):
        return hidden.sum() * 0.0
    logits = head(hidden[sel])
    return torch.nn.functional.cross_entropy(logits.float(), labels[sel])


class EpochSeededLengthSampler(LengthGroupedSampler):
    """Length-grouped batches (``transformers``' ``LengthGroupedSampler``) in an order drawn from
    ``seed`` and the epoch alone, so that a resumed run sees the batches of the uninterrupted one."""

    def __init__(self, batch_size: int, dataset, seed: int):
        super().__init__(batch_size, dataset=dataset)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))


class MaskedPositionsTrainer(Trainer):
    """A ``Trainer`` whose loss is :func:`masked_lm_loss` (the head on masked positions only) for the
    model types of :data:`MLM_HEADS` (other models compute their own loss from ``labels``), with
    length-grouped batches in an order fixed by seed and epoch (:class:`EpochSeededLengthSampler`)."""

    def _get_train_sampler(self, train_dataset=None):
        return EpochSeededLengthSampler(self.args.train_batch_size, train_dataset or self.train_dataset, self.args.seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inner = getattr(model, "module", model)
        head = mlm_head(inner)
        if head is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        encoder = getattr(inner, inner.base_model_prefix)
        hidden = encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        loss = masked_lm_loss(hidden, labels, head)
        return (loss, {"loss": loss}) if return_outputs else loss


class MinutesBudget(TrainerCallback, ExportableState):
    """Stops training at the first step after ``minutes`` of training time; the time spent is saved in
    each checkpoint's trainer state, so a resumed run counts what the interrupted one used."""

    def __init__(self, minutes: float, elapsed: float = 0.0):
        self.minutes = minutes
        self.elapsed = elapsed
        self._since = None

    def on_step_begin(self, args, state, control, **kw):
        if self._since is None:
            self._since = time.monotonic()

    def on_step_end(self, args, state, control, **kw):
        now = time.monotonic()
        self.elapsed += now - (self._since or now)
        self._since = now
        if self.elapsed >= 60.0 * self.minutes:
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = True

    def state(self) -> dict:
        return {"args": {"minutes": self.minutes}, "attributes": {"elapsed": self.elapsed}}


@dataclass
class MLMReport:
    """What the report says about masked-language-model pretraining: the model it started from, the
    text it saw, the budget and what was used (steps, epochs, minutes), the masking, and the loss
    curves (mean cross-entropy in nats per masked token, on training batches and on held-out rows)."""

    started_from: str
    sources: dict[str, int]
    texts: int
    words: int
    rows: int
    tokens: int
    held_out_rows: int
    budget: str
    steps: int
    epochs: float
    minutes: float
    masking: str
    train_loss: list = field(default_factory=list)
    held_out_loss: list = field(default_factory=list)
    path: str = ""

    @property
    def final_held_out_loss(self) -> float | None:
        """The last held-out loss, or ``None``."""
        return self.held_out_loss[-1][1] if self.held_out_loss else None


def _build_mlm_model(targs: TeacherArguments, scratch_config: Callable[[], object] | None, seed: int):
    """The model to pretrain: from the scratch configuration, or the ``--teacher`` checkpoint.

    Raises:
        ConfigError: the checkpoint has no masked-language-model architecture.
    """
    torch.manual_seed(seed)
    if targs.from_scratch:
        return AutoModelForMaskedLM.from_config(scratch_config())
    try:
        return AutoModelForMaskedLM.from_pretrained(targs.teacher)
    except (ValueError, OSError, KeyError) as e:
        raise ConfigError(f"--teacher-mlm: the teacher {targs.teacher} cannot be loaded as a masked language model "
                          f"(AutoModelForMaskedLM): {e}; expected a checkpoint of an encoder family with an MLM head "
                          "(BERT, XLM-R, DistilBERT, ...), or --teacher-mlm off") from None


class MLMPretrainer:
    """Runs (or reuses) the teacher's masked-language-model pretraining.

    Args:
        targs: the teacher options (``--teacher-mlm`` and the ``--mlm-*`` options).
        out_dir: the run's output folder (``teacher-mlm/`` and ``checkpoints/teacher-mlm/`` go there).
        seed: seed of the initialisation, of the held-out rows and of the Trainer.
        name: the folder of the result (``OUTPUT/NAME``) and of its checkpoints (``OUTPUT/checkpoints/NAME``);
            ``teacher-mlm`` for the teacher, ``generator-mlm`` for zero-shot's adversarial generator.
        start_fingerprint: a hash of the checkpoint's weights (``--teacher``), part of the key, so that a
            checkpoint trained again at the same path is not mistaken for the old one ("": the path alone).
    """

    def __init__(self, targs: TeacherArguments, out_dir: Path, seed: int, name: str = "teacher-mlm",
                 start_fingerprint: str = ""):
        self.targs = targs
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.name = name
        self.start_fingerprint = start_fingerprint

    @property
    def saved_dir(self) -> Path:
        return self.out_dir / self.name

    def key(self, text: MLMText, tokenizer) -> str:
        """What the pretrained model depends on: the teacher's architecture options, the MLM options,
        the text and the vocabulary size."""
        t = self.targs
        opts = {k: v for k, v in asdict(t).items() if k.startswith(("teacher", "mlm", "tokenizer")) and k not in
                ("teacher_epochs", "teacher_lr", "teacher_batch_size", "teacher_eval_steps", "teacher_layer",
                 "teacher_label_smoothing", "teacher_label_all_tokens")}
        inputs = {"opts": opts, "text": text.fingerprint(), "vocab": len(tokenizer), "seed": self.seed}
        if self.start_fingerprint:
            inputs["start"] = self.start_fingerprint
        blob = json.dumps(inputs, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def _load_saved(self, key: str) -> MLMReport | None:
        meta = load_verified_meta(self.saved_dir, MLM_META, "key", key, "the teacher's masked language model",
                                  "pretrain it again")
        if meta is None:
            return None
        logger.info("%s: reusing the model pretrained in %s", self.name, self.saved_dir)
        return MLMReport(**meta["report"])

    def run(self, text: MLMText, tokenizer, resume: bool, scratch_config: Callable[[], object] | None) -> MLMReport:
        """Pretrain (or reuse) and save the MLM model in ``OUTPUT/teacher-mlm``; returns its report.

        Args:
            text: the rows to pretrain on (a held-out part is split off for the held-out loss).
            tokenizer: the teacher's tokenizer (saved with the model).
            resume: continue from the latest checkpoint in ``OUTPUT/checkpoints/teacher-mlm``.
            scratch_config: builds the scratch teacher's configuration (``None`` for a checkpoint teacher).
        Raises:
            ConfigError: no rows, a checkpoint without an MLM architecture, or a damaged checkpoint.
        """
        if len(text) < 2:
            raise ConfigError(f"--mlm-text {self.targs.mlm_text}: {len(text)} rows of text to pretrain on; expected "
                              "at least 2 (check the sources it names)")
        key = self.key(text, tokenizer)
        saved = self._load_saved(key)
        if saved is not None:
            return saved
        model = _build_mlm_model(self.targs, scratch_config, self.seed)
        held = min(1000, max(1, len(text) // 50))
        train, held_out = text.split(held, self.seed)
        collator = WholeWordMaskCollator(tokenizer, self.targs.mlm_probability, self.seed)
        budget = MinutesBudget(self.targs.mlm_budget[1]) if self.targs.mlm_budget[1] else None
        trainer = quiet(MaskedPositionsTrainer(
            model=model, args=self._training_args(), train_dataset=_RowsDataset(train),
            eval_dataset=_RowsDataset(held_out, held_out=True), data_collator=collator,
            callbacks=[MaskEpoch(collator)] + ([budget] if budget else [])), self.name)
        ckpt = resume_checkpoint(self.out_dir / "checkpoints" / self.name) if resume else None
        if ckpt is not None:
            logger.info("%s: resuming from %s", self.name, ckpt)
        logger.info("%s: pretraining %s on %d rows (%d tokens; %d held out), budget %s", self.name,
                    self.targs.teacher or "from scratch", len(train), train.tokens, len(held_out), self.targs.teacher_mlm)
        t0 = time.perf_counter()
        out = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
        if not any(e.get("step") == trainer.state.global_step and "eval_loss" in e for e in trainer.state.log_history):
            trainer.evaluate()
        minutes = (budget.elapsed / 60.0) if budget else (time.perf_counter() - t0) / 60.0
        report = MLMReport(
            started_from=self.targs.teacher or "scratch (random initialisation)", sources=dict(text.sources),
            texts=text.texts, words=text.words, rows=len(train), tokens=train.tokens, held_out_rows=len(held_out),
            budget=self.targs.teacher_mlm, steps=trainer.state.global_step, epochs=round(float(trainer.state.epoch or 0), 3),
            minutes=round(minutes, 2), masking=f"whole-word, {self.targs.mlm_probability:.0%} of words, dynamic, "
                                               "80% [MASK] / 10% random / 10% kept",
            train_loss=_history(trainer.state.log_history, "loss"), held_out_loss=_history(trainer.state.log_history, "eval_loss"),
            path=str(self.saved_dir))
        logger.info("%s: %d steps (%.2f epochs, %.1f min); training loss %.3f; held-out loss %.3f "
                    "(perplexity %.1f)", self.name, report.steps, report.epochs, report.minutes, out.training_loss,
                    report.final_held_out_loss, math.exp(min(report.final_held_out_loss, 50.0)))
        self._save(trainer.model, tokenizer, key, report)
        return report

    def _training_args(self) -> TrainingArguments:
        t = self.targs
        steps, minutes = t.mlm_budget
        return TrainingArguments(
            output_dir=str(self.out_dir / "checkpoints" / self.name), max_steps=steps or -1,
            num_train_epochs=1000.0 if minutes else 1.0, learning_rate=t.mlm_lr,
            lr_scheduler_type="constant_with_warmup" if minutes else "linear",
            warmup_steps=MINUTES_WARMUP_STEPS if minutes else 0.06,
            per_device_train_batch_size=t.mlm_batch_size, per_device_eval_batch_size=64, weight_decay=0.01,
            optim="adamw_torch_fused", eval_strategy="steps", save_strategy="steps", eval_steps=t.mlm_eval_steps,
            save_steps=t.mlm_eval_steps, save_total_limit=1, train_sampling_strategy="group_by_length",
            logging_steps=min(50, t.mlm_eval_steps), report_to=[], seed=self.seed, dataloader_num_workers=0, disable_tqdm=True,
            dataloader_pin_memory=pin_memory(), remove_unused_columns=False, prediction_loss_only=True,
            restore_callback_states_from_checkpoint=True)

    def _save(self, model, tokenizer, key: str, report: MLMReport) -> None:
        save_verified(model, tokenizer, self.saved_dir, MLM_META, {"key": key, "report": asdict(report)})


def _history(log_history: list[dict], key: str) -> list[list]:
    """``[step, value]`` of ``key`` in the Trainer's log history, one per step (the last), as JSON keeps them."""
    by_step = {int(e["step"]): round(float(e[key]), 4) for e in log_history if key in e and "step" in e}
    return [[k, v] for k, v in sorted(by_step.items())]
