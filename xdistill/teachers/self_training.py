"""Self-training of the teacher on the transfer text (``--teacher-self-training N``).

A fine-tuned teacher labels the unlabeled transfer text with hard labels; a new teacher of the same
architecture and initialisation, with its dropout as the noise, is fine-tuned on the labeled rows and
those pseudo-labeled rows together, selected on the same validation split, and replaces it; ``N``
rounds. This is self-training as in Yarowsky (ACL 1995) and Noisy Student (Xie, Luong, Hovy and Le,
"Self-training with Noisy Student improves ImageNet classification", CVPR 2020, Sec. 2: the student
is trained from scratch on labeled and pseudo-labeled data, noised, then becomes the teacher): the
only way a teacher without pretraining learns from the task's unlabeled text with the task's own
objective. Pseudo labels take the place of gold labels in :class:`~xdistill.data.types.Encoded`:
one per word (its first subword) for token tasks, one per row for sequence tasks.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import torch

from ..adapters import OutputLevel, batched_logits
from ..data.batching import IGNORE
from ..data.types import Encoded


@torch.no_grad()
def pseudo_labeled(model: torch.nn.Module, level: OutputLevel, pool: Encoded, pad_id: int,
                   max_tokens: int = 8192) -> Encoded:
    """``pool``'s rows with the model's hard labels in place of theirs (:meth:`OutputLevel.pseudo_labels`:
    the argmax of the ``(T, C)`` or ``(C,)`` logits), read in length-bucketed batches of at most
    ``max_tokens`` padded tokens. The inputs are ``pool``'s own (not copied)."""
    model.eval()
    device = next(model.parameters()).device

    def forward(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    logits = batched_logits(forward, level, pool, pad_id, max_tokens=max_tokens, device=device)
    labels = [level.pseudo_labels(x, pool.word_index[i]) for i, x in enumerate(logits)]
    return Encoded(pool.input_ids, labels, pool.word_index, pool.example, pool.n_words, dict(pool.stats))


def label_shares(enc: Encoded, names: Sequence[str]) -> dict[str, float]:
    """Percent of the labeled positions (rows for sequence tasks) that carry each label, for the report:
    how the pseudo labels are distributed (e.g. how much of the text a NER teacher tags as entities)."""
    counts: Counter = Counter()
    for row in enc.labels:
        counts.update(v for v in row if v != IGNORE)
    total = sum(counts.values()) or 1
    return {names[k]: round(100.0 * counts[k] / total, 2) for k in range(len(names))}


def agreement(a: Encoded, b: Encoded) -> float:
    """Percent of labeled positions where two labelings of the same rows agree (how much a round
    changed the pseudo labels)."""
    same = total = 0
    for x, y in zip(a.labels, b.labels):
        x, y = np.asarray(x), np.asarray(y)
        keep = x != IGNORE
        same += int((x[keep] == y[keep]).sum())
        total += int(keep.sum())
    return round(100.0 * same / max(total, 1), 2)
