"""exact_posterior over partial matchings (issue 22): a discrete site on partial permutations,
a relaxed matrix site with a uniform prior, plates, and errors."""

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_permutations.distributions import (
    FlatBirkhoff,
    PartialGumbelSinkhorn,
    UniformPartialMatching,
)
from pyro_permutations.infer import exact_posterior
from pyro_permutations.ops import all_partial_perms, num_partial_perms, partial_perm_to_matrix

SIGMA = 0.5
P_MATCH = 0.7
LOG_CLUTTER = math.log(0.2)  # log density of an unmatched detection
OBJECTS = torch.tensor([0.0, 1.0], dtype=torch.float64)  # N = 2 rows
DETECTIONS = torch.tensor([[0.9, 3.0, 0.2], [1.2, -2.0, -0.1]], dtype=torch.float64)  # 2 sets


def log_normal(y, mu):
    return -0.5 * ((y - mu) / SIGMA) ** 2 - math.log(SIGMA * math.sqrt(2 * math.pi))


def by_hand(detection_sets, prior="model"):
    """The posterior by plain loops over every assignment of each row to a distinct column
    or to nothing (-1), keyed by the tuple: prior p^k (1 - p)^(n - k) (m - k)! / m! (or
    uniform), a Gaussian per matched pair and the clutter density per unmatched detection,
    summed over the detection sets."""
    n, m = len(OBJECTS), detection_sets.shape[-1]
    log_joint = {}
    for perm in itertools.product(range(-1, m), repeat=n):
        matched = [j for j in perm if j >= 0]
        if len(set(matched)) < len(matched):
            continue
        k = len(matched)
        lp = 0.0
        if prior == "model":
            lp += k * math.log(P_MATCH) + (n - k) * math.log(1 - P_MATCH)
            lp += math.lgamma(m - k + 1) - math.lgamma(m + 1)
        for y in detection_sets.tolist():
            lp += sum(log_normal(y[j], OBJECTS[i].item()) for i, j in enumerate(perm) if j >= 0)
            lp += (m - k) * LOG_CLUTTER
        log_joint[perm] = lp
    norm = torch.logsumexp(torch.tensor(list(log_joint.values()), dtype=torch.float64), 0)
    return {perm: math.exp(lp - norm.item()) for perm, lp in log_joint.items()}


def aligned(hand, n, m):
    """``hand``'s probabilities in ``all_partial_perms(n, m)`` order."""
    order = [tuple(p) for p in all_partial_perms(n, m).tolist()]
    assert sorted(order) == sorted(hand)  # the same support
    return torch.tensor([hand[p] for p in order], dtype=torch.float64)


def log_likelihood(p, detections):
    """``sum_ij P_ij log N(y_j; x_i) + (unmatched detections) log c``, from the matrix
    ``P`` ``(..., N, M)`` of the matching (linear in ``P``)."""
    pair = dist.Normal(OBJECTS[:, None], SIGMA).log_prob(detections[..., None, :])
    unmatched = 1 - p.sum(-2)  # (..., M)
    return (p * pair).sum((-2, -1)) + (unmatched * LOG_CLUTTER).sum(-1)


def discrete_model(detections):
    a = pyro.sample("a", UniformPartialMatching(2, detections.shape[-1], P_MATCH))
    p = partial_perm_to_matrix(a, detections.shape[-1], dtype=torch.float64)
    pyro.factor("detections", log_likelihood(p, detections))


def test_partial_site_matches_hand_computation():
    detections = DETECTIONS[0]
    probs = exact_posterior(discrete_model, "a", detections)
    assert probs.shape == (num_partial_perms(2, 3),) == (13,) and probs.dtype == torch.float64
    assert torch.allclose(probs, aligned(by_hand(detections[None]), 2, 3), atol=1e-12)
    log_probs = exact_posterior(discrete_model, "a", detections, chunk_size=4, log=True)
    assert torch.allclose(log_probs.exp(), probs, atol=1e-12)
    uniform = exact_posterior(discrete_model, "a", detections, prior="uniform")
    assert torch.allclose(uniform, aligned(by_hand(detections[None], "uniform"), 2, 3))


def test_rectangular_rows_more_than_columns():
    """N = 2 rows into M = 1 column: three partial matchings, against the loops."""
    detections = DETECTIONS[:1, :1]
    probs = exact_posterior(discrete_model, "a", detections[0])
    assert torch.allclose(probs, aligned(by_hand(detections), 2, 1), atol=1e-12)


