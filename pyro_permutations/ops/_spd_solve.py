"""Batched solves of symmetric positive (semi-)definite systems: by Cholesky, or by
preconditioned conjugate gradients where only products with the matrix are affordable.

Both linear systems of the Sinkhorn solver (the Newton step on the dual and the implicit
backward pass) have symmetric matrices that are positive definite up to rounding. Cholesky
costs half of an LU factorisation, and it avoids batched LU, which in torch 2.13's CPU build
fails with ``oneMKL ERROR: Parameter 6 was incorrect on entry to SLASWP`` and stalls for
``N >= 160`` when torch runs more than one thread.
"""

import numpy as np
import torch
from scipy.linalg import lapack

#: From this size on, CPU systems that need no gradient are factorised by LAPACK one matrix at a
#: time (``scipy.linalg.lapack``): torch 2.13's batched Cholesky on CPU takes 1.5-2.3 times as
#: long there (``B = 10, N = 200``: 1.9 ms against 1.25 ms). Smaller matrices stay batched,
#: where a Python loop would cost more than it saves.
LAPACK_MIN_N = 64

#: Ridge multipliers (times ``eps`` times the largest diagonal entry) tried in turn for the
#: elements whose factorisation fails: rounding can make a semi-definite matrix slightly
#: indefinite.
RIDGES = (0.0, 1e2, 1e4, 1e6)


def spd_solve(a, b, ridge=None):
    """Solve ``a x = b`` for symmetric ``a`` ``(B, N, N)`` and ``b`` ``(B, N)``.

    Elements whose Cholesky factorisation fails are retried with a growing ridge on the
    diagonal. Returns ``(x, ok)``: ``ok`` is False (and ``x`` zero) where every try failed or
    the solution is not finite.

    With ``ridge`` (long ``(B,)``, indices into ``RIDGES``) each element is factorised once,
    with that ridge, and nothing is read on the host (no retry, which would need to know
    which elements failed): the caller raises the ridge of the failed ones for its next solve.
    The ridge is then added to ``a``'s diagonal in place (unless ``a`` needs a gradient).
    CPU systems of ``LAPACK_MIN_N`` and more that need no gradient still go through LAPACK
    with its retries (a host loop in any case, and never a device synchronisation).
    """
    batch, n, _ = a.shape
    x = torch.zeros_like(b)
    ok = torch.zeros(batch, dtype=torch.bool, device=a.device)
    if batch == 0 or n == 0:
        return x, torch.ones_like(ok)
    eps = torch.finfo(a.dtype).eps
    scale = a.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp(min=1.0)
    if _use_lapack(a, b):
        return _lapack_solve(a, b, eps * scale)
    if ridge is not None:
        mult = torch.tensor(RIDGES, dtype=a.dtype, device=a.device)[ridge]
        extra = (mult * eps * scale)[:, None]
        if a.requires_grad:  # grad="unrolled": out of place
            a = a + torch.diag_embed(extra.expand(-1, n))
        else:
            a.diagonal(dim1=-2, dim2=-1).add_(extra)
        chol, info = torch.linalg.cholesky_ex(a)
        sol = torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1)
        ok = (info == 0) & torch.isfinite(sol).all(-1)
        return torch.where(ok[:, None], sol, 0.0), ok
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    todo = torch.arange(batch, device=a.device)
    for ridge in RIDGES:
        if ridge:
            sub = a[todo] + (ridge * eps * scale[todo])[:, None, None] * eye
            rhs = b[todo]
        else:  # the first try takes every element: no copy
            sub, rhs = a, b
        chol, info = torch.linalg.cholesky_ex(sub)
        sol = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
        good = (info == 0) & torch.isfinite(sol).all(-1)
        x[todo[good]] = sol[good]
        ok[todo[good]] = True
        todo = todo[~good]
        if todo.numel() == 0:
            break
    return x, ok


