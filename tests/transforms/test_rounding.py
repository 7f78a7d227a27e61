import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.ops import all_permutations, perm_to_matrix
from pyro_permutations.transforms.rounding import RoundingBirkhoffTransform

TAUS = [0.1, 0.5, 0.9]
BATCH_SHAPES = [(), (3,), (2, 3)]


def nearest_vertex(x):
    """Nearest permutation matrix in Frobenius norm, by enumerating all n! permutations."""
    n = x.shape[-1]
    vertices = perm_to_matrix(all_permutations(n), dtype=x.dtype)  # (n!, n, n)
    dist = (x.unsqueeze(-3) - vertices).pow(2).sum((-1, -2))  # (..., n!)
    return vertices[dist.argmin(-1)]


@settings(deadline=None, max_examples=30)
@given(
    n=st.integers(2, 6),
    batch_shape=st.sampled_from(BATCH_SHAPES),
    tau=st.sampled_from(TAUS),
    scale=st.sampled_from([0.1, 0.5, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_inverse_and_vertex(n, batch_shape, tau, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    loc = torch.rand(batch_shape + (n, n), generator=generator, dtype=torch.float64) / n
    psi = loc + scale * torch.randn(batch_shape + (n, n), generator=generator, dtype=torch.float64)
    t = RoundingBirkhoffTransform(tau)
    x = t(psi)
    assert x.shape == psi.shape and x.dtype == torch.float64
    # x lies on the segment from psi to its nearest vertex (found by brute force).
    vertex = nearest_vertex(psi)
    torch.testing.assert_close(x, psi + (1 - tau) * (vertex - psi))
    # Rounding x gives the same vertex, so the inverse is exact.
    torch.testing.assert_close(nearest_vertex(x), vertex)
    torch.testing.assert_close(t.inv(x), psi)
    ladj = t.log_abs_det_jacobian(psi, x)
    assert ladj.shape == batch_shape
    torch.testing.assert_close(
        ladj, torch.full(batch_shape, n * n * math.log(tau), dtype=ladj.dtype)
    )


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("n", [2, 3, 4])
def test_log_abs_det_jacobian_matches_autograd(n, tau):
    generator = torch.Generator().manual_seed(n)
    t = RoundingBirkhoffTransform(tau)
    for _ in range(3):
        psi = torch.randn(n, n, generator=generator, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(t, psi).reshape(n * n, n * n)
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign == 1
        torch.testing.assert_close(t.log_abs_det_jacobian(psi, t(psi)), logabsdet)


def test_gradient_flows_through_scaled_term():
    psi = torch.randn(2, 4, 4, dtype=torch.float64, requires_grad=True)
    t = RoundingBirkhoffTransform(0.3)
    (t(psi) * torch.arange(16.0, dtype=torch.float64).reshape(4, 4)).sum().backward()
    expected = 0.3 * torch.arange(16.0, dtype=torch.float64).reshape(4, 4).expand(2, 4, 4)
    torch.testing.assert_close(psi.grad, expected)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_ties_are_broken_consistently(n):
    # Every permutation is a nearest vertex of a constant matrix; x still inverts exactly.
    t = RoundingBirkhoffTransform(0.2)
    psi = torch.full((n, n), 1.0 / n, dtype=torch.float64)
    x = t(psi)
    torch.testing.assert_close(t.inv(x), psi)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    t = RoundingBirkhoffTransform(0.5)
    psi = torch.randn(3, 5, 5, dtype=dtype, generator=torch.Generator().manual_seed(0))
    x = t(psi)
    assert x.dtype == dtype and t.inv(x).dtype == dtype
    assert t.log_abs_det_jacobian(psi, x).dtype == dtype
    torch.testing.assert_close(t.inv(x), psi)


def test_attributes_equality_and_cache():
    t = RoundingBirkhoffTransform(0.25)
    assert t.domain.event_dim == 2 and t.codomain.event_dim == 2
    assert t.bijective and t.sign == 1
    assert t == RoundingBirkhoffTransform(torch.tensor(0.25))
    assert t != RoundingBirkhoffTransform(0.5)
    assert hash(t) == hash(RoundingBirkhoffTransform(0.25))
    assert "0.25" in repr(t)
    assert t.with_cache(0) is t
    cached = t.with_cache(1)
    assert cached == t and cached._cache_size == 1
    psi = torch.randn(4, 4)
    x = cached(psi)
    assert cached.inv(x) is psi
    assert t.forward_shape((2, 4, 4)) == (2, 4, 4)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, float("nan"), torch.ones(2)])
def test_invalid_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        RoundingBirkhoffTransform(bad)


@pytest.mark.parametrize("bad", ["0.5", True, None])
def test_a_temperature_that_is_not_a_number_is_a_type_error(bad):
    with pytest.raises(TypeError, match="temperature must be a real number"):
        RoundingBirkhoffTransform(bad)
