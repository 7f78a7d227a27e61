"""Stick-breaking bijection from real ``(N-1) x (N-1)`` matrices onto the Birkhoff polytope."""

import torch
import torch.nn.functional as F
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from pyro_permutations.constraints import birkhoff
from pyro_permutations.ops._validation import broadcast_shapes, check_temperature
from pyro_permutations.transforms._temperature import TemperatureTransformMixin

__all__ = ["StickBreakingBirkhoffTransform"]


def _check_temperature(temperature):
    """A positive finite float or floating tensor (``TypeError`` for another type, a string
    say; ``ValueError`` for a value that is not positive and finite)."""
    check_temperature(temperature)


def _check_square_event(shape, name):
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"{name} must have shape (..., K, K), got {tuple(shape)}")


#: Dtypes whose bounds are computed in float64 (see :class:`StickBreakingBirkhoffTransform`).
_UPCAST = (torch.float16, torch.bfloat16, torch.float32)


def _working(t):
    """``t`` in the dtype the bounds are computed in: float64 for lower precisions, except on
    devices without float64 (MPS)."""
    if t.dtype in _UPCAST and t.device.type != "mps":
        return t.to(torch.float64)
    return t


def _stick_break(n, batch_shape, like, step):
    """Fill an ``(..., n, n)`` Birkhoff matrix in raster order.

    For every entry ``(m, j)`` of the top-left ``(n-1) x (n-1)`` block (0-indexed) compute the
    bounds ``l, u`` of [BP] section 3.1 from the entries already placed, and call
    ``step(m, j, l, u)``, which returns ``x_mj``. The last column and row are completed so that
    rows and columns sum to one. Returns the ``(..., n, n)`` matrix, built without in-place
    writes so that autograd sees every step.
    """
    zero = like.new_zeros(batch_shape)
    col_sums = [zero] * n  # column sums over the rows placed so far (last column included)
    rows = []
    for m in range(n - 1):
        row = []
        row_sum = zero
        for j in range(n - 1):
            # Mass of the previous rows in the columns right of j, i.e. sum_{k<m} sum_{i>j} x_ki.
            right = sum(col_sums[j + 1 :], zero)
            upper = torch.minimum(1 - row_sum, 1 - col_sums[j])
            lower = (j + 2 - n) - row_sum + right  # 1 - N + (j + 1) in the paper's 1-indexing
            lower = lower.clamp(min=0)
            x = step(m, j, lower, upper)
            row.append(x)
            row_sum = row_sum + x
            col_sums[j] = col_sums[j] + x
        last = 1 - row_sum
        row.append(last)
        col_sums[n - 1] = col_sums[n - 1] + last
        rows.append(torch.stack(row, dim=-1))
    rows.append(torch.stack([1 - s for s in col_sums], dim=-1))
    return torch.stack(rows, dim=-2)


