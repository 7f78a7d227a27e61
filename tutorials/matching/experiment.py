"""The synthetic matching experiment of [BP] section 5, vectorised over repetitions.

Every repetition draws ``N = 6`` centres ``c_m ~ N(0, I_2)`` and one observation per centre in
shuffled order, ``y_n = c_{sigma(n)} + sigma_obs * eps_n``. The model is

.. math::

    X \\sim p(X), \\qquad y_n \\sim \\mathcal{N}\\Big(\\sum_m X_{nm} c_m, \\sigma^2 I\\Big),

with ``X`` a relaxed permutation (``X[n, m] = 1``: observation ``n`` is centre ``m``) and a
relaxed prior that stands in for the uniform prior over permutations. The exact posterior over
the 720 permutations comes from enumeration; each variational family is fitted by SVI, its
samples are rounded to permutations, and the Hellinger distance ([BP]'s "BD") between the two
pmfs is the score. Repetitions run side by side: a ``pyro.plate`` over repetitions, with one
set of variational parameters per repetition (Adam is element-wise, so this is the same as
separate fits, only faster).
"""

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam

from pyro_permutations.distributions import (
    FlatBirkhoff,
    GumbelSinkhorn,
    Mallows,
    RoundingBirkhoff,
    RoundingPrior,
    StickBreakingBirkhoff,
)
from pyro_permutations.infer import empirical_pmf, exact_posterior, hellinger_distance
from pyro_permutations.ops import matching, sinkhorn

N = 6
RELAXATIONS = ("stick-breaking", "rounding", "gumbel-sinkhorn")
MALLOWS_THETAS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)
MALLOWS = tuple(f"mallows-{theta:g}" for theta in MALLOWS_THETAS)
METHODS = RELAXATIONS + MALLOWS

#: Hyper-parameters of each relaxation, fixed for all sigmas as in [BP]: for each method the
#: configuration with the lowest mean distance over the four sigmas in the grid search
#: (``python -m tutorials.matching --grid-search --reps 20 --out tutorials/matching/results``,
#: results in ``tutorials/matching/results/grid_search.csv``).
DEFAULT_HYPER = {
    "stick-breaking": {
        "temperature": 1.0,
        "prior": "flat",
        "init_scale": 0.1,
        "scale_range": [0.01, 0.3],
    },
    "rounding": {
        "temperature": 0.9,
        "prior_eta": 0.7,
        "init_scale": 0.3,
        "scale_range": [0.05, 0.15],
        "sinkhorn_loc": True,
    },
    "gumbel-sinkhorn": {"temperature": 1.0, "prior_temperature": 0.3},
}


@dataclass
class Problem:
    """A batch of repetitions at one noise level: ``centers``, ``obs`` ``(R, N, 2)`` and the
    shuffles ``truth`` ``(R, N)`` (``obs[r, n]`` is a noisy ``centers[r, truth[r, n]]``)."""

    sigma: float
    centers: torch.Tensor
    obs: torch.Tensor
    truth: torch.Tensor


def make_problem(sigma, reps, seed, sigma_index, n=N):
    """Data of repetitions ``reps`` (a list of ints) with ``n`` centres each; each from its own
    seed, so a repetition's data does not depend on which others run beside it."""
    centers, obs, truth = [], [], []
    for rep in reps:
        g = torch.Generator().manual_seed(1_000_003 * seed + 10_007 * sigma_index + rep)
        c = torch.randn(n, 2, generator=g, dtype=torch.float64)
        perm = torch.randperm(n, generator=g)
        y = c[perm] + sigma * torch.randn(n, 2, generator=g, dtype=torch.float64)
        centers.append(c)
        obs.append(y)
        truth.append(perm)
    return Problem(sigma, torch.stack(centers), torch.stack(obs), torch.stack(truth))


