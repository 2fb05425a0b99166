"""Reference models: the pretrained model a student is compared against (compression, speedup).

A teacher is compared with the pretrained base model of its family and vocabulary: an mBERT
(WordPiece) teacher with mBERT-base, an XLM-R (sentencepiece) teacher with XLM-R-base. Each
entry carries the checkpoint's configuration (its ``config.json`` on the hub), so that the
latency benchmark can build the model offline with random weights, and its parameter count
with a token-classification head of 7 labels, rounded to 0.1M (checked against the
configuration in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError


@dataclass(frozen=True)
class ReferenceModel:
    """A pretrained model to compare students with.

    Attributes:
        key: registry key (``mbert-base``).
        name: display name (``mBERT-base``).
        short: the family's short name (``mBERT``), as in "not mBERT".
        hub_id: the checkpoint's hub id.
        model_type: ``transformers`` model type of the checkpoint (``bert``).
        config: the checkpoint's configuration (keyword arguments of its ``transformers`` config class).
        parameters: parameters with a token-classification head, rounded to 0.1M.
        vocabulary: how reports name its vocabulary (``the mBERT vocabulary``).
    """

    key: str
    name: str
    short: str
    hub_id: str
    model_type: str
    config: dict = field(repr=False)
    parameters: int
    vocabulary: str

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])


MBERT_BASE = ReferenceModel(
    key="mbert-base", name="mBERT-base", short="mBERT", hub_id="bert-base-multilingual-cased", model_type="bert",
    config={"vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "pad_token_id": 0},
    parameters=177_300_000, vocabulary="the mBERT vocabulary")

XLMR_BASE = ReferenceModel(
    key="xlmr-base", name="XLM-R-base", short="XLM-R", hub_id="xlm-roberta-base", model_type="xlm-roberta",
    config={"vocab_size": 250002, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "max_position_embeddings": 514, "type_vocab_size": 1, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    parameters=277_500_000, vocabulary="the XLM-R vocabulary")

#: key -> reference model
REFERENCE_MODELS: dict[str, ReferenceModel] = {m.key: m for m in (MBERT_BASE, XLMR_BASE)}
#: ``transformers`` model type of a teacher -> the key of its reference (others: mBERT-base)
FAMILY_REFERENCE = {"bert": "mbert-base", "distilbert": "mbert-base", "xlm-roberta": "xlmr-base"}
DEFAULT_REFERENCE = "mbert-base"


def reference_for(model_type: str | None) -> ReferenceModel:
    """The reference model of a teacher of this ``transformers`` model type."""
    return REFERENCE_MODELS[FAMILY_REFERENCE.get(model_type or "", DEFAULT_REFERENCE)]


def get_reference(key: str, where: str = "reference") -> ReferenceModel:
    """The reference model registered under ``key`` (or whose hub id is ``key``).

    Raises:
        ConfigError: neither (``where`` names the option or file).
    """
    if key in REFERENCE_MODELS:
        return REFERENCE_MODELS[key]
    for m in REFERENCE_MODELS.values():
        if m.hub_id == key:
            return m
    raise ConfigError(f"{where}: unknown reference model {key!r}; expected one of "
                      f"{', '.join(REFERENCE_MODELS)} (or their hub ids)")
