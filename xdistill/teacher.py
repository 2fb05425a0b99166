"""The teacher: load a checkpoint (hub id or local path) or train a small BERT from scratch, then fine-tune.

* A checkpoint whose ``id2label`` is the task's label set is already fine-tuned
  and is used as is (labels in another order are permuted in the classifier).
* A checkpoint with default labels (``LABEL_0``...) is a pretrained encoder: it
  gets a fresh head and is fine-tuned with first-subword label alignment.
* A checkpoint fine-tuned on a *different* label set is an error.
* No checkpoint: a BERT of the configured size with the mBERT WordPiece
  vocabulary is trained from scratch on the teacher's labeled data. It is never
  called mBERT: the log and the report say "trained from scratch".

Fine-tuning uses ``transformers.Trainer`` with length-grouped batches, early
stopping and model selection on the validation split (held out of train).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .adapters.base import Encoded, TaskAdapter
from .config import DataArguments, TeacherArguments
from .errors import ConfigError
from .utils import atomic_write_json, count_parameters

logger = logging.getLogger(__name__)

TEACHER_META = "xdistill_teacher.json"
DEFAULT_LABEL_PREFIX = "LABEL_"


@dataclass
class TeacherInfo:
    """What the report says about the teacher."""

    source: str                 # hub id, local path, or "scratch"
    trained_from_scratch: bool
    fine_tuned_here: bool
    architecture: str
    parameters: int
    hidden_size: int
    num_layers: int
    path: str                   # where the fine-tuned teacher is saved
    fingerprint: str            # hash of the weights: keys the teacher-output cache
    labeled_data: str = ""
    best_validation_score: float | None = None


def load_tokenizer(targs: TeacherArguments, dargs: DataArguments):
    """The teacher's tokenizer: the checkpoint's, or mBERT's WordPiece vocabulary for a scratch teacher.

    Raises:
        ConfigError: no tokenizer could be found (names where it looked).
    """
    import inspect

    from transformers import AutoTokenizer, BertTokenizerFast

    name = targs.tokenizer or targs.teacher
    if name is None:
        if not dargs.data_dir:
            raise ConfigError("--tokenizer: a scratch teacher needs a tokenizer (a folder with vocab.txt or a hub id), "
                              "or --data-dir with tokenizers/bert-base-multilingual-cased/vocab.txt")
        name = str(Path(dargs.data_dir) / "tokenizers" / "bert-base-multilingual-cased")
    p = Path(name)
    if p.is_dir() and (p / "vocab.txt").is_file() and not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        # A bare WordPiece vocabulary (as in ../shared/data/tokenizers): mBERT-cased settings.
        vocab_arg = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
        tok = BertTokenizerFast(**{vocab_arg: str(p / "vocab.txt")}, do_lower_case=False, strip_accents=False,
                                tokenize_chinese_chars=True)
        if len(tok) < 10:
            raise ConfigError(f"--tokenizer {p}: vocab.txt gave a vocabulary of {len(tok)} tokens")
        return tok
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise ConfigError(f"--tokenizer/--teacher: could not load a tokenizer from {name!r}: {e}") from e


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) over the model's parameter names, shapes and values."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _is_default_labels(id2label: dict) -> bool:
    return all(str(v).startswith(DEFAULT_LABEL_PREFIX) for v in id2label.values())


class _EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, enc: Encoded, adapter: TaskAdapter):
        self.enc = enc
        self.adapter = adapter

    def __len__(self):
        return len(self.enc)

    def __getitem__(self, i):
        return self.adapter.trainer_example(self.enc, i)


def _permute_classifier(model, order: list[int]) -> None:
    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        raise ConfigError("--teacher: checkpoint labels are in another order and its head is not a `classifier` Linear layer to permute")
    with torch.no_grad():
        head.weight.copy_(head.weight[order])
        head.bias.copy_(head.bias[order])


class TeacherTrainer:
    """Prepares the teacher for a run: reuse a saved one, load a checkpoint, or fine-tune."""

    def __init__(self, adapter: TaskAdapter, targs: TeacherArguments, out_dir: Path, seed: int, setup: dict):
        self.adapter = adapter
        self.targs = targs
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.setup_key = hashlib.sha256(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def saved_dir(self) -> Path:
        return self.out_dir / "teacher"

    def _load_saved(self):
        meta_path = self.saved_dir / TEACHER_META
        if not meta_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("setup_key") != self.setup_key:
            logger.info("saved teacher in %s was made with other settings; not reused", self.saved_dir)
            return None
        model = self.adapter.auto_model_class.from_pretrained(self.saved_dir)
        info = TeacherInfo(**meta["info"])
        logger.info("reusing the teacher saved in %s (%s)", self.saved_dir,
                    "trained from scratch" if info.trained_from_scratch else info.source)
        return model, info

    def _build(self, tokenizer):
        """The initial model and whether it still needs fine-tuning."""
        from transformers import AutoConfig, BertConfig

        labels = list(self.adapter.labels)
        id2label = dict(enumerate(labels))
        label2id = {v: k for k, v in id2label.items()}
        auto = self.adapter.auto_model_class
        if self.targs.from_scratch:
            t = self.targs
            cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=t.teacher_hidden_size, num_hidden_layers=t.teacher_layers,
                             num_attention_heads=t.teacher_heads, intermediate_size=t.teacher_intermediate_size,
                             max_position_embeddings=512, id2label=id2label, label2id=label2id)
            torch.manual_seed(self.seed)
            logger.info("teacher: BERT trained from scratch (%d layers, hidden %d, mBERT vocabulary of %d); not mBERT",
                        t.teacher_layers, t.teacher_hidden_size, len(tokenizer))
            return auto.from_config(cfg), True
        name = self.targs.teacher
        try:
            cfg = AutoConfig.from_pretrained(name)
        except Exception as e:
            raise ConfigError(f"--teacher: could not load {name!r} (hub id or local directory): {e}") from e
        ckpt_labels = {int(k): v for k, v in (cfg.id2label or {}).items()}
        if ckpt_labels and not _is_default_labels(ckpt_labels):
            if set(ckpt_labels.values()) != set(labels) or len(ckpt_labels) != len(labels):
                raise ConfigError(
                    f"--teacher {name}: checkpoint labels {sorted(ckpt_labels.values())} differ from the task's "
                    f"{labels}; expected a checkpoint fine-tuned on the same label set, or a base checkpoint")
            model = auto.from_pretrained(name)
            order = [label2id_ckpt for label2id_ckpt in (
                {v: k for k, v in ckpt_labels.items()}[lab] for lab in labels)]
            if order != list(range(len(labels))):
                _permute_classifier(model, order)
                model.config.id2label, model.config.label2id = id2label, label2id
            logger.info("teacher: %s is already fine-tuned on this label set; used as is", name)
            return model, False
        model = auto.from_pretrained(name, num_labels=len(labels), id2label=id2label, label2id=label2id,
                                     ignore_mismatched_sizes=True)
        logger.info("teacher: fine-tuning pretrained checkpoint %s", name)
        return model, True

    def prepare(self, tokenizer, train: Encoded, validation: Encoded, resume: bool, labeled_desc: str):
        """Return ``(model, info)``: the teacher ready to label the transfer set, saved in ``OUTPUT/teacher``."""
        saved = self._load_saved()
        if saved is not None:
            return saved
        model, needs_training = self._build(tokenizer)
        best = None
        if needs_training:
            best = self._fine_tune(model, tokenizer, train, validation, resume)
        cfg = model.config
        info = TeacherInfo(
            source=self.targs.teacher or "scratch", trained_from_scratch=self.targs.from_scratch,
            fine_tuned_here=needs_training, architecture=type(model).__name__, parameters=count_parameters(model),
            hidden_size=int(getattr(cfg, "hidden_size", 0)), num_layers=int(getattr(cfg, "num_hidden_layers", 0)),
            path=str(self.saved_dir), fingerprint=weights_fingerprint(model),
            labeled_data=labeled_desc if needs_training else "none here (checkpoint used as is)",
            best_validation_score=best)
        tmp = self.saved_dir.with_name("teacher.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / TEACHER_META, {"setup_key": self.setup_key, "info": asdict(info),
                                               "task": {"task": self.adapter.spec.name, "task_file": self.adapter.spec.path}})
        shutil.rmtree(self.saved_dir, ignore_errors=True)
        tmp.rename(self.saved_dir)
        return model, info

    def _fine_tune(self, model, tokenizer, train: Encoded, validation: Encoded, resume: bool) -> float | None:
        from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

        t = self.targs
        ckpt_dir = self.out_dir / "checkpoints" / "teacher"
        strategy = "steps" if t.teacher_eval_steps else "epoch"
        args = TrainingArguments(
            output_dir=str(ckpt_dir), num_train_epochs=t.teacher_epochs, learning_rate=t.teacher_lr,
            per_device_train_batch_size=t.teacher_batch_size, per_device_eval_batch_size=64,
            warmup_steps=0.1, weight_decay=0.01, optim="adamw_torch_fused",
            eval_strategy=strategy, save_strategy=strategy,
            eval_steps=t.teacher_eval_steps or None, save_steps=t.teacher_eval_steps or None,
            load_best_model_at_end=True, metric_for_best_model=self.adapter.primary_metric, greater_is_better=True,
            save_total_limit=2, train_sampling_strategy="group_by_length", logging_steps=50,
            report_to=[], seed=self.seed, dataloader_num_workers=0, disable_tqdm=True,
        )
        adapter = self.adapter

        def compute_metrics(p):
            return adapter.trainer_metrics(p.predictions, p.label_ids)

        trainer = Trainer(
            model=model, args=args, train_dataset=_EncodedDataset(train, adapter), eval_dataset=_EncodedDataset(validation, adapter),
            data_collator=adapter.trainer_collator(tokenizer), compute_metrics=compute_metrics,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=2)],
        )
        has_ckpt = ckpt_dir.is_dir() and any(ckpt_dir.glob("checkpoint-*"))
        trainer.train(resume_from_checkpoint=True if (resume and has_ckpt) else None)
        best = trainer.state.best_metric
        logger.info("teacher fine-tuned: best validation %s %.2f", adapter.primary_metric, best if best is not None else float("nan"))
        return None if best is None else float(best)


@torch.no_grad()
def predict_logits(model, adapter: TaskAdapter, encoded: Encoded, pad_id: int, max_tokens: int = 8192) -> list[np.ndarray]:
    """Per-row logits (``(T_i, C)`` or ``(C,)``) of a ``transformers`` model (the teacher), in row order."""
    from .batching import bucket_batches

    model.eval()
    device = next(model.parameters()).device
    out: list[np.ndarray | None] = [None] * len(encoded)
    lengths = encoded.lengths
    for rows in bucket_batches(lengths, max_tokens=max_tokens, batch_size=256):
        b = adapter.collate(encoded, rows, pad_id)
        logits = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device)).logits.cpu()
        for r, x in zip(rows, adapter.row_logits(logits, [int(lengths[r]) for r in rows])):
            out[r] = x
    return out  # type: ignore[return-value]
