"""Distillation losses (pure functions, no state).

Shapes used below: ``B`` batch, ``T`` sequence length (tokens), ``C`` classes,
``D`` hidden size, ``A`` attention heads, ``R`` relation heads. Token-level tensors
are ``(B, T, C)`` / ``(B, T, D)`` with a ``(B, T)`` mask; sequence-level tensors are
``(B, C)`` / ``(B, D)`` with a ``(B,)`` mask; attention maps are ``(B, A, T, T)``
(probabilities over the keys, the last axis) with a ``(B, T)`` mask that applies to
both the query and the key axis: padding query rows are not counted and padding
key columns are left out of the per-row sums.

Conventions shared by every function here:

* **The class / feature axis is always the last axis.** Softmax and the
  per-position reductions run over ``dim=-1`` (as in TextBrewer's
  ``losses.py``). torchdistill's ``KDLoss`` uses ``dim=1``, which for token
  logits ``(B, T, C)`` would normalise over the *sequence*; that is a bug we do
  not reproduce.
* **Mask semantics:** ``mask`` is bool or 0/1 (any dtype); ``True``/non-zero
  marks a position that *counts*. Masked-out positions have no effect on the
  value (even if they hold ``inf``/``nan``) and receive zero gradient. A loss is
  first computed per position, then averaged over the counted positions with
  :func:`masked_mean`. ``mask=None`` counts every position.
* **All-masked batches** give a loss of exactly ``0.0`` that is still attached to
  the graph (``loss.backward()`` works, all gradients are zero), so a training
  step on a batch made only of padding does not crash.
* **The teacher is never differentiated:** teacher tensors are ``detach()``-ed.
  They may come in a different floating dtype (e.g. a float16 teacher); they are
  cast to the computation dtype.
* **Computation dtype** is the student's dtype promoted to at least float32
  (``torch.promote_types(student.dtype, torch.float32)``): float32/float64
  students compute in their own dtype, float16/bfloat16 students compute (and
  return the loss) in float32 so softmax and squared sums do not overflow.
* Bad shapes raise :class:`ValueError` naming the shapes; a bad
  ``temperature`` or an unknown loss name raise :class:`xdistill.errors.ConfigError`
  (a ``ValueError`` subclass) naming the option.

Losses are registered by name in :data:`LOSSES` (the pattern of torchdistill's
``losses/registry.py``); a distillation match names its loss (``mse``, ``kl``,
``cross_entropy``; ``attention_mse``, ``attention_kl``, ``relation_kl`` are defined in
:mod:`xdistill.distill.attention_losses` and registered when the package loads). Every
registered loss has the signature ``loss(student, target, mask, temperature) -> 0-dim
tensor``; ``relation_kl`` also takes the keyword ``relation_heads`` (required: ``None``
raises :class:`~xdistill.errors.ConfigError`):

===============  ======================  ======================  ==============
name             student                 target                  mask
===============  ======================  ======================  ==============
``mse``          ``(B, T, F)``/``(B, F)``  same shape, any float  ``(B, T)``/``(B,)``
``kl``           logits or features      same shape (softmax     ``(B, T)``/``(B,)``
                                         over the last axis)
``cross_entropy`` logits ``(B, T, C)``/   gold ids ``(B, T)``/     unused (-100 in
                 ``(B, C)``               ``(B,)``                 the target)
``attention_mse`` attention probs         same shape, any float   ``(B, T)``
                 ``(B, A, T, T)``
``attention_kl`` attention probs         same shape (probs,      ``(B, T)``
                 ``(B, A, T, T)``         not logits)
``relation_kl``  queries/keys/values     ``(B, T, Dt)``, ``Dt``  ``(B, T)``
                 ``(B, T, Ds)``           may differ; R | Ds, Dt
===============  ======================  ======================  ==============
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "LOSSES",
    "LossFn",
    "cross_entropy_loss",
    "get_loss",
    "kl_div_loss",
    "masked_mean",
    "mse_loss",
    "register_loss",
]

#: ``loss(student, target, mask, temperature) -> 0-dim tensor``
LossFn = Callable[[Tensor, Tensor, "Tensor | None", float], Tensor]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _compute_dtype(t: Tensor) -> torch.dtype:
    if not t.is_floating_point():
        raise ValueError(f"expected a floating-point tensor, got dtype {t.dtype}")
    return torch.promote_types(t.dtype, torch.float32)


def _check_pair(student: Tensor, teacher: Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{what}: student shape {tuple(student.shape)} does not match "
            f"teacher shape {tuple(teacher.shape)}"
        )
    if student.dim() not in (2, 3):
        raise ValueError(
            f"{what}: expected (B, T, C) or (B, C) tensors, got shape {tuple(student.shape)}"
        )


def _check_mask(mask: Tensor | None, positions: torch.Size, what: str) -> None:
    if mask is not None and mask.shape != positions:
        raise ValueError(
            f"{what}: mask shape {tuple(mask.shape)} does not match the position "
            f"shape {tuple(positions)} (the input shape without its last axis)"
        )


def _zero_masked(x: Tensor, mask: Tensor | None) -> Tensor:
    """Replace the rows of ``x`` (``(..., F)``) at masked-out positions by 0.

    Done on the inputs, not only on the per-position losses, so that ``inf`` /
    ``nan`` in padding can poison neither the value nor the gradient
    (``0 * nan`` in a backward pass would otherwise give ``nan``).
    """
    if mask is None:
        return x
    keep = (mask.to(device=x.device) != 0).unsqueeze(-1)
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))


def _check_temperature(temperature: float) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise ConfigError(f"temperature must be a number > 0, got {temperature!r}") from None
    if not (t > 0.0) or not math.isfinite(t):
        raise ConfigError(f"temperature must be a finite number > 0, got {temperature!r}")
    return t


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values`` over the positions where ``mask`` is true.

    Args:
        values: per-position losses, ``(B, T)`` or ``(B,)`` (any shape works).
        mask: same shape as ``values``, bool or 0/1; true/non-zero = counted.
            ``None`` counts every position (plain ``values.mean()``).

    Returns:
        A 0-dim tensor. Masked-out entries are replaced by 0 before summing
        (``torch.where``), so they cannot affect the value even when they hold
        ``inf``/``nan``, and they receive zero gradient.

        If ``mask`` selects nothing, the result is ``0.0`` *with* a
        ``grad_fn`` (when ``values`` requires grad): the sum of zeros divided by
        ``max(count, 1)``. We deliberately do not raise, so that a training step
        on an all-padding batch is a no-op instead of a crash or a NaN.

    Raises:
        ValueError: if ``mask`` is given and its shape differs from ``values``.

    Source: standard padding-aware averaging (TextBrewer ``losses.py`` style).
    """
    if mask is None:
        if values.numel() == 0:
            return values.sum() * 0.0
        return values.mean()
    if mask.shape != values.shape:
        raise ValueError(
            f"masked_mean: mask shape {tuple(mask.shape)} does not match "
            f"values shape {tuple(values.shape)}"
        )
    keep = mask.to(device=values.device) != 0
    zeros = torch.zeros((), dtype=values.dtype, device=values.device)
    total = torch.where(keep, values, zeros).sum()
    count = keep.sum().clamp(min=1).to(values.dtype)
    return total / count


