"""Rounding on the simplex: a Gaussian vector pulled towards its nearest one-hot vertex."""

import math

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
from pyro_permutations.transforms.rounding_simplex import RoundingSimplexTransform, round_to_vertex

__all__ = ["RoundingSimplex"]


class RoundingSimplex(TransformedNormalMixin, TransformedDistribution):
    r"""Rounding distribution on the simplex, a relaxed categorical with an exact density
    ([BP] section 3.2 and its supplement's categorical case).

    A Gaussian vector ``psi`` is drawn and moved a fraction ``1 - tau`` of the way to its
    nearest vertex of the simplex by
    :class:`~pyro_permutations.transforms.RoundingSimplexTransform`:

    .. math::

        \psi_n \sim \mathcal{N}(\mu_n, \nu_n^2), \qquad
        x = \tau \psi + (1 - \tau)\, e_{\arg\max \psi}.

    The map is injective, with inverse ``psi(x) = (x - (1 - tau) e_{argmax x}) / tau``, so

    .. math::

        \log q(x) = \sum_n \log \mathcal{N}\bigl(\psi(x)_n; \mu_n, \nu_n^2\bigr) - N \log \tau

    (a density with respect to Lebesgue measure on ``R^N``) when ``x`` is in the image, that is
    when its largest entry exceeds the second largest by at least ``1 - tau``, and ``-inf``
    otherwise (the hole around the simplex's centre). ``support`` is declared as all real
    vectors, as for :class:`~pyro_permutations.distributions.RoundingBirkhoff`; the hole shows
    up as ``log_prob = -inf``. Samples are reparameterized: gradients reach ``loc`` and
    ``scale`` through ``tau psi``.

    ``loc`` is typically a point of the simplex, e.g. ``softmax(logits)``, the counterpart of
    the Birkhoff version's ``sinkhorn(log M0)``. The vertex that ``x`` rounds to,
    ``argmax x = argmax psi``, does not depend on ``tau``: its pmf is that of the argmax of the
    Gaussian. Smaller ``tau`` only moves the samples closer to their vertices.

    :param torch.Tensor loc: means ``mu``, floating, shape ``(..., N)``.
    :param scale: standard deviations ``nu > 0``, a tensor broadcastable with ``loc`` or a
        float.
    :param float temperature: ``tau`` in ``(0, 1)``.
    :param bool validate_args: as for any distribution.
    :raises ValueError: if ``temperature`` is not in ``(0, 1)``, ``loc`` is not finite (always
        checked), ``loc`` is not a floating
        tensor of shape ``(..., N)`` with ``N >= 1``, the shapes of ``loc`` and ``scale`` do not
        broadcast, or (when validating) ``scale`` is not positive.

    Shapes: ``batch_shape`` is the broadcast shape of ``loc`` and ``scale`` without its last
    dimension; ``event_shape`` is ``(N,)``.

    Example::

        >>> import torch
        >>> from pyro_permutations.distributions import RoundingSimplex
        >>> loc = torch.softmax(torch.tensor([1.0, 0.0, -1.0]), -1)
        >>> d = RoundingSimplex(loc, 0.3, temperature=0.2)
        >>> x = d.rsample((5,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([5, 3]), torch.Size([5]))
        >>> bool(torch.isfinite(d.log_prob(x)).all())
        True
        >>> d.log_prob(torch.full((3,), 1 / 3))  # the simplex's centre is in the hole
        tensor(-inf)

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.2 and the supplement's
    section "Alternative methods of discrete variational inference".
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc, scale, temperature, validate_args=None):
        transform = RoundingSimplexTransform(temperature)
        check_floating(loc, "loc")
        check_finite(loc, "loc")
        broadcast_shapes("shapes", ("loc", loc.shape), ("scale", shape_of(scale)))
        loc, scale = broadcast_all(loc, scale)
        if loc.dim() < 1 or loc.shape[-1] < 1:
            raise ValueError(
                f"loc must have shape (..., N) with N >= 1 (after broadcasting with scale), "
                f"got {tuple(loc.shape)}"
            )
        base_dist = Normal(loc, scale, validate_args=validate_args).to_event(1)
        super().__init__(base_dist, transform, validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, loc, scale, temperature=(), validate_args=()):
        shape = broadcast_shape(loc, scale)
        return torch.Size(shape[:-1]), torch.Size(shape[-1:])

    def expand(self, batch_shape, _instance=None):
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        new = self._get_checked_instance(RoundingSimplex, _instance)
        return super().expand(batch_shape, _instance=new)

    def in_image(self, value):
        """Whether each ``value`` (``(..., N)``) is in the image of the rounding map: its
        largest entry exceeds the others by at least ``1 - tau``, up to a rounding allowance
        (``psi`` carries the error of ``value`` divided by ``tau``), so that a sample on the
        boundary of the hole is not refused. Shape ``(...)``."""
        tau = self.temperature
        psi = (value - (1.0 - tau) * round_to_vertex(value)) / tau
        top = (psi * round_to_vertex(value)).sum(-1)
        slack = 64 * torch.finfo(value.dtype).eps * (psi.abs().amax(-1) + 1) / tau
        return top >= psi.amax(-1) - slack

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        empty = empty_log_prob(value, self.event_shape, self.batch_shape)
        if empty is not None:
            return empty
        if self._validate_args:
            self._validate_sample(value)
        n = value.shape[-1]
        tau = self.temperature
        psi = (value - (1.0 - tau) * round_to_vertex(value)) / tau
        log_q = self.base_dist.log_prob(psi) - n * math.log(tau)
        return torch.where(self.in_image(value), log_q, torch.full_like(log_q, -math.inf))
