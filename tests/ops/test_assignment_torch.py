"""The batched torch assignment solver (``ops/_assignment_torch.py``) against scipy."""

import importlib
import math
import warnings

import numpy as np
import pytest
import scipy.optimize
import torch

from pyro_permutations.ops._assignment_torch import (
    _auction_start,
    maximise_batch,
    solve_assignment,
)
from pyro_permutations.ops.matching import matching

matching_module = importlib.import_module("pyro_permutations.ops.matching")
NEG_INF = float("-inf")
FLOAT_DTYPES = [torch.float32, torch.float64]


def scipy_best(scores):
    """Per matrix of ``scores`` ``(B, N, M)``: scipy's optimal total (float64), or ``None``
    when no matching of ``min(N, M)`` pairs avoids the ``-inf`` entries."""
    best = []
    for s in scores.double().numpy():
        try:
            rows, cols = scipy.optimize.linear_sum_assignment(s, maximize=True)
        except ValueError:
            best.append(None)
            continue
        best.append(s[rows, cols].sum())
    return best


def check_optimal(scores, out):
    """``out`` ``(B, N)`` is a valid matching of ``min(N, M)`` pairs with scipy's total."""
    n, m = scores.shape[-2:]
    s = scores.double().numpy()
    for b, best in enumerate(scipy_best(scores)):
        perm = out[b].numpy()
        rows = np.flatnonzero(perm >= 0)
        assert len(rows) == min(n, m)
        assert len(set(perm[rows].tolist())) == len(rows) and perm.max() < m
        total = s[b][rows, perm[rows]].sum()
        assert math.isfinite(total)
        assert total == pytest.approx(best, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n, m", [(1, 1), (2, 2), (7, 7), (40, 40), (3, 9), (9, 3), (12, 30)])
def test_random_scores_same_total_as_scipy(dtype, n, m):
    scores = torch.randn(
        30, n, m, generator=torch.Generator().manual_seed(n * 100 + m), dtype=dtype
    )
    out, problem = maximise_batch(scores)
    assert problem is None and out.shape == (30, n) and out.dtype == torch.long
    check_optimal(scores, out)


@pytest.mark.parametrize("n, m", [(6, 6), (25, 25), (5, 11), (11, 5)])
@pytest.mark.parametrize("levels", [2, 4])
def test_tied_integer_scores(n, m, levels):
    # Few distinct values: many optimal matchings, and many ties inside Dijkstra's search.
    generator = torch.Generator().manual_seed(levels * 1000 + n * 10 + m)
    scores = torch.randint(0, levels, (40, n, m), generator=generator).double()
    out, problem = maximise_batch(scores)
    assert problem is None
    check_optimal(scores, out)


@pytest.mark.parametrize("n, m", [(6, 6), (30, 30), (8, 14), (14, 8)])
def test_forbidden_pairs(n, m):
    generator = torch.Generator().manual_seed(n + m)
    scores = torch.randn(40, n, m, generator=generator, dtype=torch.float64)
    forbidden = torch.rand(40, n, m, generator=generator) < 0.7
    # Keep one hidden matching of min(n, m) pairs allowed.
    k = min(n, m)
    rows = torch.rand(40, n, generator=generator).argsort(-1)[:, :k]
    cols = torch.rand(40, m, generator=generator).argsort(-1)[:, :k]
    forbidden[torch.arange(40)[:, None], rows, cols] = False
    scores = scores.masked_fill(forbidden, NEG_INF)
    out, problem = maximise_batch(scores)
    assert problem is None
    check_optimal(scores, out)


def test_infeasible_matrices_are_found():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 4, 4, generator=generator)
    scores[2, :, 1:] = NEG_INF  # every row needs column 0: Hall's condition fails
    scores[4, 3, :] = NEG_INF  # a row with no allowed column
    cost = -scores.double()
    _, infeasible = solve_assignment(cost)
    assert infeasible.tolist() == [False, False, True, False, True, False]
    _, problem = maximise_batch(scores)
    assert problem == (2, "infeasible")
    # Random sparse patterns: infeasible exactly when scipy finds no matching.
    scores = torch.randn(200, 5, 6, generator=generator, dtype=torch.float64)
    scores = scores.masked_fill(torch.rand(200, 5, 6, generator=generator) < 0.75, NEG_INF)
    _, infeasible = solve_assignment(-scores)
    expected = [best is None for best in scipy_best(scores)]
    assert 0 < sum(expected) < 200
    assert infeasible.tolist() == expected