def mse_loss(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error, averaged over the feature axis and the counted positions.

    ``loss = masked_mean( mean_d (student[..., d] - teacher[..., d])**2 , mask )``

    Args:
        student: ``(B, T, D)`` or ``(B, D)``; receives gradient.
        teacher: same shape as ``student``; detached; any float dtype
            (e.g. float16), cast to the computation dtype.
        mask: ``(B, T)`` for ``(B, T, D)`` inputs, ``(B,)`` for ``(B, D)``
            inputs, or ``None``; bool or 0/1, true = counted.

    Returns:
        0-dim tensor (computation dtype, see module docstring). ``0.0`` with a
        ``grad_fn`` if the mask selects nothing.

    Raises:
        ValueError: if ``student`` and ``teacher`` shapes differ (the message
            names both), if they are not 2-D/3-D, or if ``mask`` has the wrong
            shape.

    Source: XtremeDistil (Mukherjee & Hassan Awadallah, ACL 2020), sec. 3.2 --
    MSE is used both for the representation loss (stage 1) and the logit loss
    (stage 2, following Ba & Caruana 2014).
    """
    _check_pair(student, teacher, "mse_loss")
    _check_mask(mask, student.shape[:-1], "mse_loss")
    dtype = _compute_dtype(student)
    s = _zero_masked(student.to(dtype), mask)
    t = _zero_masked(teacher.detach().to(device=student.device, dtype=dtype), mask)
    per_position = (s - t).pow(2).mean(dim=-1)
    return masked_mean(per_position, mask)


def kl_div_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    detach_teacher: bool = True,
) -> Tensor:
    """Temperature-scaled KL(p_teacher || p_student), softmax over the last axis.

    With ``p = softmax(logits / T, dim=-1)`` per position::

        kl[pos] = sum_c p_t[c] * (log p_t[c] - log p_s[c])
        loss    = T**2 * masked_mean(kl, mask)

    Classes where ``p_t == 0`` contribute exactly 0 (the ``0 log 0 = 0``
    convention), so teacher logits of ``-inf`` are allowed.

    Args:
        student_logits: ``(B, T, C)`` or ``(B, C)``; receives gradient.
        teacher_logits: same shape; detached unless ``detach_teacher`` is false (an adversarial
            generator ascends the divergence through both models, MATE-KD eq. 3); any float dtype.
        mask: ``(B, T)`` / ``(B,)`` / ``None``; bool or 0/1, true = counted.
        temperature: ``T > 0``. The ``T**2`` factor keeps gradient magnitudes
            comparable across temperatures.

    Returns:
        0-dim tensor, ``>= 0``; ``0.0`` with a ``grad_fn`` if nothing is counted.

    Raises:
        ValueError: on a shape mismatch (message names both shapes) or a bad
            mask shape.
        ConfigError (a ValueError): if ``temperature`` is not a finite
            number > 0.

    Source: Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
    Network", sec. 2 (soft targets at temperature T, gradients scaled by T**2).
    """
    t_val = _check_temperature(temperature)
    _check_pair(student_logits, teacher_logits, "kl_div_loss")
    _check_mask(mask, student_logits.shape[:-1], "kl_div_loss")
    dtype = _compute_dtype(student_logits)
    s = _zero_masked(student_logits.to(dtype), mask) / t_val
    target = teacher_logits.detach() if detach_teacher else teacher_logits
    t = _zero_masked(target.to(device=student_logits.device, dtype=dtype), mask) / t_val
    log_p_s = F.log_softmax(s, dim=-1)
    log_p_t = F.log_softmax(t, dim=-1)
    p_t = log_p_t.exp()
    zero = torch.zeros((), dtype=dtype, device=s.device)
    terms = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), zero)
    per_position = terms.sum(dim=-1)
    return masked_mean(per_position, mask) * (t_val**2)


def cross_entropy_loss(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Cross-entropy with hard labels, averaged over the non-ignored positions.

    Args:
        logits: ``(B, T, C)`` (token classification) or ``(B, C)`` (sequence
            classification); softmax over the last axis.
        labels: integer class ids, ``(B, T)`` or ``(B,)`` respectively;
            positions equal to ``ignore_index`` (padding, sub-word
            continuations) are not counted.
        ignore_index: label value to skip (default ``-100``, the Hugging Face
            convention).

    Returns:
        0-dim tensor; ``0.0`` with a ``grad_fn`` if every label is ignored
        (``torch.nn.functional.cross_entropy`` would return NaN there).

    Raises:
        ValueError: if ``labels.shape != logits.shape[:-1]`` (message names both
            shapes), if ``logits`` is not 2-D/3-D, or if ``labels`` is not an
            integer tensor. Out-of-range class ids raise torch's own error.

    Source: standard supervised loss on gold labels (used alongside the
    distillation losses in XtremeDistil sec. 3.2, stage 3 fine-tuning).
    """
    if logits.dim() not in (2, 3):
        raise ValueError(
            f"cross_entropy_loss: expected logits (B, T, C) or (B, C), got shape {tuple(logits.shape)}"
        )
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy_loss: labels shape {tuple(labels.shape)} does not match "
            f"logits shape {tuple(logits.shape)} without its class axis"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"cross_entropy_loss: labels must be integer class ids, got dtype {labels.dtype}")
    dtype = _compute_dtype(logits)
    num_classes = logits.shape[-1]
    labels = labels.to(device=logits.device, dtype=torch.long)
    counted = labels != ignore_index
    per_position = F.cross_entropy(
        _zero_masked(logits.to(dtype), counted).reshape(-1, num_classes),
        labels.reshape(-1),
        ignore_index=ignore_index,
        reduction="none",
    ).reshape(labels.shape)
    return masked_mean(per_position, counted)


