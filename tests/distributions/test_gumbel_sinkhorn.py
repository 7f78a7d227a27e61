import importlib
import math

import pyro
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import Gumbel, kl_divergence

from pyro_permutations.constraints import birkhoff, column_stochastic, permutation
from pyro_permutations.distributions import (
    GumbelMatching,
    GumbelSinkhorn,
    GumbelSinkhornStraightThrough,
    PartialGumbelSinkhorn,
    perturbed_scores,
)
from pyro_permutations.ops import all_permutations, matching, perm_to_matrix, perm_to_rank


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "alpha_batch, tau_shape, sample_shape",
    [((), (), ()), ((3,), (), (2,)), ((3,), (3,), ()), ((1, 3), (2, 1), (4,))],
)
def test_shapes_and_support(dtype, alpha_batch, tau_shape, sample_shape):
    torch.manual_seed(0)
    n = 4
    log_alpha = torch.randn(alpha_batch + (n, n), dtype=dtype)
    tau = torch.rand(tau_shape, dtype=dtype) + 0.2
    d = GumbelSinkhorn(log_alpha, tau)
    batch = torch.broadcast_shapes(alpha_batch, tau_shape)
    assert d.batch_shape == batch and d.event_shape == (n, n)
    assert GumbelSinkhorn.infer_shapes(log_alpha.shape, tau.shape) == (batch, (n, n))
    p = d.rsample(sample_shape)
    assert p.shape == sample_shape + batch + (n, n) and p.dtype == dtype
    assert birkhoff.check(p).all()
    assert d.log_prob(p).shape == sample_shape + batch
    e = d.expand((5,) + batch)
    assert e.batch_shape == (5,) + batch and e.rsample().shape == (5,) + batch + (n, n)


@pytest.mark.parametrize("n_iters", [None, 1, 5, 20])
def test_support_holds_the_samples_whatever_the_stopping_rule(n_iters):
    torch.manual_seed(12)
    log_alpha = torch.randn(6, 6)
    d = GumbelSinkhorn(log_alpha, 0.1, n_iters=n_iters)
    p = d.rsample((50,))
    assert d.support.check(p).all() and d.expand((2,)).support == d.support
    if n_iters is None:
        assert d.support is birkhoff
    else:
        # Sweeps end on the columns: those sum to one, the rows only roughly.
        assert d.support is column_stochastic and not birkhoff.check(p).all()
    hard = GumbelSinkhornStraightThrough(log_alpha, 0.1, n_iters=n_iters)
    assert hard.support is birkhoff and birkhoff.check(hard.rsample((50,))).all()


def test_log_prob_is_the_gumbel_density_of_the_scores():
    torch.manual_seed(1)
    log_alpha = torch.randn(3, 4, 4, dtype=torch.float64)
    tau = torch.tensor([0.3, 1.0, 2.0], dtype=torch.float64)
    d = GumbelSinkhorn(log_alpha, tau)
    p = d.rsample((5,))
    z = perturbed_scores(p)
    t = tau[:, None, None]
    expected = Gumbel(log_alpha / t, 1 / t).log_prob(z).sum((-2, -1))
    assert torch.allclose(d.log_prob(p), expected)
    # The value is S(Z): invariant to row shifts of Z, doubly stochastic.
    assert torch.allclose(p.sum(-1), torch.ones(5, 3, 4, dtype=torch.float64), atol=1e-5)


def test_log_prob_of_a_bare_matrix_explains():
    d = GumbelSinkhorn(torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError, match="perturbed scores"):
        d.log_prob(torch.full((3, 3), 1 / 3))


@pytest.mark.parametrize(
    "tau_q, tau_p, prior_scale", [(0.5, 1.0, 0.0), (1.0, 0.3, 1.0), (2.0, 2.0, 2.0)]
)
def test_kl_closed_form_matches_monte_carlo(tau_q, tau_p, prior_scale):
    torch.manual_seed(2)
    n = 3
    x_q = torch.randn(n, n, dtype=torch.float64)
    x_p = prior_scale * torch.randn(n, n, dtype=torch.float64)
    q, p = GumbelSinkhorn(x_q, tau_q), GumbelSinkhorn(x_p, tau_p)
    kl = kl_divergence(q, p)
    # Per entry it is torch's Gumbel-Gumbel KL.
    per_entry = kl_divergence(Gumbel(x_q / tau_q, 1 / tau_q), Gumbel(x_p / tau_p, 1 / tau_p))
    assert torch.allclose(kl, per_entry.sum())
    z = q.sample_scores((200_000,))
    diff = q.log_prob_scores(z) - p.log_prob_scores(z)
    stderr = diff.std() / math.sqrt(diff.numel())
    assert (kl - diff.mean()).abs() < 5 * stderr


