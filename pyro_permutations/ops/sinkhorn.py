"""The Sinkhorn operator: from a score matrix to a doubly-stochastic matrix."""

import math
import numbers
from typing import NamedTuple

import torch

from pyro_permutations.ops._sinkhorn_implicit import ImplicitSinkhorn
from pyro_permutations.ops._sinkhorn_newton import newton_solve
from pyro_permutations.ops._validation import (
    check_floating,
    check_matrix,
    check_scores,
    check_square,
    is_int,
)
from pyro_permutations.ops.matching import broadcast_unmatched, matching

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
        ``max(max_i |sum_j P_ij - 1|, max_j |sum_i P_ij - 1|)`` (for partial matchings the
        relative error of the augmented matrix against its marginals, see :func:`log_sinkhorn`).
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


def marginal_error(log_p, *, augmented=False):
    """Marginal error ``max(|P 1 - 1|_inf, |P^T 1 - 1|_inf)`` of ``P = exp(log_p)``, ``(...)``.

    For rectangular ``(..., N, M)`` matrices, ``N < M`` (the rows all matched, the columns at
    most once): ``max(|P 1 - 1|_inf, |(P^T 1 - 1)_+|_inf)``, and the same transposed for
    ``N > M``. With ``augmented=True``, ``log_p`` is the ``(..., N + 1, M + 1)`` matrix that
    :func:`log_sinkhorn` returns with unmatched scores, whose rows should sum to
    ``a = (1_N, M)`` and columns to ``b = (1_M, N)``; the error is relative,
    ``max(|P 1 / a - 1|_inf, |P^T 1 / b - 1|_inf)``.

    :param torch.Tensor log_p: log-matrices of shape ``(..., N, N)`` (or ``(..., N, M)``),
        floating.
    :param bool augmented: ``log_p`` holds an unmatched row and column (last).
    :raises ValueError: if ``log_p`` is not a floating batch of matrices.

    Example::

        >>> marginal_error(torch.log(torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])))
        tensor(0.)
    """
    check_floating(log_p, "log_p")
    if augmented or (log_p.dim() >= 2 and log_p.shape[-1] != log_p.shape[-2]):
        check_matrix(log_p, "log_p")
        return _partial_error(log_p.exp(), augmented)
    check_square(log_p, "log_p")
    p = torch.exp(log_p)
    rows = (p.sum(-1) - 1).abs().amax(-1)
    cols = (p.sum(-2) - 1).abs().amax(-1)
    return torch.maximum(rows, cols)


def _partial_error(p, augmented):
    """:func:`marginal_error` of rectangular or augmented matrices ``p`` (probabilities)."""
    if augmented:
        if p.shape[-1] < 2 or p.shape[-2] < 2:
            raise ValueError(
                f"log_p must have shape (..., N + 1, M + 1) with N, M >= 1 when augmented, "
                f"got shape {tuple(p.shape)}"
            )
        n, m = p.shape[-2] - 1, p.shape[-1] - 1
        a = torch.ones(n + 1, dtype=p.dtype, device=p.device)
        b = torch.ones(m + 1, dtype=p.dtype, device=p.device)
        a[-1], b[-1] = m, n
        rows = (p.sum(-1) / a - 1).abs().amax(-1)
        cols = (p.sum(-2) / b - 1).abs().amax(-1)
        return torch.maximum(rows, cols)
    if p.shape[-2] > p.shape[-1]:
        p = p.transpose(-1, -2)
    rows = (p.sum(-1) - 1).abs().amax(-1)
    cols = (p.sum(-2) - 1).clamp(min=0).amax(-1)
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


def _validating(validate):
    """``validate``, or where it is ``None`` the global default of torch and Pyro
    (``torch.distributions.Distribution._validate_args``, which ``pyro.enable_validation``
    sets)."""
    if validate is None:
        return bool(torch.distributions.Distribution._validate_args)
    if not isinstance(validate, bool):
        raise ValueError(f"validate must be True, False or None, got {validate!r}")
    return validate


def _check_values(x, name):
    """No NaN or ``+inf`` in ``x``: one host read where every entry is finite (the common
    case), the detailed checks only where some entry is not."""
    if bool(torch.isfinite(x).all()):
        return False
    check_scores(x, name, allow_neg_inf=True, square=False)
    return True  # some entry is -inf


