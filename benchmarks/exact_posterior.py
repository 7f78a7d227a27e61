"""``exact_posterior`` on the matching model for N = 6..9: time and peak memory.

The model is the matching model of the tutorial with ``N`` centres and a ``FlatBirkhoff``
latent: ``P ~ FlatBirkhoff(N)``, ``y ~ Normal(P @ centers, 0.3)``; ``exact_posterior``
evaluates it at all ``N!`` permutation matrices (vectorised in chunks of 8192) and
normalises. Each ``N`` runs in a fresh subprocess after one warm-up call (which also builds the
cached table of all permutations, ``N! x N`` longs: 26 MiB at ``N = 9``, not counted in the
peak); the peak is the resident-set high-water mark during the measured call minus the
resident set before it (see the backward section for how it is measured).
"""

import math

import pyro
import pyro.distributions as dist
import torch

from benchmarks._common import doc_markdown, measured_in_subprocess, table
from pyro_permutations.distributions import FlatBirkhoff
from pyro_permutations.infer import exact_posterior

FULL = [6, 7, 8, 9]
QUICK = [4]


def workload(n):
    """Set-up for :func:`benchmarks._common.measured_in_subprocess`."""
    torch.manual_seed(0)
    centers = torch.randn(n, 2)
    obs = centers[torch.randperm(n)] + 0.3 * torch.randn(n, 2)

    def model():
        p = pyro.sample("P", FlatBirkhoff(n))
        pyro.sample("y", dist.Normal(p @ centers, 0.3).to_event(2), obs=obs)

    exact_posterior(model, "P", prior="uniform")  # warm-up, fills the permutation table cache

    def run():
        return exact_posterior(model, "P", prior="uniform")

    return run


def run(quick, log=print):
    ns = QUICK if quick else FULL
    results = measured_in_subprocess(
        "benchmarks.exact_posterior:workload", [{"n": n} for n in ns], repeats=2
    )
    rows = []
    for n, result in zip(ns, results):
        rows.append(
            [n, f"{math.factorial(n):,}", f"{result['seconds']:.3f}", f"{result['peak_mib']:.1f}"]
        )
        log(" | ".join(str(v) for v in rows[-1]))
    return "\n".join(
        [
            doc_markdown(__doc__),
            "",
            table(["N", "N!", "seconds", "peak MiB"], rows),
            "",
            "**Targets**: none set by the issue (reported for reference).",
        ]
    )
