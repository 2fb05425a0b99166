"""What every ``transformers.Trainer`` run of xdistill shares (the teacher, the generator): progress
in the log instead of dictionaries printed to stdout, checkpoints whose files are checksummed when
written and verified before a resume reads them, and no pinned memory without a GPU.

Training code: serving never imports it (the import contract says so).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback

from ..errors import ConfigError
from .. import parallel
from ..utils import atomic_write_json, digest_problem, file_digest, publish_folder

logger = logging.getLogger(__name__)

CHECKSUMS = "xdistill_checksums.json"
#: seconds without a log line after which a training loop says where it is
HEARTBEAT_S = 60.0


class LogProgress(TrainerCallback):
    """Logs the Trainer's loss and validation metrics (``logger``, so ``run.log`` and stderr), and a
    line at least every :data:`HEARTBEAT_S` seconds, as ``NAME step S of N (epoch E): loss ...``."""

    def __init__(self, name: str):
        self.name = name
        self.last = time.monotonic()

    def _say(self, state, what: str) -> None:
        logger.info("%s step %d of %d (epoch %.2f): %s", self.name, state.global_step, state.max_steps,
                    state.epoch or 0.0, what)
        self.last = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kw):
        shown = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float)) and k != "epoch"}
        if shown:
            self._say(state, ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))

    def on_step_end(self, args, state, control, **kw):
        if time.monotonic() - self.last >= HEARTBEAT_S:
            self._say(state, "training")


class ChecksumCheckpoints(TrainerCallback):
    """After the Trainer has written a checkpoint, records the size and SHA-256 of each of its files
    (``xdistill_checksums.json``, written last and atomically): a checkpoint without the record was
    cut off while being written. In a multi-process run every rank writes its own random state into
    the checkpoint: the main process records the files once all ranks are done."""

    def on_save(self, args, state, control, **kw):
        parallel.barrier()
        d = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and d.is_dir():
            files = {p.name: file_digest(p) for p in sorted(d.iterdir()) if p.is_file() and p.name != CHECKSUMS}
            atomic_write_json(d / CHECKSUMS, files)


def _step(d: Path) -> int:
    try:
        return int(d.name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def resume_checkpoint(directory: Path) -> Path | None:
    """The latest complete Trainer checkpoint in ``directory`` to resume from, or ``None``.

    Checkpoints without a checksum record (cut off while being written, or from an older xdistill)
    are removed, with a log line.

    Raises:
        ConfigError: the latest recorded checkpoint's files do not match their checksums (truncated or
            corrupted); the message says how to go on.
    """
    candidates = sorted((d for d in Path(directory).glob("checkpoint-*") if d.is_dir() and _step(d) >= 0),
                        key=_step, reverse=True)
    for d in candidates:
        record = d / CHECKSUMS
        if not record.is_file():
            logger.warning("%s: unfinished checkpoint (no %s); removed", d, CHECKSUMS)
            shutil.rmtree(d, ignore_errors=True)
            continue
        try:
            files = json.loads(record.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"--resume: {record} is not valid JSON ({e}); remove {d} to resume from the previous "
                              "checkpoint, or run without --resume") from None
        for name, expected in files.items():
            problem = digest_problem(d / name, expected)
            if problem is not None:
                raise ConfigError(f"--resume: the checkpoint {d} cannot be used: {name}: {problem}. Remove {d} to "
                                  "resume from the previous checkpoint, or run without --resume")
        return d
    return None


def quiet(trainer: Trainer, name: str) -> Trainer:
    """The Trainer's progress goes to the log (:class:`LogProgress`), not to stdout as dictionaries
    (``PrinterCallback``) or to a progress bar; its checkpoints get checksums."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LogProgress(name))
    trainer.add_callback(ChecksumCheckpoints())
    return trainer


def pin_memory() -> bool:
    """Pinned host memory only helps copies to a GPU (on a CPU-only machine PyTorch warns about it)."""
    return torch.cuda.is_available()


def save_verified(model, tokenizer, folder: Path, meta_name: str, meta: dict) -> None:
    """``save_pretrained`` the model and tokenizer into ``folder`` with ``meta`` and the size and SHA-256
    of every file (``meta["files"]``) in ``meta_name``; written to ``FOLDER.tmp`` and renamed, so the
    folder is complete or absent."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    files = {p.name: file_digest(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    atomic_write_json(tmp / meta_name, {**meta, "files": files})
    publish_folder(tmp, folder)


def load_verified_meta(folder: Path, meta_name: str, key_field: str, key: str, what: str, redo: str) -> dict | None:
    """The ``meta_name`` record of a folder written by :func:`save_verified`, when its ``key_field`` is
    ``key``; ``None`` when there is none or it was made from other inputs (logged).

    Raises:
        ConfigError: a file does not match its recorded size or SHA-256 (names it, ``what`` and ``redo``).
    """
    folder = Path(folder)
    meta_path = folder / meta_name
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get(key_field) != key:
        logger.info("%s in %s was made with other settings or inputs; not reused", what, folder)
        return None
    for name, expected in (meta.get("files") or {}).items():
        problem = digest_problem(folder / name, expected)
        if problem is not None:
            raise ConfigError(f"{what} in {folder} is damaged: {name}: {problem}. Remove {folder} to {redo}")
    return meta