def test_kl_is_zero_for_equal_and_positive_otherwise():
    x = torch.randn(2, 4, 4)
    assert torch.allclose(
        kl_divergence(GumbelSinkhorn(x, 0.7), GumbelSinkhorn(x, 0.7)), torch.zeros(2), atol=1e-5
    )
    assert (
        kl_divergence(GumbelSinkhorn(x, 0.7), GumbelSinkhorn(x + 1e-1 * torch.randn(4, 4), 0.3)) > 0
    ).all()


def test_small_temperature_agrees_with_gumbel_matching_sample_by_sample():
    log_alpha = torch.randn(50, 5, 5, dtype=torch.float64)
    torch.manual_seed(3)
    soft = GumbelSinkhorn(log_alpha, 1e-3).rsample()
    torch.manual_seed(3)
    hard = GumbelMatching(log_alpha).sample()
    assert torch.equal(matching(soft), hard)
    close = (soft - perm_to_matrix(hard, dtype=soft.dtype)).abs().amax((-2, -1)) < 1e-2
    assert close.float().mean() > 0.9


def test_straight_through_is_hard_with_soft_gradients():
    torch.manual_seed(4)
    log_alpha = torch.randn(3, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, 5, dtype=torch.float64)
    torch.manual_seed(5)
    hard = GumbelSinkhornStraightThrough(log_alpha, 0.5).rsample()
    assert permutation.check(matching(hard)).all()
    assert torch.equal(hard, perm_to_matrix(matching(perturbed_scores(hard)), dtype=hard.dtype))
    (g_hard,) = torch.autograd.grad((w * hard).sum(), log_alpha)
    torch.manual_seed(5)
    soft = GumbelSinkhorn(log_alpha, 0.5).rsample()
    (g_soft,) = torch.autograd.grad((w * soft).sum(), log_alpha)
    assert torch.allclose(g_hard, g_soft)
    assert GumbelSinkhornStraightThrough(log_alpha, 0.5).expand((2, 3)).batch_shape == (2, 3)


def test_rsample_gradients_are_finite():
    log_alpha = torch.randn(4, 6, 6, requires_grad=True)
    tau = torch.tensor(0.1, requires_grad=True)
    d = GumbelSinkhorn(log_alpha, tau)
    p = d.rsample()
    loss = (p * torch.randn(6, 6)).sum() + d.log_prob(p).sum()
    loss.backward()
    assert torch.isfinite(log_alpha.grad).all() and torch.isfinite(tau.grad)


def test_forbidden_pairs_stay_zero_and_add_no_density():
    log_alpha = torch.zeros(4, 4)
    log_alpha[0, 1] = -math.inf
    d = GumbelSinkhorn(log_alpha, 0.5)
    p = d.rsample((10,))
    assert (p[:, 0, 1] == 0).all()
    assert torch.isfinite(d.log_prob(p)).all()


def mask_pair(n, i, j, dtype=torch.float64):
    mask = torch.zeros(n, n, dtype=dtype)
    mask[i, j] = -math.inf
    return mask


def test_a_value_off_the_forbidden_pattern_has_zero_density():
    torch.manual_seed(9)
    mask = mask_pair(4, 0, 1)
    free = GumbelSinkhorn(torch.randn(4, 4, dtype=torch.float64), 0.7)
    masked = GumbelSinkhorn(torch.randn(4, 4, dtype=torch.float64) + mask, 0.7)
    # Z = -inf at a pair the distribution allows, and Z finite at a pair it forbids.
    assert torch.equal(free.log_prob(masked.rsample((3,))), torch.full((3,), -math.inf).double())
    assert torch.equal(masked.log_prob(free.rsample((3,))), torch.full((3,), -math.inf).double())
    # On the same pattern it is the Gumbel density of the allowed entries only.
    z = masked.sample_scores((3,))
    allowed = ~torch.isneginf(masked.log_alpha)
    expected = Gumbel(masked.log_alpha[allowed] / 0.7, 1 / 0.7).log_prob(z[:, allowed]).sum(-1)
    assert torch.allclose(masked.log_prob_scores(z), expected)


