"""A tokenizer over the student's pruned vocabulary (:func:`~xdistill.students.vocab.prune_vocabulary`),
so that a saved student reads raw text by itself, without the teacher's tokenizer and vocabulary map.

:func:`pruned_tokenizer` is the teacher's ``transformers`` fast tokenizer (same class, normalizer,
pre-tokenizer, decoder, special tokens and settings) whose WordPiece vocabulary is exactly the kept
teacher tokens, in student-id order: the token of student id ``s`` is the teacher token of id
``kept[s]``. The post-processor (BERT's ``[CLS] ... [SEP]`` template), the added tokens and the
padding settings use the new ids, so for text of the run's data
``pruned(text).input_ids == vocab_map[teacher(text).input_ids]``.

Why a word seen in the run's data tokenizes identically: WordPiece is greedy longest-match-first.
A word is split by taking the longest vocabulary entry that prefixes it, then the longest ``##``
entry that prefixes the rest, and so on. Every piece the teacher chose for a seen word is kept, and
the pruned vocabulary is a subset of the teacher's, so at each step the longest match in the pruned
vocabulary is the teacher's choice again: no longer one can appear, and the teacher's is still
there. A word never seen may split into other kept pieces, or, when some step finds no kept piece,
become the unknown token as a whole (WordPiece's rule), where the teacher read real pieces that the
vocabulary map sends to unknown one by one.

This holds only for WordPiece. A sentencepiece model (Unigram, as XLM-R's, or BPE) scores or merges
over the whole vocabulary, and removing unseen pieces can change how seen text is segmented, so
such a vocabulary is not pruned: :func:`can_prune` says which, and :func:`pruned_tokenizer` raises
:class:`~xdistill.errors.ConfigError` for the others.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from ..errors import ConfigError

# init kwargs that describe where a tokenizer was loaded from, or hold the teacher's ids: not copied
_DROPPED_KWARGS = frozenset({
    "vocab", "vocab_file", "merges", "merges_file", "tokenizer_file", "tokenizer_object", "name_or_path",
    "added_tokens_decoder", "special_tokens_map_file", "is_local", "local_files_only", "_commit_hash",
    "cache_dir", "token", "revision", "subfolder", "trust_remote_code", "post_processor", "tokenizer_padding",
    "tokenizer_truncation", "_json_truncation", "_json_padding", "_spm_precompiled_charsmap", "gguf_file",
    "additional_special_tokens", "extra_special_tokens", "tokenizer_class", "auto_map",
})

# BertNormalizer field -> the init argument of BERT-like tokenizer classes that rebuilds it on loading
_NORMALIZER_KWARGS = {"lowercase": "do_lower_case", "strip_accents": "strip_accents",
                      "handle_chinese_chars": "tokenize_chinese_chars"}


def _backend_json(tokenizer) -> dict | None:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    return json.loads(backend.to_str())


def _describe(tokenizer) -> str:
    name = getattr(tokenizer, "name_or_path", "") or ""
    return f"{type(tokenizer).__name__}" + (f" ({name})" if name else "")


def can_prune(tokenizer) -> bool:
    """Whether ``tokenizer`` is a fast (``tokenizers``-backed) tokenizer with a WordPiece model,
    whose vocabulary :func:`pruned_tokenizer` can prune without changing how seen words tokenize."""
    spec = _backend_json(tokenizer)
    return spec is not None and (spec.get("model") or {}).get("type") == "WordPiece"


def _kept_ids(kept: Sequence[int], size: int, pad_id: int | None, unk_id: int | None) -> list[int]:
    arr = np.asarray(kept)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"kept must be a 1-D sequence of integer token ids, got shape {arr.shape} of {arr.dtype}")
    ids = [int(i) for i in arr]
    if pad_id is None or unk_id is None:
        raise ValueError("the teacher's tokenizer has no pad or unknown token; kept must start with their ids")
    if len(ids) < 2 or ids[0] != pad_id or ids[1] != unk_id:
        raise ValueError(f"kept must start with the teacher's pad and unknown ids [{pad_id}, {unk_id}] "
                         f"(student ids 0 and 1), got {ids[:2]}")
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise ValueError(f"kept has ids out of range for a vocabulary of {size}: {bad[:10]}")
    if len(set(ids)) != len(ids):
        seen: set[int] = set()
        rep = sorted({i for i in ids if i in seen or seen.add(i)})
        raise ValueError(f"kept repeats ids {rep[:10]}; each teacher id must appear once")
    return ids


def _remap_post_processor(proc: dict | None, new_id: dict[str, int]) -> None:
    """Give the special tokens of a serialised post-processor their new ids, in place."""
    if not proc:
        return

    def lookup(token: str) -> int:
        if token not in new_id:
            raise ValueError(f"the tokenizer's post-processor adds {token!r}, which is not among the kept tokens; "
                             "keep the special tokens (prune_vocabulary's keep_ids)")
        return new_id[token]

    for sub in proc.get("processors") or ():  # Sequence
        _remap_post_processor(sub, new_id)
    for spec in (proc.get("special_tokens") or {}).values():  # TemplateProcessing
        spec["ids"] = [lookup(t) for t in spec["tokens"]]
    for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
        if isinstance(proc.get(key), list) and len(proc[key]) == 2:
            proc[key] = [proc[key][0], lookup(proc[key][0])]


def pruned_tokenizer(teacher_tokenizer, kept: Sequence[int]):
    """The teacher's tokenizer over the vocabulary ``kept`` (:func:`~xdistill.students.vocab.prune_vocabulary`).

    Returns a tokenizer of the teacher's class with its normalizer, pre-tokenizer, decoder, special
    tokens and settings (``model_max_length``, padding and truncation side, ``do_lower_case`` ...),
    whose WordPiece vocabulary is ``kept`` in order (student id ``s`` is the teacher token
    ``kept[s]``; ``len(result) == len(kept)``). The post-processor, added tokens and padding use the
    new ids; a special token of the teacher that is not in ``kept`` is dropped (set to ``None``),
    except those the post-processor inserts, which must be kept. Seen words tokenize as the teacher
    tokenizes them (see the module docstring); ``save_pretrained`` and ``AutoTokenizer.from_pretrained``
    round-trip it.

    Raises :class:`~xdistill.errors.ConfigError` when the tokenizer's model is not WordPiece (see
    :func:`can_prune`), and ``ValueError`` when ``kept`` does not start with the pad and unknown ids,
    has an id out of range or repeated, or lacks a token the post-processor or padding inserts.
    """
    spec = _backend_json(teacher_tokenizer)
    model_type = (spec.get("model") or {}).get("type") if spec is not None else None
    if model_type != "WordPiece":
        what = f"its model is {model_type}" if spec is not None else "it is not a fast (tokenizers-backed) tokenizer"
        raise ConfigError(f"tokenizer {_describe(teacher_tokenizer)}: {what}, not WordPiece, so its vocabulary "
                          "cannot be pruned safely (removing unseen pieces could change how seen text is segmented) "
                          "and is kept whole")
    backend = teacher_tokenizer.backend_tokenizer
    size = backend.get_vocab_size(with_added_tokens=True)
    ids = _kept_ids(kept, size, teacher_tokenizer.pad_token_id, teacher_tokenizer.unk_token_id)

    tokens = [backend.id_to_token(i) for i in ids]
    holes = [i for i, t in zip(ids, tokens) if t is None]
    if holes:
        raise ValueError(f"kept has ids with no token in the teacher's vocabulary: {holes[:10]}")
    new_id = {t: s for s, t in enumerate(tokens)}
    if len(new_id) != len(tokens):
        raise ValueError("kept has two ids for the same token string; the pruned vocabulary would lose one")
    model = spec["model"]
    if model.get("unk_token") not in new_id:
        raise ValueError(f"kept lacks the WordPiece unknown token {model.get('unk_token')!r}")

    # The new backend: the teacher's, with the kept vocabulary and every id that points into it remapped.
    model["vocab"] = new_id
    kept_set = set(ids)
    spec["added_tokens"] = [dict(a, id=new_id[a["content"]]) for a in spec.get("added_tokens") or ()
                            if a["id"] in kept_set and a["content"] in new_id]
    _remap_post_processor(spec.get("post_processor"), new_id)
    if spec.get("padding"):
        pad = spec["padding"].get("pad_token")
        if pad not in new_id:
            raise ValueError(f"the tokenizer pads with {pad!r}, which is not among the kept tokens")
        spec["padding"]["pad_id"] = new_id[pad]
    new_backend = Tokenizer.from_str(json.dumps(spec))

    # The wrapper: the teacher's init arguments, special tokens only where kept, settings copied.
    cls = type(teacher_tokenizer)
    kwargs: dict[str, Any] = {k: v for k, v in teacher_tokenizer.init_kwargs.items() if k not in _DROPPED_KWARGS}
    added = teacher_tokenizer.added_tokens_decoder  # teacher id -> AddedToken (keeps lstrip/normalized flags)
    for attr in teacher_tokenizer.SPECIAL_TOKENS_ATTRIBUTES:
        token = teacher_tokenizer.special_tokens_map.get(attr)
        tid = teacher_tokenizer.convert_tokens_to_ids(token) if token is not None else None
        if token is None or token not in new_id or tid not in kept_set:
            kwargs[attr] = None
        else:
            kwargs[attr] = added.get(tid, token)
    extra = [t for t in teacher_tokenizer.extra_special_tokens if t in new_id]
    if extra:
        kwargs["extra_special_tokens"] = extra
    for key in ("model_max_length", "padding_side", "truncation_side", "clean_up_tokenization_spaces",
                "split_special_tokens"):
        if hasattr(teacher_tokenizer, key):
            kwargs[key] = getattr(teacher_tokenizer, key)
    # Classes such as BertTokenizer rebuild their normalizer from init arguments when loaded: derive them
    # from the normaliser itself so that the saved tokenizer normalises as the teacher does.
    params = inspect.signature(cls.__init__).parameters
    if (spec.get("normalizer") or {}).get("type") == "BertNormalizer":
        for field, arg in _NORMALIZER_KWARGS.items():
            if arg in params:
                kwargs[arg] = spec["normalizer"][field]

    try:
        tok = cls(tokenizer_object=new_backend, **kwargs)
    except TypeError as e:  # a class that builds its own backend and passes tokenizer_object itself
        if "tokenizer_object" not in str(e):
            raise
        tok = cls(**kwargs)
        tok._tokenizer = new_backend

    if tok.get_vocab() != new_id:
        raise RuntimeError(f"{cls.__name__} changed the pruned vocabulary while wrapping it "
                           f"({len(tok)} tokens, expected {len(new_id)})")
    return tok
