"""Readers for token-level NER data files (PAN-X/XTREME ``.tsv`` and CoNLL columns).

Both readers return ``(sentences, stats)``: a list of :class:`Sentence` whose
tags are valid IOB2, and a :class:`ReadStats` with counts for the file.

Formats
-------
* **PAN-X** (``train-<lang>.tsv``): one ``token<TAB>tag`` per line, a blank line
  between sentences.
* **CoNLL**: whitespace-separated columns, token first, tag last; ``-DOCSTART-``
  lines are document separators (skipped, counted, and they end a sentence).

Every problem in a file is reported as a :class:`~xdistill.errors.DataFormatError`
whose message reads ``FILE:LINE: problem; expected ...``; nothing is dropped
silently. Files must be UTF-8 (a leading UTF-8 byte-order mark is stripped).

The one thing that is *fixed* rather than rejected is an ``I-X`` tag that does
not continue an entity of type ``X`` (at sentence start, after ``O`` or after a
different type): it becomes ``B-X``, is counted in ``ReadStats.n_repaired`` and
one warning per file is logged.
"""

from __future__ import annotations

import codecs
import errno
import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from xdistill.errors import ConfigError, DataFormatError

__all__ = [
    "Sentence",
    "ReadStats",
    "FORMATS",
    "detect_format",
    "read_panx",
    "read_conll",
    "read_ner_file",
    "repair_iob2",
    "entity_types",
]

logger = logging.getLogger(__name__)

#: Formats accepted by :func:`read_ner_file` (besides ``"auto"``).
FORMATS = ("panx", "conll")

_MAX_REPAIRED_LINES = 20
_IOB2_EXPECTED = "an IOB2 tag: `O`, `B-TYPE` or `I-TYPE`"
_DOCSTART = "-DOCSTART-"


