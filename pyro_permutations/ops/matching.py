"""The matching operator: the best permutation for a matrix of scores (linear assignment)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.optimize
import torch

from pyro_permutations.ops import _assignment_torch
from pyro_permutations.ops._validation import (
    broadcast_shapes,
    check_floating,
    check_matrix,
    check_scores,
    check_tensor,
)

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
#: Scores on these devices are solved there by the batched torch solver of
#: :mod:`pyro_permutations.ops._assignment_torch` (exact, as scipy's); elsewhere they go to
#: lapx or scipy on the CPU, which are faster there at every measured shape (``python -m
#: benchmarks --only peers_matching``).
TORCH_SOLVER_DEVICES = ("cuda",)
#: CPU matrices go to lapx's Jonker-Volgenant solver (``lap.lapjvr_batch``, lapx >= 0.11.1,
#: in float64: exact, as scipy's, and it reports infeasible ``-inf`` patterns) unless their
#: scores hold NaN or ``+inf`` or exceed ``2^MAX_COST_EXPONENT``, which go to scipy, as does
#: everything when this is ``False`` or lapx is not importable. Inside ``matching``, lapx
#: took 1.2x-4.1x less time than scipy at every measured shape, one thread: 1.2x for one
#: 3 x 3 or 10 x 10 matrix, 2x-2.9x for batches of 3 x 3 to 50 x 50, 2.7x-3.4x at N = 200
#: and 2000, 2.4x-4.1x rectangular (``python -m benchmarks --only matching``, back ends; those
#: times are of scipy's path with reduced costs: a few small matrices with finite scores now
#: skip both and go to scipy as they are, ``SCIPY_MAX_MATRICES``).
USE_LAPX = True

#: lapx's own threads are used only for matrices of at least this many entries: for small
#: ones they cost more than they save.
LAPX_THREADS_MIN_ENTRIES = 10_000
#: A few small matrices (at most this many, of at most ``SCIPY_MAX_ENTRIES`` entries in all)
#: go straight to scipy when their scores are finite and in range: each call costs it a few
#: microseconds, less than preparing lapx's costs (one 5 x 5 matrix: 35 against 42 us inside
#: ``matching``; the two are level at 8 x 10 x 10 and at 1 x 32 x 32).
SCIPY_MAX_MATRICES = 8
SCIPY_MAX_ENTRIES = 1024
#: Square batches of at most this many entries in all (``B * N * N``) get their lapx costs
#: from numpy, larger ones from torch. A torch call costs a few microseconds however small its
#: tensor, numpy's fewer; torch's reductions along rows are faster on large ones.
NUMPY_COSTS_MAX_ENTRIES = 4096

try:  # lapx installs the module ``lap``; the older ``lap`` package has no batch solver
    from lap import lapjvr_batch as _lapjvr_batch
except ImportError:
    _lapjvr_batch = None


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
    """Float64 costs ``(B, N, M)`` for minimising: ``-scores`` with each row's, then each
    column's, smallest entry subtracted; ``None`` if ``scores`` holds NaN or ``+inf``. When
    ``N != M`` nothing is subtracted (only the fully matched side could be, and it does not
    pay).

    Subtracting a constant from a row or a column adds the same amount to every permutation's
    total, so the minimisers are unchanged; starting from the zeros this creates, the
    shortest-augmenting-path solver finds its paths sooner (about 1.4x less CPU time for
    ``N = 50`` and ``N = 200``). Forbidden pairs (``-inf`` scores) stay ``+inf``. Scores beyond
    ``+-1e301`` (float64) are first scaled down (:func:`_scaled_down`), since the differences
    would overflow to ``+inf``, the mark of a forbidden pair.
    """
    cost = _scaled_down(np.negative(scores, dtype=np.float64))
    n, m = cost.shape[-2:]
    if n != m:
        # Rectangular: reducing the fully matched side does not speed the solver up (measured
        # at B, N, M = 10, 50, 80 and 1, 200, 300), so only NaN and +inf scores are looked for
        # (a sum is NaN or -inf exactly then; |entries| <= 2^1000 cannot overflow it).
        with np.errstate(invalid="ignore"):  # +inf + -inf is NaN, as wanted
            total = cost.sum(axis=(-2, -1))
        return None if (np.isnan(total).any() or np.isneginf(total).any()) else cost
    first = -1 if n <= m else -2  # the rows, unless only the columns are all matched
    low = cost.min(axis=first, keepdims=True)  # NaN propagates; a +inf score gives -inf
    if np.isnan(low).any() or np.isneginf(low).any():
        return None
    low[np.isposinf(low)] = 0.0  # a row with every pair forbidden: left for the solver
    cost -= low
    if n == m:
        low = cost.min(axis=-2, keepdims=True)
        low[np.isposinf(low)] = 0.0
        cost -= low
    return cost


def _solve(scores, start, stop, out):
    """Solve ``scores[start:stop]`` into ``out[start:stop]``. Returns ``None``, or the first
    problem: ``(start, "invalid")`` for NaN or ``+inf`` scores, ``(b, "infeasible")`` for a
    matrix ``b`` with no permutation avoiding its ``-inf`` entries."""
    chunk = scores[start:stop]
    n, m = chunk.shape[-2:]
    solve = scipy.optimize.linear_sum_assignment
    if (n != m or _few_small(chunk)) and _plain(chunk):
        # Finite and in range, rectangular or small: scipy maximises the scores as they are (it
        # negates them in C, faster than a copy here; rectangular ones gain nothing from a
        # reduction, small ones less than it costs).
        if n < m:  # every row matched: scipy's columns are the result
            out[start:stop] = [solve(x, maximize=True)[1] for x in chunk]
        else:
            for b, x in enumerate(chunk, start):
                _store(out, b, *solve(x, maximize=True))
        return None
    cost = _reduced_costs(chunk)
    if cost is None:
        return start, "invalid"
    for b, c in enumerate(cost, start):
        try:
            rows, cols = solve(c)
        except ValueError:
            return b, "infeasible"
        if n <= m:
            out[b] = cols
        else:
            _store(out, b, rows, cols)
    return None


def _few_small(scores):
    """``scores`` ``(B, N, M)`` are few small matrices, which scipy solves fastest."""
    batch, n, m = scores.shape
    return batch <= SCIPY_MAX_MATRICES and batch * n * m <= SCIPY_MAX_ENTRIES


def _plain(scores):
    """``scores`` (a numpy array) has only finite entries of magnitude at most
    ``2^MAX_COST_EXPONENT``: no NaN, no infinity, nothing to scale (two passes, no copy; a NaN
    fails both comparisons)."""
    limit = 2.0**MAX_COST_EXPONENT
    return scores.size > 0 and -limit <= float(scores.min()) and float(scores.max()) <= limit


def _store(out, b, rows, cols):
    """Write one solution ``(rows, cols)`` of scipy's into ``out[b]`` (``-1``: unmatched)."""
    if len(rows) == out.shape[-1]:
        out[b] = cols
    else:  # more rows than columns: the rows left over are unmatched
        out[b] = -1
        out[b, rows] = cols


