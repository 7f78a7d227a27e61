"""The Plackett-Luce distribution: rankings built by successive softmax choices."""

import math

import torch
from torch.distributions import constraints

from pyro_permutations.distributions._discrete_permutation import DiscretePermutationDistribution
from pyro_permutations.ops import invert_perm, sample_gumbel
from pyro_permutations.ops._validation import check_floating
from pyro_permutations.ops.permutations import _broadcast_batch

__all__ = ["PlackettLuce"]


def _check_logits(logits):
    check_floating(logits, "logits")
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(
            f"logits must have shape (..., N) with N >= 1 (one score per item), "
            f"got shape {tuple(logits.shape)}"
        )
    if not torch.isfinite(logits).all():
        raise ValueError(
            "logits contains NaN or +-inf; Plackett-Luce scores must be finite (a very "
            "unlikely item needs a large negative, finite score)"
        )


class PlackettLuce(DiscretePermutationDistribution):
    """Plackett-Luce distribution over rankings of ``N`` items [P, L].

    A ranking is built position by position: the item placed first is drawn with probability
    ``softmax(logits)``, the next one from the softmax of the remaining items' logits, and so on.
    With ``order[k]`` the item placed at position ``k``,

    .. math::

        p(\\mathrm{perm}) = \\prod_{k=0}^{N-1}
            \\frac{\\exp(s_{\\mathrm{order}_k})}{\\sum_{m=k}^{N-1} \\exp(s_{\\mathrm{order}_m})},
        \\qquad \\mathrm{order} = \\mathrm{perm}^{-1},

    where ``s = logits``; adding a constant to all logits leaves it unchanged.

    **Values.** As everywhere in this library, a value is a long tensor ``perm`` of shape
    ``(..., N)`` with ``perm[i] = j`` meaning *item i is placed at position j* (position 0 is
    the first chosen), so ``perm_to_matrix(perm)`` has ``P[i, perm[i]] = 1``: rows are items,
    columns positions. Other libraries (e.g. TFP's ``PlackettLuce``) return the *ordering*
    instead, the items listed from first to last; it is the inverse,
    ``order = invert_perm(perm)``, ``order[k]`` the item at position ``k``.

    **Sampling** uses the Gumbel trick [Y]: with ``G_i ~ Gumbel(0, 1)`` iid, sorting
    ``logits + G`` in decreasing order gives an ordering distributed as above, and ``perm``
    is its inverse. :meth:`log_prob` is exact, ``O(N)`` per value, and broadcasts values
    ``(..., N)`` against the batch shape (as for Pyro's enumeration over
    :meth:`enumerate_support`); they must be on the logits' device. Values that are not
    permutations get ``-inf`` (or raise with ``validate_args``). :attr:`mode` ranks the items
    by decreasing logit (ties go to the lower index). Samples are discrete: there is no
    ``rsample``.

    :param torch.Tensor logits: scores ``s`` of shape ``(..., N)``, floating point and finite;
        leading dimensions are the batch shape.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions.plackett_luce import PlackettLuce
        >>> d = PlackettLuce(torch.tensor([0.0, 1.0, 5.0]))
        >>> d.mode  # item 2 first, then item 1, then item 0
        tensor([2, 1, 0])
        >>> d.sample((4, 2)).shape
        torch.Size([4, 2, 3])
        >>> p = d.log_prob(d.enumerate_support()).exp()
        >>> bool(torch.isclose(p.sum(), torch.tensor(1.0)))
        True

    References:

    [P] Plackett. The analysis of permutations. J. R. Stat. Soc. C (Applied Statistics) 24(2),
    1975.
    [L] Luce. Individual Choice Behavior: A Theoretical Analysis. Wiley, 1959.
    [Y] Yellott. The relationship between Luce's choice axiom, Thurstone's theory of
    comparative judgment, and the double exponential distribution. J. Math. Psych. 15, 1977.
    """

    arg_constraints = {"logits": constraints.independent(constraints.real, 1)}
    has_rsample = False

    def __init__(self, logits, validate_args=None):
        _check_logits(logits)
        self.logits = logits
        # logits are checked above (torch's check of an independent constraint fails on an
        # empty batch), so torch's own check is skipped.
        super().__init__(logits.shape[:-1], logits.shape[-1], validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PlackettLuce, _instance)
        batch_shape = self._expanded_shape(batch_shape)
        new.logits = self.logits.expand(batch_shape + (self.n,))
        super(PlackettLuce, new).__init__(batch_shape, self.n, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, logits, validate_args=()):
        """``(batch_shape, event_shape)`` for ``logits`` of the given shape ``(..., N)``."""
        return torch.Size(logits[:-1]), torch.Size(logits[-1:])

    def sample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            g = sample_gumbel(shape, dtype=self.logits.dtype, device=self.logits.device)
            order = torch.argsort(self.logits + g, dim=-1, descending=True)
            return invert_perm(order)

    @property
    def mode(self):
        """The most likely ranking: items by decreasing logit (ties to the lower index)."""
        order = torch.argsort(self.logits.detach(), dim=-1, descending=True, stable=True)
        return invert_perm(order)

    def log_prob(self, value):
        self._check_value(value)
        valid, perm = self._split_support(value)
        perm, logits = _broadcast_batch(perm, self.logits, "value", "logits")
        s = logits.gather(-1, invert_perm(perm))  # s[k] = logits[order[k]]
        # log sum_{m >= k} exp(s[m]): a reversed cumulative logsumexp.
        tail = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
        return (s - tail).sum(-1).masked_fill(~valid, -math.inf)
