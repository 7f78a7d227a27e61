"""The small C. elegans data set of the tutorial's tests: the loader's N = 20 subset of the real
connectome, ``worms`` simulated worms of 30 steps, tolerance 0.05 and known fraction 0.2
(about 7.6 candidates per unknown neuron)."""

import torch

from tutorials.celegans.constraints import make_constraints
from tutorials.celegans.data import load_connectome
from tutorials.celegans.model import Problem
from tutorials.celegans.simulate import simulate


def tiny_data(cache_dir, worms, seed=0):
    """``(subset, recording, constraints, problem)`` for ``worms`` worms, seeded by ``seed``."""
    sub = load_connectome(cache_dir=cache_dir).subset(20)
    g = torch.Generator().manual_seed(seed)
    rec = simulate(sub.adjacency, worms=worms, steps=30, generator=g)
    con = make_constraints(torch.tensor(sub.positions), rec.truth, 0.05, 0.2, 0.05, g)
    prob = Problem(rec.activity, torch.tensor(sub.adjacency), rec.scale, rec.sigma, con.allowed)
    return sub, rec, con, prob
