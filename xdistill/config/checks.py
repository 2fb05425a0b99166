"""Checks the configuration dataclasses share: each raises :class:`~xdistill.errors.ConfigError`
naming the option (``--labeled-per-lang``) and what was expected."""

from __future__ import annotations

from ..errors import ConfigError


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_positive(obj, *names: str, allow_zero: bool = False) -> None:
    for n in names:
        v = getattr(obj, n)
        if v is None:
            continue
        if v < 0 or (v == 0 and not allow_zero):
            raise ConfigError(f"{option_name(n)}: expected a {'non-negative' if allow_zero else 'positive'} number, got {v}")


def check_choice(obj, name: str, choices) -> None:
    v = getattr(obj, name)
    if v not in choices:
        raise ConfigError(f"{option_name(name)}: expected one of {', '.join(map(str, choices))}, got {v!r}")


def check_budgets(args, labeled: str, teacher: str, caps: tuple[str, ...]) -> None:
    """Shared checks of a labeled budget (``labeled``), the teacher's budget (``teacher``, -1 = all,
    at least ``labeled``) and caps (-1 = no cap)."""
    for n in (teacher, *caps):
        if getattr(args, n) < -1:
            raise ConfigError(f"{option_name(n)}: expected -1 (no cap) or a non-negative number, got {getattr(args, n)}")
    t, lab = getattr(args, teacher), getattr(args, labeled)
    if t != -1 and t < lab:
        raise ConfigError(f"{option_name(teacher)} ({t}) must be -1 or at least {option_name(labeled)} ({lab}): "
                          "the teacher sees the student's budget too")
