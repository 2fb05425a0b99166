"""Tests for ``xdistill.losses``.

Golden values come from ``tests/fixtures/losses/golden.json``, produced by
``tests/fixtures/losses/make_golden.py`` with NumPy only (independent of torch).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from xdistill.distill import attention_losses, losses
from xdistill.distill.attention_losses import attention_kl_loss, attention_mse_loss, relation_kl_loss
from xdistill.distill.losses import (
    LOSSES,
    cross_entropy_loss,
    get_loss,
    kl_div_loss,
    masked_mean,
    mse_loss,
    register_loss,
)
from xdistill.errors import ConfigError


def _stage_loss(student, teacher, mask=None, kind="mse", temperature=1.0):
    """XtremeDistil's stage-1/stage-2 loss by name, through the registry (what a match calls)."""
    return get_loss(kind)(student, teacher, mask, temperature)


def representation_loss(student_hidden, teacher_hidden, mask=None, kind="mse", temperature=1.0):
    return _stage_loss(student_hidden, teacher_hidden, mask, kind, temperature)


def logits_loss(student_logits, teacher_logits, mask=None, kind="mse", temperature=1.0):
    return _stage_loss(student_logits, teacher_logits, mask, kind, temperature)


#: the golden fixture's stage-loss cases go through the registry
FUNCTIONS = {"representation_loss": representation_loss, "logits_loss": logits_loss}
LOSS_KINDS = ("mse", "kl")

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "losses" / "golden.json").read_text())
CASES = GOLDEN["cases"]
TOL = GOLDEN["tolerance"]  # 1e-6

TENSOR_ARGS = {
    "student", "teacher", "student_logits", "teacher_logits",
    "student_hidden", "teacher_hidden", "logits", "values",
}


def _to_torch(kwargs: dict, dtype: torch.dtype) -> dict:
    out = {}
    for k, v in kwargs.items():
        if v is None or not isinstance(v, list):
            out[k] = v
        elif k in TENSOR_ARGS:
            out[k] = torch.tensor(v, dtype=dtype)
        elif k == "mask":
            out[k] = torch.tensor(v, dtype=torch.bool)
        elif k == "labels":
            out[k] = torch.tensor(v, dtype=torch.long)
        else:  # pragma: no cover - fixture error
            raise AssertionError(f"unexpected list argument {k}")
    return out


# --------------------------------------------------------------------------- #
# golden values (NumPy reference)
# --------------------------------------------------------------------------- #
def test_golden_fixture_covers_every_function():
    fns = {c["fn"] for c in CASES}
    assert fns == {
        "masked_mean", "mse_loss", "kl_div_loss", "cross_entropy_loss",
        "representation_loss", "logits_loss",
        "attention_mse_loss", "attention_kl_loss", "relation_kl_loss",
    }
    temps = {c["kwargs"].get("temperature") for c in CASES}
    assert {1.0, 2.0} <= temps


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_float64(case):
    fn = FUNCTIONS.get(case["fn"]) or getattr(losses, case["fn"], None) or getattr(attention_losses, case["fn"])
    got = fn(**_to_torch(case["kwargs"], torch.float64))
    assert got.dim() == 0
    assert got.item() == pytest.approx(case["expected"], abs=TOL, rel=0)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_float32(case):
    fn = FUNCTIONS.get(case["fn"]) or getattr(losses, case["fn"], None) or getattr(attention_losses, case["fn"])
    got = fn(**_to_torch(case["kwargs"], torch.float32))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(case["expected"], abs=1e-5, rel=1e-6)


