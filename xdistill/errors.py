"""Error types raised on bad input.

Every message names the file and line (or the option) and what was expected.
"""

from __future__ import annotations

import sys
from typing import Callable


class XDistillError(Exception):
    """Base class for errors that the CLI reports without a traceback."""


class DataFormatError(XDistillError, ValueError):
    """A data file is malformed: the message is ``FILE:LINE: problem; expected ...``."""

    def __init__(self, path, line: int | None, problem: str, expected: str | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.expected = expected
        where = f"{self.path}:{line}" if line is not None else self.path
        msg = f"{where}: {problem}"
        if expected:
            msg += f"; expected {expected}"
        super().__init__(msg)


class ConfigError(XDistillError, ValueError):
    """A command-line option or config value is invalid: the message names the option."""


class UnknownLanguageError(ConfigError):
    """A language code is not in the registry or has no data where we looked."""


class EmptyTextError(XDistillError, ValueError):
    """Texts with nothing to classify; ``indices`` are their 0-based positions in the input."""

    def __init__(self, indices: list[int]):
        self.indices = list(indices)
        shown = ", ".join(str(i + 1) for i in self.indices[:10]) + (" ..." if len(self.indices) > 10 else "")
        super().__init__(f"text {shown} is empty (only whitespace, after the task's cleaning); expected text to classify")


def exit_status(fn: Callable[..., int], *args) -> int:
    """``fn(*args)``, the exit status of a command-line entry point, with input errors reported.

    An :class:`XDistillError` or an ``OSError`` (a missing file, a folder given as a file, no
    permission) prints one line ``error: MESSAGE`` on stderr and gives status 2, no traceback.
    """
    try:
        return fn(*args)
    except (XDistillError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