def _lapx_costs(scores):
    """Float64 costs ``(B, N, M)`` (a numpy array) for lapx from the CPU ``scores`` tensor
    ``(B, N, M)``, or ``None`` when scipy's path must take them: NaN or ``+inf`` scores (its
    errors name them), finite ones beyond ``+-2^MAX_COST_EXPONENT`` (it scales them down), or
    a square matrix with a row of ``-inf`` only (it names the matrix with no matching), or no
    entries at all.

    Square: ``C_ij = max_k X_ik - X_ij``, the row reduction (every row is matched, so it shifts
    every total alike); from these zeros lapx finds its paths sooner, 1.3x-1.9x faster at
    ``N = 50`` to ``2000``. Rectangular: ``C = -X`` (reducing gains nothing there). Forbidden
    pairs (``-inf`` scores) are ``+inf`` costs, which lapx avoids, and it raises when no
    matching avoids them. Three passes over the scores (torch's reductions along short rows are
    faster than numpy's, numpy's whole-array minimum and maximum faster than torch's);
    ``-inf`` entries cost one or two more.
    """
    n, m = scores.shape[-2:]
    if scores.numel() == 0:  # nothing to solve: scipy's path gives the empty result
        return None
    limit = 2.0**MAX_COST_EXPONENT
    if n != m:
        x = scores.numpy()
        low, high = float(x.min()), float(x.max())  # NaN propagates
        if not high <= limit:  # NaN, +inf, or too large
            return None
        if not low >= -limit:  # -inf (forbidden pairs), or NaN, or too large
            finite = torch.isfinite(scores)
            if not bool((finite | torch.isneginf(scores)).all()):
                return None
            if torch.where(finite, scores, 0).amin().item() < -limit:
                return None
        return np.negative(x, dtype=np.float64, order="C")  # +inf at forbidden pairs
    if scores.numel() <= NUMPY_COSTS_MAX_ENTRIES:
        return _row_reduced_numpy(scores.numpy())
    cost = scores.to(torch.float64, memory_format=torch.contiguous_format, copy=True)
    top = cost.amax(-1, keepdim=True)  # NaN and +inf propagate; -inf for a forbidden row
    low, high = (v.item() for v in torch.aminmax(top))
    if not (-limit <= low and high <= limit):  # NaN fails every comparison
        return None
    torch.sub(top, cost, out=cost)  # in [0, 2^1001], or +inf at forbidden pairs
    if cost.max().item() <= 2 * limit:
        return cost.numpy()
    # +inf costs: forbidden pairs, or finite scores below -2^1000 whose differences
    # overflowed (their rows' maxima are finite, so NaN and +inf scores are ruled out).
    low = torch.where(torch.isfinite(scores), scores, 0).amin()
    return cost.numpy() if low.item() >= -limit else None


