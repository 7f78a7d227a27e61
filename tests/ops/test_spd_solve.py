"""The Cholesky and conjugate-gradient solvers under the Sinkhorn Newton step and the implicit
backward pass."""

import pytest
import torch

from pyro_permutations.ops import log_sinkhorn
from pyro_permutations.ops._spd_solve import LAPACK_MIN_N, batched_pcg, spd_solve

# Below and above LAPACK_MIN_N: the batched torch path and the per-matrix LAPACK path.
SIZES = [7, LAPACK_MIN_N + 6]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_a_direct_solve_on_definite_systems(dtype, n):
    g = torch.Generator().manual_seed(0)
    m = torch.randn(5, n, n, generator=g, dtype=dtype)
    a = m @ m.transpose(-1, -2) + 0.1 * torch.eye(n, dtype=dtype)
    b = torch.randn(5, n, generator=g, dtype=dtype)
    x, ok = spd_solve(a, b)
    assert ok.all()
    expected = torch.linalg.solve(a.double(), b.double().unsqueeze(-1)).squeeze(-1)
    tol = 1e-3 if dtype == torch.float32 else 1e-10
    assert x.dtype == dtype
    torch.testing.assert_close(x.double(), expected, rtol=tol, atol=tol * n)


@pytest.mark.parametrize("n", SIZES)
def test_semidefinite_systems_are_solved_with_a_ridge_and_failures_flagged(n):
    v = torch.randn(3, n, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = v @ v.transpose(-1, -2)  # rank one: Cholesky fails without a ridge
    b = v.squeeze(-1)  # in the range of a
    x, ok = spd_solve(a, b)
    assert ok.all() and torch.isfinite(x).all()
    torch.testing.assert_close((a @ x.unsqueeze(-1)).squeeze(-1), b, rtol=1e-4, atol=1e-4)

    a_bad = torch.eye(n, dtype=torch.float64).repeat(3, 1, 1)
    a_bad[1, 2, 2] = float("nan")
    x, ok = spd_solve(a_bad, b)
    assert ok.tolist() == [True, False, True] and (x[1] == 0).all()


def test_solves_that_need_a_gradient_stay_in_torch():
    """Above LAPACK_MIN_N the solve leaves torch unless autograd needs it (unrolled mode)."""
    g = torch.Generator().manual_seed(2)
    n = LAPACK_MIN_N + 1
    m = torch.randn(2, n, n, generator=g, dtype=torch.float64)
    a = (m @ m.transpose(-1, -2) + torch.eye(n, dtype=torch.float64)).requires_grad_()
    b = torch.randn(2, n, generator=g, dtype=torch.float64)
    x, ok = spd_solve(a, b)
    assert ok.all() and x.requires_grad
    x.sum().backward()
    # d(sum x)/dA = -A^{-1} 1 x^T; Cholesky sees only symmetric A, so its gradient is the
    # symmetric part of that.
    w = torch.linalg.solve(a.detach(), torch.ones(2, n, 1, dtype=torch.float64))
    full = -w @ x.detach().unsqueeze(-2)
    torch.testing.assert_close(a.grad, (full + full.transpose(-1, -2)) / 2)


def test_many_threads_and_large_n_do_not_stall():
    """Batched LU in torch 2.13's CPU build stalls for N >= 160 with two threads; the solver
    and its implicit gradient must not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(3, 200, 200, generator=torch.Generator().manual_seed(0)) / 0.3
        x.requires_grad_()
        log_p, info = log_sinkhorn(x, tol=1e-4, return_info=True)
        (log_p.exp() * torch.randn(3, 200, 200)).sum().backward()
    finally:
        torch.set_num_threads(threads)
    assert info.converged.all() and torch.isfinite(x.grad).all()


def _spd_batch(n, seed, condition):
    """Three SPD matrices with eigenvalues spread from 1 to ``condition``."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(condition)), n, dtype=torch.float64)
    return q @ torch.diag_embed(eig.expand(3, n)) @ q.transpose(-1, -2)


def test_pcg_reaches_its_target_and_matches_a_direct_solve():
    a = _spd_batch(30, 2, 1e3)
    b = torch.randn(3, 30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    target = 1e-10 * b.norm(dim=-1)
    x, used, active = batched_pcg(
        lambda v: (a @ v.unsqueeze(-1)).squeeze(-1), b, a.diagonal(dim1=-2, dim2=-1), target, 500
    )
    assert not active.any()
    assert ((used > 0) & (used <= 500)).all()
    residual = (a @ x.unsqueeze(-1)).squeeze(-1) - b
    assert (residual.norm(dim=-1) <= 1.01 * target).all()
    expected = torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-8)


def test_pcg_stops_each_element_at_its_own_target_and_the_loop_when_all_stop():
    """A loose element freezes early while a tight one goes on; with ``check_every`` the loop
    ends within ``check_every`` products of the last one stopping; a fixed count that is too
    small leaves the tight element active."""
    a = _spd_batch(40, 4, 1e4)
    b = torch.randn(3, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    target = b.norm(dim=-1) * torch.tensor([1e-1, 1e-10, 1e-10], dtype=torch.float64)
    calls = []

    def matvec(v):
        calls.append(1)
        return (a @ v.unsqueeze(-1)).squeeze(-1)

    diag = a.diagonal(dim1=-2, dim2=-1)
    x, used, active = batched_pcg(matvec, b, diag, target, 1000, check_every=4)
    assert not active.any()
    assert used[0] < used[1:].min()
    assert used.max() <= len(calls) < used.max() + 4
    _, used_short, active_short = batched_pcg(matvec, b, diag, target, 3)
    assert (used_short == 3).all() and active_short[1:].all()
