"""The rounding distribution of [BP]: a Gaussian matrix pulled towards its nearest permutation."""

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
    check_square,
    empty_log_prob,
)
from pyro_permutations.ops.matching import matching
from pyro_permutations.ops.permutations import perm_to_matrix
from pyro_permutations.transforms.rounding import RoundingBirkhoffTransform

__all__ = ["RoundingBirkhoff"]


class RoundingBirkhoff(TransformedNormalMixin, TransformedDistribution):
    """Rounding distribution of [BP] section 3.2: a relaxed permutation matrix with a density.

    A Gaussian matrix ``psi`` is drawn and moved a fraction ``1 - tau`` of the way to its
    nearest permutation matrix by :class:`~pyro_permutations.transforms.rounding.
    RoundingBirkhoffTransform`:

    .. math::

        \\psi_{ij} \\sim \\mathcal{N}(M_{ij}, V_{ij}^2), \\qquad
        X = \\tau \\psi + (1 - \\tau)\\, \\mathrm{round}(\\psi),

    where ``round(psi)`` maximises ``<P, psi>_F`` over permutation matrices (convention
    ``P[..., i, perm[i]] = 1``). The map is injective, with inverse
    ``psi(X) = (X - (1 - tau) round(X)) / tau``, so the density is exact:

    .. math::

        \\log q(X) = \\sum_{ij} \\log \\mathcal{N}\\bigl(\\psi(X)_{ij}; M_{ij}, V_{ij}^2\\bigr)
                   - N^2 \\log \\tau

    when ``round(psi(X)) = round(X)`` (``X`` is in the image), and ``-inf`` otherwise: the image
    misses a hole around the centre ``1/N`` of the Birkhoff polytope, where ``X`` is not close
    enough to any vertex. ``support`` is declared as all real ``N x N`` matrices; the hole shows
    up as ``log_prob = -inf``. Samples are reparameterized: gradients reach ``loc`` and
    ``scale`` through ``tau psi`` (``round`` is piecewise constant).

    [BP] often sets ``loc = sinkhorn(log_M0, n_iters=10)`` (a point in or near the Birkhoff
    polytope) and ``scale`` in ``[0.1, 0.5]``; small ``temperature`` concentrates samples near
    permutation matrices. Pair it with
    :class:`~pyro_permutations.distributions.rounding_prior.RoundingPrior` as the prior.

    Shapes: ``loc`` is ``(..., N, N)``; ``scale`` broadcasts with it; ``batch_shape`` is the
    broadcast shape without its last two dimensions and ``event_shape`` is ``(N, N)``.
    :meth:`log_prob` solves two assignment problems per matrix (SciPy, CPU).

    :param torch.Tensor loc: means ``M``, floating, shape ``(..., N, N)``.
    :param scale: standard deviations ``V > 0``, a tensor broadcastable with ``loc`` or a float.
    :param float temperature: ``tau`` in ``(0, 1)``.
    :param bool validate_args: as for any distribution.
    :raises ValueError: if ``temperature`` is not in ``(0, 1)``, ``loc`` is not finite (always
        checked), ``loc`` is not a floating batch
        of square matrices, the shapes of ``loc`` and ``scale`` do not broadcast, or (when
        validating) ``scale`` is not positive.

    Example::

        >>> import torch
        >>> from pyro_permutations.ops import sinkhorn
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> loc = sinkhorn(torch.randn(4, 4), n_iters=10)
        >>> d = RoundingBirkhoff(loc, 0.3, temperature=0.1)
        >>> x = d.rsample((5,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([5, 4, 4]), torch.Size([5]))
        >>> bool(torch.isfinite(d.log_prob(x)).all())
        True
        >>> d.log_prob(torch.full((4, 4), 0.25))  # the polytope's centre is in the hole
        tensor(-inf)

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.2.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.independent(constraints.real, 2)
    has_rsample = True

    def __init__(self, loc, scale, temperature, validate_args=None):
        transform = RoundingBirkhoffTransform(temperature)
        check_floating(loc, "loc")
        check_finite(loc, "loc")
        broadcast_shapes("shapes", ("loc", loc.shape), ("scale", shape_of(scale)))
        loc, scale = broadcast_all(loc, scale)
        check_square(loc, "loc")
        base_dist = Normal(loc, scale, validate_args=validate_args).to_event(2)
        super().__init__(base_dist, transform, validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, loc, scale, temperature=(), validate_args=()):
        shape = broadcast_shape(loc, scale)
        return torch.Size(shape[:-2]), torch.Size(shape[-2:])

    def expand(self, batch_shape, _instance=None):
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        new = self._get_checked_instance(RoundingBirkhoff, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        empty = empty_log_prob(value, self.event_shape, self.batch_shape)
        if empty is not None:
            return empty
        if self._validate_args:
            self._validate_sample(value)
        n = value.shape[-1]
        tau = self.temperature
        perm = matching(value)
        psi = (value - (1.0 - tau) * perm_to_matrix(perm, dtype=value.dtype)) / tau
        # ``value`` is in the image iff ``perm`` is also a nearest permutation of ``psi``;
        # compared on assignment scores with a rounding allowance (``psi`` carries the error of
        # ``value`` divided by ``tau``), so that a sample near a Voronoi face is not refused.
        best = matching(psi)
        p_perm = perm_to_matrix(perm, dtype=value.dtype)
        p_best = perm_to_matrix(best, dtype=value.dtype)
        gap = ((p_best - p_perm) * psi).sum((-2, -1))
        slack = 64 * torch.finfo(value.dtype).eps * (psi.abs().sum((-2, -1)) + n) / tau
        in_image = gap <= slack
        log_q = self.base_dist.log_prob(psi) - n * n * math.log(tau)
        return torch.where(in_image, log_q, torch.full_like(log_q, -math.inf))
