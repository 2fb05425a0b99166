"""Transfer text and the teacher's outputs on it: sources of unlabeled text
(:mod:`~xdistill.transfer.sources`: the task's unlabeled text, generated text), generation-
distillation (:mod:`~xdistill.transfer.generation`), the teacher-feature cache
(:mod:`~xdistill.transfer.cache`) and the targets a distillation stage reads
(:mod:`~xdistill.transfer.targets`: cached or from a live teacher), and how often an epoch
visits each language's rows (:mod:`~xdistill.transfer.sampling`)."""

from .cache import FeatureCache, FeatureCacheView, inputs_fingerprint, label_rows
from .sampling import row_groups, sampled_transfer_rows
from .sources import (TRANSFER_SETS, TRANSFER_SOURCES, TransferContext, TransferSource, TransferText, register_source,
                      resolve_transfer_sets, set_rows)
from .targets import CachedTargets, LiveTeacherTargets, SplitTargets, Targets

__all__ = ["CachedTargets", "FeatureCache", "FeatureCacheView", "LiveTeacherTargets", "SplitTargets", "TRANSFER_SETS",
           "TRANSFER_SOURCES", "Targets", "TransferContext", "TransferSource", "TransferText", "inputs_fingerprint",
           "label_rows", "register_source", "resolve_transfer_sets", "row_groups", "sampled_transfer_rows",
           "set_rows"]