def _row_reduced_numpy(x):
    """:func:`_lapx_costs` of square scores ``x`` (a float32 or float64 numpy array) in numpy:
    the same float64 costs ``max_k x_ik - x_ij`` (exact: the difference of two float32s or of
    two float64s within ``+-2^1000`` is computed in float64 and rounded once, as torch's), or
    ``None`` in the same cases."""
    limit = 2.0**MAX_COST_EXPONENT
    top = x.max(-1, keepdims=True)  # NaN and +inf propagate; -inf for a forbidden row
    if not (-limit <= float(top.min()) and float(top.max()) <= limit):  # NaN fails both
        return None
    cost = np.subtract(top, x, dtype=np.float64, order="C")  # +inf at forbidden pairs
    if float(cost.max()) <= 2 * limit:
        return cost
    return cost if float(np.where(np.isfinite(x), x, 0).min()) >= -limit else None


def _solve_lapx(cost, workers):
    """Partial permutations ``(B, N)`` (``-1``: unmatched) minimising ``cost`` ``(B, N, M)``
    (from :func:`_lapx_costs`) by lapx on ``workers`` threads; ``None`` when lapx finds some
    matrix without a matching of ``min(N, M)`` allowed pairs (scipy's path then names it)."""
    batch, n, m = cost.shape
    if batch == 0 or min(n, m) == 0:
        return np.full((batch, n), -1, dtype=np.int64)
    threads = workers if n * m >= LAPX_THREADS_MIN_ENTRIES else 1
    try:
        rows, cols = _lapjvr_batch(
            cost, extend_cost=n != m, return_cost=False, n_threads=threads, precision="float64"
        )
    except ValueError:  # infeasible, or (not within 2^1001) its reduced costs overflow
        return None
    # min(N, M) pairs per matrix, rows in increasing order: for N <= M the columns are the
    # result (one concatenation, much faster than stacking B small arrays).
    cols = np.concatenate(cols).reshape(batch, -1)
    if n <= m:
        return cols
    out = np.full((batch, n), -1, dtype=np.int64)
    out[np.arange(batch)[:, None], np.concatenate(rows).reshape(batch, -1)] = cols
    return out


def _solve_batch(scores, workers):
    """Permutations ``(B, N)`` maximising each of ``scores`` ``(B, N, M)`` (a numpy array),
    in ``workers`` contiguous chunks on threads, and the first problem met (see ``_solve``)."""
    batch, n = scores.shape[0], scores.shape[-2]
    workers = max(1, min(workers, batch))
    out = np.empty((batch, n), dtype=np.int64)
    if workers == 1:
        return out, _solve(scores, 0, batch, out)
    bounds = np.linspace(0, batch, workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        problems = pool.map(lambda a, b: _solve(scores, a, b, out), bounds[:-1], bounds[1:])
        problems = [p for p in problems if p is not None]
    # NaN or +inf anywhere is reported before any infeasible matrix, as without threads.
    return out, min(problems, key=lambda p: (p[1] != "invalid", p[0]), default=None)


def _unmatched_scores(x, name, size, scores, scores_name):
    """``x`` (a number or a tensor of shape ``(..., size)`` or ``(..., 1)``) as a finite tensor
    of at least one dimension with ``scores``' dtype and device (a number is made in that
    dtype, so that a float64 problem keeps every digit of it)."""
    if not isinstance(x, torch.Tensor):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise TypeError(f"{name} must be a number or a floating tensor, got {type(x).__name__}")
        x = torch.tensor(float(x), dtype=scores.dtype, device=scores.device)
    check_tensor(x, name)
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    x = x.to(dtype=scores.dtype, device=scores.device)
    x = x.reshape(1) if x.dim() == 0 else x
    if x.shape[-1] not in (1, size):
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not fit {scores_name} {tuple(scores.shape)}: "
            f"give one score per {'row' if name.endswith('rows') else 'column'} ({size}, the "
            f"last dimension) or a number for all"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name} must be finite (NaN, +inf and -inf are not allowed); to keep an item "
            f"matched whenever possible give it a very low finite unmatched score"
        )
    return x


