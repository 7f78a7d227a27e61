"""The Cholesky solver under the Sinkhorn Newton step and the implicit backward pass."""

import pytest
import torch

from pyro_permutations.ops import log_sinkhorn
from pyro_permutations.ops._spd_solve import LAPACK_MIN_N, spd_solve

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
