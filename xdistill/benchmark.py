"""Batch-inference latency of students, their teachers and mBERT-base (``python -m xdistill benchmark``).

The setting follows the XtremeDistil paper's speedup measurement (Mukherjee & Hassan Awadallah 2020:
1000 queries of 32 tokens in batches of 32 on a CPU): every model is timed on batches of random token ids of
exactly ``--sequence-length`` tokens (attention mask all ones), at each of ``--batch-sizes``
(default 1 and 32), in three runtimes:

* ``torch-fp32``: PyTorch eager (``torch.inference_mode``);
* ``onnx-fp32``: ONNX Runtime on the exported graph;
* ``onnx-int8``: ONNX Runtime on the dynamically int8-quantized graph.

Latency is the wall time (``time.perf_counter``) of one call on one batch: after ``--warmup``
untimed calls, ``--repeats`` timed calls give the median, 90th percentile (``np.percentile``),
mean, min and max in milliseconds; throughput is ``batch_size / median`` sequences per second.
PyTorch and ONNX Runtime use the same fixed number of threads (``--threads``).

The reference is mBERT-base (``bert-base-multilingual-cased``: 12 layers, hidden 768, 12 heads,
FFN 3072, vocabulary 119,547) with the task head of the student it is compared with. When the
Hugging Face hub is not reachable (probed with a short timeout, so an offline machine fails in
about a second instead of half a minute of retries) it is built from that configuration with
random weights: latency does not depend on weight values. The teachers' and mBERT-base's ONNX
files are cached in ``OUTPUT/onnx`` (keyed by their weights/configuration) because exporting and
quantizing mBERT-base takes a while; students use their own ``onnx/model[.int8].onnx`` from
``python -m xdistill export``.

Writes ``OUTPUT/latency.json``, ``OUTPUT/latency.md`` and ``OUTPUT/latency.png``, and for each
student ``STUDENT/latency.json`` (its rows and its mBERT-base reference's) and its model card.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .errors import ConfigError
from .utils import atomic_write_json, atomic_write_text, count_parameters, cpu_model

logger = logging.getLogger(__name__)

RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8")
#: runtime -> key of ``onnx/parity.json``'s ``scores``
PARITY_KEYS = {"torch-fp32": "torch_fp32", "onnx-fp32": "onnx_fp32", "onnx-int8": "onnx_int8"}
TOKEN, SEQUENCE = "token-classification", "sequence-classification"

DEFAULT_MBERT = "bert-base-multilingual-cased"
#: ``bert-base-multilingual-cased``'s configuration (its config.json on the hub), used when the hub is not reachable.
MBERT_BASE_CONFIG = {"vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                     "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
                     "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
                     "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}
RANDOM_NOTE = "random weights: latency does not depend on weight values"
#: seconds to wait for the hub before falling back to random weights
HUB_TIMEOUT_S = 5.0

DEFAULT_BATCH_SIZES = "1,32"
DEFAULT_SEQUENCE_LENGTH = 32
DEFAULT_WARMUP, DEFAULT_REPEATS = 3, 20
QUICK_WARMUP, QUICK_REPEATS = 1, 3

#: goals of the issue, checked at the largest batch size
GOAL_SPEEDUP_NER = 300.0
GOAL_COMPRESSION = 35.0

ONNX_CACHE_DIR = "onnx"
REFERENCE_META = "xdistill_reference"


# --------------------------------------------------------------------------------------------
# settings


@dataclass
class Settings:
    """What is timed and how (see the module docstring)."""

    batch_sizes: list[int]
    sequence_length: int
    warmup: int
    repeats: int
    threads: int
    quick: bool
    seed: int

    def as_dict(self) -> dict:
        return {"batch_sizes": list(self.batch_sizes), "sequence_length": self.sequence_length, "warmup": self.warmup,
                "repeats": self.repeats, "threads": self.threads, "quick": self.quick, "seed": self.seed}


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,32"`` -> ``[1, 32]`` (sorted, without repeats).

    Raises:
        ConfigError: empty, not integers, or not positive.
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise ConfigError(f"--batch-sizes: expected comma-separated positive integers such as 1,32, got {text!r}")
    sizes = []
    for p in parts:
        if not re.fullmatch(r"[0-9]+", p) or int(p) < 1:
            raise ConfigError(f"--batch-sizes: expected comma-separated positive integers such as 1,32, got {p!r} in {text!r}")
        sizes.append(int(p))
    return sorted(set(sizes))


def _parse_int(option: str, text: str | None, default: int, minimum: int) -> int:
    """An integer option given as text (``None``: ``default``).

    Raises:
        ConfigError: not an integer or below ``minimum``.
    """
    if text is None:
        return default
    if not re.fullmatch(r"-?[0-9]+", str(text).strip()) or int(text) < minimum:
        raise ConfigError(f"{option}: expected an integer >= {minimum}, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m xdistill benchmark`` (numbers are parsed as text and checked by :func:`settings_from_args`)."""
    p = argparse.ArgumentParser(
        prog="python -m xdistill benchmark",
        description="Batch-inference latency (median and p90 in ms, sequences/s) of students, their teachers and "
                    "mBERT-base in PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8 (XtremeDistil setting: "
                    "sequence length 32, batch 32, CPU).")
    p.add_argument("--students", nargs="+", required=True, metavar="DIR",
                   help="saved student folders (with onnx/model.onnx and onnx/model.int8.onnx from `xdistill export`), "
                        "or run folders holding them")
    p.add_argument("--teachers", nargs="+", default=None, metavar="DIR",
                   help="teacher folders (save_pretrained); default: each student's teacher_path, or STUDENT/../teacher")
    p.add_argument("--no-teachers", action="store_true", help="do not time the teachers")
    p.add_argument("--mbert", default=DEFAULT_MBERT, metavar="ID_OR_DIR",
                   help=f"mBERT-base reference: a hub id or a folder with config.json (weights used if present); "
                        f"default {DEFAULT_MBERT} (random weights from its configuration when the hub is not reachable)")
    p.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES, help=f"comma-separated (default {DEFAULT_BATCH_SIZES})")
    p.add_argument("--sequence-length", default=None, help=f"tokens per sequence (default {DEFAULT_SEQUENCE_LENGTH})")
    p.add_argument("--warmup", default=None, help=f"untimed calls before timing (default {DEFAULT_WARMUP}; --quick {QUICK_WARMUP})")
    p.add_argument("--repeats", default=None, help=f"timed calls (default {DEFAULT_REPEATS}; --quick {QUICK_REPEATS})")
    p.add_argument("--threads", default=None, help="threads of PyTorch and ONNX Runtime (default torch.get_num_threads())")
    p.add_argument("--seed", default=None, help="seed of the random inputs and random reference weights (default 0)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_WARMUP} warm-up call and {QUICK_REPEATS} repeats (for tests; timings are noisy)")
    p.add_argument("--output-dir", default="runs/latency", help="where latency.json/.md/.png go (default runs/latency)")
    return p


