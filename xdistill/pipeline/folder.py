"""A run's output folder: one run at a time, and a resume only with the settings it was started with.

* **Lock.** A run holds ``OUTPUT/.xdistill.lock`` (``filelock``: an OS lock that dies with its
  process) for its whole length and writes who it is (process id, host, command, start time) to
  ``OUTPUT/.xdistill.lock.json``. A second run into the same folder stops at once, naming the process
  that holds it. A lock left by a killed run is no lock at all (the OS released it): the next run
  takes over and says whose it was.
* **Settings.** ``OUTPUT/run.json`` records the settings that determine the run's results and
  their SHA-256 fingerprint. ``--resume`` with other settings stops with the options that differ
  (old -> new) and how to go on. Settings that do not change results may differ: the number of
  threads, the output and cache folders, the preset's name (its values are recorded), ``--resume``.
  A run recorded by an older xdistill resumes when the options it lacks are at their defaults (a
  new option's default keeps the behaviour of before it existed); the log names them.
* **Processes.** In a multi-process run (:mod:`xdistill.parallel`) the main process holds the lock
  and checks the record; the others wait for it and stop with its error when it stops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from .. import parallel
from ..config import RunSettings
from ..errors import ConfigError
from ..utils import atomic_write_json

logger = logging.getLogger(__name__)

LOCK = ".xdistill.lock"
OWNER = ".xdistill.lock.json"
RECORD = "run.json"
#: options (field names) that do not change a run's results
NOT_RESULTS = {"run": ("output_dir", "resume", "threads", "cache_dir", "preset")}


def result_settings(s: RunSettings, task_file: str | None) -> dict:
    """The settings that determine a run's results: every option but :data:`NOT_RESULTS`, and the
    task file's content (its labels, sources and columns)."""
    out = {}
    for group, values in s.as_dict().items():
        if values is None:
            continue
        skip = NOT_RESULTS.get(group, ())
        out[group] = {k: v for k, v in values.items() if k not in skip}
    if task_file and Path(task_file).is_file():
        out["task_file"] = hashlib.sha256(Path(task_file).read_bytes()).hexdigest()[:16]
    return out


def fingerprint(settings: dict) -> str:
    """SHA-256 (16 hex digits) of the settings as canonical JSON (what the processes of a launch compare too)."""
    return parallel.digest(settings)


def _option(group: str, name: str) -> str:
    return "the task file" if group == "task_file" else "--" + name.replace("_", "-")


def differences(old: dict, new: dict) -> list[str]:
    """``--lr: 0.003 -> 0.001`` for each option whose value differs (or that only one side has)."""
    lines = []
    for group in sorted(set(old) | set(new)):
        a, b = old.get(group), new.get(group)
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                lines.append(f"{_option(group, group)}: {a} -> {b}")
            continue
        for name in sorted(set(a) | set(b)):
            if a.get(name, "(none)") != b.get(name, "(none)"):
                lines.append(f"{_option(group, name)}: {a.get(name, '(none)')} -> {b.get(name, '(none)')}")
    return lines


def defaults(settings: RunSettings) -> dict[str, dict]:
    """The default value of each option with one, by concern (the groups of :meth:`RunSettings.as_dict`)."""
    out = {}
    for f in fields(settings):
        group = getattr(settings, f.name)
        if is_dataclass(group):
            out[f.name] = {x.name: x.default for x in fields(group) if x.default is not MISSING}
    return out


def added_at_default(old: dict, new: dict, default: dict) -> list[tuple[str, str]]:
    """``(group, name)`` of the options in ``new`` that the recorded settings ``old`` lack (an older
    xdistill did not have them) and whose value is their default."""
    return [(group, name) for group, values in new.items() if isinstance(values, dict) and isinstance(old.get(group), dict)
            for name, value in values.items()
            if name not in old[group] and name in default.get(group, {}) and value == default[group][name]]


