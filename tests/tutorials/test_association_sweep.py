"""The association sweep's pieces: the guide's gate in its rounding, the score
initialisation, and the family floor's pmf against the distribution's own samples."""

import math

import torch

from pyro_permutations.distributions import PartialGumbelMatching
from pyro_permutations.infer import hellinger_distance
from pyro_permutations.ops import all_partial_perms
from tutorials.association import model as A
from tutorials.association import run as R
from tutorials.association import sweep as S

ARGS = (0.8, 0.05, 0.5)


def gated_frame():
    """A frame with at least one pair outside the gate."""
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        frame = A.simulate_frames(3, 1, *ARGS[:2], ARGS[2], 0.5, generator)[0]
        if torch.isinf(A.pair_log_likelihood(frame, ARGS[2])).any():
            return frame
    raise AssertionError("no gated frame")


def test_fitted_guide_never_rounds_to_a_gated_pair():
    frame = gated_frame()
    fitted, _ = A.fit_guide(frame, *ARGS, steps=5, lr=0.3, seed=0)
    outside = torch.isinf(A.pair_log_likelihood(frame, ARGS[2]))
    draws = fitted.sample((2000,))
    rows = torch.arange(3).expand_as(draws)
    used = draws >= 0
    assert not outside[rows[used], draws[used]].any()


def test_scores_init_without_steps_is_the_model_scores():
    frame = gated_frame()
    fitted, loss = A.fit_guide(frame, *ARGS, steps=0, lr=0.3, seed=0, init="scores")
    x, u, v = A.association_scores(frame, *ARGS)
    assert math.isnan(loss)
    assert torch.equal(fitted.log_alpha, x)
    assert torch.equal(fitted.unmatched_rows, u) and torch.equal(fitted.unmatched_cols, v)


def test_family_pmf_matches_partial_gumbel_matching_samples():
    torch.manual_seed(0)
    x = torch.randn(2, 3, dtype=torch.float64)
    x[0, 2] = -math.inf
    table = all_partial_perms(2, 3)
    b = S.incidence(table, 3)
    assert torch.equal(b.sum(-1), 5 - (table >= 0).sum(-1).double())  # N + M - k entries
    eps = S._gumbel((100000, b.shape[1]), torch.Generator().manual_seed(1))
    allowed = torch.isfinite(x).reshape(-1)
    q = S.family_pmf(x, allowed, b, eps)
    d = PartialGumbelMatching(x, unmatched_rows=torch.zeros(2), unmatched_cols=torch.zeros(3))
    empirical = R.rounded_pmf(d, table, 100000, seed=2)
    assert float(hellinger_distance(q, empirical)) < 0.02
    assert float(q[(table[:, 0] == 2)].sum()) == 0.0  # the forbidden pair