class StickBreakingBirkhoffTransform(TemperatureTransformMixin, Transform):
    r"""Stick-breaking bijection ``Psi -> X`` from ``(..., N-1, N-1)`` real matrices onto the
    interior of the Birkhoff polytope of ``(..., N, N)`` doubly-stochastic matrices ([BP]
    section 3.1).

    With ``beta = sigmoid(Psi / tau)`` the top-left ``(N-1) x (N-1)`` block of ``X`` is filled
    in raster order (row by row, left to right); with 1-indexed ``m, n``,

    .. math::

        x_{mn} = l_{mn} + \beta_{mn} (u_{mn} - l_{mn}), \qquad
        u_{mn} = \min\Big(1 - \sum_{k<n} x_{mk},\; 1 - \sum_{k<m} x_{kn}\Big),

        l_{mn} = \max\Big(0,\; 1 - N + n - \sum_{k<n} x_{mk}
                 + \sum_{k<m} \sum_{j>n} x_{kj}\Big),

    the largest and smallest values that still let the matrix be completed: ``u`` is what is
    left of row ``m`` and of column ``n``, ``l`` makes the rest of row ``m`` fit into the
    capacity left in the columns to the right. The last column and the last row are then
    ``x_{mN} = 1 - sum_{n<N} x_{mn}`` and ``x_{Nn} = 1 - sum_{m<N} x_{mn}``. The first row is
    ordinary stick-breaking. With these bounds the partial matrix can always be completed, so
    every entry of ``X`` is non-negative (up to rounding) and its rows and columns sum to one.

    The inverse recomputes the bounds from ``X``: ``Psi = tau logit((X - l) / (u - l))``,
    evaluated as ``tau (log(x - l) - log(u - x))`` with both terms clamped at the dtype's
    ``tiny`` so that points on a face of the polytope map to large but finite values. The
    Jacobian of ``Psi -> X[..., :N-1, :N-1]`` is triangular in raster order, so

    .. math::

        \log |J| = \sum_{m,n < N} \Big[ \log(u_{mn} - l_{mn}) - \log \tau
                   + \log \sigma(\psi_{mn} / \tau) + \log \sigma(-\psi_{mn} / \tau) \Big],

    with ``u - l`` clamped at ``tiny``. The map is only piecewise smooth: which term of the
    ``min`` / ``max`` is active can switch.

    **Precision.** Near a face of the polytope the gaps ``u - l`` are differences of nearly
    equal sums of entries of ``X``, which float32 would lose entirely (log-Jacobians hundreds of
    nats off). So the bounds are computed in float64 for float32 and lower precisions (except on
    devices without float64, such as MPS) and the results are rounded back, and ``log |J|`` is
    computed from ``Psi``, the exact input, not from ``X``. The log-density of a sample the
    transform has just made (``rsample`` then ``log_prob``, through the cache) is then as
    accurate in float32 as in float64. A float32 ``X`` given without its ``Psi`` and lying
    within rounding of a face does not determine ``Psi`` (nor its density) to any accuracy:
    the inverse, also computed in float64, starts from the rounded ``X``, so in float32
    ``inv(forward(Psi))`` can be far from ``Psi`` where ``|Psi| / tau`` is large.

    :param temperature: ``tau > 0``, a float or a tensor broadcastable to the batch shape.
    :param int cache_size: 0 or 1, as for any :class:`~torch.distributions.transforms.Transform`.
    :raises ValueError: if ``temperature`` is not positive and finite.
    :raises TypeError: if ``temperature`` is neither a number nor a floating tensor.

    Shapes: ``(..., N-1, N-1) -> (..., N, N)`` for ``N >= 1``; the log-Jacobian has the batch
    shape ``(...)``. Rows index items and columns positions, as everywhere in this package.

    Example::

        >>> import torch
        >>> from pyro_permutations.transforms.stick_breaking import (
        ...     StickBreakingBirkhoffTransform,
        ... )
        >>> t = StickBreakingBirkhoffTransform(temperature=0.5)
        >>> psi = torch.randn(7, 3, 3, dtype=torch.float64)
        >>> x = t(psi)
        >>> x.shape
        torch.Size([7, 4, 4])
        >>> bool(torch.allclose(x.sum(-1), torch.ones(7, 4, dtype=torch.float64)))
        True
        >>> bool(torch.allclose(t.inv(x), psi))
        True
        >>> t.log_abs_det_jacobian(psi, x).shape
        torch.Size([7])

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.1.
    """

    domain = constraints.independent(constraints.real, 2)
    codomain = birkhoff
    bijective = True
    sign = +1

    def __init__(self, temperature=1.0, cache_size=0):
        _check_temperature(temperature)
        self.temperature = temperature
        super().__init__(cache_size=cache_size)

    def forward_shape(self, shape):
        _check_square_event(shape, "the input shape")
        k = shape[-1]
        return torch.Size(shape[:-2]) + (k + 1, k + 1)

    def inverse_shape(self, shape):
        _check_square_event(shape, "the output shape")
        if shape[-1] < 1:
            raise ValueError(f"the output shape must have N >= 1, got {tuple(shape)}")
        n = shape[-1]
        return torch.Size(shape[:-2]) + (n - 1, n - 1)

    def _tau(self, like):
        tau = self.temperature
        if isinstance(tau, torch.Tensor):
            return tau.to(like)
        return tau

    def _forward(self, psi, log_gaps=None):
        """The forward map in the working dtype; appends each ``log(u - l)`` to ``log_gaps``
        if given."""
        n = psi.shape[-1] + 1
        tau = self._tau(psi)
        tiny = torch.finfo(psi.dtype).tiny
        # The batch shape of the output includes the temperature's.
        batch_shape = broadcast_shapes(
            "batch shapes", ("psi", psi.shape[:-2]), ("temperature", torch.as_tensor(tau).shape)
        )

        def step(m, j, lower, upper):
            s = psi[..., m, j] / tau
            gap = (upper - lower).clamp(min=0)
            if log_gaps is not None:
                log_gaps.append(gap.clamp(min=tiny).log())
            # Whichever end is nearer keeps its small distance accurately.
            near_lower = lower + torch.sigmoid(s) * gap
            near_upper = upper - torch.sigmoid(-s) * gap
            return torch.where(s > 0, near_upper, near_lower)

        return _stick_break(n, batch_shape, psi, step)

    def _call(self, psi):
        _check_square_event(psi.shape, "psi")
        return self._forward(_working(psi)).to(psi.dtype)

    def _inverse(self, y):
        _check_square_event(y.shape, "x")
        x = _working(y)
        n = x.shape[-1]
        tau = self._tau(x)
        tiny = torch.finfo(y.dtype).tiny  # the input's: see the class docstring
        psis = {}

        def step(m, j, lower, upper):
            xmj = x[..., m, j]
            logit = (xmj - lower).clamp(min=tiny).log() - (upper - xmj).clamp(min=tiny).log()
            psis[m, j] = tau * logit
            return xmj

        batch_shape = broadcast_shapes(
            "batch shapes", ("x", x.shape[:-2]), ("temperature", torch.as_tensor(tau).shape)
        )
        _stick_break(n, batch_shape, x, step)
        if n == 1:
            return y.new_zeros(batch_shape + (0, 0))
        rows = [torch.stack([psis[m, j] for j in range(n - 1)], -1) for m in range(n - 1)]
        return torch.stack(rows, -2).to(y.dtype)

    def log_abs_det_jacobian(self, psi, x):
        n = x.shape[-1]
        work = _working(psi)
        tau = self._tau(work)
        batch_shape = broadcast_shapes(
            "batch shapes",
            ("psi", psi.shape[:-2]),
            ("x", x.shape[:-2]),
            ("temperature", torch.as_tensor(tau).shape),
        )
        result = x.new_zeros(batch_shape)
        if n == 1:
            return result
        # The gaps u - l come from Psi, the exact input, rather than from X: near a face of the
        # polytope they are differences of nearly equal sums of X, which X's rounding (float32
        # above all) would swamp.
        log_gaps = []
        self._forward(work, log_gaps)
        s = work / (tau.unsqueeze(-1).unsqueeze(-1) if isinstance(tau, torch.Tensor) else tau)
        logistic = (F.logsigmoid(s) + F.logsigmoid(-s)).sum((-2, -1))
        log_tau = torch.log(torch.as_tensor(tau, dtype=work.dtype, device=work.device))
        total = sum(log_gaps) + logistic - (n - 1) ** 2 * log_tau
        return result + total.to(x.dtype)
