"""The run's splits kept on disk: the transfer split's text as a memory-mapped Arrow file, its
encoded rows as ``.npy`` files, so neither grows the process with the transfer set.

Every group's (language's) splits come from the task adapter as ``datasets.Dataset`` objects in
memory. The transfer split, the one that grows with the transfer set, is written once with
``Dataset.save_to_disk`` to ``OUTPUT/splits/transfer.rankR`` and read back with
``datasets.load_from_disk``: Arrow's memory map, whose clean pages the kernel drops under memory
pressure, instead of an in-memory table. Each group's transfer split becomes a contiguous slice of
that one file (``Dataset.select`` of a range is a zero-copy table slice). Its rows are encoded a part
at a time straight to ``OUTPUT/rows/transfer.rankR`` (:func:`~xdistill.data.stored.encode_to_disk`).
Each process (rank) keeps its own folders, rewritten by every run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, concatenate_datasets, load_from_disk
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from .. import parallel
from ..adapters import TaskAdapter
from ..data.stored import encode_to_disk
from ..data.types import Encoded, TaskData
from ..utils import publish_folder, staging_folder

logger = logging.getLogger(__name__)

#: the splits every task builds per group, concatenated over groups for training
SPLITS = ("labeled", "validation", "teacher_labeled", "transfer")


def rows_folder(out: Path, name: str) -> Path:
    """Where this process keeps the encoded rows of ``name`` (a transfer source, the transfer split or the
    union): ``OUTPUT/rows/NAME.rankR``."""
    return Path(out) / "rows" / f"{name}.rank{parallel.rank()}"


def concat_groups(data: TaskData) -> dict[str, Dataset]:
    """Each of :data:`SPLITS` over all groups, in group order."""
    out = {}
    for name in SPLITS:
        parts = [getattr(g, name) for g in data.groups.values()]
        out[name] = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return out


def dataset_on_disk(dataset: Dataset, folder: Path) -> Dataset:
    """``dataset`` written with ``save_to_disk`` into ``FOLDER.tmpPID``, renamed to ``folder`` (an
    earlier run's is replaced) and read back memory-mapped (``datasets.load_from_disk``).

    Raises:
        OSError: the folder cannot be written.
    """
    tmp = staging_folder(folder)
    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # one bar per save is noise in a run's log
    try:
        dataset.save_to_disk(str(tmp))
    finally:
        if not quiet:
            enable_progress_bars()
    publish_folder(tmp, folder)
    return load_from_disk(str(folder))


def transfer_split_on_disk(data: TaskData, splits: dict[str, Dataset], out: Path) -> None:
    """Replace ``splits["transfer"]`` and every group's transfer split by memory-mapped views of one
    Arrow file, ``OUTPUT/splits/transfer.rankR`` (the same rows in the same order)."""
    stored = dataset_on_disk(splits["transfer"], Path(out) / "splits" / f"transfer.rank{parallel.rank()}")
    start = 0
    for g in data.groups.values():
        n = len(g.transfer)
        g.transfer = stored.select(range(start, start + n))
        start += n
    splits["transfer"] = stored
    pa.default_memory_pool().release_unused()  # the in-memory tables' pages, back to the system


def encode_splits(adapter: TaskAdapter, splits: dict[str, Dataset], tokenizer, max_length: int,
                  out: Path) -> dict[str, Encoded]:
    """The rows of every split; the transfer split's are encoded a part at a time straight to
    ``OUTPUT/rows/transfer.rankR`` (:func:`~xdistill.data.stored.encode_to_disk`), the others in memory."""
    enc = {name: adapter.encode(ds, tokenizer, max_length, name) for name, ds in splits.items() if name != "transfer"}
    folder = rows_folder(out, "transfer")
    enc["transfer"] = encode_to_disk(lambda part: adapter.encode(part, tokenizer, max_length), splits["transfer"],
                                     folder)
    logger.info("transfer: %d examples encoded into %d rows in %s (%s)", len(enc["transfer"].n_words),
                len(enc["transfer"]), folder, enc["transfer"].stats)
    return enc
