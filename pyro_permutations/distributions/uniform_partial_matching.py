"""A prior over partial matchings: each row matched with a probability, then uniformly."""

import math

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_permutations.constraints import PartialPermutation
from pyro_permutations.ops import all_partial_perms, num_partial_perms
from pyro_permutations.ops._validation import (
    broadcast_shapes,
    check_event_shape,
    check_expand,
    check_number_or_tensor,
    check_size,
    empty_log_prob,
)

__all__ = ["UniformPartialMatching"]

#: Largest number of partial matchings ``enumerate_support`` lists.
MAX_ENUMERATE_SUPPORT = 50_000


class UniformPartialMatching(TorchDistribution):
    """Uniform partial matchings of ``n`` rows into ``m`` columns, each row matched with
    probability ``match_prob``: the standard data-association prior (each object detected with
    probability ``p``, the detections assigned to distinct columns uniformly).

    Values are partial permutations (:mod:`pyro_permutations.ops.partial`): long tensors
    ``(..., n)`` with ``perm[i] = j`` when row ``i`` is matched to column ``j`` and ``-1`` when
    it is unmatched. With ``k`` the number of matched rows,

    .. math::

        p(\\mathrm{perm}) = \\frac{1}{Z} \\, p^k (1 - p)^{n - k} \\, \\frac{(m - k)!}{m!},
        \\qquad Z = \\sum_{k=0}^{\\min(n, m)} \\binom{n}{k} p^k (1 - p)^{n - k},

    i.e. the rows are matched independently with probability ``p`` (conditioned on at most
    ``m`` of them, so ``Z = 1`` when ``n <= m``), and given which rows are matched, every
    assignment of them to distinct columns is equally likely. Samples are exact: the number
    ``k`` from its (truncated binomial) law, the matched rows as a uniform ``k``-subset, their
    columns as the first ``k`` of a uniform permutation of the ``m`` columns.
    :meth:`enumerate_support` lists the ``num_partial_perms(n, m)`` values in the order of
    :func:`~pyro_permutations.ops.all_partial_perms` (at most 50,000), for exact enumeration.

    :param int n: number of rows (items that may be matched), ``>= 1``.
    :param int m: number of columns, ``>= 1``.
    :param match_prob: ``p`` in ``[0, 1]`` (below 1 when ``n > m``), a number or a floating
        tensor (its shape is the batch shape).

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import UniformPartialMatching
        >>> d = UniformPartialMatching(2, 3, torch.tensor(0.5))
        >>> d.log_prob(torch.tensor([2, -1])).exp()  # p (1 - p) / 3
        tensor(0.0833)
        >>> d.enumerate_support().shape
        torch.Size([13, 2])
        >>> round(float(d.log_prob(d.enumerate_support()).logsumexp(0).exp()), 5)  # sums to one
        1.0
    """

    arg_constraints = {"match_prob": constraints.unit_interval}
    has_enumerate_support = True
    has_rsample = False

    def __init__(self, n, m, match_prob, validate_args=None):
        self.n = check_size(n, "n", "the number of rows")
        self.m = check_size(m, "m", "the number of columns")
        check_number_or_tensor(match_prob, "match_prob", "a probability in [0, 1]")
        if not isinstance(match_prob, torch.Tensor):
            match_prob = torch.tensor(float(match_prob))
        if not match_prob.dtype.is_floating_point:
            raise TypeError(f"match_prob must be a floating tensor, got dtype {match_prob.dtype}")
        if not bool(((match_prob >= 0) & (match_prob <= 1)).all()):
            raise ValueError(
                "match_prob must lie in [0, 1] (the probability that a row is matched), got "
                + (
                    "NaN"
                    if bool(match_prob.isnan().any())
                    else f"values in [{match_prob.min().item()}, {match_prob.max().item()}]"
                )
            )
        if self.n > self.m and bool((match_prob == 1).any()):
            raise ValueError(
                f"match_prob = 1 matches all n = {self.n} rows, but there are only m = {self.m} "
                f"columns: give match_prob < 1 when n > m"
            )
        self.match_prob = match_prob
        super().__init__(match_prob.shape, torch.Size((self.n,)), validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args

    @property
    def support(self):
        """:class:`~pyro_permutations.constraints.PartialPermutation` into ``m`` columns."""
        return PartialPermutation(num_cols=self.m)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(UniformPartialMatching, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        new.n, new.m = self.n, self.m
        new.match_prob = self.match_prob.expand(batch_shape)
        super(UniformPartialMatching, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, n, m, match_prob=(), validate_args=()):
        """``(batch_shape, event_shape)``: ``n`` and ``m`` are passed as their values (ints: no
        tensor carries them), ``match_prob`` as its shape."""
        n = check_size(n, "n", "the number of rows, passed as an int")
        check_size(m, "m", "the number of columns, passed as an int")
        return torch.Size(match_prob), torch.Size((n,))

    def _log_weights(self, p=None):
        """``log C(n, k) + k log p + (n - k) log(1 - p)`` for ``k = 0 .. min(n, m)``, shape
        ``batch_shape + (min(n, m) + 1,)``, at ``p`` (default ``match_prob``)."""
        p = self.match_prob if p is None else p
        k = torch.arange(min(self.n, self.m) + 1, dtype=p.dtype, device=p.device)
        p = p.unsqueeze(-1)
        log_comb = torch.tensor(
            [math.lgamma(self.n + 1) - math.lgamma(j + 1) - math.lgamma(self.n - j + 1)
             for j in range(len(k))],
            dtype=k.dtype, device=k.device,
        )  # fmt: skip
        return log_comb + _xlogy(k, p) + _xlogy(self.n - k, 1 - p)

    def _log_z(self):
        """``log sum_{k <= min(n, m)} C(n, k) p^k (1 - p)^(n - k)``, shape ``batch_shape``,
        with its derivative at ``p = 0`` and ``1`` too: ``0`` when ``n <= m`` (the whole
        binomial) and at ``p = 0`` (where ``dz/dp = -n + n``), which a log-space sum would make
        NaN there (its vanishing terms have infinite log-derivatives)."""
        p = self.match_prob
        if self.n <= self.m:
            return torch.zeros_like(p)
        at_zero = p == 0
        safe = torch.where(at_zero, torch.full_like(p, 0.5), p)  # no NaN in the unused branch
        return torch.where(at_zero, torch.zeros_like(p), self._log_weights(safe).logsumexp(-1))

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        device = self.match_prob.device
        with torch.no_grad():
            logits = self._log_weights().expand(shape + (min(self.n, self.m) + 1,))
            k = torch.distributions.Categorical(logits=logits, validate_args=False).sample()
            row_rank = torch.rand(shape + (self.n,), device=device).argsort(-1).argsort(-1)
            cols = torch.rand(shape + (self.m,), device=device).argsort(-1)
            matched = row_rank < k.unsqueeze(-1)
            col = cols.gather(-1, row_rank.clamp(max=self.m - 1))
            return torch.where(matched, col, -1)

    def log_prob(self, value):
        if isinstance(value, torch.Tensor) and value.dtype.is_floating_point:
            raise ValueError(
                f"UniformPartialMatching's values are partial permutations (long tensors "
                f"(..., {self.n}), -1 for an unmatched row), got a {value.dtype} tensor of shape "
                f"{tuple(value.shape)}: a relaxed guide (PartialGumbelSinkhorn) cannot stand "
                f"in for this discrete site; give the model a relaxed site with the prior's "
                f"match-count terms as a pyro.factor (docs: the association tutorial), or a "
                f"discrete guide"
            )
        check_event_shape(value, self.event_shape, type(self).__name__)
        if self._validate_args:
            self._validate_sample(value)
        empty = empty_log_prob(value, self.event_shape, self.batch_shape, self.match_prob.dtype)
        if empty is not None:
            return empty
        broadcast_shapes(
            "batch shapes", ("value", value.shape[:-1]), ("batch_shape", self.batch_shape)
        )
        valid = self.support.check(value)
        k = (value >= 0).sum(-1).to(self.match_prob.dtype)
        p = self.match_prob
        # log (m - k)! / m!, for k <= m (larger k is invalid and masked).
        k_safe = k.clamp(max=self.m)
        log_falling = torch.lgamma(self.m + 1 - k_safe) - math.lgamma(self.m + 1)
        log_p = _xlogy(k, p) + _xlogy(self.n - k, 1 - p) + log_falling - self._log_z()
        return log_p.masked_fill(~valid, -math.inf)

    def enumerate_support(self, expand=True):
        count = num_partial_perms(self.n, self.m)
        if count > MAX_ENUMERATE_SUPPORT:
            raise ValueError(
                f"cannot enumerate the {count:,} partial matchings of n = {self.n} rows into "
                f"m = {self.m} columns (limit {MAX_ENUMERATE_SUPPORT:,}); use sampling-based "
                f"inference instead of enumeration"
            )
        values = all_partial_perms(self.n, self.m, device=self.match_prob.device)
        values = values.reshape((count,) + (1,) * len(self.batch_shape) + (self.n,))
        if expand:
            values = values.expand((count,) + self.batch_shape + (self.n,))
        return values


def _xlogy(x, y):
    """``x log y`` with ``0 log 0 = 0``, whose gradient in ``y`` is 0 where ``x = 0`` (torch's
    ``xlogy`` gives ``0 / 0``, NaN, at ``y = 0``)."""
    x = torch.as_tensor(x, dtype=y.dtype, device=y.device)
    zero = x == 0
    return torch.where(
        zero, torch.zeros_like(y), x * torch.where(zero, torch.ones_like(y), y).log()
    )
