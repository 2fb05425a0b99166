"""Teacher features on the transfer set, computed once and cached on disk.

The teacher runs once over the transfer set (and the validation split, for model
selection on a distillation loss) in length-bucketed batches. Per row it stores the named
features the schedule's matches ask for (:class:`~xdistill.data.types.Feature`: ``logits``,
``hidden_states.L`` for any layers), as float16, ragged rows flattened with one shared
offsets array, one ``KEY.SHARD.npy`` file per feature and shard, written and read back by row
ranges with positioned I/O (:mod:`xdistill.data.rowfile`: no memory map, so the pages of a
large cache stay in the OS page cache, not in the process's peak RSS). A
shard is a range of contiguous rows labeled by one process: one shard for a single process,
one per rank when ``accelerate launch``/``torchrun`` starts several (:mod:`xdistill.parallel`),
so the processes label the transfer set in parallel and no file is written by two of them.
Which positions of a row are stored is the output level's business (every position for token
tasks, the first for sequence tasks). Every stage, re-run and ``--resume`` reuses them.

Attention maps are not cached (``(A, T, T)`` per row grows with the square of the length):
a schedule that matches attentions reads them from a live teacher
(:class:`~xdistill.transfer.targets.LiveTeacherTargets`).

The cache key hashes the teacher's weights fingerprint, the exact input ids of every row and
the settings (features, dtype, level, format version), so a different teacher, data or
setting never reads a stale cache. A cache folder is written under a temporary name and
renamed when complete, so an interrupted labeling run leaves nothing that looks finished, and
``meta.json`` records the size and SHA-256 of every file: a cache that was truncated or changed
afterwards is computed again (with a warning), never read as garbage.

Rows already labeled are not labeled again. Each cache records a 128-bit digest of every row's input
ids (``row_ids.npy``); when no entry matches a transfer set as a whole (a changed generation filter,
a language added), the rows that a complete, undamaged entry of the same teacher and settings already
holds are copied from it as stored (float16, or the int8 codes and scales; learned ``pca:K`` codes are
fit per entry and never shared), and the teacher runs on the other rows only. The new entry is complete
on its own, so either may be deleted later. A copied row is the teacher's output on the same input ids,
computed in another batch: it may differ from a fresh labeling by the rounding that batch composition
already causes (well within float16's step).
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
from ..data.batching import bucket_batches, collate_inputs
from ..data.types import Encoded, Feature
from ..errors import ConfigError
from .. import parallel
from ..teachers import Teacher
from ..data.rowfile import RowFile, RowWriter
from .storage import PCA_SAMPLE_POSITIONS, HiddenStorage
from ..utils import atomic_write_json, digest_problem, file_digest, progress, publish_folder

logger = logging.getLogger(__name__)

CACHE_FORMAT = 4
#: the features a cache can hold (one vector per stored position)
CACHEABLE = ("logits", "hidden_states")


def row_ids(encoded: Encoded) -> np.ndarray:
    """``(n, 2)`` uint64: a 128-bit BLAKE2b digest of each row's input ids (equal rows, equal ids)."""
    out = np.empty((len(encoded), 2), dtype=np.uint64)
    for i, row in enumerate(encoded.input_ids.iter_arrays()):
        digest = hashlib.blake2b(np.asarray(row, dtype=np.int32).tobytes(), digest_size=16).digest()
        out[i] = np.frombuffer(digest, dtype=np.uint64)
    return out