def model(problem, prior):
    """The matching model: a relaxed permutation per repetition, observations given it."""
    reps = problem.centers.shape[0]
    with pyro.plate("reps", reps, dim=-1):
        x = pyro.sample("X", prior)
        mean = x.to(problem.centers) @ problem.centers
        pyro.sample("obs", dist.Normal(mean, problem.sigma).to_event(2), obs=problem.obs)


def exact_posteriors(problem):
    """Exact posterior over the 720 permutations for every repetition, ``(R, 720)``."""
    out = []
    for r in range(problem.centers.shape[0]):
        one = Problem(problem.sigma, problem.centers[r : r + 1], problem.obs[r : r + 1], None)

        def single(one=one):
            x = pyro.sample("X", FlatBirkhoff(N))
            mean = x.to(one.centers) @ one.centers[0]
            pyro.sample("obs", dist.Normal(mean, one.sigma).to_event(2), obs=one.obs[0])

        out.append(exact_posterior(single, "X", prior="uniform"))
    return torch.stack(out)


def map_permutations(problem):
    """The MAP permutation of each repetition: the assignment maximising the likelihood."""
    scores = -((problem.obs[:, :, None, :] - problem.centers[:, None, :, :]) ** 2).sum(-1)
    return matching(scores)


def mallows_pmfs(problem, theta):
    """[BP]'s baseline: footrule Mallows centred at the MAP, exact pmf ``(R, 720)``."""
    center = map_permutations(problem)
    log_p = Mallows(center, torch.tensor(theta, dtype=torch.float64), "footrule").log_prob_all()
    return log_p.exp().transpose(0, 1)


def _relaxation(method, hyper, reps, generator, schedule, n=N):
    """Prior, guide and variational family of a relaxation, for ``reps`` repetitions.

    ``schedule["tau"]`` is the guide's temperature at the current step (annealed by the
    caller); the fitted family uses the final temperature ``hyper["temperature"]``; ``n`` is
    the number of items."""
    shape = (reps, n, n)
    if method == "stick-breaking":
        # The prior that stands in for the uniform one: RoundingPrior (entries near 0 or 1,
        # [BP]'s choice) by default, or ``"prior": "flat"``, FlatBirkhoff, the flat density on
        # the polytope (docs/choosing.rst, "Which prior with which guide").
        kind = hyper.get("prior", "rounding")
        if kind == "flat":
            prior = FlatBirkhoff(n).expand((reps,))
        elif kind == "rounding":
            prior = RoundingPrior(n, torch.tensor(hyper["prior_eta"])).expand((reps,))
        else:
            raise ValueError(
                f"stick-breaking: hyper['prior'] must be 'rounding' (RoundingPrior, needs "
                f"'prior_eta') or 'flat' (FlatBirkhoff), got {kind!r}"
            )
        init = {
            "loc": 0.1 * torch.randn(reps, n - 1, n - 1, generator=generator),
            "scale": torch.full((reps, n - 1, n - 1), hyper.get("init_scale", 0.1)),
        }

        def family(loc, scale, tau):
            return StickBreakingBirkhoff(loc, scale, tau)

    elif method == "rounding":
        prior = RoundingPrior(n, torch.tensor(hyper["prior_eta"])).expand((reps,))
        if hyper.get("sinkhorn_loc"):
            # [BP]: M = Sinkhorn(log M0) with 10 sweeps, so the mean stays in the polytope.
            init = {
                "log_m0": 0.1 * torch.randn(shape, generator=generator),
                "scale": torch.full(shape, hyper.get("init_scale", 0.1)),
            }

            def family(log_m0, scale, tau):
                return RoundingBirkhoff(sinkhorn(log_m0, n_iters=10), scale, tau)

        else:
            init = {
                "loc": sinkhorn(0.1 * torch.randn(shape, generator=generator), n_iters=10),
                "scale": torch.full(shape, hyper.get("init_scale", 0.1)),
            }

            def family(loc, scale, tau):
                return RoundingBirkhoff(loc, scale, tau)

    elif method == "gumbel-sinkhorn":
        prior = GumbelSinkhorn(torch.zeros(shape), hyper["prior_temperature"])
        init = {"log_alpha": 0.1 * torch.randn(shape, generator=generator)}

        def family(log_alpha, tau):
            return GumbelSinkhorn(log_alpha, tau)

    else:
        raise ValueError(f"unknown relaxation {method!r}; choose one of {RELAXATIONS}")

    # The scale may be kept in a range ([BP] uses V in [0.1, 0.5] for rounding).
    low, high = hyper.get("scale_range", (0.0, math.inf))
    if low == 0 and high == math.inf:
        scale_constraint = dist.constraints.positive
    else:
        scale_constraint = dist.constraints.interval(low, high)

    def guide(problem, prior):
        params = {
            name: pyro.param(
                name,
                value,
                constraint=scale_constraint if name == "scale" else dist.constraints.real,
            )
            for name, value in init.items()
        }
        with pyro.plate("reps", reps, dim=-1):
            pyro.sample("X", family(**params, tau=schedule["tau"]))

    def fitted():
        params = {name: pyro.param(name).detach() for name in init}
        return family(**params, tau=hyper["temperature"])

    return prior, guide, fitted


