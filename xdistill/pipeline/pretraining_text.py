"""The text a teacher reads before fine-tuning (``--mlm-text``): for masked-language-model
pretraining (``--teacher-mlm``) and for PPMI-SVD word embeddings (``--teacher-embeddings ppmi``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..adapters import TaskAdapter
from ..config import TeacherArguments
from ..data.text import read_lines
from ..errors import ConfigError
from ..teachers.mlm import MLMText, encode_mlm_text

logger = logging.getLogger(__name__)

#: ``--mlm-text`` names -> the run's split whose text they are
MLM_SPLITS = {"transfer": "transfer", "labeled": "teacher_labeled"}
#: ``--mlm-text`` name of every sentence of the task's train files (labels unused), validation left out
TRAIN = "train"


def check_sources(targs: TeacherArguments) -> None:
    """Before any data is read: every ``--mlm-text`` name is a split name, ``train`` or a file.

    Raises:
        ConfigError: a name that is none of them (names it and what was expected).
    """
    for name in targs.mlm_sources if targs.reads_text else ():
        if name not in MLM_SPLITS and name != TRAIN and not Path(name).is_file():
            raise ConfigError(f"--mlm-text: {name}: no such file; expected {', '.join([*MLM_SPLITS, TRAIN])} or UTF-8 "
                              "text files with one text per line")


def pretraining_text(adapter: TaskAdapter, targs: TeacherArguments, data_args, splits: dict, groups: list[str],
                     max_length: int, tokenizer) -> MLMText:
    """The rows of ``--mlm-text``, in the order given: the transfer split's text, the teacher's
    labeled text (labels unused), every train sentence of the run's groups (``train``; the
    validation split's texts left out, so model selection reads text the teacher never saw), and
    text files. Texts longer than ``max_length`` tokens become several windows.

    Raises:
        ConfigError, DataFormatError: a file that is missing, not UTF-8 or empty (naming it); ``train``
            for a task whose adapter has no train text.
    """
    parts = {}
    for name in targs.mlm_sources:
        if name in MLM_SPLITS:
            parts[name] = adapter.texts(splits[MLM_SPLITS[name]])
        elif name == TRAIN:
            held = set(adapter.texts(splits["validation"]))
            texts = adapter.train_texts(data_args, groups)
            parts[name] = [t for t in texts if t not in held]
            logger.info("--mlm-text train: %d train texts of %d groups (%d validation texts left out)",
                        len(parts[name]), len(groups), len(texts) - len(parts[name]))
        else:
            parts[name] = read_lines(name, "--mlm-text")
    text = encode_mlm_text([x for v in parts.values() for x in v], tokenizer, max_length)
    text.sources = {k: len(v) for k, v in parts.items()}
    return text