def settings_from_args(a: argparse.Namespace) -> Settings:
    """Check and convert the numeric options.

    Raises:
        ConfigError: a value is not an integer or out of range (the message names the option).
    """
    return Settings(
        batch_sizes=parse_batch_sizes(a.batch_sizes),
        sequence_length=_parse_int("--sequence-length", a.sequence_length, DEFAULT_SEQUENCE_LENGTH, 1),
        warmup=_parse_int("--warmup", a.warmup, QUICK_WARMUP if a.quick else DEFAULT_WARMUP, 0),
        repeats=_parse_int("--repeats", a.repeats, QUICK_REPEATS if a.quick else DEFAULT_REPEATS, 1),
        threads=_parse_int("--threads", a.threads, torch.get_num_threads(), 1),
        quick=bool(a.quick),
        seed=_parse_int("--seed", a.seed, 0, 0),
    )


# --------------------------------------------------------------------------------------------
# models to time


@dataclass
class Candidate:
    """One model to time.

    ``forward(input_ids, attention_mask)`` takes ``(B, T)`` int64 tensors and returns logits;
    ``onnx`` maps ``"fp32"``/``"int8"`` to ONNX files (filled in for teachers and mBERT-base by
    :func:`prepare_reference_onnx`); ``known_ids`` are the token ids inputs are drawn from;
    ``ref_key`` ``(head, num_labels)`` names the mBERT-base reference it is compared with.
    """

    name: str
    role: str                     # "student" | "teacher" | "mbert-base"
    task: str
    path: str
    head: str                     # TOKEN | SEQUENCE
    num_labels: int
    parameters: int
    known_ids: np.ndarray
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    onnx: dict[str, Path] = field(default_factory=dict)
    metric: str | None = None
    metric_values: dict[str, float | None] = field(default_factory=dict)
    max_positions: int | None = None
    student_dir: Path | None = None

    @property
    def ref_key(self) -> tuple[str, int]:
        return (self.head, self.num_labels)


class LogitsModule(nn.Module):
    """A transformers ``...ForTokenClassification``/``...ForSequenceClassification`` as
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


def expand_student_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Student folders from ``--students``: each path is a student folder or a run folder holding
    student folders (direct sub-folders). Repeats are dropped.

    Raises:
        ConfigError: a path does not exist or holds no student.
    """
    from .students.base import is_student_dir

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
    from .onnx_export import checked_onnx_path

    return {p: checked_onnx_path(student_dir, p, option=f"--students {student_dir}", hint_int8=True) for p in ("fp32", "int8")}


def student_metrics(student_dir: Path) -> tuple[str | None, dict[str, float | None]]:
    """``(metric name, {runtime: value})`` on the same footing as the teacher's.

    With a training summary (the run's evaluation split, where the teacher was scored too), the
    PyTorch value is the summary's, and each ONNX runtime's is that value plus its difference
    against PyTorch measured by the export's parity check (``onnx/parity.json``), so that the
    teacher and all student rows compare on one evaluation. Without a summary the values are the
    parity check's own; ``(None, {})`` without either.
    """
    from .model_card import load_training_summary
    from .onnx_export import ONNX_DIR, PARITY_FILE

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
    torch_parity = measured.get("torch-fp32")
    return k, {rt: (base if rt == "torch-fp32" else
                    None if base is None or v is None or torch_parity is None else base + (v - torch_parity))
               for rt, v in measured.items()} if parity else {"torch-fp32": base}


def known_student_ids(vocab_map: torch.Tensor) -> np.ndarray:
    """Teacher ids the student knows: ``vocab_map`` entry not 0 (padding) and not 1 (unknown)."""
    return np.flatnonzero(vocab_map.cpu().numpy() > 1).astype(np.int64)


def known_config_ids(config) -> np.ndarray:
    """All ids of a transformers model's vocabulary except its padding id."""
    ids = np.arange(int(config.vocab_size), dtype=np.int64)
    pad = getattr(config, "pad_token_id", None)
    return ids[ids != pad] if pad is not None else ids


def load_student_candidate(student_dir: Path) -> Candidate:
    """A saved student with its ONNX files and per-runtime metric (``onnx/parity.json``).

    Raises:
        ConfigError: not a student, no ONNX files, or a student that knows no token ids.
    """
    from .students.base import load_student

    model, cfg = load_student(student_dir)  # ConfigError for a folder without (complete) student
    files = check_student_onnx(student_dir)
    known = known_student_ids(model.vocab_map)
    if known.size == 0:
        raise ConfigError(f"--students {student_dir}: the student's vocabulary map knows no token ids")
    metric, values = student_metrics(student_dir)
    return Candidate(name=display_name(student_dir), role="student", task=str(cfg.get("task", "task")), path=str(student_dir),
                     head=cfg.get("task_type", TOKEN), num_labels=len(cfg["labels"]), parameters=model.inference_parameters(),
                     known_ids=known, forward=model.inference_logits, onnx=files, metric=metric,
                     metric_values=values, student_dir=student_dir)


