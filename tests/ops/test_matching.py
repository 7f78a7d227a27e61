import importlib
import itertools

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.ops.matching import matching
from pyro_permutations.ops.permutations import all_permutations, perm_to_matrix

FLOAT_DTYPES = [torch.float32, torch.float64]
NEG_INF = float("-inf")


def total_score(scores, perm):
    """``sum_i scores[..., i, perm[..., i]]``."""
    return scores.gather(-1, perm.unsqueeze(-1)).squeeze(-1).sum(-1)


def brute_force(scores):
    """Best score and best permutation by enumerating all n! permutations."""
    n = scores.shape[-1]
    table = all_permutations(n)  # (n!, n)
    rows = torch.arange(n)
    all_scores = scores[..., rows, table].sum(-1)  # (..., n!)
    best = all_scores.argmax(-1)
    return all_scores.max(-1).values, table[best]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@settings(deadline=None, max_examples=20)
@given(n=st.integers(min_value=1, max_value=6), seed=st.integers(0, 2**31 - 1))
def test_matches_brute_force(dtype, n, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, n, n, generator=generator, dtype=dtype)
    perm = matching(scores)
    assert perm.shape == (2, 3, n) and perm.dtype == torch.long
    assert (perm.sort(-1).values == torch.arange(n)).all()
    best_score, best_perm = brute_force(scores.double())
    torch.testing.assert_close(total_score(scores.double(), perm), best_score)
    assert torch.equal(perm, best_perm)  # random normal scores: ties have probability zero


def test_frobenius_form():
    # <P, X>_F of the result is the largest over all permutation matrices.
    scores = torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    best = (perm_to_matrix(matching(scores), dtype=torch.float64) * scores).sum()
    every = (perm_to_matrix(all_permutations(5), dtype=torch.float64) * scores).sum((-2, -1))
    assert best == every.max()


def test_recovers_planted_permutation():
    generator = torch.Generator().manual_seed(1)
    perm = torch.rand(4, 30, generator=generator).argsort(-1)
    scores = 10 * perm_to_matrix(perm) + torch.rand(4, 30, 30, generator=generator)
    assert torch.equal(matching(scores), perm)


def test_invariant_to_row_and_column_shifts():
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(3, 7, 7, generator=generator, dtype=torch.float64)
    shifted = scores + torch.randn(3, 7, 1, generator=generator, dtype=torch.float64)
    shifted = shifted + torch.randn(3, 1, 7, generator=generator, dtype=torch.float64)
    assert torch.equal(matching(scores), matching(shifted))


@pytest.mark.parametrize("shape", [(), (4,), (2, 3), (0,)])
def test_batch_shapes(shape):
    scores = torch.randn(shape + (4, 4), generator=torch.Generator().manual_seed(3))
    perm = matching(scores)
    assert perm.shape == shape + (4,)
    for index in itertools.product(*map(range, shape)):
        assert torch.equal(perm[index], matching(scores[index]))


