"""Permutation utilities: matrices, inverses, composition, enumeration and ranks.

Convention, used everywhere in pyro-permutations: a permutation of ``n`` items is an integer
tensor ``perm`` of shape ``(..., n)`` where ``perm[..., i] = j`` means *row i goes to column j*.
Its permutation matrix is

.. math::

    P_{i, \\mathrm{perm}(i)} = 1, \\qquad P_{ij} = 0 \\text{ otherwise},

so ``(P @ x)[i] = x[perm[i]]`` and ``P.T`` is the matrix of the inverse permutation.

All functions are batched over any leading dimensions and keep the input's device.
"""

import functools
import math

import torch

from pyro_permutations.ops._validation import (
    MAX_ENUMERATE_N,
    broadcast_shapes,
    check_enumerable,
    check_perm,
    check_size,
    check_square,
    check_tensor,
    is_int,
)

__all__ = [
    "all_permutations",
    "compose_perms",
    "invert_perm",
    "matrix_to_perm",
    "perm_to_matrix",
    "perm_to_rank",
    "rank_to_perm",
]

#: Largest ``n`` whose ranks ``0 .. n! - 1`` fit in int64 (``20! < 2**63 <= 21!``).
MAX_RANK_N = 20

_MATRIX_ATOL = 1e-6


def perm_to_matrix(perm, dtype=None):
    """Permutation matrices of a batch of permutations.

    .. math:: P_{ij} = [\\, j = \\mathrm{perm}(i) \\,]

    :param torch.Tensor perm: integer tensor of shape ``(..., n)``, each last-axis slice a
        permutation of ``0 .. n-1`` (``perm[i] = j``: row ``i`` goes to column ``j``).
    :param torch.dtype dtype: dtype of the result; defaults to ``torch.get_default_dtype()``
        at call time.
    :returns: tensor of shape ``(..., n, n)`` with ``P[..., i, perm[..., i]] = 1``.

    Example::

        >>> perm_to_matrix(torch.tensor([2, 0, 1]))
        tensor([[0., 0., 1.],
                [1., 0., 0.],
                [0., 1., 0.]])
    """
    check_perm(perm, "perm")
    if dtype is None:
        dtype = torch.get_default_dtype()
    n = perm.shape[-1]
    matrix = torch.zeros(perm.shape + (n,), dtype=dtype, device=perm.device)
    return matrix.scatter_(-1, perm.long().unsqueeze(-1), 1)


def matrix_to_perm(P):
    """Permutations of a batch of exact permutation matrices (inverse of :func:`perm_to_matrix`).

    .. math:: \\mathrm{perm}(i) = \\arg\\max_j P_{ij}

    Every entry must be within ``1e-6`` of the permutation matrix this gives. To round a soft
    (e.g. doubly stochastic) matrix to its nearest permutation use
    :func:`~pyro_permutations.ops.matching.matching` instead.

    :param torch.Tensor P: tensor of shape ``(..., n, n)``.
    :returns: long tensor of shape ``(..., n)`` on ``P``'s device.
    :raises ValueError: if ``P`` is not (within tolerance) a batch of permutation matrices.

    Example::

        >>> matrix_to_perm(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
        tensor([1, 0])
    """
    check_square(P, "P")
    if P.dtype == torch.bool:
        P = P.to(torch.get_default_dtype())
    if P.dtype.is_complex:
        raise ValueError(f"P must be a real tensor, got dtype {P.dtype}")
    n = P.shape[-1]
    perm = P.argmax(dim=-1)
    is_perm = bool((perm.sort(dim=-1).values == torch.arange(n, device=P.device)).all())
    rebuilt = torch.zeros(P.shape, dtype=P.dtype, device=P.device)
    rebuilt.scatter_(-1, perm.unsqueeze(-1), 1)
    # NaN compares False, so a NaN entry also fails this check.
    close = bool(((P - rebuilt).abs() <= _MATRIX_ATOL).all())
    if not (is_perm and close):
        raise ValueError(
            f"P must be a batch of exact permutation matrices (0/1 entries within "
            f"{_MATRIX_ATOL:g}, one 1 per row and per column); to round a soft matrix to its "
            f"nearest permutation call matching(P) from pyro_permutations.ops.matching"
        )
    return perm


