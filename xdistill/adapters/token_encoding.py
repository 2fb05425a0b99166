"""Vectorised encoding and decoding of word-split sentences for token classification.

The NER adapter's rows are ``[CLS] pieces(word_1) ... pieces(word_n) [SEP]``, each word tokenized
alone (as ``is_split_into_words`` does) and a sentence longer than the budget split into windows
of whole words. This module builds those rows for a whole chunk of sentences with numpy
(one Rust batch encode for the chunk's unseen words, then array arithmetic: no Python loop over
words or subwords), decodes first-subword predictions back to words the same way, and finds IOB2
entity spans over a chunk's words. Only a sentence that needs more than one window goes through
the greedy per-word :func:`window_counts`.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from ..data.batching import IGNORE
from ..data.types import Encoded, Ragged, ragged_arange

#: at most this many new words are tokenized one call each, not as a (multi-threaded) batch
SEQUENTIAL_WORDS = 64


def window_counts(counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Split a sentence's words, with ``counts[i]`` subwords each, into consecutive windows of at
    most ``budget`` subwords.

    Returns ``(first_word, end_word)`` pairs covering every word once. A single word longer than
    the budget gets a window of its own (its pieces are cut to the budget by the caller; its first
    subword, which carries the prediction, is kept). No words: one empty window ``[(0, 0)]``.
    """
    out, start, used = [], 0, 0
    for i, c in enumerate(counts):
        n = min(int(c), budget)
        if used + n > budget and i > start:
            out.append((start, i))
            start, used = i, 0
        used += n
    out.append((start, len(counts)))
    return out


