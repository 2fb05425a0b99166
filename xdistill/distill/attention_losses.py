"""Attention and self-attention relation losses (pure functions, registered by name).

Shapes: ``B`` batch, ``A`` attention heads, ``T`` positions, ``D`` width. Attention maps are
``(B, A, T, T)`` probabilities (softmax over the last axis, the keys), as ``transformers`` returns
them with ``output_attentions=True``; relation inputs are the queries, keys or values of one layer,
``(B, T, D)`` with the heads concatenated. ``mask`` is ``(B, T)``, true for a real token: padding
query rows and key columns have no effect on the value and get zero gradient, and an all-masked
batch gives ``0.0`` attached to the graph, as in :mod:`xdistill.distill.losses` (whose conventions
on dtypes and detached teachers hold here too).

=================  ======================  ======================  ==============
name               student                 target                  mask
=================  ======================  ======================  ==============
``attention_mse``  ``(B, A, T, T)``        same shape              ``(B, T)``
``attention_kl``   ``(B, A, T, T)``        same shape              ``(B, T)``
``relation_kl``    ``(B, T, Ds)``          ``(B, T, Dt)``          ``(B, T)``
=================  ======================  ======================  ==============

Sources: TinyBERT (Jiao et al. 2020, arXiv 1909.10351, eq. 7), MiniLM (Wang et al. 2020, arXiv
2002.10957, eqs. 7-9) and MiniLMv2's multi-head relations (Wang et al. 2021, arXiv 2012.15828,
sec. 3.1).
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from .losses import _check_mask, _compute_dtype, _zero_masked, masked_mean, register_loss

__all__ = ["attention_kl_loss", "attention_mse_loss", "relation_kl_loss"]


def _check_attention_pair(student: Tensor, teacher: Tensor, mask: Tensor | None, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{what}: student shape {tuple(student.shape)} does not match "
            f"teacher shape {tuple(teacher.shape)}"
        )
    if student.dim() != 4 or student.shape[-1] != student.shape[-2]:
        raise ValueError(
            f"{what}: expected attention maps (B, A, T, T), got shape {tuple(student.shape)}"
        )
    positions = torch.Size((student.shape[0], student.shape[-1]))
    if mask is not None and mask.shape != positions:
        raise ValueError(
            f"{what}: mask shape {tuple(mask.shape)} does not match (B, T) = {tuple(positions)} "
            f"of the attention maps of shape {tuple(student.shape)}"
        )


def _attention_inputs(
    student: Tensor, teacher: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Cast ``(B, A, T, T)`` maps to the computation dtype (teacher detached) and zero every entry
    whose query row or key column is padding, so that ``inf``/``nan`` there can poison neither the
    value nor the gradient. Returns ``(s, t, keep)`` with ``keep`` the ``(B, T)`` bool mask, or
    ``None``."""
    dtype = _compute_dtype(student)
    s = student.to(dtype)
    t = teacher.detach().to(device=student.device, dtype=dtype)
    if mask is None:
        return s, t, None
    keep = mask.to(device=student.device) != 0
    pair = keep[:, None, :, None] & keep[:, None, None, :]  # (B, 1, T, T): query and key both real
    zero = torch.zeros((), dtype=dtype, device=s.device)
    return torch.where(pair, s, zero), torch.where(pair, t, zero), keep


def _per_row_kl(log_p_s: Tensor, p_t: Tensor, log_p_t: Tensor, keys: Tensor | None) -> Tensor:
    """``sum_j p_t[j] (log p_t[j] - log p_s[j])`` over the last axis, counting only the keys
    ``keys`` (broadcastable bool, ``None``: all) and only where ``p_t > 0`` (``0 log 0 = 0``)."""
    use = p_t > 0
    if keys is not None:
        use = use & keys
    zero = torch.zeros((), dtype=log_p_s.dtype, device=log_p_s.device)
    return torch.where(use, p_t * (log_p_t - log_p_s), zero).sum(dim=-1)