def invert_perm(perm):
    """Inverse permutations: ``invert_perm(perm)[perm[i]] = i``.

    The matrix of the inverse is the transpose, ``perm_to_matrix(invert_perm(perm)) ==
    perm_to_matrix(perm).transpose(-1, -2)``.

    :param torch.Tensor perm: integer tensor of shape ``(..., n)``.
    :returns: tensor of the same shape and dtype.

    Example::

        >>> invert_perm(torch.tensor([2, 0, 1]))
        tensor([1, 2, 0])
    """
    check_perm(perm, "perm")
    n = perm.shape[-1]
    index = perm.long()
    values = torch.arange(n, dtype=perm.dtype, device=perm.device).expand_as(perm)
    return torch.empty_like(perm).scatter_(-1, index, values)


def _broadcast_batch(p, q, p_name, q_name):
    """Broadcast two ``(..., n)`` tensors to a common shape, or raise a ValueError."""
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"{p_name} and {q_name} must permute the same number of items, got last dimensions "
            f"{p.shape[-1]} ({p_name}.shape={tuple(p.shape)}) and {q.shape[-1]} "
            f"({q_name}.shape={tuple(q.shape)})"
        )
    batch = broadcast_shapes("batch shapes", (p_name, p.shape[:-1]), (q_name, q.shape[:-1]))
    if p.device != q.device:
        raise ValueError(f"{p_name} is on {p.device} but {q_name} is on {q.device}")
    shape = batch + (p.shape[-1],)
    return p.expand(shape), q.expand(shape)


def compose_perms(p, q):
    """Composition *first p, then q*: ``compose_perms(p, q)[i] = q[p[i]]``.

    Row ``i`` goes to column ``p[i]``, which then goes to ``q[p[i]]``. In matrices this is the
    product in the same order,

    .. math:: \\mathrm{perm}(P Q) = \\mathrm{compose\\_perms}(p, q), \\qquad
              (PQ)_{ik} = \\sum_j P_{ij} Q_{jk} = [\\, k = q(p(i)) \\,],

    (as functions, ``q o p``). Leading dimensions broadcast.

    :param torch.Tensor p: integer tensor of shape ``(..., n)``, applied first.
    :param torch.Tensor q: integer tensor of shape ``(..., n)``, applied second.
    :returns: long tensor of the broadcast shape ``(..., n)``.

    Example::

        >>> p, q = torch.tensor([1, 2, 0]), torch.tensor([0, 2, 1])
        >>> compose_perms(p, q)
        tensor([2, 1, 0])
        >>> compose_perms(p, invert_perm(p))
        tensor([0, 1, 2])
    """
    check_perm(p, "p")
    check_perm(q, "q")
    p, q = _broadcast_batch(p.long(), q.long(), "p", "q")
    return torch.gather(q, -1, p)


@functools.lru_cache(maxsize=MAX_ENUMERATE_N)
def _all_permutations_cpu(n):
    if n == 1:
        return torch.zeros(1, 1, dtype=torch.long)
    # Lexicographic order: block f holds the permutations starting with f; its tails are the
    # (n-1)-permutations, in lexicographic order, relabelled onto {0..n-1} \ {f}.
    tails = _all_permutations_cpu(n - 1)
    first = torch.arange(n).repeat_interleave(tails.shape[0])
    tails = tails.repeat(n, 1)
    tails += tails >= first.unsqueeze(-1)
    return torch.cat([first.unsqueeze(-1), tails], dim=-1)


def all_permutations(n, device=None):
    """All ``n!`` permutations of ``0 .. n-1`` in lexicographic order.

    Row ``r`` is the permutation of rank ``r`` (see :func:`perm_to_rank`). The CPU table is
    cached per ``n``; every call returns a fresh tensor that may be modified freely.

    :param int n: number of items (a Python or NumPy integer), ``1 <= n <= MAX_ENUMERATE_N``
        (10).
    :param device: device of the result (default CPU).
    :returns: long tensor of shape ``(n!, n)``.
    :raises ValueError: if ``n`` is not a positive int or exceeds ``MAX_ENUMERATE_N``.

    Example::

        >>> all_permutations(3)
        tensor([[0, 1, 2],
                [0, 2, 1],
                [1, 0, 2],
                [1, 2, 0],
                [2, 0, 1],
                [2, 1, 0]])
    """
    n = check_enumerable(n, "n")
    table = _all_permutations_cpu(n)
    result = table.to(device) if device is not None else table
    if result.data_ptr() == table.data_ptr():
        result = result.clone()
    return result


def _factorials(n, device):
    """``[(n-1)!, (n-2)!, ..., 0!]`` as a long tensor."""
    return torch.tensor(
        [math.factorial(n - 1 - i) for i in range(n)], dtype=torch.long, device=device
    )


