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
from ..data.ner import FEATURES, build_ner_data, make_source
from ..data.readers import entity_types, read_ner_file
from ..data.taskspec import TaskSpec
from ..data.types import Encoded, TaskData, iter_examples
from ..data.words import make_word_splitter
from ..errors import ConfigError
from .base import TaskAdapter
from .token_encoding import (PieceTable, encode_words, entity_spans, entity_types_of, first_subword_predictions,
                             label_all_tokens, valid_iob2, window_counts)
from .levels import TOKEN

logger = logging.getLogger(__name__)

DEFAULT_WORD_SPLITTER = "punctuation"
#: examples encoded at a time (numpy arrays of one chunk, then joined)
ENCODE_CHUNK = 2000
#: distinct words whose subwords ``predict_texts`` keeps between calls (about 15 MiB at 100,000)
SERVING_PIECE_WORDS = 100_000


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
    """Split a sentence's words (their subword lists) into consecutive windows of at most ``budget``
    subwords: :func:`~xdistill.adapters.token_encoding.window_counts` of their lengths."""
    return window_counts([len(p) for p in pieces], budget)


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

    def train_texts(self, args: NERDataArguments, groups: Sequence[str]) -> list[str]:
        """Every sentence of the train file of each language in ``groups``, words joined by spaces.

        Raises:
            UnknownLanguageError, DataFormatError: as :meth:`load_data`.
        """
        source = make_source(args, self.spec, LanguageRegistry.load())
        return [" ".join(s.tokens) for lang in groups for s in source.load(lang, "train")]

    def encode(self, dataset, tokenizer, max_length: int, split: str = "", pieces: PieceTable | None = None) -> Encoded:
        """Windows of at most ``max_length`` tokens (``[CLS]`` and ``[SEP]`` included).

        Labels are aligned to first subwords; an example with no tags (transfer text) gets -100
        everywhere. Examples are encoded ``ENCODE_CHUNK`` at a time with numpy
        (:func:`~xdistill.adapters.token_encoding.encode_words`); ``pieces`` keeps the words'
        subwords across calls (default: a table for this call).

        Raises:
            ValueError: ``max_length`` below 3.
        """
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS], one token, [SEP]), got {max_length}")
        table = PieceTable(tokenizer) if pieces is None else pieces
        parts, counts = [], {}
        chunk: list[tuple] = []

        def flush():
            sentences = [w for w, _ in chunk]
            labels = None
            if any(t for _, t in chunk):
                ids = self.label2id
                labels = np.fromiter((ids[x] if t else IGNORE for w, t in chunk for x in (t or w)), np.int64)
            enc, n = encode_words(table, sentences, labels, max_length - 2, tokenizer.cls_token_id,
                                  tokenizer.sep_token_id)
            parts.append(enc)
            for k, v in n.items():
                counts[k] = counts.get(k, 0) + v
            chunk.clear()

        for words, tags in iter_examples(dataset, ("tokens", "tags"), chunk=ENCODE_CHUNK):
            chunk.append((words, tags))
            if len(chunk) >= ENCODE_CHUNK:
                flush()
        if chunk or not parts:
            flush()
        enc = parts[0] if len(parts) == 1 else Encoded.concat(parts)
        enc.stats = counts
        if counts["examples_split_into_windows"]:  # a split's count is news; a served batch's is routine
            logger.log(logging.INFO if split else logging.DEBUG, "%s%d sentences longer than %d tokens were split "
                       "into windows", f"{split}: " if split else "", counts["examples_split_into_windows"], max_length)
        return enc

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list[list[str]]:
        """Word-level tags per example: the argmax at each word's first subword.

        Raises:
            RuntimeError: a word got no prediction (never expected).
        """
        best = np.concatenate([np.asarray(lg).argmax(-1) for lg in logits]) if len(logits) else np.zeros(0, np.int64)
        tags = np.asarray(self.labels, dtype=object)[first_subword_predictions(best, encoded)].tolist()
        bounds = np.cumsum([0] + list(encoded.n_words)).tolist()
        return [tags[a:b] for a, b in zip(bounds, bounds[1:])]

    def gold(self, dataset) -> list[list[str]]:
        return [list(t) for t in dataset["tags"]]

    def label_all_tokens(self, encoded: Encoded) -> Encoded:
        """Training rows with each word's label on all its subwords (``B-X`` -> ``I-X`` after the
        first), not only the first (:func:`~xdistill.adapters.token_encoding.label_all_tokens`)."""
        ids = self.label2id
        continuation = np.array([ids.get("I-" + lab[2:], i) if lab.startswith("B-") else i
                                 for i, lab in enumerate(self.labels)], dtype=np.int64)
        return label_all_tokens(encoded, continuation)

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
        """Each example's words joined by spaces; the words are read a chunk of examples at a time (the
        whole ``tokens`` column as Python lists of strings would cost several times the text)."""
        return [" ".join(t) for (t,) in iter_examples(dataset, ("tokens",))]

    def predict_texts(self, model, texts: Sequence[str]) -> list[dict]:
        """Per text: its ``words`` (as the task's word splitter splits it), their IOB2 ``tags``,
        and the entity spans ``entities``: ``[{"text", "type", "start", "end"}]`` (character offsets).
        The tags are valid IOB2 and spell the entities: an ``I-X`` the model predicts where an entity
        begins (after ``O`` or another type) is returned as ``B-X`` (:func:`~xdistill.adapters.token_encoding.valid_iob2`).

        ``model`` has ``tokenizer``, ``max_length`` and ``logits(encoded)``. The subwords of words seen
        before are kept across calls (up to ``SERVING_PIECE_WORDS`` distinct words; then the table
        starts afresh, so memory stays bounded on an endless stream). Encoding, first-subword decoding and span finding run over the whole batch of texts in
        numpy; the entity rules are CoNLL's (:func:`~xdistill.adapters.token_encoding.entity_spans`).
        """
        texts = list(texts)
        words = self.splitter.spans(texts)
        ds = {"tokens": [[w for w, _, _ in ws] for ws in words], "tags": [[] for _ in words]}
        enc = self.encode(ds, model.tokenizer, model.max_length, pieces=self.serving_pieces(model.tokenizer))
        best = np.concatenate([lg.argmax(-1) for lg in model.logits(enc)]) if len(enc) else np.zeros(0, np.int64)
        tag_ids = first_subword_predictions(best, enc)
        n_words = np.asarray(enc.n_words, dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(n_words)])
        starts = np.zeros(len(tag_ids), bool)
        starts[bounds[:-1][n_words > 0]] = True
        first, last, kind = entity_spans(tag_ids, starts, self.labels)
        spans = [x for ws in words for x in ws]
        types = entity_types_of(self.labels)
        ents: list[list[dict]] = [[] for _ in texts]
        owner = np.searchsorted(bounds, first, side="right") - 1
        for i, a, b, k in zip(owner.tolist(), first.tolist(), last.tolist(), kind.tolist()):
            s, e = spans[a][1], spans[b][2]
            ents[i].append({"text": texts[i][s:e], "type": types[k], "start": s, "end": e})
        tags = np.asarray(self.labels, dtype=object)[valid_iob2(tag_ids, starts, self.labels)].tolist()
        b = bounds.tolist()
        return [{"text": text, "words": ds["tokens"][i], "tags": tags[b[i]:b[i + 1]], "entities": ents[i]}
                for i, text in enumerate(texts)]

    def serving_pieces(self, tokenizer) -> PieceTable:
        """The table of seen words' subwords that :meth:`predict_texts` keeps for ``tokenizer``
        (emptied once it holds more than ``SERVING_PIECE_WORDS`` words)."""
        table = getattr(self, "_piece_table", None)
        if table is None or table.tokenizer is not tokenizer:
            table = self._piece_table = PieceTable(tokenizer)
        elif table.size > SERVING_PIECE_WORDS:
            table.clear()
        return table

    def result_words(self, result: dict) -> int:
        """The words the word splitter found (what was tagged)."""
        return len(result["words"])

    def read_labeled_file(self, path, fmt: str):
        """A PAN-X or CoNLL file (``fmt``: auto, panx, conll) as ``{"tokens", "tags"}``."""
        sentences, stats = read_ner_file(path, format=fmt, label_set=self.labels)
        ds = {"tokens": [list(s.tokens) for s in sentences], "tags": [list(s.tags) for s in sentences]}
        return ds, {"sentences": stats.n_sentences, "tokens": stats.n_tokens, "repaired_tags": stats.n_repaired}

    def from_texts(self, texts: Sequence[str], group: str = "generated") -> Dataset:
        """Raw texts split into words by the task's word splitter, without tags, in language ``group``."""
        return Dataset.from_dict({"tokens": self.splitter.words(texts), "tags": [[] for _ in texts],
                                  "lang": [group] * len(texts)}, features=FEATURES)

    def words(self, texts: Sequence[str]) -> list[list[str]]:
        """Per text, its words by the task's word splitter (CJK ideographs one word each)."""
        return self.splitter.words(texts)

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
