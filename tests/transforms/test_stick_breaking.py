"""Properties of the stick-breaking transform onto the Birkhoff polytope ([BP] section 3.1)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.functional import jacobian

from pyro_permutations.constraints import birkhoff
from pyro_permutations.transforms.stick_breaking import StickBreakingBirkhoffTransform

F64 = torch.float64
EPS64 = torch.finfo(F64).eps


def _psi(batch_shape, n, scale, seed, dtype=F64):
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch_shape + (n - 1, n - 1), generator=generator, dtype=dtype)


def _assert_birkhoff(x, n, atol=1e-10):
    ones = torch.ones(x.shape[:-1], dtype=x.dtype)
    torch.testing.assert_close(x.sum(-1), ones, rtol=0, atol=atol)
    torch.testing.assert_close(x.sum(-2), ones, rtol=0, atol=atol)
    # The last row and column are completions 1 - sum(...): exact up to a few ulps.
    assert (x >= -n * EPS64).all()
    assert birkhoff.check(x).all()


def _free_jacobian_logdet(transform, psi):
    """log|det| of autograd's Jacobian of psi -> x[:N-1, :N-1], both flattened."""
    k = psi.shape[-1]

    def f(flat):
        return transform(flat.reshape(k, k))[:k, :k].reshape(-1)

    jac = jacobian(f, psi.reshape(-1))
    sign, logdet = torch.linalg.slogdet(jac)
    assert sign != 0
    return logdet


# ----------------------------------------------------------------------------------------------
# Forward lands in the polytope; the first row is ordinary stick-breaking.


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_forward_in_birkhoff(n, batch_shape, tau, scale):
    psi = _psi(batch_shape, n, scale, seed=n + 10 * len(batch_shape))
    x = StickBreakingBirkhoffTransform(tau)(psi)
    assert x.shape == batch_shape + (n, n) and x.dtype == F64
    _assert_birkhoff(x, n)


