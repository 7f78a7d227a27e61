"""``PermutationKernel`` on the matching model: proposals and effective samples per second.

The model is the matching tutorial's with ``N`` centres (centres from ``N(0, I_2)``, one
shuffled noisy observation each, noise ``sigma = c / sqrt(N)``, about the distance between
neighbouring centres, so that the posterior is spread) and a ``FlatBirkhoff`` site sampled as
a permutation. ``c = 0.7`` at ``N = 20`` and ``50``; at ``N = 6`` the six centres happen to lie
far apart for that noise: the MAP assignment holds almost all of the exact posterior (the
share is printed below the table) and a chain hardly ever leaves it, so that an ESS means
nothing; ``N = 6`` uses ``c = 1.5``.

*ESS* is the effective sample size (Pyro's ``effective_sample_size`` over all chains of a
row) of the Hamming distance to the MAP assignment, measured at stationarity: every chain of
every row, the loop's included, starts from a posterior draw, the final state of one of 100
chains of a pre-run (``PermutationKernel`` with swap and block moves from the MAP, 300 steps
of 10 moves each). Starting from random permutations instead, as this benchmark once did,
measures the approach to the posterior, not sampling from it: the *random start* row (100
swap chains from random permutations, the same run otherwise) shows at ``N = 50`` draws still
far from the posterior's mean Hamming distance. *Mean H* is that mean over a row's draws (every row
targets the same posterior, so these agree up to Monte Carlo error; at ``N = 6`` the exact
value is printed below the table). *ESS/s* divides the ESS by the wall time of the whole run
(warm-up included).

Each ``PermutationKernel`` row runs ``pyro.infer.MCMC`` (progress bar off) for the stated
warm-up and sampling steps, one step being ``moves_per_step = 10`` proposals per chain
(``swap``: a transposition; ``block``: block Gibbs over ``k = 3`` rows, ``3! = 6``
arrangements, evaluated in the same model call); *proposals/s* counts model evaluations of
proposals over all chains (a block move evaluates 6). The baseline is the loop a user writes:
one chain, a uniformly random transposition per step, the joint log density by
``poutine.trace(poutine.condition(model, ...)).get_trace().log_prob_sum()``, accepted by the
Metropolis rule, keeping every step; it runs 4 chains one after the other (from the first 4
posterior draws), each for as many proposals as one kernel chain makes, and its ESS is that
of the 4 chains together, divided by their total time (one chain of that length gives too
noisy an ESS at ``N = 50``; the one-chain kernel rows have only that, so read them as rough).

The second table compares marginal assignment matrices at ``N = 50`` (``marginal_assignment``:
how often observation ``i`` was centre ``j``) by their mean row total variation,
``(1 / 2N) sum_ij |M_ij - M'_ij|``: two independent MCMC runs (100 chains each, swap and
block moves, different seeds, both from the MAP after a warm-up; their difference is the
Monte Carlo error), and the MCMC marginals against those of the matching tutorial's rounding
and Gumbel-Sinkhorn guides fitted by SVI with their default hyper-parameters (1,000 draws
each, rounded by ``matching``). The stick-breaking guide is timed for two SVI steps and left
out: its transform loops over the ``N^2`` entries in Python, so that the 1,000 steps the
other guides get would take over an hour at ``N = 50`` (the time is printed below the table).
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
from pyro_permutations.infer import (
    PermutationKernel,
    exact_posterior,
    get_chains,
    marginal_assignment,
)
from pyro_permutations.ops import all_permutations, hamming_distance, matching, perm_to_matrix

FULL = {"ns": [6, 20, 50], "chains": [1, 100], "warmup": 100, "samples": 1000, "moves": 10}
QUICK = {"ns": [6], "chains": [1, 4], "warmup": 2, "samples": 20, "moves": 2}
PRE_RUN = {"full": 300, "quick": 5}  # steps of the pre-run that draws the starting states
LOOP_CHAINS = 4
TARGET = 20.0
NOISE = {6: 1.5}  # c in sigma = c / sqrt(N); 0.7 elsewhere


def sigma(n):
    return NOISE.get(n, 0.7) / math.sqrt(n)


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
    """ESS of ``(chains, S)`` draws, or 0 for draws that never change."""
    if (hamming == hamming.reshape(-1)[0]).all():
        return 0.0
    return float(effective_sample_size(hamming.double(), chain_dim=0, sample_dim=1))


def posterior_draws(n, steps, moves, chains=100, seed=100):
    """``chains`` states from the posterior: the final states of a run of ``PermutationKernel``
    (swap and block moves) from the MAP, ``(chains, N)``."""
    model, mode = problem(n)
    pyro.set_rng_seed(seed)
    kernel = PermutationKernel(
        model, "X", num_chains=chains, moves_per_step=moves, init={"X": mode}
    )
    mcmc = MCMC(kernel, num_samples=1, warmup_steps=steps, disable_progbar=True)
    mcmc.run()
    return get_chains(mcmc)["X"][:, -1]


def ours(n, chains, proposal, config, start, seed=0):
    model, mode = problem(n)
    pyro.set_rng_seed(seed)
    init = None if start is None else {"X": start[:chains]}
    kernel = PermutationKernel(
        model,
        "X",
        num_chains=chains,
        proposals=(proposal,),
        moves_per_step=config["moves"],
        init=init,
    )
    mcmc = MCMC(
        kernel,
        num_samples=config["samples"],
        warmup_steps=config["warmup"],
        disable_progbar=True,
    )
    start_time = time.perf_counter()
    mcmc.run()
    seconds = time.perf_counter() - start_time
    draws = get_chains(mcmc)["X"]  # (chains, S, N)
    per_move = 6 if proposal == "block" else 1
    evaluations = chains * (config["warmup"] + config["samples"]) * config["moves"] * per_move
    hamming = hamming_distance(draws, mode)
    return {
        "seconds": seconds,
        "proposals_per_s": evaluations / seconds,
        "ess": _ess(hamming),
        "mean_h": float(hamming.double().mean()),
    }


def baseline(n, config, start, seed=0):
    """Single-chain swap Metropolis, written the obvious way; ``LOOP_CHAINS`` chains in turn,
    each as long as one kernel chain."""
    model, mode = problem(n)
    torch.manual_seed(seed)

    def log_joint(perm):
        values = {"X": perm_to_matrix(perm, dtype=torch.float32)}
        return poutine.trace(poutine.condition(model, data=values)).get_trace().log_prob_sum()

    warmup = config["warmup"] * config["moves"]
    steps = warmup + config["samples"] * config["moves"]
    chains = []
    start_time = time.perf_counter()
    for c in range(LOOP_CHAINS):
        perm = start[c].clone()
        current = log_joint(perm)
        trace = []
        for step in range(steps):
            i, j = torch.randperm(n)[:2].tolist()
            new = perm.clone()
            new[i], new[j] = perm[j], perm[i]
            proposed = log_joint(new)
            if torch.rand(()).log() < proposed - current:
                perm, current = new, proposed
            if step >= warmup:
                trace.append(perm.clone())
        chains.append(torch.stack(trace))
    seconds = time.perf_counter() - start_time
    hamming = hamming_distance(torch.stack(chains), mode)
    return {
        "seconds": seconds,
        "proposals_per_s": LOOP_CHAINS * steps / seconds,
        "ess": _ess(hamming),
        "mean_h": float(hamming.double().mean()),
    }


def _row_tv(a, b):
    return float((a - b).abs().sum() / (2 * a.shape[-1]))


def marginals_table(quick, log):
    """MCMC run against MCMC run, and against the tutorial's guides, at N = 50."""
    from tutorials.matching import experiment

    n = 10 if quick else 50
    warmup, steps, moves = (2, 10, 2) if quick else (300, 1000, 10)
    model, mode = problem(n)
    runs = []
    for seed in (1, 2):
        pyro.set_rng_seed(seed)
        kernel = PermutationKernel(
            model, "X", num_chains=100, moves_per_step=moves, init={"X": mode}
        )
        mcmc = MCMC(kernel, num_samples=steps, warmup_steps=warmup, disable_progbar=True)
        start = time.perf_counter()
        mcmc.run()
        seconds = time.perf_counter() - start
        runs.append(marginal_assignment(get_chains(mcmc)["X"], dim=(0, 1)))
        log(f"MCMC run seed {seed}: {seconds:.0f} s")
    rows = [
        [
            "MCMC run 2",
            f"{_row_tv(runs[0], runs[1]):.4f}",
            f"100 chains x {steps} steps of {moves} swap and {moves} block moves each, after "
            f"{warmup} warm-up steps from the MAP ({seconds:.0f} s)",
        ]
    ]
    centers, obs = data(n)
    fit_data = experiment.Problem(sigma(n), centers[None].double(), obs[None].double(), None)
    svi_steps = 20 if quick else 1000
    for method in ("rounding", "gumbel-sinkhorn"):
        hyper = experiment.DEFAULT_HYPER[method]
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
    hyper = experiment.DEFAULT_HYPER["stick-breaking"]
    timed_steps = 2
    start = time.perf_counter()
    experiment.fit_relaxation_samples(fit_data, "stick-breaking", hyper, timed_steps, 0.1, 1, 0)
    per_step = (time.perf_counter() - start) / timed_steps
    note = (
        f"The stick-breaking guide: {timed_steps} SVI steps took {per_step:.1f} s each at N = {n} "
        f"(with drawing one sample), so {svi_steps} steps would take about "
        f"{per_step * svi_steps / 60:.0f} min; left out."
    )
    log(note)
    return n, table(["against MCMC run 1", "mean row TV", "set-up"], rows), note