def fit_relaxation(problem, method, hyper, steps, lr, samples, seed, final_lr=None, particles=1):
    """Fit one relaxation to every repetition of ``problem`` by SVI; return the pmfs of its
    rounded samples, ``(R, 720)``."""
    x = fit_relaxation_samples(
        problem, method, hyper, steps, lr, samples, seed, final_lr, particles
    )
    return empirical_pmf(x.transpose(0, 1))


def fit_relaxation_samples(
    problem, method, hyper, steps, lr, samples, seed, final_lr=None, particles=1
):
    """Fit one relaxation to every repetition of ``problem`` (of any number of centres) by SVI;
    return ``samples`` draws of the fitted family, ``(samples, R, N, N)``."""
    if not lr > 0 or not (final_lr is None or final_lr > 0):
        raise ValueError(
            f"lr and final_lr must be positive (final_lr None: no decay), got lr={lr!r}, "
            f"final_lr={final_lr!r}"
        )
    reps = problem.centers.shape[0]
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    # [BP] section 5 fits "with an annealing schedule": the guide's temperature falls
    # geometrically from ``anneal_from`` to ``temperature`` over the first ``anneal_fraction``
    # of the steps, then stays there (no annealing without ``anneal_from``).
    tau_end = hyper["temperature"]
    tau_start = hyper.get("anneal_from", tau_end)
    anneal_steps = max(1, round(hyper.get("anneal_fraction", 0.5) * steps))
    schedule = {"tau": tau_start}
    n = problem.centers.shape[-2]
    prior, guide, fitted = _relaxation(method, hyper, reps, generator, schedule, n=n)
    # Adam at ``lr`` (the paper's 0.1), decayed geometrically to ``final_lr`` by the last step.
    lrd = 1.0 if final_lr is None else (final_lr / lr) ** (1.0 / steps)
    optim = ClippedAdam({"lr": lr, "lrd": lrd, "clip_norm": 1e6})
    elbo = Trace_ELBO(
        num_particles=particles, vectorize_particles=particles > 1, max_plate_nesting=1
    )
    svi = SVI(model, guide, optim, elbo)
    for step in range(steps):
        frac = min(1.0, step / anneal_steps)
        schedule["tau"] = tau_start * (tau_end / tau_start) ** frac
        loss = svi.step(problem, prior)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{method}: the ELBO became {loss} (sigma {problem.sigma})")
    with torch.no_grad():
        return fitted().sample((samples,))  # (S, R, N, N)


def distances(truth, pmfs):
    """Hellinger distance per repetition, ``(R,)``."""
    return hellinger_distance(truth, pmfs)
