"""Distances between permutations.

Every function takes two integer tensors ``p`` and ``q`` of shape ``(..., n)`` (convention:
``p[i] = j`` means row ``i`` goes to column ``j``), broadcasts their leading dimensions and
returns one value per pair, shape ``(...)``. Distances are long tensors; :func:`kendall_tau` is
a floating-point tensor of the default dtype.
"""

import torch

from pyro_permutations.ops._validation import check_perm
from pyro_permutations.ops.permutations import _broadcast_batch, compose_perms, invert_perm

__all__ = [
    "cayley_distance",
    "footrule_distance",
    "hamming_distance",
    "kendall_distance",
    "kendall_tau",
]


def _check_pair(p, q):
    check_perm(p, "p")
    check_perm(q, "q")
    return _broadcast_batch(p.long(), q.long(), "p", "q")


def kendall_distance(p, q):
    """Kendall distance: the number of pairs of positions that ``p`` and ``q`` order differently.

    .. math:: d_K(p, q) = \\sum_{i < j} \\big[\\, (p_i - p_j)(q_i - q_j) < 0 \\,\\big]

    It is the number of adjacent transpositions turning one into the other, in
    ``[0, n(n-1)/2]``. Cost: ``O(n^2)`` time and memory per pair (one ``(n, n)`` comparison).

    :param torch.Tensor p: integer tensor of shape ``(..., n)``.
    :param torch.Tensor q: integer tensor of shape ``(..., n)``.
    :returns: long tensor of shape ``(...)``.

    Example::

        >>> kendall_distance(torch.tensor([0, 1, 2]), torch.tensor([2, 1, 0]))
        tensor(3)
        >>> kendall_distance(torch.tensor([0, 1, 2]), torch.tensor([1, 0, 2]))
        tensor(1)
    """
    p, q = _check_pair(p, q)
    n = p.shape[-1]
    p_less = p.unsqueeze(-1) < p.unsqueeze(-2)  # [i, j] = p_i < p_j
    q_less = q.unsqueeze(-1) < q.unsqueeze(-2)
    pairs = torch.ones(n, n, dtype=torch.bool, device=p.device).triu(diagonal=1)
    return ((p_less != q_less) & pairs).sum(dim=(-2, -1))


def footrule_distance(p, q):
    """Spearman footrule distance.

    .. math:: d_F(p, q) = \\sum_{i=0}^{n-1} |p_i - q_i|

    :param torch.Tensor p: integer tensor of shape ``(..., n)``.
    :param torch.Tensor q: integer tensor of shape ``(..., n)``.
    :returns: long tensor of shape ``(...)``.

    Example::

        >>> footrule_distance(torch.tensor([0, 1, 2]), torch.tensor([2, 1, 0]))
        tensor(4)
    """
    p, q = _check_pair(p, q)
    return (p - q).abs().sum(dim=-1)


def hamming_distance(p, q):
    """Hamming distance: the number of positions where ``p`` and ``q`` differ.

    .. math:: d_H(p, q) = \\sum_{i=0}^{n-1} [\\, p_i \\neq q_i \\,]

    :param torch.Tensor p: integer tensor of shape ``(..., n)``.
    :param torch.Tensor q: integer tensor of shape ``(..., n)``.
    :returns: long tensor of shape ``(...)``.

    Example::

        >>> hamming_distance(torch.tensor([0, 1, 2]), torch.tensor([2, 1, 0]))
        tensor(2)
    """
    p, q = _check_pair(p, q)
    return (p != q).sum(dim=-1)


def _num_cycles(perm):
    """Number of cycles of each permutation in a batch ``(..., n)``, by pointer doubling.

    After step ``k``, ``low[i]`` is the smallest item among the first ``2**k`` iterates
    ``i, perm(i), perm(perm(i)), ...`` and ``jump = perm^(2**k)``. Once ``2**k >= n`` every
    item's ``low`` is its cycle's minimum, and each cycle has exactly one item equal to its
    minimum. Cost ``O(n log n)`` per permutation.
    """
    n = perm.shape[-1]
    low = torch.arange(n, device=perm.device).expand_as(perm)
    jump = perm
    span = 1
    while span < n:
        low = torch.minimum(low, torch.gather(low, -1, jump))
        jump = torch.gather(jump, -1, jump)
        span *= 2
    return (low == torch.arange(n, device=perm.device)).sum(dim=-1)


def cayley_distance(p, q):
    """Cayley distance: the minimum number of transpositions (swaps of two entries) turning
    ``p`` into ``q``.

    .. math:: d_C(p, q) = n - \\mathrm{cycles}(p^{-1} q)

    where :math:`p^{-1} q` is ``compose_perms(invert_perm(p), q)`` (any ordering of the two
    factors is conjugate to it and has the same cycle count). Cycles are counted by pointer
    doubling: ``O(n log n)`` time per pair, vectorised over the batch.

    :param torch.Tensor p: integer tensor of shape ``(..., n)``.
    :param torch.Tensor q: integer tensor of shape ``(..., n)``.
    :returns: long tensor of shape ``(...)``.

    Example::

        >>> cayley_distance(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 3, 2]))
        tensor(2)
        >>> cayley_distance(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0]))
        tensor(3)
    """
    p, q = _check_pair(p, q)
    n = p.shape[-1]
    if p.numel() == 0:
        return torch.zeros(p.shape[:-1], dtype=torch.long, device=p.device)
    return n - _num_cycles(compose_perms(invert_perm(p), q))


def kendall_tau(p, q):
    """Kendall's rank correlation :math:`\\tau` between ``p`` and ``q`` (no ties).

    .. math:: \\tau(p, q) = 1 - \\frac{4 \\, d_K(p, q)}{n (n - 1)}

    with :math:`d_K` the :func:`kendall_distance`; it is ``1`` for ``p == q`` and ``-1`` when
    one is the reverse of the other. Equals ``scipy.stats.kendalltau(p, q).statistic``.

    :param torch.Tensor p: integer tensor of shape ``(..., n)`` with ``n >= 2``.
    :param torch.Tensor q: integer tensor of shape ``(..., n)``.
    :returns: tensor of shape ``(...)`` and the default floating dtype.

    Example::

        >>> kendall_tau(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 0, 2, 3]))
        tensor(0.6667)
    """
    p, q = _check_pair(p, q)
    n = p.shape[-1]
    if n < 2:
        raise ValueError(f"kendall_tau needs n >= 2 items, got p.shape={tuple(p.shape)}")
    # Exact integer numerator, then a single rounding in the division.
    pairs = n * (n - 1)
    numerator = pairs - 4 * kendall_distance(p, q)
    return numerator.to(torch.get_default_dtype()) / pairs