def test_kl_sums_over_the_pairs_allowed_by_both():
    torch.manual_seed(10)
    mask = mask_pair(3, 0, 1)
    x_q = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    x_p = torch.randn(3, 3, dtype=torch.float64)
    q, p = GumbelSinkhorn(x_q + mask, 0.5), GumbelSinkhorn(x_p + mask, 1.0)
    kl = kl_divergence(q, p)
    allowed = mask == 0
    per_entry = kl_divergence(Gumbel(x_q[allowed] / 0.5, 2.0), Gumbel(x_p[allowed], 1.0))
    assert torch.allclose(kl, per_entry.sum())
    (grad,) = torch.autograd.grad(kl, x_q)
    assert torch.isfinite(grad).all() and grad[0, 1] == 0
    # The Monte Carlo estimate E_q[log q(Z) - log p(Z)] agrees.
    z = q.sample_scores((100_000,))
    diff = (q.log_prob_scores(z) - p.log_prob_scores(z)).detach()
    assert (kl - diff.mean()).abs() < 5 * diff.std() / math.sqrt(diff.numel())
    # A pair forbidden in only one of them: the laws are mutually singular.
    x = x_q.detach()
    assert kl_divergence(GumbelSinkhorn(x, 0.5), GumbelSinkhorn(x + mask, 1.0)) == math.inf
    assert kl_divergence(GumbelSinkhorn(x + mask, 0.5), GumbelSinkhorn(x, 1.0)) == math.inf


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_svi_with_the_same_forbidden_pairs_in_model_and_guide_is_finite(elbo):
    torch.manual_seed(11)
    pyro.clear_param_store()
    mask = mask_pair(4, 0, 1, dtype=torch.float32)
    centers = torch.randn(4, 2)
    obs = centers + 0.1 * torch.randn(4, 2)

    def model():
        p = pyro.sample("P", GumbelSinkhorn(mask, 1.0))
        pyro.sample("obs", pyro.distributions.Normal(p @ centers, 0.5).to_event(2), obs=obs)

    def guide():
        log_alpha = pyro.param("log_alpha", torch.zeros(4, 4))
        tau = pyro.param(
            "tau", torch.tensor(0.5), constraint=torch.distributions.constraints.positive
        )
        pyro.sample("P", GumbelSinkhorn(log_alpha + mask, tau))

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), elbo())
    losses = [svi.step() for _ in range(3)]
    assert all(math.isfinite(loss) for loss in losses)
    assert torch.isfinite(pyro.param("log_alpha")).all()
    assert torch.isfinite(pyro.param("tau")) and pyro.param("tau") != 0.5  # learnt, not NaN


def test_forbidden_pairs_give_the_temperature_a_finite_gradient():
    """-inf scores times a zero gradient must not make the temperature's gradient NaN."""
    torch.manual_seed(12)
    mask = mask_pair(4, 0, 1, dtype=torch.float64)
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    d = GumbelSinkhorn(torch.randn(4, 4, dtype=torch.float64) + mask, tau)
    x = d.rsample((3,))
    (grad_sample,) = torch.autograd.grad((x * torch.randn(4, 4, dtype=torch.float64)).sum(), tau)
    z = perturbed_scores(x).detach()
    (grad_density,) = torch.autograd.grad(d.log_prob_scores(z).sum(), tau)
    assert torch.isfinite(grad_sample) and torch.isfinite(grad_density)
    # the density's gradient is that of the allowed entries alone, which finite differences give
    h = 1e-6
    allowed = ~torch.isneginf(mask)

    def density(t):
        u = t * z[:, allowed] - d.log_alpha[allowed]
        return (torch.log(t) - u - torch.exp(-u)).sum()

    numeric = (density(tau.detach() + h) - density(tau.detach() - h)) / (2 * h)
    assert grad_density.item() == pytest.approx(numeric.item(), rel=1e-6)


def test_gumbel_matching_zero_scores_is_uniform():
    torch.manual_seed(6)
    n = 3
    samples = GumbelMatching(torch.zeros(n, n)).sample((6000,))
    assert permutation.check(samples).all()
    counts = torch.bincount(perm_to_rank(samples), minlength=math.factorial(n)).double()
    probs = torch.full((math.factorial(n),), 1 / math.factorial(n), dtype=torch.float64)
    assert multinomial_goodness_of_fit(probs, counts) > 1e-3


