"""PermutationKernel: stationarity against exact posteriors, the Metropolis-Hastings ratio and the
block conditional against brute force, forbidden pairs, and its errors."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from pyro_permutations.distributions import (
    FlatBirkhoff,
    GumbelSinkhorn,
    Mallows,
    UniformPermutation,
)
from pyro_permutations.infer import (
    PermutationKernel,
    empirical_pmf,
    exact_posterior,
    get_chains,
    marginal_assignment,
    permutation_summary,
)
from pyro_permutations.infer.permutation_kernel import _propose_swap
from pyro_permutations.ops import all_permutations, matching, perm_to_rank
from tests.gof import pooled_goodness_of_fit

PROPOSALS = [("swap",), ("block",), ("swap", "block")]
CHAINS = 2000


def _data(n, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n, 2, generator=g)
    obs = centers[torch.randperm(n, generator=g)] + sigma * torch.randn(n, 2, generator=g)
    return centers, obs


def matching_model(n=4, sigma=0.6, seed=0):
    """[BP]'s matching model with a FlatBirkhoff site treated as a permutation."""
    centers, obs = _data(n, sigma, seed)

    def model():
        x = pyro.sample("X", FlatBirkhoff(n))
        pyro.sample("obs", dist.Normal(x @ centers, sigma).to_event(2), obs=obs)

    return model, exact_posterior(model, "X", prior="uniform")


def mallows_model(n=4, sigma=0.8):
    centers = torch.arange(n, dtype=torch.float)
    obs = torch.tensor([1.2, -0.1, 3.2, 1.9])[:n]

    def model():
        pi = pyro.sample("pi", Mallows(torch.arange(n), torch.tensor(0.7), "kendall"))
        pyro.sample("y", dist.Normal(centers[pi], sigma).to_event(1), obs=obs)

    return model, exact_posterior(model, "pi")


FORBID = torch.tensor(
    [
        [1, 1, 0, 1, 0],
        [1, 1, 1, 0, 0],
        [0, 1, 1, 1, 1],
        [1, 0, 1, 1, 1],
        [0, 1, 1, 1, 1],
    ],
    dtype=torch.bool,
)


def masked_model(sigma=0.9):
    """A uniform prior over N = 5 with forbidden pairs given as a mask; the exact posterior is
    the unmasked one restricted to the allowed permutations."""
    centers = torch.arange(5, dtype=torch.float)
    obs = torch.tensor([1.1, 0.2, 2.8, 4.1, 3.0])

    def model():
        pi = pyro.sample("pi", UniformPermutation(5))
        pyro.sample("y", dist.Normal(centers[pi], sigma).to_event(1), obs=obs)

    probs = exact_posterior(model, "pi")
    perms = all_permutations(5)
    allowed = FORBID[torch.arange(5), perms].all(-1)
    probs = torch.where(allowed, probs, 0.0)
    return model, probs / probs.sum()


def continuous_model(n=4):
    """A permutation beside an unknown noise scale; the permutation's marginal posterior by
    quadrature over the scale."""
    centers = torch.arange(n, dtype=torch.float64)
    obs = torch.tensor([0.9, 0.3, 3.4, 1.8], dtype=torch.float64)[:n]

    def model():
        s = pyro.sample("s", dist.HalfNormal(torch.tensor(1.0, dtype=torch.float64)))
        pi = pyro.sample("pi", UniformPermutation(n))
        pyro.sample("y", dist.Normal(centers[pi], s[..., None]).to_event(1), obs=obs)

    perms = all_permutations(n)
    s = torch.linspace(1e-3, 8.0, 40_001, dtype=torch.float64)
    log_prior = dist.HalfNormal(torch.tensor(1.0, dtype=torch.float64)).log_prob(s)
    log_lik = dist.Normal(centers[perms][:, None, :], s[None, :, None]).log_prob(obs).sum(-1)
    log_marginal = torch.logsumexp(log_prior + log_lik, dim=-1)
    return model, torch.softmax(log_marginal, 0)


