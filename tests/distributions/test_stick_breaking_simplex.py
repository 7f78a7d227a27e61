"""Properties of the stick-breaking distribution on the simplex ([BP] section 3.1, categorical
case): exact density, normalisation, zero-temperature limit, shapes and arguments."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.distributions import Normal
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from torch.autograd.functional import jacobian
from torch.distributions import constraints

from pyro_permutations.distributions import StickBreakingBirkhoff, StickBreakingSimplex
from pyro_permutations.transforms import StickBreakingSimplexTransform

F64 = torch.float64


def _params(loc_shape, scale_shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    loc = torch.randn(loc_shape, generator=generator, dtype=F64)
    scale = 0.2 + torch.rand(scale_shape, generator=generator, dtype=F64)
    return loc, scale


# ----------------------------------------------------------------------------------------------
# Shapes.


@pytest.mark.parametrize(
    "loc_shape, scale_shape, tau_shape, batch_shape",
    [
        ((2,), (2,), None, ()),
        ((3, 2), (2,), None, (3,)),
        ((2,), (4, 1, 2), (3,), (4, 3)),
        ((2, 1), (1,), None, (2,)),
        ((1,), (1,), (3,), (3,)),
        ((0,), (0,), None, ()),
    ],
)
@pytest.mark.parametrize("sample_shape", [(), (4,), (2, 3)])
def test_shapes(loc_shape, scale_shape, tau_shape, batch_shape, sample_shape):
    loc, scale = _params(loc_shape, scale_shape)
    tau = 0.7 if tau_shape is None else torch.full(tau_shape, 0.7, dtype=F64)
    n = torch.broadcast_shapes(loc_shape, scale_shape)[-1] + 1
    d = StickBreakingSimplex(loc, scale, temperature=tau)
    assert d.batch_shape == batch_shape and d.event_shape == (n,)
    assert d.loc.shape == d.scale.shape == batch_shape + (n - 1,)
    assert d.has_rsample and d.support is constraints.simplex
    expected = StickBreakingSimplex.infer_shapes(
        loc_shape, scale_shape, () if tau_shape is None else tau_shape
    )
    assert expected == (d.batch_shape, d.event_shape)
    x = d.rsample(sample_shape)
    assert x.shape == sample_shape + batch_shape + (n,) and x.dtype == F64
    assert d.sample(sample_shape).shape == x.shape
    assert constraints.simplex.check(x).all()
    assert d.log_prob(x).shape == sample_shape + batch_shape
    assert d.zero_temperature_probs().shape == batch_shape + (n,)


@pytest.mark.parametrize("tau", [0.5, torch.tensor([0.5, 2.0], dtype=F64)])
def test_expand(tau):
    loc, scale = _params((2, 3), (3,))
    d = StickBreakingSimplex(loc, scale, tau)
    e = d.expand((5, 2))
    assert type(e) is StickBreakingSimplex
    assert e.batch_shape == (5, 2) and e.event_shape == (4,)
    assert e.loc.shape == e.scale.shape == (5, 2, 3)
    if isinstance(tau, torch.Tensor):
        assert e.temperature.shape == (5, 2)
    x = e.rsample((3,))
    assert x.shape == (3, 5, 2, 4)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x))
    with pytest.raises((ValueError, RuntimeError)):
        d.expand((3,))


# ----------------------------------------------------------------------------------------------
# The density.


def _log_prob_by_autograd(loc, scale, tau, x):
    """log N(psi; loc, scale) - log|det d x[:N-1] / d psi| for one unbatched x."""
    k = x.shape[-1] - 1
    t = StickBreakingSimplexTransform(tau)
    psi = t.inv(x)
    _, logdet = torch.linalg.slogdet(jacobian(lambda p: t(p)[:k], psi))
    return Normal(loc, scale).log_prob(psi).sum(-1) - logdet


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_log_prob_matches_change_of_variables(n, tau):
    loc, scale = _params((n - 1,), (n - 1,), seed=n)
    d = StickBreakingSimplex(loc, scale, tau)
    x = d.rsample((4,))
    log_prob = d.log_prob(x)
    assert torch.isfinite(log_prob).all()
    expected = torch.stack([_log_prob_by_autograd(loc, scale, tau, xi) for xi in x])
    torch.testing.assert_close(log_prob, expected, rtol=1e-8, atol=1e-8)
    # Without the transform's cache (x rebuilt) the inverse gives the same density.
    torch.testing.assert_close(d.log_prob(x.clone()), log_prob, rtol=1e-8, atol=1e-8)


def test_density_n2_is_logit_normal():
    # x_1 = sigmoid(psi / tau) with psi ~ N(loc, scale): a logit-normal with scale / tau.
    loc, scale, tau = 0.4, 1.3, 0.6
    d = StickBreakingSimplex(torch.tensor([loc], dtype=F64), scale, tau)
    grid = torch.linspace(0.01, 0.99, 99, dtype=F64)
    logit = torch.log(grid) - torch.log1p(-grid)
    expected = Normal(loc / tau, scale / tau).log_prob(logit) - torch.log(grid * (1 - grid))
    torch.testing.assert_close(d.log_prob(torch.stack([grid, 1 - grid], -1)), expected)


def test_first_row_of_birkhoff_is_this_distribution_n2():
    # For N = 2 the Birkhoff matrix is determined by its first row.
    loc, scale = _params((1,), (1,), seed=1)
    d = StickBreakingSimplex(loc, scale, 0.3)
    b = StickBreakingBirkhoff(loc.reshape(1, 1), scale.reshape(1, 1), 0.3)
    x = d.sample((10,))
    matrix = torch.stack([x, x.flip(-1)], -2)
    torch.testing.assert_close(d.log_prob(x), b.log_prob(matrix))


@pytest.mark.parametrize("loc, scale, tau", [((0.3, -0.5), 0.8, 0.7), ((1.0, 0.2), 1.5, 1.0)])
def test_density_integrates_to_one_n3(loc, scale, tau):
    # Midpoint rule over the triangle in stick coordinates: x_1 = u, x_2 = v (1 - u),
    # dx_1 dx_2 = (1 - u) du dv.
    d = StickBreakingSimplex(torch.tensor(loc, dtype=F64), scale, tau)
    m = 1000
    mid = (torch.arange(m, dtype=F64) + 0.5) / m
    u, v = torch.meshgrid(mid, mid, indexing="ij")
    x = torch.stack([u, v * (1 - u), (1 - u) * (1 - v)], -1)
    total = (d.log_prob(x).exp() * (1 - u)).sum() / m**2
    assert abs(total.item() - 1) < 2e-3


# ----------------------------------------------------------------------------------------------
# Zero-temperature limit: [BP] supplement, pi_1 = rho_1, pi_n = rho_n prod_{m<n} (1 - rho_m).


def test_zero_temperature_probs_formula():
    loc, scale = _params((3, 4), (4,), seed=2)
    d = StickBreakingSimplex(loc, scale, 0.5)
    pi = d.zero_temperature_probs()
    rho = torch.distributions.Normal(0.0, 1.0).cdf(loc / scale)  # P(psi_n > 0)
    expected = [rho[..., 0]]
    for j in range(1, 4):
        expected.append(rho[..., j] * torch.prod(1 - rho[..., :j], -1))
    expected.append(torch.prod(1 - rho, -1))
    torch.testing.assert_close(pi, torch.stack(expected, -1))
    torch.testing.assert_close(pi.sum(-1), torch.ones(3, dtype=F64))


def test_every_categorical_is_a_limit():
    pi = torch.tensor([0.1, 0.4, 0.2, 0.3], dtype=F64)
    rho = pi[:-1] / (1 - torch.cumsum(pi, 0)[:-1] + pi[:-1])
    loc = torch.distributions.Normal(0.0, 1.0).icdf(rho)
    torch.testing.assert_close(StickBreakingSimplex(loc, 1.0).zero_temperature_probs(), pi)


def test_low_temperature_samples_follow_the_limit_pmf():
    # At tau = 1e-3 almost every sample is within 1e-3 of a vertex; the argmax is that vertex.
    torch.manual_seed(0)
    loc, scale = torch.tensor([-0.3, 0.5, 0.0], dtype=F64), torch.tensor([1.0, 0.5, 2.0], dtype=F64)
    d = StickBreakingSimplex(loc, scale, 1e-3)
    x = d.sample((20_000,))
    assert (x.amax(-1) > 0.99).float().mean() > 0.99
    counts = torch.bincount(x.argmax(-1), minlength=4).to(F64)
    assert multinomial_goodness_of_fit(d.zero_temperature_probs(), counts) > 1e-3


# ----------------------------------------------------------------------------------------------
# Gradients, Pyro, arguments, float32.


def test_gradients_finite():
    loc, scale = _params((3, 2), (2,))
    loc.requires_grad_()
    scale.requires_grad_()
    d = StickBreakingSimplex(loc, scale, 0.5)
    x = d.rsample((5,))
    (d.log_prob(x).sum() + (x * torch.tensor([1.0, -2.0, 0.5], dtype=F64)).sum()).backward()
    assert torch.isfinite(loc.grad).all() and loc.grad.abs().sum() > 0
    assert torch.isfinite(scale.grad).all() and scale.grad.abs().sum() > 0


def test_in_pyro_model_and_guide():
    def model():
        return pyro.sample("x", StickBreakingSimplex(torch.zeros(2), 1.0, 0.5))

    trace = poutine.trace(model).get_trace()
    assert trace.nodes["x"]["value"].shape == (3,) and torch.isfinite(trace.log_prob_sum())


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_invalid_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        StickBreakingSimplex(torch.zeros(2), torch.full((2,), scale), validate_args=True)


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), torch.tensor([1.0, -1.0])])
def test_invalid_temperature(tau):
    with pytest.raises(ValueError, match="temperature"):
        StickBreakingSimplex(torch.zeros(2), 1.0, temperature=tau)


def test_invalid_loc():
    with pytest.raises(ValueError, match="loc"):
        StickBreakingSimplex(torch.tensor(0.0), 1.0)
    with pytest.raises(ValueError, match="loc"):
        StickBreakingSimplex(torch.zeros(2, dtype=torch.long), 1.0)
    with pytest.raises(TypeError, match="loc"):
        StickBreakingSimplex([0.0, 0.0], 1.0)


def test_log_prob_validates_support():
    d = StickBreakingSimplex(torch.zeros(2), 1.0, validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([0.5, 0.6, 0.1]))


def test_float32_smoke():
    loc = torch.linspace(-50, 50, 4)
    d = StickBreakingSimplex(loc, 1e-2, temperature=0.05)
    x = d.rsample((10,))
    assert x.dtype == torch.float32 and not torch.isnan(x).any()
    assert torch.isfinite(d.log_prob(x)).all()  # the cached Psi: exact even at a vertex
    # Without its Psi, a value that rounded to a vertex has the density's limit there, 0.
    again = d.log_prob(x.clone())
    vertex = ((x == 0) | (x == 1)).all(-1)
    assert vertex.any() and (again[vertex] == -math.inf).all()
    assert torch.isfinite(again[~vertex]).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_on_cuda(dtype):
    kw = dict(device="cuda", dtype=dtype)
    d = StickBreakingSimplex(torch.randn(3, 4, **kw), torch.ones(4, **kw), torch.tensor(0.5, **kw))
    x = d.rsample((2,))
    assert x.device.type == "cuda" and x.dtype == dtype and x.shape == (2, 3, 5)
    for value in (x, x.clone()):
        lp = d.log_prob(value)
        assert lp.device.type == "cuda" and torch.isfinite(lp).all()
    assert d.zero_temperature_probs().device.type == "cuda"
