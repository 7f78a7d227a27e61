"""Partial permutations: matchings between a set of ``N`` rows and a set of ``M`` columns in
which an item may be left unmatched.

Convention, the one of the whole library extended by one value: a partial permutation is an
integer tensor ``perm`` of shape ``(..., N)`` where ``perm[..., i] = j`` means row ``i`` is
matched to column ``j`` (``0 <= j < M``) and ``perm[..., i] = -1`` means row ``i`` is
unmatched; no column appears twice. A column that no row names is unmatched. Its matrix is
the ``(..., N, M)`` 0/1 matrix

.. math::

    P_{i, \\mathrm{perm}(i)} = 1 \\text{ where } \\mathrm{perm}(i) \\neq -1, \\qquad
    P_{ij} = 0 \\text{ otherwise},

with at most one 1 in each row and each column (a permutation when ``N = M`` and nothing is
unmatched). :func:`~pyro_permutations.ops.matching` returns partial permutations for
rectangular scores or with unmatched scores, and
:func:`~pyro_permutations.ops.log_sinkhorn` gives their entropic relaxation.
"""

import functools
import math

import torch

from pyro_permutations.ops._validation import check_matrix, check_size, check_tensor

__all__ = [
    "all_partial_perms",
    "check_partial_perm",
    "matrix_to_partial_perm",
    "num_partial_perms",
    "partial_perm_to_matrix",
]

#: Largest number of partial permutations :func:`all_partial_perms` lists (``N = M = 7`` has
#: 130,922).
MAX_ENUMERATE = 1_000_000

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8)


def check_partial_perm(perm, name, num_cols=None):
    """``perm`` ``(..., N)`` is a batch of partial permutations: an integer tensor whose
    entries are ``-1`` or distinct columns ``0 .. num_cols - 1`` (any non-negative index when
    ``num_cols`` is None). A ``ValueError`` (``TypeError`` for a non-tensor) naming ``name``
    otherwise."""
    check_tensor(perm, name)
    if perm.dtype not in _INT_DTYPES:
        raise ValueError(
            f"{name} must be a signed integer (long) tensor of shape (..., N), got dtype "
            f"{perm.dtype}; a partial permutation holds -1 for an unmatched row"
        )
    if perm.dim() < 1:
        raise ValueError(f"{name} must have shape (..., N) with at least one dimension")
    if perm.numel() == 0:
        return
    high = "M - 1" if num_cols is None else str(num_cols - 1)
    if bool((perm < -1).any()) or (num_cols is not None and bool((perm >= num_cols).any())):
        bad = perm[(perm < -1) | (perm >= (num_cols if num_cols is not None else 2**62))]
        raise ValueError(
            f"{name} must hold -1 (unmatched) or a column index 0..{high}, got {bad[0].item()}; "
            f"convention perm[i] = j means row i is matched to column j"
        )
    ordered = perm.sort(dim=-1).values
    repeated = (ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] >= 0)
    if bool(repeated.any()):
        column = ordered[..., 1:][repeated][0].item()
        raise ValueError(
            f"{name} names column {column} for more than one row; a partial permutation matches "
            f"each column at most once (use -1 for an unmatched row)"
        )


def partial_perm_to_matrix(perm, num_cols, dtype=None):
    """The 0/1 matrices ``(..., N, M)`` of a batch of partial permutations.

    .. math:: P_{ij} = [\\, j = \\mathrm{perm}(i) \\,] \\quad (\\text{row } i \\text{ all zero
        where } \\mathrm{perm}(i) = -1)

    :param torch.Tensor perm: integer tensor ``(..., N)`` of ``-1`` (unmatched) or distinct
        columns.
    :param int num_cols: the number of columns ``M``.
    :param torch.dtype dtype: dtype of the result; defaults to ``torch.get_default_dtype()``.
    :returns: tensor of shape ``(..., N, M)``.
    :raises ValueError: if ``perm`` is not a batch of partial permutations into ``M`` columns.

    Example::

        >>> partial_perm_to_matrix(torch.tensor([2, -1]), 3)
        tensor([[0., 0., 1.],
                [0., 0., 0.]])
    """
    num_cols = check_size(num_cols, "num_cols", "the number of columns M")
    check_partial_perm(perm, "perm", num_cols)
    if dtype is None:
        dtype = torch.get_default_dtype()
    matched = perm >= 0
    index = torch.where(matched, perm, 0).long().unsqueeze(-1)
    matrix = torch.zeros(perm.shape + (num_cols,), dtype=dtype, device=perm.device)
    return matrix.scatter_(-1, index, matched.unsqueeze(-1).to(dtype))


