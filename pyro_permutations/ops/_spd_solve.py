"""Batched solves of symmetric positive (semi-)definite systems by Cholesky.

Both linear systems of the Sinkhorn solver (the Newton step on the dual and the implicit
backward pass) have symmetric matrices that are positive definite up to rounding. Cholesky
costs half of an LU factorisation, and it avoids batched LU, which in torch 2.13's CPU build
fails with ``oneMKL ERROR: Parameter 6 was incorrect on entry to SLASWP`` and stalls for
``N >= 160`` when torch runs more than one thread.
"""

import torch

#: Ridge multipliers (times ``eps`` times the largest diagonal entry) tried in turn for the
#: elements whose factorisation fails: rounding can make a semi-definite matrix slightly
#: indefinite.
RIDGES = (0.0, 1e2, 1e4, 1e6)


def spd_solve(a, b):
    """Solve ``a x = b`` for symmetric ``a`` ``(B, N, N)`` and ``b`` ``(B, N)``.

    Elements whose Cholesky factorisation fails are retried with a growing ridge on the
    diagonal. Returns ``(x, ok)``: ``ok`` is False (and ``x`` zero) where every try failed or
    the solution is not finite.
    """
    batch, n, _ = a.shape
    x = torch.zeros_like(b)
    ok = torch.zeros(batch, dtype=torch.bool, device=a.device)
    if batch == 0 or n == 0:
        return x, torch.ones_like(ok)
    eps = torch.finfo(a.dtype).eps
    scale = a.diagonal(dim1=-2, dim2=-1).abs().amax(-1).clamp(min=1.0)
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
