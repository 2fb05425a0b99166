"""What ``transformers`` models compute but do not return: the query, key and value projections
of a self-attention layer, read with forward hooks.

MiniLM's self-attention relation distillation (Wang et al. 2020, arXiv 2002.10957; multi-head
form in MiniLMv2, arXiv 2012.15828, sec. 3.1) matches relations between the queries, keys and
values of a teacher layer and a student layer. ``output_attentions`` gives the attention
probabilities only; :func:`capture_projections` records the outputs of the ``query``/``key``/
``value`` linear layers, ``(B, T, D)`` each (heads concatenated), during one forward pass.

Layers are numbered as ``attentions`` are: ``1..L`` (layer 0 of ``hidden_states`` is the
embedding output, which has no attention).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch import nn

from .errors import ConfigError

#: feature name -> the attribute of a BERT-family self-attention module (BERT, RoBERTa, XLM-R, ELECTRA)
#: and of a DistilBERT one
PROJECTIONS = {"queries": ("query", "q_lin"), "keys": ("key", "k_lin"), "values": ("value", "v_lin")}


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a ``transformers`` model (``encoder.layer`` of BERT-family models,
    ``transformer.layer`` of DistilBERT).

    Raises:
        ConfigError: a model of another layout.
    """
    base = getattr(model, "base_model", model)
    for path in (("encoder", "layer"), ("transformer", "layer")):
        m = base
        for name in path:
            m = getattr(m, name, None)
        if isinstance(m, nn.ModuleList):
            return m
    raise ConfigError(f"{type(model).__name__}: no encoder.layer or transformer.layer list of transformer layers; "
                      "queries, keys and values cannot be read from this architecture")


def projection_module(model: nn.Module, name: str, layer: int) -> nn.Module:
    """The linear layer whose output is ``name`` (``queries``, ``keys``, ``values``) in attention layer
    ``layer`` (1..L).

    Raises:
        ConfigError: an unknown name, a layer outside 1..L, or an attention module without such a layer.
    """
    if name not in PROJECTIONS:
        raise ConfigError(f"feature {name}: expected one of {', '.join(PROJECTIONS)}")
    layers = encoder_layers(model)
    if not 1 <= layer <= len(layers):
        raise ConfigError(f"feature {name}.{layer}: attention layers are 1..{len(layers)}")
    attention = layers[layer - 1].attention
    attention = getattr(attention, "self", attention)  # BERT-family: attention.self.query
    for attr in PROJECTIONS[name]:
        if isinstance(getattr(attention, attr, None), nn.Module):
            return getattr(attention, attr)
    raise ConfigError(f"{type(model).__name__}: attention layer {layer} has no {' or '.join(PROJECTIONS[name])} "
                      f"projection for {name}")


@contextmanager
def capture_projections(model: nn.Module, wanted: Mapping[str, tuple[str, int]]) -> Iterator[dict[str, torch.Tensor]]:
    """Record projection outputs during the forward passes inside the block.

    Args:
        model: a ``transformers`` model.
        wanted: ``{key: (name, layer)}``, e.g. ``{"values.4": ("values", 4)}``.

    Yields:
        A dict that holds ``{key: (B, T, D)}`` after a forward pass (the last pass's outputs).

    Raises:
        ConfigError: see :func:`projection_module`.
    """
    captured: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for key, (name, layer) in wanted.items():
            def hook(_module, _inputs, output, key=key):
                captured[key] = output
            handles.append(projection_module(model, name, layer).register_forward_hook(hook))
        yield captured
    finally:
        for h in handles:
            h.remove()