# --------------------------------------------------------------------------- #
# values worked out by hand
# --------------------------------------------------------------------------- #
def test_hand_values():
    # MSE of [[1, 2]] vs [[0, 0]]: (1**2 + 2**2) / 2 = 2.5
    assert mse_loss(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)).item() == 2.5

    # KL of identical logits is exactly 0 (any temperature).
    z = torch.tensor([[0.3, -1.2, 2.0], [5.0, 5.0, 5.0]])
    assert kl_div_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_div_loss(z, z.clone(), temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)

    # Student logits [0, 0] -> p_s = [1/2, 1/2]; teacher logits [ln 3, 0] -> p_t = [3/4, 1/4].
    # KL(p_t || p_s) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.304098831 - 0.173286795 = 0.130812036
    s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    assert kl_div_loss(s, t).item() == pytest.approx(0.130812036, abs=1e-9)

    # Cross-entropy of uniform logits over 2 classes = ln 2 = 0.693147181
    assert cross_entropy_loss(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(
        0.693147181, abs=1e-7
    )

    # masked_mean([1, 2, 3], mask [1, 0, 1]) = (1 + 3) / 2 = 2
    assert masked_mean(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1, 0, 1])).item() == 2.0


def test_kl_gradient_matches_hinton():
    # Hinton et al. 2015 sec. 2: d/dz_s of T**2 * KL at temperature T = T * (p_s - p_t)
    # (divided by the number of averaged positions, here B = 2).
    torch.manual_seed(0)
    s = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, dtype=torch.float64)
    T = 2.5
    kl_div_loss(s, t, temperature=T).backward()
    expected = T * (F.softmax(s.detach() / T, -1) - F.softmax(t / T, -1)) / 2
    torch.testing.assert_close(s.grad, expected)


def test_gradcheck():
    torch.manual_seed(0)
    s = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, dtype=torch.float64)
    m = torch.tensor([[1, 1, 0], [1, 0, 1]], dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda x: kl_div_loss(x, t, m, temperature=2.0), (s,))
    assert torch.autograd.gradcheck(lambda x: mse_loss(x, t, m), (s,))


# --------------------------------------------------------------------------- #
# softmax axis
# --------------------------------------------------------------------------- #
def test_softmax_is_over_last_axis():
    torch.manual_seed(0)
    B, T, C = 2, 3, 4
    s = torch.randn(B, T, C, dtype=torch.float64)
    t = torch.randn(B, T, C, dtype=torch.float64)

    def kl_over(dim):
        ls, lt = F.log_softmax(s, dim), F.log_softmax(t, dim)
        return (lt.exp() * (lt - ls)).sum(-1).mean().item()

    right, wrong = kl_over(-1), kl_over(1)
    assert abs(right - wrong) > 1e-3  # the two conventions really differ here
    assert kl_div_loss(s, t).item() == pytest.approx(right, abs=1e-12)

    # Softmax over the class axis is invariant to a per-(b, t) shift of the logits;
    # with softmax over dim 1 (the sequence axis) this would change the loss.
    shift = torch.randn(B, T, 1, dtype=torch.float64) * 10
    assert kl_div_loss(s + shift, t).item() == pytest.approx(right, abs=1e-10)
    assert kl_div_loss(s, t - shift).item() == pytest.approx(right, abs=1e-10)
    assert kl_div_loss(t + shift, t).item() == pytest.approx(0.0, abs=1e-10)
    # same for representation_loss(kind="kl"): softmax over the hidden dim
    h = torch.randn(B, T, 5, dtype=torch.float64)
    assert representation_loss(h + shift, h, kind="kl").item() == pytest.approx(0.0, abs=1e-10)


# --------------------------------------------------------------------------- #
# masking
# --------------------------------------------------------------------------- #
MASKED_FNS = [
    ("mse", lambda s, t, m: mse_loss(s, t, m)),
    ("kl_T1", lambda s, t, m: kl_div_loss(s, t, m)),
    ("kl_T2", lambda s, t, m: kl_div_loss(s, t, m, temperature=2.0)),
    ("repr_mse", lambda s, t, m: representation_loss(s, t, m)),
    ("repr_kl", lambda s, t, m: representation_loss(s, t, m, kind="kl", temperature=2.0)),
    ("logits_mse", lambda s, t, m: logits_loss(s, t, m)),
    ("logits_kl", lambda s, t, m: logits_loss(s, t, m, kind="kl")),
]


