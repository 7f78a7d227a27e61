"""Properties of tempered stick-breaking onto the simplex ([BP] section 3.1, categorical case)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.functional import jacobian
from torch.distributions import constraints
from torch.distributions.transforms import StickBreakingTransform

from pyro_permutations.transforms import (
    StickBreakingBirkhoffTransform,
    StickBreakingSimplexTransform,
)

F64 = torch.float64
EPS64 = torch.finfo(F64).eps


def _psi(batch_shape, k, scale, seed, dtype=F64):
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch_shape + (k,), generator=generator, dtype=dtype)


def _free_jacobian_logdet(transform, psi):
    """log|det| of autograd's Jacobian of psi -> x[:N-1] for one unbatched psi."""
    k = psi.shape[-1]
    jac = jacobian(lambda p: transform(p)[:k], psi)
    sign, logdet = torch.linalg.slogdet(jac)
    assert sign != 0
    return logdet


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_forward_on_simplex_and_formula(n, batch_shape, tau):
    psi = _psi(batch_shape, n - 1, 2.0, seed=n)
    x = StickBreakingSimplexTransform(tau)(psi)
    assert x.shape == batch_shape + (n,) and x.dtype == F64
    assert constraints.simplex.check(x).all()
    torch.testing.assert_close(x.sum(-1), torch.ones(batch_shape, dtype=F64))
    # x_1 = beta_1, x_n = beta_n (1 - sum_{m<n} x_m), x_N = the rest.
    beta = torch.sigmoid(psi / tau)
    rest = torch.ones(batch_shape, dtype=F64)
    for j in range(n - 1):
        torch.testing.assert_close(x[..., j], beta[..., j] * rest)
        rest = rest - x[..., j]
    torch.testing.assert_close(x[..., -1], rest, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_is_torch_stick_breaking_after_scaling_and_offset(n):
    # torch's transform uses beta_n = sigmoid(y_n - log(N - n)) (n 1-indexed).
    tau = 0.7
    psi = _psi((4,), n - 1, 1.5, seed=n)
    offset = torch.log(torch.arange(n - 1, 0, -1, dtype=F64))
    expected = StickBreakingTransform()(psi / tau + offset)
    torch.testing.assert_close(StickBreakingSimplexTransform(tau)(psi), expected)


def test_first_row_of_birkhoff_stick_breaking():
    psi = _psi((5,), 3 * 3, 1.0, seed=0).reshape(5, 3, 3)
    x = StickBreakingBirkhoffTransform(0.4)(psi)
    torch.testing.assert_close(StickBreakingSimplexTransform(0.4)(psi[..., 0, :]), x[..., 0, :])


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("tau", [0.05, 1.0, 3.0])
def test_round_trip(n, batch_shape, tau):
    t = StickBreakingSimplexTransform(tau)
    psi = _psi(batch_shape, n - 1, 2.0, seed=n)
    x = t(psi)
    torch.testing.assert_close(t.inv(x), psi, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(t(t.inv(x)), x, rtol=1e-12, atol=0)


@settings(deadline=None, max_examples=30)
@given(
    k=st.integers(1, 7),
    tau=st.floats(0.01, 5.0),
    scale=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip_property(k, tau, scale, seed):
    # psi / tau up to ~ +-100: entries far below 1e-30 keep their relative precision.
    t = StickBreakingSimplexTransform(tau)
    psi = _psi((8,), k, scale * tau, seed)
    x = t(psi)
    assert constraints.simplex.check(x).all()
    torch.testing.assert_close(t.inv(x), psi, rtol=1e-9, atol=1e-9 * tau)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_low_temperature_keeps_precision(dtype):
    # psi / tau = (40, -20, 20, -10): entries down to 1e-35, above float32's tiny. torch's
    # transform clips beta at 1 - eps, which would put 1e-7 into the second entry.
    t = StickBreakingSimplexTransform(0.05)
    psi = torch.tensor([2.0, -1.0, 1.0, -0.5], dtype=dtype)
    x = t(psi)
    assert (x > 0).all()
    torch.testing.assert_close(
        t.inv(x), psi, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0
    )
    ladj = t.log_abs_det_jacobian(psi, x)
    assert torch.isfinite(ladj)


def test_inverse_finite_on_faces():
    t = StickBreakingSimplexTransform(0.5)
    x = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    psi = t.inv(x)
    assert psi.shape == (3, 2) and torch.isfinite(psi).all()
    torch.testing.assert_close(t(psi), x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_log_abs_det_jacobian_matches_autograd(n, tau):
    t = StickBreakingSimplexTransform(tau)
    psi = _psi((3,), n - 1, 2.0 * tau, seed=n)
    ladj = t.log_abs_det_jacobian(psi, t(psi))
    assert ladj.shape == (3,)
    expected = torch.stack([_free_jacobian_logdet(t, p) for p in psi])
    torch.testing.assert_close(ladj, expected, rtol=1e-10, atol=1e-10)


def test_log_abs_det_jacobian_matches_torch_at_unit_temperature():
    # Same map up to a shift of psi, so the same Jacobian (torch computes it from log y).
    psi = _psi((6,), 4, 1.0, seed=3)
    offset = torch.log(torch.arange(4, 0, -1, dtype=F64))
    y = StickBreakingTransform()(psi + offset)
    expected = StickBreakingTransform().log_abs_det_jacobian(psi + offset, y)
    t = StickBreakingSimplexTransform(1.0)
    torch.testing.assert_close(t.log_abs_det_jacobian(psi, t(psi)), expected)


def test_batched_temperature():
    tau = torch.tensor([0.2, 1.0, 3.0], dtype=F64)
    psi = _psi((2, 3), 4, 1.0, seed=0)
    t = StickBreakingSimplexTransform(tau)
    x = t(psi)
    ladj = t.log_abs_det_jacobian(psi, x)
    assert x.shape == (2, 3, 5) and ladj.shape == (2, 3)
    torch.testing.assert_close(t.inv(x), psi)
    for i in range(3):
        ti = StickBreakingSimplexTransform(float(tau[i]))
        torch.testing.assert_close(x[:, i], ti(psi[:, i]))
        torch.testing.assert_close(ladj[:, i], ti.log_abs_det_jacobian(psi[:, i], x[:, i]))
    # A temperature with its own batch dimensions broadcasts with psi's.
    assert StickBreakingSimplexTransform(tau)(torch.zeros(2, dtype=F64)).shape == (3, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_psi_is_finite_with_gradients(dtype):
    t = StickBreakingSimplexTransform(0.1)
    psi = _psi((50,), 4, 1e3, seed=1, dtype=dtype).requires_grad_()
    x = t(psi)
    ladj = t.log_abs_det_jacobian(psi, x)
    back = t.inv(x)
    assert x.dtype == dtype and not torch.isnan(x).any()
    assert torch.isfinite(ladj).all() and torch.isfinite(back).all()
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(x.sum(-1), torch.ones(50, dtype=dtype), rtol=0, atol=tol)
    (x.sum() + ladj.sum()).backward()
    assert torch.isfinite(psi.grad).all()


def test_shapes_attributes_and_cache():
    t = StickBreakingSimplexTransform(0.5)
    assert t.forward_shape((5, 2, 3)) == (5, 2, 4)
    assert t.inverse_shape((5, 4)) == (5, 3)
    assert t.domain is constraints.real_vector and t.codomain is constraints.simplex
    assert t.bijective and isinstance(t, StickBreakingTransform)
    torch.testing.assert_close(t(torch.zeros(2, 0)), torch.ones(2, 1))
    assert t.inv(torch.ones(2, 1)).shape == (2, 0)
    assert t.log_abs_det_jacobian(torch.zeros(2, 0), torch.ones(2, 1)).shape == (2,)
    with pytest.raises(ValueError, match="psi"):
        t(torch.tensor(1.0))
    with pytest.raises(ValueError, match="x"):
        t.inv(torch.zeros(2, 0))
    assert t == StickBreakingSimplexTransform(0.5) and t != StickBreakingSimplexTransform(0.6)
    assert t != StickBreakingTransform()
    assert "0.5" in repr(t)
    cached = t.with_cache(1)
    assert cached == t and cached._cache_size == 1 and cached.with_cache(1) is cached
    psi = torch.randn(3)
    x = cached(psi)
    assert cached(psi) is x and cached.inv(x) is psi
    assert math.isclose(float(t(torch.zeros(1))[0]), 0.5)


@pytest.mark.parametrize(
    "temperature", [0.0, -1.0, float("nan"), float("inf"), torch.tensor([1.0, 0.0])]
)
def test_invalid_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        StickBreakingSimplexTransform(temperature)


def test_a_string_temperature_is_a_type_error():
    with pytest.raises(TypeError, match="temperature must be a positive float or a floating"):
        StickBreakingSimplexTransform("1")
