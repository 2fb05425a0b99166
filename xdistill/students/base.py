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

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from torch import nn

from ..adapters import OutputLevel, batched_logits
from ..config import StudentArguments
from ..data.types import Encoded, Feature
from ..errors import ConfigError
from ..utils import VERSION, atomic_write_json, count_parameters

STUDENT_CONFIG = "config.json"
STUDENT_WEIGHTS = "model.safetensors"
STUDENT_MARKER = "xdistill_student"


@dataclass
class StudentOutput:
    """Named outputs of a student for one batch.

    Attributes:
        logits: ``(B, T, C)`` (token tasks) or ``(B, C)`` (sequence tasks).
        hidden_states: per exposed layer, ``(B, T, H_l)``, or ``(B, H_l)`` sequence representations
            for a student that pools (the BiLSTM on a sequence task).
        attentions: per layer ``(B, A, T, T)``, or ``None`` for a student without attention.
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] = ()
    attentions: tuple[torch.Tensor, ...] | None = None

    def feature(self, f: Feature) -> torch.Tensor:
        """The output a :class:`~xdistill.data.types.Feature` names (layers index the tuples, ``-1`` the last).

        Raises:
            ConfigError: the student has no such output or layer.
        """
        if f.name == "logits":
            return self.logits
        layers = self.hidden_states if f.name == "hidden_states" else self.attentions
        if not layers:
            raise ConfigError(f"student feature {f.key}: this student returns no {f.name}")
        if not -len(layers) <= f.layer < len(layers):
            raise ConfigError(f"student feature {f.key}: the student exposes {len(layers)} {f.name} layers "
                              f"(0..{len(layers) - 1}, or -1 for the last)")
        return layers[f.layer]


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

    @classmethod
    def for_tokenizer(cls, tokenizer, **kw) -> "StudentContext":
        """A context whose vocabulary facts come from a ``transformers`` tokenizer."""
        return cls(vocab_size=len(tokenizer), pad_id=tokenizer.pad_token_id, unk_id=tokenizer.unk_token_id,
                   special_ids=list(tokenizer.all_special_ids), **kw)

    def input_rows(self):
        """Every input-id row of :attr:`rows`."""
        return (ids for enc in self.rows for ids in enc.input_ids)


class Student(nn.Module):
    """Base class of students. Subclasses set ``kind``, register with
    :func:`xdistill.students.register_student` and implement the abstract methods."""

    kind: ClassVar[str] = ""

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

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> StudentOutput:
        """``input_ids``/``attention_mask`` ``(B, T)`` in the teacher's vocabulary -> :class:`StudentOutput`."""

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