def _assert_padding_inert(fn, s, t, mask, hidden, junks=(1e6, -3e4, float("inf"), float("nan"))):
    """``fn(s, t, mask)``: junk at the ``hidden`` entries of both inputs changes neither the value nor the
    gradient (which is zero there). Returns the loss of the clean inputs."""
    s1 = s.clone().requires_grad_(True)
    base = fn(s1, t, mask)
    base.backward()
    for junk in junks:
        s2, t2 = s.clone(), t.clone()
        s2[hidden] = junk
        t2[hidden] = -junk if junk == junk else junk  # nan stays nan
        s2.requires_grad_(True)
        got = fn(s2, t2, mask)
        assert torch.isfinite(got)
        assert got.item() == pytest.approx(base.item(), abs=1e-6)
        got.backward()
        assert torch.isfinite(s2.grad).all()
        assert (s2.grad[hidden] == 0).all()
        torch.testing.assert_close(s2.grad, s1.grad)
    return base


@pytest.mark.parametrize("name,fn", MASKED_FNS, ids=[n for n, _ in MASKED_FNS])
@pytest.mark.parametrize("seq_level", [False, True], ids=["token", "seq"])
def test_masked_positions_do_not_matter(name, fn, seq_level):
    torch.manual_seed(1)
    if seq_level:
        shape, mask = (3, 4), torch.tensor([True, False, True])
    else:
        shape, mask = (2, 3, 4), torch.tensor([[1, 1, 0], [0, 1, 1]])  # 0/1 ints are fine too
    s = torch.randn(*shape)
    t = torch.randn(*shape)
    hidden = (mask == 0)
    base = _assert_padding_inert(fn, s, t, mask, hidden)

    # sanity: an unmasked change does change the loss
    s3 = s.clone()
    s3[~hidden] += 1.0 + torch.rand_like(s3[~hidden])
    assert fn(s3, t, mask).item() != pytest.approx(base.item(), abs=1e-6)


def test_mask_none_equals_all_true():
    torch.manual_seed(2)
    s, t = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    ones = torch.ones(2, 3, dtype=torch.bool)
    for fn in (mse_loss, kl_div_loss):
        assert fn(s, t, None).item() == pytest.approx(fn(s, t, ones).item(), abs=1e-7)


def test_cross_entropy_ignored_positions_do_not_matter():
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 4)
    labels = torch.tensor([[1, -100, 2], [-100, 0, 3]])
    base = cross_entropy_loss(logits, labels)
    junk = logits.clone()
    junk[labels == -100] = float("nan")
    junk.requires_grad_(True)
    got = cross_entropy_loss(junk, labels)
    assert got.item() == pytest.approx(base.item(), abs=1e-6)
    got.backward()
    assert torch.isfinite(junk.grad).all()
    assert (junk.grad[labels == -100] == 0).all()
    # equals torch's own mean over non-ignored
    ref = F.cross_entropy(logits.reshape(-1, 4), labels.reshape(-1), ignore_index=-100)
    assert base.item() == pytest.approx(ref.item(), abs=1e-6)


def test_all_masked_returns_zero_with_grad():
    s = torch.randn(2, 3, 4, requires_grad=True)
    t = torch.randn(2, 3, 4)
    none = torch.zeros(2, 3, dtype=torch.bool)
    results = [
        masked_mean(s.sum(-1), none),
        mse_loss(s, t, none),
        kl_div_loss(s, t, none, temperature=2.0),
        representation_loss(s, t, none, kind="kl"),
        logits_loss(s, t, none),
        cross_entropy_loss(s, torch.full((2, 3), -100)),
    ]
    for loss in results:
        assert loss.item() == 0.0
        assert loss.requires_grad and loss.grad_fn is not None
    sum(results).backward()
    assert s.grad is not None and (s.grad == 0).all()

    # sequence level, all masked
    s2 = torch.randn(3, 4, requires_grad=True)
    loss = kl_div_loss(s2, torch.randn(3, 4), torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert (s2.grad == 0).all()


def test_masked_mean_checks_shape():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 2\)|\(2, 2\).*\(2, 3\)"):
        masked_mean(torch.zeros(2, 3), torch.ones(2, 2))


