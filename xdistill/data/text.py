"""Text classification data: CSV or JSON-lines files (gzip allowed) or a hub data set, declared by a task file.

A task file's ``[local]`` table names the files and columns::

    [local]
    format = "csv"                     # csv | jsonl
    train = "imdb/train.csv.gz"        # paths below --data-dir
    eval = "imdb/test.csv.gz"
    unlabeled = "imdb/unsup.csv.gz"    # optional: text without labels for the transfer set
    text_column = "text"
    label_column = "label"
    label_values = { "0" = "neg", "1" = "pos" }   # optional: raw column value -> label name

    [cleaning]
    replace = [["<br />", " "]]        # applied in order to every text

Errors name the file and line (CSV: the physical line where the record
starts; JSONL: the line) and what was expected: missing columns, labels outside
the declared set, empty texts in labeled files, non-UTF-8 bytes, malformed
JSON. Empty texts in the unlabeled file are skipped and counted.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from datasets import Dataset, Features, Value

from ..config import TextDataArguments
from ..errors import ConfigError, DataFormatError
from .heldout import positions_in, without_texts
from .taskspec import TaskSpec
from .types import GroupData, TaskData

logger = logging.getLogger(__name__)

FEATURES = Features({"text": Value("string"), "label": Value("string")})


@dataclass
class TextStats:
    """Counts for one file: rows read, texts cleaned (changed by a replacement), empty texts skipped."""

    path: str
    rows: int = 0
    cleaned: int = 0
    skipped_empty: int = 0
    label_counts: dict = field(default_factory=dict)


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: a leading byte-order mark (as spreadsheet programs write) is not part of the first column name
    return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", errors="strict", newline="")


def _bad_utf8_line(path: Path) -> int | None:
    """1-based line of the first bytes that are not UTF-8 (a newline byte never occurs inside a UTF-8 sequence)."""
    with _open_binary(path) as f:
        for n, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return n
    return None


def read_lines(path: str | Path, option: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file (``.gz`` read compressed), one text each, stripped.

    Raises:
        ConfigError: the file does not exist (names ``option``).
        DataFormatError: bytes that are not UTF-8 (``FILE:LINE``), or no text at all.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{option}: {path}: no such file; expected a UTF-8 text file with one text per line")
    try:
        with _open_text(p) as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except UnicodeDecodeError:
        raise DataFormatError(p, _bad_utf8_line(p), "bytes that are not UTF-8", "UTF-8 text, one text per line") from None
    lines = [line for line in lines if line]
    if not lines:
        raise DataFormatError(p, None, "no text (the file is empty or blank)", f"one text per line for {option}")
    return lines


def _csv_records(reader, header: list[str]):
    """``(line where the record starts, {column: value})`` for each non-blank CSV record."""
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        if not row:  # a blank line: the next record starts after it
            continue
        yield start, dict(zip(header, row))


def _clean(text: str, replace: list) -> str:
    for old, new in replace:
        text = text.replace(old, new)
    return " ".join(text.split())


def clean_text(text: str, spec: TaskSpec) -> str:
    """``text`` as the task's file readers give it to training: the task file's ``[cleaning] replace``
    pairs applied in order (IMDB: ``<br />`` to a space), whitespace collapsed. Serving applies it too,
    so that a model reads served text as it read its training text."""
    return _clean(text, spec.cleaning.get("replace", []))


def read_text_file(path: str | Path, spec: TaskSpec, labeled: bool) -> tuple[list[tuple[str, str]], TextStats]:
    """``(text, label)`` pairs of a CSV/JSONL file (label ``""`` when ``labeled`` is False).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: missing column, bad label, empty text (labeled files), non-UTF-8 bytes, bad JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    local = spec.local
    fmt = local.get("format", "csv")
    tcol, lcol = local.get("text_column", "text"), local.get("label_column", "label")
    values = {str(k): v for k, v in local.get("label_values", {}).items()}
    replace = spec.cleaning.get("replace", [])
    stats = TextStats(path=str(path))
    out: list[tuple[str, str]] = []
    needed = [tcol] + ([lcol] if labeled else [])
    csv.field_size_limit(sys.maxsize)
    f = _open_text(path)
    line = 1
    try:
        if fmt == "csv":
            reader = csv.reader(f)
            header = next(reader, None) or []
            missing = [c for c in needed if c not in header]
            if missing:
                raise DataFormatError(path, 1, f"missing column(s) {', '.join(missing)} (header has {', '.join(header) or 'nothing'})",
                                      f"a header with columns {', '.join(needed)}")
            records = _csv_records(reader, header)
        else:
            def _jsonl():
                for n, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    try:
                        rec = json.loads(raw)
                    except json.JSONDecodeError as e:
                        raise DataFormatError(path, n, f"not valid JSON ({e.msg})", "one JSON object per line") from None
                    if not isinstance(rec, dict):
                        raise DataFormatError(path, n, f"a JSON {type(rec).__name__}", "one JSON object per line")
                    miss = [c for c in needed if c not in rec]
                    if miss:
                        raise DataFormatError(path, n, f"missing key(s) {', '.join(miss)}", f"keys {', '.join(needed)}")
                    yield n, rec
            records = _jsonl()
        for line, rec in records:
            raw_text = rec.get(tcol)
            text = _clean(str(raw_text or ""), replace)
            if text != (raw_text or ""):
                stats.cleaned += 1
            if not text:
                if labeled:
                    raise DataFormatError(path, line, f"empty text in column {tcol!r}", "a non-empty text")
                stats.skipped_empty += 1
                continue
            label = ""
            if labeled:
                raw_label = str(rec.get(lcol, "")).strip()
                label = values.get(raw_label, raw_label)
                if label not in spec.labels:
                    raise DataFormatError(path, line, f"label {raw_label!r} is outside the declared set",
                                          f"one of {', '.join(list(values) or spec.labels)}")
                stats.label_counts[label] = stats.label_counts.get(label, 0) + 1
            out.append((text, label))
            stats.rows += 1
    except UnicodeDecodeError as e:
        raise DataFormatError(path, _bad_utf8_line(path), f"not UTF-8 text ({e.reason})", "UTF-8 text") from None
    finally:
        f.close()
    if not out:
        raise DataFormatError(path, None, "no usable rows", "at least one row with a non-empty text")
    if stats.skipped_empty:
        logger.warning("%s: skipped %d rows with empty text", path, stats.skipped_empty)
    if stats.cleaned:
        logger.info("%s: cleaned %d texts (%s)", path, stats.cleaned, ", ".join(repr(a) for a, _ in replace) or "whitespace")
    return out, stats


