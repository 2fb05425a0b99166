"""The masked-language-model generator of zero-shot distillation's adversarial examples (MATE-KD,
Rashid et al. ACL 2021, sec. 3.1: a pretrained MLM proposes the replacement tokens).

``--adversarial-generator`` names any ``AutoModelForMaskedLM`` (hub id or folder) with the teacher's
vocabulary: with hub access, the teacher's own pretrained MLM (``bert-base-multilingual-cased``,
``xlm-roberta-base``). Without one, a small BERT MLM is trained here from scratch on the
out-of-domain text with the teacher's tokenizer (:class:`~xdistill.teachers.mlm.MLMPretrainer`:
whole-word masking, a budget in steps or minutes, checkpointed, saved in ``OUTPUT/generator-mlm``
and reused by a later run with the same inputs).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from ..config import TeacherArguments
from ..config.zero_shot import ZeroShotArguments
from ..errors import ConfigError
from .base import TeacherInfo
from .build import scratch_config
from .mlm import MLMPretrainer, encode_mlm_text

logger = logging.getLogger(__name__)

GENERATOR_DIR = "generator-mlm"


def scratch_generator_arguments(z: ZeroShotArguments, targs: TeacherArguments, teacher_path: str | None = None
                                ) -> TeacherArguments:
    """The teacher options that describe the generator trained here to :class:`MLMPretrainer`.

    ``--adversarial-generator-init random``: a BERT of ``--adversarial-generator-hidden/-layers/-heads``
    (feed-forward 4H) with the teacher's tokenizer, pretrained for ``--adversarial-generator-mlm`` from
    random embeddings (the teacher's ``--teacher-embeddings ppmi``, the cpu preset's for ner,
    initialises a teacher to be fine-tuned, not an MLM). ``teacher``: the checkpoint at ``teacher_path``
    (the fine-tuned teacher) loaded as ``AutoModelForMaskedLM`` (its encoder and word embeddings; the
    MLM head new, its output layer tied to the word embeddings) and trained on the OOD text for the
    same budget.

    Raises:
        ConfigError: ``teacher`` without a teacher checkpoint.
    """
    mlm = dict(teacher_mlm=z.adversarial_generator_mlm, mlm_text="ood", teacher_lang_temperature=1.0,
               teacher_embeddings="random")
    if z.adversarial_generator_init == "teacher":
        if not teacher_path:
            raise ConfigError("--adversarial-generator-init teacher: the teacher has no saved checkpoint to start "
                              "the generator from; expected --teacher DIR or a teacher fine-tuned by the run")
        return replace(targs, teacher=str(teacher_path), **mlm)
    return replace(targs, teacher=None, teacher_architecture="bert", teacher_hidden_size=z.adversarial_generator_hidden,
                   teacher_layers=z.adversarial_generator_layers, teacher_heads=z.adversarial_generator_heads,
                   teacher_intermediate_size=4 * z.adversarial_generator_hidden, **mlm)


def check_generator_vocabulary(model, generator_tokenizer, tokenizer, name: str) -> None:
    """The generator must write the teacher's tokens: the same vocabulary (when it has a tokenizer),
    and an output row for every teacher token id.

    Raises:
        ConfigError: a different vocabulary or size (names ``--adversarial-generator``).
    """
    rows = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None \
        else model.config.vocab_size
    same = generator_tokenizer is None or generator_tokenizer.get_vocab() == tokenizer.get_vocab()
    if not same or rows < len(tokenizer):
        size = len(generator_tokenizer) if generator_tokenizer is not None else rows
        raise ConfigError(f"--adversarial-generator {name}: its vocabulary ({size:,} tokens) differs from the teacher's "
                          f"({len(tokenizer):,} tokens); expected a masked language model with the teacher's tokenizer "
                          "(or leave the option unset to train one here)")


def load_generator(name: str, tokenizer) -> torch.nn.Module:
    """``AutoModelForMaskedLM.from_pretrained(name)``, its vocabulary checked against the teacher's.

    Raises:
        ConfigError: it cannot be loaded as a masked language model, or its vocabulary differs.
    """
    try:
        model = AutoModelForMaskedLM.from_pretrained(name)
    except Exception as e:  # transformers raises OSError, ValueError or its own types
        raise ConfigError(f"--adversarial-generator {name}: cannot be loaded as a masked language model "
                          f"(AutoModelForMaskedLM): {e}") from None
    try:
        own = AutoTokenizer.from_pretrained(name)
    except Exception:  # a checkpoint saved without its tokenizer: only the sizes can be compared
        own = None
    check_generator_vocabulary(model, own, tokenizer, name)
    return model


def prepare_generator(z: ZeroShotArguments, targs: TeacherArguments, tokenizer, texts: Sequence[str], max_length: int,
                      out_dir: Path, seed: int, resume: bool, teacher: TeacherInfo | None = None
                      ) -> tuple[torch.nn.Module, dict]:
    """The generator (eval mode) and what the report says of it: ``source``, ``parameters`` and, for a
    generator trained here, its MLM training (:class:`~xdistill.teachers.mlm.MLMReport` as a dict).

    Args:
        teacher: the run's teacher (its saved ``path`` and weights' ``fingerprint``), where
            ``--adversarial-generator-init teacher`` starts the generator.
    Raises:
        ConfigError: see :func:`load_generator` and :func:`scratch_generator_arguments`; fewer than 2 rows
            of OOD text for a generator trained here.
    """
    if z.adversarial_generator:
        model = load_generator(z.adversarial_generator, tokenizer)
        info = {"source": z.adversarial_generator, "trained_here": False, "mlm": None}
    else:
        gargs = scratch_generator_arguments(z, targs, teacher.path if teacher is not None else None)
        from_teacher = not gargs.from_scratch
        text = encode_mlm_text(texts, tokenizer, max_length)
        text.sources = {"ood": len(texts)}
        report = MLMPretrainer(gargs, out_dir, seed, name=GENERATOR_DIR,
                               start_fingerprint=teacher.fingerprint if from_teacher else "").run(
            text, tokenizer, resume, scratch_config=lambda: scratch_config(gargs, tokenizer, []))
        model = AutoModelForMaskedLM.from_pretrained(Path(out_dir) / GENERATOR_DIR)
        info = {"source": (f"the teacher ({teacher.architecture} {teacher.num_layers}x{teacher.hidden_size}, "
                           f"{teacher.path}) with a new MLM head, trained here on the OOD text" if from_teacher else
                           f"BERT {gargs.teacher_layers}x{gargs.teacher_hidden_size} MLM trained here from scratch "
                           "on the OOD text (not a pretrained model)"), "trained_here": True, "mlm": asdict(report)}
    info["parameters"] = sum(p.numel() for p in model.parameters())
    logger.info("adversarial generator: %s, %.1fM parameters", info["source"], info["parameters"] / 1e6)
    return model.eval(), info
