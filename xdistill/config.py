"""Configuration dataclasses, one per concern, and the presets.

The command line is built from these dataclasses with
``transformers.HfArgumentParser`` (the pattern of transformers'
``run_ner.py``: ``ModelArguments``, ``DataTrainingArguments``). A preset sets
the parser's defaults, so every preset value can be overridden on the command
line. Each dataclass validates itself in ``__post_init__`` and raises
:class:`xdistill.errors.ConfigError` naming the option.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from .errors import ConfigError

DATA_DIR_ENV = "XDISTILL_DATA_DIR"


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_positive(obj, *names: str, allow_zero: bool = False) -> None:
    for n in names:
        v = getattr(obj, n)
        if v is None:
            continue
        if v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"{_opt(n)}: expected a {'non-negative' if allow_zero else 'positive'} number, got {v}")


def _check_choice(obj, name: str, choices) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise ConfigError(f"{_opt(name)}: expected one of {', '.join(map(str, choices))}, got {v!r}")


@dataclass
class DataArguments:
    """Where the data comes from and how much of it each model sees.

    Per language (``--langs``): ``validation_per_lang`` sentences are held out of
    the training split for early stopping and model selection; the student's
    labeled budget is ``labeled_per_lang`` sentences of the rest (seeded
    sample); the teacher fine-tunes on ``teacher_labeled_per_lang`` sentences
    (a superset of the student's budget; ``-1`` means the whole training split
    minus validation); the transfer set is the rest of train with its labels
    dropped (at most ``transfer_per_lang``) plus the unlabeled sentences for the
    language (at most ``unlabeled_per_lang``). Evaluation uses the labeled dev
    split (``eval_per_lang`` caps it; ``-1`` = all).
    """

    langs: str = field(default="all", metadata={"help": "Comma-separated ISO 639-1 codes, group names (xtremedistil41, smoke) or 'all' (every language with labeled data in the source)."})
    data_dir: Optional[str] = field(default=None, metadata={"help": f"Local data folder (wikiann/, unlabeled/, tokenizers/). Default: ${DATA_DIR_ENV}; without either, the Hugging Face hub is used."})
    source: str = field(default="auto", metadata={"help": "auto (local if --data-dir/env is set, else hub), local or hub."})
    labeled_per_lang: int = field(default=1000, metadata={"help": "Student's labeled budget per language (sentences, seeded sample)."})
    teacher_labeled_per_lang: int = field(default=-1, metadata={"help": "Labeled sentences per language the teacher fine-tunes on (-1: all of train minus validation). At least --labeled-per-lang."})
    validation_per_lang: int = field(default=200, metadata={"help": "Sentences per language held out of train for early stopping and model selection."})
    transfer_per_lang: int = field(default=-1, metadata={"help": "Cap on train sentences per language (labels dropped) in the transfer set (-1: no cap)."})
    unlabeled_per_lang: int = field(default=-1, metadata={"help": "Cap on unlabeled sentences per language (Leipzig, Tatoeba) in the transfer set (-1: no cap, 0: none)."})
    eval_per_lang: int = field(default=-1, metadata={"help": "Cap on evaluation sentences per language (-1: all)."})
    max_length: int = field(default=128, metadata={"help": "Maximum subword tokens per window, [CLS] and [SEP] included; longer sentences are split into windows."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling and training."})

    @staticmethod
    def _resolve_source(args) -> None:
        """Fill ``data_dir`` from the environment and resolve ``source="auto"``; check the folder."""
        if args.data_dir is None and os.environ.get(DATA_DIR_ENV):
            args.data_dir = os.environ[DATA_DIR_ENV]
        _check_choice(args, "source", ("auto", "local", "hub"))
        if args.source == "auto":
            args.source = "local" if args.data_dir else "hub"
        if args.source == "local":
            if not args.data_dir:
                raise ConfigError(f"--source local: needs --data-dir or ${DATA_DIR_ENV}")
            if not Path(args.data_dir).is_dir():
                raise ConfigError(f"--data-dir: {args.data_dir} is not a directory")

    def __post_init__(self) -> None:
        self._resolve_source(self)
        _check_positive(self, "labeled_per_lang", "validation_per_lang")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"--max-length: expected 8 to 512 tokens, got {self.max_length}")
        for n in ("teacher_labeled_per_lang", "transfer_per_lang", "unlabeled_per_lang", "eval_per_lang"):
            v = getattr(self, n)
            if v < -1:
                raise ConfigError(f"{_opt(n)}: expected -1 (no cap) or a non-negative number, got {v}")
        if self.teacher_labeled_per_lang != -1 and self.teacher_labeled_per_lang < self.labeled_per_lang:
            raise ConfigError(
                f"--teacher-labeled-per-lang ({self.teacher_labeled_per_lang}) must be -1 or at least "
                f"--labeled-per-lang ({self.labeled_per_lang}): the teacher sees the student's budget too")


@dataclass
class TextDataArguments:
    """Text classification data (``classify``): a balanced labeled budget per class, seeded.

    ``validation_per_class`` texts per class are held out of train (outside the
    budget) for early stopping and model selection; the teacher fine-tunes on
    ``teacher_labeled_per_class`` per class (a superset of the budget; -1: all of
    train minus validation); the transfer set is the train texts outside the
    budget with labels dropped (at most ``transfer_limit``) plus the task's
    unlabeled texts (at most ``unlabeled_limit``). Evaluation uses the labeled
    test split (``eval_limit`` caps it with a seeded sample).
    """

    data_dir: Optional[str] = field(default=None, metadata={"help": f"Local data folder (imdb/ ...). Default: ${DATA_DIR_ENV}; without either, the hub."})
    source: str = field(default="auto", metadata={"help": "auto (local if --data-dir/env is set, else hub), local or hub."})
    labeled_per_class: int = field(default=500, metadata={"help": "Student's labeled budget per class (seeded, balanced)."})
    teacher_labeled_per_class: int = field(default=-1, metadata={"help": "Labeled texts per class the teacher fine-tunes on (-1: all of train minus validation)."})
    validation_per_class: int = field(default=100, metadata={"help": "Texts per class held out of train for early stopping and model selection."})
    transfer_limit: int = field(default=-1, metadata={"help": "Cap on train texts (labels dropped) in the transfer set (-1: no cap)."})
    unlabeled_limit: int = field(default=-1, metadata={"help": "Cap on unlabeled texts in the transfer set (-1: no cap, 0: none)."})
    eval_limit: int = field(default=-1, metadata={"help": "Cap on evaluation texts (-1: all)."})
    max_length: int = field(default=256, metadata={"help": "Maximum subword tokens per text, [CLS] and [SEP] included; longer texts are truncated and counted."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling and training."})

    def __post_init__(self) -> None:
        DataArguments._resolve_source(self)
        _check_positive(self, "labeled_per_class", "validation_per_class")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"--max-length: expected 8 to 512 tokens, got {self.max_length}")
        for n in ("teacher_labeled_per_class", "transfer_limit", "unlabeled_limit", "eval_limit"):
            if getattr(self, n) < -1:
                raise ConfigError(f"{_opt(n)}: expected -1 (no cap) or a non-negative number, got {getattr(self, n)}")
        if self.teacher_labeled_per_class != -1 and self.teacher_labeled_per_class < self.labeled_per_class:
            raise ConfigError(f"--teacher-labeled-per-class ({self.teacher_labeled_per_class}) must be -1 or at least "
                              f"--labeled-per-class ({self.labeled_per_class})")


@dataclass
class GenerationArguments:
    """Generation-distillation (Melas-Kyriazi et al. 2019): a language model writes new transfer text.

    ``augment="generate"`` fine-tunes ``generator`` (any ``AutoModelForCausalLM``,
    hub id or local path; unset: a small GPT-2 trained from scratch with the task
    tokenizer on the task's labeled and unlabeled text), samples ``generate``
    texts (nucleus sampling with ``top_p`` and ``temperature``; prompts are the
    first ``prompt_words`` words of training texts, or BOS alone), filters them
    (length bounds, exact and near duplicates of each other and of the
    evaluation split) and caches them. ``transfer`` lists which transfer sets to
    distil on: ``unlabeled``, ``generated``, ``both`` (comma-separated; one student each).
    """

    augment: str = field(default="none", metadata={"help": "none or generate."})
    transfer: str = field(default="unlabeled", metadata={"help": "Transfer sets to distil on, comma-separated: unlabeled, generated, both."})
    generator: Optional[str] = field(default=None, metadata={"help": "AutoModelForCausalLM hub id or local path; unset: a small GPT-2 trained from scratch."})
    generate: int = field(default=2000, metadata={"help": "Number of texts to sample."})
    generator_layers: int = field(default=2, metadata={"help": "Scratch generator: layers."})
    generator_hidden_size: int = field(default=128, metadata={"help": "Scratch generator: hidden size."})
    generator_heads: int = field(default=2, metadata={"help": "Scratch generator: attention heads."})
    generator_epochs: float = field(default=1.0, metadata={"help": "Generator fine-tuning epochs."})
    generator_lr: float = field(default=1e-3, metadata={"help": "Generator learning rate."})
    generator_max_length: int = field(default=128, metadata={"help": "Generator training block and sample length in tokens."})
    generator_train_texts: int = field(default=4000, metadata={"help": "Texts the generator fine-tunes on (labeled budget first, then unlabeled; -1: all)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling: smallest token set with this probability mass."})
    temperature_sampling: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    prompt: str = field(default="train", metadata={"help": "Prompts: train (openings of training texts) or bos."})
    prompt_words: int = field(default=4, metadata={"help": "Words of a training text used as a prompt."})
    min_words: int = field(default=20, metadata={"help": "Filter: fewest words a generated text may have."})
    max_words: int = field(default=400, metadata={"help": "Filter: most words a generated text may have."})
    near_duplicate: float = field(default=0.8, metadata={"help": "Filter: Jaccard similarity of word 3-gram sets at or above which a text is a near duplicate."})

    def __post_init__(self) -> None:
        _check_choice(self, "augment", ("none", "generate"))
        _check_choice(self, "prompt", ("train", "bos"))
        names = [t.strip() for t in self.transfer.split(",") if t.strip()]
        bad = [t for t in names if t not in ("unlabeled", "generated", "both")]
        if bad or not names:
            raise ConfigError(f"--transfer: expected a comma-separated subset of unlabeled, generated, both; got {self.transfer!r}")
        if self.augment == "none" and any(t != "unlabeled" for t in names):
            raise ConfigError(f"--transfer {self.transfer}: generated text needs --augment generate")
        _check_positive(self, "generate", "generator_layers", "generator_hidden_size", "generator_heads", "generator_epochs",
                        "generator_lr", "generator_max_length", "prompt_words", "min_words", "max_words", "temperature_sampling")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p: expected 0 < p <= 1, got {self.top_p}")
        if not 0 < self.near_duplicate <= 1:
            raise ConfigError(f"--near-duplicate: expected 0 < j <= 1, got {self.near_duplicate}")
        if self.min_words > self.max_words:
            raise ConfigError(f"--min-words ({self.min_words}) must not exceed --max-words ({self.max_words})")
        if self.generator_hidden_size % self.generator_heads:
            raise ConfigError(f"--generator-hidden-size must be divisible by --generator-heads")

    @property
    def transfer_sets(self) -> list[str]:
        return list(dict.fromkeys(t.strip() for t in self.transfer.split(",") if t.strip()))


@dataclass
class TeacherArguments:
    """The teacher: a checkpoint by hub id or local path, or a small BERT trained from scratch.

    With ``teacher=None`` (or ``scratch``) the teacher is a BERT of the size
    below with the mBERT WordPiece vocabulary from ``tokenizer``; the log and
    the report say "trained from scratch". A checkpoint already fine-tuned on
    the same label set is used as is.
    """

    teacher: Optional[str] = field(default=None, metadata={"help": "Hub id or local directory of an AutoModelForTokenClassification / base checkpoint; unset or 'scratch': train a small BERT from scratch."})
    tokenizer: Optional[str] = field(default=None, metadata={"help": "Tokenizer id or folder for a scratch teacher (default: DATA_DIR/tokenizers/bert-base-multilingual-cased)."})
    teacher_hidden_size: int = field(default=256, metadata={"help": "Scratch teacher: hidden size."})
    teacher_layers: int = field(default=4, metadata={"help": "Scratch teacher: transformer layers."})
    teacher_heads: int = field(default=4, metadata={"help": "Scratch teacher: attention heads."})
    teacher_intermediate_size: int = field(default=1024, metadata={"help": "Scratch teacher: feed-forward size."})
    teacher_epochs: float = field(default=3.0, metadata={"help": "Teacher fine-tuning epochs (early stopping on the validation split)."})
    teacher_lr: float = field(default=5e-5, metadata={"help": "Teacher learning rate."})
    teacher_batch_size: int = field(default=32, metadata={"help": "Teacher batch size (sentences)."})
    teacher_eval_steps: int = field(default=0, metadata={"help": "Evaluate the teacher on the validation split every N steps (0: once per epoch)."})
    teacher_layer: int = field(default=-1, metadata={"help": "Teacher hidden layer for the representation loss (XtremeDistil stage 1); -1 is the last."})
    label_tokens_per_batch: int = field(default=8192, metadata={"help": "Token budget of a length-bucketed batch when the teacher labels the transfer set."})

    def __post_init__(self) -> None:
        if self.teacher in ("", "scratch"):
            self.teacher = None
        _check_positive(self, "teacher_hidden_size", "teacher_layers", "teacher_heads", "teacher_intermediate_size",
                        "teacher_epochs", "teacher_lr", "teacher_batch_size", "label_tokens_per_batch")
        _check_positive(self, "teacher_eval_steps", allow_zero=True)
        if self.teacher_hidden_size % self.teacher_heads:
            raise ConfigError(f"--teacher-hidden-size ({self.teacher_hidden_size}) must be divisible by --teacher-heads ({self.teacher_heads})")

    @property
    def from_scratch(self) -> bool:
        return self.teacher is None


@dataclass
class StudentArguments:
    """The student (XtremeDistil sec. 3.1): pruned WordPiece embeddings (E), BiLSTM (H), tag head, projection."""

    student: str = field(default="bilstm", metadata={"help": "Student architecture (bilstm)."})
    pooling: str = field(default="max", metadata={"help": "Sequence tasks: pooling of BiLSTM states, max or attention (token tasks keep every position)."})
    embedding_dim: int = field(default=300, metadata={"help": "E: word embedding size (SVD of the teacher's input embeddings)."})
    hidden_size: int = field(default=600, metadata={"help": "H: BiLSTM hidden size per direction."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout on embeddings and BiLSTM states."})

    def __post_init__(self) -> None:
        _check_choice(self, "student", ("bilstm",))
        _check_choice(self, "pooling", ("max", "attention"))
        _check_positive(self, "embedding_dim", "hidden_size")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout: expected 0 <= p < 1, got {self.dropout}")


@dataclass
class DistillArguments:
    """The staged schedule (XtremeDistil, Algorithm 1) and its training settings."""

    representation_loss: str = field(default="mse", metadata={"help": "Stage 1 loss: mse or kl."})
    logits_loss: str = field(default="mse", metadata={"help": "Stage 2 loss: mse or kl (with --temperature)."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature for kl losses."})
    stages: str = field(default="representation,logits,labeled", metadata={"help": "Stages to run, in order."})
    gradual_unfreezing: bool = field(default=True, metadata={"help": "Within each stage, unfreeze from the top layer down, one step each."})
    batch_size: int = field(default=64, metadata={"help": "Student batch size (windows)."})
    lr: float = field(default=2e-3, metadata={"help": "Student learning rate (Adam)."})
    max_epochs: int = field(default=10, metadata={"help": "Maximum epochs per unfreezing step."})
    patience: int = field(default=2, metadata={"help": "Early stopping: validation checks without improvement before a step ends."})
    evals_per_epoch: int = field(default=1, metadata={"help": "Validation checks per epoch on the transfer set."})
    baseline_max_epochs: int = field(default=30, metadata={"help": "Maximum epochs for the no-distillation baseline."})
    baseline_patience: int = field(default=5, metadata={"help": "Early-stopping patience (epochs) of the no-distillation baseline, which starts from random weights."})

    def __post_init__(self) -> None:
        _check_choice(self, "representation_loss", ("mse", "kl"))
        _check_choice(self, "logits_loss", ("mse", "kl"))
        _check_positive(self, "temperature", "batch_size", "lr", "max_epochs", "patience", "evals_per_epoch", "baseline_max_epochs", "baseline_patience")
        known = ("representation", "logits", "labeled")
        names = [s.strip() for s in self.stages.split(",") if s.strip()]
        bad = [s for s in names if s not in known]
        if bad or not names:
            raise ConfigError(f"--stages: expected a comma-separated subset of {', '.join(known)}, got {self.stages!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"--stages: a stage is listed twice in {self.stages!r}")

    @property
    def stage_names(self) -> list[str]:
        return [s.strip() for s in self.stages.split(",") if s.strip()]


@dataclass
class RunArguments:
    """Where outputs go and how the run behaves."""

    task: str = field(default="wikiann", metadata={"help": "Task: a name in tasks/ (wikiann) or the path of a task file (.toml), e.g. one that points [local] at CoNLL files."})
    output_dir: str = field(default="runs/ner", metadata={"help": "Output folder: report.json, report.md, student/, teacher/, cache/, checkpoints/."})
    preset: str = field(default="cpu", metadata={"help": "smoke, cpu or paper: defaults for every other option."})
    resume: bool = field(default=False, metadata={"help": "Continue an interrupted run from its last finished step."})
    threads: int = field(default=0, metadata={"help": "torch threads (0: library default)."})
    cache_dir: Optional[str] = field(default=None, metadata={"help": "Teacher-output cache folder (default OUTPUT/cache)."})

    def __post_init__(self) -> None:
        _check_choice(self, "preset", tuple(PRESETS))
        _check_positive(self, "threads", allow_zero=True)


# Presets: parser defaults. Every key is a field of one of the dataclasses above.
PRESETS: dict[str, dict] = {
    # Two languages, a few hundred sentences: for tests (about a minute on 2 cores).
    "smoke": dict(
        langs="smoke", labeled_per_lang=100, teacher_labeled_per_lang=300, validation_per_lang=50,
        transfer_per_lang=200, unlabeled_per_lang=100, eval_per_lang=100, max_length=64,
        teacher_hidden_size=64, teacher_layers=2, teacher_heads=2, teacher_intermediate_size=128,
        teacher_epochs=3.0, teacher_lr=1e-3, teacher_batch_size=16,
        embedding_dim=32, hidden_size=32, batch_size=32, lr=3e-3, max_epochs=2, patience=1,
        baseline_max_epochs=4, output_dir="runs/smoke",
    ),
    # Every language on a 2-core CPU in under an hour: scratch teacher, E=50/H=200 student.
    "cpu": dict(
        langs="all", labeled_per_lang=100, teacher_labeled_per_lang=1500, validation_per_lang=100,
        transfer_per_lang=1200, unlabeled_per_lang=500, eval_per_lang=500, max_length=128,
        teacher_hidden_size=192, teacher_layers=4, teacher_heads=3, teacher_intermediate_size=768,
        teacher_epochs=2.0, teacher_lr=5e-4, teacher_batch_size=32, teacher_eval_steps=0,
        embedding_dim=50, hidden_size=200, batch_size=64, lr=2e-3, max_epochs=2, patience=2,
        evals_per_epoch=2, baseline_max_epochs=40, baseline_patience=5, output_dir="runs/ner-cpu",
    ),
    # The paper's settings (Mukherjee & Hassan Awadallah 2020) for a GPU user with hub access.
    "paper": dict(
        langs="xtremedistil41", source="hub", teacher="bert-base-multilingual-cased",
        labeled_per_lang=100000, teacher_labeled_per_lang=-1, validation_per_lang=1000,
        transfer_per_lang=-1, unlabeled_per_lang=-1, eval_per_lang=-1, max_length=128,
        teacher_epochs=3.0, teacher_lr=3e-5, teacher_batch_size=32, teacher_layer=-1,
        embedding_dim=300, hidden_size=600, batch_size=64, lr=1e-3, max_epochs=20, patience=3,
        baseline_max_epochs=50, output_dir="runs/ner-paper",
    ),
}

# Presets of ``classify`` (text classification; IMDB by default).
CLASSIFY_PRESETS: dict[str, dict] = {
    # A few hundred real reviews, tiny models, generation on: for tests.
    "smoke": dict(
        task="imdb", labeled_per_class=40, teacher_labeled_per_class=150, validation_per_class=20,
        transfer_limit=150, unlabeled_limit=150, eval_limit=100, max_length=64,
        teacher_hidden_size=64, teacher_layers=2, teacher_heads=2, teacher_intermediate_size=128,
        teacher_epochs=2.0, teacher_lr=1e-3, teacher_batch_size=16,
        embedding_dim=32, hidden_size=32, batch_size=32, lr=3e-3, max_epochs=2, patience=1,
        baseline_max_epochs=4, baseline_patience=2, augment="generate", transfer="unlabeled,generated,both",
        generate=120, generator_layers=1, generator_hidden_size=32, generator_heads=2, generator_epochs=1.0,
        generator_max_length=48, generator_train_texts=300, min_words=5, output_dir="runs/classify-smoke",
    ),
    # IMDB, 500 labeled reviews per class, on a 2-core CPU within an hour.
    "cpu": dict(
        task="imdb", labeled_per_class=500, teacher_labeled_per_class=3000, validation_per_class=250,
        transfer_limit=2000, unlabeled_limit=4000, eval_limit=5000, max_length=192,
        teacher_hidden_size=192, teacher_layers=4, teacher_heads=3, teacher_intermediate_size=768,
        teacher_epochs=2.0, teacher_lr=5e-4, teacher_batch_size=32,
        embedding_dim=50, hidden_size=200, batch_size=64, lr=2e-3, max_epochs=1, patience=2, evals_per_epoch=2,
        baseline_max_epochs=30, baseline_patience=5, augment="generate", transfer="unlabeled,generated,both",
        generate=3000, generator_layers=2, generator_hidden_size=192, generator_heads=3, generator_epochs=1.0,
        generator_max_length=128, generator_train_texts=4000, output_dir="runs/classify-cpu",
    ),
    # The XtremeDistil paper's IMDB setting for a GPU user with hub access (500 per class, BERT teacher).
    "paper": dict(
        task="imdb", source="hub", teacher="bert-large-uncased", labeled_per_class=500, teacher_labeled_per_class=500,
        validation_per_class=250, transfer_limit=-1, unlabeled_limit=-1, eval_limit=-1, max_length=512,
        teacher_epochs=3.0, teacher_lr=2e-5, teacher_batch_size=16, embedding_dim=300, hidden_size=600,
        batch_size=64, lr=1e-3, max_epochs=20, patience=3, baseline_max_epochs=50, augment="generate",
        transfer="unlabeled,generated,both", generator="gpt2", generate=50000, output_dir="runs/classify-paper",
    ),
}

ALL_ARGUMENT_CLASSES = (DataArguments, TeacherArguments, StudentArguments, DistillArguments, RunArguments)
CLASSIFY_ARGUMENT_CLASSES = (TextDataArguments, GenerationArguments, TeacherArguments, StudentArguments,
                             DistillArguments, RunArguments)


def _validate_presets() -> None:
    for classes, presets in ((ALL_ARGUMENT_CLASSES, PRESETS), (CLASSIFY_ARGUMENT_CLASSES, CLASSIFY_PRESETS)):
        names = {f.name for cls in classes for f in fields(cls)}
        for preset, values in presets.items():
            unknown = set(values) - names
            if unknown:  # a programming error, caught at import time
                raise AssertionError(f"preset {preset!r} sets unknown options {sorted(unknown)}")


_validate_presets()
