"""The student interface and saving/loading of students.

A student reads the *teacher's* input ids (positions align 1:1 with the
teacher's) and returns task logits and a projection of its states to the
teacher's hidden size for the representation loss. It names its layer groups
from the top down for gradual unfreezing (XtremeDistil, Algorithm 1). Any new
student kind (e.g. a small transformer) registers itself in
:data:`STUDENT_KINDS` and implements the same methods.

A saved student folder holds ``config.json`` (kind, sizes, label map),
``model.safetensors`` (weights and the vocabulary map) and the tokenizer files;
:func:`load_student` rebuilds it without any training state.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..utils import atomic_write_json

STUDENT_CONFIG = "config.json"
STUDENT_WEIGHTS = "model.safetensors"
STUDENT_MARKER = "xdistill_student"
STUDENT_KINDS: dict[str, type["Student"]] = {}


@dataclass
class StudentOutput:
    """``logits``: ``(B, T, C)`` (token tasks) or ``(B, C)`` (sequence tasks);
    ``projected``: GELU(W h + b) in the teacher's hidden size, ``(B, T, D)`` or ``(B, D)``."""

    logits: torch.Tensor
    projected: torch.Tensor


class Student(nn.Module):
    """Base class of students. Subclasses set ``kind`` and implement the abstract methods."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind:
            STUDENT_KINDS[cls.kind] = cls

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)

    @abstractmethod
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> StudentOutput:
        """``input_ids``/``attention_mask`` ``(B, T)`` in the teacher's vocabulary -> :class:`StudentOutput`."""

    @abstractmethod
    def inference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``forward(...).logits`` without the training-only heads: ``(B, T)`` -> ``(B, T, C)`` or ``(B, C)``."""

    @abstractmethod
    def export_module(self) -> nn.Module:
        """An inference-only module for ``torch.onnx.export``: ``(input_ids, attention_mask)``, both
        ``(B, T)`` int64 in the teacher's vocabulary -> logits ``(B, T, C)`` or ``(B, C)``, equal to
        ``forward(...).logits`` on real positions, with no data-dependent Python control flow so that
        batch size ``B`` and sequence length ``T`` stay dynamic axes. It shares this student's weights."""

    @abstractmethod
    def inference_parameters(self) -> int:
        """Parameters used at inference (training-only heads such as the representation projection excluded)."""

    @abstractmethod
    def unfreeze_groups(self, stage: str) -> list[str]:
        """Names of the layer groups trained in ``stage``, top layer first."""

    @abstractmethod
    def group_parameters(self, group: str) -> list[nn.Parameter]:
        """Parameters of a named layer group."""

    def set_trainable(self, groups: list[str]) -> list[nn.Parameter]:
        """Freeze everything, unfreeze ``groups``; return the trainable parameters."""
        for p in self.parameters():
            p.requires_grad_(False)
        params = []
        for g in groups:
            for p in self.group_parameters(g):
                p.requires_grad_(True)
                params.append(p)
        return params

    def save(self, directory: str | Path, tokenizer=None, extra: dict | None = None) -> None:
        """Save config, weights (safetensors) and tokenizer files to ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        tmp = d / f".{STUDENT_WEIGHTS}.tmp"
        save_file(state, str(tmp), metadata={"format": "pt", "kind": self.kind})
        tmp.replace(d / STUDENT_WEIGHTS)
        if tokenizer is not None:
            tokenizer.save_pretrained(d)
        atomic_write_json(d / STUDENT_CONFIG, {STUDENT_MARKER: True, "kind": self.kind, **self.config, **(extra or {})})


def is_student_dir(directory: str | Path) -> bool:
    p = Path(directory) / STUDENT_CONFIG
    if not p.is_file():
        return False
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and bool(data.get(STUDENT_MARKER))


def run_folder_hint(directory: str | Path) -> str:
    """`` (did you mean DIR/student?)`` when ``directory`` is a run's output folder holding a student, else ``""``."""
    d = Path(directory)
    found = [c for c in sorted(d.glob("student*")) if is_student_dir(c)] if d.is_dir() else []
    return f" (did you mean {found[0]}?)" if found else ""


def load_student(directory: str | Path) -> tuple[Student, dict]:
    """Rebuild a saved student: ``(model in eval mode, config dict)``.

    Raises:
        ConfigError: the folder holds no student, or an unknown student kind.
    """
    from safetensors.torch import load_file

    from . import bilstm  # noqa: F401  (registers the kind)

    d = Path(directory)
    if not is_student_dir(d):
        raise ConfigError(f"--model {d}: no xdistill student here (expected {STUDENT_CONFIG} with \"{STUDENT_MARKER}\": true "
                          f"and {STUDENT_WEIGHTS}){run_folder_hint(d)}")
    cfg = json.loads((d / STUDENT_CONFIG).read_text())
    kind = cfg.get("kind")
    if kind not in STUDENT_KINDS:
        raise ConfigError(f"{d / STUDENT_CONFIG}: unknown student kind {kind!r}; expected one of {', '.join(STUDENT_KINDS)}")
    weights = d / STUDENT_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"--model {d}: {STUDENT_WEIGHTS} is missing")
    model = STUDENT_KINDS[kind].from_config(cfg)
    state = load_file(str(weights))
    expected = model.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} vs config {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if wrong or missing or unexpected:
        raise ConfigError(f"{weights}: weights do not match {d / STUDENT_CONFIG} (shape mismatches {wrong}, "
                          f"missing {missing}, unexpected {unexpected})")
    model.load_state_dict(state)
    model.eval()
    return model, cfg
