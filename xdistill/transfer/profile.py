"""What the teacher's predictions on each transfer set look like (read from the teacher-output cache).

Generation-distillation only pays when the generated text resembles what the teacher was trained
on: a class balance far from the unlabeled text's, or NER sentences with no entity, teach the
student little. :func:`transfer_profiles` decodes the cached teacher logits of every transfer set
and summarises them with the adapter's :meth:`~xdistill.adapters.TaskAdapter.prediction_profile`
(label shares; NER: entity rates), without running the teacher again.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..adapters import TaskAdapter
from ..data.types import Encoded
from .cache import FeatureCache


def cached_predictions(cache: FeatureCache, adapter: TaskAdapter, encoded: Encoded, rows: Sequence[int],
                       batch: int = 256, chunk_examples: int = 4096) -> list:
    """The adapter's decoded teacher predictions for ``rows`` of ``encoded`` (the cache's rows in the
    same order: every row of each example they touch, in order), from the cached float16 logits; one
    per example of the sub-selection.

    Decoded ``chunk_examples`` examples at a time: the float32 logits of a chunk are dropped once it is
    decoded, so memory holds one chunk's logits, not the whole transfer set's (hundreds of MiB at a
    few hundred thousand sentences).

    Raises:
        KeyError: the cache holds no logits.
    """
    rows = np.asarray(list(rows), dtype=np.int64)
    sub = encoded_rows(encoded, rows)
    lengths = encoded.lengths
    example = np.asarray(sub.example, dtype=np.int64)
    level = adapter.level
    out: list = []
    for e0 in range(0, len(sub.n_words), chunk_examples):
        e1 = min(e0 + chunk_examples, len(sub.n_words))
        a, z = (int(x) for x in np.searchsorted(example, [e0, e1]))
        part = Encoded(sub.input_ids[a:z], sub.labels[a:z], sub.word_index[a:z], (example[a:z] - e0).tolist(),
                       sub.n_words[e0:e1])
        logits: list[np.ndarray] = []
        for b in range(a, z, batch):
            chunk = rows[b:min(b + batch, z)]
            lens = lengths[chunk].tolist()
            x = level.target_batch(lambda rs, w: cache.batch("logits", rs, w), chunk.tolist(), max(lens))
            logits += level.row_logits(x, lens)
        out += adapter.decode(logits, part)
    return out


def encoded_rows(encoded: Encoded, rows: Sequence[int]) -> Encoded:
    """The rows ``rows`` of ``encoded`` (whole examples, in order), examples renumbered."""
    keep = sorted({encoded.example[i] for i in rows})
    return encoded.subset_examples(keep)


def transfer_profiles(cache: FeatureCache, adapter: TaskAdapter, encoded: Encoded, sets: Sequence[str],
                      rows_of: Callable[[str], list[int]]) -> dict[str, dict]:
    """Per transfer set, :meth:`prediction_profile` of the teacher's cached predictions on its rows."""
    return {s: adapter.prediction_profile(cached_predictions(cache, adapter, encoded, rows_of(s))) for s in sets}
