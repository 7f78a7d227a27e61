"""Constraints for permutation-valued and Birkhoff-valued variables.

Each is its own class so that transforms can be registered for it with
``torch.distributions.biject_to`` / ``transform_to`` (see :mod:`pyro_permutations.transforms`).
Convention: ``perm[..., i] = j`` means row ``i`` goes to column ``j``, ``P[..., i, perm[i]] = 1``.
"""

import torch
from torch.distributions.constraints import Constraint

__all__ = [
    "Birkhoff",
    "ColumnStochastic",
    "PartialBirkhoff",
    "PartialPermutation",
    "PartialPermutationMatrix",
    "Permutation",
    "PermutationMatrix",
    "birkhoff",
    "column_stochastic",
    "partial_birkhoff",
    "partial_permutation",
    "partial_permutation_matrix",
    "permutation",
    "permutation_matrix",
]


class Birkhoff(Constraint):
    """The Birkhoff polytope: ``(..., N, N)`` non-negative matrices whose rows and columns sum
    to one (doubly stochastic), checked to within ``atol``.

    The tolerance allows for solvers that stop on a marginal error (``sinkhorn``'s default is
    ``1e-5``) and for float32 rounding.
    """

    event_dim = 2

    def __init__(self, atol=1e-4):
        self.atol = atol
        super().__init__()

    def check(self, value):
        if value.dim() < 2 or value.shape[-1] != value.shape[-2]:
            return torch.zeros(value.shape[:-2], dtype=torch.bool, device=value.device)
        nonneg = (value >= -self.atol).all(-1).all(-1)
        rows = ((value.sum(-1) - 1).abs() <= self.atol).all(-1)
        cols = ((value.sum(-2) - 1).abs() <= self.atol).all(-1)
        return nonneg & rows & cols

    def __repr__(self):
        return f"{type(self).__name__}(atol={self.atol})"


class ColumnStochastic(Constraint):
    """Column-stochastic matrices: ``(..., M, N)`` non-negative matrices whose columns sum to
    one, checked to within ``atol``; the rows are free. It contains the Birkhoff polytope.

    It is the support of a fixed number of Sinkhorn sweeps (``log_sinkhorn(..., n_iters=L)``
    with ``L >= 1``), which end on a column normalisation, so that only the columns sum
    exactly to one (e.g. ``GumbelSinkhorn(..., n_iters=L)``).
    """

    event_dim = 2

    def __init__(self, atol=1e-4):
        self.atol = atol
        super().__init__()

    def check(self, value):
        if value.dim() < 2:
            return torch.zeros(value.shape[:-2], dtype=torch.bool, device=value.device)
        nonneg = (value >= -self.atol).all(-1).all(-1)
        cols = ((value.sum(-2) - 1).abs() <= self.atol).all(-1)
        return nonneg & cols

    def __repr__(self):
        return f"{type(self).__name__}(atol={self.atol})"


class Permutation(Constraint):
    """Permutations as integer index vectors ``(..., N)``: each of ``0..N-1`` exactly once."""

    is_discrete = True
    event_dim = 1

    def check(self, value):
        if value.dtype.is_floating_point or value.dim() < 1:
            return torch.zeros(value.shape[:-1], dtype=torch.bool, device=value.device)
        n = value.shape[-1]
        expected = torch.arange(n, device=value.device, dtype=value.dtype)
        return (value.sort(dim=-1).values == expected).all(-1)

    def __repr__(self):
        return f"{type(self).__name__}()"


class PermutationMatrix(Constraint):
    """Permutation matrices ``(..., N, N)``: 0/1 entries, one 1 in each row and column."""

    is_discrete = True
    event_dim = 2

    def check(self, value):
        if value.dim() < 2 or value.shape[-1] != value.shape[-2]:
            return torch.zeros(value.shape[:-2], dtype=torch.bool, device=value.device)
        binary = ((value == 0) | (value == 1)).all(-1).all(-1)
        rows = (value.sum(-1) == 1).all(-1)
        cols = (value.sum(-2) == 1).all(-1)
        return binary & rows & cols

    def __repr__(self):
        return f"{type(self).__name__}()"