def _use_lapack(a, b):
    return (
        a.shape[-1] >= LAPACK_MIN_N
        and a.device.type == "cpu"
        and a.dtype in (torch.float32, torch.float64)
        and not (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
    )


def _lapack_solve(a, b, unit):
    """:func:`spd_solve` by ``?potrf``/``?potrs``, one matrix at a time; ``unit`` is each
    element's ``eps`` times its largest diagonal entry (the ridge unit)."""
    single = a.dtype == torch.float32
    potrf, potrs = (lapack.spotrf, lapack.spotrs) if single else (lapack.dpotrf, lapack.dpotrs)
    a_np = a.detach().contiguous().numpy()
    b_np = b.detach().contiguous().numpy()
    unit = unit.tolist()
    x = np.zeros_like(b_np)
    ok = np.zeros(len(b_np), dtype=bool)
    eye = np.eye(a_np.shape[-1], dtype=a_np.dtype)
    for k in range(len(a_np)):
        if not np.isfinite(a_np[k]).all():
            continue
        for ridge in RIDGES:
            # a is symmetric: its transpose is the Fortran-ordered copy LAPACK wants.
            m = a_np[k].T + ridge * unit[k] * eye if ridge else a_np[k].T
            chol, info = potrf(m, lower=1, clean=0, overwrite_a=0)
            if info != 0:
                continue
            sol, info = potrs(chol, b_np[k], lower=1)
            if info == 0 and np.isfinite(sol).all():
                x[k], ok[k] = sol, True
                break
    return torch.from_numpy(x), torch.from_numpy(ok)


def batched_pcg(matvec, rhs, diag, target, iters, check_every=None):
    """Solve ``A x = rhs`` for a batch of symmetric positive definite ``A`` given only by
    ``matvec(v) = A v`` (``(B, N) -> (B, N)``), by conjugate gradients preconditioned with
    ``diag`` (``(B, N)``, positive: Jacobi, ``M = diag(diag)``), from ``x = 0``:

    ``alpha_k = r_k^T z_k / d_k^T A d_k``, ``x_{k+1} = x_k + alpha_k d_k``,
    ``r_{k+1} = r_k - alpha_k A d_k``, ``z = M^{-1} r``, ``d_{k+1} = z_{k+1} + beta_k d_k`` with
    ``beta_k = r_{k+1}^T z_{k+1} / r_k^T z_k``.

    An element stops (its step lengths set to zero) once ``|r| <= target`` (``(B,)``) or its
    curvature ``d^T A d`` is not positive. With ``check_every`` the loop ends early when no
    element is active, which is read on the host once every ``check_every`` products; without it
    the loop runs all ``iters`` products and reads nothing.

    Returns ``(x, used, active)``: the iterate, the products each element took and whether it
    stopped short of its target.
    """
    # Floor of the denominators: positive in the dtype (1e-300 is 0 in float32), so the branch
    # torch.where discards is never 0/0, whose NaN would reach unrolled gradients.
    tiny = torch.finfo(rhs.dtype).tiny
    x = torch.zeros_like(rhs)
    res = rhs.clone()
    z = res / diag
    d = z.clone()
    rz = (res * z).sum(-1)
    active = res.norm(dim=-1) > target
    used = torch.zeros(rhs.shape[0], dtype=torch.long, device=rhs.device)
    for k in range(iters):
        if check_every is not None and k % check_every == 0 and not bool(active.any()):
            break
        used = used + active
        hd = matvec(d)
        dhd = (d * hd).sum(-1)
        alpha = torch.where(active & (dhd > 0), rz / dhd.clamp(min=tiny), 0.0)
        x = x + alpha[:, None] * d
        res = res - alpha[:, None] * hd
        z = res / diag
        rz_new = (res * z).sum(-1)
        beta = torch.where(active, rz_new / rz.clamp(min=tiny), 0.0)
        d = z + beta[:, None] * d
        rz = rz_new
        active = active & (res.norm(dim=-1) > target) & (dhd > 0)
    return x, used, active
