"""Out-of-domain (OOD) text for zero-shot distillation (Rashid et al., EMNLP 2021, sec. 3.1: the student
learns from the teacher on text of another domain, never on the task's).

``--ood-text`` names sources, comma-separated:

- a UTF-8 text file, one text per line (``.gz`` read compressed); a ``.tsv`` PAN-X file (or ``.conll``)
  gives its sentences' words joined by spaces, tags ignored (e.g. Wikipedia sentences as OOD text for
  movie reviews);
- a folder: every file in it, in name order;
- a path with ``{lang}``: one file per language of the run (a language without it is logged and counted);
- ``leipzig`` or ``tatoeba``: the sentences of each of the run's languages in ``DATA_DIR/unlabeled``
  (web/news and Tatoeba sentences: out of WikiANN's Wikipedia domain);
- ``hub:ID``: ``datasets.load_dataset(ID, split="train")``, its ``text`` column (a hub id, or a local
  folder of text/CSV/JSON files).

Each file gives at most ``--ood-limit`` texts (a seeded sample). Then every text that is an exact
duplicate (case and spacing ignored) of an earlier OOD text or of any task text, or a near duplicate
(Jaccard similarity of word 3-gram sets >= 0.8, as generation checks) of an evaluation text, is
removed and counted (with ``--ood-span MIN-MAX`` each text is first cut into consecutive spans of
MIN to MAX words, and the spans are what is filtered); with ``--ood-join N`` every N consecutive texts become one (sentences into
paragraphs); ``--ood-validation`` of the rest is held out for model selection.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from datasets import load_dataset

from ..config.zero_shot import OOD_KEYWORDS, ZeroShotArguments
from ..data.languages import LanguageRegistry, unlabeled_files
from ..data.readers import read_ner_file
from ..data.text import read_lines
from ..errors import ConfigError
from .filters import near_duplicate_mask

logger = logging.getLogger(__name__)

#: Jaccard similarity of word 3-gram sets at or above which an OOD text is a near duplicate of an evaluation text
NEAR_DUPLICATE = 0.8
NER_SUFFIXES = (".tsv", ".conll")


@dataclass
class OODText:
    """OOD texts for training and for model selection, and what the report says about them: texts per
    source, what was removed and why, the sources that were missing for some language, and the share of
    each label among the teacher's predictions on the held-out texts (per token for NER)."""

    train: list[str]
    validation: list[str]
    sources: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    teacher_labels: dict[str, float] = field(default_factory=dict)

    def report(self) -> dict:
        return {"sources": self.sources, "removed": self.removed, "missing": self.missing,
                "teacher_labels_on_held_out": self.teacher_labels,
                "train_texts": len(self.train), "validation_texts": len(self.validation),
                "mean_words": float(np.mean([len(t.split()) for t in self.train])) if self.train else 0.0}


def _normal(text: str) -> str:
    return "".join(text.lower().split())


