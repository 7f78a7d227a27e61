"""The mask of allowed pairs: the true label is always allowed, the tolerance is respected,
known neurons are fixed, and some permutation avoids every forbidden pair."""

import math

import pytest
import torch

from pyro_permutations.ops import log_sinkhorn, matching
from tutorials.celegans.constraints import make_constraints


def draw(n=40, worms=3, nu=0.1, known=0.25, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, generator=g, dtype=torch.float64)
    truth = torch.stack([torch.randperm(n, generator=g) for _ in range(worms)])
    return positions, truth, make_constraints(positions, truth, nu, known, noise, g)


@pytest.mark.parametrize("noise", [0.0, 0.05, 1.0])
@pytest.mark.parametrize("nu", [0.01, 0.1, 0.5])
def test_true_label_always_allowed(nu, noise):
    _, truth, c = draw(nu=nu, noise=noise)
    assert c.allowed.gather(2, truth[:, :, None]).all()


def test_noise_below_tolerance_and_mask_follows_positions():
    positions, truth, c = draw(nu=0.08, noise=0.2, known=0.0)
    assert ((c.observed_positions - positions[truth]).abs() < 0.08).all()
    near = (c.observed_positions[:, :, None] - positions[None, None, :]).abs() < 0.08
    assert torch.equal(c.allowed, near)
    # Not every pair is allowed, and the noise is not zero.
    assert not c.allowed.all() and (c.observed_positions != positions[truth]).any()


def test_known_neurons_fixed():
    _, truth, c = draw(n=40, known=0.25)
    assert (c.known.sum(1) == 10).all()
    for j in range(truth.shape[0]):
        for m in c.known[j].nonzero().flatten().tolist():
            row = c.allowed[j, m]
            assert row.sum() == 1 and row[truth[j, m]]
            assert c.allowed[j, :, truth[j, m]].sum() == 1
    # A known row is a single candidate; unknown ones have more on average.
    assert c.mean_candidates() > 1


def test_candidates_grow_with_tolerance():
    counts = [draw(nu=nu, known=0.1)[2].mean_candidates() for nu in (0.02, 0.1, 0.3)]
    assert counts[0] < counts[1] < counts[2]


def test_mask_feasible_for_sinkhorn_and_matching():
    _, truth, c = draw(n=30, nu=0.05, known=0.2)
    log_p, info = log_sinkhorn(c.log_mask(), return_info=True)
    assert info.converged.all()
    assert (log_p.exp()[~c.allowed] == 0).all()
    perm = matching(c.log_mask())
    assert c.allowed.gather(2, perm[:, :, None]).all()


def test_rejects_bad_arguments():
    positions, truth, _ = draw()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="nu"):
        make_constraints(positions, truth, 0.0, 0.1, 0.05, g)
    with pytest.raises(ValueError, match="known_fraction"):
        make_constraints(positions, truth, 0.1, 1.5, 0.05, g)
    with pytest.raises(ValueError, match="noise_std"):
        make_constraints(positions, truth, 0.1, 0.1, -math.inf, g)
