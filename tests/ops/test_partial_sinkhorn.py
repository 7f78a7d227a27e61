"""Sinkhorn on rectangular scores and with unmatched (dustbin) scores: marginals, the
zero-temperature limit against matching and brute force, gradients (implicit against unrolled,
gradcheck), the square case as a limit, padding for ragged batches, and errors."""

import math

import pytest
import torch

from pyro_permutations.ops import (
    all_partial_perms,
    log_sinkhorn,
    marginal_error,
    matching,
    partial_perm_to_matrix,
    sinkhorn,
)

FLOAT_DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-9}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def rect_errors(p):
    """For N <= M: rows sum to one, columns to at most one (computed here, not by the library)."""
    rows = (p.sum(-1) - 1).abs().amax(-1)
    cols = (p.sum(-2) - 1).clamp(min=0).amax(-1)
    return torch.maximum(rows, cols)


def dustbin_errors(p):
    """Relative errors of the augmented (N + 1, M + 1) matrix: rows (1_N, M), columns (1_M, N)."""
    n, m = p.shape[-2] - 1, p.shape[-1] - 1
    a = torch.cat([torch.ones(n, dtype=p.dtype), torch.tensor([float(m)], dtype=p.dtype)])
    b = torch.cat([torch.ones(m, dtype=p.dtype), torch.tensor([float(n)], dtype=p.dtype)])
    rows = (p.sum(-1) / a - 1).abs().amax(-1)
    cols = (p.sum(-2) / b - 1).abs().amax(-1)
    return torch.maximum(rows, cols)


