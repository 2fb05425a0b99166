"""Small transformer students (XtremeDistilTransformers: Mukherjee, Hassan Awadallah & Gao 2021,
arXiv 2106.04563), saved as standard ``transformers`` models.

A :class:`TransformerStudent` wraps a ``transformers`` token- or sequence-classification model of
the teacher's family (BERT, RoBERTa, XLM-R, ELECTRA) with L layers, width H, A heads and a
feed-forward of I. Its vocabulary is the teacher's pruned to the tokens of the run's data, as for
the BiLSTM (:mod:`xdistill.students.vocab`), when the teacher's tokenizer is WordPiece; a
sentencepiece vocabulary cannot be pruned safely and is kept whole (the report says so).

Initialisation (``--student-init``): ``svd``, word embeddings from the SVD of the teacher's input
embeddings over the kept tokens, reduced to H (XtremeDistilTransformers'
``--compress_word_embedding``; XtremeDistil sec. 3.1), everything else random; ``teacher-layers``,
for a student as wide as the teacher (same heads and feed-forward): the teacher's embeddings (kept
rows) and every k-th layer copied (k = L_t // L, as DistilBERT, Sanh et al. 2019, sec. 3); ``random``.

While distilling, the student reads the *teacher's* ids (positions align 1:1 with the teacher's
cached outputs) through a vocabulary map. Saved, it is a plain ``transformers`` folder: its model,
and a tokenizer over the pruned vocabulary (:func:`~xdistill.students.tokenizer.pruned_tokenizer`)
whose ids it reads directly, so that ``AutoModelForTokenClassification.from_pretrained(DIR)`` and
a ``transformers.pipeline`` over DIR work; ``config.json`` also carries
``"xdistill_student": true``, ``"kind": "transformer"`` and what xdistill needs under ``"xdistill"``.

Named outputs: ``logits``; ``hidden_states`` ``0..L`` (``(B, T, H)``; a sequence task's first
position ``(B, H)``); ``attentions`` ``1..L`` ``(B, A, T, T)``, and ``queries``/``keys``/``values``
``(B, T, H)`` of any layer, when asked for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig

from ..adapters import LEVELS
from ..config import StudentArguments
from ..data.types import Feature
from ..errors import ConfigError
from ..modeling import PROJECTIONS, capture_projections, encoder_layers
from ..utils import VERSION
from .base import STUDENT_CONFIG, STUDENT_MARKER, Student, StudentContext, StudentOutput, StudentShape
from .registry import SETTINGS_KEY, register_student
from .tokenizer import can_prune, pruned_tokenizer
from .vocab import UNK, svd_embeddings

#: teacher families whose configuration takes BERT's size names (``hidden_size``, ``num_hidden_layers``, ...)
FAMILIES = ("bert", "roberta", "xlm-roberta", "electra")
#: size settings copied from the teacher's configuration
COPIED = ("max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps", "position_embedding_type")


def student_family(teacher_config) -> str:
    """The model family of a student of this teacher: the teacher's when it takes BERT's size names,
    else ``bert``."""
    family = getattr(teacher_config, "model_type", "bert")
    return family if family in FAMILIES else "bert"


def check_teacher_layers(student_sizes: dict, family: str, teacher_config) -> None:
    """``--student-init teacher-layers`` copies a teacher of ``teacher_config`` into a student of
    ``student_sizes`` (``hidden_size``, ``num_attention_heads``, ``intermediate_size``,
    ``num_hidden_layers``) and ``family``; it needs the same width, heads, feed-forward and family,
    and no more layers than the teacher's.

    Raises:
        ConfigError: one ``"--option S vs the teacher's T"`` per difference.
    """
    diff = [f"{opt} {student_sizes[k]} vs the teacher's {getattr(teacher_config, k, None)}" for k, opt in
            (("hidden_size", "--student-hidden"), ("num_attention_heads", "--student-heads"),
             ("intermediate_size", "--student-intermediate")) if student_sizes[k] != getattr(teacher_config, k, None)]
    if family != getattr(teacher_config, "model_type", None):
        diff.append(f"family {family} vs the teacher's {getattr(teacher_config, 'model_type', None)}")
    t_layers = getattr(teacher_config, "num_hidden_layers", 0) or 0
    if student_sizes["num_hidden_layers"] > t_layers:
        diff.append(f"--student-layers {student_sizes['num_hidden_layers']} vs the teacher's {t_layers}")
    if diff:
        raise ConfigError("--student-init teacher-layers needs a student shaped like the teacher: " + "; ".join(diff))


@register_student
class TransformerStudent(Student):
    """A small transformer student (see the module docstring).

    Config keys: ``family``, ``level`` (``token``/``sequence``), ``model`` (the ``transformers``
    configuration's size settings), ``num_labels``, ``teacher_vocab_size`` (ids it reads),
    ``student_vocab_size``, ``vocabulary`` (``pruned``, ``whole``; ``own`` once saved: it reads
    its own tokenizer's ids), ``embedding_init``.

    ``forward``: ``input_ids`` ``(B, T)`` -> logits ``(B, T, C)`` (or ``(B, C)``), hidden states
    ``L + 1`` x ``(B, T, H)`` (or ``(B, H)``), and the relational features asked for.
    Groups: head ``classifier`` (every parameter outside the embeddings and the layers: the
    classifier, a pooler); body, top down: ``layer.L-1`` ... ``layer.0``, ``embeddings``.
    """

    kind = "transformer"
    default_stages = "intermediate,logits,labeled"

    def __init__(self, config: dict, model: nn.Module | None = None):
        super().__init__(config)
        c = self.config
        self.level = LEVELS[c["level"]]
        if model is None:
            hf = AutoConfig.for_model(c["family"], num_labels=c["num_labels"], **c["model"])
            model = self.level.auto_model_class.from_config(hf, attn_implementation="eager")
        self.model = model
        self.register_buffer("vocab_map", torch.arange(c["teacher_vocab_size"], dtype=torch.long), persistent=False)
        self.register_buffer("kept_ids", torch.arange(c["student_vocab_size"], dtype=torch.long), persistent=False)

    # -- building ---------------------------------------------------------------------------------
    @classmethod
    def shape(cls, args: StudentArguments) -> StudentShape:
        return StudentShape(layers=args.student_layers, heads=args.student_heads, hidden=args.student_hidden)

    @classmethod
    def check_teacher(cls, args: StudentArguments, teacher_config) -> None:
        """``--student-init teacher-layers``: the width, heads, feed-forward and family must be the
        teacher's, and the layers no more than its.

        Raises:
            ConfigError: names each option that differs and the teacher's value.
        """
        if args.student_init == "teacher-layers":
            sizes = {"hidden_size": args.student_hidden, "num_attention_heads": args.student_heads,
                     "intermediate_size": args.feed_forward, "num_hidden_layers": args.student_layers}
            check_teacher_layers(sizes, student_family(teacher_config), teacher_config)

    @classmethod
    def create(cls, args: StudentArguments, ctx: StudentContext) -> "TransformerStudent":
        """A new student: sizes from ``args``; the teacher's family and position settings from
        ``ctx.teacher_model``; the vocabulary pruned to ``ctx.rows`` (whole for a tokenizer that
        cannot be pruned); initialisation per ``--student-init`` (:meth:`initialise`).

        Raises:
            ConfigError: ``--student-init teacher-layers`` with a width, head count or feed-forward
                size other than the teacher's, or more layers than the teacher has.
        """
        tc = ctx.teacher_model.config if ctx.teacher_model is not None else None
        if ctx.tokenizer is None or can_prune(ctx.tokenizer):
            kept, vocab_map = ctx.vocabulary(args.student_vocabulary)
            vocabulary, pad = "pruned", 0
        else:
            kept = vocab_map = np.arange(ctx.vocab_size, dtype=np.int64)
            vocabulary, pad = "whole", ctx.pad_id
        model = {"vocab_size": int(len(kept)), "hidden_size": args.student_hidden,
                 "num_hidden_layers": args.student_layers, "num_attention_heads": args.student_heads,
                 "intermediate_size": args.feed_forward, "pad_token_id": int(pad)}
        if tc is not None:
            model.update({k: getattr(tc, k) for k in COPIED if getattr(tc, k, None) is not None})
        family = student_family(tc) if tc is not None else "bert"
        torch.manual_seed(ctx.seed)
        student = cls({"family": family, "level": ctx.level.name, "model": model, "num_labels": ctx.num_labels,
                       "teacher_vocab_size": int(ctx.vocab_size), "student_vocab_size": int(len(kept)),
                       "vocabulary": vocabulary, "embedding_init": "random"})
        student.vocab_map.copy_(torch.as_tensor(vocab_map))
        student.kept_ids.copy_(torch.as_tensor(kept))
        student.initialise(args, ctx)
        return student

    def initialise(self, args: StudentArguments, ctx: StudentContext) -> None:
        """``--student-init``: ``teacher-layers`` copies the teacher's embeddings and every k-th layer
        (only with a teacher model in ``ctx``: the no-distillation baselines copy no layers and fall
        back to ``svd``); ``svd`` sets the word embeddings from the SVD of ``ctx.teacher_embeddings``
        (random without them); ``random`` keeps the random initialisation."""
        init = args.student_init
        if init == "teacher-layers" and ctx.teacher_model is not None:
            self.copy_teacher_layers(ctx.teacher_model)
        elif init != "random" and ctx.teacher_embeddings is not None:
            emb = svd_embeddings(ctx.teacher_embeddings, self.kept_ids.numpy(), self.config["model"]["hidden_size"],
                                 seed=ctx.seed)
            with torch.no_grad():
                self.model.get_input_embeddings().weight.copy_(emb)
            self.config["embedding_init"] = "svd"

    def copy_teacher_layers(self, teacher: nn.Module) -> None:
        """Copy the teacher's embeddings (the kept rows of its word embeddings) and its layers
        ``0, k, 2k, ...`` (k = L_t // L) into this student.

        Raises:
            ConfigError: a width, head count or feed-forward size other than the teacher's, another
                family, or more layers than the teacher has.
        """
        mc = self.model.config
        check_teacher_layers({k: getattr(mc, k) for k in ("hidden_size", "num_attention_heads", "intermediate_size",
                                                          "num_hidden_layers")}, mc.model_type, teacher.config)
        t_layers, s_layers = encoder_layers(teacher), encoder_layers(self.model)
        k = len(t_layers) // len(s_layers)
        with torch.no_grad():
            t_emb = teacher.base_model.embeddings.state_dict()
            t_emb["word_embeddings.weight"] = t_emb["word_embeddings.weight"][self.kept_ids]
            self.model.base_model.embeddings.load_state_dict(t_emb, strict=False)
            for i, layer in enumerate(s_layers):
                layer.load_state_dict(t_layers[i * k].state_dict())
        self.config["embedding_init"] = f"teacher (embeddings and layers {', '.join(str(i * k) for i in range(len(s_layers)))})"

    # -- running ----------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings of teacher ids through the vocabulary map: ``(...)`` -> ``(..., H)``."""
        return self.model.get_input_embeddings()(self.vocab_map[input_ids])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: Sequence[Feature] = (), inputs_embeds: torch.Tensor | None = None) -> StudentOutput:
        want_att = any(f.name == "attentions" for f in features)
        n = self.model.config.num_hidden_layers
        wanted = {f.key: (f.name, f.layer if f.layer > 0 else n) for f in features if f.name in PROJECTIONS}
        inputs = {"input_ids": self.vocab_map[input_ids]} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
        with capture_projections(self.model, wanted) as captured:
            out = self.model(**inputs, attention_mask=attention_mask, output_hidden_states=True,
                             output_attentions=want_att)
        hidden = tuple(self.level.reduce(h) for h in out.hidden_states)
        return StudentOutput(logits=out.logits, hidden_states=hidden, attentions=out.attentions if want_att else None,
                             projections=dict(captured))

    def inference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=self.vocab_map[input_ids], attention_mask=attention_mask).logits

    def export_module(self) -> nn.Module:
        return ExportableTransformer(self)

    # -- groups -----------------------------------------------------------------------------------
    def _groups(self) -> dict[str, list[nn.Parameter]]:
        layers = encoder_layers(self.model)
        groups = {f"layer.{i}": list(layer.parameters()) for i, layer in enumerate(layers)}
        groups["embeddings"] = list(self.model.base_model.embeddings.parameters())
        body = {id(p) for ps in groups.values() for p in ps}
        groups["classifier"] = [p for p in self.model.parameters() if id(p) not in body]
        return groups

    def body_groups(self) -> list[str]:
        return [f"layer.{i}" for i in reversed(range(self.model.config.num_hidden_layers))] + ["embeddings"]

    def head_groups(self, feature: str) -> list[str]:
        """``logits``: the classifier (and a pooler); other outputs come from the body."""
        return ["classifier"] if feature == "logits" else []

    def group_parameters(self, group: str) -> list[nn.Parameter]:
        groups = self._groups()
        if group not in groups:
            raise KeyError(f"unknown layer group {group!r}")
        return groups[group]

    def output_size(self, feature: Feature) -> int:
        return self.config["num_labels"] if feature.name == "logits" else int(self.model.config.hidden_size)

    def known_input_ids(self) -> np.ndarray:
        """Ids (of the vocabulary it reads) that map to a token of its own other than padding and unknown."""
        ids = self.vocab_map.cpu().numpy()
        known = ids > UNK if self.config["vocabulary"] == "pruned" else np.ones(len(ids), dtype=bool)
        known[[self.model.config.pad_token_id]] = False
        return np.flatnonzero(known).astype(np.int64)

    def describe(self) -> dict:
        c, m = self.config, self.model.config
        vocab = {"pruned": "the teacher's, pruned to the run's tokens", "own": "its own tokenizer's",
                 "whole": "the teacher's, whole (a sentencepiece vocabulary is not pruned)"}[c["vocabulary"]]
        init = {"svd": "SVD of the teacher's input embeddings", "random": "random"}.get(c["embedding_init"],
                                                                                        c["embedding_init"])
        shape = f"L{m.num_hidden_layers}-H{m.hidden_size}-A{m.num_attention_heads}"
        return {"name": "Transformer", "architecture": f"{type(self.model).__name__} (XtremeDistilTransformers)",
                "kind": self.kind, "summary": f"{shape} I={m.intermediate_size}", "layers": m.num_hidden_layers,
                "hidden_size": m.hidden_size, "heads": m.num_attention_heads, "intermediate_size": m.intermediate_size,
                "vocabulary": c["student_vocab_size"], "vocabulary_source": vocab, "embedding_init": init}

    # -- saving and loading -------------------------------------------------------------------------
    def save(self, directory: str | Path, tokenizer=None, extra: dict | None = None) -> None:
        """Save as a ``transformers`` folder: ``config.json`` (the model's, with the task's labels as
        ``id2label``, the xdistill marker and ``xdistill`` settings), ``model.safetensors`` and a
        tokenizer over the student's vocabulary (the teacher's ``tokenizer`` pruned, or whole). Files
        are written to a temporary folder first and moved into place, ``config.json`` last."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        extra = dict(extra or {})
        labels = extra.get("labels") or [f"LABEL_{i}" for i in range(self.config["num_labels"])]
        own = {**self.config, "teacher_vocab_size": self.config["student_vocab_size"],
               "vocabulary": "own" if self.config["vocabulary"] == "pruned" else self.config["vocabulary"]}
        cfg = self.model.config
        cfg.id2label = dict(enumerate(labels))
        cfg.label2id = {v: k for k, v in cfg.id2label.items()}
        setattr(cfg, STUDENT_MARKER, True)
        cfg.kind = self.kind
        setattr(cfg, SETTINGS_KEY, {**own, **extra, "xdistill_version": VERSION})
        tmp = d / ".saving"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp)
        if tokenizer is not None:
            tok = pruned_tokenizer(tokenizer, self.kept_ids.tolist()) if self.config["vocabulary"] == "pruned" else tokenizer
            tok.save_pretrained(tmp)
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == STUDENT_CONFIG):
            os.replace(f, d / f.name)
        tmp.rmdir()

    @classmethod
    def load(cls, directory: Path, config: dict) -> tuple["TransformerStudent", dict]:
        """A saved student through ``transformers``' own ``from_pretrained``; it reads the ids of the
        folder's tokenizer. Returns the student and its xdistill settings merged over ``config``.

        Raises:
            ConfigError: ``config.json`` without the ``xdistill`` settings, or weights that
                ``transformers`` cannot load.
        """
        own = config.get(SETTINGS_KEY)
        if not isinstance(own, dict) or "level" not in own:
            raise ConfigError(f"{directory / STUDENT_CONFIG}: a transformer student needs its \"{SETTINGS_KEY}\" "
                              "settings (level, labels); save it with xdistill")
        level = LEVELS[own["level"]]
        try:
            model = level.auto_model_class.from_pretrained(directory, attn_implementation="eager")
        except (OSError, ValueError, RuntimeError) as e:
            raise ConfigError(f"--model {directory}: transformers cannot load this student: {e}") from e
        student = cls(own, model=model)
        student.eval()
        return student, {**config, **own}

    def inference_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


class ExportableTransformer(nn.Module):
    """Inference forward of a :class:`TransformerStudent` for ONNX export: ``(input_ids,
    attention_mask)`` ``(B, T)`` int64 -> logits ``(B, T, C)`` or ``(B, C)``; shares its weights."""

    def __init__(self, student: TransformerStudent):
        super().__init__()
        self.student = student

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.student.inference_logits(input_ids, attention_mask)
