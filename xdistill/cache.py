"""Teacher outputs on the transfer set, computed once and cached on disk.

The teacher runs once over the transfer set (and the validation split, for
stage 1's early stopping) in length-bucketed batches. Per row it stores logits
(float16) and the hidden states of the layer used for the representation loss
(float16), ragged rows flattened with an offsets array, as ``.npy`` files read
back memory-mapped. Every stage, re-run and ``--resume`` reuses them.

The cache key hashes the teacher's weights fingerprint, the exact input ids of
every row and the settings (layer, dtype, format version), so a different
teacher, data or setting never reads a stale cache. A cache folder is written
under a temporary name and renamed when complete, so an interrupted labeling
run leaves nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .adapters.base import Encoded, TaskAdapter
from .batching import bucket_batches, padding_fraction
from .utils import atomic_write_json

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1


class TeacherOutputsView:
    """Rows ``rows`` of a :class:`TeacherOutputs`, with the same ``batch``/``logits``/``hidden`` interface."""

    def __init__(self, base: TeacherOutputs, rows: np.ndarray):
        self.base = base
        self.index = rows

    def __len__(self) -> int:
        return len(self.index)

    def logits(self, i: int) -> np.ndarray:
        return self.base.logits(int(self.index[i]))

    def hidden(self, i: int) -> np.ndarray:
        return self.base.hidden(int(self.index[i]))

    def batch(self, rows, width: int):
        return self.base.batch([int(self.index[r]) for r in rows], width)


def inputs_fingerprint(encoded: Encoded) -> str:
    """SHA-256 (16 hex digits) of every row's input ids, in order."""
    h = hashlib.sha256()
    for ids in encoded.input_ids:
        h.update(np.asarray(ids, dtype=np.int32).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def cache_key(teacher_fingerprint: str, encoded: Encoded, settings: dict) -> str:
    """The key of a cache entry: teacher weights, input rows and settings."""
    payload = json.dumps({"teacher": teacher_fingerprint, "inputs": inputs_fingerprint(encoded),
                          "settings": settings, "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class TeacherOutputs:
    """Cached teacher outputs for ``n`` rows: ``logits(i)`` is ``(T_i, C)`` (or ``(1, C)``),
    ``hidden(i)`` is ``(T_i, D)``; float16 memory-mapped arrays."""

    path: Path
    logits_flat: np.ndarray
    hidden_flat: np.ndarray
    offsets: np.ndarray
    meta: dict

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def logits(self, i: int) -> np.ndarray:
        return self.logits_flat[self.offsets[i]: self.offsets[i + 1]]

    def hidden(self, i: int) -> np.ndarray:
        return self.hidden_flat[self.offsets[i]: self.offsets[i + 1]]

    def batch(self, rows, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(B, width, C)`` logits and ``(B, width, D)`` hidden states (float32) for ``rows``."""
        c, d = self.logits_flat.shape[1], self.hidden_flat.shape[1]
        lg = np.zeros((len(rows), width, c), dtype=np.float32)
        hd = np.zeros((len(rows), width, d), dtype=np.float32)
        for j, r in enumerate(rows):
            a, b = self.offsets[r], self.offsets[r + 1]
            lg[j, : b - a] = self.logits_flat[a:b]
            hd[j, : b - a] = self.hidden_flat[a:b]
        return torch.from_numpy(lg), torch.from_numpy(hd)

    def rows(self, rows: Sequence[int]) -> "TeacherOutputsView":
        """A view of some rows, renumbered 0..len(rows)-1 (e.g. one transfer set out of their union)."""
        return TeacherOutputsView(self, np.asarray(rows, dtype=np.int64))

    @classmethod
    def open(cls, path: Path) -> "TeacherOutputs":
        meta = json.loads((path / "meta.json").read_text())
        return cls(path=path, logits_flat=np.load(path / "logits.npy", mmap_mode="r"),
                   hidden_flat=np.load(path / "hidden.npy", mmap_mode="r"),
                   offsets=np.load(path / "offsets.npy"), meta=meta)


@torch.no_grad()
def teacher_outputs(model, adapter: TaskAdapter, encoded: Encoded, cache_root: Path, teacher_fingerprint: str,
                    layer: int, pad_id: int, max_tokens: int, name: str) -> tuple[TeacherOutputs, dict]:
    """Cached teacher logits and layer-``layer`` hidden states for every row of ``encoded``.

    Computes them (length-bucketed batches of at most ``max_tokens`` padded
    tokens) unless a cache entry with the same key exists. Returns the outputs
    and stats: ``cached`` (bool), ``seconds``, ``real_tokens``,
    ``tokens_per_second`` (real, non-padding tokens), ``padding_fraction``.
    """
    settings = {"layer": layer, "dtype": "float16", "level": adapter.level, "name": name}
    key = cache_key(teacher_fingerprint, encoded, settings)
    path = Path(cache_root) / f"{name}-{key}"
    if (path / "meta.json").is_file():
        out = TeacherOutputs.open(path)
        logger.info("teacher outputs for %s read from cache %s", name, path)
        return out, dict(out.meta["stats"], cached=True)
    lengths = encoded.lengths
    per_row = adapter.positions_per_row(lengths)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(per_row, out=offsets[1:])
    n_layers = getattr(model.config, "num_hidden_layers", None)
    hidden_size = model.config.hidden_size
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    logits_mm = np.lib.format.open_memmap(tmp / "logits.npy", mode="w+", dtype=np.float16,
                                          shape=(int(offsets[-1]), adapter.num_labels))
    hidden_mm = np.lib.format.open_memmap(tmp / "hidden.npy", mode="w+", dtype=np.float16,
                                          shape=(int(offsets[-1]), hidden_size))
    batches = bucket_batches(lengths, max_tokens=max_tokens)
    device = next(model.parameters()).device
    model.eval()
    t0 = time.perf_counter()
    for rows in tqdm(batches, desc=f"teacher labels {name}", mininterval=30, disable=None):
        b = adapter.collate(encoded, rows, pad_id)
        out = model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device),
                    output_hidden_states=True)
        hs = out.hidden_states[layer].float().cpu()
        lg_rows, hd_rows = adapter.teacher_outputs(out.logits.float().cpu(), hs, [len(encoded.input_ids[r]) for r in rows])
        for r, lg, hd in zip(rows, lg_rows, hd_rows):
            a, z = offsets[r], offsets[r + 1]
            logits_mm[a:z] = lg.reshape(z - a, -1).to(torch.float16).numpy()
            hidden_mm[a:z] = hd.reshape(z - a, -1).to(torch.float16).numpy()
    seconds = time.perf_counter() - t0
    logits_mm.flush()
    hidden_mm.flush()
    del logits_mm, hidden_mm
    np.save(tmp / "offsets.npy", offsets)
    real = int(lengths.sum())
    stats = {"seconds": seconds, "rows": len(encoded), "real_tokens": real,
             "tokens_per_second": real / seconds if seconds > 0 else None,
             "padding_fraction": padding_fraction(lengths, batches), "batches": len(batches)}
    atomic_write_json(tmp / "meta.json", {"key": key, "settings": settings, "teacher": teacher_fingerprint,
                                          "teacher_layers": n_layers, "stats": stats})
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    logger.info("teacher labeled %s: %d rows, %d real tokens in %.1f s (%.0f tokens/s), padding %.1f%%",
                name, len(encoded), real, seconds, stats["tokens_per_second"] or 0, 100 * stats["padding_fraction"])
    return TeacherOutputs.open(path), dict(stats, cached=False)