# --------------------------------------------------------------------------- #
# gradients, dtypes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name,fn", MASKED_FNS, ids=[n for n, _ in MASKED_FNS])
def test_gradients_flow_to_student_only(name, fn):
    torch.manual_seed(4)
    s = torch.randn(2, 3, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, requires_grad=True)  # e.g. a teacher not under no_grad
    loss = fn(s, t, torch.tensor([[1, 1, 1], [1, 0, 1]]))
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_teacher_float16_accepted():
    torch.manual_seed(5)
    s = torch.randn(2, 3, 4, requires_grad=True)
    t32 = (torch.randn(2, 3, 4) * 4).round() / 4  # exactly representable in float16
    t16 = t32.to(torch.float16)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    for fn in (mse_loss, kl_div_loss, representation_loss, logits_loss):
        a, b = fn(s, t16, mask), fn(s, t32, mask)
        assert a.dtype == torch.float32
        assert a.item() == pytest.approx(b.item(), abs=1e-6)
    kl_div_loss(s, t16, mask, temperature=2.0).backward()
    assert s.grad.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_student_computes_in_float32(dtype):
    torch.manual_seed(6)
    s = torch.randn(2, 3, 4).to(dtype).requires_grad_(True)
    t = torch.randn(2, 3, 4).to(dtype)
    loss = kl_div_loss(s, t, temperature=2.0) + mse_loss(s, t) + cross_entropy_loss(s, torch.zeros(2, 3, dtype=torch.long))
    assert loss.dtype == torch.float32
    loss.backward()
    assert s.grad.dtype == dtype


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #
def test_shape_mismatch_names_both_shapes():
    s, t = torch.zeros(2, 3, 4), torch.zeros(2, 3, 5)
    for fn in (mse_loss, kl_div_loss, representation_loss, logits_loss):
        with pytest.raises(ValueError) as exc:
            fn(s, t)
        msg = str(exc.value)
        assert "(2, 3, 4)" in msg and "(2, 3, 5)" in msg


def test_bad_shapes():
    with pytest.raises(ValueError, match="mask"):
        mse_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="mask"):
        kl_div_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.ones(2, 1))
    with pytest.raises(ValueError):
        mse_loss(torch.zeros(4), torch.zeros(4))  # 1-D: not (B, C) / (B, T, C)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
        cross_entropy_loss(torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        cross_entropy_loss(torch.zeros(2, 4), torch.zeros(2))


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan"), float("inf"), "hot", None])
def test_bad_temperature(temperature):
    s, t = torch.zeros(2, 4), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="temperature"):
        kl_div_loss(s, t, temperature=temperature)
    for fn in (representation_loss, logits_loss):  # only KL uses the temperature (Match checks it for every loss)
        with pytest.raises(ValueError, match="temperature"):
            fn(s, t, kind="kl", temperature=temperature)


def test_unknown_loss_lists_the_registered_ones():
    with pytest.raises(ConfigError) as exc:
        get_loss("cosine", "--logits-loss")
    msg = str(exc.value)
    assert "--logits-loss" in msg and "cosine" in msg and "mse" in msg and "kl" in msg and "cross_entropy" in msg


def test_registry_holds_the_paper_losses():
    assert {"mse", "kl", "cross_entropy"} <= set(LOSSES)
    torch.manual_seed(7)
    s, t = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    m = torch.tensor([[1, 0, 1], [1, 1, 1]])
    assert LOSSES["mse"](s, t, m, 5.0).item() == mse_loss(s, t, m).item()  # temperature unused by MSE
    assert LOSSES["kl"](s, t, m, 3.0).item() == pytest.approx(kl_div_loss(s, t, m, temperature=3.0).item())
    labels = torch.tensor([[0, -100, 3], [1, 2, -100]])
    assert LOSSES["cross_entropy"](s, labels, None, 1.0).item() == cross_entropy_loss(s, labels).item()


