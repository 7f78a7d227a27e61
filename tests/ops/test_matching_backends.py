"""The two CPU back ends of ``matching``: scipy's shortest augmenting paths and lapx's
Jonker-Volgenant solver. Each must reach scipy's optimal total (computed here directly by
``scipy.optimize.linear_sum_assignment`` on the float64 scores) on random, tied, rectangular
and huge scores; lapx must only be given what it handles (finite scores, large enough)."""

import importlib

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.ops import matching

matching_module = importlib.import_module("pyro_permutations.ops.matching")
HAVE_LAPX = matching_module._lapjvx_batch is not None
BACKENDS = [
    "scipy",
    pytest.param("lapx", marks=pytest.mark.skipif(not HAVE_LAPX, reason="lapx not installed")),
]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Every matrix to the given back end, whatever its size."""
    least = 0 if request.param == "lapx" else 10**9
    monkeypatch.setattr(matching_module, "LAPX_MIN_SQUARE", least)
    monkeypatch.setattr(matching_module, "LAPX_MIN_RECTANGULAR", least)
    return request.param


def scipy_best(scores):
    """Optimal totals ``(B,)`` of ``scores`` ``(B, N, M)`` by scipy, in float64."""
    x = scores.double().numpy()
    best = [m[scipy.optimize.linear_sum_assignment(m, maximize=True)].sum() for m in x]
    return torch.tensor(best, dtype=torch.float64)


def check_optimal(scores, perm):
    """``perm`` is a (partial) matching of ``min(N, M)`` distinct pairs reaching scipy's total."""
    n, m = scores.shape[-2:]
    matched = perm >= 0
    assert (matched.sum(-1) == min(n, m)).all()
    cols = torch.where(matched, perm, m + torch.arange(n))
    assert (cols.sort(-1).values.diff(dim=-1) > 0).all()  # no column twice
    picked = scores.double().gather(-1, perm.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    totals = (picked * matched).sum(-1)
    best = scipy_best(scores)
    torch.testing.assert_close(totals, best, rtol=1e-12, atol=1e-12 * best.abs().max())


@pytest.mark.parametrize("shape", [(7, 30, 30), (5, 30, 45), (5, 45, 30), (1, 1, 1), (3, 1, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_random_scores_reach_the_optimum(backend, shape, dtype):
    scores = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=dtype)
    check_optimal(scores, matching(scores))


@pytest.mark.parametrize("shape", [(6, 40, 40), (4, 25, 40), (4, 40, 25)])
def test_tied_scores_reach_the_optimum(backend, shape):
    """Integer scores in {0, 1, 2}: many optimal matchings, any of them will do."""
    g = torch.Generator().manual_seed(3)
    check_optimal(*(lambda s: (s, matching(s)))(torch.randint(0, 3, shape, generator=g).double()))


def test_huge_scores_reach_the_optimum(backend):
    """Scores up to ``2^1000`` go to the chosen back end unscaled; beyond, they are scaled down
    first (on the scipy path); either way the permutations are those of the unscaled scores."""
    scores = torch.randn(4, 30, 30, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for power in (990, 1020):
        assert torch.equal(matching(scores * 2.0**power), matching(scores))


@settings(deadline=None, max_examples=30)
@given(
    n=st.integers(1, 12),
    m=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    levels=st.sampled_from([2, 5, None]),
)
def test_lapx_path_agrees_with_scipy_on_any_small_shape(n, m, seed, levels):
    if not HAVE_LAPX:
        pytest.skip("lapx not installed")
    g = torch.Generator().manual_seed(seed)
    if levels is None:
        scores = torch.randn(3, n, m, generator=g, dtype=torch.float64)
    else:
        scores = torch.randint(0, levels, (3, n, m), generator=g).double()
    check_optimal(scores, torch.from_numpy(matching_module._solve_lapx(scores.numpy(), 1)))


@pytest.mark.skipif(not HAVE_LAPX, reason="lapx not installed")
def test_lapx_is_given_only_finite_scores_of_large_enough_matrices(monkeypatch):
    """Forbidden pairs go to scipy, which detects infeasibility (lapx would return a matching
    through a forbidden pair); small matrices go to scipy, whose calls cost less."""
    calls = []
    solver = matching_module._lapjvx_batch

    def spy(cost, **kwargs):
        calls.append(cost.shape)
        return solver(cost, **kwargs)

    monkeypatch.setattr(matching_module, "_lapjvx_batch", spy)
    g = torch.Generator().manual_seed(5)
    big = matching_module.LAPX_MIN_SQUARE
    matching(torch.randn(2, big, big, generator=g))
    assert calls == [(2, big, big)]
    matching(torch.randn(2, big - 1, big - 1, generator=g))
    wide = matching_module.LAPX_MIN_RECTANGULAR
    matching(torch.randn(wide - 2, wide - 1, generator=g))
    assert len(calls) == 1
    matching(torch.randn(wide // 2, wide, generator=g))
    assert calls[-1] == (1, wide // 2, wide)
    scores = torch.randn(2, big, big, generator=g)
    scores[1, 0, 3] = float("-inf")
    perm = matching(scores)
    assert len(calls) == 2 and perm[1, 0] != 3
    scores[1, :, 3] = float("-inf")
    with pytest.raises(ValueError, match=r"scores\[1\] has no perfect matching"):
        matching(scores)
    assert len(calls) == 2


@pytest.mark.skipif(not HAVE_LAPX, reason="lapx not installed")
@pytest.mark.parametrize("value, message", [(float("nan"), "NaN"), (float("inf"), r"\+inf")])
def test_lapx_sized_bad_values_get_the_same_errors(value, message):
    scores = torch.randn(3, 30, 30)
    scores[2, 4, 5] = value
    with pytest.raises(ValueError, match=f"scores contains {message}"):
        matching(scores)


@pytest.mark.skipif(not HAVE_LAPX, reason="lapx not installed")
@pytest.mark.parametrize("workers", [2, 3])
def test_lapx_threads_give_the_same_permutations(workers):
    scores = np.random.default_rng(6).standard_normal((9, 30, 30))
    one, _ = matching_module._solve_batch(scores, 1)
    many, _ = matching_module._solve_batch(scores, workers)
    assert np.array_equal(one, many)