def scores(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("tau", [1.0, 0.1, 0.01])
@pytest.mark.parametrize("n, m", [(3, 7), (7, 3), (1, 4), (5, 6)])
def test_rectangular_marginals(n, m, tau, dtype):
    x = scores((2, 3, n, m), dtype, seed=n + 10 * m) / tau
    log_p, info = log_sinkhorn(x, tol=TOL[dtype], return_info=True)
    assert log_p.shape == (2, 3, n, m) and log_p.dtype == dtype
    assert bool(info.converged.all())
    p = log_p.exp()
    errors = rect_errors(p if n <= m else p.transpose(-1, -2))
    assert float(errors.max()) <= 2 * TOL[dtype]
    assert torch.allclose(marginal_error(log_p), errors, atol=1e-6)
    assert bool((info.error >= errors - 1e-7).all())  # info's error bounds the block's


def test_large_problems_take_conjugate_gradients():
    """From 256 rows (the smaller side, plus the dustbin) the Newton systems are solved by
    conjugate gradients with the column marginals; the marginals still hold."""
    x = scores((1, 256, 258), torch.float64, seed=30) / 0.1
    log_p, info = log_sinkhorn(x, tol=1e-6, return_info=True)
    assert bool(info.converged.all()) and float(rect_errors(log_p.exp()).max()) <= 1e-6
    assert int(info.newton_steps.min()) > 0
    log_p, info = log_sinkhorn(
        x, unmatched_rows=0.0, unmatched_cols=0.0, tol=1e-6, return_info=True
    )
    assert bool(info.converged.all()) and float(dustbin_errors(log_p.exp()).max()) <= 1e-6
    assert int(info.newton_steps.min()) > 0


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("tau", [1.0, 0.1, 0.01])
@pytest.mark.parametrize("n, m", [(3, 7), (7, 3), (4, 4)])
def test_dustbin_marginals(n, m, tau, dtype):
    x = scores((2, n, m), dtype, seed=1) / tau
    u = scores((2, n), dtype, seed=2) / tau
    v = scores((m,), dtype, seed=3) / tau  # broadcast over the batch
    log_p, info = log_sinkhorn(
        x, unmatched_rows=u, unmatched_cols=v, tol=TOL[dtype], return_info=True
    )
    assert log_p.shape == (2, n + 1, m + 1)
    assert bool(info.converged.all())
    errors = dustbin_errors(log_p.exp())
    assert float(errors.max()) <= 2 * TOL[dtype]
    assert torch.allclose(marginal_error(log_p, augmented=True), errors, atol=1e-6)


@pytest.mark.parametrize("n, m", [(3, 5), (5, 3), (4, 4)])
def test_limit_equals_matching_and_brute_force(n, m):
    """[GS] Theorem 1 for partial matchings: as tau -> 0 the real block tends to the best
    (partial) matching, rectangular and with unmatched scores."""
    x = scores((4, n, m), torch.float64, seed=5)
    u = scores((4, n), torch.float64, seed=6) * 0.5
    v = scores((4, m), torch.float64, seed=7) * 0.5
    tau = 1e-4
    if n != m:
        p = sinkhorn(x / tau, tol=1e-10)
        assert torch.allclose(p, partial_perm_to_matrix(matching(x), m, torch.float64), atol=1e-3)
    p = sinkhorn(x / tau, unmatched_rows=u / tau, unmatched_cols=v / tau, tol=1e-10)
    best = torch.empty(4, n, dtype=torch.long)
    candidates = all_partial_perms(n, m)
    for b in range(4):
        values = [
            sum(x[b, i, j] if j >= 0 else u[b, i] for i, j in enumerate(perm))
            + sum(v[b, j] for j in range(m) if j not in perm)
            for perm in candidates.tolist()
        ]
        best[b] = candidates[int(torch.tensor(values).argmax())]
    assert torch.equal(best, matching(x, unmatched_rows=u, unmatched_cols=v))
    expected = partial_perm_to_matrix(best, m, torch.float64)
    assert torch.allclose(p[..., :n, :m], expected, atol=1e-3)
    assert torch.allclose(p[..., :n, m], 1 - expected.sum(-1), atol=1e-3)  # unmatched rows
    assert torch.allclose(p[..., n, :m], 1 - expected.sum(-2), atol=1e-3)  # unmatched columns


def test_very_low_unmatched_scores_give_the_square_case():
    x = scores((3, 5, 5), torch.float64, seed=8) / 0.1
    square = sinkhorn(x, tol=1e-10)
    p = sinkhorn(x, unmatched_rows=-1e3, unmatched_cols=-1e3, tol=1e-10)
    assert torch.allclose(p[..., :5, :5], square, atol=1e-8)
    assert float(p[..., :5, 5].max()) < 1e-100 and float(p[..., 5, :5].max()) < 1e-100


def test_rows_that_must_match_give_the_rectangular_case():
    """Very low unmatched scores for the rows only: every row matched, the columns free, which
    is the rectangular problem (the dustbin row plays the slack row)."""
    x = scores((3, 4, 6), torch.float64, seed=9) / 0.1
    p = sinkhorn(x, unmatched_rows=-1e3, unmatched_cols=0.0, tol=1e-10)
    assert torch.allclose(p[..., :4, :6], sinkhorn(x, tol=1e-10), atol=1e-8)


def test_very_high_unmatched_scores_leave_everything_unmatched():
    x = scores((3, 4, 6), torch.float64, seed=10)
    p = sinkhorn(x, unmatched_rows=1e3, unmatched_cols=1e3, tol=1e-10)
    assert float(p[..., :4, :6].max()) < 1e-100
    assert torch.allclose(p[..., :4, 6], torch.ones(3, 4, dtype=torch.float64))
    assert torch.allclose(p[..., 4, :6], torch.ones(3, 6, dtype=torch.float64))
    assert float(p[..., 4, 6].max()) < 1e-8  # the corner holds the number of matched pairs


def test_forbidden_pairs_and_infeasible():
    x = scores((2, 3, 5), torch.float64, seed=11)
    x[:, 0, :4] = -torch.inf
    x[:, 1, 2] = -torch.inf
    p, info = sinkhorn(x, tol=1e-10, return_info=True)
    assert bool(info.converged.all())
    assert float(p[:, 0, :4].abs().max()) == 0.0 and float(p[:, 1, 2].abs().max()) == 0.0
    assert float(rect_errors(p).max()) <= 1e-9
    bad = torch.zeros(2, 4)
    bad[:, 1:] = -torch.inf
    with pytest.raises(ValueError, match="no matching of every item of its smaller side"):
        log_sinkhorn(bad)
    with pytest.raises(ValueError, match="whose pairs are all -inf"):
        log_sinkhorn(torch.full((2, 3), -torch.inf))
    # With unmatched scores the same scores are fine: the rows can go unmatched.
    p = sinkhorn(bad, unmatched_rows=0.0, unmatched_cols=0.0, tol=1e-6)
    assert float(dustbin_errors(p).max()) <= 1e-6
    p = sinkhorn(torch.full((2, 3), -torch.inf), unmatched_rows=0.0, unmatched_cols=0.0)
    assert torch.allclose(p[:2, 3], torch.ones(2)) and torch.allclose(p[2, :3], torch.ones(3))


def test_padding_a_ragged_batch():
    """Documented recipe: pad to a common (N, M) with -inf scores and any finite unmatched
    score; the padded items go unmatched and leave the others' solution unchanged."""
    small = scores((2, 3), torch.float64, seed=12) / 0.1
    u, v = scores((2,), torch.float64, seed=13), scores((3,), torch.float64, seed=14)
    alone = sinkhorn(small, unmatched_rows=u, unmatched_cols=v, tol=1e-11)
    padded = torch.full((4, 5), -torch.inf, dtype=torch.float64)
    padded[:2, :3] = small
    pu, pv = torch.zeros(4, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    pu[:2], pv[:3] = u, v
    p = sinkhorn(padded, unmatched_rows=pu, unmatched_cols=pv, tol=1e-11)
    assert torch.allclose(p[:2, :3], alone[:2, :3], atol=1e-9)
    assert torch.allclose(p[:2, 5], alone[:2, 3], atol=1e-9)
    assert torch.allclose(p[4, :3], alone[2, :3], atol=1e-9)
    assert torch.allclose(p[2:4, 5], torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("dustbin", [False, True])
@pytest.mark.parametrize("n, m", [(3, 5), (5, 3)])
def test_implicit_gradient_equals_unrolled(n, m, dustbin):
    x = scores((2, n, m), torch.float64, seed=15) / 0.3
    w = scores((2, n, m), torch.float64, seed=16)
    grads = []
    for grad in ["implicit", "unrolled"]:
        xs = x.clone().requires_grad_()
        us = torch.zeros(2, n, dtype=torch.float64, requires_grad=True)
        kwargs = {"unmatched_rows": us, "unmatched_cols": 0.5} if dustbin else {}
        p = sinkhorn(xs, tol=1e-12, grad=grad, **kwargs)
        (p[..., :n, :m] * w).sum().backward()
        grads.append((xs.grad, us.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-8)
    if dustbin:
        assert grads[0][1].abs().max() > 1e-3
        assert torch.allclose(grads[0][1], grads[1][1], atol=1e-8)


@pytest.mark.parametrize("n, m", [(2, 4), (4, 2)])
def test_gradcheck(n, m):
    x = scores((n, m), torch.float64, seed=17).requires_grad_()
    u = scores((n,), torch.float64, seed=18).requires_grad_()
    v = scores((m,), torch.float64, seed=19).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: log_sinkhorn(x, tol=1e-13), (x,), atol=1e-6)
    assert torch.autograd.gradcheck(
        lambda x, u, v: log_sinkhorn(x, unmatched_rows=u, unmatched_cols=v, tol=1e-13),
        (x, u, v),
        atol=1e-6,
    )


def test_fixed_sweeps():
    """With n_iters the augmented columns are normalised last, so they hold exactly."""
    x = scores((2, 3, 5), torch.float64, seed=20) / 0.1
    p, info = sinkhorn(x, n_iters=30, return_info=True)
    assert torch.allclose(p.sum(-2).clamp(min=1), torch.ones(2, 5, dtype=torch.float64))
    assert bool((info.iterations == 30).all())
    q = sinkhorn(x, unmatched_rows=0.0, unmatched_cols=0.0, n_iters=30)
    cols = q.sum(-2)
    assert torch.allclose(cols, torch.tensor([1.0] * 5 + [3.0], dtype=torch.float64))
    # The sweeps converge to the solver's fixed point (at temperature 1, where they are quick).
    y = x * 0.1
    assert torch.allclose(sinkhorn(y, n_iters=500), sinkhorn(y, tol=1e-12), atol=1e-8)
    kwargs = {"unmatched_rows": 0.0, "unmatched_cols": 0.0}
    assert torch.allclose(
        sinkhorn(y, n_iters=500, **kwargs), sinkhorn(y, tol=1e-12, **kwargs), atol=1e-8
    )


def test_bad_inputs():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="give both unmatched_rows and unmatched_cols"):
        log_sinkhorn(x, unmatched_cols=0.0)
    with pytest.raises(ValueError, match="unmatched_rows must be finite"):
        log_sinkhorn(x, unmatched_rows=-torch.inf, unmatched_cols=0.0)
    with pytest.raises(ValueError, match="unmatched_cols of shape \\(2,\\) does not fit log_alpha"):
        log_sinkhorn(x, unmatched_rows=0.0, unmatched_cols=torch.zeros(2))
    with pytest.raises(ValueError, match="log_alpha must have shape"):
        log_sinkhorn(torch.zeros(2, 0), unmatched_rows=0.0, unmatched_cols=0.0)
    with pytest.raises(ValueError, match="log_alpha contains NaN"):
        log_sinkhorn(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="augmented"):
        marginal_error(torch.zeros(1, 3), augmented=True)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda(dtype):
    x = scores((2, 3, 5), dtype, seed=21).cuda() / 0.1
    p = sinkhorn(x, tol=TOL[dtype])
    assert p.device.type == "cuda"
    assert torch.allclose(p.cpu(), sinkhorn(x.cpu(), tol=TOL[dtype]), atol=1e-4)
    q = sinkhorn(x, unmatched_rows=0.0, unmatched_cols=0.0, tol=TOL[dtype])
    assert float(dustbin_errors(q.cpu()).max()) <= 2 * TOL[dtype]


def test_unmatched_scores_broadcast_with_log_alpha():
    """Unmatched scores with a larger batch than ``log_alpha``: the result has the broadcast
    batch shape, each element that of its own unmatched scores, and float64 numbers are kept
    in float64."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 2, generator=g, dtype=torch.float64)
    u = torch.randn(4, 3, generator=g, dtype=torch.float64)
    log_p = log_sinkhorn(x, unmatched_rows=u, unmatched_cols=0.0, tol=1e-10)
    assert log_p.shape == (4, 4, 3)
    for b in range(4):
        one = log_sinkhorn(x, unmatched_rows=u[b], unmatched_cols=0.0, tol=1e-10)
        torch.testing.assert_close(log_p[b], one)
    exact = math.log(0.1)
    by_number = log_sinkhorn(x, unmatched_rows=exact, unmatched_cols=0.0, tol=1e-12)
    by_tensor = log_sinkhorn(
        x, unmatched_rows=torch.tensor(exact, dtype=torch.float64), unmatched_cols=0.0, tol=1e-12
    )
    assert torch.equal(by_number, by_tensor)
