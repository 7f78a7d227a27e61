"""The MAP baseline of [BP] section 6: alternate least squares for ``W`` and a quadratic
assignment step for each worm's permutation.

Given the permutations, ``W``'s free entries solve a ridge regression (the Gaussian prior
``G ~ N(0, I)``, ``W = c G``, is the ridge ``sigma^2 / c^2``), one small system per row over
that row's edges, pooled over worms. Given ``W``, each worm's permutation minimises the
squared residual

.. math::

    f(P) = \\sum_t \\lVert y_t - P W P^\\top y_{t-1} \\rVert^2
         = \\mathrm{tr}(B_1 P^\\top C P) + \\mathrm{tr}(B_2 P^\\top S P) + \\text{const},
    \\quad B_1 = -2W,\\ C = Y_0 Y_1^\\top,\\ B_2 = W^\\top W,\\ S = Y_0 Y_0^\\top,

over the permutations that avoid every forbidden pair: a quadratic assignment problem with two
terms. It is solved by FAQ (Vogelstein et al. 2015), the method of scipy's
``quadratic_assignment(method="faq")``: Frank-Wolfe on the Birkhoff polytope from its
barycentre, with the exact line search of a quadratic, then projection to the nearest
permutation. scipy's function minimises a single term ``tr(A^T P B P^T)`` and cannot forbid
pairs (its ``partial_match`` fixes nodes, but the position tolerance forbids pairs without fixing
any), so the same iteration is written here with the forbidden pairs as ``-inf`` scores in each
linear assignment (:func:`~pyro_permutations.ops.matching`). A worm's new permutation is kept
only if it lowers ``f``, so the alternation never gets worse.
"""

import math
import time

import torch

from pyro_permutations.ops import matching, perm_to_matrix, sinkhorn


def fit_weights(problem, perms):
    """Ridge estimate of ``G`` (``W = c G``) given each worm's permutation ``perms`` ``(J, N)``."""
    y = problem.activity
    # Activity in connectome order: z[n] = y[m] where perms[m] = n.
    z = torch.empty_like(y)
    z.scatter_(2, perms[:, None, :].expand_as(y), y)
    z0, z1 = z[:, :-1].reshape(-1, problem.n), z[:, 1:].reshape(-1, problem.n)
    gram, cross = z0.T @ z0, z0.T @ z1  # (N, N)
    ridge = problem.sigma**2 / problem.scale**2
    g = torch.empty(problem.rows.numel(), dtype=y.dtype, device=y.device)
    start = 0
    for i in range(problem.n):
        nbrs = problem.cols[problem.rows == i]
        k = nbrs.numel()
        if k:
            lhs = gram[nbrs][:, nbrs] + ridge * torch.eye(k, dtype=y.dtype, device=y.device)
            w = torch.linalg.solve(lhs, cross[nbrs, i])
            g[start : start + k] = w / problem.scale
        start += k
    return g


def residual(problem, weights, perm, worm):
    """``f(P)`` of one worm for a permutation ``perm`` ``(N,)``."""
    p = perm_to_matrix(perm, dtype=weights.dtype)
    y = problem.activity[worm]
    pred = y[:-1] @ (p @ weights @ p.T).T
    return float(((y[1:] - pred) ** 2).sum())


def faq(terms, allowed, iters=30, tol=1e-6):
    """FAQ: a permutation ``(N,)`` approximately minimising ``sum_k tr(B_k P^T C_k P)`` over
    the permutations allowed by ``allowed`` ``(N, N)``; ``terms`` is a list of ``(B_k, C_k)``."""
    dtype = terms[0][0].dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask = mask.masked_fill(~allowed, -math.inf)
    p = sinkhorn(mask)  # the barycentre of the allowed doubly-stochastic matrices

    def quad(x, d):  # sum_k tr(B_k x^T C_k d)
        return sum(torch.trace(b @ x.T @ cc @ d) for b, cc in terms)

    for _ in range(iters):
        grad = sum(cc @ p @ b + cc.T @ p @ b.T for b, cc in terms)
        q = perm_to_matrix(matching(-grad + mask), dtype=p.dtype)
        d = q - p
        a, lin = quad(d, d), quad(p, d) + quad(d, p)
        if a > 0:
            alpha = min(1.0, max(0.0, float(-lin / (2 * a))))
        else:
            alpha = 1.0 if a + lin < 0 else 0.0
        p = p + alpha * d
        if alpha * float(d.abs().max()) < tol:
            break
    return matching(p.clamp_min(1e-300).log() + mask)


def residual_terms(weights, activity):
    """The two terms of ``f`` for one worm's recording ``(T, N)``."""
    y0, y1 = activity[:-1].T, activity[1:].T  # (N, T - 1)
    return [(-2 * weights, y0 @ y1.T), (weights.T @ weights, y0 @ y0.T)]


def regression_start(problem):
    """Initial permutations by graph matching: per worm, the unconstrained ridge estimate
    ``M`` of the transition matrix (observed order), then FAQ maximising the overlap
    ``tr(A P^T |M_sym| P)`` of its magnitudes with the connectome (``|M_sym| = |M| + |M|^T``).
    """
    a = problem.adjacency.to(problem.activity.dtype)
    perms = []
    for j in range(problem.worms):
        y = problem.activity[j]
        y0, y1 = y[:-1], y[1:]
        ridge = problem.sigma**2 / problem.scale**2
        gram = y0.T @ y0 + ridge * torch.eye(problem.n, dtype=y.dtype, device=y.device)
        m = torch.linalg.solve(gram, y0.T @ y1).T  # y1 ~ y0 @ M^T
        mag = m.abs() + m.abs().T
        perms.append(faq([(-a, mag)], problem.allowed[j]))
    return torch.stack(perms)


def fit_map(
    problem, rounds=10, seed=0, start="regression", truth=None, known=None, time_budget=None
):
    """Alternate ``W`` and the permutations. ``start="regression"``: from
    :func:`regression_start`; ``"random"``: from the nearest allowed permutation of random
    scores; or the start permutations themselves ``(J, N)``. Returns ``(perms, history)``,
    ``history`` a list of ``(seconds, accuracy)`` after the start and each round (accuracy
    None without ``truth`` and ``known``)."""
    from tutorials.celegans.model import accuracy

    def score():
        return accuracy(perms, truth, known) if truth is not None and known is not None else None

    begin = time.perf_counter()
    if isinstance(start, torch.Tensor):
        perms = start.clone()
    elif start == "regression":
        perms = regression_start(problem)
    elif start == "random":
        generator = torch.Generator().manual_seed(seed)
        scores = torch.rand(
            problem.allowed.shape, generator=generator, dtype=problem.activity.dtype
        )
        perms = matching(scores.to(problem.allowed.device).masked_fill(~problem.allowed, -math.inf))
    else:
        raise ValueError(f"start must be 'regression' or 'random', got {start!r}")
    history = [(time.perf_counter() - begin, score())]
    for _ in range(rounds):
        g = fit_weights(problem, perms)
        w = problem.weights(g)
        for j in range(problem.worms):
            new = faq(residual_terms(w, problem.activity[j]), problem.allowed[j])
            if residual(problem, w, new, j) < residual(problem, w, perms[j], j):
                perms[j] = new
        elapsed = time.perf_counter() - begin
        history.append((elapsed, score()))
        if time_budget is not None and elapsed > time_budget:
            break
    return perms, history
