"""The distributions over partial matchings: UniformPartialMatching against its pmf counted
by hand and by goodness of fit, PartialGumbelSinkhorn's score density against torch's Gumbel,
its KL against Monte Carlo, its gradients and its zero-temperature limit, and
PartialGumbelMatching's samples."""

import math

import pytest
import torch
from torch.distributions import Gumbel, kl_divergence

from pyro_permutations.constraints import PartialPermutation, partial_birkhoff
from pyro_permutations.distributions import (
    PartialGumbelMatching,
    PartialGumbelSinkhorn,
    UniformPartialMatching,
    partial_perturbed_scores,
)
from pyro_permutations.ops import all_partial_perms, matching, partial_perm_to_matrix
from tests.gof import pooled_goodness_of_fit


def hand_pmf(perm, n, m, p):
    """P(the matched set) x 1 / (number of injections of it), conditioned on k <= m."""
    k = sum(j >= 0 for j in perm)
    weight = p**k * (1 - p) ** (n - k) / math.perm(m, k)
    z = sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(min(n, m) + 1))
    return weight / z


@pytest.mark.parametrize("n, m", [(2, 3), (3, 2), (3, 3)])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.8, 1.0])
def test_uniform_partial_matching_pmf(n, m, p):
    if p == 1.0 and n > m:
        with pytest.raises(ValueError, match="only m = 2 columns"):
            UniformPartialMatching(n, m, p)
        return
    d = UniformPartialMatching(n, m, torch.tensor(p, dtype=torch.float64))
    values = d.enumerate_support()
    probs = d.log_prob(values).exp()
    expected = torch.tensor([hand_pmf(v, n, m, p) for v in values.tolist()], dtype=torch.float64)
    torch.testing.assert_close(probs, expected, atol=1e-12, rtol=0)
    assert torch.isneginf(d.log_prob(torch.tensor([0] * n))).item() or n == 1


@pytest.mark.parametrize("n, m, p", [(3, 2, 0.6), (2, 4, 0.3)])
def test_uniform_partial_matching_samples_fit_the_pmf(n, m, p):
    torch.manual_seed(0)
    d = UniformPartialMatching(n, m, torch.tensor(p, dtype=torch.float64))
    support = all_partial_perms(n, m)
    samples = d.sample((20_000,))
    assert bool(PartialPermutation(num_cols=m).check(samples).all())
    index = (samples[:, None, :] == support[None]).all(-1).long().argmax(-1)
    counts = torch.bincount(index, minlength=support.shape[0])
    assert pooled_goodness_of_fit(d.log_prob(support).exp(), counts) > 1e-3


def test_uniform_partial_matching_errors():
    with pytest.raises(ValueError, match="match_prob must lie in \\[0, 1\\]"):
        UniformPartialMatching(2, 3, 1.5)
    with pytest.raises(ValueError, match="m must be a positive int"):
        UniformPartialMatching(2, 0, 0.5)
    with pytest.raises(TypeError, match="match_prob"):
        UniformPartialMatching(2, 3, "0.5")
    with pytest.raises(ValueError, match="relaxed guide .* cannot stand in"):
        UniformPartialMatching(2, 3, 0.5).log_prob(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="match_prob must lie in \\[0, 1\\].*got NaN"):
        UniformPartialMatching(3, 2, torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match="cannot enumerate"):
        UniformPartialMatching(9, 9, 0.5).enumerate_support()


def test_kl_of_batches_that_do_not_broadcast_names_them():
    q = PartialGumbelSinkhorn(torch.zeros(4, 2, 3), 1.0)
    p = PartialGumbelSinkhorn(torch.zeros(3, 2, 3), 1.0)
    with pytest.raises(ValueError, match=r"batch shapes of q \(4,\) and p \(3,\) do not broadcast"):
        kl_divergence(q, p)


def partial_case(dtype=torch.float64, seed=0, batch=(2,)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch + (3, 4), generator=g, dtype=dtype)
    u = torch.randn(batch + (3,), generator=g, dtype=dtype)
    v = torch.randn(batch + (4,), generator=g, dtype=dtype)
    return x, u, v


def test_score_density_is_a_product_of_gumbels():
    x, u, v = partial_case()
    x[0, 1, 2] = -torch.inf
    tau = torch.tensor([0.5, 2.0], dtype=torch.float64)
    d = PartialGumbelSinkhorn(x, tau, unmatched_rows=u, unmatched_cols=v)
    torch.manual_seed(1)
    p = d.rsample((3,))
    z = partial_perturbed_scores(p)
    assert z.shape == (3, 2, 4, 5) and bool((z[..., 3, 4] == 0).all())
    assert bool(torch.isneginf(z[:, 0, 1, 2]).all())
    assert bool(partial_birkhoff.check(p).all())
    # Independently: torch's Gumbel(loc / tau, 1 / tau) at every entry but the forbidden pair
    # and the corner.
    loc = torch.cat(
        [torch.cat([x, u[..., None]], -1), torch.cat([v, v[..., :1] * 0], -1)[..., None, :]], -2
    )
    t = tau[:, None, None]
    per_entry = Gumbel(loc / t, 1 / t).log_prob(z.masked_fill(torch.isneginf(z), 0.0))
    keep = torch.ones(2, 4, 5, dtype=torch.bool)
    keep[:, 3, 4] = False
    keep[0, 1, 2] = False
    expected = torch.where(keep, per_entry, 0.0).sum((-2, -1))
    torch.testing.assert_close(d.log_prob(p), expected)
    with pytest.raises(ValueError, match="needs the perturbed scores"):
        d.log_prob(p.detach().clone())


