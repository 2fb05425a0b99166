"""A scratch teacher's vocabulary pruned to the run's text (``--teacher-vocab pruned``).

A teacher trained from scratch over mBERT's 119,547-piece WordPiece vocabulary uses part of it:
the cpu preset's text touches 38,449 pieces in 12 languages and 78,707 in all 47. The others keep
their random initialisation for ever, yet cost every optimizer step: AdamW updates the whole
``(V, H)`` embedding matrix, whose gradient is dense. For the cpu preset's 4x192 teacher, 32
sentences of 28 pieces, fused AdamW (the ``Trainer``'s ``adamw_torch_fused``), 2 threads of a
2-core AMD EPYC, a step takes 297 ms at the full vocabulary (54 of them in the optimizer), 279 ms at
83,576 pieces and 228 ms at 30,000: pruning pays where few languages leave most of the vocabulary
unused (fine-tuning 1.26 times faster on 12 languages), little on all 47. It did not make the
teacher better (README, "The teacher recipe on a 2-core CPU").

The pruned vocabulary keeps the pieces of every row the teacher is trained, selected or asked to
label on (labeled, validation, teacher-labeled and transfer splits; never the evaluation splits),
the tokenizer's special tokens, and both single-character pieces (``c`` and ``##c``) of every
character of that text, so that a word never seen still splits into trained characters rather
than becoming ``[UNK]``. It is a WordPiece vocabulary of its own
(:func:`~xdistill.students.tokenizer.pruned_tokenizer`: greedy longest-match-first), so the text
it was built from tokenizes exactly as under the full vocabulary, and the teacher is a plain
``transformers`` checkpoint whose saved tokenizer is the pruned one. A word outside that text may
split into other kept pieces than under the full vocabulary (the pieces it would have used had no
trained embedding there).
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from ..config import TeacherArguments
from ..data.types import Encoded
from ..errors import ConfigError
from ..students.tokenizer import can_prune, pruned_tokenizer
from ..students.vocab import prune_vocabulary

logger = logging.getLogger(__name__)


def character_pieces(tokenizer, texts: Iterable[str]) -> list[int]:
    """Ids of the single-character pieces ``c`` and ``##c`` (the tokenizer's continuing-subword
    prefix) of every character in ``texts`` that the vocabulary has; sorted."""
    chars: set[str] = set()
    for t in texts:
        chars.update(t)
    chars.discard(" ")
    vocab = tokenizer.get_vocab()
    prefix = getattr(tokenizer.backend_tokenizer.model, "continuing_subword_prefix", "##")
    return sorted({vocab[p] for c in chars for p in (c, prefix + c) if p in vocab})


def prune_teacher_vocabulary(tokenizer, encodings: Iterable[Encoded], texts: Iterable[str]):
    """The teacher's tokenizer over the pieces of ``encodings`` (the run's training, selection and
    transfer rows), its special tokens and the single-character pieces of ``texts``
    (:func:`character_pieces`); see the module docstring.

    Returns ``(tokenizer, counts)``: the pruned tokenizer (pad id 0, unknown id 1, then the kept
    pieces in the full vocabulary's order) and ``{"full", "pruned", "from_text", "characters"}``
    vocabulary sizes for the report.

    Raises:
        ConfigError: the tokenizer is not a WordPiece fast tokenizer (``--teacher-vocab pruned``
            cannot keep seen text's segmentation for sentencepiece vocabularies).
    """
    if not can_prune(tokenizer):
        raise ConfigError(f"--teacher-vocab pruned: the tokenizer {type(tokenizer).__name__} is not a WordPiece fast "
                          "tokenizer, whose vocabulary can be pruned without changing how seen text splits; "
                          "use --teacher-vocab full")
    size = len(tokenizer)
    seen = np.zeros(size, dtype=bool)
    for enc in encodings:
        seen[enc.input_ids.flat] = True
    chars = character_pieces(tokenizer, texts)
    kept, _ = prune_vocabulary([np.flatnonzero(seen), chars, tokenizer.all_special_ids], size,
                               tokenizer.pad_token_id, tokenizer.unk_token_id)
    pruned = pruned_tokenizer(tokenizer, kept)
    counts = {"full": size, "pruned": len(pruned), "from_text": int(seen.sum()),
              "characters": len(chars)}
    logger.info("teacher vocabulary: %s pruned to %d of %d pieces (%d in the run's text, %d single-character pieces "
                "of its characters, and the special tokens)", type(tokenizer).__name__, counts["pruned"], size,
                counts["from_text"], counts["characters"])
    return pruned, counts


def teacher_vocabulary(targs: TeacherArguments, tokenizer, encodings: Iterable[Encoded], texts: Iterable[str]):
    """``(tokenizer, counts)`` of the teacher: :func:`prune_teacher_vocabulary` for a scratch teacher
    with ``--teacher-vocab pruned``, else the tokenizer as it is and no counts (``{}``; a checkpoint
    with ``--teacher-vocab pruned`` keeps its own vocabulary, and the log says so).

    Raises:
        ConfigError: as :func:`prune_teacher_vocabulary`.
    """
    if targs.prunes_vocabulary:
        return prune_teacher_vocabulary(tokenizer, encodings, texts)
    if targs.teacher_vocab == "pruned":
        logger.info("--teacher-vocab pruned: the checkpoint %s keeps its own vocabulary of %d pieces (its embeddings "
                    "belong to it); only a scratch teacher's is pruned", targs.teacher, len(tokenizer))
    return tokenizer, {}