def check_unmatched(scores, unmatched_rows, unmatched_cols, name="scores"):
    """Both unmatched scores or neither: ``None`` or ``(u, v)`` as finite tensors of shapes
    ``batch + (N,)`` and ``batch + (M,)``, ``batch`` the broadcast of ``scores``' batch shape
    and theirs (``scores`` is then to be expanded to it, :func:`broadcast_unmatched`)."""
    if unmatched_rows is None and unmatched_cols is None:
        return None
    if unmatched_rows is None or unmatched_cols is None:
        raise ValueError(
            "give both unmatched_rows and unmatched_cols (or neither): a row or a column may "
            "go unmatched only at a score; use a number (e.g. 0.0) for the same score for all"
        )
    n, m = scores.shape[-2:]
    u = _unmatched_scores(unmatched_rows, "unmatched_rows", n, scores, name)
    v = _unmatched_scores(unmatched_cols, "unmatched_cols", m, scores, name)
    batch = broadcast_shapes(
        "batch shapes",
        (name, scores.shape[:-2]),
        ("unmatched_rows", u.shape[:-1]),
        ("unmatched_cols", v.shape[:-1]),
    )
    return u.expand(batch + (n,)), v.expand(batch + (m,))


def broadcast_unmatched(scores, unmatched_rows, unmatched_cols, name="scores"):
    """``(scores, unmatched)``: :func:`check_unmatched`'s ``unmatched``, and ``scores``
    expanded to its batch shape (unchanged without unmatched scores)."""
    unmatched = check_unmatched(scores, unmatched_rows, unmatched_cols, name)
    if unmatched is not None:
        scores = scores.expand(unmatched[0].shape[:-1] + scores.shape[-2:])
    return scores, unmatched