def test_register_loss_from_outside_and_refuse_a_taken_name():
    @register_loss("test_l1")
    def l1(student, target, mask, temperature=1.0):
        return (student - target).abs().mean()

    try:
        assert get_loss("test_l1") is l1
        with pytest.raises(ValueError, match="already registered"):
            register_loss("test_l1")(lambda s, t, m, temperature=1.0: s.sum())
    finally:
        del LOSSES["test_l1"]


def test_public_functions_are_documented():
    for name in ("masked_mean", "mse_loss", "kl_div_loss", "cross_entropy_loss"):
        obj = getattr(losses, name)
        if callable(obj):
            doc = obj.__doc__ or ""
            assert "Source" in doc and "(B," in doc, name


# --------------------------------------------------------------------------- #
# attention maps (TinyBERT / MiniLM) and self-attention relations (MiniLMv2)
# --------------------------------------------------------------------------- #
def _attention_maps(*shape, generator=None):
    """Random attention probabilities ``(B, A, T, T)`` (softmax over the keys), float64."""
    return torch.randn(*shape, dtype=torch.float64, generator=generator).softmax(-1)


ATTENTION_FNS = [
    ("attention_mse", lambda s, t, m: attention_mse_loss(s, t, m)),
    ("attention_kl", lambda s, t, m: attention_kl_loss(s, t, m)),
    ("registry_attention_mse", lambda s, t, m: LOSSES["attention_mse"](s, t, m, 1.0)),
    ("registry_attention_kl", lambda s, t, m: LOSSES["attention_kl"](s, t, m, 1.0)),
]
RELATION_FNS = [
    ("relation_kl_R1", lambda s, t, m: relation_kl_loss(s, t, m, relation_heads=1)),
    ("relation_kl_R2", lambda s, t, m: relation_kl_loss(s, t, m, relation_heads=2)),
    ("registry_relation_kl", lambda s, t, m: LOSSES["relation_kl"](s, t, m, 1.0, relation_heads=2)),
]


def test_attention_hand_values():
    # one head, T=2, both real: s = [[1/2, 1/2], [1, 0]], t = [[3/4, 1/4], [1, 0]]
    s = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]], dtype=torch.float64)
    t = torch.tensor([[[[0.75, 0.25], [1.0, 0.0]]]], dtype=torch.float64)
    # MSE: row 0 = (1/16 + 1/16) / 2 = 1/16, row 1 = 0 -> mean 1/32
    assert attention_mse_loss(s, t).item() == pytest.approx(1 / 32, abs=1e-15)
    # KL: row 0 = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812036, row 1 = 0 (t = 0 at the zero) -> / 2
    assert attention_kl_loss(s, t).item() == pytest.approx(0.130812036 / 2, abs=1e-9)
    # padding the second position: only row 0 over key 0 counts
    m = torch.tensor([[1, 0]])
    assert attention_mse_loss(s, t, m).item() == pytest.approx(1 / 16, abs=1e-15)  # (1/2 - 3/4)**2
    assert attention_kl_loss(s, t, m).item() == pytest.approx(0.75 * math.log(1.5), abs=1e-12)
    # identical maps: 0
    assert attention_kl_loss(t, t.clone()).item() == 0.0
    assert attention_mse_loss(t, t.clone()).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_kl_zero_student_probability_is_large_but_finite(dtype):
    s = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]], dtype=dtype, requires_grad=True)
    t = torch.tensor([[[[0.5, 0.5], [0.5, 0.5]]]], dtype=dtype)
    loss = attention_kl_loss(s, t) * 2  # row 1 is 0; the mean over 2 rows halves row 0
    # row 0: 1/2 (ln 1/2 - ln 1) + 1/2 (ln 1/2 - ln tiny)
    expected = 0.5 * math.log(0.5) + 0.5 * (math.log(0.5) - math.log(torch.finfo(dtype).tiny))
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(s.grad).all()


