"""Properties of the stick-breaking distribution on the Birkhoff polytope ([BP] section 3.1)."""

import math

import pytest
import torch
from pyro.distributions import Normal
from torch.autograd.functional import jacobian

from pyro_permutations.constraints import birkhoff
from pyro_permutations.distributions.stick_breaking_birkhoff import StickBreakingBirkhoff
from pyro_permutations.transforms.stick_breaking import StickBreakingBirkhoffTransform

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
        ((3, 3), (3, 3), None, ()),
        ((2, 3, 3), (3, 3), None, (2,)),
        ((3, 3), (4, 1, 3, 3), (2,), (4, 2)),
        ((2, 1, 1), (1, 1), None, (2,)),
        ((2, 1, 3), (3, 1), (2,), (2,)),
        ((1, 1), (1, 1), (3,), (3,)),
        ((0, 0), (0, 0), None, ()),
    ],
)
@pytest.mark.parametrize("sample_shape", [(), (4,), (2, 3)])
def test_shapes(loc_shape, scale_shape, tau_shape, batch_shape, sample_shape):
    loc, scale = _params(loc_shape, scale_shape)
    tau = 0.7 if tau_shape is None else torch.full(tau_shape, 0.7, dtype=F64)
    n = torch.broadcast_shapes(loc_shape, scale_shape)[-1] + 1
    d = StickBreakingBirkhoff(loc, scale, temperature=tau)
    assert d.batch_shape == batch_shape and d.event_shape == (n, n)
    assert d.loc.shape == d.scale.shape == batch_shape + (n - 1, n - 1)
    assert d.has_rsample and d.support is birkhoff
    expected = StickBreakingBirkhoff.infer_shapes(
        loc_shape, scale_shape, () if tau_shape is None else tau_shape
    )
    assert expected == (d.batch_shape, d.event_shape)
    x = d.rsample(sample_shape)
    assert x.shape == sample_shape + batch_shape + (n, n) and x.dtype == F64
    assert d.sample(sample_shape).shape == x.shape
    assert birkhoff.check(x).all()
    assert d.log_prob(x).shape == sample_shape + batch_shape


def test_broadcasting_matches_explicit_expansion():
    loc, scale = _params((2, 1, 3, 3), (4, 3, 3))
    x = StickBreakingBirkhoff(loc, scale, 0.5).sample((3,))
    broadcast = StickBreakingBirkhoff(loc, scale, 0.5).log_prob(x)
    full = StickBreakingBirkhoff(loc.expand(2, 4, 3, 3), scale.expand(2, 4, 3, 3), 0.5)
    torch.testing.assert_close(broadcast, full.log_prob(x))


@pytest.mark.parametrize("tau", [0.5, torch.tensor([0.5, 2.0], dtype=F64)])
def test_expand(tau):
    loc, scale = _params((2, 3, 3), (3, 3))
    d = StickBreakingBirkhoff(loc, scale, tau)
    e = d.expand((5, 2))
    assert type(e) is StickBreakingBirkhoff
    assert e.batch_shape == (5, 2) and e.event_shape == (4, 4)
    assert e.loc.shape == e.scale.shape == (5, 2, 3, 3)
    if isinstance(tau, torch.Tensor):
        assert e.temperature.shape == (5, 2)
    x = e.rsample((3,))
    assert x.shape == (3, 5, 2, 4, 4)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x))
    assert d.expand((2,)).batch_shape == (2,)
    with pytest.raises((ValueError, RuntimeError)):
        d.expand((3,))


# ----------------------------------------------------------------------------------------------
# The density.


def _log_prob_by_autograd(loc, scale, tau, x):
    """log N(Psi; loc, scale) - log|det d X[:N-1, :N-1] / d Psi| for one unbatched x."""
    k = x.shape[-1] - 1
    t = StickBreakingBirkhoffTransform(tau)
    psi = t.inv(x)

    def f(flat):
        return t(flat.reshape(k, k))[:k, :k].reshape(-1)

    _, logdet = torch.linalg.slogdet(jacobian(f, psi.reshape(-1)))
    return Normal(loc, scale).log_prob(psi).sum((-2, -1)) - logdet


@pytest.mark.parametrize("n", [2, 3, 4, 5])
@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_log_prob_matches_change_of_variables(n, tau):
    loc, scale = _params((n - 1, n - 1), (n - 1, n - 1), seed=n)
    d = StickBreakingBirkhoff(loc, scale, tau)
    x = d.rsample((4,))
    log_prob = d.log_prob(x)
    assert torch.isfinite(log_prob).all()
    expected = torch.stack([_log_prob_by_autograd(loc, scale, tau, xi) for xi in x])
    torch.testing.assert_close(log_prob, expected, rtol=1e-8, atol=1e-8)
    # Without the transform's cache (x rebuilt) the inverse gives the same density.
    torch.testing.assert_close(d.log_prob(x.clone()), log_prob, rtol=1e-8, atol=1e-8)


