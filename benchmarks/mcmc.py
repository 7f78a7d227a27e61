"""``PermutationKernel`` on the matching model: proposals and effective samples per second.

The model is the matching tutorial's with ``N`` centres (centres from ``N(0, I_2)``, one
shuffled noisy observation each, noise ``sigma = 0.7 / sqrt(N)``, about the distance between
neighbouring centres, so that the posterior is spread at every ``N``) and a ``FlatBirkhoff``
site sampled as a permutation. Each configuration runs ``pyro.infer.MCMC`` with
``PermutationKernel`` (progress
bar off) for the stated warm-up and sampling steps; one step is one proposal per chain
(``swap``: a transposition; ``block``: block Gibbs over ``k = 3`` rows, ``3! = 6``
arrangements, evaluated in the same model call). *Proposals/s* counts model evaluations of
proposals (a block move evaluates 6), *ESS/s* is the effective sample size (Pyro's
``effective_sample_size`` over all chains) of the Hamming distance to the MAP assignment,
divided by the wall time of the whole run (warm-up included). The baseline is the loop a
user writes: one chain, a uniformly random transposition per step, the joint log density by
``poutine.trace(poutine.condition(model, ...)).get_trace().log_prob_sum()``, accepted by the
Metropolis rule, for the same number of steps.

The second table compares marginal assignment matrices at ``N = 50`` (``marginal_assignment``:
how often observation ``i`` was centre ``j``) by their mean row total variation,
``(1 / 2N) sum_ij |M_ij - M'_ij|``: two independent long MCMC runs (swap and block moves,
different seeds; their difference is the Monte Carlo error), and the MCMC marginals against
those of the matching tutorial's rounding and Gumbel-Sinkhorn guides fitted by SVI with their
default hyper-parameters (1,000 draws each, rounded by ``matching``). The stick-breaking guide is
left out here: at ``N = 50`` one SVI step takes seconds on this machine.
"""

import math
import time

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC
from pyro.ops.stats import effective_sample_size

from benchmarks._common import doc_markdown, table
from pyro_permutations.distributions import FlatBirkhoff
from pyro_permutations.infer import PermutationKernel, get_chains, marginal_assignment
from pyro_permutations.ops import hamming_distance, matching, perm_to_matrix

FULL = {"ns": [6, 20, 50], "chains": [1, 100], "warmup": 1000, "samples": 1000}
QUICK = {"ns": [6], "chains": [1, 4], "warmup": 5, "samples": 20}
TARGET = 20.0


def sigma(n):
    return 0.7 / math.sqrt(n)


def data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n, 2, generator=g)
    obs = centers[torch.randperm(n, generator=g)] + sigma(n) * torch.randn(n, 2, generator=g)
    return centers, obs


def problem(n, seed=0):
    """The model and its MAP assignment (the matching of the log-likelihood)."""
    centers, obs = data(n, seed)

    def model():
        x = pyro.sample("X", FlatBirkhoff(n))
        pyro.sample("obs", dist.Normal(x @ centers, sigma(n)).to_event(2), obs=obs)

    mode = matching(-((obs[:, None, :] - centers[None, :, :]) ** 2).sum(-1))
    return model, mode


def _ess(hamming):
    """ESS of ``(chains, S)`` draws, or 0 for a chain that never moved."""
    if (hamming == hamming.reshape(-1)[0]).all():
        return 0.0
    return float(effective_sample_size(hamming.double(), chain_dim=0, sample_dim=1))


def ours(n, chains, proposal, warmup, samples, seed=0):
    model, mode = problem(n)
    pyro.set_rng_seed(seed)
    kernel = PermutationKernel(model, "X", num_chains=chains, proposals=(proposal,))
    mcmc = MCMC(kernel, num_samples=samples, warmup_steps=warmup, disable_progbar=True)
    start = time.perf_counter()
    mcmc.run()
    seconds = time.perf_counter() - start
    draws = get_chains(mcmc)["X"]  # (chains, S, N)
    per_step = 6 if proposal == "block" else 1
    evaluations = chains * (warmup + samples) * per_step
    return {
        "seconds": seconds,
        "proposals_per_s": evaluations / seconds,
        "ess": _ess(hamming_distance(draws, mode)),
        "draws": draws,
    }


