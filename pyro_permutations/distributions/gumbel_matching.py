"""The Gumbel-Matching distribution: exact hard samples ``M(X + eps)``."""

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_permutations.constraints import permutation
from pyro_permutations.ops import matching, sample_gumbel
from pyro_permutations.ops._validation import check_event_shape, check_expand, check_scores
from pyro_permutations.ops.sinkhorn import check_feasible_scores

__all__ = ["GumbelMatching"]


class GumbelMatching(TorchDistribution):
    """Gumbel-Matching distribution over permutations [GS].

    .. math::

        \\mathrm{perm} = M(X + \\epsilon), \\quad \\epsilon_{ij} \\sim \\mathrm{Gumbel}(0, 1)
        \\text{ iid}, \\qquad M(Y) = \\arg\\max_{P} \\langle P, Y \\rangle_F,

    the permutation analogue of the Gumbel-max trick, and the ``tau -> 0`` limit of
    :class:`GumbelSinkhorn`. Samples are long permutations ``(..., N)`` with the convention
    ``perm[i] = j``: row ``i`` goes to column ``j``. Unlike the categorical Gumbel-max trick,
    the probabilities of ``M(X + eps)`` are not proportional to ``exp <P, X>`` and have no
    closed form, so :meth:`log_prob` raises; estimate the pmf from samples instead.

    :param torch.Tensor log_alpha: scores ``X`` of shape ``(..., N, N)``; ``-inf`` entries are
        forbidden pairs. With ``validate_args`` a mask that no permutation avoids is refused
        here (``ValueError``), not at the first sample.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import GumbelMatching
        >>> d = GumbelMatching(torch.randn(2, 5, 5))
        >>> d.sample((3,)).shape
        torch.Size([3, 2, 5])
        >>> d.mode.shape
        torch.Size([2, 5])

    References:

    [GS] Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn
    Networks. ICLR 2018, section 2.
    """

    arg_constraints = {"log_alpha": constraints.independent(constraints.real, 2)}
    support = permutation
    has_rsample = False

    def __init__(self, log_alpha, validate_args=None):
        check_scores(log_alpha, "log_alpha", allow_neg_inf=True)
        self.log_alpha = log_alpha
        n = log_alpha.shape[-1]
        # log_alpha is checked above (torch's check of an independent constraint fails on an
        # empty batch), so torch's own check is skipped.
        super().__init__(log_alpha.shape[:-2], torch.Size((n,)), validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:  # an infeasible mask of -inf pairs is reported here
            check_feasible_scores(log_alpha)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelMatching, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        n = self.event_shape[0]
        new.log_alpha = self.log_alpha.expand(batch_shape + (n, n))
        super(GumbelMatching, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, log_alpha, validate_args=()):
        """``(batch_shape, event_shape)`` for scores ``log_alpha`` of the given shape."""
        return torch.Size(log_alpha[:-2]), torch.Size(log_alpha[-1:])

    def sample(self, sample_shape=torch.Size()):
        n = self.event_shape[0]
        shape = torch.Size(sample_shape) + self.batch_shape + (n, n)
        with torch.no_grad():
            eps = sample_gumbel(shape, dtype=self.log_alpha.dtype, device=self.log_alpha.device)
            return matching(self.log_alpha + eps)

    @property
    def mode(self):
        """The most likely permutation under the scores, ``M(log_alpha)``."""
        return matching(self.log_alpha)

    def rsample(self, sample_shape=torch.Size()):
        raise NotImplementedError(
            "GumbelMatching has no reparameterized sample: M(X + eps) is piecewise constant in "
            "X, so its gradient is zero almost everywhere. Use sample() for hard permutations, "
            "GumbelSinkhorn(log_alpha, temperature).rsample() for a differentiable relaxation, "
            "or GumbelSinkhornStraightThrough for hard samples with relaxed gradients."
        )

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        raise NotImplementedError(
            "GumbelMatching has no closed-form pmf: P(M(X + eps) = perm) is not proportional "
            "to exp(<P, X>) and sums over a polytope's normal cone. Estimate it from samples "
            "(GumbelMatching(...).sample((S,))), or use a distribution with an exact pmf "
            "(e.g. GumbelSinkhorn's score density for inference)."
        )
