"""The student interface: named outputs, layer groups for gradual unfreezing, saving.

A student reads the *teacher's* input ids (positions align 1:1 with the teacher's subwords)
and returns a :class:`StudentOutput` of named features: ``logits``, ``hidden_states`` (one
tensor per layer it exposes) and ``attentions`` where it has them. Distillation decides which
teacher feature trains which student feature (:mod:`xdistill.distill.matches`); projections
between widths belong to the distillation, not to the student, and are not saved with it.

For gradual unfreezing (XtremeDistil, Algorithm 1) a student names its parameter groups: the
*body* from the top layer down (:meth:`Student.body_groups`) and the *heads* that produce a
named output on top of the body (:meth:`Student.head_groups`).

A saved student folder holds ``config.json`` (kind, sizes, label map, task),
``model.safetensors`` and the tokenizer files; :func:`xdistill.students.load_student`
rebuilds it without any training state.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn

from ..adapters import OutputLevel, batched_logits
from ..config import StudentArguments
from ..data.types import Encoded, Feature
from ..errors import ConfigError
from ..utils import VERSION, atomic_write_json, count_parameters
from .vocab import prune_vocabulary

logger = logging.getLogger(__name__)

STUDENT_CONFIG = "config.json"
STUDENT_WEIGHTS = "model.safetensors"
STUDENT_MARKER = "xdistill_student"


@dataclass
class StudentOutput:
    """Named outputs of a student for one batch.

    Attributes:
        logits: ``(B, T, C)`` (token tasks) or ``(B, C)`` (sequence tasks).
        hidden_states: per exposed layer, ``(B, T, H_l)``, or ``(B, H_l)`` sequence representations
            (the BiLSTM's pooled states, a transformer's first position) on a sequence task.
        attentions: per attention layer ``1..L``, ``(B, A, T, T)``; ``None`` when not asked for or
            for a student without attention.
        projections: the ``queries``/``keys``/``values`` asked for, by feature key, ``(B, T, H)``.
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] = ()
    attentions: tuple[torch.Tensor, ...] | None = None
    projections: dict[str, torch.Tensor] = field(default_factory=dict)

    def feature(self, f: Feature) -> torch.Tensor:
        """The output a :class:`~xdistill.data.types.Feature` names (``hidden_states`` layers index the
        tuple, attention layers are ``1..L``; ``-1`` is the last).

        Raises:
            ConfigError: the student has no such output or layer.
        """
        if f.name == "logits":
            return self.logits
        if f.name in ("queries", "keys", "values"):
            if f.key not in self.projections:
                raise ConfigError(f"student feature {f.key}: this student did not return it")
            return self.projections[f.key]
        layers = self.hidden_states if f.name == "hidden_states" else self.attentions
        if not layers:
            raise ConfigError(f"student feature {f.key}: this student returns no {f.name}")
        if f.name == "attentions":
            if not (1 <= f.layer <= len(layers) or f.layer == -1):
                raise ConfigError(f"student feature {f.key}: attention layers are 1..{len(layers)} (or -1 for the last)")
            return layers[f.layer - 1 if f.layer > 0 else -1]
        if not -len(layers) <= f.layer < len(layers):
            raise ConfigError(f"student feature {f.key}: the student exposes {len(layers)} {f.name} layers "
                              f"(0..{len(layers) - 1}, or -1 for the last)")
        return layers[f.layer]


@dataclass(frozen=True)
class StudentShape:
    """What distillation stages need to know of a student before it exists: its transformer layers
    (hidden states ``0..layers``; 0 for a student with a single hidden state), attention heads
    (0: none) and hidden width."""

    layers: int
    heads: int
    hidden: int


