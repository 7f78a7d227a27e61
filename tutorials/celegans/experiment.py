"""One point of the C. elegans experiment ([BP] section 6, Figure 7): simulate ``J`` worms from
the real connectome, draw the position mask and the known neurons, and fit every method under
the same wall-clock budget from the same start.

Choices the paper leaves open, fixed here (the docs page lists them with the reasons):

- ``T = 40`` time steps per worm, noise ``sigma = 1``, spectral radius ``rho = 0.9`` (see
  :mod:`tutorials.celegans.simulate`).
- Position noise: Gaussian of standard deviation ``noise_scale * nu`` (``noise_scale = 0.5``),
  truncated to ``(-nu, nu)`` (see :mod:`tutorials.celegans.constraints`).
- Every method starts from :func:`~tutorials.celegans.map_fit.regression_start` (graph
  matching of the ridge transition matrix to the connectome); its cost is paid once per point
  and reported apart, not charged to the methods' budgets.
- Each method gets ``budget`` seconds of wall clock after the start; accuracy is that of the
  estimate the method holds when the budget runs out.
- The random streams: the recordings depend on the seed only (so the points of a sweep at one
  seed share their recordings and differ in the mask); the mask on (seed, nu, known fraction);
  each method's own randomness on the seed.
"""

import math
import time
from dataclasses import dataclass

import torch

from tutorials.celegans.collapsed import fit_collapsed
from tutorials.celegans.constraints import make_constraints
from tutorials.celegans.map_fit import fit_map, regression_start
from tutorials.celegans.mcmc import fit_mcmc
from tutorials.celegans.model import VI_METHODS, Problem, accuracy, fit_vi
from tutorials.celegans.posterior import GUIDE_DRAWS
from tutorials.celegans.simulate import simulate

METHODS = VI_METHODS + ("mcmc", "mcmc-collapsed", "map")
#: VI steps allowed when only the time budget should stop a fit.
MAX_STEPS = 1_000_000


@dataclass
class Point:
    """A simulated data set with its mask: what every method at one point is fitted to."""

    problem: Problem
    truth: torch.Tensor
    known: torch.Tensor
    candidates: float
    start: torch.Tensor
    start_accuracy: float
    start_seconds: float


def _mix(*values):
    """A seed from several numbers (floats by their value in thousandths)."""
    out = 0
    for v in values:
        out = (out * 1_000_003 + round(1000 * v)) % (2**62)
    return out


def make_point(connectome, worms, nu, known, seed, steps=40, noise_scale=0.5, device="cpu"):
    """Simulate, mask and start one point (float64)."""
    g = torch.Generator().manual_seed(_mix(seed, worms))
    rec = simulate(connectome.adjacency, worms=worms, steps=steps, generator=g)
    g = torch.Generator().manual_seed(_mix(seed, worms, nu, known, 7))
    positions = torch.as_tensor(connectome.positions, dtype=torch.float64)
    con = make_constraints(positions, rec.truth, nu, known, noise_scale * nu, g)
    problem = Problem(
        rec.activity.to(device),
        torch.as_tensor(connectome.adjacency).to(device),
        rec.scale,
        rec.sigma,
        con.allowed.to(device),
    )
    begin = time.perf_counter()
    start = regression_start(problem).cpu()
    seconds = time.perf_counter() - begin
    return Point(
        problem,
        rec.truth,
        con.known,
        con.mean_candidates(),
        start,
        accuracy(start, rec.truth, con.known),
        seconds,
    )


def run_method(method, point, budget, seed):
    """Fit ``method`` to ``point`` for ``budget`` seconds.

    :returns: a dict with ``accuracy``, ``seconds`` (wall clock used), ``iterations`` (VI
        steps, MAP rounds, sweeps of the samplers) and ``trace``, a list of ``[seconds, accuracy,
        elbo, spread, truth mass]`` (``elbo`` None for MCMC and MAP; the posterior's spread and
        its mass on the true labels, :mod:`tutorials.celegans.posterior`, None for MAP, a
        point estimate; VI's from :data:`~tutorials.celegans.posterior.GUIDE_DRAWS` draws of
        the guide, the samplers' from their kept draws).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    truth, known = point.truth, point.known
    begin = time.perf_counter()
    if method in VI_METHODS:
        fit = fit_vi(
            method,
            point.problem,
            MAX_STEPS,
            seed,
            start=point.start.to(point.problem.activity.device),
            truth=truth,
            known=known,
            every=5,
            time_budget=budget,
            spread_draws=GUIDE_DRAWS,
        )
        perm, iterations = fit.perm.cpu(), fit.steps
        trace = [
            [s, a, e, *sp] for s, a, e, sp in zip(fit.seconds, fit.accuracy, fit.elbo, fit.spread)
        ]
        info = {}
    elif method in ("mcmc", "mcmc-collapsed"):
        fit = fit_mcmc if method == "mcmc" else fit_collapsed
        perm, history, info = fit(
            point.problem, point.start, seed, time_budget=budget, truth=truth, known=known
        )
        iterations = info["sweeps"]
        trace = [[s, a, None, sp, tm] for s, a, sp, tm in history]
    else:
        perm, history = fit_map(
            point.problem,
            rounds=MAX_STEPS,
            start=point.start.to(point.problem.activity.device),
            truth=truth,
            known=known,
            time_budget=budget,
        )
        iterations = len(history) - 1
        trace = [[s, a, None, None, None] for s, a in history[1:]]
        info = {}
    seconds = time.perf_counter() - begin
    acc = accuracy(perm.cpu(), truth, known)
    if not math.isfinite(acc):
        raise FloatingPointError(f"{method}: accuracy {acc}")
    return {
        "accuracy": acc,
        "seconds": seconds,
        "iterations": iterations,
        "trace": trace,
        "info": {k: float(v) for k, v in info.items()},
    }
