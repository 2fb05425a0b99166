"""Sampling the teacher's training rows over groups (languages): temperature-based sampling, as
multilingual models train (Arivazhagan et al. 2019, "Massively Multilingual Neural Machine
Translation in the Wild", sec. 4.1; XLM, Conneau & Lample 2019, sec. 3.1), by repeating the rows of
small groups (``--teacher-lang-temperature``)."""

from __future__ import annotations

import logging

from ..adapters import TaskAdapter
from ..config import TeacherArguments
from ..data.batching import temperature_repeats
from ..data.types import Encoded

logger = logging.getLogger(__name__)


def repeat_groups(enc: Encoded, sizes: dict[str, int], repeats: dict[str, int]) -> Encoded:
    """The rows of ``enc`` (examples of the groups in order, ``sizes[g]`` each) with each group's
    examples repeated ``repeats[g]`` times."""
    parts, start = [], 0
    for g, n in sizes.items():
        part = enc.subset_examples(list(range(start, start + n)))
        parts += [part] * repeats[g]
        start += n
    return Encoded.concat(parts) if parts else enc


def teacher_training_rows(adapter: TaskAdapter, enc: Encoded, sizes: dict[str, int],
                          targs: TeacherArguments) -> tuple[Encoded, str]:
    """The rows the teacher fine-tunes on: ``enc`` (the groups' examples in order, ``sizes[g]``
    each) with every subword labeled (``--teacher-label-all-tokens``) and the groups sampled with
    ``--teacher-lang-temperature``. Returns the rows and what was done to them, for the report
    (``"; every subword labeled"``...; empty when nothing was).

    Raises:
        ConfigError: ``--teacher-label-all-tokens`` for a task with one label per example.
    """
    how = ""
    if targs.teacher_label_all_tokens:
        enc = adapter.label_all_tokens(enc)
        how += "; every subword labeled"
    if targs.teacher_lang_temperature != 1.0:
        repeats = temperature_repeats(sizes, targs.teacher_lang_temperature)
        enc = repeat_groups(enc, sizes, repeats)
        logger.info("teacher: groups sampled with temperature %g: rows repeated %s (%d rows)",
                    targs.teacher_lang_temperature,
                    ", ".join(f"{g} x{k}" for g, k in repeats.items() if k > 1) or "none", len(enc))
        how += f"; groups sampled with temperature {targs.teacher_lang_temperature:g}"
    return enc, how
