"""The matching operator: the best permutation for a matrix of scores (linear assignment)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.optimize
import torch

from pyro_permutations.ops._validation import check_floating, check_scores, check_square

__all__ = ["matching"]

#: Batches with at least this many score entries (``B * N * N``) are split over
#: ``torch.get_num_threads()`` threads. ``linear_sum_assignment`` releases the GIL while it
#: solves, so the threads run in parallel on free cores; below this size (``B = 100, N = 50``
#: takes about 5 ms) starting them would cost a noticeable share of the time.
PARALLEL_MIN_ENTRIES = 250_000
#: Costs are scaled down, by a power of two per matrix, until their finite entries are at most
#: ``2^MAX_COST_EXPONENT`` (``1.1e301``) in magnitude: a difference of two of them, and the
#: solver's path lengths (sums of up to ``2 N`` of them), then stay below float64's largest
#: number (``2^1024``) for any ``N`` below a million.
MAX_COST_EXPONENT = 1000


def _scaled_down(cost):
    """``cost`` ``(B, N, N)`` with every matrix whose finite entries exceed
    ``2^MAX_COST_EXPONENT`` in magnitude multiplied by a power of two that brings them below it.

    A positive factor leaves every minimiser unchanged, and a power of two is exact (it only
    shifts exponents; entries it takes below the normal range are over ``1e300`` times smaller
    than the largest, far below the rounding of any permutation's total).
    """
    limit = 2.0**MAX_COST_EXPONENT
    if cost.size == 0 or (-limit <= cost.min() and cost.max() <= limit):  # not with NaN or inf
        return cost
    finite = np.isfinite(cost)
    largest = np.abs(cost, out=np.zeros_like(cost), where=finite).max(axis=(-2, -1), keepdims=True)
    exponent = np.frexp(largest)[1]  # largest < 2^exponent
    return np.ldexp(cost, np.minimum(0, MAX_COST_EXPONENT - exponent))


def _reduced_costs(scores):
    """Float64 costs ``(B, N, N)`` for minimising: ``-scores`` with each row's, then each
    column's, smallest entry subtracted; ``None`` if ``scores`` holds NaN or ``+inf``.

    Subtracting a constant from a row or a column adds the same amount to every permutation's
    total, so the minimisers are unchanged; starting from the zeros this creates, the
    shortest-augmenting-path solver finds its paths sooner (about 1.4x less CPU time for
    ``N = 50`` and ``N = 200``). Forbidden pairs (``-inf`` scores) stay ``+inf``. Scores beyond
    ``+-1e301`` (float64) are first scaled down (:func:`_scaled_down`), since the differences
    would overflow to ``+inf``, the mark of a forbidden pair.
    """
    cost = _scaled_down(np.negative(scores, dtype=np.float64))
    low = cost.min(axis=-1, keepdims=True)  # NaN propagates; a +inf score gives -inf
    if np.isnan(low).any() or np.isneginf(low).any():
        return None
    low[np.isposinf(low)] = 0.0  # a row with every pair forbidden: left for the solver
    cost -= low
    low = cost.min(axis=-2, keepdims=True)
    low[np.isposinf(low)] = 0.0
    cost -= low
    return cost


def _solve(scores, start, stop, out):
    """Solve ``scores[start:stop]`` into ``out[start:stop]``. Returns ``None``, or the first
    problem: ``(start, "invalid")`` for NaN or ``+inf`` scores, ``(b, "infeasible")`` for a
    matrix ``b`` with no permutation avoiding its ``-inf`` entries."""
    cost = _reduced_costs(scores[start:stop])
    if cost is None:
        return start, "invalid"
    for b in range(start, stop):
        try:
            out[b] = scipy.optimize.linear_sum_assignment(cost[b - start])[1]
        except ValueError:
            return b, "infeasible"
    return None


def _solve_batch(scores, workers):
    """Permutations ``(B, N)`` maximising each of ``scores`` ``(B, N, N)`` (a numpy array),
    in ``workers`` contiguous chunks on threads, and the first problem met (see ``_solve``)."""
    batch, n = scores.shape[0], scores.shape[-1]
    out = np.empty((batch, n), dtype=np.int64)
    workers = max(1, min(workers, batch))
    if workers == 1:
        return out, _solve(scores, 0, batch, out)
    bounds = np.linspace(0, batch, workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        problems = pool.map(lambda a, b: _solve(scores, a, b, out), bounds[:-1], bounds[1:])
        problems = [p for p in problems if p is not None]
    # NaN or +inf anywhere is reported before any infeasible matrix, as without threads.
    return out, min(problems, key=lambda p: (p[1] != "invalid", p[0]), default=None)


def matching(scores):
    """Matching operator of [GS] section 2: the permutation that maximises the total score.

    .. math::

        M(X) = \\arg\\max_{P \\in \\mathcal{P}_N} \\langle P, X \\rangle_F
             = \\arg\\max_{\\mathrm{perm}} \\sum_{i=0}^{N-1} X_{i, \\mathrm{perm}(i)}

    This is the linear assignment problem, solved exactly for each matrix in the batch by
    :func:`scipy.optimize.linear_sum_assignment` (shortest augmenting paths) on CPU, after
    subtracting row and column minima (which leaves the solution unchanged and speeds the
    solver up); a large batch is split over ``torch.get_num_threads()`` threads, since the
    solver releases the GIL. Convention: ``perm[..., i] = j`` means row ``i`` goes to column
    ``j``, i.e. ``P[..., i, perm[i]] = 1``.
    It is the zero-temperature limit of the Sinkhorn operator, ``M(X) = lim S(X / tau)``, and
    rounds a soft (e.g. doubly stochastic) matrix to a permutation. Ties are broken by the
    solver (deterministically); with continuous random scores they have probability zero.

    ``-inf`` entries mark forbidden pairs; they are avoided whenever some permutation avoids
    all of them. The result is not differentiable: gradients are not tracked.

    :param torch.Tensor scores: floating tensor of shape ``(..., N, N)``; finite (of any
        magnitude) or ``-inf``.
    :returns: long tensor ``perm`` of shape ``(..., N)`` on ``scores``' device.
    :raises ValueError: on NaN or ``+inf`` entries, non-square input, or when no permutation
        avoids the ``-inf`` entries.

    Example::

        >>> matching(torch.tensor([[1.0, 5.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
        tensor([1, 0, 2])

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, section 2.
    """
    check_floating(scores, "scores")
    check_square(scores, "scores")
    n = scores.shape[-1]
    batch_shape = scores.shape[:-2]
    flat = scores.detach().to(device="cpu").reshape(-1, n, n).numpy()
    parallel = flat.shape[0] > 1 and flat.size >= PARALLEL_MIN_ENTRIES
    out, problem = _solve_batch(flat, torch.get_num_threads() if parallel else 1)
    if problem is not None and problem[1] == "invalid":
        check_scores(scores, "scores", allow_neg_inf=True)  # raises, naming NaN or +inf
        raise AssertionError("unreachable: scores hold NaN or +inf")
    if problem is not None:
        index = tuple(int(i) for i in np.unravel_index(problem[0], tuple(batch_shape)))
        raise ValueError(
            f"scores{list(index) if index else ''} has no perfect matching that avoids its "
            f"-inf (forbidden) entries; allow at least one permutation with all-finite scores"
        )
    return torch.from_numpy(out).reshape(batch_shape + (n,)).to(scores.device)