def test_invalid_scores_and_shapes():
    assert maximise_batch(torch.tensor([[[0.0, float("nan")], [0.0, 0.0]]]))[1] == (0, "invalid")
    assert maximise_batch(torch.tensor([[[0.0, float("inf")], [0.0, 0.0]]]))[1] == (0, "invalid")
    with pytest.raises(ValueError, match="N <= M"):
        solve_assignment(torch.zeros(1, 3, 2))
    out, problem = maximise_batch(torch.zeros(0, 3, 3))
    assert out.shape == (0, 3) and problem is None


def test_huge_scores_scaled_exactly():
    # float64 scores near the largest float: differences would overflow without the scaling.
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(10, 8, 8, generator=generator, dtype=torch.float64)
    out, problem = maximise_batch(base * 2.0**1020)
    assert problem is None
    assert torch.equal(out, maximise_batch(base)[0])
    check_optimal(base, out)


def test_check_every_changes_nothing():
    scores = torch.randn(20, 15, 15, generator=torch.Generator().manual_seed(2))
    cost = -scores.double()
    reference, _ = solve_assignment(cost, check_every=1)
    for check_every in (2, 7, 64):
        assert torch.equal(solve_assignment(cost, check_every=check_every)[0], reference)


@pytest.mark.parametrize("rounds", [0, 1, 5, 60])
def test_any_number_of_auction_rounds(rounds):
    generator = torch.Generator().manual_seed(6)
    scores = torch.randn(20, 12, 16, generator=generator, dtype=torch.float64)
    scores[torch.rand(20, 12, 16, generator=generator) < 0.3] = NEG_INF
    scores[:, :, :12].diagonal(dim1=-2, dim2=-1).normal_(generator=generator)  # feasible
    tied = torch.randint(0, 3, (20, 12, 16), generator=generator).double()
    for x in (scores, tied):
        out, infeasible = solve_assignment(-x, rounds=rounds)
        assert not infeasible.any()
        check_optimal(x, out)


