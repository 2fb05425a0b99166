"""Loading a saved student (or a teacher folder) for evaluation and prediction.

:func:`load_model` returns an :class:`InferenceModel` that tokenizes words with the model's
tokenizer, splits long sentences into windows (as in training, so every word gets a
prediction) and returns word-level tags, entity spans over raw text, or scores on a labeled
file. A student runs in PyTorch (``runtime="torch"``) or in ONNX Runtime (``runtime="onnx"``,
fp32 or int8, after ``python -m xdistill export``); everything but the logits is shared, so
both runtimes give the same outputs up to the export's logit tolerance. Raw text is split
into words by the task's word splitter, whatever the tokenizer.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from transformers import AutoTokenizer

from ..adapters import TaskAdapter, adapter_for_saved, adapter_type_of_level
from ..data.readers import repair_iob2
from ..errors import ConfigError
from ..students import is_student_dir, load_student, run_folder_hint
from ..teachers import Teacher, usable_positions
from .onnx import load_onnx_student

RUNTIMES = ("torch", "onnx")
#: rows per forward pass (``--batch-size``); see README "Serving throughput" for the measurement
DEFAULT_BATCH_SIZE = 64
PRECISIONS = ("fp32", "int8")
#: allocations of container objects between young-generation garbage collections while
#: :meth:`InferenceModel.predict` runs (Python's default is 700); see :func:`fewer_collections`
PREDICT_GC_THRESHOLD = 50_000


class _GcThreshold:
    """The process-wide young-generation threshold, raised while any caller holds it (nested and
    concurrent holders share one raise; the last to leave restores the threshold it found)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._holders = 0
        self._saved: tuple[int, ...] = ()

    def enter(self, threshold: int) -> None:
        with self._lock:
            if self._holders == 0:
                self._saved = gc.get_threshold()
                gc.set_threshold(max(threshold, self._saved[0]), *self._saved[1:])
            self._holders += 1

    def leave(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                gc.set_threshold(*self._saved)


_GC = _GcThreshold()


@contextmanager
def fewer_collections(threshold: int = PREDICT_GC_THRESHOLD) -> Iterator[None]:
    """Run the block with Python's young-generation collection threshold raised to ``threshold``
    allocations, then restore it (also on an error).

    Building one chunk's results allocates a few hundred thousand short-lived lists, tuples and
    dicts (words, spans, tags, entities), none of them cyclic: reference counting frees them,
    and the default threshold (700) only makes the collector scan them over and over, about 11%
    of the NER serving path's time (README "Serving throughput end to end"). Memory is unchanged
    for acyclic data; cyclic garbage waits at most ``threshold`` allocations longer.
    """
    _GC.enter(threshold)
    try:
        yield
    finally:
        _GC.leave()


@dataclass
class InferenceModel:
    """A model ready for inference.

    ``kind`` is ``"student"`` or ``"teacher"``; ``model`` has ``logits(level, encoded, pad_id)``
    (a :class:`~xdistill.students.Student`, a :class:`~xdistill.teachers.Teacher` or, with
    ``runtime="onnx"``, an :class:`~xdistill.serving.onnx.OnnxStudent`); ``precision`` is
    ``"fp32"`` or ``"int8"`` (ONNX only); ``batch_size`` the rows per forward pass (rows of similar
    length are batched together across all texts of a :meth:`predict` call).
    """

    kind: str
    model: object
    tokenizer: object
    adapter: TaskAdapter
    max_length: int
    path: str
    runtime: str = "torch"
    precision: str = "fp32"
    batch_size: int = DEFAULT_BATCH_SIZE

    def logits(self, encoded) -> list[np.ndarray]:
        """Per-row logits (``(T_i, C)`` for token tasks, ``(C,)`` for sequence tasks) for encoded rows,
        in length-bucketed batches of at most :attr:`batch_size` rows."""
        return self.model.logits(self.adapter.level, encoded, self.tokenizer.pad_token_id, batch_size=self.batch_size)

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """IOB2 tag per word for each sentence (a list of words); token-classification models only. The
        tags are valid IOB2 as :meth:`predict`'s are: an ``I-X`` predicted where an entity begins is
        returned as ``B-X`` (:func:`~xdistill.data.readers.repair_iob2`)."""
        ds = {"tokens": [list(s) for s in sentences], "tags": [[] for _ in sentences]}
        enc = self.adapter.encode(ds, self.tokenizer, self.max_length)
        return [repair_iob2(tags)[0] for tags in self.adapter.decode(self.logits(enc), enc)]

    def predict(self, texts: Sequence[str]) -> list[dict]:
        """Raw texts -> one dict per text: words, tags and entity spans (NER) or class and probability
        (classification). Runs with fewer garbage collections (:func:`fewer_collections`)."""
        with fewer_collections():
            return self.adapter.predict_texts(self, list(texts))

    def evaluate_file(self, path: str | Path, fmt: str = "auto") -> dict:
        """Score the model on a labeled file; metrics in percent.

        NER: PAN-X or CoNLL files; classification: CSV or JSON lines with the task file's columns.
        """
        ds, counts = self.adapter.read_labeled_file(path, fmt)
        enc = self.adapter.encode(ds, self.tokenizer, self.max_length)
        preds = self.adapter.decode(self.logits(enc), enc)
        scores = self.adapter.score(preds, self.adapter.gold(ds))
        return {"model": self.path, "model_kind": self.kind, "runtime": f"{self.runtime}-{self.precision}",
                "data": str(path), **counts, **scores}


def _check_runtime(runtime: str, precision: str) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if runtime == "torch" and precision != "fp32":
        raise ConfigError("--precision int8 needs --runtime onnx (int8 models are ONNX Runtime files)")


def _load_student(d: Path, max_length: int | None, runtime: str, precision: str, threads: int | None) -> InferenceModel:
    model, cfg = load_student(d)
    adapter = adapter_for_saved(cfg)
    tok = AutoTokenizer.from_pretrained(d)
    if runtime == "onnx":
        model = load_onnx_student(d, adapter.num_labels, precision, threads)
    ml = max_length if max_length is not None else int(cfg.get("max_length", 128))
    return InferenceModel("student", model, tok, adapter, ml, str(d), runtime, precision)


def _load_teacher(d: Path, max_length: int | None) -> InferenceModel:
    teacher = Teacher.load(d)
    cfg = teacher.model.config
    level = teacher.level
    saved = {**teacher.task, "labels": [cfg.id2label[i] for i in range(len(cfg.id2label))],
             "task_type": adapter_type_of_level(level)}
    adapter = adapter_for_saved(saved)
    ml = max_length if max_length is not None else min(512, usable_positions(cfg) or 512)
    return InferenceModel("teacher", teacher, teacher.tokenizer, adapter, ml, str(d))


def load_model(directory: str | Path, max_length: int | None = None, runtime: str = "torch",
               precision: str = "fp32", threads: int | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE) -> InferenceModel:
    """Load a saved student (``xdistill`` student folder) or a teacher (``save_pretrained`` folder).

    ``runtime="onnx"`` runs a student's ``onnx/model.onnx`` (``precision="fp32"``) or
    ``onnx/model.int8.onnx`` (``"int8"``) in ONNX Runtime with ``threads`` intra-op threads
    (default ``torch.get_num_threads()``); tokenization, windowing and decoding are the same as
    with ``runtime="torch"``. ``batch_size``: rows per forward pass. Use it inside a service::

        model = load_model("runs/ner-cpu/student", runtime="onnx")
        model.predict(["Angela Merkel besuchte Paris."])

    Raises:
        ConfigError: the folder holds neither; an unknown runtime or precision; ``runtime="onnx"``
            for a teacher or for a student without (matching) ONNX files; ``batch_size`` below 1.
    """
    _check_runtime(runtime, precision)
    if int(batch_size) < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, got {batch_size}")
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"--model: {d} is not a directory")
    if is_student_dir(d):
        return replace(_load_student(d, max_length, runtime, precision, threads), batch_size=int(batch_size))
    if (d / "config.json").is_file():
        if runtime == "onnx":
            raise ConfigError(f"--model {d}: a teacher checkpoint; --runtime onnx serves xdistill students "
                              "(export a teacher with transformers' own ONNX tools)")
        return replace(_load_teacher(d, max_length), batch_size=int(batch_size))
    raise ConfigError(f"--model {d}: no student (config.json with \"xdistill_student\") or transformers checkpoint "
                      f"(config.json) here{run_folder_hint(d)}")