def matrix_to_partial_perm(P):
    """Partial permutations of a batch of exact 0/1 matrices (inverse of
    :func:`partial_perm_to_matrix`): ``perm(i) = argmax_j P_ij`` where row ``i`` holds a 1,
    ``-1`` where it is all zero.

    Every entry must be within ``1e-6`` of 0 or 1, with at most one 1 per row and per column.
    To round a soft matrix (e.g. from :func:`~pyro_permutations.ops.log_sinkhorn` with
    unmatched scores) use :func:`~pyro_permutations.ops.matching` instead.

    :param torch.Tensor P: tensor of shape ``(..., N, M)``.
    :returns: long tensor of shape ``(..., N)`` on ``P``'s device.
    :raises ValueError: if ``P`` is not (within tolerance) such a batch.

    Example::

        >>> matrix_to_partial_perm(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
        tensor([ 2, -1])
    """
    check_matrix(P, "P")
    if P.dtype == torch.bool:
        P = P.to(torch.get_default_dtype())
    if P.dtype.is_complex:
        raise ValueError(f"P must be a real tensor, got dtype {P.dtype}")
    ones = (P - 1).abs() <= 1e-6
    zeros = P.abs() <= 1e-6  # NaN is neither
    valid = bool((ones | zeros).all()) and bool((ones.sum(-1) <= 1).all())
    valid = valid and bool((ones.sum(-2) <= 1).all())
    if not valid:
        raise ValueError(
            "P must be a batch of exact partial permutation matrices (0/1 entries within 1e-6, "
            "at most one 1 in each row and each column); to round a soft matrix call "
            "matching(scores, unmatched_rows=..., unmatched_cols=...)"
        )
    return torch.where(ones.any(-1), ones.long().argmax(-1), -1)


def num_partial_perms(n, m):
    """The number of partial permutations of ``n`` rows into ``m`` columns,
    ``sum_k C(n, k) C(m, k) k!``.

    Example::

        >>> num_partial_perms(2, 3)
        13
    """
    n = check_size(n, "n", "the number of rows")
    m = check_size(m, "m", "the number of columns")
    return sum(math.comb(n, k) * math.comb(m, k) * math.factorial(k) for k in range(min(n, m) + 1))


@functools.lru_cache(maxsize=16)
def _all_partial_perms_cpu(n, m):
    if n == 0:
        return torch.zeros(1, 0, dtype=torch.long)
    # Row 0 unmatched, or matched to column c: then the remaining rows use the other columns.
    rest = _all_partial_perms_cpu(n - 1, m)
    blocks = [torch.cat([torch.full((rest.shape[0], 1), -1), rest], dim=-1)]
    for c in range(m):
        tails = rest[(rest != c).all(-1)]
        blocks.append(torch.cat([torch.full((tails.shape[0], 1), c), tails], dim=-1))
    return torch.cat(blocks)


def all_partial_perms(n, m, device=None):
    """Every partial permutation of ``n`` rows into ``m`` columns, ``(K, n)`` with
    ``K = num_partial_perms(n, m)``: the one with every row unmatched first, then by the first
    row's value (``-1``, then columns in order), and so on. A fresh tensor on each call.

    :param int n: the number of rows.
    :param int m: the number of columns.
    :raises ValueError: if ``K`` exceeds ``MAX_ENUMERATE`` (1,000,000).

    Example::

        >>> all_partial_perms(2, 1)
        tensor([[-1, -1],
                [-1,  0],
                [ 0, -1]])
    """
    count = num_partial_perms(n, m)
    if count > MAX_ENUMERATE:
        raise ValueError(
            f"there are {count} partial permutations of {n} rows into {m} columns, more than "
            f"can be enumerated (limit {MAX_ENUMERATE}); use sampling-based estimates instead"
        )
    table = _all_partial_perms_cpu(int(n), int(m))
    return table.to(device) if device is not None else table.clone()
