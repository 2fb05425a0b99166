"""Length-bucketed batching and padding for encoded rows; how often each group's rows are repeated
for temperature-based sampling over groups (languages)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .types import Encoded

IGNORE = -100


def bucket_batches(lengths: Sequence[int], batch_size: int | None = None, max_tokens: int | None = None,
                   shuffle: bool = False, seed: int = 0) -> list[np.ndarray]:
    """Group row indices of similar length into batches (little padding).

    Rows are sorted by length (shuffled within equal lengths when ``shuffle``),
    then cut into batches of at most ``batch_size`` rows and, if given, at most
    ``max_tokens`` padded tokens (rows x longest row). With ``shuffle`` the batch
    order is shuffled too. Every row appears in exactly one batch.

    Raises:
        ValueError: neither ``batch_size`` nor ``max_tokens`` is given.
    """
    if batch_size is None and max_tokens is None:
        raise ValueError("bucket_batches needs batch_size or max_tokens")
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    tiebreak = rng.random(len(lengths)) if shuffle else np.arange(len(lengths))
    order = np.lexsort((tiebreak, lengths))
    batches, cur, cur_max = [], [], 0
    for i in order:
        n = int(lengths[i])
        new_max = max(cur_max, n)
        too_many = batch_size is not None and len(cur) >= batch_size
        too_big = max_tokens is not None and cur and new_max * (len(cur) + 1) > max_tokens
        if cur and (too_many or too_big):
            batches.append(np.array(cur))
            cur, new_max = [], n
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(np.array(cur))
    if shuffle:
        rng.shuffle(batches)
    return batches


def padding_fraction(lengths: Sequence[int], batches: Sequence[np.ndarray]) -> float:
    """Padded positions / all positions over the batches (0 = no padding)."""
    lengths = np.asarray(lengths)
    real = sum(int(lengths[b].sum()) for b in batches)
    total = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 0.0 if total == 0 else 1.0 - real / total


def pad_rows(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """``(B, T)`` long tensor of the rows right-padded with ``value``."""
    t = max(len(r) for r in rows)
    out = torch.full((len(rows), t), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


def collate_inputs(encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids`` (right-padded with ``pad_id``) and ``attention_mask`` of the given rows, both ``(B, T)`` int64."""
    ids, mask = encoded.input_ids.padded(rows, pad_id)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}


def temperature_repeats(sizes: dict[str, int], temperature: float) -> dict[str, int]:
    """How often to repeat each group's rows so that group ``g`` is drawn with probability close to
    ``p_g ∝ n_g^(1/T)`` (temperature-based sampling over languages: Arivazhagan et al. 2019, sec. 4.1;
    XLM, Conneau & Lample 2019, sec. 3.1), the largest group once. ``T = 1`` keeps the sizes.

    Returns:
        ``{group: repeats}``, each at least 1 (an empty group: 1).
    """
    alpha = 1.0 / temperature
    ratio = {g: (n ** alpha) / n for g, n in sizes.items() if n > 0}  # target share over natural share
    top = min(ratio.values()) if ratio else 1.0
    return {g: max(1, int(round(ratio[g] / top))) if g in ratio else 1 for g in sizes}