def _rows_mean(per_row: Tensor, keep: Tensor | None) -> Tensor:
    """:func:`masked_mean` of ``(B, H, T)`` per-query-row losses over the real query rows of every
    head (``keep``: ``(B, T)`` bool or ``None``)."""
    if keep is None:
        return masked_mean(per_row, None)
    return masked_mean(per_row, keep[:, None, :].expand(per_row.shape))


def attention_mse_loss(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error between attention probability maps, averaged over the real keys, then
    over the real query rows of every head.

    For batch ``b``, head ``a`` and real query position ``i``::

        row[b, a, i] = mean over real keys j of (student[b, a, i, j] - teacher[b, a, i, j])**2
        loss         = mean of row[b, a, i] over every (b, a) and real i (heads weigh equally)

    Padding query rows and padding key columns have no effect on the value (even if they hold
    ``inf``/``nan``) and receive zero gradient.

    Args:
        student: ``(B, A, T, T)`` attention probabilities (softmax over the last axis = keys), as
            ``transformers`` returns them with ``output_attentions=True``; receives gradient.
        teacher: same shape; detached; any float dtype (e.g. float16), cast to the computation
            dtype.
        mask: ``(B, T)`` or ``None``; bool or 0/1, true = real token (used for both the query and
            the key axis). ``None`` counts every position.

    Returns:
        0-dim tensor (computation dtype, see module docstring). ``0.0`` with a ``grad_fn`` if the
        mask selects nothing.

    Raises:
        ValueError: if the shapes differ (the message names both), if the maps are not
            ``(B, A, T, T)``, or if ``mask`` is not ``(B, T)``.

    Source: TinyBERT (Jiao et al. 2020, arXiv 1909.10351), sec. 3.1, eq. 7 (attention-based
    distillation: MSE between the student's and the teacher's attention matrices, averaged over
    heads; TinyBERT fits the unnormalised scores, here the probabilities ``transformers`` returns
    are compared); XtremeDistilTransformers (Mukherjee, Hassan Awadallah & Gao 2021,
    arXiv 2106.04563), for its intermediate-layer attention matches.
    """
    _check_attention_pair(student, teacher, mask, "attention_mse_loss")
    s, t, keep = _attention_inputs(student, teacher, mask)
    sq = (s - t).pow(2)
    if keep is None:
        per_row = sq.mean(dim=-1)
    else:
        n_keys = keep.sum(dim=-1).clamp(min=1).to(s.dtype)[:, None, None]  # (B, 1, 1)
        per_row = sq.sum(dim=-1) / n_keys  # padding key columns were zeroed
    return _rows_mean(per_row, keep)


def attention_kl_loss(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(teacher || student) between attention probability maps, summed over the real keys,
    averaged over the real query rows of every head.

    For batch ``b``, head ``a`` and real query position ``i`` (``s``, ``t``: the maps)::

        row[b, a, i] = sum over real keys j of t[b,a,i,j] * (log t[b,a,i,j] - log s[b,a,i,j])
        loss         = mean of row[b, a, i] over every (b, a) and real i (heads weigh equally)

    The inputs are probabilities, not logits: no softmax is applied. Keys with ``t == 0``
    contribute exactly 0 (``0 log 0 = 0``); ``log s`` is taken of ``max(s, tiny)``
    (``torch.finfo(dtype).tiny``), so a zero student probability gives a large finite value
    (about ``t * 87`` in float32, ``t * 708`` in float64), not ``inf``. Padding query rows and
    padding key columns have no effect on the value (even ``inf``/``nan``) and receive zero
    gradient.

    Args:
        student: ``(B, A, T, T)`` attention probabilities (softmax over the last axis = keys);
            receives gradient.
        teacher: same shape; detached; any float dtype (e.g. float16).
        mask: ``(B, T)`` or ``None``; bool or 0/1, true = real token (query and key axis).

    Returns:
        0-dim tensor; ``0.0`` with a ``grad_fn`` if the mask selects nothing.

    Raises:
        ValueError: on a shape mismatch (the message names both shapes), maps that are not
            ``(B, A, T, T)``, or a mask that is not ``(B, T)``.

    Source: MiniLM (Wang et al. 2020, arXiv 2002.10957), sec. 3.1, eq. 7: self-attention
    distribution transfer, KL between the teacher's and the student's attention distributions,
    averaged over heads and query positions.
    """
    _check_attention_pair(student, teacher, mask, "attention_kl_loss")
    s, t, keep = _attention_inputs(student, teacher, mask)
    tiny = torch.finfo(s.dtype).tiny
    log_s = s.clamp(min=tiny).log()
    log_t = torch.where(t > 0, t, torch.ones((), dtype=t.dtype, device=t.device)).log()
    keys = None if keep is None else keep[:, None, None, :]
    per_row = _per_row_kl(log_s, t, log_t, keys)
    return _rows_mean(per_row, keep)


def _check_relation_heads(relation_heads, d_student: int, d_teacher: int, what: str) -> int:
    if relation_heads is None:
        raise ConfigError(
            f"{what}: needs relation_heads (the MiniLMv2 relation heads, dividing both the student's "
            f"width {d_student} and the teacher's width {d_teacher})"
        )
    try:
        heads = operator.index(relation_heads)  # ints, numpy ints; not floats or strings
    except TypeError:
        heads = None
    if heads is None or isinstance(relation_heads, bool) or heads < 1:
        raise ConfigError(f"{what}: relation_heads must be an integer >= 1, got {relation_heads!r}")
    relation_heads = heads
    if d_student % relation_heads or d_teacher % relation_heads:
        raise ConfigError(
            f"{what}: relation_heads={relation_heads} must divide both the student's width "
            f"{d_student} and the teacher's width {d_teacher}"
        )
    return relation_heads


def _log_relations(x: Tensor, heads: int, keys: Tensor | None) -> Tensor:
    """``log softmax(x_r x_r^T / sqrt(d_r))`` per relation head: ``(B, T, D)`` -> ``(B, R, T, T)``.

    Padding key columns (``keys``: ``(B, T)`` bool, ``None``: none) are set to ``-inf`` before the
    softmax. A sequence with no real token keeps every key (its rows are all padding queries,
    never counted), so no row is all ``-inf`` and no ``nan`` appears.
    """
    b, n, width = x.shape
    d = width // heads
    xr = x.reshape(b, n, heads, d).transpose(1, 2)  # (B, R, T, d)
    scores = xr @ xr.transpose(-1, -2) / math.sqrt(d)
    if keys is not None:
        usable = keys | ~keys.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~usable[:, None, None, :], float("-inf"))
    return F.log_softmax(scores, dim=-1)


