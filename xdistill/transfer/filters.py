"""Filters of generated transfer text (generation-distillation), each counted for the report.

- length bounds and duplicates (:func:`filter_generated`): exact duplicates among the samples,
  near duplicates of each other and of the held-out (validation and evaluation) texts (Jaccard
  similarity of word 3-gram sets, :func:`near_duplicate_mask`);
- script (:func:`script_share`): the share of a sample's letters written in its language's
  script (ISO 15924 codes from the language registry; Unicode script properties via ``regex``);
- teacher confidence (:func:`teacher_entropy`): the teacher's entropy on a sample, normalised
  by ``log C`` to 0..1; and, for NER, whether the teacher finds an entity in it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import regex

from ..config import GenerationOptions
from ..data.types import Encoded
from ..errors import ConfigError

#: ISO 15924 codes that name a union of Unicode scripts (Japanese, Korean, simplified/traditional Han)
COMPOSITE_SCRIPTS = {"Jpan": ("Hani", "Hira", "Kana"), "Kore": ("Hang", "Hani"), "Hans": ("Hani",), "Hant": ("Hani",)}
_LETTER = regex.compile(r"\p{L}|\p{M}")
_SCRIPT_PATTERNS: dict[str, regex.Pattern] = {}


def script_pattern(script: str, option: str = "--script-share") -> regex.Pattern:
    """A pattern matching one letter (or combining mark) of the ISO 15924 ``script``.

    Raises:
        ConfigError: a code Unicode has no script property for (names ``option``).
    """
    if script not in _SCRIPT_PATTERNS:
        parts = COMPOSITE_SCRIPTS.get(script, (script,))
        try:
            _SCRIPT_PATTERNS[script] = regex.compile("|".join(rf"\p{{sc={p}}}" for p in parts))
        except regex.error as e:
            raise ConfigError(f"{option}: the script {script!r} is not a Unicode script code (ISO 15924, such as "
                              f"Latn, Cyrl, Jpan); fix the language registry or set {option} 0") from e
    return _SCRIPT_PATTERNS[script]


def script_share(text: str, script: str) -> float:
    """The share of the letters (and combining marks) of ``text`` in ``script``; 0 for a text
    without letters. Digits, punctuation and spaces (script Common) are not counted.

    Raises:
        ConfigError: an unknown script code.
    """
    letters = _LETTER.findall(text)
    if not letters:
        return 0.0
    pat = script_pattern(script)
    return sum(1 for ch in letters if pat.fullmatch(ch)) / len(letters)


def shingles(text: str, n: int = 3) -> set:
    """Set of lowercase word ``n``-grams (the whole text when shorter)."""
    w = text.lower().split()
    return {" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


class NearDuplicateIndex:
    """Reference texts as a sparse binary matrix of word 3-gram shingles (scikit-learn's hashing
    vectorizer, 2**22 features), built once and compared with many candidate lists.

    ``index.mask(candidates)[i]`` is True when candidate ``i`` has Jaccard similarity >= ``threshold``
    with some reference text (compared in chunks of ``chunk`` candidates)."""

    def __init__(self, references: Sequence[str], threshold: float, chunk: int = 256):
        from sklearn.feature_extraction.text import HashingVectorizer  # deferred: scikit-learn takes 2-3 s to import

        # the same shingle sets as :func:`shingles` (a text shorter than 3 words is one shingle)
        self.vec = HashingVectorizer(analyzer=lambda t: list(shingles(t)), binary=True, norm=None,
                                     alternate_sign=False, n_features=2 ** 22)
        self.threshold, self.chunk, self.n = threshold, chunk, len(references)
        if self.n:
            ref = self.vec.transform(list(references)).tocsr()
            ref.data[:] = 1
            self.r_size = np.asarray(ref.sum(1)).ravel()
            self.ref_t = ref.T.tocsc()

    def mask(self, candidates: Sequence[str]) -> np.ndarray:
        """``(N,)`` bool for ``N`` candidates."""
        if not len(candidates) or not self.n:
            return np.zeros(len(candidates), dtype=bool)
        cand = self.vec.transform(list(candidates)).tocsr()
        cand.data[:] = 1
        c_size = np.asarray(cand.sum(1)).ravel()
        out = np.zeros(len(candidates), dtype=bool)
        for a in range(0, cand.shape[0], self.chunk):
            inter = (cand[a:a + self.chunk] @ self.ref_t).tocoo()
            if inter.nnz == 0:
                continue
            union = c_size[a + inter.row] + self.r_size[inter.col] - inter.data
            jac = inter.data / np.maximum(union, 1)
            out[a + np.unique(inter.row[jac >= self.threshold])] = True
        return out


def near_duplicate_mask(candidates: Sequence[str], references: Sequence[str], threshold: float,
                        chunk: int = 256) -> np.ndarray:
    """``mask[i]`` is True when candidate ``i`` has Jaccard similarity >= ``threshold`` (word 3-gram sets)
    with some reference text (see :class:`NearDuplicateIndex`)."""
    if not len(candidates) or not len(references):
        return np.zeros(len(candidates), dtype=bool)
    return NearDuplicateIndex(references, threshold, chunk).mask(candidates)


def filter_generated(texts: Sequence[str], held_out: Sequence[str] | NearDuplicateIndex, args: GenerationOptions,
                     script: str | None = None) -> tuple[list[str], dict]:
    """Apply the length bounds and (with ``script`` and ``args.min_script > 0``) the script filter,
    then drop exact duplicates, near duplicates of the held-out texts (validation and evaluation;
    a list, or an index of them built once for many calls) and near duplicates of earlier kept
    texts. Returns ``(kept, counts of removals)``.

    Raises:
        ConfigError: an unknown script code.
    """
    counts = {"removed_length": 0, "removed_script": 0, "removed_duplicate": 0, "removed_near_duplicate": 0,
              "removed_held_out_overlap": 0}
    check_script = script is not None and args.min_script > 0
    stage1, seen = [], set()
    for t in texts:
        n = len(t.split())
        if n < args.min_words or n > args.max_words:
            counts["removed_length"] += 1
            continue
        if check_script and script_share(t, script) < args.min_script:
            counts["removed_script"] += 1
            continue
        key = " ".join(t.lower().split())
        if key in seen:
            counts["removed_duplicate"] += 1
            continue
        seen.add(key)
        stage1.append(t)
    index = held_out if isinstance(held_out, NearDuplicateIndex) else NearDuplicateIndex(held_out, args.near_duplicate)
    overlap = index.mask(stage1)
    counts["removed_held_out_overlap"] = int(overlap.sum())
    stage2 = [t for t, o in zip(stage1, overlap) if not o]
    kept: list[str] = []
    kept_sh: list[set] = []
    # near duplicates among the samples: compare each text with the kept ones sharing a shingle
    index: dict[str, list[int]] = {}
    for t in stage2:
        sh = shingles(t)
        cands = {j for s in sh for j in index.get(s, ())}
        if any(len(sh & kept_sh[j]) / max(1, len(sh | kept_sh[j])) >= args.near_duplicate for j in cands):
            counts["removed_near_duplicate"] += 1
            continue
        for s in sh:
            index.setdefault(s, []).append(len(kept))
        kept.append(t)
        kept_sh.append(sh)
    return kept, counts


def teacher_entropy(logits: Sequence[np.ndarray], encoded: Encoded) -> np.ndarray:
    """Per example, the teacher's entropy normalised by ``log C`` (0: certain, 1: uniform).

    ``logits`` are per row, ``(T_i, C)`` (token level: averaged over the words' first subwords,
    positions with ``word_index >= 0``) or ``(C,)`` (sequence level); an example split into several
    rows averages its positions over all of them. Returns ``(N,)`` for ``N = len(encoded.n_words)``.
    """
    total = np.zeros(len(encoded.n_words))
    count = np.zeros(len(encoded.n_words))
    for row, lg in enumerate(logits):
        x = np.asarray(lg, dtype=np.float64)
        if x.ndim == 2:
            x = x[np.asarray(encoded.word_index[row]) >= 0]
        x = x.reshape(-1, x.shape[-1])
        x = x - x.max(-1, keepdims=True)
        p = np.exp(x)
        p /= p.sum(-1, keepdims=True)
        h = -(p * np.log(np.clip(p, 1e-12, None))).sum(-1) / math.log(x.shape[-1])
        e = encoded.example[row]
        total[e] += h.sum()
        count[e] += len(h)
    return total / np.maximum(count, 1)