def matching(scores, *, unmatched_rows=None, unmatched_cols=None):
    """Matching operator of [GS] section 2: the permutation that maximises the total score.

    .. math::

        M(X) = \\arg\\max_{P \\in \\mathcal{P}_N} \\langle P, X \\rangle_F
             = \\arg\\max_{\\mathrm{perm}} \\sum_{i=0}^{N-1} X_{i, \\mathrm{perm}(i)}

    This is the linear assignment problem, solved exactly for each matrix in the batch. On
    CPU it goes to lapx's Jonker-Volgenant solver (``lap.lapjvr_batch``, in float64) after a
    row reduction of the costs (which leaves the solution unchanged and speeds the solver up);
    scores with NaN, ``+inf`` or entries beyond ``+-2^1000`` (and everything when lapx is not
    importable) go to :func:`scipy.optimize.linear_sum_assignment`, which names the problem
    or, for huge scores, solves them scaled down. A large batch runs on
    ``torch.get_num_threads()`` threads (lapx's own; scipy's solver releases the GIL). CUDA
    tensors are solved on the device, with no copy to the CPU, by a batched
    shortest-augmenting-path solver written in torch (as exact as scipy's; see
    :mod:`pyro_permutations.ops._assignment_torch`).
    Convention: ``perm[..., i] = j`` means row ``i`` goes to column ``j``, i.e.
    ``P[..., i, perm[i]] = 1``.
    It is the zero-temperature limit of the Sinkhorn operator, ``M(X) = lim S(X / tau)``, and
    rounds a soft (e.g. doubly stochastic) matrix to a permutation. Ties are broken by the
    solver (deterministically); with continuous random scores they have probability zero.

    ``-inf`` entries mark forbidden pairs; they are avoided whenever some permutation avoids
    all of them. The result is not differentiable: gradients are not tracked.

    **Partial matchings** (the partial-permutation convention of
    :mod:`pyro_permutations.ops.partial`: ``perm[i] = j``, or ``-1`` when row ``i`` is
    unmatched). Rectangular scores ``(..., N, M)``: every item of the smaller side is matched,

    .. math::

        \\max_{\\mathrm{perm}} \\sum_{i : \\mathrm{perm}(i) \\neq -1} X_{i, \\mathrm{perm}(i)}
        \\quad \\text{over injective partial maps matching } \\min(N, M) \\text{ pairs},

    so for ``N <= M`` every ``perm[i]`` is a column and for ``N > M`` exactly ``N - M`` rows get
    ``-1``. With unmatched scores ``u`` (per row) and ``v`` (per column) any item may go
    unmatched ("Hungarian with dummy rows"):

    .. math::

        \\max_{\\mathrm{perm}} \\sum_{\\text{matched } (i, j)} X_{ij}
        + \\sum_{\\text{unmatched rows } i} u_i + \\sum_{\\text{unmatched columns } j} v_j,

    solved as the ``N x (M + N)`` assignment problem ``[X - v^T | D]``, ``D`` diagonal with
    ``D_ii = u_i`` and ``-inf`` off the diagonal (row ``i`` either takes a column ``j``, at
    ``X_ij - v_j``, or its own dummy column; the ``v_j`` of every column are added back). It is
    the zero-temperature limit of :func:`~pyro_permutations.ops.log_sinkhorn` with the same
    unmatched scores.

    :param torch.Tensor scores: floating tensor of shape ``(..., N, M)`` (square unless
        unmatched scores or ``N != M``); finite (of any magnitude) or ``-inf``.
    :param unmatched_rows: scores ``(..., N)`` of leaving each row unmatched (a number for all),
        finite; give both or neither.
    :param unmatched_cols: scores ``(..., M)`` of leaving each column unmatched, finite.
    :returns: long tensor ``perm`` of shape ``(..., N)`` on ``scores``' device, a permutation
        when ``N == M`` and no unmatched scores are given, else a partial permutation.
    :raises ValueError: on NaN or ``+inf`` entries, or when no (partial) matching of the
        required size avoids the ``-inf`` entries; on unmatched scores that are not finite, do
        not broadcast, or come alone.

    Example::

        >>> matching(torch.tensor([[1.0, 5.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
        tensor([1, 0, 2])
        >>> matching(torch.tensor([[1.0, 5.0, 0.0], [4.0, 0.0, 0.0]]))
        tensor([1, 0])
        >>> matching(torch.tensor([[1.0, 5.0], [0.5, 0.0]]), unmatched_rows=2.0, unmatched_cols=0.0)
        tensor([ 1, -1])

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, section 2.
    """
    check_floating(scores, "scores")
    check_matrix(scores, "scores")
    scores, unmatched = broadcast_unmatched(scores, unmatched_rows, unmatched_cols)
    n, m = scores.shape[-2:]
    batch_shape = scores.shape[:-2]
    device = scores.device
    in_torch = device.type in TORCH_SOLVER_DEVICES  # no copy to the CPU
    flat = scores.detach()
    if not in_torch and device.type != "cpu":
        flat = flat.cpu()
    flat = flat.reshape(-1, n, m)
    if unmatched is not None:
        flat = _dummy_columns(
            flat, *(t.detach().to(flat.device).reshape(-1, t.shape[-1]) for t in unmatched)
        )
    if in_torch:
        out, problem = _assignment_torch.maximise_batch(flat)
    else:
        parallel = flat.shape[0] > 1 and flat.numel() >= PARALLEL_MIN_ENTRIES
        workers = torch.get_num_threads() if parallel else 1
        lapx = USE_LAPX and _lapjvr_batch is not None and not _few_small(flat)
        cost = _lapx_costs(flat) if lapx else None
        out = None if cost is None else _solve_lapx(cost, workers)
        problem = None
        if out is None:
            out, problem = _solve_batch(flat.numpy(), workers)
        if problem is None and unmatched is None:  # the common case, with the fewest torch calls
            out = torch.from_numpy(out.reshape(batch_shape + (n,)))
            return out if device.type == "cpu" else out.to(device)
        out = torch.from_numpy(out)
    if problem is not None and problem[1] == "invalid":
        check_scores(scores, "scores", allow_neg_inf=True, square=False)  # raises: NaN, +inf
        raise AssertionError("unreachable: scores hold NaN or +inf")
    if problem is not None:
        index = tuple(int(i) for i in np.unravel_index(problem[0], tuple(batch_shape)))
        raise ValueError(
            f"scores{list(index) if index else ''} has no {'perfect ' if n == m else ''}matching"
            f" of {min(n, m)} pairs that avoids its -inf (forbidden) entries; allow at least "
            f"one with all-finite scores"
        )
    if unmatched is not None:
        out = torch.where(out < m, out, -1)
    return out.reshape(batch_shape + (n,)).to(scores.device)


def _dummy_columns(x, u, v):
    """``[X - v^T | D]`` ``(B, N, M + N)``: ``D`` has ``u_i`` at ``(i, i)``, ``-inf`` elsewhere."""
    n = x.shape[-2]
    dummy = torch.full((x.shape[0], n, n), -torch.inf, dtype=torch.float64, device=x.device)
    dummy.diagonal(dim1=-2, dim2=-1).copy_(u)
    return torch.cat([x.double() - v.double().unsqueeze(-2), dummy], dim=-1)
