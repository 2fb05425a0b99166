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


def confident_labels(logits: np.ndarray, labels: list[int], min_confidence: float) -> list[int]:
    """``labels`` with -100 wherever the softmax of ``logits`` (``(T, C)`` or ``(C,)``, over the last
    axis) puts less than ``min_confidence`` on its most likely label: the uncertain positions (or row)
    are left out of the loss, as uncertainty-aware self-training selects confident pseudo labels
    (Mukherjee and Hassan Awadallah, "Uncertainty-aware Self-training for Few-shot Text Classification",
    NeurIPS 2020; here by the softmax probability alone, without dropout sampling)."""
    x = np.asarray(logits, dtype=np.float64)
    p = np.exp(x - x.max(-1, keepdims=True))
    top = np.atleast_1d((p / p.sum(-1, keepdims=True)).max(-1))
    return [v if c >= min_confidence else IGNORE for v, c in zip(labels, top)]


@torch.no_grad()
def pseudo_labeled(model: torch.nn.Module, level: OutputLevel, pool: Encoded, pad_id: int,
                   max_tokens: int = 8192, min_confidence: float = 0.0) -> Encoded:
    """``pool``'s rows with the model's hard labels in place of theirs (:meth:`OutputLevel.pseudo_labels`:
    the argmax of the ``(T, C)`` or ``(C,)`` logits), read in length-bucketed batches of at most
    ``max_tokens`` padded tokens. With ``min_confidence`` > 0, labels whose softmax probability is
    lower are -100 (:func:`confident_labels`) and rows left without a label are dropped. The inputs are
    ``pool``'s own (not copied) when no row is dropped."""
    model.eval()
    device = next(model.parameters()).device

    def forward(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    logits = batched_logits(forward, level, pool, pad_id, max_tokens=max_tokens, device=device)
    labels = [level.pseudo_labels(x, pool.word_index[i]) for i, x in enumerate(logits)]
    if min_confidence > 0:
        labels = [confident_labels(x, y, min_confidence) for x, y in zip(logits, labels)]
    out = Encoded(pool.input_ids, labels, pool.word_index, pool.example, pool.n_words, dict(pool.stats))
    keep = [i for i, y in enumerate(labels) if any(v != IGNORE for v in y)]
    if len(keep) == len(labels):
        return out
    # the examples of the rows that kept a label (another window of such an example adds no loss)
    return out.subset_examples(sorted({out.example[i] for i in keep}))


def label_shares(enc: Encoded, names: Sequence[str]) -> dict[str, float]:
    """Percent of the labeled positions (rows for sequence tasks) that carry each label, for the report:
    how the pseudo labels are distributed (e.g. how much of the text a NER teacher tags as entities)."""
    counts: Counter = Counter()
    for row in enc.labels:
        counts.update(v for v in row if v != IGNORE)
    total = sum(counts.values()) or 1
    return {names[k]: round(100.0 * counts[k] / total, 2) for k in range(len(names))}


def labeled_positions(enc: Encoded) -> int:
    """How many positions (rows for sequence tasks) carry a label (not -100)."""
    return sum(int((np.asarray(row) != IGNORE).sum()) for row in enc.labels)


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
