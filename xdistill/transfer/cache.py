"""Teacher features on the transfer set, computed once and cached on disk.

The teacher runs once over the transfer set (and the validation split, for model
selection on a distillation loss) in length-bucketed batches. Per row it stores the named
features the schedule's matches ask for (:class:`~xdistill.data.types.Feature`: ``logits``,
``hidden_states.L`` for any layers), as float16, ragged rows flattened with one shared
offsets array, one ``KEY.npy`` file per feature, read back memory-mapped. Which positions of
a row are stored is the output level's business (every position for token tasks, the first
for sequence tasks). Every stage, re-run and ``--resume`` reuses them.

Attention maps are not cached (``(A, T, T)`` per row grows with the square of the length):
a schedule that matches attentions reads them from a live teacher
(:class:`~xdistill.transfer.targets.LiveTeacherTargets`).

The cache key hashes the teacher's weights fingerprint, the exact input ids of every row and
the settings (features, dtype, level, format version), so a different teacher, data or
setting never reads a stale cache. A cache folder is written under a temporary name and
renamed when complete, so an interrupted labeling run leaves nothing that looks finished, and
``meta.json`` records the size and SHA-256 of every file: a cache that was truncated or changed
afterwards is computed again (with a warning), never read as garbage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..adapters import OutputLevel
from ..data.batching import bucket_batches, collate_inputs, padding_fraction
from ..data.types import Encoded, Feature
from ..errors import ConfigError
from ..teachers import Teacher
from ..utils import atomic_write_json, digest_problem, file_digest, progress

logger = logging.getLogger(__name__)

CACHE_FORMAT = 3
#: the features a cache can hold (one vector per stored position)
CACHEABLE = ("logits", "hidden_states")


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


class FeatureCache:
    """Cached teacher features for ``n`` rows: ``row(key, i)`` is ``(P_i, F)`` (``P_i`` stored
    positions of row ``i``, ``F`` the feature's width), float16 memory-mapped arrays.

    Attributes:
        path: the cache folder.
        arrays: feature key -> flat ``(sum P_i, F)`` array.
        offsets: ``(n + 1,)`` row starts into the flat arrays.
        meta: the folder's ``meta.json`` (key, settings, teacher, stats).
    """

    def __init__(self, path: Path, arrays: dict[str, np.ndarray], offsets: np.ndarray, meta: dict):
        self.path = path
        self.arrays = arrays
        self.offsets = offsets
        self.meta = meta

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def keys(self) -> list[str]:
        """The cached feature keys (``logits``, ``hidden_states.4``)."""
        return list(self.arrays)

    def _array(self, key: str) -> np.ndarray:
        if key not in self.arrays:
            raise KeyError(f"teacher feature {key!r} is not in the cache {self.path} (it holds {', '.join(self.arrays)})")
        return self.arrays[key]

    def row(self, key: str, i: int) -> np.ndarray:
        """Row ``i`` of feature ``key``: ``(P_i, F)`` float16."""
        return self._array(key)[self.offsets[i]: self.offsets[i + 1]]

    def batch(self, key: str, rows: Sequence[int], width: int) -> torch.Tensor:
        """Feature ``key`` of ``rows``, zero-padded: ``(B, width, F)`` float32."""
        flat = self._array(key)
        out = np.zeros((len(rows), width, flat.shape[1]), dtype=np.float32)
        for j, r in enumerate(rows):
            a, b = self.offsets[r], self.offsets[r + 1]
            out[j, : b - a] = flat[a:b]
        return torch.from_numpy(out)

    def rows(self, rows: Sequence[int]) -> "FeatureCacheView":
        """A view of some rows, renumbered 0..len(rows)-1 (e.g. one transfer set out of their union)."""
        return FeatureCacheView(self, np.asarray(rows, dtype=np.int64))

    @classmethod
    def open(cls, path: Path) -> "FeatureCache":
        """A complete cache folder (``meta.json``, ``offsets.npy`` and one ``KEY.npy`` per feature), memory-mapped."""
        meta = json.loads((path / "meta.json").read_text())
        arrays = {k: np.load(path / f"{k}.npy", mmap_mode="r") for k in meta["features"]}
        return cls(path=path, arrays=arrays, offsets=np.load(path / "offsets.npy"), meta=meta)

    @staticmethod
    def damage(path: Path) -> str | None:
        """Why a cache folder cannot be read back (``meta.json`` unreadable, a file missing, truncated or
        changed since it was written: sizes and SHA-256 are recorded in ``meta.json``), or ``None``."""
        try:
            files = json.loads((path / "meta.json").read_text())["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"meta.json: {type(e).__name__}: {e}"
        for name, expected in files.items():
            problem = digest_problem(path / name, expected)
            if problem is not None:
                return f"{name}: {problem}"
        return None


class FeatureCacheView:
    """Rows ``index`` of a :class:`FeatureCache`, with the same ``row``/``batch``/``rows`` interface."""

    def __init__(self, base: FeatureCache, index: np.ndarray):
        self.base = base
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def keys(self) -> list[str]:
        return self.base.keys

    def row(self, key: str, i: int) -> np.ndarray:
        return self.base.row(key, int(self.index[i]))

    def batch(self, key: str, rows: Sequence[int], width: int) -> torch.Tensor:
        return self.base.batch(key, [int(self.index[r]) for r in rows], width)

    def rows(self, rows: Sequence[int]) -> "FeatureCacheView":
        return FeatureCacheView(self.base, self.index[np.asarray(rows, dtype=np.int64)])


def check_cacheable(features: Sequence[Feature]) -> None:
    """Raises ConfigError for a feature the cache cannot hold (attention maps: use a live teacher)."""
    bad = [f.key for f in features if f.name not in CACHEABLE]
    if bad:
        raise ConfigError(f"teacher features {', '.join(bad)} cannot be cached (only {', '.join(CACHEABLE)}); "
                          "read them from a live teacher")


@torch.no_grad()
def label_rows(teacher: Teacher, level: OutputLevel, encoded: Encoded, features: Sequence[Feature],
               cache_root: Path, max_tokens: int, name: str) -> tuple[FeatureCache, dict]:
    """Cached teacher ``features`` for every row of ``encoded`` (layers as non-negative indices).

    Computes them (length-bucketed batches of at most ``max_tokens`` padded tokens) unless a
    cache entry with the same key exists. Returns the cache and stats: ``cached`` (bool),
    ``seconds``, ``real_tokens``, ``tokens_per_second`` (real, non-padding tokens),
    ``padding_fraction``.

    Raises:
        ConfigError: a feature that cannot be cached.
    """
    check_cacheable(features)
    keys = [f.key for f in features]
    settings = {"features": keys, "dtype": "float16", "level": level.name, "name": name}
    key = cache_key(teacher.info.fingerprint, encoded, settings)
    path = Path(cache_root) / f"{name}-{key}"
    if (path / "meta.json").is_file():
        damage = FeatureCache.damage(path)
        if damage is None:
            out = FeatureCache.open(path)
            logger.info("teacher outputs for %s read from cache %s (sizes and checksums verified)", name, path)
            return out, dict(out.meta["stats"], cached=True)
        logger.warning("cache %s is damaged (%s); computing the teacher outputs again", path, damage)
    lengths = encoded.lengths
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(level.positions(lengths), out=offsets[1:])
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    batches = bucket_batches(lengths, max_tokens=max_tokens)
    device = teacher.device
    teacher.eval()
    arrays = {f.key: np.lib.format.open_memmap(tmp / f"{f.key}.npy", mode="w+", dtype=np.float16,
                                               shape=(int(offsets[-1]), teacher.feature_width(f))) for f in features}
    t0 = time.perf_counter()
    for rows in progress(batches, f"teacher labels {name} (batches)", log=logger):
        b = collate_inputs(encoded, rows, teacher.tokenizer.pad_token_id)
        feats = teacher.features(b["input_ids"].to(device), b["attention_mask"].to(device), features)
        lens = [len(encoded.input_ids[r]) for r in rows]
        for k in keys:
            per_row = level.feature_rows(feats[k].float().cpu(), lens)
            for r, x in zip(rows, per_row):
                a, z = offsets[r], offsets[r + 1]
                arrays[k][a:z] = x.reshape(z - a, -1).to(torch.float16).numpy()
    seconds = time.perf_counter() - t0
    widths = {}
    for k, arr in arrays.items():
        arr.flush()
        widths[k] = int(arr.shape[1])
    del arrays
    np.save(tmp / "offsets.npy", offsets)
    real = int(lengths.sum())
    stats = {"seconds": seconds, "rows": len(encoded), "real_tokens": real,
             "tokens_per_second": real / seconds if seconds > 0 else None,
             "padding_fraction": padding_fraction(lengths, batches), "batches": len(batches)}
    files = {p.name: file_digest(p) for p in sorted(tmp.glob("*.npy"))}
    atomic_write_json(tmp / "meta.json", {"key": key, "settings": settings, "teacher": teacher.info.fingerprint,
                                          "teacher_layers": teacher.num_layers, "features": widths, "stats": stats,
                                          "files": files})
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    logger.info("teacher labeled %s: %d rows, %d real tokens in %.1f s (%.0f tokens/s), padding %.1f%%",
                name, len(encoded), real, seconds, stats["tokens_per_second"] or 0, 100 * stats["padding_fraction"])
    return FeatureCache.open(path), dict(stats, cached=False)
