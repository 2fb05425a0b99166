"""Temperature-based sampling over groups (languages) for the student's transfer set.

In a multilingual transfer set the large languages hold most rows, so a language with a few hundred
sentences gets a few hundred updates' worth of the student's attention. Multilingual models sample
language ``g`` with probability ``p_g ∝ n_g^(1/T)`` (Arivazhagan et al. 2019, "Massively
Multilingual Neural Machine Translation in the Wild", sec. 4.1; XLM, Conneau & Lample 2019,
sec. 3.1); here, as for the teacher's fine-tuning (``--teacher-lang-temperature``), by repeating the
rows of smaller groups in each epoch (``--transfer-lang-temperature``). The teacher labels each row
once: repeats are indices into the cached rows, never copies of the text.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Sequence

import numpy as np

from ..data.batching import temperature_repeats
from ..data.types import Encoded

logger = logging.getLogger(__name__)


def row_groups(sources: Sequence[tuple[Encoded, Sequence[str] | None]]) -> list[str | None]:
    """The group of every row of the sources' union (their rows concatenated in order): each
    source's rows take the group of their example (``None`` where the source knows no groups)."""
    out: list[str | None] = []
    for encoded, groups in sources:
        out += [None] * len(encoded) if groups is None else [groups[e] for e in encoded.example]
    return out


def epoch_rows(groups: Sequence[str | None], temperature: float) -> tuple[np.ndarray | None, dict[str, int]]:
    """The rows one epoch visits when groups are sampled with ``temperature``: every row index,
    repeated as often as :func:`~xdistill.data.batching.temperature_repeats` says for its group
    (rows of no group once), and the repeats per group. ``(None, {})`` when nothing is repeated
    (``T = 1``, one group, or groups of equal size).

    Args:
        groups: ``(N,)`` the group of each row (``None``: not known).
        temperature: ``T >= 1``; larger is closer to uniform over groups.
    """
    sizes = Counter(g for g in groups if g is not None)
    repeats = temperature_repeats(sizes, temperature)
    if not any(k > 1 for k in repeats.values()):
        return None, {}
    counts = np.asarray([repeats.get(g, 1) if g is not None else 1 for g in groups], dtype=np.int64)
    return np.repeat(np.arange(len(groups), dtype=np.int64), counts), repeats


def sampled_transfer_rows(name: str, groups: Sequence[str | None],
                          temperature: float) -> tuple[np.ndarray | None, dict | None]:
    """:func:`epoch_rows` for the transfer set ``name``, with a log line and the report's record of
    what was repeated (``{"temperature", "repeats" (groups repeated more than once), "rows",
    "rows_per_epoch"}``; ``None`` when nothing was)."""
    rows, repeats = epoch_rows(groups, temperature)
    if rows is None:
        return None, None
    record = {"temperature": temperature, "repeats": {g: k for g, k in repeats.items() if k > 1},
              "rows": len(groups), "rows_per_epoch": len(rows)}
    logger.info("transfer set %s: groups sampled with temperature %g: rows repeated %s (%d rows per epoch from %d)",
                name, temperature, ", ".join(f"{g} x{k}" for g, k in record["repeats"].items()), len(rows), len(groups))
    return rows, record
