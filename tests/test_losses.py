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

from xdistill.distill import losses
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
    }
    temps = {c["kwargs"].get("temperature") for c in CASES}
    assert {1.0, 2.0} <= temps


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_float64(case):
    fn = FUNCTIONS.get(case["fn"]) or getattr(losses, case["fn"])
    got = fn(**_to_torch(case["kwargs"], torch.float64))
    assert got.dim() == 0
    assert got.item() == pytest.approx(case["expected"], abs=TOL, rel=0)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_float32(case):
    fn = FUNCTIONS.get(case["fn"]) or getattr(losses, case["fn"])
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
    s1 = s.clone().requires_grad_(True)
    base = fn(s1, t, mask)
    base.backward()

    hidden = (mask == 0)
    for junk in (1e6, -3e4, float("inf"), float("nan")):
        s2, t2 = s.clone(), t.clone()
        s2[hidden] = junk
        t2[hidden] = -junk
        s2.requires_grad_(True)
        got = fn(s2, t2, mask)
        assert torch.isfinite(got)
        assert got.item() == pytest.approx(base.item(), abs=1e-6)
        got.backward()
        assert torch.isfinite(s2.grad).all()
        assert (s2.grad[hidden] == 0).all()
        torch.testing.assert_close(s2.grad, s1.grad)

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
