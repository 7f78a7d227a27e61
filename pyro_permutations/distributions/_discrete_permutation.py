"""Shared machinery of distributions whose values are permutations ``(..., N)``."""

import math

import torch
from pyro.distributions import TorchDistribution

from pyro_permutations.constraints import permutation
from pyro_permutations.ops import all_permutations
from pyro_permutations.ops._validation import check_event_shape, check_expand

#: Largest ``N`` whose ``N!`` permutations ``enumerate_support`` lists (``8! = 40,320``).
MAX_ENUMERATE_SUPPORT_N = 8


class DiscretePermutationDistribution(TorchDistribution):
    """Base for distributions over permutations of ``N`` items: long values ``(..., N)``,
    ``perm[i] = j`` meaning row/item ``i`` goes to column/position ``j``.

    Provides ``support``, ``enumerate_support()`` (all ``N!`` permutations in lexicographic
    order, as :func:`~pyro_permutations.ops.all_permutations`, for Pyro's ``TraceEnum_ELBO``,
    which sums such a site out exactly) and ``log_prob_all()``. Subclasses set ``self.n``
    before calling ``super().__init__(batch_shape, validate_args=...)`` and implement
    ``log_prob``.

    Pyro's ``infer_discrete`` does not handle these sites: it supports only discrete sites
    without an event dimension, and a permutation has one (``(N,)``), so it raises
    ``ValueError: Invalid tensor shape`` (as it does for ``OneHotCategorical``). To find the
    posterior over permutations, use
    :func:`~pyro_permutations.infer.exact_posterior` when the other sites are observed, or
    ``log_prob_all()`` with the likelihood of each permutation.
    """

    support = permutation
    has_enumerate_support = True

    def __init__(self, batch_shape, n, validate_args=None):
        self.n = n
        super().__init__(torch.Size(batch_shape), torch.Size((n,)), validate_args=validate_args)

    def _check_value(self, value):
        """A value whose last dimension is not ``N`` raises a ``ValueError`` (a shape error,
        whatever ``validate_args``); with validation, a value outside the support raises too."""
        check_event_shape(value, self.event_shape, type(self).__name__)
        if self._validate_args:
            self._validate_sample(value)

    def _expanded_shape(self, batch_shape):
        """``batch_shape`` checked as a batch shape this distribution expands to."""
        return check_expand(type(self).__name__, self.batch_shape, batch_shape)

    def _device(self):
        for value in self.__dict__.values():
            if isinstance(value, torch.Tensor):
                return value.device
        return torch.device("cpu")

    def _split_support(self, value):
        """``(valid, safe)`` for values ``(..., N)`` (another last dimension raises a
        ``ValueError``): ``valid`` (shape ``(...)``) says whether each is a permutation of the
        ``N`` items, and ``safe`` (long, ``(..., N)``) is ``value`` with every other value
        (wrong dtype, repeated or out-of-range entries) replaced by the identity, so that
        ``log_prob`` can be computed on ``safe`` and set to ``-inf`` where not ``valid``."""
        check_event_shape(value, self.event_shape, type(self).__name__)
        identity = torch.arange(self.n, device=value.device)
        valid = self.support.check(value)
        return valid, torch.where(valid.unsqueeze(-1), value, identity).long()

    def _check_enumerable(self):
        if self.n > MAX_ENUMERATE_SUPPORT_N:
            raise ValueError(
                f"cannot enumerate the {self.n}! = {math.factorial(self.n):,} permutations of "
                f"N = {self.n} items (limit N <= {MAX_ENUMERATE_SUPPORT_N}); use sampling-based "
                f"inference (e.g. a relaxation as the guide) instead of enumeration"
            )

    def enumerate_support(self, expand=True):
        self._check_enumerable()
        values = all_permutations(self.n, device=self._device())
        values = values.reshape((values.shape[0],) + (1,) * len(self.batch_shape) + (self.n,))
        if expand:
            values = values.expand((values.shape[0],) + self.batch_shape + (self.n,))
        return values

    def log_prob_all(self):
        """``log p`` of every permutation, shape ``(N!,) + batch_shape``, aligned with
        ``all_permutations(N)``."""
        return self.log_prob(self.enumerate_support(expand=False))