def _head_of(config) -> str:
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "SequenceClassification" in archs:
        return SEQUENCE
    if "TokenClassification" in archs:
        return TOKEN
    return ""


def _auto_class(head: str):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForTokenClassification if head == TOKEN else AutoModelForSequenceClassification


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


def resolve_teachers(explicit: Sequence[str] | None, students: Sequence[Path], skip: bool) -> list[TeacherRef]:
    """Teacher folders to time: ``--teachers`` or the students' defaults, deduplicated.

    Raises:
        ConfigError: an explicit folder does not hold a transformers checkpoint.
    """
    from .model_card import load_training_summary

    if skip:
        return []
    by_student: dict[Path, TeacherRef] = {}
    for s in students:
        cfg = json.loads((s / "config.json").read_text(encoding="utf-8"))
        t = default_teacher_dir(s, cfg)
        if t is None or t.resolve() in by_student:
            continue
        ref = TeacherRef(t, task=cfg.get("task"))
        summary = load_training_summary(s)
        if summary:
            ref.metric = summary.get("metric")
            ref.metric_value = ((summary.get("scores") or {}).get("teacher") or {}).get(ref.metric)
        by_student[t.resolve()] = ref
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
    """A teacher checkpoint as a :class:`Candidate` (ONNX files are added later).

    Raises:
        ConfigError: not a token- or sequence-classification checkpoint, or ``sequence_length`` is
            longer than its position embeddings.
    """
    from transformers import AutoConfig

    d = ref.path
    config = AutoConfig.from_pretrained(d)
    head = _head_of(config)
    if not head:
        raise ConfigError(f"--teachers {d}: config.json names no ...ForTokenClassification or ...ForSequenceClassification architecture")
    _check_positions(f"--teachers {d}", config, sequence_length)
    model = _auto_class(head).from_pretrained(d).eval()
    task = ref.task
    if task is None:
        meta = d / "xdistill_teacher.json"
        task = (json.loads(meta.read_text()).get("task") or {}).get("task") if meta.is_file() else None
    wrapped = LogitsModule(model).eval()
    return Candidate(name=display_name(d), role="teacher", task=task or "?", path=str(d), head=head,
                     num_labels=int(config.num_labels), parameters=count_parameters(model),
                     known_ids=known_config_ids(config), forward=wrapped, metric=ref.metric,
                     metric_values={"torch-fp32": ref.metric_value}, max_positions=config.max_position_embeddings)


def _check_positions(option: str, config, sequence_length: int) -> None:
    mp = getattr(config, "max_position_embeddings", None)
    if mp is not None and sequence_length > int(mp):
        raise ConfigError(f"--sequence-length {sequence_length}: longer than the {mp} positions of {option}")


# --------------------------------------------------------------------------------------------
# mBERT-base reference


@dataclass
class MbertSource:
    """Where the mBERT-base reference comes from: ``config`` (a transformers config), ``weights``
    ``"pretrained"`` (loaded from ``weights_from``) or ``"random"``, and a note for the reports."""

    ref: str
    source: str
    config: object
    weights: str
    weights_from: str | None
    note: str
    local_only: bool = False


def _has_weights(d: Path) -> bool:
    return any(d.glob("*.safetensors")) or any(d.glob("pytorch_model*.bin"))


