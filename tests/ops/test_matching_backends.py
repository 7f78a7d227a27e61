"""The two CPU back ends of ``matching``: scipy's shortest augmenting paths and lapx's
Jonker-Volgenant solver. Each must reach scipy's optimal total (computed here directly by
``scipy.optimize.linear_sum_assignment`` on the float64 scores) on random, tied, rectangular,
forbidden-pair and huge scores; lapx must only be given what it handles (no NaN, no ``+inf``,
nothing beyond the overflow guard), and infeasible patterns get scipy's error."""

import importlib

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.ops import matching

matching_module = importlib.import_module("pyro_permutations.ops.matching")
HAVE_LAPX = matching_module._lapjvr_batch is not None
BACKENDS = [
    "scipy",
    pytest.param("lapx", marks=pytest.mark.skipif(not HAVE_LAPX, reason="lapx not installed")),
]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Every matrix to the given back end."""
    monkeypatch.setattr(matching_module, "USE_LAPX", request.param == "lapx")
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
    cost = matching_module._lapx_costs(scores)
    check_optimal(scores, torch.from_numpy(matching_module._solve_lapx(cost, 1)))


@pytest.mark.parametrize("shape", [(5, 12, 12), (5, 9, 14), (5, 14, 9)])
def test_forbidden_pairs_are_avoided_at_the_optimum(backend, shape):
    """Random ``-inf`` patterns that leave a matching: the optimum over the allowed pairs."""
    g = torch.Generator().manual_seed(7)
    scores = torch.randn(shape, generator=g, dtype=torch.float64)
    scores[torch.rand(shape, generator=g) < 0.5] = float("-inf")
    keep = torch.randperm(max(shape[1:]), generator=g)
    for b in range(shape[0]):  # one allowed matching of min(N, M) pairs in every matrix
        rows = torch.arange(min(shape[1:]))
        if shape[1] <= shape[2]:
            scores[b, rows, keep[rows]] = torch.randn(len(rows), generator=g, dtype=torch.float64)
        else:
            scores[b, keep[rows], rows] = torch.randn(len(rows), generator=g, dtype=torch.float64)
    perm = matching(scores)
    matched = perm >= 0
    picked = scores.gather(-1, perm.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert torch.isfinite(picked[matched]).all()
    check_optimal(torch.where(torch.isinf(scores), -1e6, scores), perm)


@pytest.mark.skipif(not HAVE_LAPX, reason="lapx not installed")
def test_lapx_is_given_all_but_nan_infinite_and_huge_scores(monkeypatch):
    """lapx gets finite scores and forbidden pairs of every shape beyond a few small matrices
    (those go straight to scipy); NaN and ``+inf`` go to scipy's path (whose errors name them),
    as do scores beyond ``2^1000`` (scaled down there); an infeasible pattern (lapx raises) is
    named by scipy's path."""
    calls = []
    solver = matching_module._lapjvr_batch

    def spy(cost, **kwargs):
        calls.append(cost.shape)
        return solver(cost, **kwargs)

    monkeypatch.setattr(matching_module, "_lapjvr_batch", spy)
    g = torch.Generator().manual_seed(5)
    for shape in [(2, 3, 3), (4, 5), (1, 1), (8, 11, 11)]:  # few and small: scipy
        matching(torch.randn(shape, generator=g))
    assert calls == []
    for shape in [(9, 3, 3), (40, 50), (70, 20), (9, 1, 1)]:
        matching(torch.randn(shape, generator=g))
        assert calls[-1] == (1,) * (3 - len(shape)) + shape
    scores = torch.randn(9, 6, 6, generator=g)
    scores[1, 0, 3] = float("-inf")
    assert matching(scores)[1, 0] != 3 and len(calls) == 5
    assert matching(scores[:2])[1, 0] != 3 and len(calls) == 5  # few small: scipy's path
    scores[1, :, 3] = float("-inf")  # column 3 forbidden everywhere: lapx raises
    with pytest.raises(ValueError, match=r"scores\[1\] has no perfect matching"):
        matching(scores)
    assert len(calls) == 6
    scores[1, 2, :] = float("-inf")  # a whole row forbidden: not given to lapx
    with pytest.raises(ValueError, match=r"scores\[1\] has no perfect matching"):
        matching(scores)
    for value in (float("nan"), float("inf")):
        bad = torch.randn(6, 8, generator=g)
        bad[2, 3] = value
        with pytest.raises(ValueError):
            matching(bad)
    huge = torch.randn(9, 6, 6, generator=g, dtype=torch.float64) * 2.0**1010
    matching(huge)
    assert len(calls) == 6


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


def _cost_inputs():
    """Square score batches of every kind ``_lapx_costs`` must sort: random float32 and
    float64, forbidden pairs, a row of ``-inf`` only, NaN, ``+inf``, entries beyond ``2^1000``
    (one within reach of an overflowing difference), and a non-contiguous view."""
    g = torch.Generator().manual_seed(8)
    out = {}
    for dtype in (torch.float32, torch.float64):
        out[f"random {dtype}"] = torch.randn(4, 9, 9, generator=g, dtype=dtype)
    forbidden = torch.randn(4, 9, 9, generator=g, dtype=torch.float64)
    forbidden[torch.rand(4, 9, 9, generator=g) < 0.3] = float("-inf")
    out["forbidden pairs"] = forbidden
    out["forbidden row"] = forbidden.clone().index_fill_(-2, torch.tensor([2]), float("-inf"))
    for name, value in [("NaN", float("nan")), ("+inf", float("inf")), ("huge", 2.0**1010)]:
        x = torch.randn(4, 9, 9, generator=g, dtype=torch.float64)
        x[1, 2, 3] = value
        out[name] = x
    low = torch.randn(4, 9, 9, generator=g, dtype=torch.float64)
    low[0, 0, 0], low[0, 0, 1] = 2.0**1000, -(2.0**1000) * 1.5  # difference overflows
    out["overflowing difference"] = low
    out["non-contiguous"] = torch.randn(4, 9, 9, generator=g).transpose(-1, -2)
    return out


@pytest.mark.parametrize("kind", list(_cost_inputs()))
def test_numpy_and_torch_costs_are_identical(kind, monkeypatch):
    """Small batches get their lapx costs from numpy, large ones from torch: both give the
    same float64 array (C-contiguous, as lapx takes it) or both refuse (``None``)."""
    scores = _cost_inputs()[kind]
    monkeypatch.setattr(matching_module, "NUMPY_COSTS_MAX_ENTRIES", scores.numel())
    small = matching_module._lapx_costs(scores)
    monkeypatch.setattr(matching_module, "NUMPY_COSTS_MAX_ENTRIES", 0)
    large = matching_module._lapx_costs(scores)
    assert (small is None) == (large is None)
    if kind in ("NaN", "+inf", "forbidden row", "huge", "overflowing difference"):
        assert small is None
    else:
        assert small.dtype == np.float64 and small.flags.c_contiguous
        assert np.array_equal(small, large)
