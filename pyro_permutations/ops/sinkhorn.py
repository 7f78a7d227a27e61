"""The Sinkhorn operator: from a score matrix to a doubly-stochastic matrix."""

import numbers
from typing import NamedTuple

import torch

from pyro_permutations.ops._sinkhorn_implicit import ImplicitSinkhorn
from pyro_permutations.ops._sinkhorn_newton import newton_solve
from pyro_permutations.ops._validation import check_floating, check_scores, check_square, is_int
from pyro_permutations.ops.matching import matching

__all__ = ["SinkhornInfo", "log_sinkhorn", "marginal_error", "sinkhorn"]

GRAD_MODES = ("implicit", "unrolled")


class _SinkhornInfoFields(NamedTuple):
    iterations: torch.Tensor
    error: torch.Tensor
    converged: torch.Tensor


class SinkhornInfo(_SinkhornInfoFields):
    """Diagnostics of a Sinkhorn solve, one entry per batch element (shape ``batch_shape``).

    A named triple, so ``iterations, error, converged = info`` unpacks it; ``sweeps`` and
    ``newton_steps`` are attributes beside the triple (not fields of it, so that unpacking
    keeps working).

    :ivar torch.Tensor iterations: long, iterations used: ``n_iters`` when it is given;
        otherwise ``sweeps + newton_steps`` plus the temperature-stage changes between them
        (a rescaling each, no step), at most ``max_iter``.
    :ivar torch.Tensor error: marginal error of the returned matrix,
        ``max(max_i |sum_j P_ij - 1|, max_j |sum_i P_ij - 1|)``.
    :ivar torch.Tensor converged: bool, ``error <= tol`` for the requested matrix ``S(X)``
        (False where ``max_iter`` stopped the solver on a scaled-down stage ``S(s X)``, ``s < 1``,
        whatever its error).
    :ivar torch.Tensor sweeps: long, plain Sinkhorn sweeps (rows, then columns) among the
        iterations.
    :ivar torch.Tensor newton_steps: long, Newton steps among the iterations, each one
        ``(N, N)`` linear solve (a step whose line search fails takes the plain step instead,
        and counts here); 0 with ``n_iters``.
    """

    sweeps = None  # for a triple built by hand or by ``_make``; log_sinkhorn sets both
    newton_steps = None

    def __new__(cls, iterations, error, converged, *, sweeps=None, newton_steps=None):
        info = super().__new__(cls, iterations, error, converged)
        info.sweeps, info.newton_steps = sweeps, newton_steps
        return info

    def _replace(self, **changes):
        sweeps = changes.pop("sweeps", self.sweeps)
        newton_steps = changes.pop("newton_steps", self.newton_steps)
        fields = super()._replace(**changes)
        return type(self)(*fields, sweeps=sweeps, newton_steps=newton_steps)

    def __repr__(self):
        extra = f", sweeps={self.sweeps!r}, newton_steps={self.newton_steps!r})"
        return super().__repr__()[:-1] + extra  # the triple's repr, its ")" replaced


def marginal_error(log_p):
    """Marginal error ``max(|P 1 - 1|_inf, |P^T 1 - 1|_inf)`` of ``P = exp(log_p)``, ``(...)``.

    :param torch.Tensor log_p: log-matrices of shape ``(..., N, N)``, floating.
    :raises ValueError: if ``log_p`` is not a floating batch of square matrices.
    """
    check_floating(log_p, "log_p")
    check_square(log_p, "log_p")
    p = torch.exp(log_p)
    rows = (p.sum(-1) - 1).abs().amax(-1)
    cols = (p.sum(-2) - 1).abs().amax(-1)
    return torch.maximum(rows, cols)


def _check_options(tol, max_iter, n_iters, grad):
    if not (isinstance(tol, numbers.Real) and not isinstance(tol, bool) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if not (is_int(max_iter) and max_iter >= 1):
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    if n_iters is not None and not (is_int(n_iters) and n_iters >= 1):
        raise ValueError(
            f"n_iters must be None (stop on tol) or a positive int (that many sweeps), got "
            f"{n_iters!r}; n_iters=0 would return exp(log_alpha) unnormalised"
        )
    if grad is not None and grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES} or None, got {grad!r}")
    if grad == "implicit" and n_iters is not None:
        raise ValueError(
            "grad='implicit' differentiates the converged fixed point, but n_iters stops after a "
            "fixed number of sweeps; use grad='unrolled' with n_iters, or stop on tol instead"
        )