def relation_kl_loss(
    student: Tensor,
    teacher: Tensor,
    mask: Tensor | None = None,
    relation_heads: int | None = None,
) -> Tensor:
    """MiniLM(v2) self-attention relation distillation: KL between the teacher's and the
    student's scaled dot-product relations of one kind of vector (queries, keys or values),
    computed in ``relation_heads`` heads, so the widths (and head counts) may differ.

    Both inputs are split along the last axis into ``R = relation_heads`` heads of width
    ``d = D / R`` (``(B, T, D)`` -> ``(B, R, T, d)``); per head::

        rel[b, r] = softmax(x[b, r] x[b, r]^T / sqrt(d), over the keys)   # (T, T)
        row[b, r, i] = sum over real keys j of rel_t[b,r,i,j] (log rel_t[b,r,i,j] - log rel_s[b,r,i,j])
        loss = mean of row[b, r, i] over every (b, r) and real query i

    (``d`` is the student's or the teacher's own head width.) Padding key columns are excluded
    from the softmax (``-inf`` logits); padding query rows are not counted. Padding positions
    have no effect on the value (even ``inf``/``nan``) and receive zero gradient. Same reduction
    as :func:`attention_kl_loss`.

    Args:
        student: ``(B, T, Ds)`` -- the queries, keys or values of one student layer,
            concatenated over its attention heads; receives gradient.
        teacher: ``(B, T, Dt)`` -- the same kind of vector from the matched teacher layer;
            ``Dt`` may differ from ``Ds``; detached; any float dtype.
        mask: ``(B, T)`` or ``None``; bool or 0/1, true = real token.
        relation_heads: ``R >= 1``, dividing both ``Ds`` and ``Dt``.

    Returns:
        0-dim tensor, ``>= 0``; ``0.0`` with a ``grad_fn`` if the mask selects nothing.

    Raises:
        ValueError: if the inputs are not 3-D, if their ``(B, T)`` differ (the message names both
            shapes), or if ``mask`` is not ``(B, T)``.
        ConfigError (a ValueError): ``relation_heads`` missing (``None``), not an integer >= 1,
            or not dividing both widths (the message names ``relation_heads`` and both widths).

    Source: MiniLMv2 (Wang et al. 2021, arXiv 2012.15828), sec. 3.1, eqs. 1-3: multi-head
    self-attention relation distillation (relations of queries, keys and values, KL, averaged
    over relation heads and positions), generalising MiniLM's single-head value relation
    (Wang et al. 2020, arXiv 2002.10957, sec. 3.1).
    """
    what = "relation_kl_loss"
    if student.dim() != 3 or teacher.dim() != 3 or student.shape[:2] != teacher.shape[:2]:
        raise ValueError(
            f"{what}: expected student (B, T, Ds) and teacher (B, T, Dt) with the same B and T, got "
            f"student shape {tuple(student.shape)} and teacher shape {tuple(teacher.shape)}"
        )
    _check_mask(mask, student.shape[:-1], what)
    heads = _check_relation_heads(relation_heads, student.shape[-1], teacher.shape[-1], what)
    dtype = _compute_dtype(student)
    s = _zero_masked(student.to(dtype), mask)
    t = _zero_masked(teacher.detach().to(device=student.device, dtype=dtype), mask)
    keep = None if mask is None else mask.to(device=student.device) != 0
    log_rel_s = _log_relations(s, heads, keep)
    log_rel_t = _log_relations(t, heads, keep)
    keys = None if keep is None else keep[:, None, None, :]
    per_row = _per_row_kl(log_rel_s, log_rel_t.exp(), log_rel_t, keys)
    return _rows_mean(per_row, keep)