def test_auction_start_meets_the_optimality_conditions():
    """Every row the auction assigns is at a column of least reduced cost ``c_ij - v_j``
    (to rounding),
    distinct rows at distinct columns, and the columns left free keep ``v = 0 >= v_k``."""
    generator = torch.Generator().manual_seed(7)
    cost = torch.randn(10, 30, 40, generator=generator, dtype=torch.float64)
    v, col4row, row4col = _auction_start(cost, 6)
    col = col4row[:, :30]
    assigned = col >= 0
    assert 0 < assigned.sum() < assigned.numel()
    reduced = cost - v.unsqueeze(-2)
    at = reduced.gather(-1, col.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    # (up to the rounding of v_j -= gap: a few units in the last place)
    torch.testing.assert_close(at[assigned], reduced.amin(-1)[assigned], rtol=0, atol=1e-14)
    for b in range(10):
        taken = col[b][assigned[b]]
        assert len(set(taken.tolist())) == len(taken)
        assert torch.equal(row4col[b, taken], torch.arange(30)[assigned[b]])
        free = torch.ones(40, dtype=torch.bool)
        free[taken] = False
        assert (v[b, free] == 0).all() and (v[b] <= 0).all()


def test_host_reads_only_between_blocks_of_steps(monkeypatch):
    """The loop reads one value back per ``check_every`` steps: counted through the hooks of
    ``Tensor.__bool__`` and ``Tensor.item`` (every host read on CPU goes through them or
    raises elsewhere; on CUDA ``test_cuda_syncs`` counts the synchronisations themselves)."""
    scores = torch.randn(8, 30, 30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    counts = {"reads": 0}
    bool_, item = torch.Tensor.__bool__, torch.Tensor.item

    def counting(fn):
        def wrapper(self, *args):
            counts["reads"] += 1
            return fn(self, *args)

        return wrapper

    monkeypatch.setattr(torch.Tensor, "__bool__", counting(bool_))
    monkeypatch.setattr(torch.Tensor, "item", counting(item))
    solve_assignment(-scores, check_every=1, rounds=0)
    steps = counts["reads"]  # one read after every step
    assert steps >= 30  # with no auction every row is free: at least one step for each
    counts["reads"] = 0
    solve_assignment(-scores, check_every=16, rounds=0)
    assert counts["reads"] == math.ceil(steps / 16)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matching_through_the_torch_path(monkeypatch, dtype):
    """``matching`` routed to the torch solver (as for CUDA tensors) agrees with its scipy
    path: square, rectangular and unmatched scores, batch shapes, errors."""
    generator = torch.Generator().manual_seed(4)
    square = torch.randn(2, 3, 9, 9, generator=generator, dtype=dtype)
    wide = torch.randn(4, 5, 8, generator=generator, dtype=dtype)
    u = torch.randn(4, 5, generator=generator, dtype=dtype)
    v = torch.randn(4, 8, generator=generator, dtype=dtype)
    scipy_results = [
        matching(square),
        matching(wide),
        matching(wide.mT),
        matching(wide, **{"unmatched_rows": u, "unmatched_cols": v}),
    ]
    monkeypatch.setattr(matching_module, "TORCH_SOLVER_DEVICES", ("cuda", "cpu"))
    torch_results = [
        matching(square),
        matching(wide),
        matching(wide.mT),
        matching(wide, **{"unmatched_rows": u, "unmatched_cols": v}),
    ]
    for a, b in zip(scipy_results, torch_results):
        assert a.shape == b.shape
        assert torch.equal(a, b)  # continuous random scores: the optimum is unique
    infeasible = square[0, 0].clone()
    infeasible[:2, 1:] = NEG_INF  # rows 0 and 1 both need column 0
    with pytest.raises(ValueError, match=r"scores\[1\] has no perfect matching"):
        matching(torch.stack([square[0, 0], infeasible]))
    with pytest.raises(ValueError, match="scores contains NaN"):
        matching(torch.tensor([[0.0, float("nan")], [0.0, 0.0]], dtype=dtype))
    with pytest.raises(ValueError, match=r"scores contains \+inf"):
        matching(torch.tensor([[0.0, float("inf")], [0.0, 0.0]], dtype=dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda_same_total_as_scipy(dtype):
    generator = torch.Generator().manual_seed(5)
    scores = torch.randn(50, 20, 20, generator=generator, dtype=dtype)
    scores[3, 0, 1:] = NEG_INF
    perm = matching(scores.cuda())
    assert perm.device.type == "cuda"
    check_optimal(scores, perm.cpu())
    tied = torch.randint(0, 3, (50, 12, 17), generator=generator).to(dtype)
    check_optimal(tied, matching(tied.cuda()).cpu())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_syncs():
    """On CUDA the solver synchronises once per ``check_every`` steps (and a few times around
    the loop), not once per step."""
    scores = torch.randn(16, 40, 40, device="cuda", generator=None, dtype=torch.float64)
    cost = -scores
    solve_assignment(cost)  # warm-up
    counted = {}
    for check_every in (1, 32):
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                solve_assignment(cost, check_every=check_every, rounds=0)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counted[check_every] = sum("synchroniz" in str(w.message) for w in caught)
    assert counted[1] >= 40  # with no auction every row is free: at least one step for each
    assert counted[32] <= counted[1] / 32 + 2
