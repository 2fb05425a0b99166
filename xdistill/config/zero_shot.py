"""Options of zero-shot distillation (Rashid, Lioutas, Ghaddar & Rezagholizadeh, EMNLP 2021, "Towards
Zero-Shot Knowledge Distillation for Natural Language Processing", arXiv 2012.15495): the student
learns from the teacher on out-of-domain text and adversarial examples, never from the task's text
or labels."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

from ..errors import ConfigError
from .checks import check_choice, check_positive

#: ``--ood-text`` names that stand for the run's languages' sentences in ``DATA_DIR/unlabeled``
OOD_KEYWORDS = ("leipzig", "tatoeba")
#: where the scratch adversarial generator starts (``--adversarial-generator-init``)
GENERATOR_INITS = ("random", "teacher")
#: options that give the student task data; refused with ``--zero-shot``
LABELED_DATA_OPTIONS = ("--labeled-per-lang", "--labeled-per-class", "--transfer", "--augment", "--transfer-per-lang",
                        "--unlabeled-per-lang", "--transfer-repeat", "--transfer-limit", "--unlabeled-limit",
                        "--baseline-max-epochs",
                        "--baseline-patience")


@dataclass
class ZeroShotArguments:
    """Zero-shot distillation (``--zero-shot``).

    The student sees only out-of-domain text (``ood_text``) labeled by the teacher, and, with
    ``adversarial``, that text perturbed by a masked-language-model generator trained to maximise
    the teacher-student divergence (MATE-KD, Rashid et al. ACL 2021). ``ood_validation`` of the OOD
    rows are held out: model selection and early stopping use the student's agreement with the
    teacher on them. ``generator_steps`` generator updates alternate with ``student_steps`` student
    updates; the generator replaces ``mask_fraction`` of the tokens of each perturbed row.
    """

    zero_shot: bool = field(default=False, metadata={"help": "Zero-shot distillation: the student learns from the teacher on out-of-domain text (--ood-text) only, no task text or labels (Rashid et al. 2021)."})
    ood_text: str = field(default="", metadata={"help": "Out-of-domain text, comma-separated: UTF-8 files (one text per line; a PAN-X/CoNLL .tsv gives its sentences' words), folders (every file in them), paths with {lang} (one per language of the run), leipzig or tatoeba (DATA_DIR/unlabeled sentences of the run's languages), or hub:ID for a datasets hub id with a text column."})
    ood_limit: int = field(default=-1, metadata={"help": "Cap on texts per OOD source file (seeded sample; -1: all)."})
    ood_join: int = field(default=1, metadata={"help": "Join every N consecutive OOD texts (after filtering) into one, e.g. sentences into paragraphs nearer a review's length (1: as they are)."})
    ood_span: str = field(default="", metadata={"help": "Cut each OOD text into consecutive spans of MIN-MAX words (each length drawn uniformly, seeded; a text's last span may be shorter), e.g. 1-10 for NER served on short inputs such as titles and list items; empty: whole texts. Applied before the overlap filters."})
    ood_validation: float = field(default=0.1, metadata={"help": "Share of the OOD texts held out for model selection by teacher-student agreement."})
    adversarial: bool = field(default=False, metadata={"help": "Also distil a student with adversarial examples (MATE-KD): an MLM generator rewrites --mask-fraction of the tokens to maximise the teacher-student divergence."})
    mask_fraction: float = field(default=0.3, metadata={"help": "--adversarial: share of each row's tokens the generator replaces."})
    generator_steps: int = field(default=10, metadata={"help": "--adversarial: generator updates per round."})
    student_steps: int = field(default=100, metadata={"help": "--adversarial: student updates per round."})
    adversarial_generator: Optional[str] = field(default=None, metadata={"help": "--adversarial: an AutoModelForMaskedLM (hub id or folder) with the teacher's vocabulary; unset: a small MLM trained here from scratch on the OOD text."})
    adversarial_generator_init: str = field(default="random", metadata={"help": "Scratch generator's start: random (a BERT of --adversarial-generator-hidden/-layers/-heads) or teacher (the teacher's encoder and word embeddings with a new MLM head, the output layer tied to the embeddings: the stand-in, where no pretrained MLM exists, for the teacher's own pretrained MLM of Rashid et al.); either is then trained on the OOD text for --adversarial-generator-mlm."})
    adversarial_generator_mlm: str = field(default="600", metadata={"help": "Scratch generator: MLM training budget, steps (600: the same generator on every machine, about 3 to 4 minutes on 2 CPU cores) or minutes (4min: as many steps as the machine makes in them)."})
    adversarial_generator_hidden: int = field(default=128, metadata={"help": "Scratch generator: hidden size."})
    adversarial_generator_layers: int = field(default=2, metadata={"help": "Scratch generator: layers."})
    adversarial_generator_heads: int = field(default=2, metadata={"help": "Scratch generator: attention heads."})
    adversarial_lr: float = field(default=1e-4, metadata={"help": "--adversarial: generator learning rate (Adam)."})
    adversarial_batch_size: int = field(default=16, metadata={"help": "--adversarial: rows of each student batch that are perturbed (and the generator's batch)."})
    adversarial_weight: float = field(default=1.0, metadata={"help": "--adversarial: weight of the student's loss on perturbed rows."})
    gumbel_temperature: float = field(default=1.0, metadata={"help": "--adversarial: temperature of the straight-through Gumbel-softmax."})

    def __post_init__(self) -> None:
        if self.adversarial and not self.zero_shot:
            raise ConfigError("--adversarial: adversarial examples are part of zero-shot distillation; expected "
                              "--zero-shot too")
        if self.zero_shot and not self.sources:
            raise ConfigError("--zero-shot: expected --ood-text (files, folders, {lang} paths, leipzig, tatoeba or "
                              "hub:ID): out-of-domain text is all the student learns from")
        if self.sources and not self.zero_shot:
            raise ConfigError("--ood-text: out-of-domain text is for zero-shot distillation; expected --zero-shot too")
        if not 0 < self.mask_fraction < 1:
            raise ConfigError(f"--mask-fraction: expected 0 < f < 1, got {self.mask_fraction}")
        if not 0 < self.ood_validation < 1:
            raise ConfigError(f"--ood-validation: expected a share 0 < s < 1, got {self.ood_validation}")
        if self.ood_limit < -1 or self.ood_limit == 0:
            raise ConfigError(f"--ood-limit: expected -1 (all) or a positive number, got {self.ood_limit}")
        self.span  # raises on a malformed --ood-span
        check_positive(self, "ood_join", "generator_steps", "student_steps", "adversarial_generator_hidden",
                       "adversarial_generator_layers", "adversarial_generator_heads", "adversarial_lr",
                       "adversarial_batch_size", "adversarial_weight", "gumbel_temperature")
        self._check_generator_init()
        if self.adversarial_generator_hidden % self.adversarial_generator_heads:
            raise ConfigError(f"--adversarial-generator-hidden ({self.adversarial_generator_hidden}) must be divisible "
                              f"by --adversarial-generator-heads ({self.adversarial_generator_heads})")

    def _check_generator_init(self) -> None:
        """``--adversarial-generator-init``: a known value; ``teacher`` neither with a given generator nor
        with the scratch generator's size options, which it would leave unused."""
        check_choice(self, "adversarial_generator_init", GENERATOR_INITS)
        if self.adversarial_generator_init != "teacher":
            return
        if self.adversarial_generator:
            raise ConfigError("--adversarial-generator-init teacher trains a generator here from the teacher; expected "
                              f"--adversarial-generator unset (got {self.adversarial_generator!r})")
        defaults = {f.name: f.default for f in fields(self)}
        changed = [f"--adversarial-generator-{k}" for k in ("hidden", "layers", "heads")
                   if getattr(self, f"adversarial_generator_{k}") != defaults[f"adversarial_generator_{k}"]]
        if changed:
            raise ConfigError(f"{', '.join(changed)}: with --adversarial-generator-init teacher the generator has the "
                              "teacher's size; expected the option unset")

    @property
    def enabled(self) -> bool:
        """Whether this is a zero-shot run."""
        return self.zero_shot

    @property
    def span(self) -> tuple[int, int] | None:
        """``--ood-span`` as ``(MIN, MAX)`` words, or ``None`` for whole texts.

        Raises:
            ConfigError: not ``MIN-MAX`` with ``1 <= MIN <= MAX`` (names the option).
        """
        if not self.ood_span.strip():
            return None
        parts = self.ood_span.strip().split("-")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or not 1 <= int(parts[0]) <= int(parts[1]):
            raise ConfigError(f"--ood-span: expected MIN-MAX words with 1 <= MIN <= MAX (e.g. 1-10), got {self.ood_span!r}")
        return int(parts[0]), int(parts[1])

    @property
    def sources(self) -> list[str]:
        """``--ood-text`` as a list, repeats dropped, in order."""
        return list(dict.fromkeys(t.strip() for t in self.ood_text.split(",") if t.strip()))

    @property
    def variants(self) -> list[str]:
        """The zero-shot students of the run: ``ood`` (OOD text only), and ``adversarial`` with ``--adversarial``."""
        return ["ood", "adversarial"] if self.adversarial else ["ood"]
