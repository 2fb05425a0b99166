"""Options of ``python -m xdistill benchmark``: what is timed and how (:class:`Settings`), the
parser, and where each reference model comes from (:class:`ReferenceChoice`)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

import torch

from ...errors import ConfigError
from ...teachers.references import REFERENCE_MODELS, ReferenceModel, get_reference

#: runtimes every model is timed in, in report order
RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8")
#: ONNX Runtime runtime -> precision of its ONNX file (``fp32``: ``model.onnx``, ``int8``: ``model.int8.onnx``)
ONNX_PRECISION = {"onnx-fp32": "fp32", "onnx-int8": "int8"}
#: runtime -> key of ``onnx/parity.json``'s ``scores``
PARITY_KEYS = {"torch-fp32": "torch_fp32", "onnx-fp32": "onnx_fp32", "onnx-int8": "onnx_int8"}

DEFAULT_BATCH_SIZES = "1,32"
DEFAULT_SEQUENCE_LENGTH = 32
DEFAULT_WARMUP, DEFAULT_REPEATS = 3, 20
QUICK_WARMUP, QUICK_REPEATS = 1, 3
DEFAULT_OUTPUT_DIR = "runs/latency"


@dataclass
class Settings:
    """What is timed and how: ``batch_sizes`` (sequences per batch), ``sequence_length`` (tokens per
    sequence), ``warmup`` untimed and ``repeats`` timed calls per (model, runtime, batch size),
    ``threads`` of PyTorch and ONNX Runtime, ``seed`` of the inputs and of random reference weights."""

    batch_sizes: list[int]
    sequence_length: int
    warmup: int
    repeats: int
    threads: int
    quick: bool
    seed: int

    def as_dict(self) -> dict:
        """``latency.json``'s ``settings``."""
        return {"batch_sizes": list(self.batch_sizes), "sequence_length": self.sequence_length, "warmup": self.warmup,
                "repeats": self.repeats, "threads": self.threads, "quick": self.quick, "seed": self.seed}


@dataclass(frozen=True)
class ReferenceChoice:
    """Where one reference model comes from.

    Attributes:
        model: the registry entry (:data:`~xdistill.teachers.references.REFERENCE_MODELS`).
        spec: a hub id, or a folder with ``config.json`` (weights used if present).
        option: how error messages and reports name the choice (``--reference xlmr-base=DIR``,
            ``--mbert DIR``, or ``reference model XLM-R-base (xlm-roberta-base)`` for the registry's hub id).
    """

    model: ReferenceModel
    spec: str
    option: str

    @property
    def is_default(self) -> bool:
        """Whether ``spec`` is the registry's hub id (the only id that may fall back to the built-in configuration)."""
        return self.spec == self.model.hub_id

    @classmethod
    def default(cls, model: ReferenceModel) -> "ReferenceChoice":
        """The registry's hub id of ``model``."""
        return cls(model, model.hub_id, f"reference model {model.name} ({model.hub_id})")


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,32"`` -> ``[1, 32]`` (sequences per batch; sorted, without repeats).

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