@dataclass(frozen=True)
class Sentence:
    """One sentence: parallel ``tokens`` and IOB2 ``tags``.

    ``line`` is the 1-based line number of the sentence's first token in its file.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    line: int

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class ReadStats:
    """Counts gathered while reading one file."""

    path: str
    n_sentences: int = 0
    n_tokens: int = 0
    #: ``I-X`` tags turned into ``B-X`` (after ``O``, at sentence start, or after another type).
    n_repaired: int = 0
    #: ``-DOCSTART-`` lines skipped (CoNLL only).
    n_docstart: int = 0
    #: The first 20 line numbers whose tag was repaired.
    repaired_lines: list[int] = field(default_factory=list)


# --------------------------------------------------------------------------- tags


def _is_iob2(tag: str) -> bool:
    if tag == "O":
        return True
    return (
        len(tag) > 2
        and tag[1] == "-"
        and tag[0] in ("B", "I")
        and not any(c.isspace() for c in tag)
    )


def repair_iob2(tags: Sequence[str]) -> tuple[list[str], list[int]]:
    """Turn every ``I-X`` that does not continue an ``X`` entity into ``B-X``.

    An ``I-X`` is repaired when it is the first tag, follows ``O``, or follows a
    tag of a different type. Tags are assumed to be ``O``/``B-*``/``I-*`` (they
    are not validated here). Returns ``(repaired_tags, changed_indices)``; the
    input is not modified. Raises nothing.
    """
    out = list(tags)
    changed: list[int] = []
    prev_type = None  # entity type of the previous (repaired) tag; None for O / start
    for i, tag in enumerate(out):
        if tag[:2] == "I-":
            typ = tag[2:]
            if typ != prev_type:
                out[i] = "B-" + typ
                changed.append(i)
            prev_type = typ
        elif tag[:2] == "B-":
            prev_type = tag[2:]
        else:
            prev_type = None
    return out, changed


def entity_types(label_set: Iterable[str]) -> list[str]:
    """Sorted entity types named by an IOB2 label set, e.g. ``["LOC", "ORG", "PER"]``.

    ``O`` is ignored. Raises :class:`ValueError` if a label is not an IOB2 tag.
    """
    types = set()
    for label in label_set:
        if not isinstance(label, str) or not _is_iob2(label):
            raise ValueError(f"label {label!r} is not an IOB2 tag; expected `O`, `B-TYPE` or `I-TYPE`")
        if label != "O":
            types.add(label[2:])
    return sorted(types)


# --------------------------------------------------------------------------- files


def detect_format(path: str | os.PathLike) -> str:
    """Return ``"panx"`` if the file name ends with ``.tsv`` (any case), else ``"conll"``.

    Looks at the name only; raises nothing.
    """
    return "panx" if os.fspath(path).lower().endswith(".tsv") else "conll"


def _decode(path: str | os.PathLike) -> tuple[str, bytes]:
    """Read ``path`` as strict UTF-8 (BOM stripped); return ``(text, raw_bytes_without_bom)``.

    Raises FileNotFoundError if missing, DataFormatError if it is not UTF-8 text.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "NER data file not found", str(path)) from None
    bom = 0
    if data.startswith(codecs.BOM_UTF8):
        bom = len(codecs.BOM_UTF8)
        data = data[bom:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        bad = data[e.start : e.start + 1].hex()
        hint = ""
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            hint = " (it starts with a UTF-16 byte-order mark)"
        raise DataFormatError(
            path,
            line,
            f"file is not UTF-8: invalid byte 0x{bad} at byte offset {e.start + bom}{hint}",
            "UTF-8 text (re-encode it, e.g. from Latin-1 or UTF-16, with `iconv -t UTF-8`)",
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataFormatError(
            path,
            line,
            "file is not UTF-8: it contains NUL bytes (UTF-16 without a byte-order mark?)",
            "UTF-8 text (re-encode it with `iconv -f UTF-16 -t UTF-8`)",
        )
    if "\r" in text:  # CRLF line endings: strip the \r that ends a line, keep any other
        text = text.replace("\r\n", "\n")
        if text.endswith("\r"):
            text = text[:-1]
    return text, data


# All bytes except TAB and LF, deleted to get a file's tab/newline skeleton.
_NOT_TAB_LF = bytes(b for b in range(256) if b not in (9, 10))


class _Collector:
    """Builds the sentences of one file: validates tags, repairs IOB2, counts."""

    def __init__(self, spath: str, fmt: str, label_set: Sequence[str] | None):
        self.spath = spath
        self.fmt = fmt
        self.label_set = None if label_set is None else list(label_set)
        self.allowed = None if label_set is None else frozenset(self.label_set)
        self.checked: set[str] = set()  # tags validated so far
        self.i_tags: set[str] = set()  # validated tags starting with I-
        self.sentences: list[Sentence] = []
        self.stats = ReadStats(path=spath)
        self.n_tokens = 0

    def check_tag(self, lineno: int, tag: str) -> None:
        """Validate one tag not seen before; raise DataFormatError if it is bad."""
        if not _is_iob2(tag):
            raise DataFormatError(self.spath, lineno, f"not an IOB2 tag {tag!r}", _IOB2_EXPECTED)
        if self.allowed is not None and tag not in self.allowed:
            raise DataFormatError(
                self.spath,
                lineno,
                f"unknown tag {tag!r}",
                "a tag of the label set {" + ", ".join(self.label_set) + "}",
            )
        self.checked.add(tag)
        if tag[0] == "I":
            self.i_tags.add(tag)

    def bad_pairs(self, start: str = "O") -> frozenset:
        """(previous tag, tag) pairs that need an IOB2 repair, among the tags seen so
        far; ``start`` stands for the previous tag at a sentence start."""
        prevs = self.checked | {"O", start}
        return frozenset(
            (p, i) for i in self.i_tags for p in prevs if p in ("O", start) or p[2:] != i[2:]
        )

    def add(self, toks: Sequence[str], tags: Sequence[str], start: int) -> None:
        """Add one sentence whose first token is on line ``start`` (tokens on consecutive lines)."""
        if not self.checked.issuperset(tags):
            for j, tag in enumerate(tags):
                if tag not in self.checked:
                    self.check_tag(start + j, tag)
        if not self.i_tags.isdisjoint(tags):
            fixed, changed = repair_iob2(tags)
            if changed:
                tags = fixed
                self.note_repairs([start + j for j in changed])
        self.sentences.append(Sentence(tuple(toks), tuple(tags), start))
        self.n_tokens += len(toks)

    def note_repairs(self, lines: list[int]) -> None:
        """Count repaired tags, keeping the first line numbers."""
        stats = self.stats
        stats.n_repaired += len(lines)
        room = _MAX_REPAIRED_LINES - len(stats.repaired_lines)
        if room > 0:
            stats.repaired_lines.extend(lines[:room])

    def finish(self) -> tuple[list[Sentence], ReadStats]:
        """Check the file was not empty, fill in the counts, log the repair warning."""
        stats = self.stats
        if not self.sentences:
            expected = (
                "at least one `token<TAB>tag` sentence"
                if self.fmt == "panx"
                else "at least one `token ... tag` sentence"
            )
            raise DataFormatError(self.spath, None, "empty file", expected)
        stats.n_sentences = len(self.sentences)
        stats.n_tokens = self.n_tokens
        if stats.n_repaired:
            more = ", ..." if stats.n_repaired > len(stats.repaired_lines) else ""
            logger.warning(
                "%s: repaired %d I- tag(s) that did not continue an entity of the same type "
                "(turned into B-); lines %s%s",
                self.spath,
                stats.n_repaired,
                ", ".join(map(str, stats.repaired_lines)),
                more,
            )
        return self.sentences, stats


# Token and tag of the pseudo-row that the fast PAN-X parser puts on each blank line
# (NUL never occurs in a decoded file: _decode rejects it).
_MARK = "\x00"
_MARK_ROW = "\n" + _MARK + "\t" + _MARK + "\n"


def _panx_fast(text: str, data: bytes, out: _Collector) -> bool:
    """Parse a well-formed PAN-X file as a whole, with C-level string and tuple operations.

    Returns False, having added nothing, when some line is neither empty nor
    ``token<TAB>tag`` with both fields non-empty: the line-by-line parser then
    reports it (or treats whitespace-only lines as blank).
    """
    # Every line with text must hold exactly one tab between a non-empty token and tag.
    if "\t\t" in text or "\n\t" in text or "\t\n" in text:
        return False
    body = text.lstrip("\n")
    first = len(text) - len(body) + 1  # line number of body's first line
    body = body.rstrip("\n")
    if not body or body[0] == "\t" or body[-1] == "\t":
        return False
    if b"\t\t" in data.translate(None, _NOT_TAB_LF):  # two tabs on one line
        return False
    # Put a MARK<TAB>MARK row on every blank line, so that row i is line first + i.
    rows = body.replace("\n\n", _MARK_ROW)
    while "\n\n" in rows:  # runs of blank lines
        rows = rows.replace("\n\n", _MARK_ROW)
    # No line holds 2+ tabs, so as many tabs as rows means one tab on every row.
    if rows.count("\t") != rows.count("\n") + 1:
        return False
    flat = tuple(rows.replace("\n", "\t").split("\t"))
    del rows
    toks = flat[0::2]
    tags = flat[1::2]
    del flat

    new = set(tags) - out.checked
    new.discard(_MARK)
    for tag in sorted(new, key=tags.index):  # first bad tag in file order
        out.check_tag(first + tags.index(tag), tag)

    if out.i_tags:
        bad_pairs = out.bad_pairs(start=_MARK)
        flags = list(map(bad_pairs.__contains__, zip((_MARK,) + tags[:-1], tags)))
        if True in flags:
            fixed = list(tags)
            changed = []
            i = flags.index(True)
            while True:
                fixed[i] = "B-" + fixed[i][2:]
                changed.append(first + i)
                try:
                    i = flags.index(True, i + 1)
                except ValueError:
                    break
            out.note_repairs(changed)
            tags = tuple(fixed)

    append = out.sentences.append
    find = toks.index
    n = len(toks)
    a = 0
    while a < n:
        try:
            b = find(_MARK, a)
        except ValueError:
            b = n
        if b > a:
            append(Sentence(toks[a:b], tags[a:b], first + a))
        a = b + 1
    out.n_tokens += n - toks.count(_MARK)
    return True


def _parse_lines(text: str, out: _Collector) -> None:
    """Line-by-line parser for both formats; raises DataFormatError at the first bad line."""
    spath = out.spath
    panx = out.fmt == "panx"
    toks: list[str] = []
    tags: list[str] = []
    start = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        if panx:
            if not line or line.isspace():  # blank line (maybe holding only whitespace)
                if toks:
                    out.add(toks, tags, start)
                    toks, tags = [], []
                continue
            parts = line.split("\t")
            if len(parts) == 2 and parts[0]:
                tok, tag = parts
            elif len(parts) == 2:
                raise DataFormatError(
                    spath, lineno, f"empty token before the tab in {line!r}", "`token<TAB>tag`"
                )
            else:
                n = len(parts)
                raise DataFormatError(
                    spath,
                    lineno,
                    f"{n} tab-separated field{'s' if n != 1 else ''} in {line!r}",
                    "`token<TAB>tag` (exactly 2 fields)",
                )
        else:
            parts = line.split()
            if not parts:
                if toks:
                    out.add(toks, tags, start)
                    toks, tags = [], []
                continue
            tok = parts[0]
            if tok == _DOCSTART:
                out.stats.n_docstart += 1
                if toks:
                    out.add(toks, tags, start)
                    toks, tags = [], []
                continue
            if len(parts) < 2:
                raise DataFormatError(
                    spath,
                    lineno,
                    f"1 column in {line!r}",
                    "at least 2 whitespace-separated columns: `token ... tag`",
                )
            tag = parts[-1]
        if tag not in out.checked:
            out.check_tag(lineno, tag)
        if not toks:
            start = lineno
        toks.append(tok)
        tags.append(tag)
    if toks:
        out.add(toks, tags, start)


def _read(
    path: str | os.PathLike, fmt: str, label_set: Sequence[str] | None
) -> tuple[list[Sentence], ReadStats]:
    text, data = _decode(path)
    out = _Collector(str(path), fmt, label_set)
    # Building ~10^5 small tuples triggers many useless cyclic-GC passes; pause it.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if not (fmt == "panx" and _panx_fast(text, data, out)):
            _parse_lines(text, out)
    finally:
        if gc_was_enabled:
            gc.enable()
    return out.finish()


def read_panx(
    path: str | os.PathLike, label_set: Sequence[str] | None = None
) -> tuple[list[Sentence], ReadStats]:
    """Read a PAN-X/XTREME ``token<TAB>tag`` file.

    Lines hold exactly two tab-separated fields with a non-empty token; blank
    lines separate sentences (several in a row are fine, and a last sentence
    without a trailing blank line is kept). ``\\r\\n`` line endings are accepted.
    If ``label_set`` is given, every tag must belong to it.

    Raises :class:`FileNotFoundError` if the file is missing, and
    :class:`~xdistill.errors.DataFormatError` (``FILE:LINE: problem; expected ...``)
    if it is not UTF-8, a line does not have 2 fields or has an empty token, a tag
    is not IOB2 or not in ``label_set``, or the file holds no sentence.
    """
    return _read(path, "panx", label_set)


def read_conll(
    path: str | os.PathLike, label_set: Sequence[str] | None = None
) -> tuple[list[Sentence], ReadStats]:
    """Read a CoNLL-style column file: whitespace-separated columns, token first, tag last.

    ``-DOCSTART-`` lines are skipped, counted in ``ReadStats.n_docstart`` and end
    the current sentence; blank lines separate sentences.
    If ``label_set`` is given, every tag must belong to it.

    Raises :class:`FileNotFoundError` if the file is missing, and
    :class:`~xdistill.errors.DataFormatError` if it is not UTF-8, a line has fewer
    than 2 columns, a tag is not IOB2 or not in ``label_set``, or the file holds
    no sentence.
    """
    return _read(path, "conll", label_set)


def read_ner_file(
    path: str | os.PathLike, format: str = "auto", label_set: Sequence[str] | None = None
) -> tuple[list[Sentence], ReadStats]:
    """Read an NER file as ``format`` (``"panx"``, ``"conll"`` or ``"auto"``).

    ``"auto"`` uses :func:`detect_format` (``.tsv`` means PAN-X). Raises
    :class:`~xdistill.errors.ConfigError` for an unknown ``format``, plus whatever
    :func:`read_panx` / :func:`read_conll` raise.
    """
    if format == "auto":
        format = detect_format(path)
    if format == "panx":
        return read_panx(path, label_set)
    if format == "conll":
        return read_conll(path, label_set)
    raise ConfigError(f"--format: unknown data format {format!r}; expected one of auto, panx, conll")
