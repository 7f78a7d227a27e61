"""The Mallows distribution: permutations concentrated around a centre permutation."""

import functools
import math

import torch
from torch.distributions import constraints

from pyro_permutations.distributions._discrete_permutation import (
    MAX_ENUMERATE_SUPPORT_N,
    DiscretePermutationDistribution,
)
from pyro_permutations.ops import (
    all_permutations,
    cayley_distance,
    footrule_distance,
    hamming_distance,
    kendall_distance,
)
from pyro_permutations.ops._validation import (
    MAX_ENUMERATE_N,
    broadcast_shapes,
    check_number_or_tensor,
    check_perm,
)
from pyro_permutations.ops.permutations import _broadcast_batch

__all__ = ["Mallows"]

_DISTANCES = {
    "kendall": kendall_distance,
    "footrule": footrule_distance,
    "hamming": hamming_distance,
    "cayley": cayley_distance,
}

#: Below this value of ``j * theta`` the Kendall normaliser uses its Taylor series, so that it
#: and its gradient are exact at ``theta = 0``.
_KENDALL_SERIES_BELOW = 1e-3


def _neg_theta_times(theta, d):
    """``-theta * d`` with ``0`` where ``d == 0`` (no NaN from ``inf * 0`` at ``theta = inf``)."""
    return torch.where(d == 0, torch.zeros_like(theta), -theta * d)


def _kendall_log_normalizer(theta, n):
    """``sum_{j=1}^{n} log((1 - e^{-j theta}) / (1 - e^{-theta}))``, shape ``theta.shape``."""
    j = torch.arange(1, n + 1, dtype=theta.dtype, device=theta.device)
    t = theta.unsqueeze(-1)
    x = j * t
    small = x < _KENDALL_SERIES_BELOW
    # Exact form where j * theta is not small; "safe" arguments keep the unused branch finite.
    t_safe = torch.where(small, torch.ones_like(t), t)
    exact = torch.log(-torch.expm1(-j * t_safe)) - torch.log(-torch.expm1(-t_safe))
    # log j - (j - 1) theta / 2 + (j^2 - 1) theta^2 / 24 + O(j^4 theta^4).
    series = torch.log(j) - (j - 1) * t / 2 + (j * j - 1) * t * t / 24
    return torch.where(small, series, exact).sum(-1)


def _cayley_log_normalizer(theta, n):
    """``sum_{j=1}^{n-1} log(1 + j e^{-theta})``."""
    j = torch.arange(1, n, dtype=theta.dtype, device=theta.device)
    return torch.log1p(j * torch.exp(-theta).unsqueeze(-1)).sum(-1)


@functools.cache
def _hamming_log_counts(n):
    """``log(C(n, k) D_k)`` for ``k = 0..n``: permutations with exactly ``k`` non-fixed points.

    Exact integers first (``D_0 = 1, D_1 = 0, D_k = (k - 1)(D_{k-1} + D_{k-2})``), one rounding.
    """
    derangements = [1, 0]
    for k in range(2, n + 1):
        derangements.append((k - 1) * (derangements[-1] + derangements[-2]))
    counts = [math.comb(n, k) * derangements[k] for k in range(n + 1)]
    logs = [math.log(c) if c > 0 else -math.inf for c in counts]
    return torch.tensor(logs, dtype=torch.float64)