def test_relation_kl_is_zero_for_identical_inputs():
    torch.manual_seed(10)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    m = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    for heads in (1, 2, 4, 8):
        assert relation_kl_loss(x, x.clone(), m, relation_heads=heads).item() == pytest.approx(0.0, abs=1e-12)
        assert relation_kl_loss(x, x.clone(), relation_heads=heads).item() == pytest.approx(0.0, abs=1e-12)
    # a change of the student makes it positive
    assert relation_kl_loss(x + torch.randn_like(x), x, m, relation_heads=2).item() > 1e-6


def test_relation_kl_matches_explicit_formula_with_different_widths():
    # MiniLMv2 sec. 3.1, eqs. 1-3 written with torch ops, no mask: Ds=6, Dt=12, R=3
    torch.manual_seed(11)
    B, T, R = 2, 4, 3
    s = torch.randn(B, T, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(B, T, 12, dtype=torch.float64)

    def log_rel(x):
        d = x.shape[-1] // R
        xr = x.reshape(B, T, R, d).permute(0, 2, 1, 3)
        return F.log_softmax(xr @ xr.transpose(-1, -2) / math.sqrt(d), dim=-1)

    ls, lt = log_rel(s), log_rel(t)
    expected = (lt.exp() * (lt - ls)).sum(-1).mean()
    got = relation_kl_loss(s, t, relation_heads=R)
    assert got.item() == pytest.approx(expected.item(), abs=1e-12)
    got.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # different widths, same relations: a teacher x' = x with every column repeated twice
    # (width 2D) has x' x'^T / sqrt(2D) = sqrt(2) x x^T / sqrt(D), the scores of the student
    # 2**(1/4) x (width D): KL exactly 0
    x = s.detach()
    same = relation_kl_loss(x * 2**0.25, x.repeat_interleave(2, dim=-1), relation_heads=1)
    assert same.item() == pytest.approx(0.0, abs=1e-12)


def test_relation_kl_padding_keys_excluded_from_softmax():
    # dropping the padding positions entirely gives the same value as masking them
    torch.manual_seed(12)
    s, t = torch.randn(1, 5, 4, dtype=torch.float64), torch.randn(1, 5, 6, dtype=torch.float64)
    m = torch.tensor([[1, 1, 1, 0, 0]])
    masked = relation_kl_loss(s, t, m, relation_heads=2)
    cropped = relation_kl_loss(s[:, :3], t[:, :3], relation_heads=2)
    assert masked.item() == pytest.approx(cropped.item(), abs=1e-12)
    sa, ta = _attention_maps(1, 2, 5, 5), _attention_maps(1, 2, 5, 5)
    # attention: the real rows restricted to the real keys (renormalising would change the value,
    # cropping does not: the per-row sums run over the real keys only)
    for fn in (attention_mse_loss, attention_kl_loss):
        assert fn(sa, ta, m).item() == pytest.approx(fn(sa[..., :3, :3], ta[..., :3, :3]).item(), abs=1e-12)


def test_new_losses_gradcheck():
    torch.manual_seed(13)
    m = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    sa = _attention_maps(2, 2, 3, 3).requires_grad_(True)
    ta = _attention_maps(2, 2, 3, 3)
    assert torch.autograd.gradcheck(lambda x: attention_mse_loss(x, ta, m), (sa,))
    assert torch.autograd.gradcheck(lambda x: attention_kl_loss(x, ta, m), (sa,))
    sr = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    tr = torch.randn(2, 3, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: relation_kl_loss(x, tr, m, relation_heads=2), (sr,))


@pytest.mark.parametrize("name,fn", ATTENTION_FNS, ids=[n for n, _ in ATTENTION_FNS])
def test_attention_padding_does_not_matter(name, fn):
    g = torch.Generator().manual_seed(14)
    B, A, T = 2, 3, 4
    s = _attention_maps(B, A, T, T, generator=g).float()
    t = _attention_maps(B, A, T, T, generator=g).float()
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    keep = mask != 0
    hidden = ~(keep[:, None, :, None] & keep[:, None, None, :]).expand(B, A, T, T)  # padding row or column
    assert hidden.any() and (~hidden).any()
    base = _assert_padding_inert(fn, s, t, mask, hidden, junks=(1e6, -3e4, 0.0, float("inf"), float("nan")))

    # sanity: a change of a real entry changes the loss
    s3 = s.clone()
    s3[1, 0, 1, 0] += 0.3
    assert fn(s3, t, mask).item() != pytest.approx(base.item(), abs=1e-6)


@pytest.mark.parametrize("name,fn", RELATION_FNS, ids=[n for n, _ in RELATION_FNS])
def test_relation_padding_does_not_matter(name, fn):
    torch.manual_seed(15)
    s, t = torch.randn(2, 4, 4), torch.randn(2, 4, 6)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    base = _assert_padding_inert(fn, s, t, mask, mask == 0)

    s3 = s.clone()
    s3[1, 1] += 1.0
    assert fn(s3, t, mask).item() != pytest.approx(base.item(), abs=1e-6)


def test_new_losses_all_masked_return_zero_with_grad():
    sa = _attention_maps(2, 2, 3, 3).requires_grad_(True)
    ta = _attention_maps(2, 2, 3, 3)
    sr = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    tr = torch.randn(2, 3, 6, dtype=torch.float64)
    none = torch.zeros(2, 3, dtype=torch.bool)
    results = [
        attention_mse_loss(sa, ta, none),
        attention_kl_loss(sa, ta, none),
        LOSSES["attention_kl"](sa, ta, none, 1.0),
        relation_kl_loss(sr, tr, none, relation_heads=2),
        LOSSES["relation_kl"](sr, tr, none, 1.0, relation_heads=1),
    ]
    for loss in results:
        assert loss.item() == 0.0
        assert loss.requires_grad and loss.grad_fn is not None
    sum(results).backward()
    assert (sa.grad == 0).all() and (sr.grad == 0).all()


def test_new_losses_mask_none_equals_all_true():
    torch.manual_seed(16)
    sa, ta = _attention_maps(2, 2, 3, 3), _attention_maps(2, 2, 3, 3)
    sr, tr = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 3, 6, dtype=torch.float64)
    ones = torch.ones(2, 3, dtype=torch.bool)
    for fn in (attention_mse_loss, attention_kl_loss):
        assert fn(sa, ta, None).item() == pytest.approx(fn(sa, ta, ones).item(), abs=1e-12)
    assert relation_kl_loss(sr, tr, None, relation_heads=2).item() == pytest.approx(
        relation_kl_loss(sr, tr, ones, relation_heads=2).item(), abs=1e-12)