class PartialBirkhoff(Constraint):
    """Doubly substochastic matrices ``(..., N, M)``: non-negative, every row and column sums
    to at most one (checked to within ``atol``). They are the convex hull of the partial
    permutation matrices (Mirsky 1959), as the Birkhoff polytope is of the permutation
    matrices: the support of soft partial matchings (``log_sinkhorn`` with rectangular scores
    or, in its real block, with unmatched scores).

    :param float atol: the tolerance of the checks.
    :param bool complete: also every row (``N <= M``) or every column (``N >= M``) of the
        smaller side sums to one: the hull of the matchings of ``min(N, M)`` pairs, the
        support of ``log_sinkhorn`` of rectangular scores without unmatched scores.
    """

    event_dim = 2

    def __init__(self, atol=1e-4, complete=False):
        self.atol = atol
        self.complete = bool(complete)
        super().__init__()

    def check(self, value):
        if value.dim() < 2:
            return torch.zeros(value.shape[:-2], dtype=torch.bool, device=value.device)
        nonneg = (value >= -self.atol).all(-1).all(-1)
        row_sums, col_sums = value.sum(-1), value.sum(-2)
        ok = nonneg & (row_sums <= 1 + self.atol).all(-1) & (col_sums <= 1 + self.atol).all(-1)
        if self.complete:
            n, m = value.shape[-2:]
            for sums, smaller in ((row_sums, n <= m), (col_sums, n >= m)):
                if smaller:
                    ok = ok & (sums >= 1 - self.atol).all(-1)
        return ok

    def __repr__(self):
        return f"{type(self).__name__}(atol={self.atol}, complete={self.complete})"


class PartialPermutation(Constraint):
    """Partial permutations as integer vectors ``(..., N)``: each entry ``-1`` (row unmatched)
    or a column index, no column twice (:mod:`pyro_permutations.ops.partial`).

    :param int num_cols: the number of columns ``M`` (entries must be below it); ``None``
        accepts any non-negative column index.
    :param bool complete: also exactly ``min(N, M)`` rows are matched (every item of the
        smaller side), as in :func:`~pyro_permutations.ops.matching` of rectangular scores
        without unmatched scores; needs ``num_cols``.
    """

    is_discrete = True
    event_dim = 1

    def __init__(self, num_cols=None, complete=False):
        if complete and num_cols is None:
            raise ValueError("PartialPermutation(complete=True) needs num_cols, the number M")
        self.num_cols = num_cols
        self.complete = bool(complete)
        super().__init__()

    def check(self, value):
        if value.dtype.is_floating_point or value.dtype == torch.bool or value.dim() < 1:
            return torch.zeros(value.shape[:-1], dtype=torch.bool, device=value.device)
        in_range = (value >= -1).all(-1)
        if self.num_cols is not None:
            in_range = in_range & (value < self.num_cols).all(-1)
        ordered = value.sort(dim=-1).values
        repeated = ((ordered[..., 1:] == ordered[..., :-1]) & (ordered[..., 1:] >= 0)).any(-1)
        ok = in_range & ~repeated
        if self.complete:
            ok = ok & ((value >= 0).sum(-1) == min(value.shape[-1], self.num_cols))
        return ok

    def __repr__(self):
        return f"{type(self).__name__}(num_cols={self.num_cols}, complete={self.complete})"


class PartialPermutationMatrix(Constraint):
    """Partial permutation matrices ``(..., N, M)``: 0/1 entries, at most one 1 in each row and
    each column.

    :param bool complete: also exactly ``min(N, M)`` ones (every item of the smaller side
        matched).
    """

    is_discrete = True
    event_dim = 2

    def __init__(self, complete=False):
        self.complete = bool(complete)
        super().__init__()

    def check(self, value):
        if value.dim() < 2:
            return torch.zeros(value.shape[:-2], dtype=torch.bool, device=value.device)
        binary = ((value == 0) | (value == 1)).all(-1).all(-1)
        rows = (value.sum(-1) <= 1).all(-1)
        cols = (value.sum(-2) <= 1).all(-1)
        ok = binary & rows & cols
        if self.complete:
            ok = ok & (value.sum((-2, -1)) == min(value.shape[-2:]))
        return ok

    def __repr__(self):
        return f"{type(self).__name__}(complete={self.complete})"


birkhoff = Birkhoff()
column_stochastic = ColumnStochastic()
partial_birkhoff = PartialBirkhoff()
partial_permutation = PartialPermutation()
partial_permutation_matrix = PartialPermutationMatrix()
permutation = Permutation()
permutation_matrix = PermutationMatrix()