@functools.lru_cache(maxsize=MAX_ENUMERATE_N)
def _footrule_log_counts(n):
    """``log`` of the number of permutations at footrule distance ``d = 0, 1, ..., n^2 // 2``
    from the identity, by enumerating all ``n!`` permutations (``n <= MAX_ENUMERATE_N``).

    Odd distances never occur (their count is zero, ``log = -inf``).
    """
    perms = all_permutations(n)
    identity = torch.arange(n)
    counts = torch.zeros(n * n // 2 + 1, dtype=torch.long)
    # Chunks keep the temporary small for n = 9, 10.
    for chunk in perms.split(1 << 16):
        d = (chunk - identity).abs().sum(-1)
        counts += torch.bincount(d, minlength=counts.shape[0])
    return torch.log(counts.double())


def _log_normalizer_from_counts(theta, log_counts):
    log_counts = log_counts.to(dtype=theta.dtype, device=theta.device)
    d = torch.arange(log_counts.shape[0], dtype=theta.dtype, device=theta.device)
    return torch.logsumexp(log_counts + _neg_theta_times(theta.unsqueeze(-1), d), dim=-1)


@functools.lru_cache(maxsize=4 * MAX_ENUMERATE_SUPPORT_N)
def _distances_from_identity(distance, n):
    """``d(sigma, identity)`` for every ``sigma`` of ``all_permutations(n)``, on CPU."""
    perms = all_permutations(n)
    return _DISTANCES[distance](perms, torch.arange(n))


class Mallows(DiscretePermutationDistribution):
    """Mallows distribution over permutations of ``N`` items [M, FV].

    .. math::

        p(\\pi) = \\frac{\\exp(-\\theta \\, d(\\pi, \\pi_0))}{Z(\\theta)}, \\qquad
        Z(\\theta) = \\sum_{\\sigma} \\exp(-\\theta \\, d(\\sigma, \\pi_0)),

    with centre :math:`\\pi_0` (``center``), dispersion :math:`\\theta \\ge 0` and ``d`` one of
    the distances of :mod:`pyro_permutations.ops` (which define them):

    - ``"kendall"`` (:func:`~pyro_permutations.ops.kendall_distance`, discordant pairs):
      :math:`\\log Z = \\sum_{j=1}^{N} \\log \\frac{1 - e^{-j\\theta}}{1 - e^{-\\theta}}`.
    - ``"cayley"`` (:func:`~pyro_permutations.ops.cayley_distance`, ``N`` minus the number of
      cycles): :math:`Z = \\prod_{j=1}^{N-1} (1 + j e^{-\\theta})`.
    - ``"hamming"`` (:func:`~pyro_permutations.ops.hamming_distance`, positions that differ):
      :math:`Z = \\sum_{k=0}^{N} \\binom{N}{k} D_k e^{-\\theta k}`, ``D_k`` the number of
      derangements of ``k`` items (computed exactly).
    - ``"footrule"`` (:func:`~pyro_permutations.ops.footrule_distance`, Spearman's footrule
      :math:`\\sum_i |\\pi_i - \\pi_{0,i}|`, the baseline of [BP]): no closed form; ``Z`` is
      computed by **enumeration** of the ``N!`` permutations (counts of each distance, cached
      per ``N``), so it needs ``N <= 10`` (``MAX_ENUMERATE_N``).

    Every ``Z`` is exact and does not depend on the centre: each distance is invariant under
    relabelling the items, ``d(\\pi \\circ s, \\pi_0 \\circ s) = d(\\pi, \\pi_0)``, so
    ``d(pi, center)`` has the law of ``d(sigma, identity)`` with
    ``pi = compose_perms(center, sigma)`` (``pi[i] = sigma[center[i]]``). At ``theta = 0``
    the distribution is uniform; as ``theta`` grows it concentrates on the centre.

    **Values** are long tensors ``(..., N)`` with the library's convention ``perm[i] = j``:
    item (row) ``i`` goes to position (column) ``j``. :meth:`log_prob` is exact and broadcasts
    values ``(..., N)`` against the batch shape (as Pyro's enumeration over
    :meth:`enumerate_support` needs); they must be on the centre's device. Values that are not
    permutations get ``-inf`` (or raise with ``validate_args``). :attr:`mode` is the centre
    (the unique mode when ``theta > 0``).

    **Sampling** is exact and batched, as ``sigma`` around the identity composed with the
    centre:

    - kendall: the Lehmer code ``L_i = #{j > i : sigma_j < sigma_i}`` (``sum_i L_i`` is the
      distance to the identity) has independent truncated-geometric digits,
      :math:`P(L_i = v) \\propto e^{-\\theta v}`, ``v = 0..N-1-i``, drawn by inverse CDF
      (repeated insertion [FV]); any ``N``.
    - cayley: items are inserted one at a time, item ``j`` opening a new cycle with probability
      :math:`1 / (1 + j e^{-\\theta})` or else following a uniformly chosen earlier item in its
      cycle (each such step adds one to the distance); any ``N``.
    - hamming: the number ``k`` of non-fixed points is drawn from its exact law
      :math:`\\propto \\binom{N}{k} D_k e^{-\\theta k}`, then a uniform set of ``k`` items and
      a uniform derangement of them (by rejection of uniform permutations, acceptance at
      least 1/3); any ``N``.
    - footrule: a categorical draw over all ``N!`` permutations, so ``N <= 8``.

    :param torch.Tensor center: long tensor of shape ``(..., N)`` holding permutations
        (the centre, also the mode).
    :param theta: dispersion ``theta >= 0``, a float or a floating tensor, moved to
        ``center``'s device (where samples and ``log_prob`` are computed); ``batch_shape`` is
        the broadcast of ``center.shape[:-1]`` and ``theta.shape``.
    :param str distance: ``"kendall"`` (default), ``"footrule"``, ``"hamming"`` or ``"cayley"``.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions.mallows import Mallows
        >>> d = Mallows(torch.tensor([2, 0, 1, 3]), torch.tensor([0.5, 2.0]))
        >>> d.batch_shape, d.event_shape
        (torch.Size([2]), torch.Size([4]))
        >>> d.sample((3,)).shape
        torch.Size([3, 2, 4])
        >>> d.mode
        tensor([[2, 0, 1, 3],
                [2, 0, 1, 3]])
        >>> d.log_prob(torch.tensor([2, 0, 1, 3])).exp()  # 1 / Z(theta)
        tensor([0.1435, 0.6604])
        >>> total = d.log_prob(d.enumerate_support()).logsumexp(0)
        >>> bool(torch.allclose(total, torch.zeros(2), atol=1e-6))
        True
        >>> f = Mallows(torch.tensor([1, 0, 2]), 1.0, distance="footrule")
        >>> f.log_prob(torch.tensor([0, 1, 2]))  # footrule distance 2
        tensor(-2.2819)

    References:

    [M] Mallows. Non-null ranking models. I. Biometrika 44(1/2), 1957.
    [FV] Fligner, Verducci. Distance based ranking models. J. R. Stat. Soc. B 48(3), 1986.
    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 5 (the footrule baseline).
    """

    arg_constraints = {"theta": constraints.nonnegative}
    has_rsample = False

    def __init__(self, center, theta, distance="kendall", validate_args=None):
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {sorted(_DISTANCES)}, got {distance!r}")
        check_perm(center, "center")
        n = center.shape[-1]
        if n == 0:
            raise ValueError("center must permute at least one item, got shape (..., 0)")
        if distance == "footrule" and n > MAX_ENUMERATE_N:
            raise ValueError(
                f"center has N = {n} items, but the footrule normaliser is computed by "
                f"enumerating all N! permutations (limit N <= {MAX_ENUMERATE_N}); use "
                f"distance='kendall', 'cayley' or 'hamming' (closed forms) for larger N"
            )
        check_number_or_tensor(theta, "theta", "the dispersion, theta >= 0")
        if not isinstance(theta, torch.Tensor):
            theta = torch.tensor(theta, dtype=torch.get_default_dtype(), device=center.device)
        else:  # theta joins the centre's device, where every distance is computed
            dtype = theta.dtype if theta.dtype.is_floating_point else torch.get_default_dtype()
            theta = theta.to(dtype=dtype, device=center.device)
        batch_shape = broadcast_shapes(
            "batch shapes", ("center", center.shape[:-1]), ("theta", theta.shape)
        )
        self.center = center.long().expand(batch_shape + (n,))
        self.theta = theta.expand(batch_shape)
        self.distance = distance
        super().__init__(batch_shape, n, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Mallows, _instance)
        batch_shape = self._expanded_shape(batch_shape)
        new.center = self.center.expand(batch_shape + (self.n,))
        new.theta = self.theta.expand(batch_shape)
        new.distance = self.distance
        super(Mallows, new).__init__(batch_shape, self.n, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, center, theta=(), distance=(), validate_args=()):
        """``(batch_shape, event_shape)`` for ``center`` and ``theta`` of the given shapes
        (``distance`` and ``validate_args`` do not change them)."""
        batch_shape = torch.broadcast_shapes(torch.Size(center[:-1]), torch.Size(theta))
        return batch_shape, torch.Size(center[-1:])

    @property
    def mode(self):
        """The centre: the most likely permutation (unique when ``theta > 0``; at
        ``theta = 0`` every permutation is a mode)."""
        return self.center

    @property
    def log_normalizer(self):
        """Exact ``log Z(theta)``, shape ``batch_shape``."""
        theta, n = self.theta, self.n
        if self.distance == "kendall":
            return _kendall_log_normalizer(theta, n)
        if self.distance == "cayley":
            return _cayley_log_normalizer(theta, n)
        if self.distance == "hamming":
            return _log_normalizer_from_counts(theta, _hamming_log_counts(n))
        return _log_normalizer_from_counts(theta, _footrule_log_counts(n))

    def log_prob(self, value):
        self._check_value(value)
        # Non-permutations are replaced by the identity for the distance, then get -inf.
        valid, safe = self._split_support(value)
        safe, center = _broadcast_batch(safe, self.center, "value", "center")
        d = _DISTANCES[self.distance](safe, center).to(self.theta.dtype)
        log_p = _neg_theta_times(self.theta, d) - self.log_normalizer
        return log_p.masked_fill(~valid, -math.inf)

    def sample(self, sample_shape=torch.Size()):
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            theta = self.theta.detach().expand(shape)
            if self.distance == "kendall":
                sigma = self._sample_kendall(theta)
            elif self.distance == "cayley":
                sigma = self._sample_cayley(theta)
            elif self.distance == "hamming":
                sigma = self._sample_hamming(theta)
            else:
                sigma = self._sample_by_enumeration(theta)
            # pi = compose_perms(center, sigma): pi[i] = sigma[center[i]].
            return torch.gather(sigma, -1, self.center.expand(shape + (self.n,)))

    def _sample_kendall(self, theta):
        """Lehmer digits ``L_i ~ P(v) ∝ e^{-theta v}`` on ``0..m-1``, ``m = N - i``, by inverse
        CDF ``v = ceil(-log(1 - U (1 - e^{-m theta})) / theta) - 1``; then decode."""
        n = self.n
        t = theta.double().unsqueeze(-1)
        m = torch.arange(n, 0, -1, dtype=torch.float64, device=t.device)
        u = torch.rand(theta.shape + (n,), dtype=torch.float64, device=t.device)
        positive = t > 0
        t_safe = torch.where(positive, t, torch.ones_like(t))
        x = -torch.log1p(u * torch.expm1(-m * t_safe)) / t_safe
        v = torch.where(positive, torch.ceil(x) - 1, torch.floor(u * m))
        lehmer = torch.minimum(v.clamp(min=0), m - 1).long()
        # sigma[i] is the lehmer[i]-th smallest item not yet used (a loop over N only).
        unused = torch.ones(theta.shape + (n,), dtype=torch.bool, device=t.device)
        sigma = torch.empty(theta.shape + (n,), dtype=torch.long, device=t.device)
        for i in range(n):
            below = unused.long().cumsum(-1) - 1
            item = (unused & (below == lehmer[..., i : i + 1])).long().argmax(-1)
            sigma[..., i] = item
            unused.scatter_(-1, item.unsqueeze(-1), False)
        return sigma

    def _sample_cayley(self, theta):
        """Sequential cycle construction (Chinese-restaurant style): item ``j`` starts a new
        cycle with probability ``1 / (1 + j q)``, ``q = e^{-theta}``, else is inserted after a
        uniform earlier item ``x`` (``x -> j -> sigma[x]``)."""
        n = self.n
        q = torch.exp(-theta.double())
        sigma = torch.arange(n, device=theta.device).expand(theta.shape + (n,)).clone()
        for j in range(1, n):
            p_join = j * q / (1 + j * q)
            join = torch.rand(theta.shape, dtype=torch.float64, device=theta.device) < p_join
            x = torch.randint(0, j, theta.shape + (1,), device=theta.device)
            after_x = sigma.gather(-1, x)
            sigma[..., j] = torch.where(join, after_x.squeeze(-1), j)
            sigma.scatter_(-1, x, torch.where(join.unsqueeze(-1), j, after_x))
        return sigma

    def _sample_hamming(self, theta):
        """Number ``k`` of moved items from its exact law, then a uniform ``k``-subset and a
        uniform derangement of it by rejection."""
        n = self.n
        dtype = theta.dtype
        log_counts = _hamming_log_counts(n).to(dtype=dtype, device=theta.device)
        k_values = torch.arange(n + 1, dtype=dtype, device=theta.device)
        logits = log_counts + _neg_theta_times(theta.unsqueeze(-1), k_values)
        k = torch.distributions.Categorical(logits=logits).sample().unsqueeze(-1)
        index = torch.arange(n, device=theta.device)
        sigma = index.expand(theta.shape + (n,)).clone()
        pending = torch.ones(theta.shape, dtype=torch.bool, device=theta.device)
        while pending.any():
            # Moved set: the k items with the smallest uniform keys.
            keys = torch.rand(theta.shape + (n,), device=theta.device)
            moved = keys.argsort(-1).argsort(-1) < k
            # sources: moved items in index order; targets: moved items in random order; the
            # fixed items follow in index order in both, so sigma[sources] = targets.
            sources = torch.where(moved, index, n + index).argsort(-1)
            shuffle = torch.rand(theta.shape + (n,), device=theta.device)
            targets = torch.argsort(torch.where(moved, shuffle, 2.0), dim=-1, stable=True)
            proposal = torch.empty_like(sigma).scatter_(-1, sources, targets)
            ok = ~(moved & (proposal == index)).any(-1)
            accept = pending & ok
            sigma = torch.where(accept.unsqueeze(-1), proposal, sigma)
            pending = pending & ~ok
        return sigma

    def _sample_by_enumeration(self, theta):
        if self.n > MAX_ENUMERATE_SUPPORT_N:
            raise ValueError(
                f"sampling Mallows with distance={self.distance!r} draws from all N! "
                f"permutations and needs N <= {MAX_ENUMERATE_SUPPORT_N}, got N = {self.n} "
                f"(center.shape[-1]); kendall, cayley and hamming sample any N"
            )
        d = _distances_from_identity(self.distance, self.n).to(theta.device, theta.dtype)
        logits = _neg_theta_times(theta.unsqueeze(-1), d)
        index = torch.distributions.Categorical(logits=logits).sample()
        return all_permutations(self.n, device=theta.device)[index]
