"""The relaxed permutation prior of [BP]: each entry near 0 or near 1."""

import math
import numbers

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from pyro_permutations.ops._validation import (
    check_event_shape,
    check_expand,
    check_size,
    empty_log_prob,
)

__all__ = ["RoundingPrior"]


def _check_n(n):
    return check_size(n, "n", "the matrix size N")


class RoundingPrior(TorchDistribution):
    """Prior on relaxed permutation matrices that [BP] pairs with rounding (section 3.2).

    Every entry, independently, is an equal mixture of two Gaussians centred on 0 and 1:

    .. math::

        p(X) = \\prod_{i,j=1}^{N} \\tfrac{1}{2}
               \\bigl[\\mathcal{N}(X_{ij}; 0, \\eta^2) + \\mathcal{N}(X_{ij}; 1, \\eta^2)\\bigr].

    It favours matrices whose entries are near 0 or 1, as a permutation matrix's are, without
    enforcing row or column sums; the rounding variational family
    (:class:`~pyro_permutations.distributions.rounding_birkhoff.RoundingBirkhoff`) supplies
    those. ``log_prob`` is exact (a log-sum-exp of the two components per entry) and
    ``sample`` draws the exact mixture (a fair coin picks the mean, then Gaussian noise); it is
    not reparameterizable. Samples have ``eta``'s dtype and device (a float ``eta`` gives torch's
    default dtype and device: pass a tensor to sample elsewhere); ``log_prob`` computes on the
    value's device, in the promoted dtype of ``eta`` and the value.

    Shapes: ``event_shape = (n, n)``, ``batch_shape = eta.shape``.
    Moments per entry: ``mean = 1/2``, ``variance = eta^2 + 1/4``.

    :param int n: matrix size ``N >= 1`` (a Python or NumPy integer).
    :param eta: component standard deviation ``eta > 0``, a float or a tensor (its shape is the
        batch shape).
    :param bool validate_args: as for any distribution.
    :raises ValueError: if ``n`` is not a positive integer, or ``eta`` is not positive (always
        for a float, when validating for a tensor).

    Example::

        >>> import torch
        >>> prior = RoundingPrior(3, eta=0.1)
        >>> prior.batch_shape, prior.event_shape
        (torch.Size([]), torch.Size([3, 3]))
        >>> round(float(prior.log_prob(torch.eye(3)) - prior.log_prob(torch.full((3, 3), 0.5))))
        106

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.2.
    """

    arg_constraints = {"eta": constraints.positive}
    support = constraints.independent(constraints.real, 2)
    has_rsample = False

    def __init__(self, n, eta, validate_args=None):
        self.n = _check_n(n)
        if isinstance(eta, numbers.Real) and not isinstance(eta, bool):
            if not eta > 0:
                raise ValueError(f"eta must be positive (a standard deviation), got {eta!r}")
            eta = torch.tensor(float(eta), dtype=torch.get_default_dtype())
        elif not isinstance(eta, torch.Tensor):
            raise TypeError(
                f"eta must be a positive float or a tensor, got {type(eta).__name__} {eta!r}"
            )
        self.eta = eta
        super().__init__(eta.shape, torch.Size((n, n)), validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, n, eta=(), validate_args=()):
        """``(batch_shape, event_shape)`` from the matrix size ``n`` (an int, as passed to the
        constructor, since no tensor argument carries it) and the shape of ``eta``."""
        n = _check_n(n)
        return torch.Size(eta), torch.Size((n, n))

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RoundingPrior, _instance)
        batch_shape = check_expand(type(self).__name__, self.batch_shape, batch_shape)
        new.n = self.n
        new.eta = self.eta.expand(batch_shape)
        super(RoundingPrior, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return torch.full_like(self.eta, 0.5)[..., None, None].expand(
            self.batch_shape + self.event_shape
        )

    @property
    def variance(self):
        return (self.eta**2 + 0.25)[..., None, None].expand(self.batch_shape + self.event_shape)

    def sample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        eta = self.eta[..., None, None]
        with torch.no_grad():
            centre = torch.bernoulli(torch.full(shape, 0.5, dtype=eta.dtype, device=eta.device))
            noise = torch.randn(shape, dtype=eta.dtype, device=eta.device)
            return centre + eta * noise

    def log_prob(self, value):
        check_event_shape(value, self.event_shape, type(self).__name__)
        empty = empty_log_prob(value, self.event_shape, self.batch_shape)
        if empty is not None:
            return empty
        if self._validate_args:
            self._validate_sample(value)
        # eta is a scale, usually given as a float: it takes the value's dtype and device.
        dtype = torch.promote_types(self.eta.dtype, value.dtype)
        eta = self.eta[..., None, None].to(dtype=dtype, device=value.device)
        z0 = value / eta
        z1 = (value - 1.0) / eta
        log_mix = torch.logaddexp(-0.5 * z0**2, -0.5 * z1**2)
        log_norm = math.log(2.0) + 0.5 * math.log(2.0 * math.pi) + torch.log(eta)
        return (log_mix - log_norm).sum((-1, -2))
