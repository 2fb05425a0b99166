"""The student's vocabulary: the teacher's, pruned to the tokens of the run's data, and its
embeddings initialised from the teacher's by SVD (XtremeDistil sec. 3.1; XtremeDistilTransformers'
``--compress_word_embedding``).

A student reads the teacher's input ids (positions align 1:1 with the teacher's subwords) and
maps them to its own ids with a vocabulary map: student id 0 is padding, 1 is unknown.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch

PAD, UNK = 0, 1


def prune_vocabulary(rows: Iterable[Sequence[int]], teacher_vocab_size: int, pad_id: int, unk_id: int,
                     keep_ids: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Keep the teacher token ids seen in ``rows`` (plus ``keep_ids``, e.g. special tokens).

    Returns ``(kept, vocab_map)``: ``kept[s]`` is the teacher id of student id
    ``s`` (student 0 = padding, 1 = unknown), and ``vocab_map`` ``(V_teacher,)``
    maps every teacher id to its student id (unseen ids -> 1).
    """
    seen = np.zeros(teacher_vocab_size, dtype=bool)
    for r in rows:
        seen[np.asarray(r, dtype=np.int64)] = True
    seen[np.fromiter(keep_ids, dtype=np.int64)] = True
    seen[pad_id] = seen[unk_id] = False
    kept = np.concatenate([[pad_id, unk_id], np.flatnonzero(seen)]).astype(np.int64)
    vocab_map = np.full(teacher_vocab_size, UNK, dtype=np.int64)
    vocab_map[kept] = np.arange(len(kept))
    return kept, vocab_map


def svd_embeddings(teacher_embeddings: torch.Tensor, kept: Sequence[int], dim: int, seed: int = 0) -> torch.Tensor:
    """SVD initialisation of the student embeddings (XtremeDistil sec. 3.1).

    ``teacher_embeddings`` ``(V_teacher, D)``; the kept rows ``W`` ``(V_s, D)`` are
    factorised ``W = U S V^T`` and projected onto the top ``dim`` right singular
    vectors, ``W V[:, :dim] = U[:, :dim] S[:dim]`` ``(V_s, dim)``: the best
    rank-``dim`` approximation of the teacher's embeddings in ``dim`` coordinates.
    If ``dim`` exceeds the rank available (min(V_s, D)), the remaining columns
    are small random values. Row 0 (padding) is zero.
    """
    w = teacher_embeddings.detach().float().cpu()[torch.as_tensor(np.asarray(kept))]
    _, s, vh = torch.linalg.svd(w, full_matrices=False)
    k = min(dim, vh.size(0))
    out = torch.empty(w.size(0), dim)
    out[:, :k] = w @ vh[:k].T
    if dim > k:
        g = torch.Generator().manual_seed(seed)
        out[:, k:] = torch.randn(w.size(0), dim - k, generator=g) * out[:, :k].std() * 0.1
    out[PAD] = 0.0
    return out
