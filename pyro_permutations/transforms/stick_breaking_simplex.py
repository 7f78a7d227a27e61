"""Tempered stick-breaking bijection from ``R^{N-1}`` onto the interior of the simplex."""

import torch
import torch.nn.functional as F
from torch.distributions.transforms import StickBreakingTransform

from pyro_permutations.ops._validation import broadcast_shapes
from pyro_permutations.transforms._temperature import TemperatureTransformMixin
from pyro_permutations.transforms.stick_breaking import _check_temperature

__all__ = ["StickBreakingSimplexTransform"]


class StickBreakingSimplexTransform(TemperatureTransformMixin, StickBreakingTransform):
    r"""Stick-breaking with temperature, ``psi -> x``, from ``(..., N-1)`` real vectors onto the
    interior of the probability simplex of ``(..., N)`` vectors ([BP] section 3.1, the
    categorical case of its supplement).

    With ``beta = sigmoid(psi / tau)`` each ``beta_n`` is the fraction of the stick left over
    by the entries before it that goes to entry ``n``; the last entry takes the rest:

    .. math::

        x_1 = \beta_1, \qquad
        x_n = \beta_n \Bigl(1 - \sum_{m<n} x_m\Bigr) = \beta_n \prod_{m<n} (1 - \beta_m),
        \qquad x_N = \prod_{m<N} (1 - \beta_m).

    It is the first row of
    :class:`~pyro_permutations.transforms.StickBreakingBirkhoffTransform`. As ``tau -> 0``,
    ``beta_n -> 1[psi_n > 0]`` and ``x`` goes to the vertex ``e_n`` of the first ``n`` with
    ``psi_n > 0`` (or ``e_N`` if there is none).

    **Relation to torch.** This is a subclass of torch's
    :class:`~torch.distributions.transforms.StickBreakingTransform` and shares its domain
    (``real_vector``), codomain (``simplex``), stick order and shapes, but not its
    parameterisation: torch's uses ``beta_n = sigmoid(psi_n - log(N - n))`` (an offset that
    maps ``psi = 0`` to the simplex's centre) and no temperature, so ``T_tau(psi)`` equals
    torch's transform at ``psi / tau + log(N - n)``. The arithmetic is also different: it runs in
    log space (``log x_n = log sigma(s_n) + sum_{m<n} log sigma(-s_m)`` with ``s = psi / tau``)
    and the inverse divides by the remaining stick ``sum_{m>n} x_m``, summed from the small end,
    not by ``1 - sum_{m<=n} x_m``; so small entries keep their relative precision when ``tau``
    is small, where torch's transform rounds ``x`` to zero, its log-Jacobian to ``-inf`` and its
    inverse loses digits.

    **Inverse and Jacobian.** ``psi_n = tau (log x_n - log sum_{m>n} x_m)`` (both logarithms
    clamped at the dtype's ``tiny``, so points on a face map to large but finite values). The
    Jacobian of ``psi -> x[..., :N-1]`` is lower triangular, so

    .. math::

        \log |J| = \sum_{n<N} \Bigl[ \sum_{m<n} \log \sigma(-s_m) + \log \sigma(s_n)
                   + \log \sigma(-s_n) - \log \tau \Bigr], \qquad s = \psi / \tau.

    Densities built on this transform are with respect to Lebesgue measure on the first
    ``N - 1`` coordinates of ``x`` (as torch's ``RelaxedOneHotCategorical``).

    :param temperature: ``tau > 0``, a float or a tensor broadcastable to the batch shape.
    :param int cache_size: 0 or 1, as for any :class:`~torch.distributions.transforms.Transform`.
    :raises ValueError: if ``temperature`` is not positive and finite.

    Shapes: ``(..., N-1) -> (..., N)`` for ``N >= 1``; the log-Jacobian has the batch shape
    ``(...)`` (broadcast with the temperature's shape).

    Example::

        >>> import torch
        >>> from pyro_permutations.transforms import StickBreakingSimplexTransform
        >>> t = StickBreakingSimplexTransform(temperature=0.5)
        >>> psi = torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> x = t(psi)  # beta = (1/2, sigmoid(2))
        >>> x
        tensor([0.5000, 0.4404, 0.0596], dtype=torch.float64)
        >>> torch.allclose(t.inv(x), psi)  # exact up to rounding
        True
        >>> t.log_abs_det_jacobian(psi, x).shape
        torch.Size([])

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.1 and the supplement's
    section "Alternative methods of discrete variational inference".
    """

    def __init__(self, temperature=1.0, cache_size=0):
        _check_temperature(temperature)
        self.temperature = temperature
        super().__init__(cache_size=cache_size)

    def _tau(self, like):
        """The temperature with a trailing event dimension, in ``like``'s dtype and device."""
        tau = self.temperature
        if isinstance(tau, torch.Tensor):
            return tau.to(like).unsqueeze(-1)
        return tau

    def _log_sticks(self, psi):
        """``log sigma(s)``, ``log sigma(-s)`` and ``log`` of the stick left before each entry."""
        s = psi / self._tau(psi)
        log_beta, log_rest = F.logsigmoid(s), F.logsigmoid(-s)
        log_left = torch.cumsum(log_rest, -1)
        log_before = F.pad(log_left[..., :-1], (1, 0))
        return log_beta, log_rest, log_before, log_left

    def _call(self, psi):
        if psi.dim() < 1:
            raise ValueError(f"psi must have shape (..., N-1), got {tuple(psi.shape)}")
        if psi.shape[-1] == 0:
            batch = broadcast_shapes(
                "batch shapes",
                ("psi", psi.shape[:-1]),
                ("temperature", torch.as_tensor(self.temperature).shape),
            )
            return psi.new_ones(batch + (1,))
        log_beta, _, log_before, log_left = self._log_sticks(psi)
        return torch.cat([log_beta + log_before, log_left[..., -1:]], -1).exp()

    def _inverse(self, x):
        if x.dim() < 1 or x.shape[-1] < 1:
            raise ValueError(f"x must have shape (..., N) with N >= 1, got {tuple(x.shape)}")
        tiny = torch.finfo(x.dtype).tiny
        # The stick left after entry n, sum_{m>n} x_m, summed from the small end.
        rest = x.flip(-1).cumsum(-1).flip(-1)[..., 1:]
        head = x[..., :-1]
        return self._tau(x) * (head.clamp(min=tiny).log() - rest.clamp(min=tiny).log())

    def log_abs_det_jacobian(self, psi, x):
        tau = self._tau(psi)
        batch = broadcast_shapes(
            "batch shapes",
            ("psi", psi.shape[:-1]),
            ("x", x.shape[:-1]),
            ("temperature", torch.as_tensor(tau).shape[:-1]),
        )
        k = psi.shape[-1]
        if k == 0:
            return psi.new_zeros(batch)
        log_beta, log_rest, log_before, _ = self._log_sticks(psi)
        log_tau = torch.log(torch.as_tensor(tau, dtype=psi.dtype, device=psi.device))
        terms = log_before + log_beta + log_rest - log_tau
        return terms.sum(-1).expand(batch)
