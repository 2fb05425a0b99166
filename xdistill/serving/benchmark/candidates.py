"""The models to time: :class:`Candidate`, and the students and teachers given on the command line.

Each student and teacher names its reference model: a student's ``config.json`` key ``reference``
(a registry key; students saved before it existed are compared with mBERT-base), a teacher's
:attr:`~xdistill.teachers.TeacherInfo.reference`. Reference models themselves are built in
:mod:`.references`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig

from ...adapters import OutputLevel, TokenClassificationAdapter, adapter_class, level_of_architectures
from ...errors import ConfigError
from ...reporting.model_card import load_training_summary
from ...students import STUDENT_CONFIG, is_student_dir, load_student, saved_settings
from ...teachers import ReferenceModel, Teacher, usable_positions
from ...teachers.references import DEFAULT_REFERENCE, get_reference
from ...utils import count_parameters
from ..onnx import ONNX_DIR, PARITY_FILE, checked_onnx_path
from .options import PARITY_KEYS


@dataclass
class Candidate:
    """One model to time.

    ``forward(input_ids, attention_mask)`` takes ``(B, T)`` int64 tensors and returns logits
    (``(B, T, C)`` at the token level, ``(B, C)`` at the sequence level); ``onnx`` maps ``"fp32"``/
    ``"int8"`` to ONNX files (filled in for teachers and reference models by :mod:`.exports`);
    ``known_ids`` are the token ids inputs are drawn from; ``reference`` is the reference model it
    is compared with (a reference model's is itself).
    """

    name: str
    role: str                     # "student" | "teacher" | "reference"
    task: str
    path: str
    level: OutputLevel
    num_labels: int
    parameters: int
    known_ids: np.ndarray
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    reference: ReferenceModel
    onnx: dict[str, Path] = field(default_factory=dict)
    metric: str | None = None
    metric_values: dict[str, float | None] = field(default_factory=dict)
    max_positions: int | None = None
    student_dir: Path | None = None

    @property
    def ref_key(self) -> tuple[str, str, int]:
        """``(reference key, level name, number of labels)``: one reference model is built per key."""
        return (self.reference.key, self.level.name, self.num_labels)


class LogitsModule(nn.Module):
    """A ``transformers`` ``...ForTokenClassification``/``...ForSequenceClassification`` as
    ``forward(input_ids, attention_mask) -> logits`` (``(B, T, C)`` or ``(B, C)``), for timing and ONNX export."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def display_name(path: str | Path) -> str:
    """``PARENT/NAME`` of a folder (``runs/ner-cpu/student`` -> ``ner-cpu/student``)."""
    p = Path(path).resolve()
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def known_config_ids(config) -> np.ndarray:
    """All ids of a ``transformers`` model's vocabulary except its padding id."""
    ids = np.arange(int(config.vocab_size), dtype=np.int64)
    pad = getattr(config, "pad_token_id", None)
    return ids[ids != pad] if pad is not None else ids


def check_positions(option: str, config, sequence_length: int) -> None:
    """Raises:
        ConfigError: ``sequence_length`` (tokens) is longer than the model of ``config`` can read
            (:func:`~xdistill.teachers.usable_positions`: 512 for XLM-R-base's 514 position embeddings).
    """
    mp = usable_positions(config)
    if mp is not None and sequence_length > mp:
        raise ConfigError(f"--sequence-length {sequence_length}: longer than the {mp} positions of {option}")


# --------------------------------------------------------------------------------------------
# students


def expand_student_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Student folders from ``--students``: each path is a student folder or a run folder holding
    student folders (direct sub-folders). Repeats are dropped.

    Raises:
        ConfigError: a path does not exist or holds no student.
    """
    found: list[Path] = []
    for raw in paths:
        d = Path(raw)
        if not d.is_dir():
            raise ConfigError(f"--students {d}: no such directory")
        if is_student_dir(d):
            found.append(d)
            continue
        subs = sorted(s for s in d.iterdir() if s.is_dir() and is_student_dir(s))
        if not subs:
            raise ConfigError(f"--students {d}: no xdistill student here (expected config.json with "
                              "\"xdistill_student\": true, or a run folder holding student folders)")
        found += subs
    seen, out = set(), []
    for d in found:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def check_student_onnx(student_dir: Path) -> dict[str, Path]:
    """The student's ONNX files (``fp32``, ``int8``), checked to be exported from its current weights.

    Raises:
        ConfigError: a file is missing (names the export command), unreadable, or exported from other weights.
    """
    return {p: checked_onnx_path(student_dir, p, option=f"--students {student_dir}", hint_int8=True) for p in ("fp32", "int8")}


def student_metrics(student_dir: Path) -> tuple[str | None, dict[str, float | None]]:
    """``(metric name, {runtime: value})`` on the same footing as the teacher's.

    With a training summary (the run's evaluation split, where the teacher was scored too), the
    PyTorch value is the summary's, and each ONNX runtime's is that value plus its difference
    against PyTorch measured by the export's parity check (``onnx/parity.json``), so that the
    teacher and all student rows compare on one evaluation. Without a summary the values are the
    parity check's own; ``(None, {})`` without either.
    """
    p = student_dir / ONNX_DIR / PARITY_FILE
    summary = load_training_summary(student_dir)
    parity = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
    if parity is None and summary is None:
        return None, {}
    k = (summary or parity)["metric"]
    scores = (parity or {}).get("scores") or {}
    measured = {rt: (scores.get(key) or {}).get(k) for rt, key in PARITY_KEYS.items()}
    if summary is None:
        return k, measured
    base = summary["scores"]["student"].get(k)
    if parity is None:
        return k, {"torch-fp32": base}
    torch_parity = measured.get("torch-fp32")
    return k, {rt: (base if rt == "torch-fp32" else
                    None if base is None or v is None or torch_parity is None else base + (v - torch_parity))
               for rt, v in measured.items()}


def student_reference(cfg: dict, where: str) -> ReferenceModel:
    """The reference model a saved student names (``config.json`` key ``reference``; mBERT-base when absent).

    Raises:
        ConfigError: an unknown reference key.
    """
    return get_reference(cfg.get("reference") or DEFAULT_REFERENCE, where)


def load_student_candidate(student_dir: Path) -> Candidate:
    """A saved student with its ONNX files, its reference model and per-runtime metric (``onnx/parity.json``).

    Raises:
        ConfigError: not a student, an unknown task type or reference key, no ONNX files, or a
            student that knows no token ids.
    """
    model, cfg = load_student(student_dir)  # ConfigError for a folder without (complete) student
    where = str(student_dir / STUDENT_CONFIG)
    level = adapter_class(cfg.get("task_type", TokenClassificationAdapter.type), where).level
    reference = student_reference(cfg, where)
    files = check_student_onnx(student_dir)
    known = np.asarray(model.known_input_ids(), dtype=np.int64)
    if known.size == 0:
        raise ConfigError(f"--students {student_dir}: the student has no embedding for any of the teacher's token ids")
    metric, values = student_metrics(student_dir)
    return Candidate(name=display_name(student_dir), role="student", task=str(cfg.get("task", "task")), path=str(student_dir),
                     level=level, num_labels=len(cfg["labels"]), parameters=model.inference_parameters(),
                     known_ids=known, forward=model.inference_logits, reference=reference, onnx=files, metric=metric,
                     metric_values=values, student_dir=student_dir)


# --------------------------------------------------------------------------------------------
# teachers


def default_teacher_dir(student_dir: Path, cfg: dict) -> Path | None:
    """The student's teacher folder: ``teacher_path`` from its config (as given, or relative to the
    student's run folder), else ``STUDENT/../teacher``; ``None`` when no candidate holds a config.json."""
    candidates = []
    tp = cfg.get("teacher_path")
    if tp:
        candidates += [Path(tp), student_dir.parent / tp, student_dir.parent / "checkpoints" / "teacher"]
    candidates.append(student_dir.parent / "teacher")
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    return None


@dataclass
class TeacherRef:
    """A teacher folder and what the students say about it (task, metric on the run's evaluation split)."""

    path: Path
    task: str | None = None
    metric: str | None = None
    metric_value: float | None = None


def _students_teachers(students: Sequence[Path]) -> dict[Path, TeacherRef]:
    """Resolved teacher folder -> :class:`TeacherRef`, from each student's default teacher and training summary."""
    by_student: dict[Path, TeacherRef] = {}
    for s in students:
        cfg = saved_settings(s)
        t = default_teacher_dir(s, cfg)
        if t is None or t.resolve() in by_student:
            continue
        ref = TeacherRef(t, task=cfg.get("task"))
        summary = load_training_summary(s)
        if summary:
            ref.metric = summary.get("metric")
            ref.metric_value = ((summary.get("scores") or {}).get("teacher") or {}).get(ref.metric)
        by_student[t.resolve()] = ref
    return by_student


def resolve_teachers(explicit: Sequence[str] | None, students: Sequence[Path], skip: bool) -> list[TeacherRef]:
    """Teacher folders to time: ``--teachers`` or the students' defaults, deduplicated (``[]`` with ``skip``).

    Raises:
        ConfigError: an explicit folder does not hold a transformers checkpoint.
    """
    if skip:
        return []
    by_student = _students_teachers(students)
    if explicit is None:
        return list(by_student.values())
    out: dict[Path, TeacherRef] = {}
    for raw in explicit:
        d = Path(raw)
        if not (d / "config.json").is_file():
            raise ConfigError(f"--teachers {d}: no transformers checkpoint here (expected a save_pretrained folder with config.json)")
        out.setdefault(d.resolve(), by_student.get(d.resolve(), TeacherRef(d)))
    return list(out.values())


def load_teacher_candidate(ref: TeacherRef, sequence_length: int) -> Candidate:
    """A teacher checkpoint (:meth:`xdistill.teachers.Teacher.load`) as a :class:`Candidate` compared
    with its family's reference model (ONNX files are added later).

    Raises:
        ConfigError: not a token- or sequence-classification checkpoint, ``sequence_length`` (tokens)
            longer than its position embeddings, or a folder whose weights or tokenizer cannot be loaded.
    """
    d = ref.path
    option = f"--teachers {d}"
    config = AutoConfig.from_pretrained(d)
    if level_of_architectures(config.architectures) is None:
        raise ConfigError(f"{option}: config.json names no ...ForTokenClassification or ...ForSequenceClassification architecture")
    check_positions(option, config, sequence_length)
    try:
        teacher = Teacher.load(d)
    except OSError as e:  # transformers' message for missing weights or tokenizer files
        raise ConfigError(f"{option}: cannot load the checkpoint (weights and tokenizer of save_pretrained): {e}") from e
    task = ref.task or teacher.task.get("task")
    return Candidate(name=display_name(d), role="teacher", task=task or "?", path=str(d), level=teacher.level,
                     num_labels=int(config.num_labels), parameters=count_parameters(teacher.model),
                     known_ids=known_config_ids(config), forward=LogitsModule(teacher.model).eval(),
                     reference=teacher.reference, metric=ref.metric, metric_values={"torch-fp32": ref.metric_value},
                     max_positions=config.max_position_embeddings)


def load_candidates(student_paths: Sequence[str | Path], teacher_paths: Sequence[str] | None, no_teachers: bool,
                    sequence_length: int) -> tuple[list[Candidate], list[Candidate]]:
    """``(students, teachers)``, checked (ONNX files, heads, sequence length) before anything slow runs.

    Raises:
        ConfigError: see :func:`expand_student_dirs`, :func:`load_student_candidate`,
            :func:`resolve_teachers` and :func:`load_teacher_candidate`.
    """
    student_dirs = expand_student_dirs(student_paths)
    students = [load_student_candidate(d) for d in student_dirs]
    teachers = [load_teacher_candidate(t, sequence_length) for t in resolve_teachers(teacher_paths, student_dirs, no_teachers)]
    return students, teachers