def _map_share(n, c):
    """The exact posterior probability of the MAP assignment with noise ``c / sqrt(n)``."""
    saved = NOISE.get(n)
    NOISE[n] = c
    try:
        model, _ = problem(n)
        return float(exact_posterior(model, "X", prior="uniform").max())
    finally:
        if saved is None:
            del NOISE[n]
        else:
            NOISE[n] = saved


def _row(rows, n, label, result, base_rate, log):
    """Appends a table row; returns the ESS/s ratio to the loop's (NaN if the loop's is 0)."""
    rate = result["ess"] / result["seconds"]
    ratio = rate / base_rate if base_rate > 0 else math.nan
    rows.append(
        [
            n,
            label,
            f"{result['proposals_per_s']:,.0f}",
            f"{result['ess']:.1f}",
            f"{rate:.2f}",
            f"{ratio:.1f}x" if base_rate > 0 else "n/a (loop ESS 0)",
            f"{result['mean_h']:.2f}",
        ]
    )
    log(" | ".join(str(v) for v in rows[-1]))
    return ratio


def run(quick, log=print):
    config = QUICK if quick else FULL
    pre_run = PRE_RUN["quick" if quick else "full"]
    rows = []
    speedups = {}
    notes = []
    for n in config["ns"]:
        start = posterior_draws(n, pre_run, config["moves"])
        base = baseline(n, config, start)
        base_rate = base["ess"] / base["seconds"]

        _row(rows, n, f"plain loop ({LOOP_CHAINS} chains in turn, swap)", base, base_rate, log)
        for chains in config["chains"]:
            for proposal in ("swap", "block"):
                result = ours(n, chains, proposal, config, start)
                label = f"PermutationKernel, {chains} chain{'s' if chains > 1 else ''}, {proposal}"
                speedups[(n, chains, proposal)] = _row(rows, n, label, result, base_rate, log)
        chains = config["chains"][-1]
        result = ours(n, chains, "swap", config, None)
        label = f"PermutationKernel, {chains} chains, swap, random start (not at stationarity)"
        _row(rows, n, label, result, base_rate, log)
        if n <= 8:
            model, mode = problem(n)
            probs = exact_posterior(model, "X", prior="uniform")
            exact_h = float((probs * hamming_distance(all_permutations(n), mode).double()).sum())
            notes.append(
                f"At N = {n} the exact posterior mean Hamming distance to the MAP is "
                f"{exact_h:.2f} (exact_posterior), and the MAP holds {float(probs.max()):.1%}; "
                f"with c = 0.7 it would hold {_map_share(n, 0.7):.1%}."
            )
    lines = [
        doc_markdown(__doc__),
        "",
        f"{config['warmup']} warm-up and {config['samples']} sampling steps per kernel run, "
        f"{config['moves']} moves per step; the loop makes as many proposals per chain; the "
        f"starting states come from a pre-run of {pre_run} steps.",
        "",
        table(
            ["N", "sampler", "proposals/s", "ESS", "ESS/s", "ESS/s vs loop", "mean H"],
            rows,
        ),
        "",
        *notes,
        "",
    ]
    if not quick:
        best = max(speedups[(50, 100, p)] for p in ("swap", "block"))
        verdict = "met" if best >= TARGET else "MISSED"
        lines.append(
            f"- Target (ESS/s at least {TARGET:.0f}x the plain loop at N = 50 with 100 chains, "
            f"at stationarity): {verdict}, {best:.1f}x (best proposal)."
        )
    n, marginals, note = marginals_table(quick, log)
    lines += ["", f"Marginal assignment matrices at N = {n}:", "", marginals, "", note]
    return "\n".join(lines)