def _check_feasible(log_alpha):
    """Every row and column keeps a finite entry, and some permutation avoids all ``-inf``."""
    neg_inf = torch.isneginf(log_alpha)
    if not neg_inf.any():
        return
    if neg_inf.all(-1).any() or neg_inf.all(-2).any():
        raise ValueError(
            "log_alpha has a row or column that is entirely -inf, so no doubly-stochastic "
            "matrix exists; allow at least one pair in every row and column"
        )
    try:
        matching(log_alpha)
    except ValueError as e:
        raise ValueError(
            "log_alpha: no permutation avoids all of its -inf (forbidden) entries, so no "
            "doubly-stochastic matrix with those zeros exists; allow more pairs"
        ) from e


def _sweeps(y, n_iters):
    """``n_iters`` plain Sinkhorn sweeps (rows, then columns) in log space: ``log S^L(y)``."""
    for _ in range(n_iters):
        y = y - torch.logsumexp(y, dim=-1, keepdim=True)
        y = y - torch.logsumexp(y, dim=-2, keepdim=True)
    return y


def log_sinkhorn(log_alpha, *, tol=1e-5, max_iter=500, n_iters=None, grad=None, return_info=False):
    """The Sinkhorn operator of [GS] in log space: ``log S(log_alpha)``.

    .. math::

        S^0(X) = \\exp(X), \\quad S^l(X) = \\mathcal{T}_c(\\mathcal{T}_r(S^{l-1}(X))), \\quad
        S(X) = \\lim_{l \\to \\infty} S^l(X),

    where ``T_r`` and ``T_c`` normalise rows and columns. ``S(X)`` is the unique matrix of the
    form ``diag(u) exp(X) diag(v)`` in the Birkhoff polytope (rows and columns sum to one), and
    ``S(X / tau) = argmax_{P} <P, X>_F + tau h(P)`` with ``h(P) = -sum P log P`` ([GS]
    Theorem 1), which tends to the permutation :func:`~pyro_permutations.ops.matching`\\ ``(X)``
    as ``tau -> 0``. Rows index the items, columns the positions: ``P[i, j]`` is the weight of
    row ``i`` going to column ``j``, the same convention as ``perm_to_matrix`` uses.

    **Stopping.** By default the iteration stops once the marginal error
    ``max(|P 1 - 1|_inf, |P^T 1 - 1|_inf)`` is at most ``tol``, so the result is doubly
    stochastic to that tolerance at any temperature. This uses Newton's method on the dual
    with an Armijo line search and temperature (epsilon) scaling, a few to a few tens of
    ``(N, N)`` symmetric solves (batched Cholesky; conjugate gradients from ``N = 256``) where
    plain Sinkhorn needs over a thousand sweeps at temperature 0.1 and does not finish at 0.01.
    With ``n_iters=L`` exactly ``L`` plain sweeps ``S^L`` are run instead, as in the papers (20
    in [GS]); then only the columns sum exactly to one.

    **Gradients.** ``grad="implicit"`` (the default when stopping on ``tol``) differentiates
    the fixed point: one ``(N, N)`` Cholesky solve in the backward pass, memory independent of
    the number of iterations. ``grad="unrolled"`` (the default, and the only mode, with
    ``n_iters``) back-propagates through every iteration run. At convergence the two agree.

    **Input.** Entries of magnitude up to ``1e4`` (unit scores at temperature ``1e-3``) give
    finite values and gradients in float32 and float64. Larger entries, up to the largest
    float, are solved too, at one more iteration (a temperature stage) per factor of 4 in their
    range: about 62 stages at float32's largest, and float64 entries beyond about ``1e290``
    need more than the default ``max_iter`` (``info.converged`` is False until they get it).
    ``-inf`` entries are forbidden pairs: their probability is exactly zero; some permutation
    must avoid them all.

    **Tiny entries.** An entry far below machine precision relative to its row and column
    (``P_ij < eps``, e.g. ``exp(-75)`` beside ``1`` in float64) does not affect any marginal in
    floating point, so the marginals do not determine its log: ``exp(log_p)`` is right to
    absolute precision, but ``log_p`` there (and gradients of losses written on those log
    entries) may be far off, for this solver as for the plain loop. Losses on ``sinkhorn``'s
    probabilities, or on entries of non-negligible mass, are unaffected.

    :param torch.Tensor log_alpha: scores ``X`` of shape ``(..., N, N)``, floating point, on
        any device; any number of leading batch dimensions.
    :param float tol: marginal error at which to stop (ignored for stopping when ``n_iters``
        is given, but still used for ``info.converged``).
    :param int max_iter: most iterations (plain sweeps, Newton steps and temperature-stage
        changes together) before giving up (``info.converged`` is then False).
    :param int n_iters: if given, run exactly this many plain sweeps instead (``>= 1``).
    :param str grad: ``"implicit"`` or ``"unrolled"``; ``None`` picks as described above.
    :param bool return_info: also return a :class:`SinkhornInfo`.
    :returns: ``log S(X)`` of shape ``(..., N, N)``, and the info if asked.
    :raises ValueError: if ``log_alpha`` is not a batch of square floating matrices, holds NaN
        or ``+inf``, or its ``-inf`` entries admit no permutation; on invalid options.

    Example::

        >>> import torch
        >>> from pyro_permutations.ops import log_sinkhorn
        >>> log_p, info = log_sinkhorn(torch.randn(4, 5, 5) / 0.1, return_info=True)
        >>> p = log_p.exp()
        >>> bool(torch.allclose(p.sum(-1), torch.ones(4, 5), atol=1e-5))
        True
        >>> bool(info.converged.all())
        True

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, section 2 and Theorem 1.
    Sinkhorn. A relationship between arbitrary positive matrices and doubly stochastic
    matrices. Ann. Math. Statist. 1964.
    """
    check_scores(log_alpha, "log_alpha", allow_neg_inf=True)
    _check_options(tol, max_iter, n_iters, grad)
    tol, max_iter = float(tol), int(max_iter)
    n_iters = None if n_iters is None else int(n_iters)
    _check_feasible(log_alpha)
    if grad is None:
        grad = "unrolled" if n_iters is not None else "implicit"

    batch_shape = log_alpha.shape[:-2]
    n = log_alpha.shape[-1]
    y = log_alpha.reshape((-1, n, n))
    # Counts per matrix: iterations, sweeps, Newton steps; ``final`` is False where max_iter
    # stopped the solver on a scaled-down problem.
    counts = [torch.zeros(y.shape[0], dtype=torch.long, device=y.device) for _ in range(3)]
    final = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
    if n_iters is not None:
        log_p = _sweeps(y, n_iters)
        counts[0] += n_iters
        counts[1] += n_iters
    elif y.shape[0] == 0:
        log_p = y.clone()
    elif grad == "implicit":
        with torch.no_grad():
            solved, *counts, _, final = newton_solve(y.detach(), tol, max_iter)
        log_p = ImplicitSinkhorn.apply(y, solved) if y.requires_grad else solved
    else:
        log_p, *counts, _, final = newton_solve(y, tol, max_iter)
    log_p = log_p.reshape(log_alpha.shape)
    if not return_info:
        return log_p
    with torch.no_grad():
        error = marginal_error(log_p)
    iterations, sweeps, newton_steps = (count.reshape(batch_shape) for count in counts)
    converged = (error <= tol) & final.reshape(batch_shape)
    return log_p, SinkhornInfo(
        iterations, error, converged, sweeps=sweeps, newton_steps=newton_steps
    )


def sinkhorn(log_alpha, **kwargs):
    """The Sinkhorn operator ``S(log_alpha)``: a doubly-stochastic matrix ``(..., N, N)``.

    ``exp`` of :func:`log_sinkhorn`, which documents the maths, the stopping rules, the two
    gradient modes and the options (passed through as keyword arguments).

    Example::

        >>> import torch
        >>> from pyro_permutations.ops import sinkhorn
        >>> p = sinkhorn(torch.randn(3, 3))
        >>> bool(torch.allclose(p.sum(0), torch.ones(3), atol=1e-5))
        True
    """
    out = log_sinkhorn(log_alpha, **kwargs)
    if isinstance(out, tuple):
        return out[0].exp(), out[1]
    return out.exp()