def test_in_a_plate():
    """Two detection sets in a plate share the matching: their likelihoods add."""

    def model(sets):
        a = pyro.sample("a", UniformPartialMatching(2, sets.shape[-1], P_MATCH))
        p = partial_perm_to_matrix(a, sets.shape[-1], dtype=torch.float64)
        with pyro.plate("sets", sets.shape[0], dim=-1):
            pyro.factor("detections", log_likelihood(p, sets))

    probs = exact_posterior(model, "a", DETECTIONS)
    assert torch.allclose(probs, aligned(by_hand(DETECTIONS), 2, 3), atol=1e-12)
    assert torch.allclose(exact_posterior(model, "a", DETECTIONS, max_plate_nesting=2), probs)
    one = exact_posterior(model, "a", DETECTIONS[:1])
    assert not torch.allclose(one, probs, atol=1e-3)  # the second set counts


@pytest.mark.parametrize("unmatched", [True, False])
def test_relaxed_matrix_site_with_uniform_prior(unmatched):
    """A PartialGumbelSinkhorn site (prior="uniform") is scored at the partial permutation
    matrices; with the prior's match-count terms as a factor of P it equals the discrete
    model. Without unmatched scores its values match every row (its support is complete), so
    the posterior is the discrete one conditioned on two matches, 0 elsewhere."""
    detections = DETECTIONS[0]
    n, m = 2, 3
    extra = {"unmatched_rows": 0.0, "unmatched_cols": 0.0} if unmatched else {}

    def relaxed():
        p = pyro.sample(
            "P", PartialGumbelSinkhorn(torch.zeros(n, m, dtype=torch.float64), 0.3, **extra)
        )
        k = p.sum((-2, -1))
        log_odds = math.log(P_MATCH / (1 - P_MATCH))
        pyro.factor("matches", k * log_odds + torch.lgamma(m - k + 1))
        pyro.factor("detections", log_likelihood(p, detections))

    probs = exact_posterior(relaxed, "P", prior="uniform")
    assert probs.shape == (13,) and probs.dtype == torch.float64
    expected = aligned(by_hand(detections[None]), n, m)
    if not unmatched:
        complete = (all_partial_perms(n, m) >= 0).sum(-1) == n
        expected = torch.where(complete, expected, 0.0)
        expected = expected / expected.sum()
        assert (probs[~complete] == 0).all()
    assert torch.allclose(probs, expected, atol=1e-12)
    with pytest.raises(ValueError, match="prior='uniform'.*partial matching"):
        exact_posterior(relaxed, "P")


def test_flat_birkhoff_square_site_stays_on_permutations():
    """A square site of a support other than partial matchings enumerates the N! permutations
    (the square path is unchanged)."""

    def model():
        p = pyro.sample("P", FlatBirkhoff(3))
        pyro.factor("f", p[..., 0, 0])

    assert exact_posterior(model, "P").shape == (6,)


def test_errors():
    def big():
        pyro.sample("a", UniformPartialMatching(8, 8, 0.5))  # 1,441,729 partial matchings

    with pytest.raises(ValueError, match=r"1,441,729 values are too many.*500,000"):
        exact_posterior(big, "a")

    def relaxed_big():
        pyro.sample("P", PartialGumbelSinkhorn(torch.zeros(8, 9), 1.0))

    with pytest.raises(ValueError, match="partial matchings of N = 8 rows into M = 9"):
        exact_posterior(relaxed_big, "P", prior="uniform")
    with pytest.raises(ValueError, match="value_dtype applies to a site holding matrices"):
        exact_posterior(discrete_model, "a", DETECTIONS[0], value_dtype=torch.float64)

    def batched():
        pyro.sample("a", UniformPartialMatching(2, 3, torch.full((2,), 0.5)))

    with pytest.raises(ValueError, match="batch shape"):
        exact_posterior(batched, "a")


def test_partial_gumbel_matching_site_without_unmatched_scores():
    """PartialGumbelMatching without unmatched scores draws matchings of min(N, M) pairs only,
    so its support is complete: with prior="uniform" the posterior lives on those (as for a
    plain loop over them); with its own prior (it has no pmf) a clear error."""
    from pyro_permutations.distributions import PartialGumbelMatching

    weights = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)

    def model():
        a = pyro.sample("a", PartialGumbelMatching(torch.zeros(2, 3)))
        rows = torch.arange(2)
        pyro.factor("f", torch.where(a >= 0, weights[rows, a.clamp(min=0)], 0.0).sum(-1))

    probs = exact_posterior(model, "a", prior="uniform")
    perms = all_partial_perms(2, 3)
    complete = (perms >= 0).sum(-1) == 2
    score = torch.tensor(
        [sum(weights[i, j] for i, j in enumerate(p) if j >= 0) for p in perms.tolist()],
        dtype=torch.float64,
    )
    expected = torch.where(complete, score.exp(), 0.0)
    assert torch.allclose(probs, expected / expected.sum(), atol=1e-12)
    assert bool(PartialGumbelMatching(torch.zeros(2, 3)).support.check(perms[complete]).all())
    assert not PartialGumbelMatching(torch.zeros(2, 3)).support.check(perms[~complete]).any()
    with pytest.raises(ValueError, match="has no log_prob.*prior='uniform'"):
        exact_posterior(model, "a")
