"""Token classification (NER) adapter: first-subword label alignment, windowing, seqeval F1.

Raw text is split into words by the task's word splitter (:mod:`xdistill.data.words`), so
that transfer text and ``predict`` input are split as the gold files are, whatever the
teacher's tokenizer; each word is then tokenized alone and its label sits on its first
subword (``word_ids()`` alignment).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from datasets import Dataset

from ..config import NERDataArguments, NERGenerationArguments
from ..data.batching import IGNORE
from ..data.languages import LanguageRegistry
from ..data.ner import FEATURES, build_ner_data
from ..data.readers import entity_types, read_ner_file
from ..data.taskspec import TaskSpec
from ..data.types import Encoded, EncodedBuilder, TaskData, iter_examples
from ..data.words import make_word_splitter
from ..errors import ConfigError
from .base import TaskAdapter
from .levels import TOKEN

logger = logging.getLogger(__name__)

DEFAULT_WORD_SPLITTER = "punctuation"


def word_pieces(tokenizer, words: Sequence[str], cache: dict[str, list[int]] | None = None) -> list[list[int]]:
    """Subword ids of each word, tokenized alone (as ``is_split_into_words`` does).

    A word the tokenizer reduces to nothing (e.g. only control characters)
    becomes ``[UNK]`` so that every word still gets a prediction.
    """
    cache = {} if cache is None else cache
    todo = list({w for w in words if w not in cache})
    if todo:
        ids = tokenizer(todo, add_special_tokens=False)["input_ids"]
        for w, i in zip(todo, ids):
            cache[w] = i if i else [tokenizer.unk_token_id]
    return [cache[w] for w in words]


def windows(pieces: Sequence[Sequence[int]], budget: int) -> list[tuple[int, int]]:
    """Split a sentence's words into consecutive windows of at most ``budget`` subwords.

    Returns ``(first_word, end_word)`` pairs covering every word once. A single
    word longer than the budget gets a window of its own (its pieces are cut to
    the budget by the caller; its first subword, which carries the prediction, is kept).
    """
    out, start, used = [], 0, 0
    for i, p in enumerate(pieces):
        n = min(len(p), budget)
        if used + n > budget and i > start:
            out.append((start, i))
            start, used = i, 0
        used += n
    out.append((start, len(pieces)))
    return out


class TokenClassificationAdapter(TaskAdapter):
    """NER with IOB2 tags: the label of a word sits on its first subword (others -100);
    all non-special positions are distilled (logits ``(B, T, C)``, hidden states
    ``(B, T, D)``); predictions are word-level; the metric is seqeval's
    entity-level micro F1 (CoNLL scoring) in percent, with per-type scores."""

    type = "token-classification"
    command = "ner"
    level = TOKEN
    arguments = (NERDataArguments, NERGenerationArguments)
    formats = ("auto", "panx", "conll")
    metrics = {"seqeval": "f1", "f1": "f1"}  # both mean seqeval's entity-level micro F1
    unit = "sentences"
    group_name = "languages"
    description = "NER, IOB2 tags"

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        self.splitter = make_word_splitter(spec.word_splitter or DEFAULT_WORD_SPLITTER,
                                           f"{spec.path or spec.name}: key 'word_splitter'")

    @property
    def metric_description(self) -> str:
        return "seqeval entity-level micro F1, %"

    @classmethod
    def check_spec(cls, spec: TaskSpec) -> None:
        """``local.unlabeled`` is a boolean (use the language registry's unlabeled files);
        ``local.format`` one of :attr:`formats`; ``word_splitter`` a registered splitter."""
        super().check_spec(spec)
        where = spec.path or spec.name
        unl = spec.local.get("unlabeled")
        if unl is not None and not isinstance(unl, bool):
            raise ConfigError(f"{where}: key 'local.unlabeled' must be bool for a {cls.type} task "
                              f"(use the registry files), got {type(unl).__name__}")
        make_word_splitter(spec.word_splitter or DEFAULT_WORD_SPLITTER, f"{where}: key 'word_splitter'")

    def load_data(self, args: NERDataArguments) -> TaskData:
        """Splits of every language ``args.langs`` names (see :mod:`xdistill.data.ner`)."""
        return build_ner_data(self.spec, args, LanguageRegistry.load(), self.splitter)

    def encode(self, dataset, tokenizer, max_length: int, split: str = "") -> Encoded:
        """Windows of at most ``max_length`` tokens (``[CLS]`` and ``[SEP]`` included).

        Labels are aligned to first subwords; an example with no tags (transfer
        text) gets -100 everywhere.
        """
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS], one token, [SEP]), got {max_length}")
        budget = max_length - 2
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        cache: dict[str, list[int]] = {}
        enc = EncodedBuilder()
        n_windows_split = n_pieces_cut = 0
        for e, (words, tags) in enumerate(iter_examples(dataset, ("tokens", "tags"))):
            pieces = word_pieces(tokenizer, words, cache)
            enc.n_words.append(len(words))
            spans = windows(pieces, budget)
            n_windows_split += len(spans) > 1
            for a, b in spans:
                ids, labels, widx = [cls_id], [IGNORE], [-1]
                for w in range(a, b):
                    p = pieces[w]
                    if len(p) > budget:
                        n_pieces_cut += len(p) - budget
                        p = p[:budget]
                    ids.extend(p)
                    labels.append(self.label2id[tags[w]] if tags else IGNORE)
                    labels.extend([IGNORE] * (len(p) - 1))
                    widx.append(w)
                    widx.extend([-1] * (len(p) - 1))
                ids.append(sep_id)
                labels.append(IGNORE)
                widx.append(-1)
                enc.add_row(ids, labels, widx, e)
        stats = {"examples": len(enc.n_words), "windows": len(enc.example),
                 "examples_split_into_windows": n_windows_split, "subwords_cut_from_overlong_words": n_pieces_cut}
        if n_windows_split:
            logger.info("%s%d sentences longer than %d tokens were split into windows", f"{split}: " if split else "",
                        n_windows_split, max_length)
        return enc.build(stats)

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list[list[str]]:
        """Word-level tags per example: the argmax at each word's first subword."""
        preds: list[list[str | None]] = [[None] * n for n in encoded.n_words]
        for row, lg in enumerate(logits):
            best = np.asarray(lg).argmax(-1)
            ex = preds[encoded.example[row]]
            for pos, w in enumerate(encoded.word_index[row]):
                if w >= 0:
                    ex[w] = self.labels[int(best[pos])]
        for e, p in enumerate(preds):
            if any(t is None for t in p):  # an internal error, never expected
                raise RuntimeError(f"example {e}: {sum(t is None for t in p)} words got no prediction")
        return preds  # type: ignore[return-value]

    def gold(self, dataset) -> list[list[str]]:
        return [list(t) for t in dataset["tags"]]

    def score(self, predictions: list[list[str]], gold: list[list[str]]) -> dict[str, Any]:
        """seqeval entity-level scores in percent: ``f1``, ``precision``, ``recall``, ``per_type``.

        Raises:
            ValueError: as many predictions as gold sentences are needed.
        """
        # deferred: seqeval imports scikit-learn, about 2 s, which inference without scoring never needs
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        if len(predictions) != len(gold):
            raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold sentences")
        if not gold:
            return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}, "n": 0}
        rep = classification_report(gold, predictions, output_dict=True, zero_division=0)
        per_type = {t: {"f1": 100 * rep[t]["f1-score"], "precision": 100 * rep[t]["precision"],
                        "recall": 100 * rep[t]["recall"], "support": int(rep[t]["support"])}
                    for t in entity_types(self.labels) if t in rep}
        return {
            "f1": 100 * f1_score(gold, predictions, zero_division=0),
            "precision": 100 * precision_score(gold, predictions, zero_division=0),
            "recall": 100 * recall_score(gold, predictions, zero_division=0),
            "per_type": per_type,
            "n": len(gold),
        }

    def texts(self, dataset) -> list[str]:
        return [" ".join(t) for t in dataset["tokens"]]

    def predict_texts(self, model, texts: Sequence[str]) -> list[dict]:
        """Per text: its ``words`` (as the task's word splitter splits it), their IOB2 ``tags``,
        and the entity spans ``entities``: ``[{"text", "type", "start", "end"}]`` (character offsets)."""
        words = self.splitter.spans(texts)
        ds = {"tokens": [[w for w, _, _ in ws] for ws in words], "tags": [[] for _ in words]}
        enc = self.encode(ds, model.tokenizer, model.max_length)
        tags = self.decode(model.logits(enc), enc)
        out = []
        for text, ws, tg in zip(texts, words, tags):
            ents, cur = [], None
            for (w, s, e), t in zip(ws, tg):
                if t.startswith("B-") or (t.startswith("I-") and (cur is None or cur["type"] != t[2:])):
                    cur = {"type": t[2:], "start": s, "end": e}
                    ents.append(cur)
                elif t.startswith("I-"):
                    cur["end"] = e
                else:
                    cur = None
            out.append({"text": text, "words": [w for w, _, _ in ws], "tags": list(tg),
                        "entities": [{"text": text[x["start"]:x["end"]], **x} for x in ents]})
        return out

    def read_labeled_file(self, path, fmt: str):
        """A PAN-X or CoNLL file (``fmt``: auto, panx, conll) as ``{"tokens", "tags"}``."""
        sentences, stats = read_ner_file(path, format=fmt, label_set=self.labels)
        ds = {"tokens": [list(s.tokens) for s in sentences], "tags": [list(s.tags) for s in sentences]}
        return ds, {"sentences": stats.n_sentences, "tokens": stats.n_tokens, "repaired_tags": stats.n_repaired}

    def from_texts(self, texts: Sequence[str], group: str = "generated") -> Dataset:
        """Raw texts split into words by the task's word splitter, without tags, in language ``group``."""
        return Dataset.from_dict({"tokens": self.splitter.words(texts), "tags": [[] for _ in texts],
                                  "lang": [group] * len(texts)}, features=FEATURES)

    def group_script(self, group: str) -> str | None:
        """The language registry's script of language ``group`` (``None`` for a code it lacks)."""
        registry = LanguageRegistry.load()
        return registry.get(group).script if group in registry else None

    def informative(self, prediction: list[str]) -> bool:
        """Whether the tags hold an entity (a tag other than ``O``)."""
        return any(t != "O" for t in prediction)

    def prediction_profile(self, predictions: list[list[str]]) -> dict[str, Any]:
        """The label shares (percent of words) and the entity rates: ``entity_words`` (percent of words
        inside an entity), ``sentences_with_entity`` (percent) and ``entities_per_sentence``."""
        out = super().prediction_profile(predictions)
        words = sum(len(p) for p in predictions)
        out["entity_words"] = round(100 * sum(t != "O" for p in predictions for t in p) / max(1, words), 2)
        out["sentences_with_entity"] = round(100 * sum(map(self.informative, predictions)) / max(1, len(predictions)), 2)
        starts = sum(t.startswith("B-") or (t.startswith("I-") and (i == 0 or p[i - 1][2:] != t[2:]))
                     for p in predictions for i, t in enumerate(p))
        out["entities_per_sentence"] = round(starts / max(1, len(predictions)), 3)
        return out