def test_new_losses_teacher_detached_and_dtypes():
    torch.manual_seed(17)
    sa = _attention_maps(2, 2, 3, 3).float().requires_grad_(True)
    ta = _attention_maps(2, 2, 3, 3).float().requires_grad_(True)
    sr = torch.randn(2, 3, 4, requires_grad=True)
    tr = torch.randn(2, 3, 6, requires_grad=True)
    m = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss = attention_mse_loss(sa, ta, m) + attention_kl_loss(sa, ta, m) + relation_kl_loss(sr, tr, m, relation_heads=2)
    loss.backward()
    assert sa.grad.abs().sum() > 0 and sr.grad.abs().sum() > 0
    assert ta.grad is None and tr.grad is None
    # a float16 teacher is accepted; a half student computes in float32
    for fn, s, t in ((attention_mse_loss, sa, ta), (attention_kl_loss, sa, ta)):
        assert fn(s, t.detach().half(), m).dtype == torch.float32
        half = fn(s.detach().half().requires_grad_(True), t.detach().half(), m)
        assert half.dtype == torch.float32
    half_s = sr.detach().to(torch.bfloat16).requires_grad_(True)
    loss = relation_kl_loss(half_s, tr.detach().half(), m, relation_heads=2)
    assert loss.dtype == torch.float32
    loss.backward()
    assert half_s.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("heads", [None, 0, -2, 3, 4, 2.0, True, "2"])