def parse_int(option: str, text: str | None, default: int, minimum: int) -> int:
    """An integer option given as text (``None``: ``default``).

    Raises:
        ConfigError: not an integer or below ``minimum`` (the message names ``option``).
    """
    if text is None:
        return default
    if not re.fullmatch(r"-?[0-9]+", str(text).strip()) or int(text) < minimum:
        raise ConfigError(f"{option}: expected an integer >= {minimum}, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python -m xdistill benchmark`` (numbers are parsed as text and checked by
    :func:`settings_from_args`, references by :func:`reference_choices`)."""
    keys = ", ".join(REFERENCE_MODELS)
    p = argparse.ArgumentParser(
        prog="python -m xdistill benchmark",
        description="Batch-inference latency (median and p90 in ms, sequences/s) of students, their teachers and "
                    "the reference model of each (mBERT-base or XLM-R-base) in PyTorch fp32, ONNX Runtime fp32 and "
                    "ONNX Runtime int8 (XtremeDistil setting: sequence length 32, batch 32, CPU).")
    p.add_argument("--students", nargs="+", required=True, metavar="DIR",
                   help="saved student folders (with onnx/model.onnx and onnx/model.int8.onnx from `xdistill export`), "
                        "or run folders holding them")
    p.add_argument("--teachers", nargs="+", default=None, metavar="DIR",
                   help="teacher folders (save_pretrained); default: each student's teacher_path, or STUDENT/../teacher")
    p.add_argument("--no-teachers", action="store_true", help="do not time the teachers")
    p.add_argument("--reference", action="append", default=[], metavar="KEY=ID_OR_DIR",
                   help=f"where a reference model comes from (repeatable): KEY is a registry key ({keys}) or its hub "
                        "id; the value a hub id or a folder with config.json (weights used if present). Default: the "
                        "registry's hub id (random weights from its built-in configuration when the hub is not reachable)")
    p.add_argument("--mbert", default=None, metavar="ID_OR_DIR", help="shorthand for --reference mbert-base=ID_OR_DIR")
    p.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES, help=f"comma-separated (default {DEFAULT_BATCH_SIZES})")
    p.add_argument("--sequence-length", default=None, help=f"tokens per sequence (default {DEFAULT_SEQUENCE_LENGTH})")
    p.add_argument("--warmup", default=None, help=f"untimed calls before timing (default {DEFAULT_WARMUP}; --quick {QUICK_WARMUP})")
    p.add_argument("--repeats", default=None, help=f"timed calls (default {DEFAULT_REPEATS}; --quick {QUICK_REPEATS})")
    p.add_argument("--threads", default=None, help="threads of PyTorch and ONNX Runtime (default torch.get_num_threads())")
    p.add_argument("--seed", default=None, help="seed of the random inputs and random reference weights (default 0)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_WARMUP} warm-up call and {QUICK_REPEATS} repeats (for tests; timings are noisy)")
    p.add_argument("--output-dir", default=DEFAULT_OUTPUT_DIR,
                   help=f"where latency.json/.md/.png go (default {DEFAULT_OUTPUT_DIR})")
    return p


def settings_from_args(a: argparse.Namespace) -> Settings:
    """Check and convert the numeric options.

    Raises:
        ConfigError: a value is not an integer or out of range (the message names the option).
    """
    return Settings(
        batch_sizes=parse_batch_sizes(a.batch_sizes),
        sequence_length=parse_int("--sequence-length", a.sequence_length, DEFAULT_SEQUENCE_LENGTH, 1),
        warmup=parse_int("--warmup", a.warmup, QUICK_WARMUP if a.quick else DEFAULT_WARMUP, 0),
        repeats=parse_int("--repeats", a.repeats, QUICK_REPEATS if a.quick else DEFAULT_REPEATS, 1),
        threads=parse_int("--threads", a.threads, torch.get_num_threads(), 1),
        quick=bool(a.quick),
        seed=parse_int("--seed", a.seed, 0, 0),
    )


def parse_reference_option(text: str) -> ReferenceChoice:
    """One ``--reference KEY=ID_OR_DIR``.

    Raises:
        ConfigError: no ``=``, an empty side, or a key that is neither a registry key nor a registered hub id.
    """
    option = f"--reference {text}"
    key, sep, spec = str(text).partition("=")
    if not sep or not key.strip() or not spec.strip():
        raise ConfigError(f"{option}: expected KEY=ID_OR_DIR with KEY one of {', '.join(REFERENCE_MODELS)} "
                          "(or their hub ids), e.g. --reference xlmr-base=xlm-roberta-base")
    return ReferenceChoice(get_reference(key.strip(), option), spec.strip(), option)


def reference_choices(a: argparse.Namespace) -> dict[str, ReferenceChoice]:
    """Registry key -> :class:`ReferenceChoice` for the references that ``--reference`` and ``--mbert``
    override (the others keep :meth:`ReferenceChoice.default`).

    Raises:
        ConfigError: a malformed ``--reference``, or one reference given two different sources.
    """
    given = [parse_reference_option(t) for t in a.reference]
    if a.mbert is not None:
        given.append(ReferenceChoice(get_reference("mbert-base"), str(a.mbert), f"--mbert {a.mbert}"))
    out: dict[str, ReferenceChoice] = {}
    for c in given:
        before = out.setdefault(c.model.key, c)
        if before.spec != c.spec:
            raise ConfigError(f"{c.option}: {c.model.name} is already given as {before.spec!r} ({before.option})")
    return out