def test_kl_matches_monte_carlo():
    x, u, v = partial_case(seed=2)
    y, w, s = partial_case(seed=3)
    q = PartialGumbelSinkhorn(x, 0.7, unmatched_rows=u, unmatched_cols=v)
    p = PartialGumbelSinkhorn(y, 1.3, unmatched_rows=w, unmatched_cols=s)
    torch.manual_seed(4)
    z = q.sample_scores((40_000,))
    ratio = q.log_prob_scores(z) - p.log_prob_scores(z)
    estimate, stderr = ratio.mean(0), ratio.std(0) / math.sqrt(z.shape[0])
    kl = kl_divergence(q, p)
    assert kl.shape == (2,)
    assert bool(((kl - estimate).abs() < 4 * stderr + 1e-3).all())
    assert torch.allclose(kl_divergence(q, q), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    rect = PartialGumbelSinkhorn(x, 0.7)
    with pytest.raises(ValueError, match="both with unmatched scores or both without"):
        kl_divergence(q, rect)


def test_rsample_is_differentiable_in_every_parameter():
    x, u, v = partial_case()
    x, u, v = (t.clone().requires_grad_() for t in (x, u, v))
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(5)
    p = PartialGumbelSinkhorn(x, tau, unmatched_rows=u, unmatched_cols=v).rsample()
    (p * torch.randn(p.shape, dtype=torch.float64)).sum().backward()
    for t in (x, u, v, tau):
        assert t.grad is not None and bool(torch.isfinite(t.grad).all()) and t.grad.abs().sum() > 0


def test_zero_temperature_sample_is_the_perturbed_matching():
    """P = S(Z) tends to the partial matching of the perturbed scores tau Z as tau -> 0."""
    x, u, v = partial_case(seed=6, batch=(8,))
    tau = 1e-3
    d = PartialGumbelSinkhorn(x, tau, unmatched_rows=u, unmatched_cols=v, tol=1e-9)
    torch.manual_seed(7)
    p = d.rsample()
    z = partial_perturbed_scores(p) * tau
    perm = matching(z[..., :3, :4], unmatched_rows=z[..., :3, 4], unmatched_cols=z[..., 3, :4])
    assert torch.allclose(p, partial_perm_to_matrix(perm, 4, torch.float64), atol=1e-2)


def test_rectangular_partial_gumbel_sinkhorn():
    x, _, _ = partial_case()
    d = PartialGumbelSinkhorn(x, 0.5)
    torch.manual_seed(8)
    p = d.rsample((5,))
    assert p.shape == (5, 2, 3, 4)
    torch.testing.assert_close(
        p.sum(-1), torch.ones(5, 2, 3, dtype=torch.float64), atol=1e-4, rtol=0
    )
    assert bool((p.sum(-2) <= 1 + 1e-4).all())
    assert partial_perturbed_scores(p).shape == (5, 2, 3, 4)
    assert d.log_prob(p).shape == (5, 2)


def test_partial_gumbel_matching():
    x, u, v = partial_case()
    d = PartialGumbelMatching(x, unmatched_rows=u, unmatched_cols=v)
    torch.manual_seed(9)
    samples = d.sample((200,))
    assert samples.shape == (200, 2, 3) and bool(d.support.check(samples).all())
    assert torch.equal(d.mode, matching(x, unmatched_rows=u, unmatched_cols=v))
    # Very high unmatched scores: everything unmatched, whatever the noise.
    high = PartialGumbelMatching(x, unmatched_rows=50.0, unmatched_cols=50.0).sample((20,))
    assert bool((high == -1).all())
    # Without unmatched scores, every row of the smaller side is matched.
    assert bool((PartialGumbelMatching(x).sample((20,)) >= 0).all())
    with pytest.raises(NotImplementedError, match="no closed-form pmf"):
        d.log_prob(samples)


@pytest.mark.parametrize(
    "n, m, p, value",
    [
        (2, 3, 1.0, [0, 1]),
        (2, 3, 0.0, [-1, -1]),
        (3, 2, 0.0, [-1, -1, -1]),
        (3, 2, 0.3, [0, -1, 1]),
    ],
)
def test_uniform_partial_matching_gradient_is_finite_differences(n, m, p, value):
    """``d log_prob / d match_prob`` equals the one-sided finite difference at ``p = 0`` and
    ``1`` (no NaN from ``0 log 0``) and the central one inside."""
    value = torch.tensor(value)

    def f(q):
        return UniformPartialMatching(n, m, q).log_prob(value)

    q = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    f(q).backward()
    h = 1e-7
    if p == 1.0:
        fd = (f(q.detach()) - f(q.detach() - h)) / h
    elif p == 0.0:
        fd = (f(q.detach() + h) - f(q.detach())) / h
    else:
        fd = (f(q.detach() + h) - f(q.detach() - h)) / (2 * h)
    assert torch.isfinite(q.grad)
    torch.testing.assert_close(q.grad, fd, rtol=1e-5, atol=1e-5)