def to_dataset(pairs: list[tuple[str, str]]) -> Dataset:
    """A ``datasets.Dataset`` with columns ``text`` and ``label`` (label ``""`` for transfer text)."""
    return Dataset.from_dict({"text": [t for t, _ in pairs], "label": [lab for _, lab in pairs]}, features=FEATURES)


def balanced_sample(pairs: list[tuple[str, str]], per_class: int, rng: random.Random,
                    exclude: set[int] | None = None) -> list[int]:
    """Indices of a seeded, class-balanced sample of at most ``per_class`` examples per label."""
    by_label: dict[str, list[int]] = {}
    for i, (_, lab) in enumerate(pairs):
        if exclude is None or i not in exclude:
            by_label.setdefault(lab, []).append(i)
    out = []
    for lab in sorted(by_label):
        idx = by_label[lab]
        out.extend(idx if per_class < 0 or per_class >= len(idx) else rng.sample(idx, per_class))
    return sorted(out)


def check_local_spec(spec: TaskSpec) -> None:
    """Raise ConfigError when the task's ``[local]`` table lacks what text classification needs."""
    for key in ("train", "eval"):
        if key not in spec.local:
            raise ConfigError(f"{spec.path}: [local] needs key {key!r} for a sequence-classification task")
    if spec.local.get("format", "csv") not in ("csv", "jsonl"):
        raise ConfigError(f"{spec.path}: key 'local.format' must be csv or jsonl for a sequence-classification task")


