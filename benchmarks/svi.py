"""SVI on the matching model ([BP] section 5): time per step of each variational family.

Uses the tutorial's own code (``tutorials/matching/experiment.py``): ``make_problem`` at
sigma = 0.5 and ``fit_relaxation`` with the tutorial's hyper-parameters (``DEFAULT_HYPER``),
Adam at 0.1. Repetitions are vectorised (a plate): 50 is the tutorial's batch, 200 its full
protocol. One repetition per fit is what a loop over repetitions would run, so
``R * t(1) / t(R)`` is how much faster the plate is than that loop. The time per step is
``(T(W + S) - T(W)) / S``, ``T(k)`` the time of a fit with
``k`` steps (so set-up, warm-up and the final sampling cancel), ``W`` warm-up and ``S`` timed
steps.

The full tutorial (``python -m tutorials.matching --reps 200``: 4 sigmas x 200 repetitions x 3
relaxations x 1,000 SVI steps, plus sampling, exact posteriors and six Mallows baselines) is
run only with ``--full-tutorial``; otherwise its wall time is the one measured earlier on this
machine and stated in the README.
"""

import subprocess
import sys
import tempfile
import time

from benchmarks._common import doc_markdown, table
from tutorials.matching import experiment as E

FULL = {"reps": [1, 50, 200], "steps": 50, "warmup": 5}
QUICK = {"reps": [1, 4], "steps": 3, "warmup": 1}

#: Wall time of ``python -m tutorials.matching --reps 200`` measured on this machine before
#: this benchmark existed (README, "The matching tutorial").
KNOWN_TUTORIAL_SECONDS = 455.0
TUTORIAL_TARGET_SECONDS = 600.0


def seconds_per_step(method, reps, steps, warmup, sigma=0.5):
    """``(T(warmup + steps) - T(warmup)) / steps`` with ``T(k)`` the time of the tutorial's
    ``fit_relaxation`` with ``k`` SVI steps: the set-up and the final sampling cancel."""
    problem = E.make_problem(sigma, list(range(reps)), seed=0, sigma_index=2)
    hyper = E.DEFAULT_HYPER[method]

    def fit(k):
        start = time.perf_counter()
        E.fit_relaxation(problem, method, hyper, k, lr=0.1, samples=10, seed=0, final_lr=0.01)
        return time.perf_counter() - start

    fit(1)  # warm-up
    return max(fit(warmup + steps) - fit(warmup), 0.0) / steps


def full_tutorial_seconds():
    """Wall time of the full tutorial, fresh, into a temporary folder."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "tutorials.matching", "--reps", "200", "--out", out]
        start = time.perf_counter()
        subprocess.run(cmd + ["--fresh", "--no-progress"], check=True)
        return time.perf_counter() - start


def run(quick, log=print, full_tutorial=False):
    p = QUICK if quick else FULL
    rows = []
    for method in E.RELAXATIONS:
        times = {r: seconds_per_step(method, r, p["steps"], p["warmup"]) for r in p["reps"]}
        row = [method] + [f"{1e3 * times[r]:.2f}" for r in p["reps"]]
        for r in p["reps"][1:]:
            row.append(f"{r * times[1] / times[r]:.1f}x" if min(times[r], times[1]) > 0 else "-")
        rows.append(row)
        log(" | ".join(rows[-1]))
    lines = [
        doc_markdown(__doc__),
        "",
        f"S = {p['steps']} timed steps, W = {p['warmup']} warm-up steps, sigma = 0.5.",
        "",
        table(
            ["family"]
            + [f"ms per step, {r} reps" for r in p["reps"]]
            + [f"plate vs loop, {r} reps" for r in p["reps"][1:]],
            rows,
        ),
        "",
    ]
    if full_tutorial:
        seconds = full_tutorial_seconds()
        source = "measured in this run (`--full-tutorial`)"
    else:
        seconds = KNOWN_TUTORIAL_SECONDS
        source = "measured earlier on this machine (README); rerun with `--full-tutorial`"
    met = seconds < TUTORIAL_TARGET_SECONDS
    lines += [
        f"**Target**: the full [BP] Table 1 reproduction (200 repetitions, all sigmas and "
        f"methods) in under {TUTORIAL_TARGET_SECONDS / 60:g} minutes.",
        "",
        f"- `python -m tutorials.matching --reps 200`: {seconds:.0f} s, {source}: "
        + ("met" if met else f"MISSED by {seconds - TUTORIAL_TARGET_SECONDS:.0f} s")
        + f" ({seconds / TUTORIAL_TARGET_SECONDS:.0%} of the budget).",
    ]
    return "\n".join(lines)
