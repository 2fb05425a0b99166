"""The teacher: a ``transformers`` task model and its tokenizer, returning named features.

:class:`Teacher` wraps any ``...ForTokenClassification`` or ``...ForSequenceClassification``
checkpoint (BERT, XLM-R, DistilBERT, ...). :meth:`Teacher.features` runs a batch and returns
the requested :class:`~xdistill.data.types.Feature` s by key: ``logits`` ``(B, T, C)`` or
``(B, C)``, ``hidden_states.L`` ``(B, T, D)`` for any layer ``L`` (0 = embedding output),
``attentions.L`` ``(B, A, T, T)`` for a layer ``L >= 1`` (which needs the eager attention
implementation; it is switched on when attentions are asked for), and ``queries.L``/``keys.L``/
``values.L`` ``(B, T, D)`` of an attention layer (:mod:`xdistill.modeling`). Training it lives in
:mod:`xdistill.teachers.finetune`; this module is all that inference needs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer

from ..adapters import OutputLevel, batched_logits, level_of_architectures
from ..data.types import Encoded, Feature
from ..errors import ConfigError
from ..modeling import PROJECTIONS, capture_projections
from .references import ReferenceModel, get_reference, reference_for

TEACHER_META = "xdistill_teacher.json"
#: display names of ``transformers`` model types in reports
FAMILY_NAMES = {"bert": "BERT", "xlm-roberta": "XLM-R", "distilbert": "DistilBERT", "roberta": "RoBERTa"}


@dataclass
class TeacherInfo:
    """What the report says about the teacher."""

    source: str                 # hub id, local path, or "scratch"
    trained_from_scratch: bool
    fine_tuned_here: bool
    architecture: str
    parameters: int
    hidden_size: int
    num_layers: int
    path: str                   # where the fine-tuned teacher is saved
    fingerprint: str            # hash of the weights: keys the teacher-output cache
    labeled_data: str = ""
    best_validation_score: float | None = None
    family: str = "bert"        # transformers model type
    reference: str = "mbert-base"   # key of its reference model (xdistill.teachers.references)
    vocabulary: str = "WordPiece"   # the tokenizer's model: WordPiece, Unigram (sentencepiece), BPE
    vocab_size: int = 0
    description: str = ""
    mlm: dict | None = None     # what masked-language-model pretraining here saw and gave (MLMReport), if any
    embeddings: dict | None = None  # the PPMI-SVD word embeddings it started from (CooccurrenceReport), if any
    self_training: list | None = None  # per --teacher-self-training round: pseudo-labeled rows, label shares, validation
    minutes: float | None = None  # building, pretraining, fine-tuning it in the run that trained it (resumed: that part)
    reused: bool = False        # loaded from OUTPUT/teacher, saved by an earlier run with the same settings

    @classmethod
    def from_dict(cls, d: dict) -> "TeacherInfo":
        """From a saved ``xdistill_teacher.json`` (unknown keys of other versions are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


#: model types whose position ids start after the padding index (RoBERTa's ``create_position_ids_from_input_ids``)
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl")


def usable_positions(config) -> int | None:
    """How many tokens a checkpoint of this configuration can read: ``max_position_embeddings``,
    less ``pad_token_id + 1`` for RoBERTa-style models (XLM-R-base: 514 - 2 = 512); ``None`` when
    the configuration has no position embeddings."""
    n = getattr(config, "max_position_embeddings", None)
    if n is None:
        return None
    if getattr(config, "model_type", "") in OFFSET_POSITIONS:
        n -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return int(n)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (16 hex digits) over the model's parameter names, shapes and values."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def vocabulary_kind(tokenizer) -> str:
    """The tokenizer's subword model: ``WordPiece``, ``Unigram`` (sentencepiece) or ``BPE``."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return type(backend.model).__name__ if backend is not None else type(tokenizer).__name__


def describe_teacher(family: str, scratch: bool, source: str, vocab_size: int, reference: ReferenceModel,
                     mlm: bool = False, pruned_from: int = 0, ppmi: bool = False) -> str:
    """How reports name the teacher: ``BERT trained from scratch with the mBERT vocabulary (not
    mBERT)`` for a scratch teacher (``BERT pretrained (MLM) and fine-tuned from scratch ...`` with
    ``mlm``; ``... with the mBERT vocabulary pruned to 41,023 pieces of the run's text ...`` when
    ``pruned_from`` gives the size of the vocabulary it was pruned from), the checkpoint's source
    otherwise (``..., MLM-pretrained further here``); ``ppmi``: its word embeddings started from PPMI-SVD
    vectors of the task text (``BERT trained from scratch (word embeddings from PPMI-SVD of the task
    text) with ...``)."""
    if not scratch:
        return f"{source}, MLM-pretrained further here on the task text" if mlm else source
    full = pruned_from or vocab_size
    vocab = reference.vocabulary if full == reference.vocab_size else f"a {full:,}-token vocabulary"
    if pruned_from:
        vocab += f" pruned to {vocab_size:,} pieces of the run's text"
    how = "pretrained (MLM on the task text) and fine-tuned from scratch" if mlm else "trained from scratch"
    if ppmi:
        how += " (word embeddings from PPMI-SVD of the task text)"
    return f"{FAMILY_NAMES.get(family, family)} {how} with {vocab} (not {reference.short})"


def check_vocabulary(model, tokenizer, name: str, option: str = "--teacher") -> None:
    """The tokenizer's ids must all have a row in the model's input embeddings.

    Raises:
        ConfigError: the tokenizer is larger than the embedding matrix (names ``option`` and the teacher).
    """
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ConfigError(f"{option} {name}: its tokenizer has {len(tokenizer):,} tokens but the model's input "
                          f"embeddings have {rows:,} rows; expected the tokenizer saved with this checkpoint "
                          "(or --tokenizer pointing at it)")



def _check_checkpoint_config(path: Path) -> None:
    """Refuse a ``config.json`` that transformers cannot read as a checkpoint's configuration.

    Raises:
        ConfigError: not UTF-8 JSON, not an object, or no ``"model_type"``; names the file and
            says that it is no xdistill student either (the caller tried that first).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--model {path.parent}: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise ConfigError(f"--model {path.parent}: no student or transformers checkpoint here ({path} has neither "
                          "\"xdistill_student\": true nor a \"model_type\")")


class Teacher:
    """A task model and its tokenizer (see the module docstring).

    Args:
        model: a ``transformers`` token- or sequence-classification model.
        tokenizer: its tokenizer.
        info: what reports say about it (:class:`TeacherInfo`).
        task: the task it was fine-tuned on, as recorded (``task``, ``task_file``), if known.
    """

    def __init__(self, model, tokenizer, info: TeacherInfo, task: dict | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.task = dict(task or {})

    @property
    def num_layers(self) -> int:
        """Transformer layers ``L`` (``hidden_states`` has ``L + 1`` entries)."""
        return int(getattr(self.model.config, "num_hidden_layers", 0) or 0)

    @property
    def hidden_size(self) -> int:
        """Width ``D`` of its hidden states."""
        return int(self.model.config.hidden_size)

    @property
    def level(self) -> OutputLevel | None:
        """The output level of its head (from the model class: ``...ForTokenClassification`` -> token)."""
        return level_of_architectures([type(self.model).__name__])

    @property
    def reference(self) -> ReferenceModel:
        """The pretrained model students of this teacher are compared with (mBERT-base, XLM-R-base)."""
        return get_reference(self.info.reference, "teacher")

    @property
    def device(self) -> torch.device:
        """Where its weights are."""
        return next(self.model.parameters()).device

    def eval(self) -> "Teacher":
        """Inference mode (no dropout); returns itself."""
        self.model.eval()
        return self

    def layer(self, layer: int, option: str = "--teacher-layer") -> int:
        """``layer`` as a non-negative index into ``hidden_states`` (``-1`` is the last layer).

        Raises:
            ConfigError: outside ``-(L+1)..L`` for a teacher of ``L`` layers (names ``option``).
        """
        n = self.num_layers
        if not -(n + 1) <= layer <= n:
            raise ConfigError(f"{option} {layer}: the teacher has {n} layers; expected -{n + 1}..{n} "
                              "(0 is the embedding output, -1 the last layer)")
        return layer % (n + 1)

    def feature_width(self, feature: Feature) -> int:
        """The last axis of a per-position feature: classes for ``logits``, the hidden size for ``hidden_states``.

        Raises:
            ConfigError: attentions (which are ``(A, T, T)`` per row, not one vector per position).
        """
        if feature.name == "logits":
            return int(self.model.config.num_labels)
        if feature.name == "hidden_states" or feature.name in PROJECTIONS:
            return self.hidden_size
        raise ConfigError(f"teacher feature {feature.key}: not one vector per position")

    def input_embeddings(self) -> torch.Tensor:
        """The input (word) embedding matrix, ``(V, D)``."""
        return self.model.get_input_embeddings().weight

    def _use_eager_attention(self) -> None:
        impl = getattr(self.model.config, "_attn_implementation", "eager")
        if impl == "eager":
            return
        try:
            self.model.set_attn_implementation("eager")
        except (AttributeError, ValueError) as e:
            raise ConfigError(f"teacher {self.info.source}: attention weights need the eager attention implementation "
                              f"and it cannot be switched from {impl!r}: {e}") from e

    @property
    def num_heads(self) -> int:
        """Attention heads per layer ``A``."""
        c = self.model.config
        return int(getattr(c, "num_attention_heads", 0) or getattr(c, "n_heads", 0) or 0)

    def attention_layer(self, feature: Feature) -> int:
        """The attention layer (``1..L``) of an ``attentions``/``queries``/``keys``/``values`` feature
        (``-1`` is the last).

        Raises:
            ConfigError: layer 0 (the embedding output has no attention) or a layer the teacher lacks.
        """
        layer = self.layer(feature.layer, f"teacher feature {feature.key}")
        if layer == 0:
            raise ConfigError(f"teacher feature {feature.key}: attention layers are 1..{self.num_layers}")
        return layer

    @torch.no_grad()
    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 requested: Sequence[Feature]) -> dict[str, torch.Tensor]:
        """Named features of one batch: ``input_ids``/``attention_mask`` ``(B, T)`` -> ``{key: tensor}``
        (shapes in the module docstring; ``queries``/``keys``/``values`` ``(B, T, D)``), on the
        model's device, in its dtype.

        Raises:
            ConfigError: a layer the teacher does not have, or an attention feature of layer 0.
        """
        want_hidden = any(f.name == "hidden_states" for f in requested)
        want_att = any(f.name == "attentions" for f in requested)
        if want_att:
            self._use_eager_attention()
        projections = {f.key: (f.name, self.attention_layer(f)) for f in requested if f.name in PROJECTIONS}
        with capture_projections(self.model, projections) as captured:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=want_hidden,
                             output_attentions=want_att)
        result = {}
        for f in requested:
            if f.name == "logits":
                result[f.key] = out.logits
            elif f.name == "hidden_states":
                result[f.key] = out.hidden_states[self.layer(f.layer, f"teacher feature {f.key}")]
            elif f.name == "attentions":
                result[f.key] = out.attentions[self.attention_layer(f) - 1]
            elif f.name in PROJECTIONS:
                result[f.key] = captured[f.key]
            else:
                raise ConfigError(f"teacher feature {f.key}: a teacher returns logits, hidden_states, attentions, "
                                  "queries, keys or values")
        return result

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Its word embeddings of token ids, ``(...)`` -> ``(..., D)`` (position and segment embeddings
        are added inside the model)."""
        return self.model.get_input_embeddings()(input_ids)

    def logits_from_embeddings(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, C)`` or ``(B, C)`` of word embeddings ``(B, T, D)`` (e.g. one-hot tokens times
        :meth:`input_embeddings`), with autograd on: an adversarial generator ascends the teacher-student
        divergence through the teacher (MATE-KD). The teacher's weights are not updated."""
        return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).logits

    @torch.no_grad()
    def logits(self, level: OutputLevel, encoded: Encoded, pad_id: int | None = None,
               max_tokens: int = 8192, batch_size: int = 256) -> list[np.ndarray]:
        """Per-row logits (``(T_i, C)`` or ``(C,)``, float32), in row order; length-bucketed
        batches of at most ``max_tokens`` padded tokens and ``batch_size`` rows."""
        self.model.eval()
        pad = self.tokenizer.pad_token_id if pad_id is None else pad_id

        def forward(ids, mask):
            return self.model(input_ids=ids, attention_mask=mask).logits

        return batched_logits(forward, level, encoded, pad, batch_size=batch_size, max_tokens=max_tokens,
                              device=self.device)

    @classmethod
    def load(cls, directory: str | Path) -> "Teacher":
        """A teacher folder (``save_pretrained``, as ``OUTPUT/teacher``) for inference.

        Raises:
            ConfigError: no ``config.json``, or a checkpoint without a token- or sequence-classification head.
        """
        d = Path(directory)
        if not (d / "config.json").is_file():
            raise ConfigError(f"--model {d}: no transformers checkpoint here (expected config.json)")
        _check_checkpoint_config(d / "config.json")
        config = AutoConfig.from_pretrained(d)
        level = level_of_architectures(config.architectures)
        if level is None:
            raise ConfigError(f"--model {d}: config.json names no ...ForTokenClassification or "
                              "...ForSequenceClassification architecture")
        model = level.auto_model_class.from_pretrained(d).eval()
        tokenizer = AutoTokenizer.from_pretrained(d)
        check_vocabulary(model, tokenizer, str(d), "--model")
        meta_path = d / TEACHER_META
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        info = TeacherInfo.from_dict(meta["info"]) if "info" in meta else None
        if info is None:
            ref = reference_for(config.model_type)
            info = TeacherInfo(source=str(d), trained_from_scratch=False, fine_tuned_here=False,
                               architecture=type(model).__name__, parameters=sum(p.numel() for p in model.parameters()),
                               hidden_size=int(config.hidden_size), num_layers=int(getattr(config, "num_hidden_layers", 0)),
                               path=str(d), fingerprint=weights_fingerprint(model), family=config.model_type,
                               reference=ref.key, vocabulary=vocabulary_kind(tokenizer), vocab_size=len(tokenizer),
                               description=str(d))
        return cls(model, tokenizer, info, task=meta.get("task"))