def hub_probe(repo_id: str, timeout: float = HUB_TIMEOUT_S) -> tuple[bool, str]:
    """``(reachable, reason)``: one HEAD request for ``repo_id``'s config.json, no retries.

    A machine without network answers in well under a second (``from_pretrained`` retries for about
    26 s first). ``HF_HUB_OFFLINE`` counts as unreachable.

    Raises:
        ConfigError: the hub answered that ``repo_id`` does not exist (or is not a valid id).
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HFValidationError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if constants.HF_HUB_OFFLINE:
        return False, "HF_HUB_OFFLINE is set"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout)
    except (RepositoryNotFoundError, EntryNotFoundError, RevisionNotFoundError, GatedRepoError, HFValidationError) as e:
        raise ConfigError(f"--mbert {repo_id}: not a folder with config.json and not a usable hub model ({type(e).__name__})") from e
    except Exception as e:  # connection refused, DNS, timeouts, proxies: the hub is not reachable
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}".rstrip(": ")
    return True, ""


def _cached_hub_file(repo_id: str, filename: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        p = try_to_load_from_cache(repo_id, filename)
    except Exception:
        return None
    return p if isinstance(p, str) else None


def _config_summary(c) -> str:
    return (f"{c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, intermediate "
            f"{c.intermediate_size}, vocabulary {c.vocab_size:,}, {c.max_position_embeddings} positions")


def resolve_mbert(ref: str) -> MbertSource:
    """Find the mBERT-base reference: a local folder with config.json (weights used if present); else
    the hub (probed first, see :func:`hub_probe`); else the local hub cache; else, for the default id
    only, :data:`MBERT_BASE_CONFIG` with random weights.

    Raises:
        ConfigError: a folder without config.json, or a non-default id that is neither reachable nor cached.
    """
    from transformers import AutoConfig, BertConfig

    p = Path(ref)
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"--mbert {ref}: expected a hub id or a folder with config.json")
        config = AutoConfig.from_pretrained(p)
        if _has_weights(p):
            return MbertSource(ref, f"local folder {p}", config, "pretrained", str(p),
                               f"weights from {p}; the task head is randomly initialised where it does not match", True)
        return MbertSource(ref, f"local folder {p} (config.json only)", config, "random", None,
                           f"{RANDOM_NOTE}; configuration of {p}: {_config_summary(config)}")
    reachable, reason = hub_probe(ref)
    if reachable:
        config = AutoConfig.from_pretrained(ref)
        return MbertSource(ref, f"hub {ref}", config, "pretrained", ref,
                           f"pretrained weights of {ref}; the task head is randomly initialised")
    cached = _cached_hub_file(ref, "config.json")
    if cached:
        config = AutoConfig.from_pretrained(ref, local_files_only=True)
        if _cached_hub_file(ref, "model.safetensors") or _cached_hub_file(ref, "pytorch_model.bin"):
            return MbertSource(ref, f"hub cache {ref} (hub not reachable: {reason})", config, "pretrained", ref,
                               f"pretrained weights of {ref} from the local cache; the task head is randomly initialised", True)
        return MbertSource(ref, f"hub cache {ref}, configuration only (hub not reachable: {reason})", config, "random", None,
                           f"{RANDOM_NOTE}; configuration of {ref}: {_config_summary(config)}")
    if ref != DEFAULT_MBERT:
        raise ConfigError(f"--mbert {ref}: not a local folder with config.json, and the hub is not reachable ({reason})")
    config = BertConfig(**MBERT_BASE_CONFIG)
    return MbertSource(ref, f"configuration of {ref} built in (hub not reachable: {reason})", config, "random", None,
                       f"{RANDOM_NOTE}; built from {ref}'s configuration: {_config_summary(config)}")


def build_mbert_model(src: MbertSource, head: str, num_labels: int, seed: int) -> tuple[nn.Module, str]:
    """mBERT-base with a ``head`` of ``num_labels`` classes, in eval mode; returns ``(model, weights)``
    where ``weights`` is ``"pretrained"`` or ``"random"`` (a failed weight download falls back to
    random weights seeded with ``seed``, and says so in the log)."""
    config = copy.deepcopy(src.config)
    config.num_labels = num_labels
    cls = _auto_class(head)
    if src.weights == "pretrained":
        try:
            model = cls.from_pretrained(src.weights_from, config=config, ignore_mismatched_sizes=True,
                                        local_files_only=src.local_only)
            return model.eval(), "pretrained"
        except Exception as e:  # a download that fails half-way: latency does not need the weights
            logger.warning("mBERT-base weights from %s could not be loaded (%s); using random weights", src.weights_from, e)
    torch.manual_seed(seed)
    return cls.from_config(config).eval(), "random"


def mbert_candidate(src: MbertSource, key: tuple[str, int], tasks: Sequence[str], seed: int,
                    sequence_length: int) -> tuple[Candidate, dict]:
    """The mBERT-base reference for a ``(head, num_labels)`` key, and its description for ``latency.json``.

    Raises:
        ConfigError: ``sequence_length`` is longer than its position embeddings.
    """
    head, n = key
    _check_positions(f"--mbert {src.ref}", src.config, sequence_length)
    model, weights = build_mbert_model(src, head, n, seed)
    short = "token" if head == TOKEN else "sequence"
    c = Candidate(name=f"mBERT-base ({short}, {n} labels)", role="mbert-base", task=",".join(sorted(set(tasks))) or "?",
                  path=src.ref, head=head, num_labels=n, parameters=count_parameters(model),
                  known_ids=known_config_ids(src.config), forward=LogitsModule(model).eval(),
                  max_positions=src.config.max_position_embeddings)
    info = {"name": c.name, "head": head, "num_labels": n, "weights": weights, "parameters": c.parameters}
    return c, info


# --------------------------------------------------------------------------------------------
# ONNX files of teachers and mBERT-base


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower()


def reference_identity(c: Candidate, seed: int, src: MbertSource | None = None, weights: str | None = None) -> str:
    """What an exported file must match to be reused: the teacher's weight files' SHA-256, or
    mBERT-base's source, weights kind, configuration and head (and seed for random weights)."""
    from .onnx_export import file_sha256

    if c.role == "teacher":
        files = sorted(Path(c.path).glob("*.safetensors")) + sorted(Path(c.path).glob("pytorch_model*.bin"))
        ident = {"teacher": str(Path(c.path).resolve()), "weights": {f.name: file_sha256(f) for f in files}}
    else:
        cfg = hashlib.sha256(src.config.to_json_string(use_diff=False).encode()).hexdigest()
        ident = {"mbert": src.ref, "weights": weights, "config_sha256": cfg, "seed": seed if weights == "random" else None}
    ident.update(head=c.head, num_labels=c.num_labels)
    return json.dumps(ident, sort_keys=True)


def onnx_cache_paths(out_dir: Path, c: Candidate) -> dict[str, Path]:
    """``OUT/onnx/<name>.onnx`` and ``OUT/onnx/<name>.int8.onnx`` of a teacher or mBERT-base reference."""
    if c.role == "teacher":
        name = f"teacher-{_slug(c.name)}-{hashlib.sha256(str(Path(c.path).resolve()).encode()).hexdigest()[:8]}"
    else:
        name = f"mbert-base-{'token' if c.head == TOKEN else 'sequence'}-{c.num_labels}"
    d = Path(out_dir) / ONNX_CACHE_DIR
    return {"fp32": d / f"{name}.onnx", "int8": d / f"{name}.int8.onnx"}


def _matches(path: Path, identity: str) -> bool:
    from .onnx_export import onnx_metadata

    try:
        return path.is_file() and onnx_metadata(path).get(REFERENCE_META) == identity
    except Exception:
        return False


