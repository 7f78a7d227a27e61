"""The Sinkhorn operator as a (non-bijective) transform onto the Birkhoff polytope."""

import torch
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from pyro_permutations.constraints import birkhoff
from pyro_permutations.ops import log_sinkhorn

__all__ = ["SinkhornTransform"]


class SinkhornTransform(Transform):
    """``X -> S(X)``: unconstrained ``(..., N, N)`` scores to a doubly-stochastic matrix.

    The matrix analogue of :class:`~torch.distributions.transforms.SoftmaxTransform`: not
    bijective (``S`` ignores constants added to a row or column), with the right inverse
    ``P -> log P`` (``S(log P) = P`` for doubly-stochastic ``P``). It is what
    ``transform_to(birkhoff)`` returns, so ``pyro.param(name, init, constraint=birkhoff)`` keeps
    its unconstrained value as ``log P`` and returns ``S`` of it; densities need the bijection
    ``biject_to(birkhoff)`` (stick-breaking) instead.

    :param dict sinkhorn_kwargs: options of :func:`~pyro_permutations.ops.log_sinkhorn`.

    Example::

        >>> import torch
        >>> t = SinkhornTransform()
        >>> p = t(torch.randn(4, 4))
        >>> bool(torch.allclose(t(t.inv(p)), p, atol=1e-5))
        True
    """

    domain = constraints.independent(constraints.real, 2)
    codomain = birkhoff
    bijective = False

    def __init__(self, cache_size=0, **sinkhorn_kwargs):
        self.sinkhorn_kwargs = sinkhorn_kwargs
        super().__init__(cache_size=cache_size)

    def __eq__(self, other):
        return (
            isinstance(other, SinkhornTransform) and self.sinkhorn_kwargs == other.sinkhorn_kwargs
        )

    def with_cache(self, cache_size=1):
        if self._cache_size == cache_size:
            return self
        return SinkhornTransform(cache_size=cache_size, **self.sinkhorn_kwargs)

    def _call(self, x):
        return log_sinkhorn(x, **self.sinkhorn_kwargs).exp()

    def _inverse(self, y):
        return torch.log(y)

    def log_abs_det_jacobian(self, x, y):
        raise NotImplementedError(
            "SinkhornTransform is not bijective and has no Jacobian determinant; use "
            "biject_to(birkhoff) (StickBreakingBirkhoffTransform) for densities"
        )