#: Permutations (injective maps of the rows, for rectangular scores) that were found to avoid
#: every ``-inf`` of some earlier input, by shape and device; at most ``FEASIBLE_CACHE`` each.
_FEASIBLE = {}
FEASIBLE_CACHE = 8


def _known_feasible(x):
    """A cheap sufficient test that every matrix of ``x`` ``(B, N, M)``, ``N <= M``, has a
    matching of all its rows that avoids its ``-inf`` entries: the identity or one of the
    cached permutations does (one gather per candidate, one host read). Returns the mask of
    the matrices it does not decide."""
    n, m = x.shape[-2:]
    key = (n, m, x.device)
    candidates = [torch.arange(n, device=x.device)] + _FEASIBLE.get(key, [])
    perms = torch.stack(candidates)  # (K, N)
    batch, k = x.shape[0], perms.shape[0]
    index = perms[None, :, :, None].expand(batch, k, n, 1)
    picked = x.unsqueeze(1).expand(batch, k, n, m).gather(-1, index).squeeze(-1)  # (B, K, N)
    return ~torch.isfinite(picked).all(-1).any(-1)


def _remember(x, perms):
    key = (x.shape[-2], x.shape[-1], x.device)
    cached = _FEASIBLE.setdefault(key, [])
    for perm in perms:
        cached.insert(0, perm)
    del cached[FEASIBLE_CACHE:]


def _check_feasible(log_alpha):
    """Every row and column keeps a finite entry, and some permutation avoids all ``-inf``.

    Decided first by :func:`_known_feasible` (the identity and the permutations found for
    earlier inputs of this shape: a fixed mask of forbidden pairs costs one assignment solve);
    only the matrices it leaves open go to :func:`~pyro_permutations.ops.matching`, whose
    permutations are then remembered.
    """
    x = log_alpha.detach().reshape((-1,) + log_alpha.shape[-2:])
    open_ = _known_feasible(x)
    if not bool(open_.any()):
        return
    x = x[open_]
    neg_inf = torch.isneginf(x)
    if neg_inf.all(-1).any() or neg_inf.all(-2).any():
        raise ValueError(
            "log_alpha has a row or column that is entirely -inf, so no doubly-stochastic "
            "matrix exists; allow at least one pair in every row and column"
        )
    try:
        perms = matching(x)
    except ValueError as e:
        raise ValueError(
            "log_alpha: no permutation avoids all of its -inf (forbidden) entries, so no "
            "doubly-stochastic matrix with those zeros exists; allow more pairs"
        ) from e
    _remember(x, perms.unique(dim=0)[:FEASIBLE_CACHE])


def _check_partial_feasible(x):
    """Rectangular ``x`` ``(B, N, M)``, ``N < M``: some matching of every row avoids ``-inf``
    (decided as in :func:`_check_feasible`, with injective maps of the rows)."""
    open_ = _known_feasible(x.detach())
    if not bool(open_.any()):
        return
    x = x.detach()[open_]
    if torch.isneginf(x).all(-1).any():
        raise ValueError(
            "log_alpha has an item of its smaller side (a row, or a column where there are "
            "more rows than columns) whose pairs are all -inf, so it cannot be matched; allow "
            "at least one pair for it, or give unmatched scores"
        )
    try:
        perms = matching(x)
    except ValueError as e:
        raise ValueError(
            "log_alpha: no matching of every item of its smaller side avoids all of its -inf "
            "(forbidden) entries; allow more pairs, or give unmatched scores"
        ) from e
    _remember(x, perms.unique(dim=0)[:FEASIBLE_CACHE])


def check_feasible_scores(log_alpha, has_unmatched=False):
    """Raise ``ValueError`` unless the forbidden (``-inf``) pairs of ``log_alpha`` ``(..., N,
    M)`` leave a matching that :func:`log_sinkhorn` and :func:`matching` can reach: a
    permutation avoiding them (square), or a matching of every item of the smaller side
    (rectangular). With unmatched scores (``has_unmatched``) every item may go unmatched, so
    any pattern is feasible. Scores without ``-inf`` cost one host read; a fixed mask costs
    one assignment solve, remembered (as in :func:`log_sinkhorn`'s own check). Distributions
    call it at construction when their ``validate_args`` is on, so that an infeasible mask is
    reported where it is given, not at the first sample.
    """
    if has_unmatched or log_alpha.numel() == 0 or not bool(torch.isneginf(log_alpha).any()):
        return
    n, m = log_alpha.shape[-2:]
    if n == m:
        _check_feasible(log_alpha)
        return
    x = log_alpha.detach().reshape((-1, n, m))
    _check_partial_feasible(x.transpose(-1, -2) if n > m else x)


