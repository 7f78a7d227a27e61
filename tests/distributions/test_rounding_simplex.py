"""Properties of the rounding distribution on the simplex ([BP] section 3.2, categorical case):
exact density with its hole, normalisation, the pmf of the rounded samples, shapes, arguments."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyro.distributions.testing.gof import multinomial_goodness_of_fit

from pyro_permutations.distributions import RoundingSimplex
from pyro_permutations.transforms import RoundingSimplexTransform

F64 = torch.float64
BATCH_SHAPES = [(), (3,), (2, 3)]


def expected_log_prob(loc, scale, tau, psi):
    """``log N(psi; loc, scale^2) - N log tau``, written out entry by entry."""
    n = psi.shape[-1]
    z = (psi - loc) / scale
    log_normal = -0.5 * z**2 - torch.log(torch.as_tensor(scale)) - 0.5 * math.log(2 * math.pi)
    return log_normal.sum(-1) - n * math.log(tau)


def argmax_pmf(loc, scale):
    """P(argmax psi = k) for independent psi_j ~ N(loc_j, scale_j^2), by 1-D quadrature of
    int phi_k(t) prod_{j != k} Phi_j(t) dt."""
    normal = torch.distributions.Normal(loc, scale)
    t = torch.linspace(-12.0, 12.0, 200_001, dtype=F64).unsqueeze(-1) * scale.max() + loc.mean()
    log_cdf = torch.special.log_ndtr((t - loc) / scale)
    log_integrand = normal.log_prob(t) + log_cdf.sum(-1, keepdim=True) - log_cdf
    return torch.trapezoid(log_integrand.exp(), t.squeeze(-1), dim=0)


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(1, 6),
    batch_shape=st.sampled_from(BATCH_SHAPES),
    tau=st.sampled_from([0.1, 0.5, 0.9]),
    seed=st.integers(0, 2**31 - 1),
)
def test_log_prob_matches_change_of_variables(n, batch_shape, tau, seed):
    generator = torch.Generator().manual_seed(seed)
    shape = batch_shape + (n,)
    loc = torch.softmax(torch.randn(shape, generator=generator, dtype=F64), -1)
    scale = 0.1 + 0.4 * torch.rand(shape, generator=generator, dtype=F64)
    d = RoundingSimplex(loc, scale, tau)
    assert d.batch_shape == batch_shape and d.event_shape == (n,)
    psi = loc + scale * torch.randn(shape, generator=generator, dtype=F64)
    x = tau * psi + (1 - tau) * torch.eye(n, dtype=F64)[psi.argmax(-1)]
    assert d.in_image(x).all()
    torch.testing.assert_close(d.log_prob(x), expected_log_prob(loc, scale, tau, psi))


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_rsample_lies_in_image_with_gradients(batch_shape, dtype):
    torch.manual_seed(0)
    loc = torch.randn(batch_shape + (4,), dtype=dtype, requires_grad=True)
    scale = torch.full((), 0.3, dtype=dtype, requires_grad=True)
    d = RoundingSimplex(loc, scale, 0.2)
    x = d.rsample((7,))
    assert x.shape == (7,) + batch_shape + (4,) and x.dtype == dtype
    log_q = d.log_prob(x)
    assert log_q.shape == (7,) + batch_shape and torch.isfinite(log_q).all()
    top2 = x.topk(2, -1).values
    assert (top2[..., 0] - top2[..., 1] >= 0.8 - 1e-5).all()
    x.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full_like(loc, 0.2 * 7))
    assert scale.grad is not None and torch.isfinite(scale.grad)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_hole(n):
    d = RoundingSimplex(torch.eye(n, dtype=F64)[0], 0.3, 0.4)
    assert d.log_prob(torch.full((n,), 1.0 / n, dtype=F64)) == -math.inf
    # x is in the image exactly when its top entry leads the next one by at least 1 - tau.
    torch.manual_seed(n)
    x = torch.rand(500, n, dtype=F64) * 1.5
    top2 = x.topk(min(2, n), -1).values
    in_image = top2[..., 0] - top2[..., 1] >= 0.6
    assert 0 < in_image.sum() < 500
    log_q = d.log_prob(x)
    assert torch.equal(torch.isfinite(log_q), in_image) and torch.equal(d.in_image(x), in_image)
    psi = RoundingSimplexTransform(0.4).inv(x)
    torch.testing.assert_close(log_q[in_image], expected_log_prob(d.loc, 0.3, 0.4, psi)[in_image])


def test_log_prob_gradient_is_finite_off_the_image():
    loc = torch.tensor([0.6, 0.3, 0.1], dtype=F64, requires_grad=True)
    x = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]], dtype=F64)
    log_q = RoundingSimplex(loc, 0.3, 0.1).log_prob(x)
    assert log_q[0] == -math.inf and torch.isfinite(log_q[1])
    log_q[1].backward()
    assert torch.isfinite(loc.grad).all()


def _midpoints(lo, hi, m):
    return lo + (hi - lo) * (torch.arange(m, dtype=F64) + 0.5) / m


@pytest.mark.parametrize("tau", [0.3, 0.8])
def test_density_integrates_to_one_n2(tau):
    # Midpoint rule in u = x_1 - x_2, v = x_1 + x_2 (dx = du dv / 2), with cell edges on the
    # hole's boundary |u| = 1 - tau (where the density jumps), over a box holding all but
    # ~1e-9 of the mass; the hole itself must integrate to 0.
    loc, scale = torch.tensor([0.7, 0.3], dtype=F64), torch.tensor([0.4, 0.25], dtype=F64)
    d = RoundingSimplex(loc, scale, tau)
    m, edge = 400, 1 - tau
    u = torch.cat(
        [_midpoints(-5.0, -edge, m), _midpoints(-edge, edge, m), _midpoints(edge, 5.0, m)]
    )
    du = torch.cat([torch.full((m,), (5.0 - edge) / m), torch.full((m,), 2 * edge / m)])
    du = torch.cat([du, du[:m]]).to(F64)
    v = _midpoints(-5.0, 7.0, 2 * m)
    uu, vv = torch.meshgrid(u, v, indexing="ij")
    x = torch.stack([(vv + uu) / 2, (vv - uu) / 2], -1)
    density = d.log_prob(x).exp()
    assert (density[m : 2 * m] == 0).all()
    total = (density.sum(-1) * du).sum() * (12.0 / (2 * m)) / 2
    assert abs(total.item() - 1) < 1e-6


@pytest.mark.parametrize("tau", [0.1, 0.6])
def test_rounded_samples_follow_the_argmax_pmf(tau):
    # round(x) = argmax(psi): its pmf is the Gaussian argmax's, whatever the temperature.
    torch.manual_seed(1)
    loc = torch.softmax(torch.tensor([1.0, 0.5, -0.5], dtype=F64), -1)
    scale = torch.tensor([0.3, 0.5, 0.4], dtype=F64)
    probs = argmax_pmf(loc, scale)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=F64))
    x = RoundingSimplex(loc, scale, tau).sample((20_000,))
    counts = torch.bincount(x.argmax(-1), minlength=3).to(F64)
    assert multinomial_goodness_of_fit(probs, counts) > 1e-3


def test_broadcasting_infer_shapes_and_expand():
    loc = torch.softmax(torch.randn(4), -1)
    d = RoundingSimplex(loc, torch.full((3, 1), 0.2), 0.5)
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    assert RoundingSimplex.infer_shapes(loc=(4,), scale=(3, 1)) == ((3,), (4,))
    assert d.loc.shape == d.scale.shape == (3, 4) and d.temperature == 0.5
    assert d.support.event_dim == 1 and d.has_rsample
    assert d.log_prob(torch.randn(5, 1, 4)).shape == (5, 3)
    e = d.expand((2, 3))
    assert type(e) is RoundingSimplex and e.batch_shape == (2, 3) and e.temperature == 0.5
    x = d.sample()
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x).expand(2, 3))
    assert e.rsample((5,)).shape == (5, 2, 3, 4)


def test_in_pyro_model_and_guide():
    def guide():
        return pyro.sample("x", RoundingSimplex(torch.tensor([0.5, 0.3, 0.2]), 0.2, 0.1))

    trace = poutine.trace(guide).get_trace()
    assert trace.nodes["x"]["value"].shape == (3,) and torch.isfinite(trace.log_prob_sum())


@pytest.mark.parametrize("bad", [0.0, 1.0, 2.0, -0.1])
def test_invalid_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        RoundingSimplex(torch.zeros(3), 0.3, bad)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_invalid_scale(bad):
    with pytest.raises(ValueError, match="scale"):
        RoundingSimplex(torch.zeros(3), torch.tensor(bad), 0.5, validate_args=True)


def test_invalid_loc():
    with pytest.raises(ValueError, match="loc"):
        RoundingSimplex(torch.tensor(0.0), 0.3, 0.5)
    with pytest.raises(ValueError, match="loc"):
        RoundingSimplex(torch.zeros(3, 0), 0.3, 0.5)
    with pytest.raises(ValueError, match="loc"):
        RoundingSimplex(torch.zeros(3, dtype=torch.long), 0.3, 0.5)


def test_validate_sample_rejects_wrong_shape():
    d = RoundingSimplex(torch.zeros(3), 0.3, 0.5, validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.zeros(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_cuda(dtype):
    kw = dict(device="cuda", dtype=dtype)
    d = RoundingSimplex(torch.rand(3, 4, **kw), 0.2 * torch.ones(3, 4, **kw), 0.3)
    x = d.rsample((2,))
    assert x.device.type == "cuda" and x.dtype == dtype and x.shape == (2, 3, 4)
    lp = d.log_prob(x)
    assert lp.device.type == "cuda" and torch.isfinite(lp).all()
    assert d.log_prob(torch.full((4,), 0.25, **kw)).isneginf().all()