class PieceTable:
    """Subword ids of each distinct word, tokenized alone, in flat arrays.

    :meth:`lookup` maps words to table indices, tokenizing the words it has not seen in one batch
    call of the tokenizer (the Rust ``encode_batch``). A word the tokenizer reduces to nothing
    (only control characters, say) gets ``[UNK]``, so that every word keeps a prediction. The table
    grows with the distinct words seen; :meth:`clear` empties it (a server calls it when
    :attr:`size` passes its bound, between chunks).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.clear()

    def clear(self) -> None:
        """Forget every word."""
        self._index: dict[str, int] = {}
        self._flat = np.zeros(1024, np.int32)
        self._used = 0
        self.offsets = np.zeros(1, np.int64)  # (W + 1,): word i's pieces are flat[offsets[i]:offsets[i + 1]]

    @property
    def size(self) -> int:
        """Distinct words held."""
        return len(self._index)

    @property
    def flat(self) -> np.ndarray:
        """``(P,)`` int32: the pieces of every word, in table order."""
        return self._flat[:self._used]

    def lookup(self, words: Sequence[str]) -> np.ndarray:
        """``(N,)`` int64 table index of each word (new words are tokenized and added)."""
        index = self._index
        found = list(map(index.get, words))
        if None in found:  # new words: tokenize them once each, then look every word up again
            self._add([w for w in dict.fromkeys(words) if w not in index])
            found = list(map(index.__getitem__, words))
        return np.array(found, dtype=np.int64)

    def _pieces(self, words: list[str]) -> list[list[int]]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None or getattr(self.tokenizer, "split_special_tokens", False):
            return self.tokenizer(words, add_special_tokens=False)["input_ids"]
        if len(words) <= SEQUENTIAL_WORDS:
            # the new words of a sentence or two: one call each, not through the Rust thread pool,
            # whose workers would wait for the cores an ONNX Runtime session holds
            return [backend.encode(w, add_special_tokens=False).ids for w in words]
        # what the transformers call runs, without building a BatchEncoding per word (about 20 us each)
        return [e.ids for e in backend.encode_batch_fast(words, add_special_tokens=False)]

    def _add(self, words: list[str]) -> None:
        unk = self.tokenizer.unk_token_id
        ids = [i if i else [unk] for i in self._pieces(words)]
        lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        need = self._used + int(lens.sum())
        if need > len(self._flat):
            grown = np.zeros(max(need, 2 * len(self._flat)), np.int32)
            grown[:self._used] = self._flat[:self._used]
            self._flat = grown
        self._flat[self._used:need] = np.fromiter((t for i in ids for t in i), dtype=np.int32, count=need - self._used)
        self._used = need
        self.offsets = np.concatenate([self.offsets, self.offsets[-1] + np.cumsum(lens)])
        base = len(self._index)
        self._index.update(zip(words, range(base, base + len(words))))


def encode_words(table: PieceTable, sentences: Sequence[Sequence[str]], label_ids: np.ndarray | None,
                 budget: int, cls_id: int, sep_id: int) -> tuple[Encoded, dict]:
    """Rows of the sentences (lists of words): ``[CLS]``, each word's pieces (cut to ``budget``),
    ``[SEP]``; sentences of more than ``budget`` pieces split into windows of whole words
    (:func:`window_counts`).

    ``label_ids``: ``(W,)`` label id per word of all sentences in order (``IGNORE`` for an untagged
    word), or ``None`` for untagged text. Labels and ``word_index`` sit on each word's first subword.
    Returns the :class:`Encoded` (examples numbered from 0) and its counts: ``examples``,
    ``windows``, ``examples_split_into_windows``, ``subwords_cut_from_overlong_words``.
    """
    n_words = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    flat_words = [w for s in sentences for w in s]
    word = table.lookup(flat_words)  # (W,) table index per word
    full = np.diff(table.offsets)[word]
    cut = np.minimum(full, budget)  # pieces kept per word
    word_start = np.cumsum(n_words) - n_words  # first word of each sentence
    csum = np.concatenate([[0], np.cumsum(cut)])
    totals = csum[word_start + n_words] - csum[word_start]  # pieces per sentence
    # windows: one per sentence within the budget; the greedy split for longer ones
    windows_per = np.ones(len(sentences), np.int64)
    word_row_local = np.zeros(len(flat_words), np.int64)  # window of each word within its sentence
    for e in np.flatnonzero(totals > budget):
        a = int(word_start[e])
        spans = window_counts(cut[a:a + n_words[e]], budget)
        windows_per[e] = len(spans)
        for k, (s, t) in enumerate(spans):
            word_row_local[a + s:a + t] = k
    row_base = np.cumsum(windows_per) - windows_per
    sentence_of_word = np.repeat(np.arange(len(sentences)), n_words)
    word_row = row_base[sentence_of_word] + word_row_local  # (W,) row of each word
    n_rows = int(windows_per.sum())
    row_len = np.bincount(word_row, weights=cut, minlength=n_rows).astype(np.int64) + 2
    offsets = np.zeros(n_rows + 1, np.int64)
    np.cumsum(row_len, out=offsets[1:])
    total = int(offsets[-1])
    input_ids = np.empty(total, np.int32)
    input_ids[offsets[:-1]] = cls_id
    input_ids[offsets[1:] - 1] = sep_id
    # every word-piece token: its place in the flat rows is its place among all pieces, shifted by
    # the [CLS]/[SEP] pairs of earlier rows and its own row's [CLS]
    token_row = np.repeat(word_row, cut)
    input_ids[np.arange(len(token_row)) + 2 * token_row + 1] = \
        table.flat[np.repeat(table.offsets[word], cut) + ragged_arange(cut)]
    first = (np.cumsum(cut) - cut) + 2 * word_row + 1  # (W,) position of each word's first piece
    labels = np.full(total, IGNORE, np.int32)
    if label_ids is not None:
        labels[first] = label_ids
    word_index = np.full(total, -1, np.int32)
    word_index[first] = np.arange(len(flat_words)) - word_start[sentence_of_word]
    enc = Encoded(Ragged(input_ids, offsets), Ragged(labels, offsets), Ragged(word_index, offsets),
                  np.repeat(np.arange(len(sentences)), windows_per).tolist(), n_words.tolist())
    counts = {"examples": len(sentences), "windows": n_rows,
              "examples_split_into_windows": int((windows_per > 1).sum()),
              "subwords_cut_from_overlong_words": int((full - cut).sum())}
    return enc, counts


def label_all_tokens(encoded: Encoded, continuation: np.ndarray) -> Encoded:
    """The rows of ``encoded`` with every subword of a labeled word labeled, not only its first:
    a continuation subword gets ``continuation[label]`` of its word's label (``B-X`` -> ``I-X``, as
    ``transformers``' ``run_ner.py --label_all_tokens`` does with its ``b_to_i_label`` map). Words
    without a label (``IGNORE``), special tokens and padding stay ``IGNORE``; ``word_index`` and the
    ids are unchanged, so decoding still reads each word's first subword.

    ``continuation``: ``(C,)`` int, the label id a continuation subword takes for each label id.
    A row is ``[CLS] pieces(word_1) ... pieces(word_n) [SEP]`` (:func:`encode_words`): its first and
    last positions are special tokens, every other position belongs to the last word started at or
    before it.
    """
    labels, first = encoded.labels.flat, encoded.word_index.flat >= 0
    offsets = encoded.labels.offsets
    pos = np.arange(len(labels))
    # the position of the word each subword belongs to: forward-filled first subwords, reset at each row start
    owner = np.where(first, pos, -1)
    starts = offsets[:-1][encoded.labels.lengths > 0]
    owner[starts] = starts
    owner = np.maximum.accumulate(owner) if len(owner) else owner
    inner = ~first
    inner[starts] = False
    ends = offsets[1:][encoded.labels.lengths > 0] - 1
    inner[ends] = False  # [SEP]
    word_label = labels[owner]
    fill = inner & (word_label != IGNORE)
    out = labels.copy()
    out[fill] = np.asarray(continuation)[word_label[fill]]
    return Encoded(encoded.input_ids, Ragged(out, offsets.copy()), encoded.word_index, encoded.example,
                   encoded.n_words, dict(encoded.stats))


def first_subword_predictions(best: np.ndarray, encoded: Encoded) -> np.ndarray:
    """``(W,)`` label id of every word of every example, in order, from ``best``: ``(P,)`` the
    predicted label id at each position of ``encoded``'s rows (flat, row order).

    Raises:
        RuntimeError: a word got no prediction (an encoding that lost a word; never expected).
    """
    wi = encoded.word_index
    n_words = np.asarray(encoded.n_words, dtype=np.int64)
    word_start = np.cumsum(n_words) - n_words
    row_of = np.repeat(np.asarray(encoded.example, dtype=np.int64), wi.lengths)
    keep = wi.flat >= 0
    out = np.full(int(n_words.sum()), -1, np.int64)
    out[word_start[row_of[keep]] + wi.flat[keep]] = best[keep]
    if (out < 0).any():
        missing = np.flatnonzero(out < 0)
        e = int(np.searchsorted(word_start, missing[0], side="right") - 1)
        raise RuntimeError(f"example {e}: {len(missing)} words got no prediction")
    return out


def entity_spans(tags: np.ndarray, sentence_start: np.ndarray, kinds: Sequence[str]) -> tuple[np.ndarray, ...]:
    """IOB2 entities of a chunk's words, as CoNLL's evaluation reads them.

    ``tags``: ``(W,)`` label ids of all words in order; ``sentence_start``: ``(W,)`` bool, true at
    each sentence's first word; ``kinds``: per label id its tag (``"O"``, ``"B-PER"``, ...). An
    entity starts at ``B-X``, or at ``I-X`` after ``O``, after a tag of another type, or at a
    sentence start; it runs over the following ``I-X`` words. Returns ``(first, last, type_id)``,
    three ``(E,)`` arrays of word indices and the type of each entity (index into the sorted
    entity types of :func:`entity_types_of`).
    """
    t, begin = _entity_begins(tags, sentence_start, kinds)
    inside = t >= 0
    first = np.flatnonzero(begin)
    # an entity ends where the next word does not continue it: outside, or a new begin
    continued = np.concatenate([inside[1:] & ~begin[1:], [False]])
    last = np.flatnonzero(inside & ~continued)
    return first, last, t[first]


def _entity_begins(tags: np.ndarray, sentence_start: np.ndarray, kinds: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per word its entity type's index (-1 for ``O``) and whether an entity begins there (CoNLL's rule,
    see :func:`entity_spans`): two ``(W,)`` arrays."""
    type_of, is_b, _ = _tag_tables(tuple(kinds))
    t = type_of[tags]
    prev = np.concatenate([[-1], t[:-1]])
    prev[sentence_start] = -1
    return t, (t >= 0) & (is_b[tags] | (prev != t))


