import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.distributions.rounding_birkhoff import RoundingBirkhoff
from pyro_permutations.ops import all_permutations, matching, perm_to_matrix, sinkhorn
from pyro_permutations.transforms.rounding import RoundingBirkhoffTransform

BATCH_SHAPES = [(), (3,), (2, 3)]


def nearest_vertex(x):
    """Nearest permutation matrix in Frobenius norm, by enumerating all n! permutations."""
    n = x.shape[-1]
    vertices = perm_to_matrix(all_permutations(n), dtype=x.dtype)
    return vertices[(x.unsqueeze(-3) - vertices).pow(2).sum((-1, -2)).argmin(-1)]


def expected_log_prob(loc, scale, tau, psi):
    """``log N(psi; loc, scale^2) - N^2 log tau``, written out entry by entry."""
    n = psi.shape[-1]
    z = (psi - loc) / scale
    log_normal = -0.5 * z**2 - torch.log(torch.as_tensor(scale)) - 0.5 * math.log(2 * math.pi)
    return log_normal.sum((-1, -2)) - n * n * math.log(tau)


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(2, 5),
    batch_shape=st.sampled_from(BATCH_SHAPES),
    tau=st.sampled_from([0.1, 0.5, 0.9]),
    seed=st.integers(0, 2**31 - 1),
)
def test_log_prob_matches_change_of_variables(n, batch_shape, tau, seed):
    generator = torch.Generator().manual_seed(seed)
    shape = batch_shape + (n, n)
    loc = sinkhorn(torch.randn(shape, generator=generator, dtype=torch.float64), n_iters=10)
    scale = 0.1 + 0.4 * torch.rand(shape, generator=generator, dtype=torch.float64)
    d = RoundingBirkhoff(loc, scale, tau)
    assert d.batch_shape == batch_shape and d.event_shape == (n, n)
    psi = loc + scale * torch.randn(shape, generator=generator, dtype=torch.float64)
    x = tau * psi + (1 - tau) * nearest_vertex(psi)
    torch.testing.assert_close(d.log_prob(x), expected_log_prob(loc, scale, tau, psi))


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("n", [2, 4])
def test_rsample_lies_in_image_with_gradients(n, batch_shape):
    torch.manual_seed(0)
    loc = torch.randn(batch_shape + (n, n), dtype=torch.float64, requires_grad=True)
    scale = torch.full((), 0.3, dtype=torch.float64, requires_grad=True)
    d = RoundingBirkhoff(loc, scale, 0.2)
    x = d.rsample((7,))
    assert x.shape == (7,) + batch_shape + (n, n)
    log_q = d.log_prob(x)
    assert log_q.shape == (7,) + batch_shape and torch.isfinite(log_q).all()
    psi = RoundingBirkhoffTransform(0.2).inv(x)
    torch.testing.assert_close(nearest_vertex(psi), nearest_vertex(x))
    x.sum().backward()
    torch.testing.assert_close(loc.grad, torch.full_like(loc, 0.2 * 7))
    assert scale.grad is not None and torch.isfinite(scale.grad)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_centre_is_off_the_image(n):
    d = RoundingBirkhoff(torch.eye(n, dtype=torch.float64), 0.3, 0.1)
    centre = torch.full((n, n), 1.0 / n, dtype=torch.float64)
    assert d.log_prob(centre) == -math.inf
    # x is in the image exactly when its psi rounds to the same vertex as x.
    torch.manual_seed(n)
    # Points from the centre towards random vertices, at random fractions of the way, jittered.
    t = torch.rand(200, 1, 1, dtype=torch.float64)
    vertices = perm_to_matrix(torch.rand(200, n).argsort(-1), dtype=torch.float64)
    x = (1 - t) * centre + t * vertices + 0.05 * torch.randn(200, n, n, dtype=torch.float64)
    vertex = nearest_vertex(x)
    psi = (x - 0.9 * vertex) / 0.1
    in_image = (nearest_vertex(psi) == vertex).all(-1).all(-1)
    assert 0 < in_image.sum() < 200
    log_q = d.log_prob(x)
    assert torch.equal(torch.isfinite(log_q), in_image)
    torch.testing.assert_close(log_q[in_image], expected_log_prob(d.loc, 0.3, 0.1, psi)[in_image])


