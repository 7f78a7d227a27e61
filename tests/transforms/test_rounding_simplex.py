"""Properties of rounding towards the simplex's vertices ([BP] section 3.2, categorical case)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.functional import jacobian

from pyro_permutations.transforms import RoundingSimplexTransform
from pyro_permutations.transforms.rounding_simplex import round_to_vertex

TAUS = [0.1, 0.5, 0.9]
BATCH_SHAPES = [(), (3,), (2, 3)]


def nearest_vertex(x):
    """Nearest one-hot vector in Euclidean distance, by comparing with all N vertices."""
    n = x.shape[-1]
    vertices = torch.eye(n, dtype=x.dtype)
    dist = (x.unsqueeze(-2) - vertices).pow(2).sum(-1)  # (..., N)
    return vertices[dist.argmin(-1)]


@settings(deadline=None, max_examples=30)
@given(
    n=st.integers(1, 7),
    batch_shape=st.sampled_from(BATCH_SHAPES),
    tau=st.sampled_from(TAUS),
    scale=st.sampled_from([0.1, 0.5, 2.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_forward_inverse_and_vertex(n, batch_shape, tau, scale, seed):
    generator = torch.Generator().manual_seed(seed)
    loc = torch.softmax(
        torch.randn(batch_shape + (n,), generator=generator, dtype=torch.float64), -1
    )
    psi = loc + scale * torch.randn(batch_shape + (n,), generator=generator, dtype=torch.float64)
    t = RoundingSimplexTransform(tau)
    x = t(psi)
    assert x.shape == psi.shape and x.dtype == torch.float64
    # x lies on the segment from psi to its nearest vertex (found by comparing distances).
    vertex = nearest_vertex(psi)
    torch.testing.assert_close(round_to_vertex(psi), vertex)
    torch.testing.assert_close(x, psi + (1 - tau) * (vertex - psi))
    # Rounding x gives the same vertex, its top entry leads by >= 1 - tau, the inverse is exact.
    torch.testing.assert_close(nearest_vertex(x), vertex)
    if n > 1:
        top2 = x.topk(2, -1).values
        assert (top2[..., 0] - top2[..., 1] >= 1 - tau - 1e-12).all()
    torch.testing.assert_close(t.inv(x), psi)
    ladj = t.log_abs_det_jacobian(psi, x)
    assert ladj.shape == batch_shape
    torch.testing.assert_close(ladj, torch.full(batch_shape, n * math.log(tau), dtype=ladj.dtype))


@pytest.mark.parametrize("tau", TAUS)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_log_abs_det_jacobian_matches_autograd(n, tau):
    generator = torch.Generator().manual_seed(n)
    t = RoundingSimplexTransform(tau)
    for _ in range(3):
        psi = torch.randn(n, generator=generator, dtype=torch.float64)
        sign, logabsdet = torch.linalg.slogdet(jacobian(t, psi))
        assert sign == 1
        torch.testing.assert_close(t.log_abs_det_jacobian(psi, t(psi)), logabsdet)


def test_gradient_flows_through_scaled_term():
    psi = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.arange(4.0, dtype=torch.float64)
    (RoundingSimplexTransform(0.3)(psi) * weights).sum().backward()
    torch.testing.assert_close(psi.grad, 0.3 * weights.expand(2, 4))


@pytest.mark.parametrize("n", [2, 3, 4])
def test_ties_are_broken_consistently(n):
    t = RoundingSimplexTransform(0.2)
    psi = torch.full((n,), 1.0 / n, dtype=torch.float64)
    torch.testing.assert_close(t.inv(t(psi)), psi)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    t = RoundingSimplexTransform(0.5)
    psi = torch.randn(3, 5, dtype=dtype, generator=torch.Generator().manual_seed(0))
    x = t(psi)
    assert x.dtype == dtype and t.inv(x).dtype == dtype
    assert t.log_abs_det_jacobian(psi, x).dtype == dtype
    torch.testing.assert_close(t.inv(x), psi)


def test_attributes_equality_shapes_and_cache():
    t = RoundingSimplexTransform(0.25)
    assert t.domain.event_dim == 1 and t.codomain.event_dim == 1
    assert t.bijective and t.sign == 1
    assert t == RoundingSimplexTransform(torch.tensor(0.25))
    assert t != RoundingSimplexTransform(0.5)
    assert hash(t) == hash(RoundingSimplexTransform(0.25))
    assert "0.25" in repr(t)
    assert t.with_cache(0) is t
    cached = t.with_cache(1)
    assert cached == t and cached._cache_size == 1
    psi = torch.randn(4)
    x = cached(psi)
    assert cached.inv(x) is psi
    assert t.forward_shape((2, 4)) == (2, 4) and t.inverse_shape((2, 4)) == (2, 4)
    with pytest.raises(ValueError, match="psi"):
        t(torch.tensor(1.0))
    with pytest.raises(ValueError, match="x"):
        t.inv(torch.zeros(3, 0))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, float("nan"), torch.ones(2)])
def test_invalid_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        RoundingSimplexTransform(bad)


@pytest.mark.parametrize("bad", ["0.5", True, None])
def test_a_temperature_that_is_not_a_number_is_a_type_error(bad):
    with pytest.raises(TypeError, match="temperature must be a real number"):
        RoundingSimplexTransform(bad)