def resolve_sources(specs: Sequence[str], groups: Sequence[str], data_dir: str | None,
                    registry: LanguageRegistry | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """``(name, path or hub id)`` of every source ``specs`` name, and the ``{lang}``/keyword files that
    are missing for some language.

    Raises:
        ConfigError: a path that does not exist, an empty folder, a keyword without ``--data-dir`` or for
            a group that is not a language of the registry (all naming ``--ood-text``).
    """
    out, missing = [], []
    for spec in specs:
        if spec.startswith("hub:"):
            out.append((spec, spec))
        elif spec in OOD_KEYWORDS:
            if not data_dir:
                raise ConfigError(f"--ood-text {spec}: the run's languages' {spec} sentences are read from "
                                  "DATA_DIR/unlabeled; expected --data-dir (or $XDISTILL_DATA_DIR)")
            registry = registry or LanguageRegistry.load()
            for g in groups:
                if g not in registry:
                    raise ConfigError(f"--ood-text {spec}: the group {g!r} is not a language of the registry; name "
                                      "the file instead (e.g. DATA_DIR/unlabeled/leipzig/en.txt)")
                files = [p for p in unlabeled_files(Path(data_dir), registry.get(g)) if p.parent.name == spec]
                out += [(f"{spec}:{g}", str(p)) for p in files]
                missing += [] if files else [f"{spec}:{g}"]
        elif "{lang}" in spec:
            for g in groups:
                p = Path(spec.replace("{lang}", g))
                if p.is_file():
                    out.append((str(p), str(p)))
                else:
                    missing.append(str(p))
        elif Path(spec).is_dir():
            files = sorted(p for p in Path(spec).iterdir() if p.is_file() and not p.name.startswith("."))
            if not files:
                raise ConfigError(f"--ood-text {spec}: the folder holds no file; expected text files, one text per line")
            out += [(str(p), str(p)) for p in files]
        elif Path(spec).is_file():
            out.append((spec, spec))
        else:
            raise ConfigError(f"--ood-text {spec}: no such file or folder; expected text files, folders, paths with "
                              f"{{lang}}, {' or '.join(OOD_KEYWORDS)}, or hub:ID")
    return out, missing


def read_source(where: str) -> list[str]:
    """The texts of one resolved source (see the module docstring).

    Raises:
        ConfigError: a hub id that cannot be loaded or has no ``text`` column.
        DataFormatError: a file that is not UTF-8 or holds no text (names the file and line).
    """
    if where.startswith("hub:"):
        name = where[4:]
        try:
            ds = load_dataset(name, split="train")
        except Exception as e:  # datasets raises many types for a missing or unreachable data set
            raise ConfigError(f"--ood-text {where}: datasets.load_dataset({name!r}) failed: {e}") from None
        if "text" not in ds.column_names:
            raise ConfigError(f"--ood-text {where}: expected a 'text' column, found {', '.join(ds.column_names)}")
        return [t.strip() for t in ds["text"] if t and t.strip()]
    if where.endswith(NER_SUFFIXES):
        sentences, _ = read_ner_file(where)
        return [" ".join(s.tokens) for s in sentences]
    return read_lines(where, "--ood-text")


def cut_spans(words: Sequence[Sequence[str]], span: tuple[int, int], rng: random.Random) -> list[str]:
    """Each text's words cut into consecutive spans, each of a length drawn uniformly from
    ``span = (MIN, MAX)`` (the last span of a text may be shorter); spans are joined by spaces.
    Every word is kept, in order: e.g. ``[["a", "b", "c"]]`` with ``(2, 2)`` gives ``["a b", "c"]``."""
    lo, hi = span
    out = []
    for ws in words:
        i = 0
        while i < len(ws):
            n = rng.randint(lo, hi)
            out.append(" ".join(ws[i:i + n]))
            i += n
    return out


def filter_overlap(texts: Sequence[str], task_texts: Sequence[str], eval_texts: Sequence[str]) -> tuple[list[str], dict]:
    """Drop exact duplicates (case and spacing ignored) among ``texts`` and of any task text, then near
    duplicates of the evaluation texts. Returns ``(kept, removed counts)``."""
    task = {_normal(t) for t in task_texts}
    seen, kept, removed = set(), [], {"duplicate": 0, "task_text": 0, "near_evaluation": 0}
    for t in texts:
        n = _normal(t)
        if n in task:
            removed["task_text"] += 1
        elif n in seen:
            removed["duplicate"] += 1
        else:
            seen.add(n)
            kept.append(t)
    near = near_duplicate_mask(kept, list(eval_texts), NEAR_DUPLICATE)
    removed["near_evaluation"] = int(near.sum())
    return [t for t, bad in zip(kept, near) if not bad], removed


def read_ood_text(z: ZeroShotArguments, groups: Sequence[str], data_dir: str | None, task_texts: Sequence[str],
                  eval_texts: Sequence[str], seed: int,
                  words: Callable[[Sequence[str]], list[list[str]]] = lambda ts: [t.split() for t in ts]) -> OODText:
    """The OOD texts of ``--ood-text``, capped, cut into spans (``--ood-span``, words as ``words``
    splits them: the task adapter's word splitter), filtered against the task's text and split (see
    the module docstring).

    Raises:
        ConfigError: a source that cannot be resolved or read, or no text left after filtering (names
            ``--ood-text``).
        DataFormatError: a malformed file.
    """
    rng = random.Random(f"{seed}:ood")
    resolved, missing = resolve_sources(z.sources, groups, data_dir)
    if missing:
        logger.warning("--ood-text: %d files are missing for some language: %s", len(missing), ", ".join(missing[:10]))
    texts, sources = [], {}
    for name, where in resolved:
        part = read_source(where)
        if 0 < z.ood_limit < len(part):
            part = rng.sample(part, z.ood_limit)
        sources[name] = len(part)
        texts += part
    if not texts:
        raise ConfigError(f"--ood-text {z.ood_text}: no text found (sources missing: {', '.join(missing) or 'none'})")
    if z.span is not None:
        n_texts, texts = len(texts), cut_spans(words(texts), z.span, rng)
        logger.info("--ood-span %s: %d texts cut into %d spans", z.ood_span, n_texts, len(texts))
    kept, removed = filter_overlap(texts, task_texts, eval_texts)
    logger.info("OOD text: %d texts from %d sources; removed %s; %d kept", len(texts), len(sources), removed, len(kept))
    if len(kept) < 2 * z.ood_join:
        raise ConfigError(f"--ood-text {z.ood_text}: {len(kept)} texts left after removing the task's text and near "
                          "duplicates of its evaluation split; expected at least 2")
    if z.ood_join > 1:
        kept = [" ".join(kept[i:i + z.ood_join]) for i in range(0, len(kept), z.ood_join)]
    order = list(range(len(kept)))
    rng.shuffle(order)
    n_val = min(len(kept) - 1, max(1, round(z.ood_validation * len(kept))))
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return OODText([kept[i] for i in train], [kept[i] for i in val], sources, removed, missing)