def _final_states(model, proposals, steps, sites=None, seed=0, samples=1, **kw):
    """An MCMC run of CHAINS independent chains; the last draw of each chain is one
    (approximately independent, exact once mixed) draw from the posterior."""
    pyro.set_rng_seed(seed)
    kernel = PermutationKernel(model, sites=sites, num_chains=CHAINS, proposals=proposals, **kw)
    mcmc = MCMC(kernel, num_samples=samples, warmup_steps=steps, disable_progbar=True)
    mcmc.run()
    return mcmc, kernel


def _assert_fits(draws, probs):
    counts = empirical_pmf(draws) * draws.shape[0]
    assert pooled_goodness_of_fit(probs, counts.round()) > 1e-3


@pytest.mark.parametrize("proposals", PROPOSALS, ids="+".join)
def test_matching_model_stationary(proposals):
    model, probs = matching_model()
    mcmc, _ = _final_states(model, proposals, 60, sites="X")
    draws = mcmc.get_samples()["X"]  # a matrix site is returned as permutations
    assert draws.shape == (1, CHAINS, 4) and draws.dtype == torch.long
    _assert_fits(draws[0], probs)


@pytest.mark.parametrize("proposals", PROPOSALS, ids="+".join)
def test_mallows_prior_model_stationary(proposals):
    model, probs = mallows_model()
    mcmc, _ = _final_states(model, proposals, 60)
    _assert_fits(mcmc.get_samples()["pi"][0], probs)