#: loss name -> :data:`LossFn`
LOSSES: dict[str, LossFn] = {}


def register_loss(name: str) -> Callable[[LossFn], LossFn]:
    """Decorator: register ``fn(student, target, mask, temperature)`` as the loss ``name``.

    Raises:
        ValueError: ``name`` is taken by another function.
    """
    def deco(fn: LossFn) -> LossFn:
        if LOSSES.get(name, fn) is not fn:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = fn
        return fn
    return deco


def get_loss(name: str, where: str = "loss") -> LossFn:
    """The loss registered as ``name``.

    Raises:
        ConfigError: an unknown name (``where`` names the option).
    """
    if name not in LOSSES:
        raise ConfigError(f"{where}: unknown loss {name!r}; expected one of {', '.join(sorted(LOSSES))}")
    return LOSSES[name]


@register_loss("mse")
def _mse(student: Tensor, target: Tensor, mask: Tensor | None, temperature: float = 1.0) -> Tensor:
    """:func:`mse_loss` (``temperature`` unused). XtremeDistil sec. 3.2: the representation loss
    (stage 1) and the logit loss (stage 2, after Ba & Caruana 2014)."""
    return mse_loss(student, target, mask)


@register_loss("kl")
def _kl(student: Tensor, target: Tensor, mask: Tensor | None, temperature: float = 1.0) -> Tensor:
    """:func:`kl_div_loss` at ``temperature`` (Hinton et al. 2015), softmax over the last axis
    (classes for logits, the hidden axis for representations)."""
    return kl_div_loss(student, target, mask, temperature=temperature)


@register_loss("cross_entropy")
def _cross_entropy(student: Tensor, target: Tensor, mask: Tensor | None, temperature: float = 1.0) -> Tensor:
    """:func:`cross_entropy_loss` of student logits against gold label ids (positions labeled
    -100 do not count; ``mask`` and ``temperature`` unused). XtremeDistil stage 3."""
    return cross_entropy_loss(student, target)