@settings(deadline=None, max_examples=20)
@given(n=st.integers(min_value=2, max_value=6), seed=st.integers(0, 2**31 - 1))
def test_forbidden_entries(n, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(4, n, n, generator=generator, dtype=torch.float64)
    # Forbid about half the entries but keep one hidden permutation allowed.
    forbidden = torch.rand(4, n, n, generator=generator) < 0.5
    hidden = torch.rand(4, n, generator=generator).argsort(-1)
    forbidden &= ~perm_to_matrix(hidden, dtype=torch.bool)
    scores = scores.masked_fill(forbidden, NEG_INF)
    perm = matching(scores)
    achieved = total_score(scores, perm)
    assert torch.isfinite(achieved).all()
    assert not forbidden.gather(-1, perm.unsqueeze(-1)).any()
    best_score, best_perm = brute_force(scores)
    torch.testing.assert_close(achieved, best_score)
    assert torch.equal(perm, best_perm)


@pytest.mark.parametrize(
    "pattern",
    [
        [[NEG_INF, NEG_INF], [0.0, 0.0]],  # a row with no allowed column
        [[0.0, NEG_INF, NEG_INF], [0.0, NEG_INF, NEG_INF], [0.0, 0.0, 0.0]],  # Hall violated
    ],
)
def test_infeasible_raises(pattern):
    scores = torch.tensor(pattern)
    with pytest.raises(ValueError, match="scores.*no perfect matching"):
        matching(scores)
    batch = torch.stack([torch.zeros_like(scores), scores])
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        matching(batch)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_requires_grad_and_dtypes(dtype):
    scores = torch.randn(3, 5, 5, dtype=dtype, requires_grad=True)
    perm = matching(scores)
    assert perm.dtype == torch.long and not perm.requires_grad
    assert torch.equal(perm, matching(scores.detach().double()))


def test_bad_inputs():
    with pytest.raises(ValueError, match="scores must have shape"):
        matching(torch.zeros(3, 0))  # (rectangular scores are partial matchings: test_partial)
    with pytest.raises(ValueError, match="scores must have shape"):
        matching(torch.zeros(3))
    with pytest.raises(ValueError, match="scores contains NaN"):
        matching(torch.tensor([[0.0, float("nan")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"scores contains \+inf"):
        matching(torch.tensor([[0.0, float("inf")], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="scores must have a floating-point dtype"):
        matching(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="scores"):
        matching([[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda(dtype):
    scores = torch.randn(2, 3, 5, 5, dtype=dtype, device="cuda")
    perm = matching(scores)
    assert perm.device.type == "cuda"
    assert torch.equal(perm.cpu(), matching(scores.cpu()))


matching_module = importlib.import_module("pyro_permutations.ops.matching")


def test_same_as_plain_scipy_loop():
    # Subtracting row and column minima leaves the assignment unchanged.
    scores = torch.randn(50, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    scores[3, 0, 1:] = NEG_INF
    loop = [scipy.optimize.linear_sum_assignment(s, maximize=True)[1] for s in scores.numpy()]
    assert torch.equal(matching(scores), torch.from_numpy(np.stack(loop)))


@pytest.mark.parametrize("workers", [2, 3, 7, 64])
def test_threaded_same_as_sequential(workers):
    scores = torch.randn(37, 9, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    sequential, problem = matching_module._solve_batch(scores.numpy(), 1)
    assert problem is None
    threaded, problem = matching_module._solve_batch(scores.numpy(), workers)
    assert problem is None
    assert np.array_equal(threaded, sequential)


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_threaded_reports_first_infeasible(workers):
    scores = torch.randn(20, 3, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    scores[[7, 16], :, 0] = NEG_INF  # column 0 forbidden in matrices 7 and 16
    _, problem = matching_module._solve_batch(scores.numpy(), workers)
    assert problem == (7, "infeasible")


def test_parallel_path_same_result(monkeypatch):
    scores = torch.randn(2, 30, 6, 6, generator=torch.Generator().manual_seed(7))
    sequential = matching(scores)
    monkeypatch.setattr(matching_module, "PARALLEL_MIN_ENTRIES", 0)
    monkeypatch.setattr(matching_module.torch, "get_num_threads", lambda: 3)
    assert torch.equal(matching(scores), sequential)
    scores[1, 4, 0, :] = NEG_INF  # row 0 of matrix [1, 4] has no allowed column
    with pytest.raises(ValueError, match=r"scores\[1, 4\]"):
        matching(scores)


@pytest.mark.parametrize("value, message", [(float("nan"), "NaN"), (float("inf"), r"\+inf")])
def test_parallel_path_bad_values(monkeypatch, value, message):
    monkeypatch.setattr(matching_module, "PARALLEL_MIN_ENTRIES", 0)
    monkeypatch.setattr(matching_module.torch, "get_num_threads", lambda: 3)
    scores = torch.randn(9, 4, 4)
    scores[6, 1, 2] = value
    scores[2, 0, :] = NEG_INF  # an infeasible matrix before it: bad values are reported first
    with pytest.raises(ValueError, match=f"scores contains {message}"):
        matching(scores)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_invariant_to_scaling_up_to_the_largest_float(dtype):
    """A positive factor keeps every total's order: scores scaled by a power of two (exactly)
    until they reach the dtype's largest number, with forbidden pairs among them, give the same
    permutations. (Their row differences overflow float64 to +inf, the mark of a forbidden
    pair, unless the costs are scaled down first.)"""
    generator = torch.Generator().manual_seed(5)
    scores = torch.rand(50, 5, 5, generator=generator, dtype=dtype) * 2 - 1
    forbidden = torch.rand(50, 5, 5, generator=generator) < 0.3
    forbidden &= ~perm_to_matrix(torch.rand(50, 5, generator=generator).argsort(-1), torch.bool)
    scores = scores.masked_fill(forbidden, NEG_INF)
    huge = scores * 2.0 ** {torch.float32: 127, torch.float64: 1023}[dtype]  # half the largest
    assert torch.isfinite(huge[scores.isfinite()]).all()
    assert torch.equal(matching(huge), matching(scores))
    largest = torch.finfo(dtype).max
    rows = torch.tensor([[largest, -largest], [largest, -largest]], dtype=dtype)
    assert sorted(matching(rows).tolist()) == [0, 1]  # a tie: either permutation, no error
