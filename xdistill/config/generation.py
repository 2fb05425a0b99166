"""Generation-distillation options (Melas-Kyriazi, Han and Liang 2019, arXiv 2002.00733).

:class:`GenerationOptions` holds what both commands share (the generator, its training, sampling
and the filters); each command adds how many texts to sample: ``classify`` a total
(:class:`GenerationArguments`, ``--generate``), ``ner`` a number per language
(:class:`NERGenerationArguments`, ``--generate-per-lang``, with the script and entity filters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import ConfigError
from .checks import check_choice, check_positive


@dataclass
class GenerationOptions:
    """A language model writes new transfer text (generation-distillation).

    ``augment="generate"`` fine-tunes ``generator`` (any ``AutoModelForCausalLM``, hub id or local
    path; unset: a small GPT-2 trained from scratch with the task tokenizer on the task's labeled and
    unlabeled text; with several groups, e.g. languages, on all of them at once, each text prefixed by
    its group's tag), samples texts per group (nucleus sampling with ``top_p`` and
    ``temperature_sampling``; prompts are the group's tag and the first ``prompt_words`` subwords of
    one of its training texts, or the tag alone), filters them (length bounds; exact and near
    duplicates of each other and of every evaluation split; the group's script; the teacher's
    normalised entropy) and caches the generator and its samples. ``transfer`` lists which transfer
    sets to distil on (names in :data:`xdistill.transfer.TRANSFER_SETS`, checked when the run starts:
    ``unlabeled``, ``generated``, ``both``; comma-separated; one student each).
    """

    augment: str = field(default="none", metadata={"help": "none or generate."})
    transfer: str = field(default="unlabeled", metadata={"help": "Transfer sets to distil on, comma-separated: unlabeled, generated, both (generated text needs --augment generate)."})
    generator: Optional[str] = field(default=None, metadata={"help": "AutoModelForCausalLM hub id or local path; unset: a small GPT-2 trained from scratch."})
    generator_layers: int = field(default=2, metadata={"help": "Scratch generator: layers."})
    generator_hidden_size: int = field(default=128, metadata={"help": "Scratch generator: hidden size."})
    generator_heads: int = field(default=2, metadata={"help": "Scratch generator: attention heads."})
    generator_epochs: float = field(default=1.0, metadata={"help": "Generator fine-tuning epochs."})
    generator_lr: float = field(default=1e-3, metadata={"help": "Generator learning rate."})
    generator_max_length: int = field(default=128, metadata={"help": "Generator training block and sample length in tokens."})
    generator_train_texts: int = field(default=4000, metadata={"help": "Texts per group (language) the generator fine-tunes on (labeled budget first, then unlabeled; -1: all)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling: smallest token set with this probability mass."})
    temperature_sampling: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    prompt: str = field(default="train", metadata={"help": "Prompts: train (the group's tag and the opening of one of its training texts) or bos (the tag alone)."})
    prompt_words: int = field(default=4, metadata={"help": "Subwords of a training text used as a prompt."})
    min_words: int = field(default=20, metadata={"help": "Filter: fewest words a generated text may have."})
    max_words: int = field(default=400, metadata={"help": "Filter: most words a generated text may have."})
    near_duplicate: float = field(default=0.8, metadata={"help": "Filter: Jaccard similarity of word 3-gram sets at or above which a text is a near duplicate."})
    max_teacher_entropy: float = field(default=1.0, metadata={"help": "Filter: keep samples whose teacher entropy (mean over words for NER, normalised by log of the number of labels, 0..1) is at most this (1: no filter)."})

    def __post_init__(self) -> None:
        check_choice(self, "augment", ("none", "generate"))
        check_choice(self, "prompt", ("train", "bos"))
        if not self.transfer_sets:
            raise ConfigError(f"--transfer: expected a comma-separated list of transfer sets, got {self.transfer!r}")
        check_positive(self, "generator_layers", "generator_hidden_size", "generator_heads", "generator_epochs",
                       "generator_lr", "generator_max_length", "prompt_words", "min_words", "max_words",
                       "temperature_sampling")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p: expected 0 < p <= 1, got {self.top_p}")
        if not 0 < self.near_duplicate <= 1:
            raise ConfigError(f"--near-duplicate: expected 0 < j <= 1, got {self.near_duplicate}")
        if not 0 < self.max_teacher_entropy <= 1:
            raise ConfigError(f"--max-teacher-entropy: expected 0 < h <= 1 (1: no filter), got {self.max_teacher_entropy}")
        if self.min_words > self.max_words:
            raise ConfigError(f"--min-words ({self.min_words}) must not exceed --max-words ({self.max_words})")
        if self.generator_hidden_size % self.generator_heads:
            raise ConfigError("--generator-hidden-size must be divisible by --generator-heads")

    @property
    def transfer_sets(self) -> list[str]:
        """``--transfer`` as a list, repeats dropped, in order."""
        return list(dict.fromkeys(t.strip() for t in self.transfer.split(",") if t.strip()))

    def samples_per_group(self, groups: int) -> int:
        """How many texts to sample for each of ``groups`` groups."""
        raise NotImplementedError

    @property
    def min_script(self) -> float:
        """Filter: least share of a sample's letters in its group's script (0: no filter)."""
        return 0.0

    @property
    def keep_without_entities(self) -> float:
        """Filter: share of the samples in which the teacher finds no entity to keep (1: all)."""
        return 1.0

    @property
    def balance_labels(self) -> bool:
        """Filter: downsample the generated texts to equal numbers per label the teacher predicts."""
        return False


@dataclass
class GenerationArguments(GenerationOptions):
    """``classify``'s generation options: ``generate`` texts in all (see :class:`GenerationOptions`)."""

    generate: int = field(default=2000, metadata={"help": "Number of texts to sample."})
    balance_classes: bool = field(default=False, metadata={"help": "Filter: keep equal numbers of generated texts per class the teacher predicts (seeded downsampling of the larger classes)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "generate")

    def samples_per_group(self, groups: int) -> int:
        return -(-self.generate // max(1, groups))

    @property
    def balance_labels(self) -> bool:
        return self.balance_classes


@dataclass
class NERGenerationArguments(GenerationOptions):
    """``ner``'s generation options: ``generate_per_lang`` sentences per language, filtered by the
    language's script (``script_share``, from the language registry) and, optionally, by whether the
    teacher finds an entity in them (``keep_entityless``: WikiANN sentences all hold at least one
    entity; a transfer set of mostly ``O`` sentences teaches the student little). Sentence-sized
    defaults: 3 to 60 words, generator blocks of 64 tokens."""

    generator_max_length: int = field(default=64, metadata={"help": "Generator training block and sample length in tokens."})
    generator_train_texts: int = field(default=2000, metadata={"help": "Sentences per language the generator trains on (labeled budget first, then the transfer text; -1: all)."})
    prompt_words: int = field(default=2, metadata={"help": "Subwords of a real sentence of the language used as a prompt (after the language tag)."})
    min_words: int = field(default=3, metadata={"help": "Filter: fewest words a generated sentence may have."})
    max_words: int = field(default=60, metadata={"help": "Filter: most words a generated sentence may have."})
    generate_per_lang: int = field(default=1000, metadata={"help": "Sentences to sample per language."})
    script_share: float = field(default=0.5, metadata={"help": "Filter: least share of a sentence's letters in its language's script (from the language registry; 0: no filter)."})
    keep_entityless: float = field(default=1.0, metadata={"help": "Filter: share of the generated sentences in which the teacher finds no entity to keep (seeded; 1: all, 0: only sentences with an entity)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "generate_per_lang")
        if not 0 <= self.script_share <= 1:
            raise ConfigError(f"--script-share: expected 0 <= s <= 1 (0: no filter), got {self.script_share}")
        if not 0 <= self.keep_entityless <= 1:
            raise ConfigError(f"--keep-entityless: expected 0 <= k <= 1 (1: keep all), got {self.keep_entityless}")

    def samples_per_group(self, groups: int) -> int:
        return self.generate_per_lang

    @property
    def min_script(self) -> float:
        return self.script_share

    @property
    def keep_without_entities(self) -> float:
        return self.keep_entityless