def valid_iob2(tags: np.ndarray, sentence_start: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """``tags`` ``(W,)`` (label ids, arguments as in :func:`entity_spans`) with every ``I-X`` that begins an
    entity (after ``O``, after another type, or at a sentence start) replaced by ``B-X``: valid IOB2 tags
    whose entities are the ones :func:`entity_spans` reads from the input (the repair
    :func:`~xdistill.data.readers.repair_iob2` makes, over a whole chunk in numpy). An ``I-X`` whose
    ``B-X`` is not among ``kinds`` is left as it is. Returns a new array."""
    t, begin = _entity_begins(tags, sentence_start, kinds)
    b_of_type = _tag_tables(tuple(kinds))[2]
    fix = np.flatnonzero(begin)
    fix = fix[b_of_type[t[fix]] >= 0]
    out = np.array(tags, copy=True)
    out[fix] = b_of_type[t[fix]]
    return out


@functools.lru_cache(maxsize=16)
def _tag_tables(kinds: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label id: its entity type's index (-1 for ``O``) and whether it is a ``B-`` tag; per entity
    type (index into :func:`entity_types_of`): the label id of its ``B-`` tag (-1 if the labels lack it)."""
    types = entity_types_of(kinds)
    return (np.array([types.index(k[2:]) if k[:2] in ("B-", "I-") else -1 for k in kinds], np.int64),
            np.array([k.startswith("B-") for k in kinds]),
            np.array([kinds.index("B-" + x) if "B-" + x in kinds else -1 for x in types], np.int64))


def entity_types_of(kinds: Sequence[str]) -> list[str]:
    """The entity types of IOB2 tags, sorted (``["LOC", "ORG", "PER"]`` for WikiANN)."""
    return sorted({k[2:] for k in kinds if k[:2] in ("B-", "I-")})
