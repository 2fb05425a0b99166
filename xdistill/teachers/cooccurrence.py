"""Count-based word embeddings for a teacher trained from scratch (``--teacher-embeddings ppmi``).

Where no pretrained weights exist, the scratch teacher learns its subword embeddings from the
labeled sentences alone. Counting which subwords occur near which others in the run's whole text
(the same text ``--teacher-mlm`` reads: by default the transfer text and the labeled text) costs
seconds, not the hours masked-language-model pretraining needs, and gives each subword a vector
that places it among the subwords used like it.

The vectors are the truncated SVD of the positive pointwise mutual information (PPMI) matrix of
subword pairs within a window, with the settings Levy, Goldberg and Dagan found best ("Improving
Distributional Similarity with Lessons Learned from Word Embeddings", TACL 2015, sections 3.2-3.3):
word2vec's dynamic window (a pair ``d`` positions apart counts ``(K - d + 1) / K``), context
distribution smoothing (context counts raised to ``alpha = 0.75``), and eigenvalue weighting
``U S^p`` with ``p = 0.5``. Levy and Goldberg ("Neural Word Embedding as Implicit Matrix
Factorization", NeurIPS 2014) show that skip-gram factorises a shifted PMI matrix, so this is the
count-based counterpart of word2vec. The SVD is scikit-learn's randomized SVD (Halko et al. 2011).

Only the rows of subwords that occur in the text are set; the others keep the model's random
initialisation. The vectors are rescaled to the standard deviation of that initialisation
(``initializer_range``), so they enter the embedding sum (word + position + type, then LayerNorm)
with the weight a random row would have.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import sparse
from sklearn.utils.extmath import randomized_svd

from ..data.types import Ragged

logger = logging.getLogger(__name__)

@dataclass
class CooccurrenceReport:
    """What the PPMI-SVD embeddings were computed from (``teacher.embeddings`` in ``report.json``).

    ``tokens``: tokens in the text's rows (special tokens included; they are left out of the
    counts); ``pairs``: distinct co-occurring
    (subword, context) pairs; ``pieces``: subwords that occur in the text (their rows were set), of
    ``vocab_size``; ``dim``: SVD components; ``seconds``: wall time; ``sources``: texts per
    ``--mlm-text`` source.
    """

    method: str
    window: int
    alpha: float
    power: float
    tokens: int
    pairs: int
    pieces: int
    vocab_size: int
    dim: int
    seconds: float
    sources: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def n_tokens(rows: Sequence[Sequence[int]]) -> int:
    """Ids over all ``rows`` (a :class:`~xdistill.data.types.Ragged` or lists)."""
    return int(rows.lengths.sum()) if isinstance(rows, Ragged) else sum(len(r) for r in rows)


def cooccurrence_counts(rows: Sequence[Sequence[int]], vocab_size: int, window: int,
                        skip_ids: Sequence[int] = ()) -> sparse.csr_matrix:
    """Symmetric co-occurrence counts ``(V, V)`` of the ids in ``rows`` within ``window`` positions.

    A pair ``d`` positions apart (``1 <= d <= window``, inside one row) counts ``(window - d + 1) /
    window`` in both directions (word2vec's dynamic window in expectation). Ids in ``skip_ids``
    (special tokens) are removed first, so the words on either side of them become neighbours only
    if they were within the window anyway after removal.

    Raises:
        ValueError: ``window < 1`` or an id outside ``[0, vocab_size)``.
    """
    if window < 1:
        raise ValueError(f"window: expected at least 1, got {window}")
    if isinstance(rows, Ragged):  # the flat values as they are
        lengths, ids = rows.lengths, rows.flat.astype(np.int64)
    else:
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        ids = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(lengths.sum()))
    row_of = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    keep = ~np.isin(ids, np.asarray(list(skip_ids), dtype=np.int64))
    ids, row_of = ids[keep], row_of[keep]
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); got {ids.min()}..{ids.max()}")
    counts = sparse.csr_matrix((vocab_size, vocab_size), dtype=np.float64)
    for d in range(1, window + 1):
        same = row_of[:-d] == row_of[d:]
        a, b = ids[:-d][same], ids[d:][same]
        w = np.full(a.size, (window - d + 1) / window)
        counts = counts + sparse.coo_matrix((np.concatenate([w, w]), (np.concatenate([a, b]), np.concatenate([b, a]))),
                                            shape=(vocab_size, vocab_size)).tocsr()
    counts.sum_duplicates()
    return counts


def ppmi(counts: sparse.csr_matrix, alpha: float = 0.75) -> sparse.csr_matrix:
    """Positive PMI of a co-occurrence matrix ``(V, V)`` with context distribution smoothing:
    ``max(0, log(P(w, c) / (P(w) P_alpha(c))))``, ``P_alpha(c) = n(c)^alpha / sum_c' n(c')^alpha``
    (Levy, Goldberg and Dagan 2015, equation 3). Entries that are 0 after clipping are removed."""
    counts = counts.tocoo()
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    ctx = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    ctx_p = ctx / ctx.sum()
    pmi = np.log(counts.data) - np.log(row_sums[counts.row]) - np.log(ctx_p[counts.col])
    out = sparse.csr_matrix((np.maximum(pmi, 0.0), (counts.row, counts.col)), shape=counts.shape)
    out.eliminate_zeros()
    return out


def ppmi_svd_vectors(rows: Sequence[Sequence[int]], vocab_size: int, dim: int, skip_ids: Sequence[int] = (),
                     window: int = 5, alpha: float = 0.75, power: float = 0.5,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, CooccurrenceReport]:
    """PPMI-SVD vectors of the subwords of ``rows``: ``(vectors (V, dim) float32, seen (V,) bool,
    report)``. Rows of subwords that never occur (``seen`` false) are 0; with fewer than ``dim + 1``
    distinct subwords the columns past ``seen.sum() - 1`` are 0 too.

    Raises:
        ValueError: no subword occurs twice within a window (nothing to factorise).
    """
    t0 = time.perf_counter()
    counts = cooccurrence_counts(rows, vocab_size, window, skip_ids)
    seen = np.asarray(counts.sum(axis=1)).ravel() > 0
    index = np.flatnonzero(seen)
    if index.size < 2:
        raise ValueError("the text has fewer than 2 subwords that co-occur; nothing to factorise")
    m = ppmi(counts[index][:, index], alpha)
    k = min(dim, index.size - 1)
    u, s, _ = randomized_svd(m, n_components=k, n_iter=5, random_state=seed)
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    vectors[index, :k] = u * s ** power
    report = CooccurrenceReport(method="ppmi-svd", window=window, alpha=alpha, power=power,
                                tokens=n_tokens(rows), pairs=int(m.nnz), pieces=int(index.size),
                                vocab_size=vocab_size, dim=k, seconds=round(time.perf_counter() - t0, 1))
    return vectors, seen, report


def init_word_embeddings(model: torch.nn.Module, rows: Sequence[Sequence[int]], skip_ids: Sequence[int],
                         seed: int, window: int = 5) -> CooccurrenceReport:
    """Set the rows of ``model``'s input embeddings (``(V, D)``) of every subword that occurs in
    ``rows`` to its PPMI-SVD vector (:func:`ppmi_svd_vectors` with ``dim = D``), rescaled to the
    standard deviation of the embeddings' random initialisation; the other rows are left as they are.

    Raises:
        ValueError: as :func:`ppmi_svd_vectors`.
    """
    emb = model.get_input_embeddings().weight
    vectors, seen, report = ppmi_svd_vectors(rows, emb.shape[0], emb.shape[1], skip_ids, window=window, seed=seed)
    with torch.no_grad():
        got = torch.from_numpy(vectors[seen]).to(emb.dtype)
        emb[torch.from_numpy(np.flatnonzero(seen))] = got * (emb.std() / got.std().clamp_min(1e-12))
    logger.info("teacher: word embeddings of %d of %d subwords from the PPMI-SVD of %d tokens (window %d, %d "
                "pairs, %.1f s); the rest random", report.pieces, report.vocab_size, report.tokens, window,
                report.pairs, report.seconds)
    return report
