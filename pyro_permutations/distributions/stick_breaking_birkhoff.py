"""A Gaussian pushed through stick-breaking onto the Birkhoff polytope."""

import torch
from pyro.distributions import Normal, TransformedDistribution
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from pyro_permutations.constraints import birkhoff
from pyro_permutations.distributions._transformed_normal import TransformedNormalMixin, shape_of
from pyro_permutations.ops._validation import (
    broadcast_shapes,
    check_event_shape,
    check_expand,
    check_finite,
    check_floating,
    empty_log_prob,
)
from pyro_permutations.transforms.stick_breaking import StickBreakingBirkhoffTransform

__all__ = ["StickBreakingBirkhoff"]


class StickBreakingBirkhoff(TransformedNormalMixin, TransformedDistribution):
    r"""Stick-breaking distribution on the Birkhoff polytope ([BP] section 3.1).

    An ``(N-1) x (N-1)`` Gaussian matrix ``Psi ~ Normal(loc, scale)`` (independent entries) is
    mapped onto the doubly-stochastic ``(N, N)`` matrices by
    :class:`~pyro_permutations.transforms.stick_breaking.StickBreakingBirkhoffTransform` at
    temperature ``tau``. The map is a bijection onto the interior of the polytope, so the
    density is exact: with ``Psi = Psi(X)`` the inverse stick-breaking and ``J`` the Jacobian
    of ``Psi -> X[:N-1, :N-1]``,

    .. math::

        q(X) = \frac{\mathcal{N}(\Psi(X); \mu, \nu^2)}{|J(\Psi(X))|},

    as a density with respect to Lebesgue measure on the ``(N-1)^2`` free entries
    ``X[..., :N-1, :N-1]`` (the last row and column are determined by them). Small ``tau``
    pushes mass towards the faces and vertices (permutation matrices); ``tau`` and ``scale``
    play overlapping roles. Rows index items and columns positions.

    The transform caches its last ``(Psi, X)`` pair, so ``log_prob`` of the latest ``rsample``
    uses the exact ``Psi``; any other ``X`` is inverted, which near a face of the polytope
    (``|Psi / tau|`` beyond about 15 in float64) loses digits of ``Psi``.

    :param torch.Tensor loc: ``mu``, floating, shape ``(..., N-1, N-1)``.
    :param scale: ``nu > 0``, a tensor broadcastable with ``loc`` or a float.
    :param temperature: ``tau > 0``, a float or a tensor broadcastable to the batch shape.
    :param bool validate_args: as for any torch distribution.
    :raises ValueError: if ``temperature`` is not positive and finite or ``loc`` is not finite
        (both always checked), ``loc`` is not a
        floating tensor, the shapes of ``loc``, ``scale`` and ``temperature`` do not broadcast,
        or (when validating) ``scale`` is not positive.

    Shapes: ``batch_shape`` is the broadcast of ``loc.shape[:-2]``, ``scale.shape[:-2]`` and
    the temperature's shape; ``event_shape`` is ``(N, N)``; ``rsample(sample_shape)`` has shape
    ``sample_shape + batch_shape + (N, N)``.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions.stick_breaking_birkhoff import (
        ...     StickBreakingBirkhoff,
        ... )
        >>> d = StickBreakingBirkhoff(torch.zeros(2, 3, 3), torch.ones(3, 3), temperature=0.5)
        >>> d.batch_shape, d.event_shape
        (torch.Size([2]), torch.Size([4, 4]))
        >>> x = d.rsample((5,))
        >>> x.shape
        torch.Size([5, 2, 4, 4])
        >>> bool(torch.allclose(x.sum(-2), torch.ones(5, 2, 4), atol=1e-5))
        True
        >>> d.log_prob(x).shape
        torch.Size([5, 2])

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.1.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = birkhoff
    has_rsample = True

    def __init__(self, loc, scale, temperature=1.0, validate_args=None):
        transform = StickBreakingBirkhoffTransform(temperature, cache_size=1)
        check_floating(loc, "loc")
        check_finite(loc, "loc")
        broadcast_shapes("shapes", ("loc", loc.shape), ("scale", shape_of(scale)))
        loc, scale = broadcast_all(loc, scale)
        if loc.dim() < 2 or loc.shape[-1] != loc.shape[-2]:
            raise ValueError(
                f"loc and scale must broadcast to shape (..., N-1, N-1), got {tuple(loc.shape)}"
            )
        batch_shape = broadcast_shapes(
            "batch shapes",
            ("loc and scale", loc.shape[:-2]),
            ("temperature", shape_of(temperature)),
        )
        base = Normal(loc, scale, validate_args=validate_args)
        base = base.expand(batch_shape + loc.shape[-2:]).to_event(2)
        super().__init__(base, transform, validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, loc, scale, temperature=(), validate_args=()):
        """``(batch_shape, event_shape)`` for arguments of the given shapes (``loc`` and
        ``scale`` of shape ``(..., N-1, N-1)``, ``temperature`` a batch shape)."""
        batch_shape = torch.Size(broadcast_shape(loc[:-2], scale[:-2], tuple(temperature)))
        k = broadcast_shape(loc[-2:], scale[-2:])[-1]
        return batch_shape, torch.Size((k + 1, k + 1))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(StickBreakingBirkhoff, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        tau = self.temperature
        if isinstance(tau, torch.Tensor):
            tau = tau.expand(batch_shape)
        new.base_dist = self.base_dist.expand(batch_shape)
        new.transforms = [StickBreakingBirkhoffTransform(tau, cache_size=1)]
        # Skip TransformedDistribution.__init__ (it would rebuild from a base distribution).
        torch.distributions.Distribution.__init__(
            new, batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        """The exact log-density of ``value`` (see the class docstring); ``-inf`` at a vertex,
        where the density's limit is 0 (the map reaches only the interior). A value whose
        rightmost dimensions are not ``event_shape`` raises a ``ValueError``, whatever
        ``validate_args``."""
        check_event_shape(value, self.event_shape, type(self).__name__)
        empty = empty_log_prob(value, self.event_shape, self.batch_shape)
        if empty is not None:
            return empty
        return self._stick_breaking_log_prob(value, super().log_prob)
