"""A Gaussian pushed through tempered stick-breaking onto the simplex."""

import torch
from pyro.distributions import Normal, TransformedDistribution
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from pyro_permutations.distributions._transformed_normal import TransformedNormalMixin, shape_of
from pyro_permutations.ops._validation import (
    broadcast_shapes,
    check_event_shape,
    check_expand,
    check_finite,
    check_floating,
    empty_log_prob,
)
from pyro_permutations.transforms.stick_breaking_simplex import StickBreakingSimplexTransform

__all__ = ["StickBreakingSimplex"]


class StickBreakingSimplex(TransformedNormalMixin, TransformedDistribution):
    r"""Stick-breaking distribution on the simplex, a relaxed categorical with an exact density
    ([BP] section 3.1 and its supplement's categorical case).

    A Gaussian vector ``psi ~ Normal(loc, scale)`` in ``R^{N-1}`` (independent entries) is
    mapped onto the simplex by
    :class:`~pyro_permutations.transforms.StickBreakingSimplexTransform`:
    ``beta = sigmoid(psi / tau)``, ``x_1 = beta_1``, ``x_n = beta_n (1 - sum_{m<n} x_m)``,
    ``x_N = 1 - sum_{m<N} x_m``. The map is a bijection onto the simplex's interior, so

    .. math::

        q(x) = \frac{\mathcal{N}(\psi(x); \mu, \nu^2)}{|J(\psi(x))|},

    a density with respect to Lebesgue measure on ``x_1, ..., x_{N-1}`` (the measure of torch's
    :class:`~torch.distributions.RelaxedOneHotCategorical`). It is the simplex counterpart of
    :class:`~pyro_permutations.distributions.StickBreakingBirkhoff` (whose first row is this).

    **Zero temperature.** As ``tau -> 0``, ``beta_n -> 1[psi_n > 0]``, which has probability
    ``rho_n = Phi(mu_n / nu_n)``, so ``x`` tends to the one-hot vector ``e_n`` with

    .. math::

        \pi_1 = \rho_1, \qquad \pi_n = \rho_n \prod_{m<n} (1 - \rho_m), \qquad
        \pi_N = \prod_{m<N} (1 - \rho_m)

    (:meth:`zero_temperature_probs`). Every categorical distribution is such a limit
    (``rho_n = pi_n / (1 - sum_{m<n} pi_m)``); the stick order makes the family asymmetric.

    :param torch.Tensor loc: ``mu``, floating, shape ``(..., N-1)``.
    :param scale: ``nu > 0``, a tensor broadcastable with ``loc`` or a float.
    :param temperature: ``tau > 0``, a float or a tensor broadcastable to the batch shape.
    :param bool validate_args: as for any torch distribution.
    :raises ValueError: if ``temperature`` is not positive and finite or ``loc`` is not finite
        (both always checked), ``loc`` is not a
        floating tensor with at least one dimension, the shapes of ``loc``, ``scale`` and
        ``temperature`` do not broadcast, or (when validating) ``scale`` is not positive.

    Shapes: ``batch_shape`` is the broadcast of ``loc.shape[:-1]``, ``scale.shape[:-1]`` and the
    temperature's shape; ``event_shape`` is ``(N,)``; ``rsample(sample_shape)`` has shape
    ``sample_shape + batch_shape + (N,)``.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import StickBreakingSimplex
        >>> d = StickBreakingSimplex(torch.zeros(4, 2), 1.0, temperature=0.5)
        >>> d.batch_shape, d.event_shape
        (torch.Size([4]), torch.Size([3]))
        >>> x = d.rsample((5,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([5, 4, 3]), torch.Size([5, 4]))
        >>> bool(torch.allclose(x.sum(-1), torch.ones(5, 4)))
        True
        >>> d.zero_temperature_probs()[0]  # rho = (1/2, 1/2)
        tensor([0.5000, 0.2500, 0.2500])

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.1 and the supplement's
    section "Alternative methods of discrete variational inference".
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, loc, scale, temperature=1.0, validate_args=None):
        transform = StickBreakingSimplexTransform(temperature, cache_size=1)
        check_floating(loc, "loc")
        check_finite(loc, "loc")
        broadcast_shapes("shapes", ("loc", loc.shape), ("scale", shape_of(scale)))
        loc, scale = broadcast_all(loc, scale)
        if loc.dim() < 1:
            raise ValueError(
                f"loc and scale must broadcast to shape (..., N-1), got {tuple(loc.shape)}"
            )
        batch_shape = broadcast_shapes(
            "batch shapes",
            ("loc and scale", loc.shape[:-1]),
            ("temperature", shape_of(temperature)),
        )
        base = Normal(loc, scale, validate_args=validate_args)
        base = base.expand(batch_shape + loc.shape[-1:]).to_event(1)
        super().__init__(base, transform, validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, loc, scale, temperature=(), validate_args=()):
        """``(batch_shape, event_shape)`` for arguments of the given shapes (``loc`` and
        ``scale`` of shape ``(..., N-1)``, ``temperature`` a batch shape)."""
        batch_shape = torch.Size(broadcast_shape(loc[:-1], scale[:-1], tuple(temperature)))
        k = broadcast_shape(loc[-1:], scale[-1:])[-1]
        return batch_shape, torch.Size((k + 1,))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(StickBreakingSimplex, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        tau = self.temperature
        if isinstance(tau, torch.Tensor):
            tau = tau.expand(batch_shape)
        new.base_dist = self.base_dist.expand(batch_shape)
        new.transforms = [StickBreakingSimplexTransform(tau, cache_size=1)]
        # Skip TransformedDistribution.__init__ (it would rebuild from a base distribution).
        torch.distributions.Distribution.__init__(
            new, batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def zero_temperature_probs(self):
        """The categorical probabilities ``pi`` of the ``tau -> 0`` limit, ``(..., N)``.

        ``pi_n = rho_n prod_{m<n} (1 - rho_m)`` with ``rho_n = Phi(mu_n / nu_n)`` and
        ``pi_N = prod_{m<N} (1 - rho_m)``, computed in log space (``log_ndtr``); differentiable
        in ``loc`` and ``scale``, independent of the temperature.
        """
        z = self.loc / self.scale
        if z.shape[-1] == 0:
            return z.new_ones(z.shape[:-1] + (1,))
        log_rho, log_rest = torch.special.log_ndtr(z), torch.special.log_ndtr(-z)
        log_left = torch.cumsum(log_rest, -1)
        log_before = torch.nn.functional.pad(log_left[..., :-1], (1, 0))
        return torch.cat([log_rho + log_before, log_left[..., -1:]], -1).exp()

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