@dataclass
class StudentContext:
    """What a student factory may use to build a student for a run.

    Attributes:
        num_labels: classes ``C``.
        level: the task's output level (decides pooling).
        vocab_size: the teacher tokenizer's vocabulary size ``V``.
        pad_id, unk_id, special_ids: the teacher tokenizer's padding, unknown and special token ids.
        rows: encodings whose tokens the student's pruned vocabulary keeps.
        teacher_embeddings: the teacher's input embeddings ``(V, D)`` for an SVD initialisation,
            or ``None`` for random embeddings (the no-distillation baseline).
        seed: seeds the student's initialisation.
        tokenizer: the teacher's tokenizer (a transformer student saves it pruned).
        teacher_model: the teacher's ``transformers`` model, for a student that copies its layers or
            its configuration (``None`` for the no-distillation baselines: they copy no layers).
    """

    num_labels: int
    level: OutputLevel
    vocab_size: int
    pad_id: int
    unk_id: int
    special_ids: Sequence[int]
    rows: Sequence[Encoded]
    teacher_embeddings: torch.Tensor | None
    seed: int
    tokenizer: object = None
    teacher_model: nn.Module | None = None

    @classmethod
    def for_tokenizer(cls, tokenizer, **kw) -> "StudentContext":
        """A context whose vocabulary facts come from a ``transformers`` tokenizer."""
        return cls(vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id, unk_id=tokenizer.unk_token_id,
                   special_ids=list(tokenizer.all_special_ids), tokenizer=tokenizer, **kw)

    def input_rows(self):
        """Every input-id row of :attr:`rows` (int32 arrays)."""
        return (ids for enc in self.rows for ids in enc.input_ids.iter_arrays())

    def vocabulary(self, vocabulary: str = "pruned") -> tuple[np.ndarray, np.ndarray]:
        """The student's vocabulary as ``(kept, vocab_map)`` (:func:`~xdistill.students.vocab.prune_vocabulary`):
        ``pruned`` keeps the teacher ids of :attr:`rows` and the special tokens (XtremeDistil sec. 3.1),
        ``whole`` every teacher id (student 0 and 1 stay padding and unknown).

        Raises:
            ValueError: ``vocabulary`` is neither ``pruned`` nor ``whole``.
        """
        if vocabulary == "pruned":
            return prune_vocabulary(self.input_rows(), self.vocab_size, self.pad_id, self.unk_id, self.special_ids)
        if vocabulary == "whole":
            return prune_vocabulary((), self.vocab_size, self.pad_id, self.unk_id, range(self.vocab_size))
        raise ValueError(f"student vocabulary must be pruned or whole, got {vocabulary!r}")


