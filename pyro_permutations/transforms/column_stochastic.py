"""Column-wise stick-breaking: a bijection onto the interior of the column-stochastic matrices."""

from torch.distributions import constraints
from torch.distributions.transforms import StickBreakingTransform, Transform

from pyro_permutations.constraints import column_stochastic

__all__ = ["ColumnStickBreakingTransform"]


class ColumnStickBreakingTransform(Transform):
    """``Y -> X``: torch's :class:`~torch.distributions.transforms.StickBreakingTransform`
    applied to every column, from ``(..., M-1, N)`` real matrices onto the interior of the
    ``(..., M, N)`` column-stochastic matrices
    (:data:`~pyro_permutations.constraints.column_stochastic`).

    Column ``j`` of ``X`` is ``stick_breaking(Y[..., :, j])``, so the columns are independent
    and the Jacobian of ``Y -> X[..., :M-1, :]`` is block diagonal:

    .. math::

        \\log |J(Y)| = \\sum_{j=1}^{N} \\log |J_{\\mathrm{sb}}(Y_{:, j})|.

    ``Y = 0`` maps to the matrix whose entries are all ``1 / M``. It is what
    ``biject_to(column_stochastic)`` and ``transform_to(column_stochastic)`` return.

    Shapes: ``(..., M-1, N) -> (..., M, N)``; the log-Jacobian has the batch shape ``(...)``.

    Example::

        >>> import torch
        >>> t = ColumnStickBreakingTransform()
        >>> x = t(torch.zeros(2, 3))
        >>> x
        tensor([[0.3333, 0.3333, 0.3333],
                [0.3333, 0.3333, 0.3333],
                [0.3333, 0.3333, 0.3333]])
        >>> t.inv(x).abs().max() < 1e-6
        tensor(True)
    """

    domain = constraints.independent(constraints.real, 2)
    codomain = column_stochastic
    bijective = True

    def __init__(self, cache_size=0):
        self._stick = StickBreakingTransform()
        super().__init__(cache_size=cache_size)

    def __eq__(self, other):
        return isinstance(other, ColumnStickBreakingTransform)

    def __hash__(self):
        return hash(type(self))

    def with_cache(self, cache_size=1):
        if self._cache_size == cache_size:
            return self
        return ColumnStickBreakingTransform(cache_size=cache_size)

    def _call(self, y):
        return self._stick(y.mT).mT

    def _inverse(self, x):
        return self._stick.inv(x.mT).mT

    def log_abs_det_jacobian(self, y, x):
        return self._stick.log_abs_det_jacobian(y.mT, x.mT).sum(-1)

    def forward_shape(self, shape):
        if len(shape) < 2:
            raise ValueError(f"expected a matrix shape (..., M-1, N), got {tuple(shape)}")
        return shape[:-2] + (shape[-2] + 1, shape[-1])

    def inverse_shape(self, shape):
        if len(shape) < 2 or shape[-2] < 1:
            raise ValueError(f"expected a matrix shape (..., M, N) with M >= 1, got {tuple(shape)}")
        return shape[:-2] + (shape[-2] - 1, shape[-1])
