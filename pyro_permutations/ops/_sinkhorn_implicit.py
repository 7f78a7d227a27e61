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

Reference: Eisenberger, Toker, Leal-Taixe, Bernard, Cremers. A unified framework for implicit
Sinkhorn differentiation. CVPR 2022.
"""

import torch

from pyro_permutations.ops._spd_solve import spd_solve


def implicit_sinkhorn_backward(log_p, grad_log_p, a=None, b=None):
    """``dL/dX`` from ``dL/d log P`` at the fixed point ``log P`` (both ``(B, N, N)``), or
    ``(B, N, M)`` with row and column marginals ``a`` ``(B, N)`` and ``b`` ``(B, M)``."""
    p = torch.exp(log_p)
    q = torch.where(p > 0, grad_log_p, 0.0)
    n = p.shape[-1]
    row = q.sum(-1)
    col = q.sum(-2)
    pt = p.transpose(-1, -2)
    eps = torch.finfo(p.dtype).eps
    if a is None:
        eye = torch.eye(n, dtype=p.dtype, device=p.device)
        a = (1 + 100 * eps) * eye - pt @ p + 1.0 / n
        rhs = col - (pt @ row.unsqueeze(-1)).squeeze(-1)
        beta, _ = spd_solve(a, rhs)  # zero where the system could not be solved
        alpha = row - (p @ beta.unsqueeze(-1)).squeeze(-1)
        return q - p * (alpha[:, :, None] + beta[:, None, :])
    pa = p / a.unsqueeze(-1)
    h = (pt @ pa).neg_().add_(1.0 / n)
    h.diagonal(dim1=-2, dim2=-1).add_(b + 100 * eps)
    rhs = col - (pt @ (row / a).unsqueeze(-1)).squeeze(-1)
    beta, _ = spd_solve(h, rhs)
    alpha = (row - (p @ beta.unsqueeze(-1)).squeeze(-1)) / a
    return q - p * (alpha[:, :, None] + beta[:, None, :])


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