def build_text_data(spec: TaskSpec, args: TextDataArguments) -> TaskData:
    """Splits of a text-classification task as a one-group :class:`~xdistill.data.types.TaskData`.

    Raises:
        ConfigError: the task file lacks what is needed, or the hub is unreachable.
        DataFormatError: a malformed file.
    """
    rng = random.Random(f"{args.seed}:{spec.name}")
    stats: dict[str, dict] = {}
    if args.source == "local":
        check_local_spec(spec)
        root = Path(args.data_dir)
        train, st = read_text_file(root / spec.local["train"], spec, labeled=True)
        stats["train"] = vars(st)
        evaluation, st = read_text_file(root / spec.local["eval"], spec, labeled=True)
        stats["eval"] = vars(st)
        unlabeled: list[tuple[str, str]] = []
        if isinstance(spec.local.get("unlabeled"), str) and args.unlabeled_limit != 0:
            unlabeled, st = read_text_file(root / spec.local["unlabeled"], spec, labeled=False)
            stats["unlabeled"] = vars(st)
        source = f"local files in {root}"
    else:
        train, evaluation, unlabeled, source = _hub_text(spec, args)
    val_idx = balanced_sample(train, args.validation_per_class, rng)
    val_set = set(val_idx)
    held = {train[i][0] for i in val_idx}
    others, train_dups = without_texts([i for i in range(len(train)) if i not in val_set], lambda i: train[i][0], held)
    excluded = set(range(len(train))).difference(others)  # validation and every row with a validation text
    lab_idx = balanced_sample(train, args.labeled_per_class, rng, exclude=excluded)
    lab_set = set(lab_idx)
    pool = list(others)
    if args.teacher_labeled_per_class < 0:
        teacher_idx = pool
    else:  # the student's budget, topped up to the teacher's per-class size in a seeded order
        rng.shuffle(pool)
        teacher_idx = sorted(lab_set | set(_top_up(train, lab_idx, pool, args.teacher_labeled_per_class)))
    rest = [i for i in others if i not in lab_set]
    rng.shuffle(rest)
    if args.transfer_limit >= 0:
        rest = rest[: args.transfer_limit]
    unlabeled, unl_dups = without_texts(unlabeled, lambda pair: pair[0], held)
    if train_dups or unl_dups:
        logger.info("%s: %d train and %d unlabeled texts repeat a validation text; left out of the other splits",
                    spec.name, train_dups, unl_dups)
    if args.unlabeled_limit >= 0 and len(unlabeled) > args.unlabeled_limit:
        unlabeled = rng.sample(unlabeled, args.unlabeled_limit)
    transfer = [(train[i][0], "") for i in rest] + [(t, "") for t, _ in unlabeled]
    if not transfer:
        raise ConfigError("the transfer set is empty: no train texts outside the labeled budget and validation "
                          "(--transfer-limit) and no unlabeled texts (--unlabeled-limit, [local] unlabeled)")
    eval_idx = sorted(range(len(evaluation)) if args.eval_limit < 0 or args.eval_limit >= len(evaluation)
                      else rng.sample(range(len(evaluation)), args.eval_limit))
    pick = lambda ids: to_dataset([train[i] for i in ids])  # noqa: E731
    seen = positions_in({t for t, _ in train}, [evaluation[i][0] for i in eval_idx])
    counts = {"train_texts": len(train), "validation": len(val_idx),
              "validation_text_elsewhere": {"train": train_dups, "unlabeled": unl_dups}, "labeled": len(lab_idx),
              "teacher_labeled": len(teacher_idx), "transfer_from_train": len(rest), "transfer_unlabeled": len(unlabeled),
              "transfer": len(transfer), "eval_texts": len(evaluation), "n_eval": len(eval_idx),
              "eval_text_in_train": len(seen),
              "files": stats}
    group = GroupData(lang=spec.name, labeled=pick(lab_idx), validation=pick(val_idx), teacher_labeled=pick(teacher_idx),
                      transfer=to_dataset(transfer), evaluation=to_dataset([evaluation[i] for i in eval_idx]), counts=counts,
                      evaluation_in_train=seen)
    budget = f"{args.labeled_per_class} per class"
    teacher = "all of train minus validation" if args.teacher_labeled_per_class < 0 else f"up to {args.teacher_labeled_per_class} per class"
    return TaskData(groups={spec.name: group}, missing=[], source=source, requested=spec.name,
                    student_budget=budget, teacher_budget=teacher)


def _top_up(train, lab_idx: list[int], pool: list[int], per_class: int) -> list[int]:
    """The budget plus texts from ``pool`` until each class has ``per_class`` (seeded order of ``pool``)."""
    have: dict[str, int] = {}
    for i in lab_idx:
        have[train[i][1]] = have.get(train[i][1], 0) + 1
    out = []
    lab = set(lab_idx)
    for i in pool:
        if i in lab:
            continue
        c = train[i][1]
        if have.get(c, 0) < per_class:
            have[c] = have.get(c, 0) + 1
            out.append(i)
    return out


def _hub_text(spec: TaskSpec, args: TextDataArguments):
    """Train, eval and unlabeled ``(text, label)`` pairs from the hub data set."""
    hub = spec.hub
    if not hub:
        raise ConfigError(f"task {spec.name!r} ({spec.path}) declares no [hub] source")
    replace = spec.cleaning.get("replace", [])

    def load(split, labeled):
        try:
            ds = datasets.load_dataset(hub["path"], split=split)
        except Exception as e:
            raise ConfigError(f"could not load {hub['path']} split {split!r} from the hub: {e}. "
                              "Without hub access use --data-dir with local files.") from e
        feat = ds.features.get(hub.get("label_column", "label"))
        names = getattr(feat, "names", None)
        out = []
        for i, row in enumerate(ds):
            text = _clean(str(row[hub.get("text_column", "text")] or ""), replace)
            if not text:
                if labeled:
                    raise DataFormatError(f"{hub['path']}/{split}", i + 1, "empty text", "a non-empty text")
                continue
            label = ""
            if labeled:
                raw = row[hub.get("label_column", "label")]
                label = names[raw] if names else str(raw)
                if label not in spec.labels:
                    raise DataFormatError(f"{hub['path']}/{split}", i + 1, f"label {label!r} is outside the declared set",
                                          f"one of {', '.join(spec.labels)}")
            out.append((text, label))
        return out

    unl = load(hub["unlabeled_split"], False) if hub.get("unlabeled_split") and args.unlabeled_limit != 0 else []
    return load(hub["train_split"], True), load(hub["eval_split"], True), unl, f"the Hugging Face hub data set {hub['path']}"