def test_relation_kl_bad_heads(heads):
    s, t = torch.zeros(2, 3, 4), torch.zeros(2, 3, 6)  # R must divide 4 and 6: 1 or 2
    with pytest.raises(ConfigError, match="relation_heads"):
        relation_kl_loss(s, t, relation_heads=heads)
    with pytest.raises(ConfigError, match="relation_heads") as exc:
        LOSSES["relation_kl"](s, t, None, 1.0, relation_heads=heads)
    if heads in (3, 4):
        assert "4" in str(exc.value) and "6" in str(exc.value)  # names both widths
    if heads is None:
        assert str(exc.value).startswith("relation_kl: needs relation_heads")
    with pytest.raises(ConfigError, match="relation_kl: needs relation_heads"):
        LOSSES["relation_kl"](s, t, None, 1.0)


def test_new_losses_shape_errors():
    a = torch.zeros(2, 2, 3, 3)
    for fn in (attention_mse_loss, attention_kl_loss):
        with pytest.raises(ValueError) as exc:
            fn(a, torch.zeros(2, 3, 3, 3))
        assert "(2, 2, 3, 3)" in str(exc.value) and "(2, 3, 3, 3)" in str(exc.value)
        with pytest.raises(ValueError, match=r"\(2, 3, 3\)"):
            fn(torch.zeros(2, 3, 3), torch.zeros(2, 3, 3))  # not 4-D
        with pytest.raises(ValueError, match=r"\(2, 2, 3, 4\)"):
            fn(torch.zeros(2, 2, 3, 4), torch.zeros(2, 2, 3, 4))  # not (B, A, T, T)
        with pytest.raises(ValueError, match=r"mask.*\(2, 4\).*\(2, 3\)"):
            fn(a, a, torch.ones(2, 4))
    s = torch.zeros(2, 3, 4)
    for t in (torch.zeros(2, 4, 6), torch.zeros(3, 3, 6), torch.zeros(2, 3)):
        with pytest.raises(ValueError) as exc:
            relation_kl_loss(s, t, relation_heads=2)
        assert "(2, 3, 4)" in str(exc.value) and str(tuple(t.shape)) in str(exc.value)
    with pytest.raises(ValueError, match="mask"):
        relation_kl_loss(s, torch.zeros(2, 3, 6), torch.ones(2, 4), relation_heads=2)


def test_registry_holds_the_attention_losses():
    assert {"attention_mse", "attention_kl", "relation_kl"} <= set(LOSSES)
    for name in ("attention_mse", "attention_kl", "relation_kl"):
        assert get_loss(name) is LOSSES[name]
    torch.manual_seed(18)
    sa, ta = _attention_maps(2, 2, 3, 3), _attention_maps(2, 2, 3, 3)
    m = torch.tensor([[1, 0, 1], [1, 1, 1]])
    assert LOSSES["attention_mse"](sa, ta, m, 5.0).item() == attention_mse_loss(sa, ta, m).item()
    assert LOSSES["attention_kl"](sa, ta, m, 5.0).item() == attention_kl_loss(sa, ta, m).item()
    sr, tr = torch.randn(2, 3, 4), torch.randn(2, 3, 6)
    assert LOSSES["relation_kl"](sr, tr, m, 5.0, relation_heads=2).item() == (
        relation_kl_loss(sr, tr, m, relation_heads=2).item())
    for name in ("attention_mse_loss", "attention_kl_loss", "relation_kl_loss"):
        doc = getattr(attention_losses, name).__doc__ or ""
        assert "Source" in doc and "(B," in doc and "arXiv" in doc, name
        assert name in attention_losses.__all__