class RunFolder:
    """The output folder of one run (a context manager: locked while the run is inside it).

    Args:
        path: ``--output-dir``.
        settings: the run's settings.
        task_file: the task file's path (its content counts as a setting).
        command: the command line, for the lock's owner record.

    Raises:
        ConfigError: the folder cannot be created or written (names ``--output-dir``), another
            process holds it, or ``--resume`` with other settings than the run's.
    """

    def __init__(self, path: str | Path, settings: RunSettings, task_file: str | None = None, command: str = ""):
        self.path = Path(path)
        self.settings = settings
        self.command = command
        self.recorded = result_settings(settings, task_file)
        self._lock: FileLock | None = None

    def __enter__(self) -> "RunFolder":
        parallel.main_does(self._enter, f"took the output folder {self.path}")
        return self

    def _enter(self) -> None:
        self.check_writable(self.path)
        self._acquire()
        try:
            self._check_record()
        except BaseException:
            self._release()
            raise

    def __exit__(self, *exc) -> None:
        self._release()

    @staticmethod
    def check_writable(path: Path) -> None:
        """Create ``path`` if needed and make sure files can be written in it.

        Raises:
            ConfigError: naming ``--output-dir`` and the operating system's reason.
        """
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".xdistill-write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"--output-dir {path}: cannot write there ({e.strerror or e}); choose a folder you can "
                              "write to") from None

    @classmethod
    def check_free(cls, path: Path) -> None:
        """Stop early, before anything (the log included) is written into ``path``, when another run
        holds it; the run itself takes the lock with :class:`RunFolder`.

        Raises:
            ConfigError: another process holds the folder (names it).
        """
        if (Path(path) / LOCK).exists():
            cls._take(Path(path)).release()

    @classmethod
    def _take(cls, path: Path) -> FileLock:
        lock = FileLock(str(path / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ConfigError(f"--output-dir {path}: in use by {cls._describe_owner(path / OWNER)}; wait for it to "
                              "finish, or give another --output-dir") from None
        return lock

    def _acquire(self) -> None:
        owner_path = self.path / OWNER
        self._lock = self._take(self.path)
        previous = self._read_owner(owner_path)
        if previous and previous.get("pid") != os.getpid():
            state = "still running" if psutil.pid_exists(previous.get("pid", -1)) else "no longer running"
            logger.warning("%s: took over the lock left by process %s (%s), which is %s", self.path,
                           previous.get("pid"), previous.get("command", "?"), state)
        atomic_write_json(owner_path, {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                                       "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    def _release(self) -> None:
        if self._lock is not None:
            (self.path / OWNER).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    @staticmethod
    def _read_owner(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    @classmethod
    def _describe_owner(cls, path: Path) -> str:
        owner = cls._read_owner(path)
        if not owner:
            return "another process"
        return (f"process {owner.get('pid')} on {owner.get('host', '?')} since {owner.get('started', '?')} "
                f"({owner.get('command') or 'xdistill'})")

    def _as_recorded_then(self, old: dict) -> tuple[dict, list[tuple[str, str]]]:
        """These settings without the options that the recorded ones ``old`` lack (an older xdistill did
        not have them) and that are at their defaults; and those options' ``(group, name)``."""
        added = added_at_default(old, self.recorded, defaults(self.settings))
        view = {g: ({k: v for k, v in values.items() if (g, k) not in added} if isinstance(values, dict) else values)
                for g, values in self.recorded.items()}
        return view, added

    def _check_record(self) -> None:
        """With ``--resume``: the recorded settings must be these. Then record these."""
        record = self.path / RECORD
        new = {"fingerprint": fingerprint(self.recorded), "settings": self.recorded}
        if self.settings.run.resume and record.is_file():
            try:
                old = json.loads(record.read_text())
            except ValueError as e:
                raise ConfigError(f"--resume: {record} is not valid JSON ({e}); remove it to resume with the current "
                                  "settings, or give another --output-dir") from None
            if old.get("fingerprint") != new["fingerprint"]:
                settings = old.get("settings", {})
                view, added = self._as_recorded_then(settings)
                if added and fingerprint(view) == fingerprint(settings):
                    logger.info("--resume: %s was recorded by an older xdistill without %s; resuming with their "
                                "defaults", record, ", ".join(_option(g, n) for g, n in added))
                else:
                    diff = differences(settings, view)
                    raise ConfigError(f"--resume: the run in {self.path} was started with other settings:\n  "
                                      + "\n  ".join(diff) + "\nrestore those options to resume it, or give "
                                      "another --output-dir for a new run")
        atomic_write_json(record, new)
