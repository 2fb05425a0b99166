"""Configuration dataclasses, one per concern; the presets are in :mod:`xdistill.config.presets`.

The command line is built from these dataclasses with
``transformers.HfArgumentParser`` (the pattern of transformers'
``run_ner.py``: ``ModelArguments``, ``DataTrainingArguments``). A preset sets
the parser's defaults, so every preset value can be overridden on the command
line. Each dataclass validates itself in ``__post_init__`` and raises
:class:`xdistill.errors.ConfigError` naming the option. Zero-shot distillation's
options are in :mod:`xdistill.config.zero_shot`.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ConfigError
from .checks import check_budgets, check_choice, check_positive, option_name
from .presets import PRESETS
from .generation import GenerationArguments as GenerationArguments, GenerationOptions, NERGenerationArguments as NERGenerationArguments
from .zero_shot import ZeroShotArguments

DATA_DIR_ENV = "XDISTILL_DATA_DIR"


@dataclass
class DataArguments:
    """What every task's data options share: where the data comes from, the maximum length in
    subword tokens and the seed. Each task adapter adds its budgets in a subclass
    (:class:`NERDataArguments`, :class:`TextDataArguments`)."""

    data_dir: Optional[str] = field(default=None, metadata={"help": f"Local data folder (wikiann/, imdb/, unlabeled/, tokenizers/). Default: ${DATA_DIR_ENV}; without either, the Hugging Face hub is used."})
    source: str = field(default="auto", metadata={"help": "auto (local if --data-dir/env is set, else hub), local or hub."})
    max_length: int = field(default=128, metadata={"help": "Maximum subword tokens per row, special tokens included."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling and training."})

    def __post_init__(self) -> None:
        if self.data_dir is None and os.environ.get(DATA_DIR_ENV):
            self.data_dir = os.environ[DATA_DIR_ENV]
        check_choice(self, "source", ("auto", "local", "hub"))
        if self.source == "auto":
            self.source = "local" if self.data_dir else "hub"
        if self.source == "local":
            if not self.data_dir:
                raise ConfigError(f"--source local: needs --data-dir or ${DATA_DIR_ENV}")
            if not Path(self.data_dir).is_dir():
                raise ConfigError(f"--data-dir: {self.data_dir} is not a directory")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"--max-length: expected 8 to 512 tokens, got {self.max_length}")


@dataclass
class NERDataArguments(DataArguments):
    """NER data (``ner``): budgets per language.

    Per language (``--langs``): ``validation_per_lang`` sentences are held out of
    the training split for early stopping and model selection, with every other
    train or unlabeled sentence of the same words (:mod:`xdistill.data.heldout`); the student's
    labeled budget is ``labeled_per_lang`` sentences of the rest (seeded
    sample); the teacher fine-tunes on ``teacher_labeled_per_lang`` sentences
    (a superset of the student's budget; ``-1`` means the whole training split
    minus validation); the transfer set is the rest of train with its labels
    dropped (at most ``transfer_per_lang``; with ``transfer_with_labeled`` the
    labeled budget's sentences too) plus the unlabeled sentences for the
    language (at most ``unlabeled_per_lang``), ``transfer_repeat`` times (copies
    shuffled; for scaling benchmarks). Evaluation uses the labeled dev split
    (``eval_per_lang`` caps it; ``-1`` = all).
    """

    langs: str = field(default="all", metadata={"help": "Comma-separated ISO 639-1 codes, group names (xtremedistil41, smoke) or 'all' (every language with labeled data in the source)."})
    labeled_per_lang: int = field(default=1000, metadata={"help": "Student's labeled budget per language (sentences, seeded sample)."})
    teacher_labeled_per_lang: int = field(default=-1, metadata={"help": "Labeled sentences per language the teacher fine-tunes on (-1: all of train minus validation). At least --labeled-per-lang."})
    validation_per_lang: int = field(default=200, metadata={"help": "Sentences per language held out of train for early stopping and model selection."})
    transfer_per_lang: int = field(default=-1, metadata={"help": "Cap on train sentences per language (labels dropped) in the transfer set (-1: no cap)."})
    unlabeled_per_lang: int = field(default=-1, metadata={"help": "Cap on unlabeled sentences per language (Leipzig, Tatoeba) in the transfer set (-1: no cap, 0: none)."})
    eval_per_lang: int = field(default=-1, metadata={"help": "Cap on evaluation sentences per language (-1: all)."})
    max_length: int = field(default=128, metadata={"help": "Maximum subword tokens per window, special tokens included; longer sentences are split into windows."})
    transfer_with_labeled: bool = field(default=False, metadata={"help": "Put the labeled budget's sentences (labels dropped) in the transfer set as well, so the teacher's outputs on them reach the representation and logits stages; a language whose train split is all validation and labeled budget then has transfer text."})
    transfer_repeat: int = field(default=1, metadata={"help": "Copies of each language's transfer text, each copy shuffled (for scaling benchmarks that need more text than there is: repeated text teaches the student nothing new; the report's counts show it)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "labeled_per_lang", "validation_per_lang", "transfer_repeat")
        check_budgets(self, "labeled_per_lang", "teacher_labeled_per_lang",
                       ("transfer_per_lang", "unlabeled_per_lang", "eval_per_lang"))


@dataclass
class TextDataArguments(DataArguments):
    """Text classification data (``classify``): a balanced labeled budget per class, seeded.

    ``validation_per_class`` texts per class are held out of train (outside the budget) for
    early stopping and model selection, with every other train or unlabeled text equal to one
    of them (:mod:`xdistill.data.heldout`); the teacher fine-tunes on
    ``teacher_labeled_per_class`` per class (a superset of the budget; -1: all of
    train minus validation); the transfer set is the train texts outside the
    budget with labels dropped (at most ``transfer_limit``) plus the task's
    unlabeled texts (at most ``unlabeled_limit``). Evaluation uses the labeled
    test split (``eval_limit`` caps it with a seeded sample).
    """

    labeled_per_class: int = field(default=500, metadata={"help": "Student's labeled budget per class (seeded, balanced)."})
    teacher_labeled_per_class: int = field(default=-1, metadata={"help": "Labeled texts per class the teacher fine-tunes on (-1: all of train minus validation)."})
    validation_per_class: int = field(default=100, metadata={"help": "Texts per class held out of train for early stopping and model selection."})
    transfer_limit: int = field(default=-1, metadata={"help": "Cap on train texts (labels dropped) in the transfer set (-1: no cap)."})
    unlabeled_limit: int = field(default=-1, metadata={"help": "Cap on unlabeled texts in the transfer set (-1: no cap, 0: none)."})
    eval_limit: int = field(default=-1, metadata={"help": "Cap on evaluation texts (-1: all)."})
    max_length: int = field(default=256, metadata={"help": "Maximum subword tokens per text, special tokens included; longer texts are truncated and counted."})
    truncation_side: str = field(default="right", metadata={"help": "Which end of a long text is cut (the tokenizer's truncation_side, saved with teacher and student): right keeps the beginning, left keeps the end."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "truncation_side", ("right", "left"))
        check_positive(self, "labeled_per_class", "validation_per_class")
        check_budgets(self, "labeled_per_class", "teacher_labeled_per_class",
                       ("transfer_limit", "unlabeled_limit", "eval_limit"))


def parse_hidden_storage(spec: str) -> tuple[str, int]:
    """``--cache-hidden`` as ``(kind, components)``: ``("fp16", 0)``, ``("int8", 0)`` or ``("pca", K)``.

    Raises:
        ConfigError: anything else (names the option and the forms it takes).
    """
    v = str(spec).strip().lower()
    if v in ("fp16", "int8"):
        return v, 0
    m = re.fullmatch(r"pca:(\d+)", v)
    if m and int(m.group(1)) > 0:
        return "pca", int(m.group(1))
    raise ConfigError(f"--cache-hidden: expected fp16, int8 or pca:K with K > 0 components, got {spec!r}")


#: ``--teacher-vocab`` values
TEACHER_VOCABULARIES = ("full", "pruned")
#: ``--teacher-embeddings`` values: random initialisation, or PPMI-SVD vectors of the run's text
#: (:mod:`xdistill.teachers.cooccurrence`)
TEACHER_EMBEDDINGS = ("random", "ppmi")


@dataclass
class TeacherArguments:
    """The teacher: a checkpoint by hub id or local path, or a small model trained from scratch.

    With ``teacher=None`` (or ``scratch``) the teacher is a model of the size
    below (``teacher_architecture``) with the vocabulary of ``tokenizer`` (by
    default mBERT's WordPiece vocabulary); the log and the report say "trained
    from scratch". A checkpoint already fine-tuned on the same label set is
    used as is.
    """

    teacher: Optional[str] = field(default=None, metadata={"help": "Hub id or local directory of a transformers checkpoint (any AutoModel family: BERT, XLM-R, DistilBERT; fine-tuned on the task's labels or a base checkpoint); unset or 'scratch': train a small model from scratch."})
    tokenizer: Optional[str] = field(default=None, metadata={"help": "Tokenizer id or folder for a scratch teacher (default: DATA_DIR/tokenizers/bert-base-multilingual-cased)."})
    teacher_architecture: str = field(default="auto", metadata={"help": "Scratch teacher: bert, xlm-roberta, or auto (xlm-roberta for a sentencepiece tokenizer, else bert)."})
    teacher_vocab: str = field(default="full", metadata={"help": "Scratch teacher's vocabulary: full (the tokenizer's whole vocabulary), or pruned (a WordPiece vocabulary of the pieces of the run's training, selection and transfer text, its special tokens and the single-character pieces of its characters: the same segmentation of that text, a smaller embedding matrix). A checkpoint keeps its own vocabulary."})
    teacher_hidden_size: int = field(default=256, metadata={"help": "Scratch teacher: hidden size."})
    teacher_layers: int = field(default=4, metadata={"help": "Scratch teacher: transformer layers."})
    teacher_heads: int = field(default=4, metadata={"help": "Scratch teacher: attention heads."})
    teacher_intermediate_size: int = field(default=1024, metadata={"help": "Scratch teacher: feed-forward size."})
    teacher_dropout: float = field(default=0.1, metadata={"help": "Scratch teacher: dropout of the hidden states and of the attention probabilities (BERT's 0.1)."})
    teacher_epochs: float = field(default=3.0, metadata={"help": "Teacher fine-tuning epochs (early stopping on the validation split)."})
    teacher_lr: float = field(default=5e-5, metadata={"help": "Teacher learning rate."})
    teacher_batch_size: int = field(default=32, metadata={"help": "Teacher batch size (sentences)."})
    teacher_eval_steps: int = field(default=0, metadata={"help": "Evaluate the teacher on the validation split every N steps (0: once per epoch)."})
    teacher_layer: int = field(default=-1, metadata={"help": "Teacher hidden layer for the representation loss (XtremeDistil stage 1); -1 is the last."})
    label_tokens_per_batch: int = field(default=8192, metadata={"help": "Token budget of a length-bucketed batch when the teacher labels the transfer set."})
    cache_hidden: str = field(default="fp16", metadata={"help": "How the cache stores the teacher's hidden states: fp16 (2 bytes per value), int8 (1 byte per value and a float16 scale per position), or pca:K (the top K principal components of the teacher's hidden states on the transfer set, float16: 2K bytes per position)."})
    teacher_lang_temperature: float = field(default=1.0, metadata={"help": "Teacher fine-tuning: sample groups (languages) with probability proportional to n^(1/T) (Conneau & Lample 2019; Arivazhagan et al. 2019) by repeating the rows of smaller groups; 1: as they are, larger: closer to uniform."})
    teacher_label_all_tokens: bool = field(default=False, metadata={"help": "Token tasks: the teacher's fine-tuning labels every subword of a word (B-X becomes I-X after the first), as transformers' run_ner.py --label_all_tokens; off: the first subword only. Predictions and the students always read the first subword."})
    teacher_label_smoothing: float = field(default=0.0, metadata={"help": "Label smoothing of the teacher's fine-tuning loss (0: none)."})
    teacher_self_training: int = field(default=0, metadata={"help": "Rounds of self-training after the teacher's fine-tuning (Noisy Student, Xie et al. 2020): the teacher labels the transfer text, and a new teacher, initialised as the first, is fine-tuned on the labeled and the pseudo-labeled rows and replaces it; 0: none."})
    teacher_self_training_confidence: float = field(default=0.0, metadata={"help": "--teacher-self-training: leave out of the loss every pseudo label whose softmax probability is below this (uncertainty-aware self-training, Mukherjee and Hassan Awadallah 2020); 0: keep all."})
    teacher_mlm: str = field(default="off", metadata={"help": "Masked-language-model pretraining of the teacher before fine-tuning (continued pretraining for a checkpoint): off, a number of steps (3000) or minutes (15min)."})
    teacher_embeddings: str = field(default="random", metadata={"help": "Scratch teacher's word embeddings before fine-tuning (a checkpoint keeps its own): random, or ppmi (the truncated SVD of the positive PMI matrix of subword co-occurrences in the --mlm-text text, window 5; Levy, Goldberg and Dagan 2015): seconds of count-based pretraining."})
    mlm_text: str = field(default="transfer,labeled", metadata={"help": "Text for --teacher-mlm and --teacher-embeddings ppmi, comma-separated: transfer (the transfer text), labeled (the teacher's labeled text, labels unused), train (ner: every sentence of the train files of the run's languages, labels unused, the validation split's left out), or UTF-8 files with one text per line."})
    mlm_probability: float = field(default=0.15, metadata={"help": "--teacher-mlm: share of words masked (whole-word masking)."})
    mlm_lr: float = field(default=1e-3, metadata={"help": "--teacher-mlm: peak learning rate."})
    mlm_batch_size: int = field(default=64, metadata={"help": "--teacher-mlm: batch size (rows)."})
    mlm_eval_steps: int = field(default=500, metadata={"help": "--teacher-mlm: held-out loss and a checkpoint every N steps."})

    def __post_init__(self) -> None:
        if self.teacher in ("", "scratch"):
            self.teacher = None
        _ = self.mlm_budget  # validates --teacher-mlm
        check_positive(self, "mlm_lr", "mlm_batch_size", "mlm_eval_steps")
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"--mlm-probability: expected 0 < p < 1, got {self.mlm_probability}")
        if not self.teacher_lang_temperature >= 1:
            raise ConfigError(f"--teacher-lang-temperature: expected a temperature of 1 or more, got {self.teacher_lang_temperature}")
        if not 0 <= self.teacher_dropout < 1:
            raise ConfigError(f"--teacher-dropout: expected 0 <= p < 1, got {self.teacher_dropout}")
        if not 0 <= self.teacher_self_training_confidence < 1:
            raise ConfigError("--teacher-self-training-confidence: expected a probability 0 <= p < 1, got "
                              f"{self.teacher_self_training_confidence}")
        if not 0 <= self.teacher_label_smoothing < 1:
            raise ConfigError(f"--teacher-label-smoothing: expected 0 <= e < 1, got {self.teacher_label_smoothing}")
        check_choice(self, "teacher_embeddings", TEACHER_EMBEDDINGS)
        if self.ppmi_embeddings and self.mlm_enabled:
            raise ConfigError(f"--teacher-embeddings {self.teacher_embeddings} (the cpu preset's for ner) with "
                              "--teacher-mlm: not supported; expected one of them (add --teacher-embeddings random)")
        if self.reads_text and not self.mlm_sources:
            raise ConfigError(f"--mlm-text: expected transfer, labeled, train or file paths, comma-separated, got {self.mlm_text!r}")
        check_positive(self, "teacher_hidden_size", "teacher_layers", "teacher_heads", "teacher_intermediate_size",
                        "teacher_epochs", "teacher_lr", "teacher_batch_size", "label_tokens_per_batch")
        check_positive(self, "teacher_eval_steps", "teacher_self_training", allow_zero=True)
        check_choice(self, "teacher_vocab", TEACHER_VOCABULARIES)
        parse_hidden_storage(self.cache_hidden)
        if not self.teacher_architecture:
            raise ConfigError("--teacher-architecture: expected auto or an architecture name such as bert or xlm-roberta")
        if self.teacher_hidden_size % self.teacher_heads:
            raise ConfigError(f"--teacher-hidden-size ({self.teacher_hidden_size}) must be divisible by --teacher-heads ({self.teacher_heads})")

    @property
    def prunes_vocabulary(self) -> bool:
        """Whether the teacher's vocabulary is pruned to the run's text (``--teacher-vocab pruned`` and a
        scratch teacher; a checkpoint's embeddings belong to its own vocabulary, which it keeps)."""
        return self.teacher_vocab == "pruned" and self.from_scratch

    @property
    def from_scratch(self) -> bool:
        """Whether no checkpoint was given (the teacher is trained from scratch)."""
        return self.teacher is None

    @property
    def mlm_budget(self) -> tuple[int, float]:
        """``--teacher-mlm`` as ``(steps, minutes)``: ``(0, 0.0)`` when off, one of them otherwise.

        Raises:
            ConfigError: not ``off``, a whole number of steps or ``<number>min``, or a budget of zero or less.
        """
        v = str(self.teacher_mlm).strip().lower()
        if v in ("off", "none", "no", ""):
            return 0, 0.0
        try:
            steps, minutes = (0, float(v[:-3])) if v.endswith("min") else (int(v), 0.0)
        except ValueError:
            raise ConfigError(f"--teacher-mlm: expected off, a number of steps (3000) or of minutes (15min), got "
                              f"{self.teacher_mlm!r}") from None
        if steps <= 0 and minutes <= 0:
            raise ConfigError(f"--teacher-mlm: expected a budget above zero, got {self.teacher_mlm!r} (or off)")
        return steps, minutes

    @property
    def mlm_enabled(self) -> bool:
        """Whether the teacher gets masked-language-model pretraining."""
        return self.mlm_budget != (0, 0.0)

    @property
    def ppmi_embeddings(self) -> bool:
        """Whether a scratch teacher's word embeddings start from PPMI-SVD vectors (``--teacher-embeddings
        ppmi``; a checkpoint keeps its own embeddings, as it keeps its own vocabulary)."""
        return self.teacher_embeddings == "ppmi" and self.from_scratch

    @property
    def reads_text(self) -> bool:
        """Whether the teacher reads the ``--mlm-text`` text before fine-tuning (MLM pretraining or
        PPMI-SVD embeddings)."""
        return self.mlm_enabled or self.ppmi_embeddings

    @property
    def mlm_sources(self) -> list[str]:
        """``--mlm-text`` as a list, repeats dropped, in order."""
        return list(dict.fromkeys(t.strip() for t in self.mlm_text.split(",") if t.strip()))


#: ``--student-shape`` values: ``l<layers>-h<hidden>`` with an optional ``-a<heads>``
_SHAPE = re.compile(r"^l([0-9]+)-h([0-9]+)(?:-a([0-9]+))?$")
#: ``--student-init`` values
STUDENT_INITS = ("svd", "teacher-layers", "random")
#: ``--student-vocabulary`` values
STUDENT_VOCABULARIES = ("pruned", "whole")


@dataclass
class StudentArguments:
    """The student: its kind (a name in :data:`xdistill.students.STUDENTS`, checked when the run
    starts); the sizes of the XtremeDistil BiLSTM (sec. 3.1: pruned subword embeddings E, BiLSTM H,
    a tag or class head); the sizes of a transformer student (XtremeDistilTransformers: L layers,
    width H, A heads, feed-forward I) and how it starts."""

    student: str = field(default="bilstm", metadata={"help": "Student kind: a name registered in xdistill.students (bilstm, transformer)."})
    pooling: str = field(default="max", metadata={"help": "Sequence tasks: pooling of BiLSTM states, max, mean or attention (token tasks keep every position)."})
    embedding_dim: int = field(default=300, metadata={"help": "BiLSTM E: word embedding size (SVD of the teacher's input embeddings)."})
    hidden_size: int = field(default=600, metadata={"help": "BiLSTM H: hidden size per direction."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout on embeddings and BiLSTM states."})
    student_shape: str = field(default="", metadata={"help": "Transformer student shape l<L>-h<H>[-a<A>] (e.g. l4-h256: 4 layers, width 256, H/64 heads, feed-forward 4H); sets the next four options."})
    student_layers: int = field(default=4, metadata={"help": "Transformer student: layers L."})
    student_hidden: int = field(default=256, metadata={"help": "Transformer student: width H (word embeddings by SVD of the teacher's to H)."})
    student_heads: int = field(default=4, metadata={"help": "Transformer student: attention heads A (must divide H)."})
    student_intermediate: int = field(default=0, metadata={"help": "Transformer student: feed-forward size I (0: 4H)."})
    student_vocabulary: str = field(default="pruned", metadata={"help": "The student's vocabulary: pruned (the teacher's tokens seen in the run's text, as XtremeDistil) or whole (every teacher token; those the run never sees keep their SVD projection of the teacher's embeddings; for zero-shot runs, whose text misses many of the task's words)."})
    student_init: str = field(default="svd", metadata={"help": "Transformer student initialisation: svd (word embeddings from the SVD of the teacher's, the rest random), teacher-layers (width, heads and feed-forward as the teacher's: embeddings and every k-th layer copied from the teacher, as DistilBERT), random."})

    def __post_init__(self) -> None:
        if not self.student.strip():
            raise ConfigError("--student: expected a student kind such as bilstm or transformer")
        check_choice(self, "pooling", ("max", "mean", "attention"))
        check_choice(self, "student_init", STUDENT_INITS)
        check_choice(self, "student_vocabulary", STUDENT_VOCABULARIES)
        if self.student_shape:
            m = _SHAPE.match(self.student_shape.strip().lower())
            if not m:
                raise ConfigError(f"--student-shape: expected l<layers>-h<hidden>[-a<heads>] such as l4-h256 or "
                                  f"l2-h128-a2, got {self.student_shape!r}")
            self.student_layers, self.student_hidden = int(m.group(1)), int(m.group(2))
            self.student_heads = int(m.group(3)) if m.group(3) else max(1, self.student_hidden // 64)
            self.student_intermediate = 4 * self.student_hidden
        check_positive(self, "embedding_dim", "hidden_size", "student_layers", "student_hidden", "student_heads")
        check_positive(self, "student_intermediate", allow_zero=True)
        if self.student_hidden % self.student_heads:
            raise ConfigError(f"--student-heads {self.student_heads} does not divide --student-hidden "
                              f"{self.student_hidden}: each head needs H/A dimensions")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"--dropout: expected 0 <= p < 1, got {self.dropout}")

    @property
    def feed_forward(self) -> int:
        """The transformer student's feed-forward size I (``--student-intermediate``, or 4H)."""
        return self.student_intermediate or 4 * self.student_hidden


_LAYER_MAP = re.compile(r"^(uniform|top|[0-9]+:[0-9]+(,[0-9]+:[0-9]+)*)$")


#: values of ``--lr-schedule`` (:func:`xdistill.distill.optim.step_schedule`)
LR_SCHEDULES = ("constant", "linear")


@dataclass
class DistillArguments:
    """The staged schedule (XtremeDistil, Algorithm 1) and its training settings. Stage and loss
    names are looked up in :data:`xdistill.distill.STAGES` and :data:`xdistill.distill.LOSSES`
    when the run starts."""

    representation_loss: str = field(default="mse", metadata={"help": "Stage 1 loss: a registered loss name (mse or kl)."})
    logits_loss: str = field(default="mse", metadata={"help": "Stage 2 loss: a registered loss name (mse, or kl with --temperature)."})
    temperature: float = field(default=1.0, metadata={"help": "Softmax temperature for kl losses."})
    stages: str = field(default="auto", metadata={"help": "Stages to run, in order (names in xdistill.distill.STAGES); auto: the student's own (BiLSTM: representation,logits,labeled; transformer: intermediate,logits,labeled)."})
    layer_map: str = field(default="uniform", metadata={"help": "Stage intermediate: which teacher hidden layer each student layer 0..L matches: uniform (every k-th), top (the last L+1, as XtremeDistilTransformers) or explicit pairs student:teacher such as 0:0,2:4,4:8."})
    attention_loss: str = field(default="auto", metadata={"help": "Stage intermediate: attention matches: kl or mse between the attention maps of mapped layers (equal head counts), relation (MiniLM self-attention relations of the last layer's queries, keys and values; any heads and widths), off, or auto (kl when the head counts agree, else relation)."})
    relation_heads: int = field(default=0, metadata={"help": "Relation heads of --attention-loss relation (MiniLMv2); 0: the student's head count, lowered until it divides both widths."})
    gradual_unfreezing: bool = field(default=True, metadata={"help": "Within each stage, unfreeze from the top layer down, one step each."})
    freeze_embeddings: bool = field(default=False, metadata={"help": "Keep the student's embeddings group frozen in every distillation step (the no-distillation baseline still trains it). For --student-vocabulary whole, where pieces the run's text never holds keep their SVD projection of the teacher's embeddings only while the others do too."})
    batch_size: int = field(default=64, metadata={"help": "Student batch size (windows)."})
    lr: float = field(default=2e-3, metadata={"help": "Student learning rate (Adam)."})
    lr_schedule: str = field(default="constant", metadata={"help": "Student learning rate within each unfreezing step: constant (Adam at --lr, as XtremeDistil) or linear (from --lr down to 0 over the step's --max-epochs)."})
    max_epochs: int = field(default=10, metadata={"help": "Maximum epochs per unfreezing step."})
    patience: int = field(default=2, metadata={"help": "Early stopping: validation checks without improvement before a step ends."})
    evals_per_epoch: int = field(default=1, metadata={"help": "Validation checks per epoch on the transfer set."})
    transfer_lang_temperature: float = field(default=1.0, metadata={"help": "Distillation on the transfer set: sample groups (languages) with probability proportional to n^(1/T) (Arivazhagan et al. 2019; Conneau & Lample 2019) by repeating the rows of smaller groups in each epoch (the teacher labels each row once); 1: as they are, larger: closer to uniform."})
    baseline_max_epochs: int = field(default=30, metadata={"help": "Maximum epochs for the no-distillation baseline."})
    baseline_patience: int = field(default=5, metadata={"help": "Early-stopping patience (epochs) of the no-distillation baseline, which starts from random weights."})
    student_seed: int = field(default=-1, metadata={"help": "Seed of the students' and baselines' initialisation, dropout and batch order; -1: --seed. Runs that differ only in it share the data, the teacher and its cache, so they measure the students' run-to-run spread."})

    def __post_init__(self) -> None:
        for n in ("representation_loss", "logits_loss"):
            if not getattr(self, n).strip():
                raise ConfigError(f"{option_name(n)}: expected a loss name such as mse or kl")
        check_positive(self, "temperature", "batch_size", "lr", "max_epochs", "patience", "evals_per_epoch", "baseline_max_epochs", "baseline_patience")
        check_choice(self, "attention_loss", ("auto", "kl", "mse", "relation", "off"))
        check_choice(self, "lr_schedule", LR_SCHEDULES)
        if not self.transfer_lang_temperature >= 1:
            raise ConfigError("--transfer-lang-temperature: expected a temperature of 1 or more, got "
                              f"{self.transfer_lang_temperature}")
        check_positive(self, "relation_heads", allow_zero=True)
        if self.student_seed < -1:
            raise ConfigError(f"--student-seed: expected -1 (use --seed) or a seed >= 0, got {self.student_seed}")
        if not _LAYER_MAP.match(self.layer_map.replace(" ", "")):
            raise ConfigError(f"--layer-map: expected uniform, top or student:teacher pairs such as 0:0,2:4,4:8, "
                              f"got {self.layer_map!r}")
        names = [s.strip() for s in self.stages.split(",") if s.strip()]
        if not names:
            raise ConfigError(f"--stages: expected a comma-separated list of stage names, got {self.stages!r}")
        if len(set(names)) != len(names):
            raise ConfigError(f"--stages: a stage is listed twice in {self.stages!r}")

    def frozen_groups(self) -> tuple[str, ...]:
        """Student layer groups kept frozen in every distillation step: ``("embeddings",)`` with
        ``--freeze-embeddings``, else none."""
        return ("embeddings",) if self.freeze_embeddings else ()

    def seed(self, data_seed: int) -> int:
        """The students' seed: ``--student-seed``, or ``data_seed`` (``--seed``) when it is -1."""
        return self.student_seed if self.student_seed >= 0 else data_seed

    def stage_names(self, default: str) -> list[str]:
        """``--stages`` as a list, in order; ``auto`` takes ``default`` (the student's own stages)."""
        value = default if self.stages.strip() == "auto" else self.stages
        return [s.strip() for s in value.split(",") if s.strip()]


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
        check_choice(self, "preset", tuple(PRESETS))
        check_positive(self, "threads", allow_zero=True)


@dataclass
class RunSettings:
    """The parsed options of one distillation command, by concern (``generation`` is ``None`` for a
    command without generation options; ``zero_shot`` is off unless ``--zero-shot`` was given)."""

    data: DataArguments
    teacher: TeacherArguments
    student: StudentArguments
    distill: DistillArguments
    run: RunArguments
    generation: GenerationOptions | None = None
    zero_shot: ZeroShotArguments = field(default_factory=ZeroShotArguments)

    @classmethod
    def from_parsed(cls, parsed: Sequence) -> "RunSettings":
        """From the dataclasses the parser returned (in any order).

        Raises:
            ValueError: one of the required argument classes is missing.
        """
        kinds = {"data": DataArguments, "teacher": TeacherArguments, "student": StudentArguments,
                 "distill": DistillArguments, "run": RunArguments, "generation": GenerationOptions,
                 "zero_shot": ZeroShotArguments}
        found = {name: next((x for x in parsed if isinstance(x, cls_)), None) for name, cls_ in kinds.items()}
        missing = [n for n, x in found.items() if x is None and n not in ("generation", "zero_shot")]
        if missing:
            raise ValueError(f"RunSettings: no {', '.join(missing)} arguments among {[type(x).__name__ for x in parsed]}")
        return cls(**{k: v for k, v in found.items() if v is not None or k == "generation"})

    def as_dict(self) -> dict:
        """Every option, by concern (for the report)."""
        return {"data": asdict(self.data), "teacher": asdict(self.teacher), "student": asdict(self.student),
                "distill": asdict(self.distill), "generation": asdict(self.generation) if self.generation else None,
                "run": asdict(self.run), **({"zero_shot": asdict(self.zero_shot)} if self.zero_shot.enabled else {})}


#: The arguments every distillation command takes; each task adapter adds its own
#: (``NERDataArguments`` and ``NERGenerationArguments``; ``TextDataArguments`` and ``GenerationArguments``).
COMMON_ARGUMENTS = (TeacherArguments, StudentArguments, DistillArguments, RunArguments, ZeroShotArguments)
