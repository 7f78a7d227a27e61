"""Gumbel-Matching over partial matchings: exact hard samples of the perturbed best match."""

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_permutations.constraints import PartialPermutation
from pyro_permutations.ops import matching, sample_gumbel
from pyro_permutations.ops._validation import check_event_shape, check_expand, check_scores
from pyro_permutations.ops.matching import check_unmatched
from pyro_permutations.ops.sinkhorn import check_feasible_scores

__all__ = ["PartialGumbelMatching"]


class PartialGumbelMatching(TorchDistribution):
    """Gumbel-Matching distribution over partial matchings, the ``tau -> 0`` limit of
    :class:`PartialGumbelSinkhorn`:

    .. math::

        \\mathrm{perm} = M(X + \\epsilon, u + \\epsilon_u, v + \\epsilon_v), \\qquad
        \\epsilon \\sim \\mathrm{Gumbel}(0, 1) \\text{ iid},

    with ``M`` the partial :func:`~pyro_permutations.ops.matching` (the matched scores plus
    the unmatched scores of the unmatched rows and columns, maximised), or the rectangular
    matching ``M(X + eps)`` without unmatched scores. Values are partial permutations
    ``(..., N)``: ``perm[i] = j``, or ``-1`` when row ``i`` is unmatched. As for
    :class:`GumbelMatching` the pmf has no closed form, so :meth:`log_prob` raises.

    :param torch.Tensor log_alpha: scores ``X`` ``(..., N, M)``; ``-inf`` entries forbidden.
        Without unmatched scores every item of the smaller side must be matched, so with
        ``validate_args`` a mask that leaves no such matching is refused here (``ValueError``).
    :param unmatched_rows: scores ``(..., N)`` of leaving each row unmatched (a number for all),
        finite; give both or neither.
    :param unmatched_cols: scores ``(..., M)`` of leaving each column unmatched.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import PartialGumbelMatching
        >>> d = PartialGumbelMatching(torch.randn(2, 3, 4), unmatched_rows=0.0, unmatched_cols=0.0)
        >>> d.sample((5,)).shape
        torch.Size([5, 2, 3])
    """

    arg_constraints = {"log_alpha": constraints.independent(constraints.real, 2)}
    has_rsample = False

    def __init__(self, log_alpha, *, unmatched_rows=None, unmatched_cols=None, validate_args=None):
        check_scores(log_alpha, "log_alpha", allow_neg_inf=True, square=False)
        unmatched = check_unmatched(log_alpha, unmatched_rows, unmatched_cols, "log_alpha")
        batch_shape = log_alpha.shape[:-2]
        if unmatched is not None:
            batch_shape = torch.broadcast_shapes(
                batch_shape, unmatched[0].shape[:-1], unmatched[1].shape[:-1]
            )
        n, m = log_alpha.shape[-2:]
        self.log_alpha = log_alpha.expand(batch_shape + (n, m))
        if unmatched is None:
            self.unmatched_rows = self.unmatched_cols = None
        else:
            self.unmatched_rows = unmatched[0].expand(batch_shape + (n,))
            self.unmatched_cols = unmatched[1].expand(batch_shape + (m,))
        super().__init__(batch_shape, torch.Size((n,)), validate_args=False)
        if validate_args is not None:
            self._validate_args = validate_args
        if self._validate_args:  # an infeasible mask of -inf pairs is reported here
            check_feasible_scores(log_alpha, has_unmatched=unmatched is not None)

    @property
    def support(self):
        """:class:`~pyro_permutations.constraints.PartialPermutation` into ``M`` columns,
        complete (exactly ``min(N, M)`` rows matched) without unmatched scores."""
        return PartialPermutation(
            num_cols=self.log_alpha.shape[-1], complete=self.unmatched_rows is None
        )

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PartialGumbelMatching, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        n, m = self.log_alpha.shape[-2:]
        new.log_alpha = self.log_alpha.expand(batch_shape + (n, m))
        if self.unmatched_rows is None:
            new.unmatched_rows = new.unmatched_cols = None
        else:
            new.unmatched_rows = self.unmatched_rows.expand(batch_shape + (n,))
            new.unmatched_cols = self.unmatched_cols.expand(batch_shape + (m,))
        super(PartialGumbelMatching, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, log_alpha, unmatched_rows=(), unmatched_cols=(), validate_args=()):
        """``(batch_shape, event_shape)`` for arguments of the given shapes."""
        batch = torch.broadcast_shapes(
            torch.Size(log_alpha[:-2]),
            torch.Size(unmatched_rows[:-1]),
            torch.Size(unmatched_cols[:-1]),
        )
        return batch, torch.Size(log_alpha[-2:-1])

    def _perturbed(self, sample_shape):
        def noisy(x):
            shape = torch.Size(sample_shape) + x.shape
            return x + sample_gumbel(shape, dtype=x.dtype, device=x.device)

        if self.unmatched_rows is None:
            return noisy(self.log_alpha), {}
        return noisy(self.log_alpha), {
            "unmatched_rows": noisy(self.unmatched_rows),
            "unmatched_cols": noisy(self.unmatched_cols),
        }

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            scores, unmatched = self._perturbed(sample_shape)
            return matching(scores, **unmatched)

    @property
    def mode(self):
        """The best partial matching under the unperturbed scores."""
        if self.unmatched_rows is None:
            return matching(self.log_alpha)
        return matching(
            self.log_alpha, unmatched_rows=self.unmatched_rows, unmatched_cols=self.unmatched_cols
        )

    def rsample(self, sample_shape=torch.Size()):
        raise NotImplementedError(
            "PartialGumbelMatching has no reparameterized sample (a matching is piecewise "
            "constant in the scores); use PartialGumbelSinkhorn(...).rsample() for a "
            "differentiable relaxation"
        )

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        raise NotImplementedError(
            "PartialGumbelMatching has no closed-form pmf; estimate it from samples, or use "
            "UniformPartialMatching for a prior with an exact pmf"
        )