def _augmented(x, unmatched):
    """The augmented problem of ``x`` ``(B, N, M)``, ``N <= M``: ``(y, log_a, log_b)``.

    Rectangular (``unmatched`` None): a slack row of one constant score (any constant gives the
    same solution; the middle of ``x``'s finite range keeps the range unchanged) with marginal
    ``M - N``. Unmatched scores ``(u, v)``: the dustbin row and column, corner score 0 (``-inf``
    where all of ``x`` is ``-inf``: then nothing is matched and the corner's mass is zero),
    marginals ``(1_N, M)`` and ``(1_M, N)``.
    """
    batch, n, m = x.shape
    zeros = x.new_zeros(batch, n)
    if unmatched is None:
        with torch.no_grad():
            finite = torch.isfinite(x)
            hi = torch.where(finite, x, -torch.inf).amax(dim=(-2, -1))
            lo = torch.where(finite, x, torch.inf).amin(dim=(-2, -1))
            mid = hi / 2 + lo / 2
        y = torch.cat([x, mid[:, None, None].expand(batch, 1, m)], dim=-2)
        log_a = torch.cat([zeros, zeros[:, :1] + math.log(m - n)], dim=-1)
        return y, log_a, x.new_zeros(batch, m)
    u, v = unmatched
    with torch.no_grad():
        corner = torch.where(torch.isneginf(x).all(-1).all(-1), -torch.inf, 0.0).to(x.dtype)
    top = torch.cat([x, u.unsqueeze(-1)], dim=-1)
    bottom = torch.cat([v, corner.unsqueeze(-1)], dim=-1)
    y = torch.cat([top, bottom.unsqueeze(-2)], dim=-2)
    log_a = torch.cat([zeros, zeros[:, :1] + math.log(m)], dim=-1)
    log_b = torch.cat([x.new_zeros(batch, m), zeros[:, :1] + math.log(n)], dim=-1)
    return y, log_a, log_b


def _log_sinkhorn_partial(
    log_alpha, unmatched, tol, max_iter, n_iters, grad, return_info, has_neg_inf
):
    """:func:`log_sinkhorn` of rectangular scores, or of scores with unmatched scores."""
    batch_shape = log_alpha.shape[:-2]
    n, m = log_alpha.shape[-2:]
    x = log_alpha.reshape((-1, n, m))
    if unmatched is not None:
        unmatched = tuple(t.reshape(-1, t.shape[-1]) for t in unmatched)
    transposed = n > m  # solve with the smaller side as the rows: the Newton system is its size
    if transposed:
        x = x.transpose(-1, -2)
        n, m = m, n
        if unmatched is not None:
            unmatched = unmatched[::-1]
    if unmatched is None and has_neg_inf:
        _check_partial_feasible(x)
    y, log_a, log_b = _augmented(x, unmatched)
    log_p, counts, final = _solve(y, tol, max_iter, n_iters, grad, log_a, log_b)
    if return_info:
        with torch.no_grad():
            p = log_p.exp()
            rows = (p.sum(-1) / log_a.exp() - 1).abs().amax(-1)
            cols = (p.sum(-2) / log_b.exp() - 1).abs().amax(-1)
            error = torch.maximum(rows, cols).reshape(batch_shape)
    if unmatched is None:
        log_p = log_p[:, :n, :]  # the slack row is 1 - (column sums)
    if transposed:
        log_p = log_p.transpose(-1, -2)
    log_p = log_p.reshape(batch_shape + log_p.shape[-2:])
    if not return_info:
        return log_p
    iterations, sweeps, newton_steps = (count.reshape(batch_shape) for count in counts)
    converged = (error <= tol) & final.reshape(batch_shape)
    return log_p, SinkhornInfo(
        iterations, error, converged, sweeps=sweeps, newton_steps=newton_steps
    )