def inputs_fingerprint(encoded: Encoded) -> str:
    """SHA-256 (16 hex digits) of every row's input ids, in order."""
    h = hashlib.sha256()
    for row in encoded.input_ids.iter_arrays():
        h.update(row.tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def cache_key(teacher_fingerprint: str, encoded: Encoded, settings: dict) -> str:
    """The key of a cache entry: teacher weights, input rows and settings."""
    payload = json.dumps({"teacher": teacher_fingerprint, "inputs": inputs_fingerprint(encoded),
                          "settings": settings, "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class FeatureCache:
    """Cached teacher features for ``n`` rows: ``row(key, i)`` is ``(P_i, F)`` (``P_i`` stored
    positions of row ``i``, ``F`` the feature's width), read from the shard files row by row
    (:class:`~xdistill.data.rowfile.RowFile`; in-memory arrays work too).

    The rows are stored in ``S`` shards of contiguous rows (one per process that labeled them,
    :mod:`xdistill.parallel`; one for a single process): shard ``s`` holds rows
    ``shards[s]..shards[s+1]-1`` in ``KEY.s.npy``, flat ``(positions of those rows, F)``.

    Attributes:
        path: the cache folder.
        shard_arrays: feature key -> ``S`` flat ``(positions, F)`` row sources, one per shard
            (:class:`~xdistill.data.rowfile.RowFile` or an array).
        offsets: ``(n + 1,)`` row starts into the flat positions of all rows.
        shards: ``(S + 1,)`` the first row of each shard (and ``n``).
        meta: the folder's ``meta.json`` (key, settings, teacher, stats, shards).
    """

    def __init__(self, path: Path, shard_arrays: dict[str, list[RowFile | np.ndarray]], offsets: np.ndarray,
                 shards: np.ndarray, meta: dict, storage: dict[str, HiddenStorage] | None = None,
                 scales: dict[str, list[RowFile | np.ndarray]] | None = None):
        self.path = path
        self.shard_arrays = shard_arrays
        self.offsets = offsets
        self.shards = np.asarray(shards, dtype=np.int64)
        self.meta = meta
        self.storage = storage or {}
        self.scales = scales or {}

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def keys(self) -> list[str]:
        """The cached feature keys (``logits``, ``hidden_states.4``)."""
        return list(self.shard_arrays)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Feature key -> flat ``(sum P_i, F)`` array of all rows: the file memory-mapped for a single
        shard, else the shards concatenated in memory (for inspection; training reads rows)."""
        whole = [[a.load() if isinstance(a, RowFile) else a for a in v] for v in self.shard_arrays.values()]
        return {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in zip(self.shard_arrays, whole)}

    def _shards(self, key: str) -> list[np.ndarray]:
        if key not in self.shard_arrays:
            raise KeyError(f"teacher feature {key!r} is not in the cache {self.path} (it holds {', '.join(self.shard_arrays)})")
        return self.shard_arrays[key]

    def stored_row(self, key: str, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Row ``i`` of feature ``key`` as stored: ``(P_i, W)`` codes (float16, int8 or PCA coordinates)
        and, for ``int8``, the ``(P_i, 1)`` float16 scales (else ``None``)."""
        arrays = self._shards(key)
        s = int(np.searchsorted(self.shards, i, side="right")) - 1 if len(arrays) > 1 else 0
        base = self.offsets[self.shards[s]]
        a, z = self.offsets[i] - base, self.offsets[i + 1] - base
        return arrays[s][a:z], (self.scales[key][s][a:z] if key in self.scales else None)

    def row(self, key: str, i: int) -> np.ndarray:
        """Row ``i`` of feature ``key``: ``(P_i, F)``, float16 as stored, or float32 decoded from
        ``--cache-hidden int8`` or ``pca:K`` (:mod:`xdistill.transfer.storage`)."""
        codes, scale = self.stored_row(key, i)
        code = self.storage.get(key)
        if code is None or code.kind == "fp16":
            return codes
        return code.decode(codes, scale)

    def batch(self, key: str, rows: Sequence[int], width: int) -> torch.Tensor:
        """Feature ``key`` of ``rows``, zero-padded: ``(B, width, F)`` float32."""
        code = self.storage.get(key)
        dim = code.basis.shape[0] if code is not None and code.kind == "pca" else self._shards(key)[0].shape[1]
        out = np.zeros((len(rows), width, dim), dtype=np.float32)
        for j, r in enumerate(rows):
            x = self.row(key, r)
            out[j, : len(x)] = x
        return torch.from_numpy(out)

    def rows(self, rows: Sequence[int]) -> "FeatureCacheView":
        """A view of some rows, renumbered 0..len(rows)-1 (e.g. one transfer set out of their union)."""
        return FeatureCacheView(self, np.asarray(rows, dtype=np.int64))

    @classmethod
    def open(cls, path: Path) -> "FeatureCache":
        """A complete cache folder (``meta.json``, ``offsets.npy`` and ``KEY.S.npy`` per feature and
        shard), its shard files opened for row reads."""
        meta = json.loads((path / "meta.json").read_text())
        shards = meta["shards"]
        n = len(shards) - 1
        arrays = {k: [RowFile(path / shard_file(k, s)) for s in range(n)] for k in meta["features"]}
        storage = {k: HiddenStorage.load(path, k, spec) for k, spec in meta.get("storage", {}).items()}
        scales = {k: [RowFile(path / shard_file(f"{k}.scale", s)) for s in range(n)]
                  for k, code in storage.items() if code.kind == "int8"}
        return cls(path=path, shard_arrays=arrays, offsets=np.load(path / "offsets.npy"), shards=np.asarray(shards),
                   meta=meta, storage=storage, scales=scales)

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


def shard_file(key: str, shard: int) -> str:
    """The file of feature ``key`` in shard ``shard`` of a cache folder: ``KEY.SHARD.npy``."""
    return f"{key}.{shard}.npy"


def _read_complete(path: Path, name: str) -> FeatureCache | None:
    """The cache in ``path`` when it is complete and undamaged (else ``None``, with a warning when damaged)."""
    if not (path / "meta.json").is_file():
        return None
    damage = FeatureCache.damage(path)
    if damage is None:
        logger.info("teacher outputs for %s read from cache %s (sizes and checksums verified)", name, path)
        return FeatureCache.open(path)
    logger.warning("cache %s is damaged (%s); computing the teacher outputs again", path, damage)
    return None


ROW_IDS = "row_ids.npy"
#: the labeling cost of a row copied from another cache, relative to its tokens (for balancing the shards)
COPY_WEIGHT = 0.05


def _same_labels(a: dict, b: dict) -> bool:
    """Whether two caches' settings give the same stored rows (the cache's name aside)."""
    return {k: v for k, v in a.items() if k != "name"} == {k: v for k, v in b.items() if k != "name"}


def reusable_rows(cache_root: Path, teacher_fingerprint: str, settings: dict, ids: np.ndarray,
                  skip: Path) -> dict[int, tuple[FeatureCache, int]]:
    """Row ``i`` of a new cache (``ids``: its ``(n, 2)`` row ids) -> ``(donor, donor's row)`` for every row
    that a complete cache in ``cache_root`` already holds, newest donor first. A donor has the same teacher,
    settings (the name aside) and cache format, recorded row ids, no learned (``pca:K``) code, and is not
    ``skip``; one that holds a wanted row is verified first (sizes and SHA-256) and passed over with a
    warning when damaged."""
    if any(str(spec).startswith("pca") for spec in settings["hidden"].values()):
        return {}
    wanted: dict[bytes, list[int]] = {}
    for i, h in enumerate(ids):
        wanted.setdefault(h.tobytes(), []).append(i)
    found: dict[int, tuple[FeatureCache, int]] = {}
    metas = sorted(Path(cache_root).glob("*/meta.json"), key=lambda m: m.stat().st_mtime, reverse=True)
    for meta_path in metas:
        folder = meta_path.parent
        if len(found) == len(ids) or folder == skip or ".tmp" in folder.name:
            continue
        try:
            meta = json.loads(meta_path.read_text())
            held = np.load(folder / ROW_IDS) if ROW_IDS in meta.get("files", {}) else None
        except (OSError, ValueError):
            continue
        if (held is None or meta.get("teacher") != teacher_fingerprint or meta.get("format") != CACHE_FORMAT
                or not _same_labels(meta.get("settings", {}), settings)):
            continue
        rows = {i: r for r, h in enumerate(held) for i in wanted.get(h.tobytes(), ()) if i not in found}
        if not rows:
            continue
        damage = FeatureCache.damage(folder)
        if damage is not None:
            logger.warning("cache %s is damaged (%s); none of its rows is reused", folder, damage)
            continue
        donor = FeatureCache.open(folder)
        found.update({i: (donor, r) for i, r in rows.items()})
    return found


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def _teacher_batches(teacher: Teacher, level: OutputLevel, encoded: Encoded, features: Sequence[Feature],
                     batches: Sequence[np.ndarray], name: str):
    """Per batch of rows: the rows and, per feature key, each row's ``(P_i, F)`` float32 features."""
    device = teacher.device
    teacher.eval()
    lengths = encoded.lengths
    for rows in progress(batches, f"teacher labels {name} (batches)", log=logger):
        b = collate_inputs(encoded, rows, teacher.tokenizer.pad_token_id)
        with torch.no_grad(), parallel.autocast():  # bf16/fp16 on GPUs when the launch asks for it
            feats = teacher.features(b["input_ids"].to(device), b["attention_mask"].to(device), features)
        lens = lengths[rows].tolist()
        # one (P_i, F) array per row (a sequence-level row's single vector becomes (1, F))
        yield rows, {f.key: [x.reshape(-1, x.shape[-1]).numpy() for x in level.feature_rows(feats[f.key].float().cpu(), lens)]
                     for f in features}


def fit_storage(teacher: Teacher, level: OutputLevel, encoded: Encoded, features: Sequence[Feature],
                storage: dict[str, HiddenStorage], max_tokens: int) -> dict[str, HiddenStorage]:
    """Fit the codes that learn from the data (``pca:K``) on the hidden states of evenly spaced rows
    (at most :data:`~xdistill.transfer.storage.PCA_SAMPLE_POSITIONS` positions); others are returned as they are."""
    learn = [f for f in features if f.key in storage and storage[f.key].kind == "pca"]
    if not learn:
        return storage
    lengths = encoded.lengths
    step = max(1, int(np.ceil(lengths.sum() / PCA_SAMPLE_POSITIONS)))
    rows = np.arange(0, len(encoded), step)
    batches = [rows[b] for b in bucket_batches(lengths[rows], max_tokens=max_tokens)]
    sample = {f.key: [] for f in learn}
    for _, feats in _teacher_batches(teacher, level, encoded, learn, batches, "PCA sample"):
        for k in sample:
            sample[k] += feats[k]
    for k, parts in sample.items():
        storage[k].fit(np.concatenate(parts)[:PCA_SAMPLE_POSITIONS])
    return storage


def _label_shard(teacher: Teacher, level: OutputLevel, encoded: Encoded, features: Sequence[Feature],
                 storage: dict[str, HiddenStorage], offsets: np.ndarray, rows: tuple[int, int], folder: Path,
                 max_tokens: int, name: str, reuse: dict[int, tuple[FeatureCache, int]]) -> dict:
    """Write the features of rows ``rows[0]..rows[1]-1`` (this process's shard) into ``folder``:
    ``KEY.SHARD.npy`` (float16, or as ``storage`` codes it), flat over their stored positions. Rows in
    ``reuse`` are copied as stored from their donor cache; the teacher labels the others.
    Returns counts for the stats."""
    start, end = rows
    lengths = encoded.lengths
    base = int(offsets[start])
    n = int(offsets[end]) - base
    shard = parallel.rank()
    codes = {f.key: storage.get(f.key, HiddenStorage()) for f in features}
    arrays = {f.key: RowWriter(folder / shard_file(f.key, shard), (n, codes[f.key].stored_width(teacher.feature_width(f))),
                               codes[f.key].dtype) for f in features}
    scales = {k: RowWriter(folder / shard_file(f"{k}.scale", shard), (n, 1), np.float16)
              for k, c in codes.items() if c.kind == "int8"}
    t_copy = time.perf_counter()
    mine = np.arange(start, end)
    is_copied = np.fromiter((r in reuse for r in mine), dtype=bool, count=len(mine))
    copied, todo = mine[is_copied], mine[~is_copied]
    for r in copied:
        donor, dr = reuse[int(r)]
        a, z = offsets[r] - base, offsets[r + 1] - base
        for k, arr in arrays.items():
            arr[a:z], scale = donor.stored_row(k, dr)
            if k in scales:
                scales[k][a:z] = scale
    copy_seconds = time.perf_counter() - t_copy
    batches = [todo[b] for b in bucket_batches(lengths[todo], max_tokens=max_tokens)] if len(todo) else []
    t0 = time.perf_counter()
    for rows_, feats in _teacher_batches(teacher, level, encoded, features, batches, name) if batches else ():
        for k, arr in arrays.items():
            for r, x in zip(rows_, feats[k]):
                a, z = offsets[r] - base, offsets[r + 1] - base
                arr[a:z], scale = codes[k].encode(x)
                if scale is not None:
                    scales[k][a:z] = scale
    seconds = time.perf_counter() - t0
    for arr in [*arrays.values(), *scales.values()]:
        arr.close()
    return {"seconds": seconds, "real_tokens": int(lengths[start:end].sum()), "batches": len(batches),
            "labeled_tokens": int(lengths[todo].sum()), "reused_rows": len(copied), "copy_seconds": copy_seconds,
            "padded_tokens": sum(int(lengths[b].max()) * len(b) for b in batches)}


def _finish(tmp: Path, path: Path, meta: dict) -> None:
    """Checksums of every shard file, ``meta.json``, then the rename that makes the cache complete."""
    files = {p.name: file_digest(p) for p in sorted(tmp.glob("*.npy"))}
    atomic_write_json(tmp / "meta.json", {**meta, "files": files})
    publish_folder(tmp, path)


def label_rows(teacher: Teacher, level: OutputLevel, encoded: Encoded, features: Sequence[Feature],
               cache_root: Path, max_tokens: int, name: str, hidden: str = "fp16") -> tuple[FeatureCache, dict]:
    """Cached teacher ``features`` for every row of ``encoded`` (layers as non-negative indices).

    Computes them (length-bucketed batches of at most ``max_tokens`` padded tokens) unless a
    cache entry with the same key exists; rows that another entry of the same teacher and settings
    holds are copied from it instead (:func:`reusable_rows`). In a multi-process run
    (:mod:`xdistill.parallel`) each process labels one shard of contiguous rows with about equal
    work and writes its own files; the main process then records the checksums and renames the
    folder. Returns the cache and stats: ``cached`` (bool), ``seconds`` (the slowest process's
    teacher time), ``real_tokens`` (all rows), ``labeled_tokens`` (the rows the teacher ran on),
    ``tokens_per_second`` (labeled real, non-padding tokens per second, all processes),
    ``padding_fraction``, ``reused_rows`` and ``reused_from`` (the donor folders), ``copy_seconds``,
    ``processes``. Hidden states are stored as ``hidden`` says (``--cache-hidden``: ``fp16``, ``int8``,
    ``pca:K``; :mod:`xdistill.transfer.storage`), logits as float16.

    Raises:
        ConfigError: a feature that cannot be cached, or ``hidden`` not one of those forms.
    """
    check_cacheable(features)
    keys = [f.key for f in features]
    storage = {f.key: HiddenStorage.parse(hidden) for f in features if f.name == "hidden_states"}
    settings = {"features": keys, "dtype": "float16", "level": level.name, "name": name,
                "hidden": {k: c.spec for k, c in storage.items()}}
    precision = parallel.mixed_precision()
    if precision != "no":  # a bf16/fp16 labeling is not a float32 one (float32 keys unchanged)
        settings["teacher_precision"] = precision
    key = cache_key(teacher.info.fingerprint, encoded, settings)
    path = Path(cache_root) / f"{name}-{key}"
    done = _read_complete(path, name)
    if done is not None:
        return done, dict(done.meta["stats"], cached=True)
    lengths = encoded.lengths
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(level.positions(lengths), out=offsets[1:])
    ids = row_ids(encoded)
    # the main process picks the donors (and verifies them); every rank opens the same ones
    plan = parallel.main_does(lambda: {i: (str(d.path), r) for i, (d, r) in
                                       reusable_rows(cache_root, teacher.info.fingerprint, settings, ids, path).items()},
                              "found the rows earlier caches hold")
    donors = {f: FeatureCache.open(Path(f)) for f in sorted({f for f, _ in plan.values()})}
    reuse = {i: (donors[f], r) for i, (f, r) in plan.items()}
    tmp = path.with_name(path.name + f".tmp{parallel.broadcast(os.getpid())}")
    parallel.main_does(lambda: _fresh_dir(tmp), f"created {tmp}")
    storage = parallel.main_does(lambda: fit_storage(teacher, level, encoded, features, storage, max_tokens),
                                 "fit the hidden-state code")
    work = np.where([i in reuse for i in range(len(encoded))], COPY_WEIGHT, 1.0) * lengths
    shards = parallel.split_weighted(work, parallel.world_size())
    mine = _label_shard(teacher, level, encoded, features, storage, offsets, shards[parallel.rank()], tmp, max_tokens,
                        name, reuse)
    every = parallel.all_gather(mine)
    seconds = max(x["seconds"] for x in every)
    def total(k: str) -> int:
        return sum(x[k] for x in every)

    labeled, padded = total("labeled_tokens"), total("padded_tokens")
    stats = {"seconds": seconds, "rows": len(encoded), "real_tokens": total("real_tokens"), "labeled_tokens": labeled,
             "tokens_per_second": labeled / seconds if seconds > 0 and labeled else None,
             "padding_fraction": 0.0 if padded == 0 else 1.0 - labeled / padded,
             "batches": total("batches"), "processes": len(every), "reused_rows": total("reused_rows"),
             "reused_from": sorted({d.path.name for d, _ in reuse.values()}),
             "copy_seconds": max(x["copy_seconds"] for x in every)}
    widths = {f.key: teacher.feature_width(f) for f in features}

    def finish():
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / ROW_IDS, ids)
        for k, code in storage.items():
            code.save(tmp, k)
        _finish(tmp, path, {"key": key, "format": CACHE_FORMAT, "settings": settings, "teacher": teacher.info.fingerprint,
                            "teacher_layers": teacher.num_layers, "features": widths, "stats": stats,
                            "shards": [a for a, _ in shards] + [len(encoded)],
                            "storage": {k: c.spec for k, c in storage.items()},
                            "bytes_per_position": {f.key: storage.get(f.key, HiddenStorage()).bytes_per_position(
                                teacher.feature_width(f)) for f in features}})

    parallel.main_does(finish, f"wrote the cache {path}")
    if reuse:
        logger.info("%s: %d of %d rows copied from earlier caches (%s) in %.1f s; the teacher labeled the other %d",
                    name, len(reuse), len(encoded), ", ".join(stats["reused_from"]), stats["copy_seconds"],
                    len(encoded) - len(reuse))
    if labeled:
        logger.info("teacher labeled %s: %d rows, %d real tokens in %.1f s (%.0f tokens/s, %d %s), padding %.1f%%",
                    name, len(encoded) - len(reuse), labeled, seconds, stats["tokens_per_second"] or 0, len(every),
                    "process" if len(every) == 1 else "processes", 100 * stats["padding_fraction"])
    return FeatureCache.open(path), dict(stats, cached=False)
