"""Where a distillation stage's teacher targets come from: the cache, or the teacher live.

A :class:`Targets` gives the teacher features of a batch's rows, shaped like the student's
outputs (the output level pads or reduces them). :class:`CachedTargets` reads the features
cached once per transfer set (:mod:`xdistill.transfer.cache`); :class:`LiveTeacherTargets`
runs the teacher on the batch, for what cannot be cached (attention maps, inputs that change
every step such as adversarial examples); :class:`SplitTargets` combines them. The training loop
does not know which it has.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Sequence

import torch

from ..adapters import OutputLevel
from ..data.types import Feature
from ..teachers import Teacher
from .cache import FeatureCache, FeatureCacheView


class Targets(ABC):
    """Teacher features for the rows of a batch."""

    @abstractmethod
    def batch(self, rows: Sequence[int], batch: dict[str, torch.Tensor], keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{key: tensor}`` for ``rows`` (indices into this source's rows) whose collated inputs are
        ``batch`` (``input_ids``/``attention_mask`` ``(B, T)``): ``(B, T, F)`` for token tasks (zero
        beyond each row's length), ``(B, F)`` for sequence tasks; float32 on the inputs' device."""


class CachedTargets(Targets):
    """Targets read from a :class:`~xdistill.transfer.cache.FeatureCache` (or a view of it)."""

    def __init__(self, cache: FeatureCache | FeatureCacheView, level: OutputLevel):
        self.cache = cache
        self.level = level

    def batch(self, rows, batch, keys):
        width = batch["input_ids"].size(1)
        dev = batch["input_ids"].device
        return {k: self.level.target_batch(lambda r, w, k=k: self.cache.batch(k, r, w), rows, width).to(dev)
                for k in keys}


class LiveTeacherTargets(Targets):
    """Targets computed by the teacher on the batch itself (no cache, no gradient). Relational
    features (attention maps, queries, keys, values) keep every position at every output level.

    Attributes:
        seconds: wall seconds spent in the teacher so far (the cost of the live teacher, reported).
        batches: batches it ran.
    """

    def __init__(self, teacher: Teacher, level: OutputLevel):
        self.teacher = teacher
        self.level = level
        self.seconds = 0.0
        self.batches = 0

    def batch(self, rows, batch, keys):
        t0 = time.perf_counter()
        dev = batch["input_ids"].device
        tdev = self.teacher.device
        self.teacher.eval()
        feats = self.teacher.features(batch["input_ids"].to(tdev), batch["attention_mask"].to(tdev),
                                      [Feature.parse(k) for k in keys])
        out = {k: (v if Feature.parse(k).relational else self.level.reduce(v)).float().to(dev) for k, v in feats.items()}
        self.seconds += time.perf_counter() - t0
        self.batches += 1
        return out


class SplitTargets(Targets):
    """Features the cache holds from ``cached``, relational ones (which it cannot hold) from ``live``."""

    def __init__(self, cached: Targets | None, live: Targets | None):
        self.cached = cached
        self.live = live

    def batch(self, rows, batch, keys):
        relational = [k for k in keys if Feature.parse(k).relational]
        rest = [k for k in keys if k not in relational]
        out = {}
        for part, source in ((rest, self.cached), (relational, self.live)):
            if not part:
                continue
            if source is None:
                raise ValueError(f"teacher features {', '.join(part)}: no " + ("cache" if part is rest else "live teacher")
                                 + " provides them")
            out.update(source.batch(rows, batch, part))
        return out