def _solve(y, tol, max_iter, n_iters, grad, log_a=None, log_b=None):
    """``log S(y)`` for ``y`` ``(B, N, M)`` by the stopping rule and gradient mode asked for
    (row and column totals ``exp(log_a)``, ``exp(log_b)``, or ones), with the counts per
    matrix (iterations, sweeps, Newton steps) and ``final``, False where ``max_iter`` stopped
    the solver on a scaled-down problem."""
    counts = [torch.zeros(y.shape[0], dtype=torch.long, device=y.device) for _ in range(3)]
    final = torch.ones(y.shape[0], dtype=torch.bool, device=y.device)
    if n_iters is not None:
        log_p = _sweeps(y, n_iters, log_a, log_b)
        counts[0] += n_iters
        counts[1] += n_iters
    elif y.shape[0] == 0:
        log_p = y.clone()
    elif grad == "implicit":
        with torch.no_grad():
            solved, *counts, _, final = newton_solve(y.detach(), tol, max_iter, log_a, log_b)
        if y.requires_grad:
            marginals = () if log_a is None else (log_a.exp(), log_b.exp())
            log_p = ImplicitSinkhorn.apply(y, solved, *marginals)
        else:
            log_p = solved
    else:
        log_p, *counts, _, final = newton_solve(y, tol, max_iter, log_a, log_b)
    return log_p, counts, final


def _sweeps(y, n_iters, log_a=None, log_b=None):
    """``n_iters`` plain Sinkhorn sweeps (rows, then columns) in log space: ``log S^L(y)``; with
    marginals ``exp(log_a)``, ``exp(log_b)`` each normalisation is to them."""
    if log_a is not None:
        for _ in range(n_iters):
            y = y - torch.logsumexp(y, dim=-1, keepdim=True) + log_a.unsqueeze(-1)
            y = y - torch.logsumexp(y, dim=-2, keepdim=True) + log_b.unsqueeze(-2)
        return y
    for _ in range(n_iters):
        y = y - torch.logsumexp(y, dim=-1, keepdim=True)
        y = y - torch.logsumexp(y, dim=-2, keepdim=True)
    return y