def test_log_prob_batched_formula():
    loc, scale = _params((2, 3, 4, 4), (4, 4))
    tau = torch.tensor([0.2, 0.5, 1.5], dtype=F64)
    d = StickBreakingBirkhoff(loc, scale, tau)
    x = d.rsample((6,))
    x = x.clone()  # not the cached sample: log_prob inverts x
    t = StickBreakingBirkhoffTransform(tau)
    psi = t.inv(x)
    expected = Normal(loc, scale).log_prob(psi).sum((-2, -1)) - t.log_abs_det_jacobian(psi, x)
    torch.testing.assert_close(d.log_prob(x), expected)


@pytest.mark.parametrize("loc, scale, tau", [(0.3, 0.8, 0.7), (-1.0, 2.0, 1.0), (2.0, 0.5, 3.0)])
def test_density_integrates_to_one_n2(loc, scale, tau):
    # For N = 2, X = [[x, 1 - x], [1 - x, x]] is determined by x = x_11 in (0, 1).
    d = StickBreakingBirkhoff(
        torch.full((1, 1), loc, dtype=F64), torch.full((1, 1), scale, dtype=F64), tau
    )
    grid = torch.linspace(0, 1, 200_001, dtype=F64)[1:-1]
    x = torch.stack([torch.stack([grid, 1 - grid], -1), torch.stack([1 - grid, grid], -1)], -2)
    density = d.log_prob(x).exp()
    assert torch.isfinite(density).all()
    total = torch.trapezoid(density, grid)
    assert abs(total.item() - 1) < 1e-4


def test_density_n2_is_logit_normal():
    # x_11 = sigmoid(psi / tau) with psi ~ N(loc, scale): a logit-normal with scale / tau.
    loc, scale, tau = 0.4, 1.3, 0.6
    d = StickBreakingBirkhoff(
        torch.full((1, 1), loc, dtype=F64), torch.full((1, 1), scale, dtype=F64), tau
    )
    grid = torch.linspace(0.01, 0.99, 99, dtype=F64)
    x = torch.stack([torch.stack([grid, 1 - grid], -1), torch.stack([1 - grid, grid], -1)], -2)
    logit = torch.log(grid) - torch.log1p(-grid)
    expected = Normal(loc / tau, scale / tau).log_prob(logit) - torch.log(grid * (1 - grid))
    torch.testing.assert_close(d.log_prob(x), expected)


# ----------------------------------------------------------------------------------------------
# Gradients, validation, float32.


@pytest.mark.parametrize("n", [2, 4])
def test_log_prob_of_rsample_gradients_finite(n):
    loc, scale = _params((3, n - 1, n - 1), (n - 1, n - 1), seed=n)
    loc.requires_grad_()
    scale.requires_grad_()
    d = StickBreakingBirkhoff(loc, scale, 0.5)
    d.log_prob(d.rsample((5,))).sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
    assert scale.grad.abs().sum() > 0


def test_rsample_gradients_finite():
    loc, scale = _params((3, 3), (3, 3))
    loc.requires_grad_()
    scale.requires_grad_()
    x = StickBreakingBirkhoff(loc, scale, 0.5).rsample((5,))
    # Not a weight w_ij = a_i + b_j: <X, w> would be constant on the polytope.
    weights = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    (x * weights).sum().backward()
    assert torch.isfinite(loc.grad).all() and loc.grad.abs().sum() > 0
    assert torch.isfinite(scale.grad).all()


@pytest.mark.parametrize("scale", [0.0, -1.0])
def test_invalid_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        StickBreakingBirkhoff(torch.zeros(3, 3), torch.full((3, 3), scale), validate_args=True)


@pytest.mark.parametrize("tau", [0.0, -0.5, torch.tensor([1.0, -1.0])])
def test_invalid_temperature(tau):
    with pytest.raises(ValueError, match="temperature"):
        StickBreakingBirkhoff(torch.zeros(3, 3), torch.ones(3, 3), temperature=tau)


def test_invalid_loc_shape():
    with pytest.raises(ValueError, match="loc"):
        StickBreakingBirkhoff(torch.zeros(3, 4), torch.ones(3, 4))


def test_log_prob_validates_support():
    d = StickBreakingBirkhoff(torch.zeros(2, 2), torch.ones(2, 2), validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.full((3, 3), 0.5))


def test_float32_smoke():
    loc = torch.linspace(-1e3, 1e3, 16).reshape(4, 4)
    d = StickBreakingBirkhoff(loc, torch.full((4, 4), 1e-2), temperature=0.5)
    x = d.rsample((10,))
    assert x.dtype == torch.float32 and not torch.isnan(x).any()
    assert torch.isfinite(d.log_prob(x)).all()  # the cached Psi: exact even at a vertex
    # Without its Psi, a value that rounded to a vertex has the density's limit there, 0.
    again = d.log_prob(x.clone())
    vertex = ((x == 0) | (x == 1)).all((-2, -1))
    assert vertex.any() and (again[vertex] == -math.inf).all()
    assert torch.isfinite(again[~vertex]).all()
