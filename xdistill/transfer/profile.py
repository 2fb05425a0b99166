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
                       batch: int = 256) -> list:
    """The adapter's decoded teacher predictions for ``rows`` of ``encoded`` (the cache's rows in the
    same order), from the cached float16 logits; one per example of the sub-selection.

    Raises:
        KeyError: the cache holds no logits.
    """
    rows = list(rows)
    sub = encoded_rows(encoded, rows)
    level = adapter.level
    logits: list[np.ndarray] = []
    for a in range(0, len(rows), batch):
        chunk = rows[a:a + batch]
        lengths = [len(encoded.input_ids[i]) for i in chunk]
        x = level.target_batch(lambda rs, w: cache.batch("logits", rs, w), chunk, max(lengths))
        logits += level.row_logits(x, lengths)
    return adapter.decode(logits, sub)


def encoded_rows(encoded: Encoded, rows: Sequence[int]) -> Encoded:
    """The rows ``rows`` of ``encoded`` (whole examples, in order), examples renumbered."""
    keep = sorted({encoded.example[i] for i in rows})
    return encoded.subset_examples(keep)


def transfer_profiles(cache: FeatureCache, adapter: TaskAdapter, encoded: Encoded, sets: Sequence[str],
                      rows_of: Callable[[str], list[int]]) -> dict[str, dict]:
    """Per transfer set, :meth:`prediction_profile` of the teacher's cached predictions on its rows."""
    return {s: adapter.prediction_profile(cached_predictions(cache, adapter, encoded, rows_of(s))) for s in sets}