def log_sinkhorn(
    log_alpha,
    *,
    unmatched_rows=None,
    unmatched_cols=None,
    tol=1e-5,
    max_iter=500,
    n_iters=None,
    grad=None,
    return_info=False,
    validate=None,
):
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
    the fixed point: one ``(N, N)`` Cholesky solve in the backward pass (from ``N = 256``
    conjugate gradients with ``O(N^2)`` products instead, no ``(N, N)`` system formed),
    memory independent of the number of iterations. ``grad="unrolled"`` (the default, and the
    only mode, with ``n_iters``) back-propagates through every iteration run. At convergence
    the two agree.

    **Input.** Entries of magnitude up to ``1e4`` (unit scores at temperature ``1e-3``) give
    finite values and gradients in float32 and float64. Larger entries, up to the largest
    float, are solved too, at one more iteration (a temperature stage) per factor of 4 in their
    range: about 62 stages at float32's largest, and float64 entries beyond about ``1e290``
    need more than the default ``max_iter`` (``info.converged`` is False until they get it).
    ``-inf`` entries are forbidden pairs: their probability is exactly zero; some permutation
    must avoid them all.

    **Validation and host synchronisation.** With validation on, the values cost one host
    read when every entry is finite. With ``-inf`` entries, feasibility is decided by a cheap
    sufficient test first: the identity, or a permutation found for an earlier input of the
    same shape (up to ``FEASIBLE_CACHE`` are kept), avoids every ``-inf``; only matrices that
    no such permutation fits go to the exact (scipy) assignment solver, whose permutations
    are then remembered, so a fixed mask of forbidden pairs costs scipy once, not per call.
    ``validate=False`` skips all of it (NaN or an infeasible pattern then give NaN or
    meaningless results). The solver's loop reads a few flags on the host at its checks (every
    iteration on the CPU, every fourth elsewhere) and nowhere else.

    **Partial matchings: rectangular scores.** For ``(..., N, M)`` scores with ``N < M``
    every row is matched and a column at most once: the result is the ``(N, M)`` block of the
    Sinkhorn limit of the ``(N + 1, M)`` matrix with a slack row (one constant score, which
    absorbs what the rows leave of each column),

    .. math::

        \\bar P = \\begin{pmatrix} P \\\\ s^T \\end{pmatrix}
        = \\mathrm{diag}(e^f) \\exp\\begin{pmatrix} X \\\\ c 1^T \\end{pmatrix}
        \\mathrm{diag}(e^g), \\qquad \\bar P 1 = \\begin{pmatrix} 1_N \\\\ M - N
        \\end{pmatrix}, \\quad \\bar P^T 1 = 1_M,

    so ``P 1 = 1_N`` and ``P^T 1 = 1_M - s <= 1_M``; it maximises
    ``<P, X> + tau (h(P) + h(s))`` over that polytope and tends to the rectangular
    :func:`~pyro_permutations.ops.matching` as ``tau -> 0``. For ``N > M`` the same with the
    roles of rows and columns exchanged (a slack column).

    **Partial matchings: unmatched scores** (SuperGlue's dustbin [SG]). With
    ``unmatched_rows=u`` ``(..., N)`` and ``unmatched_cols=v`` ``(..., M)`` any row or
    column may go unmatched, and the result is the ``(..., N + 1, M + 1)`` augmented matrix

    .. math::

        \\bar P = \\mathrm{diag}(e^f) \\exp\\begin{pmatrix} X & u \\\\ v^T & 0
        \\end{pmatrix} \\mathrm{diag}(e^g), \\qquad
        \\bar P 1 = \\begin{pmatrix} 1_N \\\\ M \\end{pmatrix}, \\quad
        \\bar P^T 1 = \\begin{pmatrix} 1_M \\\\ N \\end{pmatrix}:

    ``P = bar P[..., :N, :M]`` is the soft partial matching, ``bar P[..., i, M] = 1 - (P 1)_i``
    the probability that row ``i`` is unmatched, ``bar P[..., N, j]`` that column ``j`` is,
    and the corner ``bar P[..., N, M]`` the expected number of matched pairs. These marginals
    (SuperGlue's) let every item go unmatched and the corner take up the difference, so that
    the problem is feasible for any finite ``u``, ``v``; with corner score 0, ``S(bar X / tau)``
    tends as ``tau -> 0`` to the partial matching that maximises the matched scores plus the
    unmatched scores of the unmatched rows and columns, ``matching(X, unmatched_rows=u,
    unmatched_cols=v)``. Scale ``u`` and ``v`` with the temperature as ``X`` is. The unmatched
    scores must be finite; ``-inf`` entries of ``X`` are allowed (always feasible).

    In both cases the stopping rule, Newton's method, the gradients and the diagnostics are
    those of the square case, with the marginals above: ``info.error`` is the relative error
    ``max(|bar P 1 / a - 1|_inf, |bar P^T 1 / b - 1|_inf)`` of the augmented matrix (for
    rectangular scores at least :func:`marginal_error` of the block), and the smaller of ``N``,
    ``M`` sets the size of the Newton systems.

    **Ragged batches** (a different ``N_b, M_b`` per element): pad to the largest ``(N, M)``
    with ``-inf`` scores wherever a padded row or column is involved, and give unmatched scores
    (any finite value for the padded items, e.g. 0). A padded item then has a single finite
    entry, its dustbin, and goes unmatched with probability one; the augmented problem
    decouples and the unpadded block is exactly the solution of the element alone. (Without
    unmatched scores padding cannot work: every row of the smaller side must be matched.)

    **Tiny entries.** An entry far below machine precision relative to its row and column
    (``P_ij < eps``, e.g. ``exp(-75)`` beside ``1`` in float64) does not affect any marginal in
    floating point, so the marginals do not determine its log: ``exp(log_p)`` is right to
    absolute precision, but ``log_p`` there (and gradients of losses written on those log
    entries) may be far off, for this solver as for the plain loop. Losses on ``sinkhorn``'s
    probabilities, or on entries of non-negligible mass, are unaffected.

    :param torch.Tensor log_alpha: scores ``X`` of shape ``(..., N, N)``, or ``(..., N, M)``
        (a partial matching, as above), floating point, on any device; any number of leading
        batch dimensions.
    :param unmatched_rows: scores ``(..., N)`` (broadcast; a number for all) of leaving each
        row unmatched, finite; give both or neither.
    :param unmatched_cols: scores ``(..., M)`` of leaving each column unmatched, finite.
    :param float tol: marginal error at which to stop (ignored for stopping when ``n_iters``
        is given, but still used for ``info.converged``).
    :param int max_iter: most iterations (plain sweeps, Newton steps and temperature-stage
        changes together) before giving up (``info.converged`` is then False).
    :param int n_iters: if given, run exactly this many plain sweeps instead (``>= 1``).
    :param str grad: ``"implicit"`` or ``"unrolled"``; ``None`` picks as described above.
    :param bool return_info: also return a :class:`SinkhornInfo`.
    :param bool validate: check the values of ``log_alpha`` (no NaN or ``+inf``; its ``-inf``
        entries admit a permutation). ``None`` (the default) follows the global switch of
        torch and Pyro, ``torch.distributions.Distribution._validate_args``, which
        ``pyro.enable_validation(False)`` (or ``python -O``) turns off, as for the
        distributions' ``validate_args``. Shapes, dtypes and options are checked always.
    :returns: ``log S(X)`` of shape ``(..., N, N)`` (``(..., N, M)`` for rectangular scores,
        ``(..., N + 1, M + 1)`` with unmatched scores), and the info if asked.
    :raises ValueError: if ``log_alpha`` is not a batch of floating matrices, holds NaN
        or ``+inf``, or its ``-inf`` entries admit no permutation (no matching of every item of
        the smaller side); on unmatched scores that are not finite, do not broadcast or come
        alone; on invalid options.

    Example::

        >>> import torch
        >>> from pyro_permutations.ops import log_sinkhorn
        >>> log_p, info = log_sinkhorn(torch.randn(4, 5, 5) / 0.1, return_info=True)
        >>> p = log_p.exp()
        >>> bool(torch.allclose(p.sum(-1), torch.ones(4, 5), atol=1e-5))
        True
        >>> bool(info.converged.all())
        True
        >>> p = log_sinkhorn(torch.randn(3, 5), unmatched_rows=0.0, unmatched_cols=0.0).exp()
        >>> p.shape  # the dustbin row and column last
        torch.Size([4, 6])
        >>> bool(torch.allclose(p.sum(-1), torch.tensor([1.0, 1.0, 1.0, 5.0]), atol=1e-4))
        True

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, section 2 and Theorem 1.
    Sinkhorn. A relationship between arbitrary positive matrices and doubly stochastic
    matrices. Ann. Math. Statist. 1964.
    [SG] Sarlin, DeTone, Malisiewicz, Rabinovich. SuperGlue: Learning Feature Matching with
    Graph Neural Networks. CVPR 2020, section 3.2 (the dustbin and its marginals).
    """
    check_floating(log_alpha, "log_alpha")
    check_matrix(log_alpha, "log_alpha")
    _check_options(tol, max_iter, n_iters, grad)
    has_neg_inf = _validating(validate) and _check_values(log_alpha, "log_alpha")
    tol, max_iter = float(tol), int(max_iter)
    n_iters = None if n_iters is None else int(n_iters)
    if grad is None:
        grad = "unrolled" if n_iters is not None else "implicit"
    log_alpha, unmatched = broadcast_unmatched(
        log_alpha, unmatched_rows, unmatched_cols, "log_alpha"
    )
    if unmatched is not None or log_alpha.shape[-1] != log_alpha.shape[-2]:
        return _log_sinkhorn_partial(
            log_alpha, unmatched, tol, max_iter, n_iters, grad, return_info, has_neg_inf
        )
    if has_neg_inf:
        _check_feasible(log_alpha)

    batch_shape = log_alpha.shape[:-2]
    n = log_alpha.shape[-1]
    y = log_alpha.reshape((-1, n, n))
    log_p, counts, final = _solve(y, tol, max_iter, n_iters, grad)
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
    """The Sinkhorn operator ``S(log_alpha)``: a doubly-stochastic matrix ``(..., N, N)`` (or a
    soft partial matching, for rectangular scores or with unmatched scores).

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