def prepare_reference_onnx(c: Candidate, out_dir: Path, identity: str, threads: int) -> dict:
    """Export ``c.forward`` to ONNX fp32 and int8 under ``OUT/onnx`` unless files with the same
    identity are there; sets ``c.onnx``. Returns ``{"cached", "export_seconds", "quantize_seconds",
    "max_abs_logit_diff"}`` (the last: ORT fp32 against PyTorch on a ``(2, 8)`` batch, after a new export).

    Raises:
        ExportError: the export or quantization failed.
    """
    from .onnx_export import export_module_to_onnx, ort_session, quantize_int8

    paths = onnx_cache_paths(out_dir, c)
    c.onnx = paths
    if all(_matches(p, identity) for p in paths.values()):
        logger.info("%s: reusing %s and %s", c.name, paths["fp32"], paths["int8"])
        return {"cached": True, "export_seconds": None, "quantize_seconds": None, "max_abs_logit_diff": None}
    ids = torch.as_tensor(c.known_ids[np.arange(8) % len(c.known_ids)])
    example = (torch.stack([ids[:4], ids[4:]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    logger.info("%s: exporting to %s (this takes a while for mBERT-base)", c.name, paths["fp32"])
    t0 = time.perf_counter()
    export_module_to_onnx(c.forward, example, paths["fp32"], c.head == TOKEN, {REFERENCE_META: identity})
    t1 = time.perf_counter()
    quantize_int8(paths["fp32"], paths["int8"])
    t2 = time.perf_counter()
    check = torch.as_tensor(np.resize(c.known_ids, 16).reshape(2, 8))
    with torch.inference_mode():
        ref = c.forward(check, torch.ones_like(check)).numpy()
    got = ort_session(paths["fp32"], threads).run(["logits"], {"input_ids": check.numpy(),
                                                               "attention_mask": np.ones_like(check.numpy())})[0]
    diff = float(np.abs(got - ref).max())
    logger.info("%s: export %.1f s, int8 quantization %.1f s, ORT fp32 vs torch max |diff| %.1e", c.name, t1 - t0, t2 - t1, diff)
    return {"cached": False, "export_seconds": round(t1 - t0, 2), "quantize_seconds": round(t2 - t1, 2), "max_abs_logit_diff": diff}


# --------------------------------------------------------------------------------------------
# timing


def make_inputs(known_ids: np.ndarray, batch_size: int, sequence_length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(B, T)`` int64 ``input_ids`` drawn (seeded) from ``known_ids`` and an all-ones ``attention_mask``."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(known_ids, size=(batch_size, sequence_length), replace=True).astype(np.int64)
    return ids, np.ones_like(ids)


def time_calls(call: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Run ``call`` ``warmup`` times untimed, then ``repeats`` times; return each timed call's wall time in ms."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def latency_stats(times_ms: Sequence[float], batch_size: int) -> dict:
    """``median_ms``, ``p90_ms`` (``np.percentile``, linear), ``mean_ms``, ``min_ms``, ``max_ms`` and
    ``sequences_per_second`` (``batch_size / median``) of per-batch times in ms."""
    t = np.asarray(times_ms, dtype=np.float64)
    median = float(np.median(t))
    return {"median_ms": median, "p90_ms": float(np.percentile(t, 90)), "mean_ms": float(t.mean()),
            "min_ms": float(t.min()), "max_ms": float(t.max()),
            "sequences_per_second": batch_size / (median / 1000.0) if median > 0 else math.inf}


def runtime_call(runtime: str, c: Candidate, session, ids: np.ndarray, mask: np.ndarray) -> Callable[[], object]:
    """A zero-argument call running one batch in ``runtime`` (inputs converted beforehand, outside the timing)."""
    if runtime == "torch-fp32":
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)

        def call():
            with torch.inference_mode():
                return c.forward(t_ids, t_mask)
        return call
    feed = {"input_ids": ids, "attention_mask": mask}
    return lambda: session.run(["logits"], feed)


def measure(c: Candidate, s: Settings) -> dict[tuple[str, int], dict]:
    """Latency statistics of ``c`` per ``(runtime, batch_size)`` (see :func:`latency_stats`), all in ms."""
    from .onnx_export import ort_session

    out = {}
    for runtime in RUNTIMES:
        session = None if runtime == "torch-fp32" else ort_session(c.onnx[runtime.split("-")[1]], s.threads)
        for b in s.batch_sizes:
            ids, mask = make_inputs(c.known_ids, b, s.sequence_length, s.seed)
            out[(runtime, b)] = latency_stats(time_calls(runtime_call(runtime, c, session, ids, mask), s.warmup, s.repeats), b)
            logger.info("%-40s %-10s batch %3d: median %9.3f ms, p90 %9.3f ms", c.name, runtime, b,
                        out[(runtime, b)]["median_ms"], out[(runtime, b)]["p90_ms"])
        del session
    return out


# --------------------------------------------------------------------------------------------
# rows, speedups, goals


def make_rows(measured: list[tuple[Candidate, dict]], refs: dict[tuple[str, int], Candidate], s: Settings) -> list[dict]:
    """One row per (model, runtime, batch size) in the ``latency.json`` schema, with speedup and
    compression against the mBERT-base reference of the same head (same runtime and batch size)."""
    by_name = {c.name: m for c, m in measured}
    rows = []
    for c, m in measured:
        ref = refs[c.ref_key]
        ref_m = by_name.get(ref.name)
        for runtime in RUNTIMES:
            for b in s.batch_sizes:
                st = m[(runtime, b)]
                ref_ms = ref_m[(runtime, b)]["median_ms"] if ref_m else None
                rows.append({"model": c.name, "role": c.role, "task": c.task, "path": c.path, "runtime": runtime,
                             "batch_size": b, "sequence_length": s.sequence_length, **st, "parameters": int(c.parameters),
                             "compression_vs_mbert_base": ref.parameters / c.parameters,
                             "metric": c.metric, "metric_value": c.metric_values.get(runtime),
                             "speedup_vs_mbert_base": ref_ms / st["median_ms"] if ref_ms and st["median_ms"] > 0 else None})
    return rows


def _row(rows: list[dict], model: str, runtime: str, b: int) -> dict:
    return next(r for r in rows if r["model"] == model and r["runtime"] == runtime and r["batch_size"] == b)


def student_goals(c: Candidate, rows: list[dict], s: Settings) -> dict:
    """The issue's goals for one student: speedup against mBERT-base in PyTorch at the largest batch
    size (>= 300x for a NER student), ORT fp32 not slower than PyTorch at every batch size, int8
    faster than fp32 (largest batch size), compression >= 35x; numbers and booleans."""
    b = max(s.batch_sizes)
    torch_row = _row(rows, c.name, "torch-fp32", b)
    speedup = torch_row["speedup_vs_mbert_base"]
    speedup_goal = GOAL_SPEEDUP_NER if c.head == TOKEN else None
    ort_vs_torch = {str(bs): _row(rows, c.name, "torch-fp32", bs)["median_ms"] / _row(rows, c.name, "onnx-fp32", bs)["median_ms"]
                    for bs in s.batch_sizes}
    int8_vs_fp32 = {str(bs): _row(rows, c.name, "onnx-fp32", bs)["median_ms"] / _row(rows, c.name, "onnx-int8", bs)["median_ms"]
                    for bs in s.batch_sizes}
    compression = torch_row["compression_vs_mbert_base"]
    g = {"task": c.task, "task_type": c.head, "batch_size": b,
         "speedup_torch_vs_mbert_base": speedup, "speedup_goal": speedup_goal,
         "speedup_goal_met": (speedup is not None and speedup >= speedup_goal) if speedup_goal else None,
         "onnx_fp32_speedup_vs_torch": ort_vs_torch,
         "onnx_fp32_not_slower_than_torch": all(v >= 1.0 for v in ort_vs_torch.values()),
         "int8_speedup_vs_fp32": int8_vs_fp32, "int8_faster_than_fp32": all(v > 1.0 for v in int8_vs_fp32.values()),
         "compression_vs_mbert_base": compression, "compression_goal": GOAL_COMPRESSION,
         "compression_goal_met": compression >= GOAL_COMPRESSION}
    checks = [g["speedup_goal_met"], g["onnx_fp32_not_slower_than_torch"], g["int8_faster_than_fp32"], g["compression_goal_met"]]
    g["all_met"] = all(x for x in checks if x is not None)
    return g


def goals(students: Sequence[Candidate], rows: list[dict], s: Settings) -> dict:
    """``latency.json``'s ``goals``: the targets and :func:`student_goals` per student."""
    return {"batch_size": max(s.batch_sizes),
            "targets": {"speedup_torch_vs_mbert_base_ner": GOAL_SPEEDUP_NER, "onnx_fp32_not_slower_than_torch": True,
                        "int8_faster_than_fp32": True, "compression_vs_mbert_base": GOAL_COMPRESSION},
            "students": {c.name: student_goals(c, rows, s) for c in students}}


# --------------------------------------------------------------------------------------------
# reports


def machine_info(threads: int) -> dict:
    """CPU, cores, threads and library versions for ``latency.json``."""
    import onnxruntime
    import psutil
    import transformers

    return {"cpu": cpu_model(), "physical_cores": psutil.cpu_count(logical=False), "logical_cores": os.cpu_count(),
            "threads": threads, "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__}


ROW_COLUMNS = ["model", "role", "task", "runtime", "batch_size", "median_ms", "p90_ms", "sequences_per_second",
               "parameters", "compression_vs_mbert_base", "metric", "metric_value", "speedup_vs_mbert_base"]


#: tabulate float format per column of the rows table
ROW_FORMATS = {"median_ms": ".3f", "p90_ms": ".3f", "sequences_per_second": ".1f", "compression_vs_mbert_base": ".1f",
               "metric_value": ".2f", "speedup_vs_mbert_base": ".1f"}


def _rows_table(rows) -> str:
    """The rows as a Markdown table (ms with 3 decimals, missing values as "-")."""
    cols = [c for c in ROW_COLUMNS if c in rows.columns]
    df = rows[cols].astype(object)
    df = df.where(df.notna(), None)  # tabulate writes None as missingval, NaN as "nan"
    return df.to_markdown(index=False, floatfmt=[ROW_FORMATS.get(c, "g") for c in cols], missingval="-")


def render_markdown(result: dict) -> str:
    """``latency.md``: machine and settings, the mBERT-base note, all rows, speedups pivoted by model x (runtime, batch size), goals."""
    import pandas as pd

    m, st, mb = result["machine"], result["settings"], result["mbert_base"]
    rows = pd.DataFrame(result["rows"])
    lines = ["# Batch-inference latency", "",
             f"Machine: {m['cpu']} ({m['physical_cores']} physical / {m['logical_cores']} logical cores), {m['threads']} "
             f"threads; {m['platform']}; Python {m['python']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
             f"transformers {m['transformers']}, numpy {m['numpy']}.", "",
             f"Settings: batch sizes {', '.join(map(str, st['batch_sizes']))}; sequence length {st['sequence_length']} "
             f"(random token ids, no padding); {st['warmup']} warm-up and {st['repeats']} timed calls per cell"
             f"{' (--quick: noisy)' if st['quick'] else ''}; seed {st['seed']}. Latency is the wall time of one call on "
             "one batch (median and 90th percentile, ms); sequences/s = batch size / median.", "",
             f"mBERT-base: {mb['source']}; weights {mb['weights']} ({mb['note']}); {mb['parameters']:,} parameters with "
             "the task head (the paper's count is 177.3M).", "",
             "## All measurements", "", _rows_table(rows), ""]
    piv = rows.pivot_table(index="model", columns=["runtime", "batch_size"], values="speedup_vs_mbert_base", sort=False)
    piv.columns = [f"{rt} b{b}" for rt, b in piv.columns]
    lines += ["## Speedup against mBERT-base (same runtime and batch size)", "", piv.to_markdown(floatfmt=".1f", missingval="-"), ""]
    g = result.get("goals", {}).get("students", {})
    if g:
        keep = ["speedup_torch_vs_mbert_base", "speedup_goal", "speedup_goal_met", "onnx_fp32_speedup_vs_torch",
                "onnx_fp32_not_slower_than_torch", "int8_speedup_vs_fp32", "int8_faster_than_fp32", "compression_vs_mbert_base",
                "compression_goal_met", "all_met"]
        gt = pd.DataFrame({k: {c: _per_batch(v[c]) if isinstance(v.get(c), dict) else v.get(c) for c in keep}
                           for k, v in g.items()}).T
        lines += [f"## Goals (batch size {result['goals']['batch_size']})", "", gt.to_markdown(floatfmt=".2f", missingval="-"), ""]
    return "\n".join(lines)


def _per_batch(ratios: dict) -> str:
    """``{"1": 2.5, "32": 1.4}`` -> ``"b1 2.50x, b32 1.40x"``."""
    return ", ".join(f"b{b} {x:.2f}x" for b, x in ratios.items())


RUNTIME_STYLE = {"torch-fp32": ("o", "tab:blue"), "onnx-fp32": ("s", "tab:orange"), "onnx-int8": ("^", "tab:green")}


def _short_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def _plot_panel(ax, rows: list[dict], panel: tuple[str, str] | None, refs_ms: dict[str, list[float]]) -> None:
    """One panel: latency (log x) against the metric (or, when no model has one, per model); point
    size by parameters, marker/colour by runtime, one label per model; mBERT-base as dashed vertical
    lines per runtime; models of the panel's task without a metric are named below the axes."""
    others = [r for r in rows if r["role"] != "mbert-base"]
    if panel is None:
        pts = others
    else:
        pts = [r for r in others if (r["task"], r["metric"]) == panel and r["metric_value"] is not None]
    names = list(dict.fromkeys(r["model"] for r in pts))
    pmin = min((r["parameters"] for r in pts), default=1)
    labelled: set[str] = set()
    for r in pts:
        marker, colour = RUNTIME_STYLE[r["runtime"]]
        y = r["metric_value"] if panel is not None else names.index(r["model"])
        ax.scatter(r["median_ms"], y, s=30 + 120 * math.log10(max(r["parameters"], 1) / pmin + 1), marker=marker,
                   color=colour, alpha=0.8, edgecolors="black", linewidths=0.5, label=r["runtime"])
        if r["model"] not in labelled:
            labelled.add(r["model"])
            ax.annotate(f"{r['model']} ({_short_count(r['parameters'])})", (r["median_ms"], y), textcoords="offset points",
                        xytext=(6, 6), fontsize=7)
    for rt, xs in refs_ms.items():
        for x in xs:
            ax.axvline(x, color=RUNTIME_STYLE[rt][1], linestyle="--", linewidth=1, label=f"mBERT-base {rt}")
    ax.set_xscale("log")
    ax.set_xlabel("latency per batch (ms, log scale)")
    if panel is None:
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title("latency (no model has a recorded metric)", fontsize=9)
    else:
        ax.set_ylabel(f"{panel[1]} (%)")
        ax.set_title(f"{panel[0]}: {panel[1]} against latency", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="best", markerscale=0.6)
    ax.grid(True, which="both", alpha=0.3)


def write_plot(result: dict, path: Path) -> None:
    """``latency.png``: one panel per (task, metric), at the largest batch size; point size by
    parameters, marker/colour by runtime; mBERT-base (random weights, no metric) as vertical lines.
    Saved to a temporary name in the same folder, then ``os.replace``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = result["settings"]
    b = max(st["batch_sizes"])
    rows = [r for r in result["rows"] if r["batch_size"] == b]
    panels = sorted({(r["task"], r["metric"]) for r in rows if r["role"] != "mbert-base" and r["metric_value"] is not None})
    panels = panels or [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        tasks = {r["task"] for r in rows if r["role"] != "mbert-base" and (panel is None or (r["task"], r["metric"]) == panel)}
        refs = [r for r in rows if r["role"] == "mbert-base" and set(r["task"].split(",")) & tasks] or \
            [r for r in rows if r["role"] == "mbert-base"]
        refs_ms: dict[str, list[float]] = {}
        for r in refs:
            refs_ms.setdefault(r["runtime"], []).append(r["median_ms"])
        _plot_panel(ax, rows, panel, refs_ms)
    undrawn = sorted({r["model"] for r in rows if r["role"] != "mbert-base"}
                     - {r["model"] for r in rows if r["metric_value"] is not None})
    if panels != [None] and undrawn:
        fig.text(0.01, 0.01, "no metric recorded, not drawn: " + ", ".join(undrawn), fontsize=7)
    fig.suptitle(f"Batch-inference latency at batch size {b}, sequence length {st['sequence_length']}, "
                 f"{st['threads']} thread(s)\nmedian of {st['repeats']} runs; mBERT-base (dashed, "
                 f"{result['mbert_base']['weights']} weights, no metric) per runtime", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def student_result(result: dict, c: Candidate, ref: Candidate) -> dict:
    """``STUDENT/latency.json``: the same schema with only this student's rows and its mBERT-base reference's."""
    rows = [r for r in result["rows"] if r["model"] in (c.name, ref.name)]
    g = dict(result["goals"])
    g["students"] = {c.name: result["goals"]["students"][c.name]}
    return {**{k: v for k, v in result.items() if k not in ("rows", "goals")}, "rows": rows, "goals": g}


def write_outputs(result: dict, out_dir: Path, students: Sequence[Candidate], refs: dict) -> None:
    """Write ``latency.json``/``.md``/``.png`` into ``out_dir`` and each student's ``latency.json`` and model card."""
    from .model_card import LATENCY_FILE, write_model_card

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "latency.json", result)
    atomic_write_text(out_dir / "latency.md", render_markdown(result))
    write_plot(result, out_dir / "latency.png")
    for c in students:
        atomic_write_json(c.student_dir / LATENCY_FILE, student_result(result, c, refs[c.ref_key]))
        write_model_card(c.student_dir)


def print_summary(result: dict, out_dir: Path) -> None:
    """A few lines on stdout: per student at the largest batch size, speedups and goals."""
    g = result["goals"]
    b = g["batch_size"]
    st = result["settings"]
    print(f"latency at batch size {b}, sequence length {st['sequence_length']}, {st['threads']} thread(s) on "
          f"{result['machine']['cpu']}; mBERT-base weights: {result['mbert_base']['weights']}")
    for r in result["rows"]:
        if r["batch_size"] == b:
            sp = r["speedup_vs_mbert_base"]
            print(f"  {r['model']:<40} {r['runtime']:<10} median {r['median_ms']:10.3f} ms  p90 {r['p90_ms']:10.3f} ms  "
                  f"{r['sequences_per_second']:10.1f} seq/s  speedup {sp if sp is None else round(sp, 1)}x")
    for name, v in g["students"].items():
        print(f"  goals {name}: torch speedup {v['speedup_torch_vs_mbert_base']:.1f}x"
              f"{'' if v['speedup_goal'] is None else ' (goal >= %gx: %s)' % (v['speedup_goal'], v['speedup_goal_met'])}; "
              f"ORT fp32 not slower than torch: {v['onnx_fp32_not_slower_than_torch']}; int8 vs fp32 "
              f"{_per_batch(v['int8_speedup_vs_fp32'])} ({v['int8_faster_than_fp32']}); compression {v['compression_vs_mbert_base']:.1f}x "
              f"(goal >= {v['compression_goal']:g}x: {v['compression_goal_met']})")
    print(f"wrote {out_dir / 'latency.json'}, {out_dir / 'latency.md'}, {out_dir / 'latency.png'}")


# --------------------------------------------------------------------------------------------
# main


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ConfigError("latency.png needs matplotlib: pip install matplotlib") from e


def prepare_candidates(a: argparse.Namespace, s: Settings) -> tuple[list[Candidate], list[Candidate], MbertSource]:
    """Students and teachers, checked (ONNX files, heads, sequence length) before anything slow runs."""
    student_dirs = expand_student_dirs(a.students)
    students = [load_student_candidate(d) for d in student_dirs]
    teachers = [load_teacher_candidate(t, s.sequence_length)
                for t in resolve_teachers(a.teachers, student_dirs, a.no_teachers)]
    return students, teachers, resolve_mbert(a.mbert)


def build_references(src: MbertSource, models: Sequence[Candidate], s: Settings) -> tuple[dict, list[dict]]:
    """One mBERT-base per ``(head, num_labels)`` the students and teachers need; returns them and their descriptions."""
    keys: dict[tuple[str, int], list[str]] = {}
    for c in models:
        keys.setdefault(c.ref_key, []).append(c.task)
    refs, infos = {}, []
    for key, tasks in keys.items():
        refs[key], info = mbert_candidate(src, key, tasks, s.seed, s.sequence_length)
        infos.append(info)
    return refs, infos


def run_benchmark(a: argparse.Namespace, s: Settings) -> dict:
    """Load, export (teachers, mBERT-base), time everything and assemble the ``latency.json`` dictionary."""
    out_dir = Path(a.output_dir)
    students, teachers, src = prepare_candidates(a, s)
    refs, infos = build_references(src, students + teachers, s)
    for c, info in zip(refs.values(), infos):
        info["onnx"] = prepare_reference_onnx(c, out_dir, reference_identity(c, s.seed, src, info["weights"]), s.threads)
        info["onnx_files"] = {k: str(v) for k, v in c.onnx.items()}
    for t in teachers:
        prepare_reference_onnx(t, out_dir, reference_identity(t, s.seed), s.threads)
    measured = [(c, measure(c, s)) for c in [*students, *teachers, *refs.values()]]
    rows = make_rows(measured, refs, s)
    weights = "random" if any(i["weights"] == "random" for i in infos) else "pretrained"
    note = src.note if weights == src.weights else f"{RANDOM_NOTE} (the pretrained weights could not be loaded)"
    first = infos[0]
    result = {"settings": s.as_dict(), "machine": machine_info(s.threads),
              "mbert_base": {"source": src.source, "weights": weights, "note": note, "parameters": first["parameters"],
                             "paper_parameters": _paper_parameters(), "references": infos},
              "rows": rows, "goals": goals(students, rows, s)}
    write_outputs(result, out_dir, students, refs)
    return result


def _paper_parameters() -> int:
    from .report import MBERT_BASE_PARAMETERS

    return MBERT_BASE_PARAMETERS


def main(argv: list[str]) -> int:
    """``python -m xdistill benchmark``: time students, teachers and mBERT-base; write the reports.

    Raises:
        ConfigError: bad options, a folder without a student, a student without ONNX files, a teacher
            folder without a checkpoint, or an unusable ``--mbert``.
    """
    a = build_parser().parse_args(argv)
    s = settings_from_args(a)
    _check_matplotlib()
    before = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        result = run_benchmark(a, s)
    finally:
        torch.set_num_threads(before)
    print_summary(result, Path(a.output_dir))
    return 0
