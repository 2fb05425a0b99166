"""Small helpers: atomic writes, file digests, random states, parameter counts, peak memory, phase timing."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

T = TypeVar("T")
#: seconds between progress lines in the log when no progress bar is shown
PROGRESS_EVERY_S = 60.0


#: the package's version (``xdistill.__version__``), recorded in saved students
VERSION = "0.1.0"
CACHE_ENV = "XDISTILL_CACHE"


def cache_root() -> Path:
    """Where files reused across runs go (the reference models' ONNX exports): ``$XDISTILL_CACHE``,
    default ``~/.cache/xdistill``."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/xdistill").expanduser()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_folder(folder: str | Path) -> Path:
    """``FOLDER.tmpPID`` next to ``folder``, created empty: where a folder is written before
    :func:`publish_folder` moves it into place (each process its own)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish_folder(tmp: str | Path, folder: str | Path) -> None:
    """Replace ``folder`` (an earlier run's, if any) by the completely written ``tmp``, so that a
    reader finds the folder whole or not at all."""
    shutil.rmtree(folder, ignore_errors=True)
    Path(tmp).rename(folder)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``),
    with the mode an ordinary file gets under the user's umask (``0o666 & ~umask``; ``mkstemp`` alone
    would leave 0600, unreadable to a service running as another user)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomic UTF-8 text write."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    """Atomic JSON write (UTF-8, indented, keys in insertion order)."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | Path) -> dict:
    """``{"bytes": size, "sha256": hex}`` of a file, to record when it is written and check when it is read."""
    return {"bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}


def digest_problem(path: str | Path, expected: dict) -> str | None:
    """Why ``path`` does not match a :func:`file_digest` recorded earlier (missing, other size, other
    checksum), or ``None`` when it matches. The size is compared first, so a truncated file costs no hashing."""
    p = Path(path)
    if not p.is_file():
        return "it is missing"
    size = p.stat().st_size
    if size != expected["bytes"]:
        return f"it has {size:,} bytes, {expected['bytes']:,} were written"
    if file_sha256(p) != expected["sha256"]:
        return "its SHA-256 differs from the one recorded when it was written"
    return None


def capture_rng() -> dict:
    """Every random state training draws from: torch (CPU, and CUDA when present), NumPy's global
    generator and Python's ``random``; :func:`restore_rng` puts them back."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Restore the random states of :func:`capture_rng` (CUDA's only where it was captured and is present)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def peak_rss_mib() -> float:
    """Peak resident set size of this process's program in MiB.

    On Linux the kernel's high-water mark ``VmHWM`` of ``/proc/self/status`` (KiB): ``getrusage``'s
    ``ru_maxrss`` keeps the peak of the process image that ran before ``exec``, so a subprocess of a
    large process (a benchmark or pytest starting ``python -m xdistill``) would report its parent's
    memory. Elsewhere ``getrusage`` (macOS reports bytes, others KiB).
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


class PhaseTimer:
    """Wall-clock seconds per named phase (accumulated across resumes by the caller), and the process's
    peak RSS when each phase ended (MiB, :func:`peak_rss_mib`: the peak so far, so the first phase whose
    value jumps is where the memory went)."""

    def __init__(self, initial: dict[str, float] | None = None):
        self.seconds: dict[str, float] = dict(initial or {})
        self.peak_rss_mib: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.peak_rss_mib[name] = round(peak_rss_mib(), 1)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else ``platform.processor()``), for benchmark reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def progress(items: Iterable[T], desc: str, total: int | None = None, log: logging.Logger | None = None,
             every: float = PROGRESS_EVERY_S) -> Iterator[T]:
    """Iterate ``items`` with a progress bar (tqdm) when stderr is a terminal; otherwise, where no bar
    would show, with a log line at least every ``every`` seconds and one at the end
    (``DESC: N of TOTAL (P%), S s``)."""
    total = len(items) if total is None and hasattr(items, "__len__") else total
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, mininterval=1.0)
        return
    log = log or logging.getLogger("xdistill")
    t0 = last = time.monotonic()
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= every:
            last = now
            log.info("%s: %d%s, %.0f s", desc, n, f" of {total} ({100 * n / total:.0f}%)" if total else "", now - t0)
    log.info("%s: done, %d in %.0f s", desc, n, time.monotonic() - t0)


def plural(n: int, word: str) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` split at the first ``--``: the script's own arguments, and those it passes on to the
    command it wraps (``[]`` without ``--``)."""
    if "--" not in argv:
        return list(argv), []
    i = argv.index("--")
    return list(argv[:i]), list(argv[i + 1:])