def test_log_prob_gradient_is_finite_off_the_image():
    loc = torch.eye(3, dtype=torch.float64, requires_grad=True)
    x = torch.stack([torch.full((3, 3), 1 / 3, dtype=torch.float64), torch.eye(3).double()])
    log_q = RoundingBirkhoff(loc, 0.3, 0.1).log_prob(x)
    assert log_q[0] == -math.inf and torch.isfinite(log_q[1])
    log_q[1].backward()
    assert torch.isfinite(loc.grad).all()


def test_broadcasting_and_infer_shapes():
    loc = torch.randn(4, 4)
    scale = torch.full((3, 1, 1), 0.2)
    d = RoundingBirkhoff(loc, scale, 0.5)
    assert d.batch_shape == (3,) and d.event_shape == (4, 4)
    assert RoundingBirkhoff.infer_shapes(loc=(4, 4), scale=(3, 1, 1)) == (d.batch_shape, (4, 4))
    assert RoundingBirkhoff.infer_shapes(loc=(2, 1, 5, 5), scale=()) == ((2, 1), (5, 5))
    assert d.loc.shape == (3, 4, 4) and d.scale.shape == (3, 4, 4) and d.temperature == 0.5
    assert d.sample((2,)).shape == (2, 3, 4, 4)
    assert d.log_prob(torch.randn(4, 4)).shape == (3,)
    assert d.log_prob(torch.randn(5, 1, 4, 4)).shape == (5, 3)
    assert d.support.event_dim == 2 and d.has_rsample


def test_expand():
    torch.manual_seed(0)
    d = RoundingBirkhoff(torch.randn(3, 4, 4, dtype=torch.float64), 0.25, 0.3)
    e = d.expand((2, 3))
    assert type(e) is RoundingBirkhoff
    assert e.batch_shape == (2, 3) and e.event_shape == (4, 4) and e.temperature == 0.3
    x = d.sample()
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x).expand(2, 3))
    assert e.rsample((5,)).shape == (5, 2, 3, 4, 4)


def test_in_pyro_model_and_guide():
    n = 3
    loc = sinkhorn(torch.randn(n, n), n_iters=10)

    def guide():
        return pyro.sample("x", RoundingBirkhoff(loc, 0.2, 0.1))

    guide_trace = poutine.trace(guide).get_trace()
    log_q = guide_trace.log_prob_sum()
    assert torch.isfinite(log_q)
    assert guide_trace.nodes["x"]["value"].shape == (n, n)


@pytest.mark.parametrize("bad", [0.0, 1.0, 2.0, -0.1])
def test_invalid_temperature(bad):
    with pytest.raises(ValueError, match="temperature"):
        RoundingBirkhoff(torch.zeros(3, 3), 0.3, bad)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_invalid_scale(bad):
    with pytest.raises(ValueError, match="scale"):
        RoundingBirkhoff(torch.zeros(3, 3), torch.tensor(bad), 0.5, validate_args=True)


def test_invalid_loc():
    with pytest.raises(ValueError, match="loc"):
        RoundingBirkhoff(torch.zeros(3, 4), 0.3, 0.5)
    with pytest.raises(ValueError, match="loc"):
        RoundingBirkhoff(torch.zeros(3, 3, dtype=torch.long), 0.3, 0.5)


def test_validate_sample_rejects_wrong_shape():
    d = RoundingBirkhoff(torch.zeros(3, 3), 0.3, 0.5, validate_args=True)
    with pytest.raises(ValueError):
        d.log_prob(torch.zeros(4, 4))


def test_matching_round_agrees_with_brute_force():
    # The distribution rounds with the assignment solver; the tests above use enumeration.
    x = torch.randn(50, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(perm_to_matrix(matching(x), dtype=x.dtype), nearest_vertex(x))
