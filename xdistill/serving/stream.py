"""Streaming prediction: text lines in, one JSON line out per input line, in the input's order.

``python -m xdistill predict`` reads stdin a chunk of lines at a time (``--batch-lines``), predicts
the chunk (rows of similar length are batched together across the chunk, ``--batch-size`` rows per
forward pass), writes the chunk's results and flushes before reading on. Memory is bounded by one
chunk, whatever the input's length; the throughput (words/s) is logged to stderr at the end.

The contract for bad input: a line that is not UTF-8 stops the run with an error naming the line
and byte; a NUL or other control character is dropped from the words (as the word splitter's
normaliser drops it); an empty line gets a result with no words (NER) or an error naming the line
(a classifier needs text); a line longer than the model's maximum length is split into windows
(NER) or truncated (classification, ``tokens_cut`` in its result). Nothing is dropped: one output
line per input line, always.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, TextIO

from ..errors import ConfigError, DataFormatError, EmptyTextError

logger = logging.getLogger(__name__)


@dataclass
class StreamStats:
    """What a stream predicted: ``lines``, ``words`` (as the task counts them:
    :meth:`~xdistill.adapters.TaskAdapter.result_words`) and wall-clock ``seconds``."""

    lines: int = 0
    words: int = 0
    seconds: float = 0.0

    @property
    def words_per_second(self) -> float:
        """Words per second of wall-clock time (reading, predicting and writing)."""
        return self.words / self.seconds if self.seconds > 0 else 0.0


def decode_line(raw: bytes | str, n: int, source: str = "stdin") -> str:
    """Line ``n`` of ``source`` as text, without its line ending.

    Raises:
        DataFormatError: the line is not UTF-8 (names the line and the byte).
    """
    if isinstance(raw, str):
        return raw.rstrip("\r\n")
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataFormatError(source, n, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                              "UTF-8 encoded text, one text per line") from None


def chunked_lines(stream: Iterable[bytes | str], size: int, source: str = "stdin") -> Iterator[tuple[int, list[str]]]:
    """``(first_line_number, lines)`` chunks of at most ``size`` decoded lines (see :func:`decode_line`).

    Raises:
        ConfigError: ``size`` below 1.
        DataFormatError: a line that is not UTF-8.
    """
    if size < 1:
        raise ConfigError(f"--batch-lines: expected a positive integer, got {size}")
    buf: list[str] = []
    start = 1
    for n, raw in enumerate(stream, 1):
        buf.append(decode_line(raw, n, source))
        if len(buf) >= size:
            yield start, buf
            buf, start = [], n + 1
    if buf:
        yield start, buf


def predict_lines(model, lines: list[str], first_line: int, source: str) -> list[dict]:
    """``model.predict(lines)``, with an empty text named by its line (``source`` ``"stdin"``) or
    occurrence (``"--text"``).

    Raises:
        ConfigError: an empty text for a model that needs text (a classifier).
    """
    try:
        return model.predict(lines)
    except EmptyTextError as e:
        where = ", ".join(str(first_line + i) for i in e.indices[:10])
        raise ConfigError(f"{source} {'line' if source == 'stdin' else 'number'} {where}: empty text; "
                          "a classifier needs text to classify") from e


def predict_stream(model, chunks: Iterable[tuple[int, list[str]]], out: TextIO, source: str = "stdin") -> StreamStats:
    """Predict each chunk of ``(first_line_number, lines)`` and write one JSON line per input line to
    ``out`` (flushed after each chunk), in order. Returns the counts and the wall-clock time.

    Raises:
        ConfigError, DataFormatError: see :func:`predict_lines` and :func:`chunked_lines`; the
            results of earlier chunks are already written.
    """
    stats = StreamStats()
    t0 = time.perf_counter()
    count = model.adapter.result_words
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    for first, lines in chunks:
        results = predict_lines(model, lines, first, source)
        out.write("".join(dumps(r) + "\n" for r in results))
        out.flush()
        stats.lines += len(lines)
        stats.words += sum(map(count, results))
    stats.seconds = time.perf_counter() - t0
    return stats