@pytest.mark.parametrize("proposals", PROPOSALS, ids="+".join)
def test_forbidden_pairs_stationary_and_never_visited(proposals):
    model, probs = masked_model()
    pyro.set_rng_seed(1)
    kernel = PermutationKernel(model, num_chains=CHAINS, proposals=proposals, mask=FORBID)
    mcmc = MCMC(kernel, num_samples=5, warmup_steps=80, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["pi"]  # (5, C, 5)
    assert FORBID[torch.arange(5), draws].all()
    _assert_fits(draws[-1], probs)


@pytest.mark.parametrize("proposals", PROPOSALS, ids="+".join)
def test_continuous_latent_beside_the_permutation(proposals):
    model, probs = continuous_model()
    # the step size adapts during warm-up only: the draws after it are exact
    mcmc, kernel = _final_states(model, proposals, 40, samples=40, num_leapfrog=2, step_size=0.3)
    samples = mcmc.get_samples()
    assert samples["pi"].dtype == torch.long  # not the float MCMC concatenates them into
    assert (samples["s"] > 0).all() and samples["s"].dtype == torch.float64
    _assert_fits(samples["pi"][-1], probs)
    rates = kernel.diagnostics()
    assert 0.3 < rates["hmc acceptance"] < 0.95


def test_several_permutations_in_a_plate():
    """A site in a plate over two subjects holds two permutations; with independent data,
    each subject's marginal is its own exact posterior."""
    centers = torch.arange(4, dtype=torch.float)
    obs = torch.tensor([[1.1, 0.2, 2.9, 2.2], [3.1, 2.0, 0.8, 0.1]])

    def model():
        with pyro.plate("subjects", 2):
            pi = pyro.sample("pi", UniformPermutation(4))
            pyro.sample("y", dist.Normal(centers[pi], 0.7).to_event(1), obs=obs)

    def single(k):
        def m():
            pi = pyro.sample("pi", UniformPermutation(4))
            pyro.sample("y", dist.Normal(centers[pi], 0.7).to_event(1), obs=obs[k])

        return m

    pyro.set_rng_seed(2)
    kernel = PermutationKernel(model, num_chains=CHAINS)
    mcmc = MCMC(kernel, num_samples=1, warmup_steps=50, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["pi"][0]  # (C, 2, 4)
    assert draws.shape == (CHAINS, 2, 4)
    for k in range(2):
        _assert_fits(draws[:, k], exact_posterior(single(k), "pi"))


# ---------------------------------------------------------------- against brute force


def _log_target(n, seed):
    """An arbitrary log-density over the permutations of ``n`` as a model (a factor)."""
    table = 1.5 * torch.randn(math.factorial(n), generator=torch.Generator().manual_seed(seed))

    def model():
        pi = pyro.sample("pi", UniformPermutation(n))
        pyro.factor("w", table.double()[perm_to_rank(pi)])

    return model, table.double() - math.log(math.factorial(n))


def _brute_partners(x, i, allowed):
    n = len(x)
    return [j for j in range(n) if j != i and allowed[i, x[j]] and allowed[j, x[i]]]


def _brute_swap_proposals(x, allowed):
    """q(y | x) of every y reachable by one swap proposal (x itself for a stuck row)."""
    n = len(x)
    q = {}
    for i in range(n):
        partners = _brute_partners(x, i, allowed)
        if not partners:
            q[tuple(x)] = q.get(tuple(x), 0) + 1 / n
        for j in partners:
            y = list(x)
            y[i], y[j] = y[j], y[i]
            q[tuple(y)] = q.get(tuple(y), 0) + 1 / (n * len(partners))
    return q


ALLOWED4 = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)


def test_swap_proposal_and_its_hastings_ratio_match_brute_force():
    x = [1, 0, 2, 3]
    perm = torch.tensor(x).expand(40_000, 4).clone()
    torch.manual_seed(3)
    new, log_q, moved = _propose_swap(perm, ALLOWED4)
    q = _brute_swap_proposals(x, ALLOWED4)
    keys = list(q)
    ranks = perm_to_rank(torch.tensor(keys))
    counts = torch.bincount(perm_to_rank(new), minlength=24)[ranks]
    assert counts.sum() == 40_000  # nothing proposed outside the brute-force support
    assert pooled_goodness_of_fit(torch.tensor([q[k] for k in keys]), counts) > 1e-3
    for y in {tuple(v) for v in new.tolist()}:
        rows = (new == torch.tensor(y)).all(-1)
        if y == tuple(x):
            assert (log_q[rows] == 0).all()
            continue
        expected = math.log(_brute_swap_proposals(list(y), ALLOWED4)[tuple(x)] / q[y])
        assert torch.allclose(log_q[rows], torch.tensor(expected, dtype=torch.float64))
        assert FORBID is not None and ALLOWED4[torch.arange(4), torch.tensor(y)].all()


def test_unmasked_swap_proposal_is_uniform_over_transpositions_with_ratio_one():
    """Without forbidden pairs (the path that skips the partner counts), the proposal is
    brute force's with every pair allowed: each of the 6 transpositions of N = 4 with
    probability 1/6, and the Hastings ratio is one."""
    x = [2, 0, 3, 1]
    perm = torch.tensor(x).expand(30_000, 4).clone()
    torch.manual_seed(15)
    new, log_q, moved = _propose_swap(perm, None)
    q = _brute_swap_proposals(x, torch.ones(4, 4, dtype=torch.bool))
    assert len(q) == 6 and tuple(x) not in q
    ranks = perm_to_rank(torch.tensor(list(q)))
    counts = torch.bincount(perm_to_rank(new), minlength=24)[ranks]
    assert counts.sum() == 30_000 and moved.all() and (log_q == 0).all()
    assert pooled_goodness_of_fit(torch.tensor(list(q.values())), counts) > 1e-3


def _one_step(model, x, proposals, mask=None, chains=30_000, block_size=3):
    pyro.set_rng_seed(4)
    kernel = PermutationKernel(
        model,
        num_chains=chains,
        proposals=proposals,
        mask=mask,
        init={"pi": torch.tensor(x)},
        block_size=block_size,
    )
    kernel.setup(0)
    params = kernel.sample(kernel.initial_params)
    return torch.bincount(perm_to_rank(params["pi"]), minlength=24).double()


@pytest.mark.parametrize("mask", [ALLOWED4, None], ids=["forbidden pairs", "no mask"])
def test_swap_transition_matches_the_brute_force_metropolis_hastings_kernel(mask):
    model, log_p = _log_target(4, seed=5)
    x = [1, 0, 2, 3]
    counts = _one_step(model, x, ("swap",), mask=mask)
    allowed = torch.ones(4, 4, dtype=torch.bool) if mask is None else mask
    perms = all_permutations(4).tolist()
    rank = {tuple(p): r for r, p in enumerate(perms)}
    kernel = torch.zeros(24, dtype=torch.float64)
    for y, q_xy in _brute_swap_proposals(x, allowed).items():
        if y == tuple(x):
            kernel[rank[y]] += q_xy
            continue
        q_yx = _brute_swap_proposals(list(y), allowed)[tuple(x)]
        ratio = math.exp(log_p[rank[y]] - log_p[rank[tuple(x)]]) * q_yx / q_xy
        kernel[rank[y]] += q_xy * min(1.0, ratio)
        kernel[rank[tuple(x)]] += q_xy * (1 - min(1.0, ratio))
    assert torch.isclose(kernel.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert pooled_goodness_of_fit(kernel, counts) > 1e-3


def test_block_transition_matches_the_brute_force_gibbs_kernel():
    model, log_p = _log_target(4, seed=6)
    x = [2, 0, 3, 1]
    counts = _one_step(model, x, ("block",), mask=ALLOWED4, block_size=3)
    perms = all_permutations(4)
    rank = {tuple(p): r for r, p in enumerate(perms.tolist())}
    kernel = torch.zeros(24, dtype=torch.float64)
    subsets = list(itertools.combinations(range(4), 3))
    for rows in subsets:
        options = []
        for arrangement in itertools.permutations([x[r] for r in rows]):
            y = list(x)
            for r, col in zip(rows, arrangement):
                y[r] = col
            if ALLOWED4[torch.arange(4), torch.tensor(y)].all():
                options.append(rank[tuple(y)])
        weights = log_p[options].exp()
        for r, w in zip(options, weights / weights.sum()):
            kernel[r] += w / len(subsets)
    assert pooled_goodness_of_fit(kernel, counts) > 1e-3


# ----------------------------------------------------------------- forbidden pairs


def test_log_alpha_minus_inf_is_a_forbidden_pair():
    n = 6
    log_alpha = torch.zeros(n, n)
    log_alpha[0, 1:] = -math.inf  # row 0 can only take column 0
    log_alpha[1:, 0] = -math.inf
    log_alpha[2, 3] = -math.inf
    centers, obs = _data(n, 1.0, seed=7)

    def model():
        x = pyro.sample("X", GumbelSinkhorn(log_alpha, 1.0))
        pyro.sample("obs", dist.Normal(x @ centers, 1.0).to_event(2), obs=obs)

    pyro.set_rng_seed(7)
    kernel = PermutationKernel(model, "X", num_chains=50, block_size=4)
    mcmc = MCMC(kernel, num_samples=30, warmup_steps=5, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["X"]
    assert (draws[..., 0] == 0).all() and (draws[..., 2] != 3).all()
    assert (draws[..., 1:] != draws[..., 1:2]).any()  # the other rows move


def test_zero_density_proposals_are_never_entered():
    """Forbidden pairs that only the model knows (its density is -inf there) are rejected."""
    centers = torch.arange(5, dtype=torch.float)

    def model():
        pi = pyro.sample("pi", UniformPermutation(5))
        bad = (pi[..., 0] == 4) | (pi[..., 3] == 0)
        pyro.factor("forbid", torch.where(bad, -math.inf, 0.0))
        pyro.sample("y", dist.Normal(centers[pi], 2.0).to_event(1), obs=centers)

    pyro.set_rng_seed(8)
    kernel = PermutationKernel(model, num_chains=40, init={"pi": torch.arange(5)})
    mcmc = MCMC(kernel, num_samples=40, warmup_steps=0, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["pi"]
    assert not ((draws[..., 0] == 4) | (draws[..., 3] == 0)).any()
    assert (draws != torch.arange(5)).any()


def test_no_feasible_assignment_is_a_clear_error():
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[:2, :] = False
    mask[:2, 0] = True  # rows 0 and 1 both need column 0
    model, _ = _log_target(4, seed=0)
    with pytest.raises(ValueError, match="admit no permutation"):
        PermutationKernel(model, mask=mask).setup(0)


def test_random_initial_state_is_within_the_allowed_pairs_and_varies():
    model, _ = _log_target(4, seed=0)
    pyro.set_rng_seed(9)
    kernel = PermutationKernel(model, num_chains=200, mask=ALLOWED4)
    kernel.setup(0)
    init = kernel.initial_params["pi"]
    assert ALLOWED4[torch.arange(4), init].all()
    assert len({tuple(p) for p in init.tolist()}) > 3


def test_initial_state_from_a_guide_matching_and_from_a_permutation():
    model, _ = _log_target(4, seed=0)
    scores = torch.randn(4, 4)
    kernel = PermutationKernel(model, num_chains=3, init={"pi": scores})
    kernel.setup(0)
    assert (kernel.initial_params["pi"] == matching(scores)).all()
    per_chain = torch.stack([torch.randperm(4) for _ in range(3)])
    kernel = PermutationKernel(model, num_chains=3, init={"pi": per_chain})
    kernel.setup(0)
    assert (kernel.initial_params["pi"] == per_chain).all()
    with pytest.raises(ValueError, match="forbidden column"):
        PermutationKernel(model, init={"pi": torch.tensor([3, 2, 1, 0])}, mask=ALLOWED4).setup(0)


def test_mcmc_initial_params_are_used():
    model, _ = _log_target(4, seed=0)
    kernel = PermutationKernel(model)
    start = torch.tensor([3, 1, 0, 2])
    seen = []
    mcmc = MCMC(
        kernel,
        num_samples=2,
        warmup_steps=0,
        initial_params={"pi": start},
        disable_progbar=True,
        hook_fn=lambda k, params, stage, i: seen.append(k._initial_params["pi"].clone()),
    )
    mcmc.run()
    assert (seen[0] == start).all()


# ------------------------------------------------------------------------------ errors


def _gaussian_model():
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))
        pi = pyro.sample("pi", UniformPermutation(3))
        pyro.sample("y", dist.Normal(pi.float(), 1.0).to_event(1), obs=torch.zeros(3))

    return model


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_chains": 0}, ValueError, "num_chains"),
        ({"num_chains": 2.0}, ValueError, "num_chains"),
        ({"proposals": ("gibbs",)}, ValueError, "proposals"),
        ({"proposals": ()}, ValueError, "proposals"),
        ({"block_size": 1}, ValueError, "block_size"),
        ({"block_size": 8}, ValueError, "block_size"),
        ({"moves_per_step": 0}, ValueError, "moves_per_step"),
        ({"step_size": -1.0}, ValueError, "step_size"),
        ({"step_size": "1"}, TypeError, "step_size"),
        ({"target_accept": 1.0}, ValueError, "target_accept"),
        ({"num_leapfrog": 0}, ValueError, "num_leapfrog"),
        ({"init": [1]}, TypeError, "init"),
        ({"mask": [[True]]}, TypeError, "mask"),
        ({"sites": []}, ValueError, "sites"),
        ({"sites": ["pi", "pi"]}, ValueError, "twice"),
        ({"max_plate_nesting": -1}, ValueError, "max_plate_nesting"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PermutationKernel(_gaussian_model(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sites": "z"}, "is not a permutation"),
        ({"sites": "y"}, "observed"),
        ({"sites": "w"}, "not a sample site"),
        ({"block_size": 4}, "larger than the N = 3"),
        ({"mask": torch.ones(4, 4, dtype=torch.bool)}, r"mask must have shape \(\.\.\., 3, 3\)"),
        ({"mask": torch.ones(3, 3)}, "mask must be a bool tensor"),
        ({"mask": {"other": torch.ones(3, 3, dtype=torch.bool)}}, "not permutation sites"),
        ({"init": {"pi": torch.tensor([0, 0, 1])}}, "permutations"),
        ({"init": {"pi": torch.tensor([0, 1, 2, 3])}}, "N = 3"),
        ({"init": {"q": torch.tensor([0, 1, 2])}}, "not a latent site"),
        ({"init": {"z": torch.ones(2)}}, "shape"),
    ],
)
def test_bad_sites_masks_and_initial_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PermutationKernel(_gaussian_model(), **kwargs).setup(0)


def test_model_without_permutation_site_and_discrete_latents_are_refused():
    def no_perm():
        pyro.sample("x", FlatBirkhoff(3))

    with pytest.raises(ValueError, match="name the sites"):
        PermutationKernel(no_perm).setup(0)

    def discrete():
        pyro.sample("k", dist.Categorical(torch.ones(3)))
        pyro.sample("pi", UniformPermutation(3))

    with pytest.raises(ValueError, match="discrete latent site"):
        PermutationKernel(discrete).setup(0)


def test_zero_density_start_is_a_clear_error():
    def model():
        pi = pyro.sample("pi", UniformPermutation(3))
        pyro.factor("f", torch.where(pi[..., 0] == 0, -math.inf, 0.0))

    with pytest.raises(ValueError, match="zero density"):
        PermutationKernel(model, init={"pi": torch.arange(3)}).setup(0)


# ------------------------------------------------------------------ summaries and draws


def test_float64_matrix_site_and_get_chains():
    n = 5
    centers, obs = _data(n, 0.5, seed=10)
    centers, obs = centers.double(), obs.double()

    def model():
        x = pyro.sample("X", GumbelSinkhorn(torch.zeros(n, n, dtype=torch.float64), 1.0))
        assert x.dtype == torch.float64
        pyro.sample("obs", dist.Normal(x @ centers, 0.5).to_event(2), obs=obs)

    pyro.set_rng_seed(11)
    kernel = PermutationKernel(model, "X", num_chains=4)
    mcmc = MCMC(kernel, num_samples=20, warmup_steps=10, disable_progbar=True)
    mcmc.run()
    chains = get_chains(mcmc)["X"]
    assert chains.shape == (4, 20, n)
    assert (chains == mcmc.get_samples()["X"].transpose(0, 1)).all()
    m = marginal_assignment(chains, dim=(0, 1))
    assert torch.allclose(m.sum(-1), torch.ones(n, dtype=torch.float64))
    assert torch.allclose(m.sum(-2), torch.ones(n, dtype=torch.float64))


def test_marginal_assignment_counts_each_row_at_each_column():
    torch.manual_seed(12)
    draws = torch.stack([torch.randperm(4) for _ in range(30)]).reshape(2, 3, 5, 4)
    m = marginal_assignment(draws, dim=(0, 2))  # keeps dim 1
    assert m.shape == (3, 4, 4)
    for b in range(3):
        for i in range(4):
            for j in range(4):
                assert m[b, i, j] == (draws[:, b, :, i] == j).double().mean()
    with pytest.raises(ValueError, match="not its last"):
        marginal_assignment(draws, dim=-1)
    with pytest.raises(ValueError, match="permutations"):
        marginal_assignment(torch.zeros(3, 4, dtype=torch.long))


def test_summary_flags_chains_stuck_in_different_modes():
    torch.manual_seed(13)
    mixed = torch.stack([torch.randperm(6) for _ in range(4 * 200)]).reshape(4, 200, 6)
    stuck = mixed.clone()
    for c in range(4):  # each chain mostly at its own permutation
        keep = torch.rand(200) < 0.9
        stuck[c, keep] = torch.roll(torch.arange(6), c)
    good = permutation_summary({"pi": mixed}, print_table=False)["pi"]
    bad = permutation_summary({"pi": stuck}, print_table=False)["pi"]
    assert good["hamming"]["r_hat"] < 1.05 and bad["hamming"]["r_hat"] > 1.5
    assert good["position"]["r_hat"].max() < 1.05 and bad["position"]["r_hat"].max() > 1.5
    assert good["hamming"]["n_eff"] > 400 and bad["hamming"]["n_eff"] < 100


def test_summary_of_an_mcmc_run_prints_a_table(capsys):
    model, _ = mallows_model()
    pyro.set_rng_seed(14)
    mcmc = MCMC(
        PermutationKernel(model, num_chains=4), num_samples=30, warmup_steps=5, disable_progbar=True
    )
    mcmc.run()
    out = permutation_summary(mcmc, reference=torch.tensor([1, 0, 3, 2]))
    printed = capsys.readouterr().out
    assert "pi hamming" in printed and "r_hat" in printed
    assert out["pi"]["position"]["mean"].shape == (4,)
    rates = mcmc.kernel.diagnostics()
    assert set(rates) == {"swap acceptance", "block move rate"}
    assert all(0 < v < 1 for v in rates.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_chains_stay_on_the_device():
    centers = torch.arange(4.0, device="cuda")

    def model():
        pi = pyro.sample("pi", UniformPermutation(4, device="cuda"))
        pyro.sample("y", dist.Normal(centers[pi], 0.5).to_event(1), obs=centers.flip(0))

    kernel = PermutationKernel(model, num_chains=16)
    mcmc = MCMC(kernel, num_samples=5, warmup_steps=5, disable_progbar=True)
    mcmc.run()
    assert mcmc.get_samples()["pi"].device.type == "cuda"
