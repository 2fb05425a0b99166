"""Building the initial teacher: its tokenizer, a model of a registered architecture trained
from scratch, or a checkpoint by hub id or local path.

* A checkpoint whose ``id2label`` is the task's label set is already fine-tuned and is used
  as is (labels in another order are permuted in its output layer).
* A checkpoint with default labels (``LABEL_0``...) is a pretrained encoder: it gets a fresh
  head and is fine-tuned.
* A checkpoint fine-tuned on a *different* label set is an error.
* No checkpoint: a model of :data:`SCRATCH_ARCHITECTURES` sized by the teacher options, with
  the tokenizer's vocabulary. It is never called mBERT or XLM-R: the log and the report say
  "trained from scratch".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, BertTokenizerFast, XLMRobertaConfig
from transformers.utils import logging as hf_logging

from ..config import DataArguments, TeacherArguments
from ..errors import ConfigError
from .base import Teacher, vocabulary_kind

logger = logging.getLogger(__name__)

DEFAULT_LABEL_PREFIX = "LABEL_"
#: files of which a tokenizer folder has at least one
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model",
                   "vocab.json")


def local_folder(name: str, option: str) -> Path | None:
    """``name`` as a local folder, or ``None`` for a hub id (``name`` or ``owner/name``).

    Raises:
        ConfigError: ``name`` is a file, or looks like a path (starts with ``.``, ``/`` or ``~``, or has
            more than one ``/``) and does not exist; names ``option``.
    """
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ConfigError(f"{option} {name}: a file, not a folder; expected a checkpoint folder or a hub id")
        return p
    if name.startswith((".", "/", "~")) or name.strip("/").count("/") > 1:
        raise ConfigError(f"{option} {name}: no such folder (and not a hub id of the form name or owner/name)")
    return None


def check_teacher_source(targs: TeacherArguments) -> None:
    """Check ``--teacher`` and ``--tokenizer`` that name local folders, before anything slow runs.

    Raises:
        ConfigError: a missing folder, a teacher folder without ``config.json``, or a tokenizer folder
            without tokenizer files.
    """
    if targs.teacher is not None:
        d = local_folder(targs.teacher, "--teacher")
        if d is not None and not (d / "config.json").is_file():
            raise ConfigError(f"--teacher {targs.teacher}: no config.json in this folder; expected a transformers "
                              "checkpoint (config.json and the weights, as save_pretrained writes them)")
    check_tokenizer_source(targs)


def check_tokenizer_source(targs: TeacherArguments) -> None:
    """Check the folder the tokenizer comes from (``--tokenizer``, else ``--teacher``), when local.

    Raises:
        ConfigError: a missing folder, or one without tokenizer files.
    """
    name, option = (targs.tokenizer, "--tokenizer") if targs.tokenizer else (targs.teacher, "--teacher")
    if name is not None:
        d = local_folder(name, option)
        if d is not None and not any((d / f).is_file() for f in TOKENIZER_FILES):
            raise ConfigError(f"{option} {name}: no tokenizer files in this folder (expected one of "
                              f"{', '.join(TOKENIZER_FILES)}); save the tokenizer with the checkpoint, or give --tokenizer")


def load_tokenizer(targs: TeacherArguments, dargs: DataArguments):
    """The teacher's tokenizer: the checkpoint's (or ``--tokenizer``'s), or mBERT's WordPiece
    vocabulary (``DATA_DIR/tokenizers/bert-base-multilingual-cased/vocab.txt``) for a scratch teacher;
    with the data options' ``truncation_side`` (text classification) where they have one.

    Raises:
        ConfigError: no tokenizer could be found (names where it looked).
    """
    check_tokenizer_source(targs)
    # which end of a long text is cut (text tasks' --truncation-side); saved in tokenizer_config.json
    side = {"truncation_side": dargs.truncation_side} if getattr(dargs, "truncation_side", None) else {}
    name = targs.tokenizer or targs.teacher
    if name is None:
        if not dargs.data_dir:
            raise ConfigError("--tokenizer: a scratch teacher needs a tokenizer (a folder with vocab.txt or a hub id), "
                              "or --data-dir with tokenizers/bert-base-multilingual-cased/vocab.txt")
        name = str(Path(dargs.data_dir) / "tokenizers" / "bert-base-multilingual-cased")
    p = Path(name)
    if p.is_dir() and (p / "vocab.txt").is_file() and not (p / "tokenizer.json").is_file() and not (p / "tokenizer_config.json").is_file():
        # A bare WordPiece vocabulary (as in ../shared/data/tokenizers): mBERT-cased settings. transformers 5
        # takes the vocabulary as ``vocab=`` (``vocab_file=`` silently builds a 5-token vocabulary).
        tok = BertTokenizerFast(vocab=str(p / "vocab.txt"), do_lower_case=False, strip_accents=False,
                                tokenize_chinese_chars=True, **side)
        if len(tok) < 10:
            raise ConfigError(f"--tokenizer {p}: vocab.txt gave a vocabulary of {len(tok)} tokens")
        return tok
    try:
        return AutoTokenizer.from_pretrained(name, **side)
    except Exception as e:  # transformers raises OSError, ValueError or its own types for a missing or bad tokenizer
        raise ConfigError(f"--tokenizer/--teacher: could not load a tokenizer from {name!r}: {e}") from e


def _bert_config(t: TeacherArguments, tokenizer, labels: dict) -> BertConfig:
    return BertConfig(vocab_size=len(tokenizer), hidden_size=t.teacher_hidden_size, num_hidden_layers=t.teacher_layers,
                      num_attention_heads=t.teacher_heads, intermediate_size=t.teacher_intermediate_size,
                      max_position_embeddings=512, hidden_dropout_prob=t.teacher_dropout,
                      attention_probs_dropout_prob=t.teacher_dropout, **labels)


def _xlmr_config(t: TeacherArguments, tokenizer, labels: dict) -> XLMRobertaConfig:
    # RoBERTa positions start after the padding index: 512 tokens need 514 position embeddings.
    return XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=t.teacher_hidden_size,
                            num_hidden_layers=t.teacher_layers, num_attention_heads=t.teacher_heads,
                            intermediate_size=t.teacher_intermediate_size, max_position_embeddings=514,
                            type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=tokenizer.pad_token_id,
                            bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                            hidden_dropout_prob=t.teacher_dropout, attention_probs_dropout_prob=t.teacher_dropout,
                            **labels)


#: scratch teacher architectures: name -> ``(teacher options, tokenizer, id2label/label2id) -> config``
SCRATCH_ARCHITECTURES: dict[str, Callable] = {"bert": _bert_config, "xlm-roberta": _xlmr_config}


def scratch_architecture(requested: str, tokenizer) -> str:
    """``--teacher-architecture``: as given, or for ``auto`` ``bert`` over a WordPiece vocabulary and
    ``xlm-roberta`` over a sentencepiece (Unigram) or BPE one.

    Raises:
        ConfigError: an unregistered architecture.
    """
    if requested == "auto":
        return "bert" if vocabulary_kind(tokenizer) == "WordPiece" else "xlm-roberta"
    if requested not in SCRATCH_ARCHITECTURES:
        raise ConfigError(f"--teacher-architecture: expected auto or one of {', '.join(SCRATCH_ARCHITECTURES)}, "
                          f"got {requested!r}")
    return requested


def _label_maps(labels: list[str]) -> dict:
    id2label = dict(enumerate(labels))
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}


def scratch_config(targs: TeacherArguments, tokenizer, labels: list[str]):
    """The ``transformers`` configuration of the scratch teacher (architecture, sizes, label maps)."""
    arch = scratch_architecture(targs.teacher_architecture, tokenizer)
    return SCRATCH_ARCHITECTURES[arch](targs, tokenizer, _label_maps(labels))


def planned_teacher(targs: TeacherArguments, tokenizer, labels: list[str]) -> Teacher | None:
    """The teacher's shape before it trains or loads, for checks that should fail in seconds: a
    :class:`Teacher` over a weightless encoder (``meta`` device) of the scratch configuration or of
    the local checkpoint's ``config.json``. Its ``num_layers``, ``num_heads``, ``hidden_size``,
    ``layer()`` and ``model.config`` are those of the real teacher; it cannot run.

    Returns ``None`` for a hub id (not fetched twice; its shape is checked once it loads).

    Raises:
        ConfigError: a local checkpoint whose ``config.json`` transformers cannot read.
    """
    if targs.teacher is None:
        cfg = scratch_config(targs, tokenizer, labels)
    elif local_folder(targs.teacher, "--teacher") is None:
        return None
    else:
        try:
            cfg = AutoConfig.from_pretrained(targs.teacher)
        except Exception as e:  # transformers raises OSError, ValueError or its own types
            raise ConfigError(f"--teacher {targs.teacher}: could not read its config.json: {e}") from e
    with torch.device("meta"):
        encoder = AutoModel.from_config(cfg)
    return Teacher(encoder, tokenizer, info=None)


def build_scratch(targs: TeacherArguments, tokenizer, auto_class, labels: list[str], seed: int):
    """A randomly initialised model of the scratch architecture (seeded with ``seed``)."""
    cfg = scratch_config(targs, tokenizer, labels)
    arch = cfg.model_type
    torch.manual_seed(seed)
    logger.info("teacher: %s trained from scratch (%d layers, hidden %d, vocabulary of %d); not a pretrained model",
                arch, targs.teacher_layers, targs.teacher_hidden_size, len(tokenizer))
    return auto_class.from_config(cfg)


def _is_default_labels(id2label: dict) -> bool:
    return all(str(v).startswith(DEFAULT_LABEL_PREFIX) for v in id2label.values())


def output_layer(model: torch.nn.Module, num_labels: int) -> torch.nn.Linear:
    """The layer that produces the logits: the last ``nn.Linear`` with ``num_labels`` outputs (BERT's
    ``classifier``, RoBERTa's ``classifier.out_proj``, DistilBERT's ``classifier``).

    Raises:
        ConfigError: the model has no such layer.
    """
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_labels]
    if not heads:
        raise ConfigError(f"--teacher: no linear output layer with {num_labels} outputs to reorder the labels of "
                          f"{type(model).__name__}")
    return heads[-1]


def permute_labels(model: torch.nn.Module, order: list[int]) -> None:
    """Reorder the output layer's rows so that output ``i`` is the checkpoint's label ``order[i]``."""
    head = output_layer(model, len(order))
    with torch.no_grad():
        head.weight.copy_(head.weight[order])
        if head.bias is not None:
            head.bias.copy_(head.bias[order])


def check_not_fine_tuned(name: str, labels: list[str]) -> None:
    """``--teacher-mlm`` pretrains an encoder before fine-tuning: a checkpoint already fine-tuned on
    labels is refused.

    Raises:
        ConfigError: the checkpoint cannot be read, or has non-default labels.
    """
    try:
        cfg = AutoConfig.from_pretrained(name)
    except Exception as e:  # transformers raises OSError, ValueError or its own types
        raise ConfigError(f"--teacher: could not load {name!r} (hub id or local directory): {e}") from e
    ckpt_labels = {int(k): v for k, v in (cfg.id2label or {}).items()}
    if ckpt_labels and not _is_default_labels(ckpt_labels):
        raise ConfigError(f"--teacher-mlm: the teacher {name} is already fine-tuned (labels "
                          f"{sorted(ckpt_labels.values())}); MLM pretraining comes before fine-tuning: give a base "
                          "checkpoint, or --teacher-mlm off")


def load_pretrained_encoder(path: str | Path, auto_class, labels: list[str], seed: int):
    """The task model (``auto_class``) on the encoder of a masked-language-model checkpoint, with a new
    output layer for ``labels`` (initialised with ``seed``)."""
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists the MLM head left out and the new output layer
    try:
        model = auto_class.from_pretrained(str(path), num_labels=len(labels), ignore_mismatched_sizes=True,
                                           **_label_maps(labels))
    finally:
        hf_logging.set_verbosity(verbosity)
    logger.info("teacher: fine-tuning the encoder pretrained (MLM) in %s (its MLM head left out, a new output "
                "layer for %d labels)", path, len(labels))
    return model


def load_checkpoint(name: str, auto_class, labels: list[str]):
    """``(model, needs_fine_tuning)`` for a checkpoint by hub id or local path (see the module docstring).

    Raises:
        ConfigError: the checkpoint cannot be loaded, or was fine-tuned on other labels.
    """
    try:
        cfg = AutoConfig.from_pretrained(name)
    except Exception as e:  # transformers raises OSError, ValueError or its own types
        raise ConfigError(f"--teacher: could not load {name!r} (hub id or local directory): {e}") from e
    maps = _label_maps(labels)
    ckpt_labels = {int(k): v for k, v in (cfg.id2label or {}).items()}
    if ckpt_labels and not _is_default_labels(ckpt_labels):
        if set(ckpt_labels.values()) != set(labels) or len(ckpt_labels) != len(labels):
            raise ConfigError(
                f"--teacher {name}: checkpoint labels {sorted(ckpt_labels.values())} differ from the task's "
                f"{labels}; expected a checkpoint fine-tuned on the same label set, or a base checkpoint")
        model = auto_class.from_pretrained(name)
        by_label = {v: k for k, v in ckpt_labels.items()}
        order = [by_label[lab] for lab in labels]
        if order != list(range(len(labels))):
            permute_labels(model, order)
            model.config.id2label, model.config.label2id = maps["id2label"], maps["label2id"]
        logger.info("teacher: %s is already fine-tuned on this label set; used as is", name)
        return model, False
    model = auto_class.from_pretrained(name, num_labels=len(labels), ignore_mismatched_sizes=True, **maps)
    logger.info("teacher: fine-tuning pretrained checkpoint %s", name)
    return model, True