def test_gumbel_matching_mode_shapes_and_log_prob():
    torch.manual_seed(7)
    x = torch.randn(2, 4, 4)
    d = GumbelMatching(x)
    assert torch.equal(d.mode, matching(x))
    assert d.sample((3,)).shape == (3, 2, 4) and d.batch_shape == (2,) and d.event_shape == (4,)
    assert d.expand((5, 2)).sample().shape == (5, 2, 4)
    assert GumbelMatching.infer_shapes((2, 4, 4)) == ((2,), (4,))
    with pytest.raises(NotImplementedError, match="closed-form"):
        d.log_prob(d.sample())
    # A strong signal is recovered: scores 20 P_sigma put (almost) all mass on sigma.
    sigma = all_permutations(4)[13]
    strong = GumbelMatching(20 * perm_to_matrix(sigma)).sample((100,))
    assert (strong == sigma).all()


@pytest.mark.parametrize(
    "make",
    [
        lambda: GumbelSinkhorn(torch.zeros(3, 4), 1.0),
        lambda: GumbelSinkhorn(torch.zeros(3, 3), 0.0),
        lambda: GumbelSinkhorn(torch.zeros(3, 3), -1.0),
        lambda: GumbelSinkhorn(torch.full((3, 3), math.nan), 1.0),
        lambda: GumbelMatching(torch.zeros(2, 3)),
        lambda: GumbelMatching(torch.zeros(3, 3, dtype=torch.long)),
    ],
)
def test_bad_arguments_raise(make):
    with pytest.raises(ValueError, match="log_alpha|temperature"):
        make()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_relaxations_on_cuda(dtype):
    from pyro_permutations.distributions import RoundingBirkhoff, StickBreakingBirkhoff

    torch.manual_seed(8)
    kw = dict(device="cuda", dtype=dtype)
    dists = [
        GumbelSinkhorn(torch.randn(3, 4, 4, **kw), torch.tensor(0.5, **kw)),
        GumbelSinkhornStraightThrough(torch.randn(3, 4, 4, **kw), 0.5),
        StickBreakingBirkhoff(torch.randn(3, 3, 3, **kw), torch.ones(3, 3, 3, **kw), 0.5),
        RoundingBirkhoff(torch.rand(3, 4, 4, **kw), 0.2 * torch.ones(3, 4, 4, **kw), 0.3),
    ]
    for d in dists:
        x = d.rsample((2,))
        assert x.device.type == "cuda" and x.dtype == dtype and x.shape == (2, 3, 4, 4)
        lp = d.log_prob(x)
        assert lp.device.type == "cuda" and torch.isfinite(lp).all()
    perm = GumbelMatching(torch.randn(3, 4, 4, **kw)).sample()
    assert perm.device.type == "cuda" and permutation.check(perm).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("temperature", [torch.tensor(0.5), torch.tensor([0.5, 1.0, 2.0])])
def test_a_cpu_temperature_moves_to_the_cuda_scores(temperature):
    d = GumbelSinkhorn(torch.randn(3, 4, 4, device="cuda"), temperature)
    assert d.temperature.device.type == "cuda"
    x = d.rsample((2,))
    assert x.device.type == "cuda" and d.log_prob(x).device.type == "cuda"
    expanded = d.expand((5, 3))
    assert expanded.temperature.device.type == "cuda"
    assert expanded.rsample().device.type == "cuda"


@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("validate_args", [True, False])
def test_sampling_checks_the_scores_only_when_validating(monkeypatch, partial, validate_args):
    """``validate_args=False`` reaches ``log_sinkhorn`` as ``validate=False`` (no finiteness
    pass, no feasibility test of the forbidden pairs on the sampling path), and ``True`` as
    ``True``, for the square and the partial Gumbel-Sinkhorn."""
    module = importlib.import_module(
        "pyro_permutations.distributions."
        + ("partial_gumbel_sinkhorn" if partial else "gumbel_sinkhorn")
    )
    seen = []
    original = module.log_sinkhorn

    def spy(*args, validate=None, **kwargs):
        seen.append(validate)
        return original(*args, validate=validate, **kwargs)

    monkeypatch.setattr(module, "log_sinkhorn", spy)
    log_alpha = torch.randn(3, 3 + partial)
    if partial:
        d = PartialGumbelSinkhorn(log_alpha, 1.0, validate_args=validate_args)
    else:
        d = GumbelSinkhorn(log_alpha, 1.0, validate_args=validate_args)
    d.rsample((2,))
    assert seen == [validate_args]
