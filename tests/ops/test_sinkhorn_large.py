"""Large N: the implicit backward by conjugate gradients (no ``(N, N)`` system formed) gives the
dense solve's gradient, and ``log_sinkhorn`` at ``N = 1,000`` runs forward and backward in a
few seconds on one thread (the sizes 2,000 and 5,000 are in the benchmarks only)."""

import pytest
import torch

from pyro_permutations.ops import _sinkhorn_implicit, log_sinkhorn, marginal_error

N_CG = _sinkhorn_implicit.CG_MIN_N + 8  # just above the threshold


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _grad(x, weights, **options):
    x = x.clone().requires_grad_()
    (weights * log_sinkhorn(x, **options).exp()).sum().backward()
    return x.grad


def _forbid_dense(monkeypatch):
    """Make the dense path fail loudly: conjugate gradients must not form or factorise."""

    def refuse(*args, **kwargs):
        raise AssertionError("the backward formed a dense system above CG_MIN_N")

    monkeypatch.setattr(_sinkhorn_implicit, "spd_solve", refuse)


@pytest.mark.parametrize("tau, sweeps", [(1.0, 100), (0.5, 300)])
def test_cg_backward_matches_dense_solve_and_unrolled_sweeps(monkeypatch, tau, sweeps):
    """At ``N`` just above ``CG_MIN_N`` (float64): the CG gradient equals the dense-solve
    gradient, and both equal autograd through many plain sweeps, which have converged to the
    same fixed point (to ``1e-12``)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, N_CG, N_CG, generator=g, dtype=torch.float64) / tau
    w = torch.randn(2, N_CG, N_CG, generator=g, dtype=torch.float64)
    unrolled = _grad(x, w, n_iters=sweeps)
    with monkeypatch.context() as m:
        m.setattr(_sinkhorn_implicit, "CG_MIN_N", 10**9)
        dense = _grad(x, w, tol=1e-12)
    _forbid_dense(monkeypatch)
    cg = _grad(x, w, tol=1e-12)
    assert _rel(cg, dense) < 1e-8
    assert _rel(dense, unrolled) < 1e-8 and _rel(cg, unrolled) < 1e-8


@pytest.mark.parametrize("partial", ["rectangular", "unmatched"])
def test_cg_backward_with_marginals_matches_dense_solve(monkeypatch, partial):
    """The ``(a, b)`` system (rectangular scores: slack row; unmatched scores: dustbins), with
    the larger side just above ``CG_MIN_N``: CG, dense and unrolled sweeps agree."""
    g = torch.Generator().manual_seed(1)
    n, m = 40, N_CG
    x = torch.randn(2, n, m, generator=g, dtype=torch.float64) / 0.5
    options = {}
    if partial == "unmatched":
        options = dict(unmatched_rows=torch.zeros(2, n, dtype=torch.float64), unmatched_cols=0.5)
    out = log_sinkhorn(x, **options)
    w = torch.randn(out.shape, generator=g, dtype=torch.float64)
    unrolled = _grad(x, w, n_iters=400, **options)
    with monkeypatch.context() as mp:
        mp.setattr(_sinkhorn_implicit, "CG_MIN_N", 10**9)
        dense = _grad(x, w, tol=1e-12, **options)
    _forbid_dense(monkeypatch)
    cg = _grad(x, w, tol=1e-12, **options)
    assert _rel(cg, dense) < 1e-8 and _rel(dense, unrolled) < 1e-7


def test_cg_backward_float32_is_close_to_the_dense_solve(monkeypatch):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, N_CG, N_CG, generator=g) / 0.1
    w = torch.randn(1, N_CG, N_CG, generator=g)
    with monkeypatch.context() as m:
        m.setattr(_sinkhorn_implicit, "CG_MIN_N", 10**9)
        dense = _grad(x, w, tol=1e-5)
    cg = _grad(x, w, tol=1e-5)
    assert _rel(cg, dense) < 1e-3


def test_n_1000_float32_forward_and_backward(monkeypatch):
    """The CI-sized smoke test: one ``(1000, 1000)`` float32 matrix at temperature 0.1, to
    marginal error ``1e-3``, and a backward pass through the CG path with a finite gradient
    whose rows and columns sum to zero (``S`` is invariant to row and column shifts)."""
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(1, 1000, 1000, generator=g) / 0.1).requires_grad_()
    log_p, info = log_sinkhorn(x, tol=1e-3, return_info=True)
    assert info.converged.all() and (marginal_error(log_p.detach()) <= 1e-3).all()
    assert info.iterations.item() < 40
    _forbid_dense(monkeypatch)
    w = torch.randn(1, 1000, 1000, generator=g)
    (w * log_p.exp()).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    scale = x.grad.abs().sum(-1).max()
    assert x.grad.sum(-1).abs().max() < 1e-3 * scale
    assert x.grad.sum(-2).abs().max() < 1e-3 * scale