def baseline(n, warmup, samples, seed=0):
    """Single-chain swap Metropolis, written the obvious way."""
    model, mode = problem(n)
    torch.manual_seed(seed)

    def log_joint(perm):
        values = {"X": perm_to_matrix(perm, dtype=torch.float32)}
        return poutine.trace(poutine.condition(model, data=values)).get_trace().log_prob_sum()

    perm = torch.randperm(n)
    current = log_joint(perm)
    trace = []
    start = time.perf_counter()
    for step in range(warmup + samples):
        i, j = torch.randperm(n)[:2].tolist()
        new = perm.clone()
        new[i], new[j] = perm[j], perm[i]
        proposed = log_joint(new)
        if torch.rand(()).log() < proposed - current:
            perm, current = new, proposed
        if step >= warmup:
            trace.append(perm.clone())
    seconds = time.perf_counter() - start
    draws = torch.stack(trace)[None]
    return {
        "seconds": seconds,
        "proposals_per_s": (warmup + samples) / seconds,
        "ess": _ess(hamming_distance(draws, mode)),
    }


def _row_tv(a, b):
    return float((a - b).abs().sum() / (2 * a.shape[-1]))


def marginals_table(quick, log):
    """MCMC run against MCMC run, and against the tutorial's guides, at N = 50."""
    from tutorials.matching import experiment

    n = 10 if quick else 50
    steps = 20 if quick else 3000
    model, _ = problem(n)
    runs = []
    for seed in (1, 2):
        pyro.set_rng_seed(seed)
        kernel = PermutationKernel(model, "X", num_chains=100, proposals=("swap", "block"))
        mcmc = MCMC(kernel, num_samples=steps, warmup_steps=steps // 5, disable_progbar=True)
        start = time.perf_counter()
        mcmc.run()
        seconds = time.perf_counter() - start
        runs.append(marginal_assignment(get_chains(mcmc)["X"], dim=(0, 1)))
        log(f"MCMC run seed {seed}: {seconds:.0f} s")
    rows = [
        [
            "MCMC run 2",
            f"{_row_tv(runs[0], runs[1]):.4f}",
            f"100 chains x {steps} steps each, after {steps // 5} warm-up",
        ]
    ]
    centers, obs = data(n)
    fit_data = experiment.Problem(sigma(n), centers[None].double(), obs[None].double(), None)
    for method in ("rounding", "gumbel-sinkhorn"):
        hyper = experiment.DEFAULT_HYPER[method]
        svi_steps = 20 if quick else 1000
        start = time.perf_counter()
        x = experiment.fit_relaxation_samples(fit_data, method, hyper, svi_steps, 0.1, 1000, seed=0)
        seconds = time.perf_counter() - start
        guide = marginal_assignment(matching(x[:, 0].double()), dim=0)
        rows.append(
            [
                f"{method} guide",
                f"{_row_tv(runs[0], guide):.4f}",
                f"{svi_steps} SVI steps ({seconds:.0f} s), default hyper-parameters",
            ]
        )
        log(" | ".join(rows[-1]))
    return n, table(["against MCMC run 1", "mean row TV", "set-up"], rows)


def run(quick, log=print):
    config = QUICK if quick else FULL
    warmup, samples = config["warmup"], config["samples"]
    rows = []
    speedups = {}
    for n in config["ns"]:
        base = baseline(n, warmup, samples)
        rows.append(
            [
                n,
                "plain loop (1 chain, swap)",
                f"{base['proposals_per_s']:,.0f}",
                f"{base['ess']:.1f}",
                f"{base['ess'] / base['seconds']:.2f}",
                "1x",
            ]
        )
        log(" | ".join(str(v) for v in rows[-1]))
        for chains in config["chains"]:
            for proposal in ("swap", "block"):
                result = ours(n, chains, proposal, warmup, samples)
                ess_rate = result["ess"] / result["seconds"]
                base_rate = base["ess"] / base["seconds"]
                ratio = ess_rate / base_rate if base_rate > 0 else math.inf
                speedups[(n, chains, proposal)] = ratio
                rows.append(
                    [
                        n,
                        f"PermutationKernel, {chains} chain{'s' if chains > 1 else ''}, {proposal}",
                        f"{result['proposals_per_s']:,.0f}",
                        f"{result['ess']:.1f}",
                        f"{ess_rate:.2f}",
                        f"{ratio:.1f}x",
                    ]
                )
                log(" | ".join(str(v) for v in rows[-1]))
    lines = [
        doc_markdown(__doc__),
        "",
        f"{warmup} warm-up and {samples} sampling steps per run.",
        "",
        table(["N", "sampler", "proposals/s", "ESS", "ESS/s", "ESS/s vs loop"], rows),
        "",
    ]
    if not quick:
        best = max(speedups[(50, 100, p)] for p in ("swap", "block"))
        verdict = "met" if best >= TARGET else "MISSED"
        lines.append(
            f"- Target (ESS/s at least {TARGET:.0f}x the plain loop at N = 50 with 100 chains): "
            f"{verdict}, {best:.1f}x (best proposal)."
        )
    n, marginals = marginals_table(quick, log)
    lines += ["", f"Marginal assignment matrices at N = {n}:", "", marginals]
    return "\n".join(lines)