class Student(nn.Module):
    """Base class of students. Subclasses set ``kind``, register with
    :func:`xdistill.students.register_student` and implement the abstract methods."""

    kind: ClassVar[str] = ""
    #: the stages ``--stages auto`` runs (names in :data:`xdistill.distill.STAGES`)
    default_stages: ClassVar[str] = "representation,logits,labeled"

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)

    @classmethod
    @abstractmethod
    def create(cls, args: StudentArguments, ctx: StudentContext) -> "Student":
        """A new student for a run (sizes from ``args``, vocabulary and initialisation from ``ctx``)."""

    @classmethod
    def from_config(cls, config: dict) -> "Student":
        """An uninitialised student of a saved configuration (weights are loaded after)."""
        return cls(config)

    @classmethod
    @abstractmethod
    def shape(cls, args: StudentArguments) -> StudentShape:
        """Layers, heads and width of the student ``args`` describe (for the stages' layer maps)."""

    @classmethod
    def check_teacher(cls, args: StudentArguments, teacher_config) -> None:
        """Check, before the teacher trains, that the student ``args`` describe can be built for a
        teacher of this ``transformers`` configuration (the default: any teacher will do).

        Raises:
            ConfigError: an option that cannot fit this teacher (names the option).
        """

    @classmethod
    def load(cls, directory: Path, config: dict) -> tuple["Student", dict]:
        """A saved student of this kind in eval mode, and its configuration (the folder's
        ``config.json``, already read into ``config``). The default reads ``model.safetensors`` into
        :meth:`from_config` (see :func:`xdistill.students.load_student`).

        Raises:
            ConfigError: missing weights, or weights that do not match the configuration.
        """
        return load_safetensors_student(cls, directory, config), config

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: Sequence[Feature] = (), inputs_embeds: torch.Tensor | None = None) -> StudentOutput:
        """``input_ids``/``attention_mask`` ``(B, T)`` in the vocabulary of the tokenizer the student
        reads (the teacher's while distilling) -> :class:`StudentOutput` with logits and hidden
        states, plus the relational ``features`` (attentions, queries, keys, values) asked for.
        ``inputs_embeds`` ``(B, T, E)``, when given, replaces the word embeddings of ``input_ids``
        (adversarial examples feed soft or one-hot tokens through :meth:`embed`)."""

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The student's word embeddings of teacher token ids: ``(...)`` -> ``(..., E)`` (through its
        vocabulary map: ids it pruned get the unknown token's row).

        Raises:
            ConfigError: a student kind that cannot take embeddings as input.
        """
        raise ConfigError(f"student kind {self.kind!r} cannot take word embeddings as input (needed by --adversarial)")

    @abstractmethod
    def inference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``forward(...).logits`` without anything inference does not need: ``(B, T)`` -> ``(B, T, C)`` or ``(B, C)``."""

    @abstractmethod
    def export_module(self) -> nn.Module:
        """An inference-only module for ``torch.onnx.export``: ``(input_ids, attention_mask)``, both
        ``(B, T)`` int64 in the teacher's vocabulary -> logits ``(B, T, C)`` or ``(B, C)``, equal to
        ``forward(...).logits`` on real positions, with no data-dependent Python control flow so that
        batch size ``B`` and sequence length ``T`` stay dynamic axes. It shares this student's weights."""

    @abstractmethod
    def body_groups(self) -> list[str]:
        """Names of the body's parameter groups, top layer first (unfrozen in this order)."""

    @abstractmethod
    def head_groups(self, feature: str) -> list[str]:
        """Groups that produce the named output (``logits``, ``hidden_states``) on top of the body."""

    @abstractmethod
    def group_parameters(self, group: str) -> list[nn.Parameter]:
        """Parameters of a named group.

        Raises:
            KeyError: an unknown group.
        """

    @abstractmethod
    def output_size(self, feature: Feature) -> int:
        """The last axis of a named output (for a projection to the teacher's width)."""

    @abstractmethod
    def known_input_ids(self) -> np.ndarray:
        """Teacher token ids the student has its own embedding for (benchmark inputs are drawn from them)."""

    @abstractmethod
    def describe(self) -> dict:
        """What reports and model cards say about the architecture: ``architecture`` (a name),
        ``summary`` (sizes in a few words) and any sizes worth a column."""

    def inference_parameters(self) -> int:
        """Parameters used at inference (all of a student's parameters; buffers are not counted)."""
        return count_parameters(self)

    @torch.no_grad()
    def logits(self, level: OutputLevel, encoded: Encoded, pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
        """Per-row logits (``(T_i, C)`` or ``(C,)``, float32) in row order, in eval mode (the
        training mode is restored after)."""
        was = self.training
        self.eval()
        try:
            return batched_logits(self.inference_logits, level, encoded, pad_id, batch_size=batch_size,
                                  device=next(self.parameters()).device)
        finally:
            self.train(was)

    def save(self, directory: str | Path, tokenizer=None, extra: dict | None = None) -> None:
        """Save config, weights (safetensors) and tokenizer files to ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        tmp = d / f".{STUDENT_WEIGHTS}.tmp"
        save_file(state, str(tmp), metadata={"format": "pt", "kind": self.kind})
        tmp.replace(d / STUDENT_WEIGHTS)
        if tokenizer is not None:
            tokenizer.save_pretrained(d)
        # transformers_version: what a tokenizer loaded from this folder looks for in config.json (without
        # it transformers 5 warns of a "Mistral regex" that does not concern this tokenizer)
        versions = {"xdistill_version": VERSION, "transformers_version": transformers.__version__}
        atomic_write_json(d / STUDENT_CONFIG, {STUDENT_MARKER: True, "kind": self.kind, **self.config, **(extra or {}),
                                               **versions})


#: weights of training-only heads that students saved before version 0.2 carried (the BiLSTM's
#: stage-1 projection); they are not part of the student and are left out when loading
LEGACY_TRAINING_KEYS = ("projection.weight", "projection.bias")


def load_safetensors_student(cls: type[Student], d: Path, cfg: dict) -> Student:
    """A student of class ``cls`` built by ``cls.from_config(cfg)`` with the weights of
    ``d/model.safetensors``, in eval mode.

    Raises:
        ConfigError: the weights file is missing, or its tensors do not match the configuration
            (shape mismatches, missing or unexpected keys).
    """
    weights = d / STUDENT_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"--model {d}: {STUDENT_WEIGHTS} is missing")
    model = cls.from_config(cfg)
    state = load_file(str(weights))
    expected = model.state_dict()
    legacy = [k for k in LEGACY_TRAINING_KEYS if k in state and k not in expected]
    if legacy:
        logger.info("%s: leaving out the training-only weights %s", weights, ", ".join(legacy))
        state = {k: v for k, v in state.items() if k not in legacy}
    wrong = [f"{k}: {tuple(v.shape)} vs config {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if wrong or missing or unexpected:
        raise ConfigError(f"{weights}: weights do not match {d / STUDENT_CONFIG} (shape mismatches {wrong}, "
                          f"missing {missing}, unexpected {unexpected})")
    model.load_state_dict(state)
    model.eval()
    return model