def _check_rank_n(n, name="n"):
    """``n`` is a positive integer (Python or NumPy, not a bool) up to ``MAX_RANK_N``;
    returns ``int(n)``."""
    n = check_size(n, name, "the number of items")
    if n > MAX_RANK_N:
        raise ValueError(
            f"{name}={n} is too large: ranks of permutations of more than {MAX_RANK_N} items "
            f"overflow int64"
        )
    return n


def perm_to_rank(perm):
    """Lexicographic rank of each permutation (its row index in :func:`all_permutations`).

    With the Lehmer code :math:`L_i = \\#\\{j > i : \\mathrm{perm}(j) < \\mathrm{perm}(i)\\}`,

    .. math:: \\mathrm{rank}(\\mathrm{perm}) = \\sum_{i=0}^{n-1} L_i \\, (n - 1 - i)!

    Cost: ``O(n^2)`` per permutation, vectorised over the batch.

    :param torch.Tensor perm: integer tensor of shape ``(..., n)`` with ``n <= 20``.
    :returns: long tensor of shape ``(...)`` with values in ``[0, n!)``.

    Example::

        >>> perm_to_rank(torch.tensor([[0, 1, 2], [1, 2, 0], [2, 1, 0]]))
        tensor([0, 3, 5])
    """
    check_perm(perm, "perm")
    n = perm.shape[-1]
    _check_rank_n(n, "perm.shape[-1]")
    perm = perm.long()
    later = torch.ones(n, n, dtype=torch.bool, device=perm.device).triu(diagonal=1)
    smaller_later = (perm.unsqueeze(-1) > perm.unsqueeze(-2)) & later
    lehmer = smaller_later.sum(dim=-1)
    return (lehmer * _factorials(n, perm.device)).sum(dim=-1)


def rank_to_perm(rank, n):
    """Permutation of ``n`` items with the given lexicographic rank (inverse of
    :func:`perm_to_rank`).

    The Lehmer digits are :math:`L_i = \\lfloor \\mathrm{rank} / (n-1-i)! \\rfloor \\bmod (n-i)`;
    ``perm(i)`` is the :math:`L_i`-th smallest item not used by ``perm(0), ..., perm(i-1)``.
    Cost: ``O(n^2)`` per rank, vectorised over the batch.

    :param rank: int (Python or NumPy) or integer tensor of shape ``(...)`` with values in
        ``[0, n!)``.
    :param int n: number of items (a Python or NumPy integer), ``1 <= n <= 20``.
    :returns: long tensor of shape ``(..., n)`` on ``rank``'s device.
    :raises ValueError: if a rank is out of range.

    Example::

        >>> rank_to_perm(torch.tensor([0, 3, 5]), 3)
        tensor([[0, 1, 2],
                [1, 2, 0],
                [2, 1, 0]])
    """
    n = _check_rank_n(n, "n")
    if is_int(rank):
        rank = torch.tensor(int(rank), dtype=torch.long)
    check_tensor(rank, "rank")
    if rank.dtype.is_floating_point or rank.dtype.is_complex or rank.dtype == torch.bool:
        raise ValueError(f"rank must be an integer tensor, got dtype {rank.dtype}")
    rank = rank.long()
    n_fact = math.factorial(n)
    if rank.numel() and ((rank < 0).any() or (rank >= n_fact).any()):
        raise ValueError(
            f"rank must lie in [0, n!) = [0, {n_fact}) for n={n}, got values in "
            f"[{rank.min().item()}, {rank.max().item()}]"
        )
    radices = torch.arange(n, 0, -1, device=rank.device)  # n - i
    lehmer = torch.div(rank.unsqueeze(-1), _factorials(n, rank.device), rounding_mode="floor")
    lehmer = lehmer % radices
    # Pick the lehmer[i]-th smallest unused item, position by position (a loop over n, not over
    # the batch): the unused item with exactly lehmer[i] unused items below it.
    unused = torch.ones(rank.shape + (n,), dtype=torch.bool, device=rank.device)
    perm = torch.empty(rank.shape + (n,), dtype=torch.long, device=rank.device)
    for i in range(n):
        below = unused.long().cumsum(dim=-1) - 1
        chosen = unused & (below == lehmer[..., i : i + 1])
        item = chosen.long().argmax(dim=-1)
        perm[..., i] = item
        unused.scatter_(-1, item.unsqueeze(-1), False)
    return perm
