"""Partial permutations (perm[i] = j, or -1 for an unmatched row): the value type, its
constraints, and ``matching`` on rectangular scores and with unmatched scores, against
brute force over every partial matching and against scipy on the augmented problem."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from pyro_permutations import constraints
from pyro_permutations.ops import (
    all_partial_perms,
    matching,
    matrix_to_partial_perm,
    num_partial_perms,
    partial_perm_to_matrix,
    sinkhorn,
)

FLOAT_DTYPES = [torch.float32, torch.float64]


def brute_force_count(n, m):
    """Partial matchings of n rows into m columns, counted by choosing the matched rows."""
    total = 0
    for k in range(min(n, m) + 1):
        total += math.comb(n, k) * math.perm(m, k)
    return total


@pytest.mark.parametrize("n, m", [(1, 1), (2, 3), (3, 2), (3, 3), (4, 2)])
def test_enumeration_is_every_partial_perm_once(n, m):
    perms = all_partial_perms(n, m)
    assert perms.shape == (brute_force_count(n, m), n) == (num_partial_perms(n, m), n)
    assert len({tuple(p) for p in perms.tolist()}) == perms.shape[0]
    for p in perms.tolist():
        cols = [j for j in p if j != -1]
        assert len(set(cols)) == len(cols) and all(0 <= j < m for j in cols)


def test_matrix_round_trip_and_constraints():
    perms = all_partial_perms(3, 4)
    matrices = partial_perm_to_matrix(perms, 4)
    assert matrices.shape == (perms.shape[0], 3, 4)
    # One 1 where matched, in the named column; rows of -1 all zero.
    for p, mat in zip(perms.tolist(), matrices):
        for i, j in enumerate(p):
            expected = torch.zeros(4)
            if j >= 0:
                expected[j] = 1
            assert torch.equal(mat[i], expected)
    assert torch.equal(matrix_to_partial_perm(matrices), perms)
    assert bool(constraints.partial_permutation.check(perms).all())
    assert bool(constraints.PartialPermutation(num_cols=4).check(perms).all())
    assert not bool(constraints.PartialPermutation(num_cols=3).check(perms).all())
    assert bool(constraints.partial_permutation_matrix.check(matrices).all())


def test_constraints_reject():
    bad = torch.tensor([[0, 0, -1], [1, -2, 0], [2, -1, 1]])
    assert constraints.partial_permutation.check(bad).tolist() == [False, False, True]
    assert not bool(constraints.partial_permutation.check(torch.tensor([0.0, 1.0])))
    two_in_col = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    half = torch.tensor([[0.5, 0.0], [0.0, 1.0]])
    check = constraints.partial_permutation_matrix.check
    assert not bool(check(two_in_col)) and not bool(check(half))
    assert bool(check(torch.zeros(2, 3)))
    assert constraints.partial_permutation.is_discrete
    assert constraints.partial_permutation.event_dim == 1
    assert constraints.partial_permutation_matrix.event_dim == 2


@pytest.mark.parametrize("n, m", [(2, 3), (3, 2), (3, 3)])
def test_complete_constraints_keep_the_matchings_of_min_n_m_pairs(n, m):
    """``complete=True`` keeps exactly the partial matchings of ``min(N, M)`` pairs, for the
    vectors, their matrices, and (with sums of one on the smaller side) soft matrices: a
    Sinkhorn matrix of rectangular scores is in it, one with unmatched scores is not."""
    perms = all_partial_perms(n, m)
    full = (perms >= 0).sum(-1) == min(n, m)
    matrices = partial_perm_to_matrix(perms, m)
    assert torch.equal(constraints.PartialPermutation(num_cols=m, complete=True).check(perms), full)
    assert torch.equal(constraints.PartialPermutationMatrix(complete=True).check(matrices), full)
    assert torch.equal(constraints.PartialBirkhoff(complete=True).check(matrices), full)
    assert bool(constraints.partial_birkhoff.check(matrices).all())
    x = torch.randn(n, m, generator=torch.Generator().manual_seed(n + m), dtype=torch.float64)
    assert bool(constraints.PartialBirkhoff(complete=True).check(sinkhorn(x)))
    dustbin = sinkhorn(x, unmatched_rows=0.0, unmatched_cols=0.0)[:n, :m]  # the real block
    assert not bool(constraints.PartialBirkhoff(complete=True).check(dustbin))
    assert bool(constraints.partial_birkhoff.check(dustbin))
    with pytest.raises(ValueError, match="needs num_cols"):
        constraints.PartialPermutation(complete=True)


def test_value_type_errors():
    with pytest.raises(ValueError, match="column 1 for more than one row"):
        partial_perm_to_matrix(torch.tensor([1, -1, 1]), 3)
    with pytest.raises(ValueError, match="0..2"):
        partial_perm_to_matrix(torch.tensor([3, -1]), 3)
    with pytest.raises(ValueError, match="-1 \\(unmatched\\)"):
        partial_perm_to_matrix(torch.tensor([-2, 0]), 3)
    with pytest.raises(ValueError, match="signed integer"):
        partial_perm_to_matrix(torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="num_cols"):
        partial_perm_to_matrix(torch.tensor([0, 1]), 0)
    with pytest.raises(TypeError, match="perm"):
        partial_perm_to_matrix([0, 1], 2)
    with pytest.raises(ValueError, match="at most one 1 in each row and each column"):
        matrix_to_partial_perm(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="at most one 1"):
        matrix_to_partial_perm(torch.tensor([[0.5, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="at most one 1"):
        matrix_to_partial_perm(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="too many|more than can be enumerated"):
        all_partial_perms(9, 9)


def total(scores, u, v, perm):
    """Matched scores plus unmatched scores of the unmatched rows and columns (numpy)."""
    matched_cols = {j for j in perm if j >= 0}
    value = sum(scores[i, j] if j >= 0 else u[i] for i, j in enumerate(perm))
    return value + sum(v[j] for j in range(scores.shape[1]) if j not in matched_cols)


@pytest.mark.parametrize("n, m", [(2, 3), (3, 2), (3, 3), (4, 2)])
def test_matching_with_unmatched_scores_is_brute_force_optimum(n, m):
    g = torch.Generator().manual_seed(n * 10 + m)
    scores = torch.randn(6, n, m, generator=g, dtype=torch.float64)
    u = torch.randn(6, n, generator=g, dtype=torch.float64)
    v = torch.randn(6, m, generator=g, dtype=torch.float64)
    perms = matching(scores, unmatched_rows=u, unmatched_cols=v)
    assert perms.shape == (6, n) and perms.dtype == torch.long
    candidates = all_partial_perms(n, m).tolist()
    for b in range(6):
        x, ub, vb = scores[b].numpy(), u[b].numpy(), v[b].numpy()
        best = max(total(x, ub, vb, p) for p in candidates)
        assert total(x, ub, vb, perms[b].tolist()) == pytest.approx(best, abs=1e-12)


def augmented_square(x, u, v):
    """The (N + M) square problem of the textbook dummy construction, built independently:
    rows = N items + M dummies, columns = M items + N dummies."""
    n, m = x.shape
    big = np.zeros((n + m, m + n))
    big[:n, :m] = x
    big[:n, m:] = -np.inf
    big[np.arange(n), m + np.arange(n)] = u
    big[n:, :m] = -np.inf
    big[n + np.arange(m), np.arange(m)] = v
    return big


def test_matching_with_unmatched_scores_equals_scipy_on_the_augmented_problem():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 12, generator=g, dtype=torch.float64)
    u = torch.rand(8, generator=g, dtype=torch.float64) * 2 - 0.5
    v = torch.rand(12, generator=g, dtype=torch.float64) * 2 - 0.5
    perm = matching(x, unmatched_rows=u, unmatched_cols=v).tolist()
    big = augmented_square(x.numpy(), u.numpy(), v.numpy())
    big[np.isneginf(big)] = -1e9  # scipy needs a feasible finite matrix here
    rows, cols = scipy.optimize.linear_sum_assignment(big, maximize=True)
    expected = [int(c) if c < 12 else -1 for c in cols[:8]]
    assert total(x.numpy(), u.numpy(), v.numpy(), perm) == pytest.approx(
        big[rows, cols].sum(), abs=1e-9
    )
    assert perm == expected


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n, m", [(3, 7), (7, 3), (1, 5)])
def test_rectangular_matching_equals_scipy(n, m, dtype):
    g = torch.Generator().manual_seed(n + 13 * m)
    scores = torch.randn(2, 3, n, m, generator=g, dtype=dtype)
    perms = matching(scores)
    assert perms.shape == (2, 3, n)
    for x, perm in zip(scores.reshape(-1, n, m), perms.reshape(-1, n)):
        rows, cols = scipy.optimize.linear_sum_assignment(x.double().numpy(), maximize=True)
        expected = -np.ones(n, dtype=np.int64)
        expected[rows] = cols
        assert perm.tolist() == expected.tolist()
        assert int((perm >= 0).sum()) == min(n, m)  # every item of the smaller side matched
    assert bool(constraints.partial_permutation.check(perms).all())


def test_rectangular_matching_forbidden_pairs_and_infeasible():
    x = torch.tensor([[0.0, 9.0, -torch.inf], [-torch.inf, 8.0, 1.0]])
    assert matching(x).tolist() == [1, 2]  # 9 + 1 beats 0 + 8
    with pytest.raises(ValueError, match="no matching of 2 pairs"):
        matching(torch.tensor([[-torch.inf, 1.0, -torch.inf], [-torch.inf, 2.0, -torch.inf]]))
    # Unmatched scores make every problem feasible.
    y = torch.tensor([[-torch.inf, 1.0, -torch.inf], [-torch.inf, 2.0, -torch.inf]])
    assert matching(y, unmatched_rows=0.0, unmatched_cols=0.0).tolist() == [-1, 1]


def test_rectangular_matching_bad_scores():
    for bad, message in [(float("inf"), "contains \\+inf"), (float("nan"), "contains NaN")]:
        x = torch.zeros(2, 3)
        x[0, 1] = bad
        x[1, 2] = -torch.inf
        with pytest.raises(ValueError, match=f"scores {message}"):
            matching(x)
        with pytest.raises(ValueError, match=f"scores {message}"):
            matching(x, unmatched_rows=0.0, unmatched_cols=0.0)


def test_matching_unmatched_bad_inputs():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="give both unmatched_rows and unmatched_cols"):
        matching(x, unmatched_rows=0.0)
    with pytest.raises(ValueError, match="unmatched_cols must be finite"):
        matching(x, unmatched_rows=0.0, unmatched_cols=torch.tensor(-torch.inf))
    with pytest.raises(ValueError, match="unmatched_rows must be finite"):
        matching(x, unmatched_rows=torch.tensor([0.0, float("nan")]), unmatched_cols=0.0)
    with pytest.raises(ValueError, match="unmatched_rows of shape \\(3,\\) does not fit scores"):
        matching(x, unmatched_rows=torch.zeros(3), unmatched_cols=0.0)
    with pytest.raises(ValueError, match="batch shapes of scores \\(4,\\) and unmatched_rows"):
        matching(torch.zeros(4, 2, 3), unmatched_rows=torch.zeros(5, 2), unmatched_cols=0.0)
    with pytest.raises(TypeError, match="unmatched_rows"):
        matching(x, unmatched_rows="0", unmatched_cols=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_partial_on_cuda():
    x = torch.randn(2, 3, 5, device="cuda")
    perm = matching(x, unmatched_rows=0.0, unmatched_cols=0.0)
    assert perm.device.type == "cuda"
    assert torch.equal(perm.cpu(), matching(x.cpu(), unmatched_rows=0.0, unmatched_cols=0.0))
    assert partial_perm_to_matrix(perm, 5).device.type == "cuda"


def test_matching_unmatched_scores_broadcast_with_the_scores():
    """Unmatched scores with more batch dimensions than the scores broadcast against them:
    each element of the result is the matching of its own scores and unmatched scores."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 2, generator=g, dtype=torch.float64)
    u = torch.randn(5, 3, generator=g, dtype=torch.float64)
    v = torch.randn(2, generator=g, dtype=torch.float64)
    perm = matching(x, unmatched_rows=u, unmatched_cols=v)
    assert perm.shape == (5, 3)
    for b in range(5):
        assert torch.equal(perm[b], matching(x, unmatched_rows=u[b], unmatched_cols=v))


def test_matching_number_unmatched_scores_keep_float64():
    """A Python number is taken in the scores' dtype: in float64 a score 1e-9 above it wins,
    and 1e300 is a finite unmatched score."""
    x = torch.tensor([[0.1 + 1e-9]], dtype=torch.float64)
    assert matching(x, unmatched_rows=0.1, unmatched_cols=0.0).item() == 0
    assert matching(x - 2e-9, unmatched_rows=0.1, unmatched_cols=0.0).item() == -1
    big = matching(torch.zeros(1, 1, dtype=torch.float64), unmatched_rows=1e300, unmatched_cols=0.0)
    assert big.item() == -1
