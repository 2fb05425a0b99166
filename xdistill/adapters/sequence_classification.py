"""Sequence classification adapter: one label per text, [CLS] representation, accuracy and macro F1."""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from ..config import GenerationArguments, TextDataArguments
from ..data.batching import IGNORE
from ..data.taskspec import TaskSpec
from ..data.text import build_text_data, clean_text, read_text_file, to_dataset
from ..data.types import Encoded, EncodedBuilder, TaskData, iter_examples
from ..errors import ConfigError, EmptyTextError
from .base import TaskAdapter
from .levels import SEQUENCE

logger = logging.getLogger(__name__)

#: texts tokenized per call of the tokenizer's batch encode
ENCODE_CHUNK = 1000


class SequenceClassificationAdapter(TaskAdapter):
    """Text classification.

    Each example is one row: ``[CLS]`` + ``max_length - 2`` subwords + ``[SEP]``:
    the first ones, or the last ones when the tokenizer's ``truncation_side``
    is ``"left"`` (``--truncation-side left``; the end of a review states its
    verdict: Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?",
    Section 5.3.1). Long texts are truncated deliberately (the preset sets the
    maximum length) and the truncation is counted in ``Encoded.stats``
    (``examples_truncated``, ``tokens_cut``), which the report shows. The
    distilled outputs are the teacher's sequence logits ``(B, C)`` and its
    first-token (``[CLS]``) hidden state ``(B, D)``, matched by a pooled
    student state. Metrics: accuracy and macro F1 in percent.
    """

    type = "sequence-classification"
    command = "classify"
    level = SEQUENCE
    arguments = (TextDataArguments, GenerationArguments)
    formats = ("csv", "jsonl")
    metrics = {"accuracy": "accuracy", "macro_f1": "macro_f1"}
    unit = "texts"
    group_name = None
    description = "text classification"

    @classmethod
    def check_spec(cls, spec: TaskSpec) -> None:
        """``local.unlabeled`` is a file path, ``local.format`` one of :attr:`formats`; a word
        splitter does not apply (texts go to the tokenizer whole)."""
        super().check_spec(spec)
        where = spec.path or spec.name
        unl = spec.local.get("unlabeled")
        if unl is not None and not isinstance(unl, str) and unl is not False:
            raise ConfigError(f"{where}: key 'local.unlabeled' must be str for a {cls.type} task "
                              f"(a file path), got {type(unl).__name__}")
        if spec.word_splitter is not None:
            raise ConfigError(f"{where}: key 'word_splitter' applies to token-classification tasks only")
        for raw, name in (spec.local.get("label_values") or {}).items():
            if name not in spec.labels:
                raise ConfigError(f"{where}: key 'local.label_values.{raw}' maps to {name!r}, which is not a label; "
                                  f"expected one of {', '.join(spec.labels)}")

    def load_data(self, args: TextDataArguments) -> TaskData:
        """The task's one group: train, validation, budgets, transfer and evaluation texts."""
        return build_text_data(self.spec, args)

    def encode(self, dataset, tokenizer, max_length: int, split: str = "") -> Encoded:
        """One row per text (``dataset["text"]``; ``dataset["label"]`` label names or empty for transfer
        text), tokenized :data:`ENCODE_CHUNK` texts at a time (the Rust tokenizer's batch encode)."""
        pairs = iter_examples(dataset, ("text", "label"), ENCODE_CHUNK)

        def ids_labels():
            while chunk := list(itertools.islice(pairs, ENCODE_CHUNK)):
                texts, labels = zip(*chunk)
                yield from zip(tokenizer(list(texts), add_special_tokens=False)["input_ids"], labels)
        return self.encode_ids(ids_labels(), None, tokenizer, max_length, split)

    def encode_ids(self, ids: Iterable[Sequence[int]], labels: Iterable[str] | None, tokenizer, max_length: int,
                   split: str = "") -> Encoded:
        """:meth:`encode` from subword ids already computed (without special tokens): ``ids`` and
        ``labels`` in step, or ``ids`` yielding ``(ids, label)`` pairs when ``labels`` is ``None``.

        Raises:
            ValueError: ``max_length`` below 3.
        """
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS], one token, [SEP]), got {max_length}")
        budget = max_length - 2
        keep_end = getattr(tokenizer, "truncation_side", "right") == "left"
        enc = EncodedBuilder()
        truncated = cut = 0
        for e, (x, lab) in enumerate(ids if labels is None else zip(ids, labels)):
            if len(x) > budget:
                truncated += 1
                cut += len(x) - budget
                x = x[len(x) - budget:] if keep_end else x[:budget]
            row = [tokenizer.cls_token_id, *x, tokenizer.sep_token_id]
            enc.add_row(row, [self.label2id[lab] if lab else IGNORE], [-1] * len(row), e)
            enc.n_words.append(1)
        n = len(enc.example)
        if truncated:
            logger.info("%s%d of %d texts longer than %d tokens were truncated (%d tokens cut from the %s)",
                        f"{split}: " if split else "", truncated, n, max_length, cut, "start" if keep_end else "end")
        return enc.build({"examples": n, "windows": n, "examples_truncated": truncated, "tokens_cut": cut,
                          "max_length": max_length})

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list[str]:
        """The argmax label name per example."""
        out: list[str | None] = [None] * len(encoded.n_words)
        for row, lg in enumerate(logits):
            out[encoded.example[row]] = self.labels[int(np.asarray(lg).argmax(-1))]
        return out  # type: ignore[return-value]

    def probabilities(self, logits: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Softmax over classes per row."""
        return [torch.softmax(torch.as_tensor(np.asarray(x, dtype=np.float32)), -1).numpy() for x in logits]

    def gold(self, dataset) -> list[str]:
        return list(dataset["label"])

    def score(self, predictions: list[str], gold: list[str]) -> dict[str, Any]:
        """``accuracy`` and ``macro_f1`` in percent, plus per-class F1 (scikit-learn).

        Raises:
            ValueError: as many predictions as gold labels are needed.
        """
        from sklearn.metrics import accuracy_score, f1_score  # deferred: scikit-learn takes 2-3 s to import; inference without scoring never needs it

        if len(predictions) != len(gold):
            raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold labels")
        if not gold:
            return {"accuracy": 0.0, "macro_f1": 0.0, "per_class": {}, "n": 0}
        per = f1_score(gold, predictions, labels=list(self.labels), average=None, zero_division=0)
        return {"accuracy": 100 * accuracy_score(gold, predictions),
                "macro_f1": 100 * f1_score(gold, predictions, labels=list(self.labels), average="macro", zero_division=0),
                "per_class": {lab: 100 * float(f) for lab, f in zip(self.labels, per)}, "n": len(gold)}

    def texts(self, dataset) -> list[str]:
        return list(dataset["text"])

    def predict_texts(self, model, texts: Sequence[str]) -> list[dict]:
        """Per text: the class and its probability, every class's probability, and ``tokens_cut``
        (subwords beyond the maximum length, dropped as in training; 0 for most texts). Each text is
        cleaned as the task's training text was (:func:`~xdistill.data.text.clean_text`) before it is
        tokenized; ``text`` in the result is the text as given.

        Raises:
            EmptyTextError: a text is empty or only whitespace once cleaned, e.g. only ``<br />`` for
                IMDB (``indices`` name them), as the task's file readers refuse such a labeled row.
        """
        cleaned = [clean_text(t, self.spec) for t in texts]
        empty = [i for i, t in enumerate(cleaned) if not t]  # clean_text strips: empty as the file readers judge it
        if empty:
            raise EmptyTextError(empty)
        ids = model.tokenizer(cleaned, add_special_tokens=False)["input_ids"] if texts else []
        enc = self.encode_ids(ids, [""] * len(ids), model.tokenizer, model.max_length)
        probs = self.probabilities(model.logits(enc))
        cut = [max(0, len(x) - (model.max_length - 2)) for x in ids]
        return [{"text": t, "label": self.labels[int(p.argmax())], "probability": float(p.max()),
                 "probabilities": {lab: float(x) for lab, x in zip(self.labels, p)}, "tokens_cut": c}
                for t, p, c in zip(texts, probs, cut)]

    def read_labeled_file(self, path, fmt: str):
        """A CSV or JSON-lines file read with the task file's columns, label values and cleaning
        (``fmt``: auto picks jsonl for ``.jsonl``/``.jsonl.gz`` names, else csv).

        Raises:
            ConfigError: a format other than csv or jsonl.
        """
        if fmt == "auto":
            name = Path(path).name.removesuffix(".gz")
            fmt = "jsonl" if name.endswith((".jsonl", ".json")) else "csv"
        if fmt not in self.formats:
            raise ConfigError(f"--format: a text-classification model reads csv or jsonl files, got {fmt!r}")
        spec = dc_replace(self.spec, local={**self.spec.local, "format": fmt})
        pairs, stats = read_text_file(path, spec, labeled=True)
        return to_dataset(pairs), {"texts": stats.rows, "cleaned": stats.cleaned, "label_counts": stats.label_counts}

    def from_texts(self, texts: Sequence[str], group: str = "generated"):
        """Raw texts as an unlabeled split (label ``""``; one group, ``group`` is not recorded)."""
        return to_dataset([(t, "") for t in texts])
