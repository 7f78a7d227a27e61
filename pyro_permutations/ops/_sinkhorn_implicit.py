"""Implicit differentiation of the Sinkhorn operator at its fixed point.

At the limit ``P = S(X)``, ``P_ij = exp(X_ij + f_i + g_j)`` with ``P 1 = 1`` and ``P^T 1 = 1``.
Differentiating these constraints, a loss ``L(log P)`` with ``Q = dL/d log P`` has

.. math::

    \\frac{\\partial L}{\\partial X_{ij}} = Q_{ij} - P_{ij} (\\alpha_i + \\beta_j), \\qquad
    \\begin{pmatrix} I & P \\\\ P^T & I \\end{pmatrix}
    \\begin{pmatrix} \\alpha \\\\ \\beta \\end{pmatrix}
    = \\begin{pmatrix} Q 1 \\\\ Q^T 1 \\end{pmatrix}.

Eliminating ``alpha = Q 1 - P beta`` leaves ``(I - P^T P) beta = Q^T 1 - P^T Q 1``, singular
only along ``1`` (to which the right side is orthogonal); adding ``1 1^T / N`` removes that
direction and a ridge of ``100 eps`` keeps near-permutation matrices (low temperature, where
``P^T P`` is close to ``I`` and the gradient is close to zero) finite. The cost is one
``(N, N)`` batched Cholesky solve, and the memory does not depend on the number of forward
iterations.

With row and column marginals ``a`` and ``b`` (``P 1 = a``, ``P^T 1 = b``: the rectangular and
unmatched problems) the system is ``[[diag(a), P], [P^T, diag(b)]] (alpha, beta) = (Q 1, Q^T 1)``,
and eliminating ``alpha = (Q 1 - P beta) / a`` leaves
``(diag(b) - P^T diag(1/a) P) beta = Q^T 1 - P^T diag(1/a) Q 1``, again singular only along
``1``.

**Large N.** Forming ``P^T P`` costs ``O(N^3)`` (and an ``(N, N)`` factor besides). From
``CG_MIN_N`` on the system is instead solved by Jacobi-preconditioned conjugate gradients,
whose only contact with ``P`` is the product ``v -> P^T (diag(1/a) P v)`` (two
matrix-vector products, ``O(N^2)``): the memory is ``P``, ``Q`` and a few vectors per matrix,
the same ``(N, N)`` buffers the result needs. The iteration stops at relative residual
``CG_RTOL`` (``1e-10`` in float64, ``1e-5`` in float32), which gives the gradient of the
dense solve to about the same relative accuracy times the conditioning of the system; its
Jacobi diagonal is ``b_j - sum_i P_ij^2 / a_i + 1 / N``.

Reference: Eisenberger, Toker, Leal-Taixe, Bernard, Cremers. A unified framework for implicit
Sinkhorn differentiation. CVPR 2022.
"""

import torch

from pyro_permutations.ops._spd_solve import batched_pcg, spd_solve

#: From this size on the backward system is solved by conjugate gradients, not formed.
CG_MIN_N = 256
#: Relative residual ``|rhs - H beta| / |rhs|`` at which conjugate gradients stop, per dtype.
CG_RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
#: Most conjugate-gradient products in one backward pass.
CG_MAX_ITER = 2000
#: Conjugate gradients read their convergence flag (a host synchronisation) this often.
CG_CHECK_EVERY = 8


def implicit_sinkhorn_backward(log_p, grad_log_p, a=None, b=None):
    """``dL/dX`` from ``dL/d log P`` at the fixed point ``log P`` (both ``(B, N, N)``), or
    ``(B, N, M)`` with row and column marginals ``a`` ``(B, N)`` and ``b`` ``(B, M)``.

    The ``(M, M)`` system for ``beta`` is formed and Cholesky-solved below ``CG_MIN_N``
    columns, and solved by conjugate gradients (:func:`_backward_cg`) from there on."""
    p = torch.exp(log_p)
    q = torch.where(p > 0, grad_log_p, 0.0)
    m = p.shape[-1]
    row = q.sum(-1)
    col = q.sum(-2)
    pt = p.transpose(-1, -2)
    eps = torch.finfo(p.dtype).eps
    row_a = row if a is None else row / a
    rhs = col - (pt @ row_a.unsqueeze(-1)).squeeze(-1)
    if m >= CG_MIN_N:
        beta = _backward_cg(p, rhs, a, b)
    elif a is None:
        eye = torch.eye(m, dtype=p.dtype, device=p.device)
        h = (1 + 100 * eps) * eye - pt @ p + 1.0 / m
        beta, _ = spd_solve(h, rhs)  # zero where the system could not be solved
    else:
        pa = p / a.unsqueeze(-1)
        h = (pt @ pa).neg_().add_(1.0 / m)
        h.diagonal(dim1=-2, dim2=-1).add_(b + 100 * eps)
        beta, _ = spd_solve(h, rhs)
    alpha = row - (p @ beta.unsqueeze(-1)).squeeze(-1)
    if a is not None:
        alpha = alpha / a
    return q - p * (alpha[:, :, None] + beta[:, None, :])


def _backward_cg(p, rhs, a=None, b=None):
    """``beta`` solving ``(diag(b) - P^T diag(1/a) P + 1 1^T / M + 100 eps I) beta = rhs``
    (``b = 1``, ``a = 1`` when not given) by Jacobi-preconditioned conjugate gradients.

    Each product costs two batched matrix-vector products with ``P``; nothing of size
    ``(N, N)`` is allocated. Elements stop (their step lengths set to zero) once their residual
    is below ``CG_RTOL |rhs|``; the flag that ends the loop is read every ``CG_CHECK_EVERY``
    products. An element that has not converged after ``CG_MAX_ITER`` products keeps its last
    iterate (near-permutations at very low temperature, where the gradient is close to zero).
    """
    m = p.shape[-1]
    delta = 100 * torch.finfo(p.dtype).eps
    pt = p.transpose(-1, -2)
    inv_a = None if a is None else (1 / a).unsqueeze(-1)
    diag_b = 1.0 if b is None else b

    def matvec(v):
        pv = p @ v.unsqueeze(-1)
        ptpv = (pt @ (pv if inv_a is None else pv * inv_a)).squeeze(-1)
        return diag_b * v - ptpv + v.mean(-1, keepdim=True) + delta * v

    pp = (p * p).sum(-2) if a is None else (p * p * inv_a).sum(-2)
    diag = (diag_b - pp + 1.0 / m + delta).clamp(min=delta)
    target = CG_RTOL[p.dtype] * rhs.norm(dim=-1)
    return batched_pcg(matvec, rhs, diag, target, CG_MAX_ITER, check_every=CG_CHECK_EVERY)[0]


class ImplicitSinkhorn(torch.autograd.Function):
    """Identity on the solved ``log P`` whose backward differentiates ``S`` implicitly."""

    @staticmethod
    def forward(ctx, log_alpha, log_p, a=None, b=None):
        ctx.save_for_backward(log_p)
        ctx.marginals = (a, b)
        return log_p.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_log_p):
        (log_p,) = ctx.saved_tensors
        return implicit_sinkhorn_backward(log_p, grad_log_p, *ctx.marginals), None, None, None