@settings(deadline=None, max_examples=40, derandomize=True)
@given(
    n=st.integers(2, 6),
    tau=st.floats(0.05, 5.0),
    scale=st.floats(0.0, 50.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_in_birkhoff_property(n, tau, scale, seed):
    psi = _psi((4,), n, scale, seed)
    _assert_birkhoff(StickBreakingBirkhoffTransform(tau)(psi), n)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("scale", [1.0, 3.0, 30.0, 300.0])
def test_last_row_and_column_never_negative_beyond_rounding(n, scale):
    # The bounds of [BP] keep every partial matrix completable, so the completed last row and
    # column are non-negative; only rounding of 1 - sum(...) remains.
    psi = _psi((5000,), n, scale, seed=n)
    x = StickBreakingBirkhoffTransform(0.5)(psi)
    assert x.min() >= -n * EPS64
    assert (x.sum(-1) - 1).abs().max() <= n * EPS64
    assert (x.sum(-2) - 1).abs().max() <= n * EPS64


@pytest.mark.parametrize("n", [2, 4, 6])
@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_first_row_is_stick_breaking(n, tau):
    psi = _psi((7,), n, 2.0, seed=3)
    x = StickBreakingBirkhoffTransform(tau)(psi)
    beta = torch.sigmoid(psi[..., 0, :] / tau)
    remaining = torch.ones(7, dtype=F64)
    for j in range(n - 1):
        torch.testing.assert_close(x[..., 0, j], beta[..., j] * remaining)
        remaining = remaining * (1 - beta[..., j])
    torch.testing.assert_close(x[..., 0, n - 1], remaining)


def test_zero_psi_first_entry_is_half():
    x = StickBreakingBirkhoffTransform()(torch.zeros(2, 2, dtype=F64))
    assert x[0, 0] == 0.5


# ----------------------------------------------------------------------------------------------
# Bijectivity.


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("tau", [0.1, 1.0, 2.0])
def test_round_trip(n, batch_shape, tau):
    t = StickBreakingBirkhoffTransform(tau)
    psi = _psi(batch_shape, n, 2.0 * tau, seed=n)
    x = t(psi)
    torch.testing.assert_close(t.inv(x), psi, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(t(t.inv(x)), x, rtol=0, atol=1e-12)


def test_inverse_finite_on_faces():
    # A permutation matrix is a vertex: every beta is 0 or 1 and the inverse clamps.
    t = StickBreakingBirkhoffTransform(0.5)
    x = torch.eye(4, dtype=F64)[[2, 0, 3, 1]]
    psi = t.inv(x)
    assert psi.shape == (3, 3) and torch.isfinite(psi).all()
    torch.testing.assert_close(t(psi), x, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# log|det J| equals autograd's.


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_log_abs_det_jacobian_matches_autograd(n, tau):
    t = StickBreakingBirkhoffTransform(tau)
    psi = _psi((3,), n, 1.5 * tau, seed=n)
    ladj = t.log_abs_det_jacobian(psi, t(psi))
    assert ladj.shape == (3,)
    expected = torch.stack([_free_jacobian_logdet(t, p) for p in psi])
    torch.testing.assert_close(ladj, expected, rtol=1e-9, atol=1e-9)


def _face_psi(n, tau, seed):
    """``|psi / tau| = 30`` everywhere: every beta within 1e-13 of 0 or 1."""
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (n - 1, n - 1), generator=generator).to(F64) * 2 - 1
    return 30 * tau * signs


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_log_abs_det_jacobian_near_faces(n):
    # Some betas within 1e-13 of 0 or 1 (the last free entry, and the first row's last free
    # entry), the rest moderate: still matches autograd.
    tau = 0.5
    t = StickBreakingBirkhoffTransform(tau)
    psi = _psi((), n, tau, seed=n)
    face = torch.zeros_like(psi, dtype=torch.bool)
    face[-1, -1] = face[0, -1] = True
    psi = torch.where(face, _face_psi(n, tau, seed=n), psi)
    ladj = t.log_abs_det_jacobian(psi, t(psi))
    torch.testing.assert_close(ladj, _free_jacobian_logdet(t, psi), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("seed", range(5))
def test_log_abs_det_jacobian_finite_near_vertices(n, seed):
    # Every entry near a face: for N >= 4 some gaps u - l round to exactly 0 in float64
    # (the true Jacobian is below the dtype's resolution); log(u - l) is clamped at tiny.
    tau = 0.5
    t = StickBreakingBirkhoffTransform(tau)
    psi = _face_psi(n, tau, seed)
    x = t(psi)
    ladj = t.log_abs_det_jacobian(psi, x)
    assert torch.isfinite(ladj)
    assert torch.isfinite(t.inv(x)).all()
    if n <= 3:
        torch.testing.assert_close(ladj, _free_jacobian_logdet(t, psi), rtol=1e-6, atol=1e-6)


def test_log_abs_det_jacobian_batched_temperature():
    tau = torch.tensor([0.2, 1.0, 3.0], dtype=F64)
    psi = _psi((2, 3), 4, 1.0, seed=0)
    x = StickBreakingBirkhoffTransform(tau)(psi)
    ladj = StickBreakingBirkhoffTransform(tau).log_abs_det_jacobian(psi, x)
    assert ladj.shape == (2, 3)
    for i in range(3):
        t = StickBreakingBirkhoffTransform(float(tau[i]))
        torch.testing.assert_close(x[:, i], t(psi[:, i]))
        torch.testing.assert_close(ladj[:, i], t.log_abs_det_jacobian(psi[:, i], x[:, i]))


def test_temperature_batch_that_does_not_broadcast_names_both_arguments():
    t = StickBreakingBirkhoffTransform(torch.ones(3, dtype=F64))
    psi = _psi((2,), 3, 1.0, seed=0)
    with pytest.raises(ValueError, match=r"psi \(2,\) and temperature \(3,\) do not broadcast"):
        t(psi)
    x = StickBreakingBirkhoffTransform(1.0)(psi)
    with pytest.raises(ValueError, match=r"x \(2,\) and temperature \(3,\) do not broadcast"):
        t.inv(x)


# ----------------------------------------------------------------------------------------------
# Numerical safety.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extreme_psi_is_finite(dtype):
    t = StickBreakingBirkhoffTransform(0.5)
    psi = _psi((50,), 5, 1e3, seed=1, dtype=dtype).clamp(-1e3, 1e3).requires_grad_()
    x = t(psi)
    ladj = t.log_abs_det_jacobian(psi, x)
    back = t.inv(x)
    assert not torch.isnan(x).any() and torch.isfinite(ladj).all() and torch.isfinite(back).all()
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    ones = torch.ones(50, 5, dtype=dtype)
    torch.testing.assert_close(x.sum(-1), ones, rtol=0, atol=tol)
    torch.testing.assert_close(x.sum(-2), ones, rtol=0, atol=tol)
    (x.sum() + ladj.sum() + back.sum()).backward()
    assert torch.isfinite(psi.grad).all()


def test_float32_smoke():
    t = StickBreakingBirkhoffTransform(1.0)
    psi = torch.linspace(-1e3, 1e3, 36, dtype=torch.float32).reshape(4, 3, 3)
    x = t(psi)
    assert x.dtype == torch.float32 and not torch.isnan(x).any()
    assert torch.isfinite(t.log_abs_det_jacobian(psi, x)).all()


@pytest.mark.parametrize("tau", [0.1, 0.3, 1.0])
def test_float32_log_det_agrees_with_float64_near_faces(tau):
    """Near the faces of the polytope the gaps ``u - l`` are differences of nearly equal sums of
    X; float32 must not lose them (it once gave log-Jacobians hundreds of nats off). The log-det
    of a float32 Psi equals the float64 one of the same Psi."""
    t = StickBreakingBirkhoffTransform(tau)
    psi32 = _psi((200,), 4, 3.0, seed=0, dtype=torch.float32) + _psi((200,), 4, 1.0, seed=1).float()
    psi64 = psi32.double()
    ladj32 = t.log_abs_det_jacobian(psi32, t(psi32))
    ladj64 = t.log_abs_det_jacobian(psi64, t(psi64))
    assert ladj32.dtype == torch.float32
    torch.testing.assert_close(ladj32.double(), ladj64, rtol=1e-6, atol=1e-4)
    x32 = t(psi32)  # and the float32 matrix is the float64 one, correctly rounded
    torch.testing.assert_close(x32.double(), t(psi64), rtol=0, atol=1e-7)


def test_float32_log_prob_of_a_sample_agrees_with_float64():
    """What SVI computes: ``log_prob`` of a sample the distribution's transform just made
    (``rsample`` does ``transform(loc + scale * eps)``; the cache hands back its Psi) in float32
    matches float64 at the same base draw."""
    from pyro_permutations import StickBreakingBirkhoff

    loc = _psi((100,), 4, 3.0, seed=2, dtype=torch.float32)
    eps = _psi((100,), 4, 1.0, seed=3, dtype=torch.float32)
    lps = {}
    for dtype in (torch.float32, torch.float64):
        d = StickBreakingBirkhoff(loc.to(dtype), 1.0, temperature=0.3)
        lps[dtype] = d.log_prob(d.transforms[0](loc.to(dtype) + eps.to(dtype)))
    torch.testing.assert_close(
        lps[torch.float32].double(), lps[torch.float64], rtol=1e-5, atol=1e-3
    )


# ----------------------------------------------------------------------------------------------
# Shapes, arguments, equality, caching.


def test_shapes():
    t = StickBreakingBirkhoffTransform()
    assert t.forward_shape((5, 2, 3, 3)) == (5, 2, 4, 4)
    assert t.inverse_shape((5, 4, 4)) == (5, 3, 3)
    assert t.forward_shape((0, 0)) == (1, 1)
    torch.testing.assert_close(t(torch.zeros(2, 0, 0)), torch.ones(2, 1, 1))
    assert t.inv(torch.ones(2, 1, 1)).shape == (2, 0, 0)
    with pytest.raises(ValueError, match="shape"):
        t.forward_shape((3, 4))
    with pytest.raises(ValueError, match="shape"):
        t.inverse_shape((4,))
    with pytest.raises(ValueError, match="psi"):
        t(torch.zeros(2, 3))
    assert t.domain.event_dim == 2 and t.codomain is birkhoff
    assert t.bijective and t.sign == 1


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        StickBreakingBirkhoffTransform(temperature)


@pytest.mark.parametrize("temperature", ["1", True, torch.tensor([1, 2])])
def test_a_temperature_that_is_not_a_number_is_a_type_error(temperature):
    with pytest.raises(TypeError, match="temperature must be a positive float or a floating"):
        StickBreakingBirkhoffTransform(temperature)


def test_invalid_temperature_tensor():
    with pytest.raises(ValueError, match="temperature"):
        StickBreakingBirkhoffTransform(torch.tensor([1.0, 0.0]))


def test_eq_and_cache():
    t = StickBreakingBirkhoffTransform(0.5)
    assert t == StickBreakingBirkhoffTransform(0.5)
    assert t != StickBreakingBirkhoffTransform(0.6)
    assert StickBreakingBirkhoffTransform(torch.tensor([0.5, 1.0])) == (
        StickBreakingBirkhoffTransform(torch.tensor([0.5, 1.0]))
    )
    cached = t.with_cache(1)
    assert cached == t and cached._cache_size == 1 and cached.with_cache(1) is cached
    psi = torch.randn(3, 3)
    x = cached(psi)
    assert cached(psi) is x and cached.inv(x) is psi
    assert t.inv.with_cache(1).inv == t


def test_eq_compares_tensor_and_number_temperatures():
    assert StickBreakingBirkhoffTransform(0.5) == StickBreakingBirkhoffTransform(torch.tensor(0.5))
    assert StickBreakingBirkhoffTransform(torch.tensor(0.5)) == StickBreakingBirkhoffTransform(0.5)
    assert StickBreakingBirkhoffTransform(torch.tensor([0.5, 0.5])) != (
        StickBreakingBirkhoffTransform(0.5)
    )
    # in the tensor's dtype: 0.1 is not a float32 number, so a float32 comparison would differ
    tau64 = torch.tensor(0.1, dtype=torch.float64)
    assert StickBreakingBirkhoffTransform(0.1) == StickBreakingBirkhoffTransform(tau64)
    assert StickBreakingBirkhoffTransform(tau64) == StickBreakingBirkhoffTransform(0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_eq_is_false_for_temperatures_on_different_devices():
    tau = torch.tensor([0.5, 1.0])
    t_cpu, t_cuda = StickBreakingBirkhoffTransform(tau), StickBreakingBirkhoffTransform(tau.cuda())
    assert t_cuda != t_cpu and t_cpu != t_cuda
    assert t_cuda == StickBreakingBirkhoffTransform(tau.cuda())
    # A number is compared on the tensor's device.
    assert StickBreakingBirkhoffTransform(tau[:1].cuda()) != StickBreakingBirkhoffTransform(0.6)
    assert StickBreakingBirkhoffTransform(tau[0].cuda()) == StickBreakingBirkhoffTransform(0.5)