@register_loss("attention_mse")
def _attention_mse(student: Tensor, target: Tensor, mask: Tensor | None, temperature: float = 1.0) -> Tensor:
    """:func:`attention_mse_loss` between attention maps ``(B, A, T, T)`` (``temperature`` unused).
    TinyBERT eq. 7; XtremeDistilTransformers' attention matches."""
    return attention_mse_loss(student, target, mask)


@register_loss("attention_kl")
def _attention_kl(student: Tensor, target: Tensor, mask: Tensor | None, temperature: float = 1.0) -> Tensor:
    """:func:`attention_kl_loss` between attention maps ``(B, A, T, T)`` (``temperature`` unused).
    MiniLM eq. 7 (self-attention distribution transfer)."""
    return attention_kl_loss(student, target, mask)


@register_loss("relation_kl")
def _relation_kl(
    student: Tensor,
    target: Tensor,
    mask: Tensor | None,
    temperature: float = 1.0,
    *,
    relation_heads: int | None = None,
) -> Tensor:
    """:func:`relation_kl_loss` of queries, keys or values ``(B, T, Ds)`` against ``(B, T, Dt)`` in
    ``relation_heads`` heads (``temperature`` unused). MiniLMv2 sec. 3.1, eqs. 1-3.

    Raises:
        ConfigError: ``relation_heads`` not given ("relation_kl: needs relation_heads ...") or not
            dividing both widths.
    """
    if relation_heads is None:
        raise ConfigError(
            f"relation_kl: needs relation_heads (the MiniLMv2 relation heads, dividing both the student's "
            f"width {student.shape[-1]} and the teacher's width {target.shape[-1]})"
        )
    return relation_kl_loss(student, target, mask, relation_heads=relation_heads)
