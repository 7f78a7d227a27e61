"""Rounding on the simplex: pull a real vector part of the way to its nearest one-hot vertex."""

import math

import torch
import torch.nn.functional as F
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from pyro_permutations.ops._validation import broadcast_shapes
from pyro_permutations.transforms._temperature import TemperatureTransformMixin
from pyro_permutations.transforms.rounding import _check_temperature

__all__ = ["RoundingSimplexTransform", "round_to_vertex"]


def round_to_vertex(x):
    """The vertex of the simplex nearest to ``x`` in Euclidean distance: the one-hot vector
    ``e_k``, ``k = argmax(x)`` (first index on ties), ``(..., N)``, detached, ``x``'s dtype.

    Since ``||x - e_k||^2 = ||x||^2 - 2 x_k + 1``, the nearest vertex is the largest entry.
    """
    return F.one_hot(x.detach().argmax(-1), x.shape[-1]).to(x.dtype)


class RoundingSimplexTransform(TemperatureTransformMixin, Transform):
    r"""Rounding on the simplex ([BP] section 3.2, categorical case), from ``R^N`` to ``R^N``.

    .. math::

        x = \tau \psi + (1 - \tau)\, e_{\arg\max \psi},

    with temperature ``tau`` in ``(0, 1)``: ``x`` lies on the segment from ``psi`` to its
    nearest vertex of the simplex (the one-hot vector of its largest entry, see
    :func:`round_to_vertex`), a fraction ``1 - tau`` of the way there. It is
    :class:`~pyro_permutations.transforms.RoundingBirkhoffTransform` with one-hot vectors in
    place of permutation matrices.

    **Inverse.** The largest entry of ``psi`` gains ``1 - tau`` relative to the others, so
    ``argmax x = argmax psi`` and

    .. math:: \psi = \bigl(x - (1 - \tau)\, e_{\arg\max x}\bigr) / \tau

    exactly. The map is injective but not onto: ``x`` is in the image exactly when its largest
    entry exceeds the second largest by at least ``1 - tau``. The other points (a hole around
    the centre ``1/N`` of the simplex, stretched along the directions ``(1, ..., 1)``) have no
    preimage. The ``codomain`` is declared as all real vectors, as for the Birkhoff version; a
    distribution built on this transform gives density zero in the hole (see
    :class:`~pyro_permutations.distributions.RoundingSimplex`).

    **Jacobian.** ``e_{argmax}`` is piecewise constant, so within each cell the map is
    ``psi -> tau psi`` plus a constant: ``log |det J| = N log tau``. Gradients flow through the
    ``tau psi`` term only.

    Shapes: ``psi`` and ``x`` are ``(..., N)``, any leading batch shape; float32 or float64.

    :param float temperature: ``tau``, a real number in ``(0, 1)``.
    :param int cache_size: 0 or 1, as for any :class:`~torch.distributions.transforms.Transform`.
    :raises ValueError: if ``temperature`` is not in ``(0, 1)``.
    :raises TypeError: if ``temperature`` is not a number (or a 0-dim tensor).

    Example::

        >>> import torch
        >>> from pyro_permutations.transforms import RoundingSimplexTransform
        >>> t = RoundingSimplexTransform(0.5)
        >>> psi = torch.tensor([0.2, 0.5, 0.3])
        >>> x = t(psi)
        >>> x
        tensor([0.1000, 0.7500, 0.1500])
        >>> t.inv(x)
        tensor([0.2000, 0.5000, 0.3000])
        >>> t.log_abs_det_jacobian(psi, x)  # 3 log(0.5)
        tensor(-2.0794)

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.2 and the supplement's
    section "Alternative methods of discrete variational inference".
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True
    sign = +1

    def __init__(self, temperature, cache_size=0):
        self.temperature = _check_temperature(temperature)
        super().__init__(cache_size=cache_size)

    @staticmethod
    def _check(value, name):
        if value.dim() < 1 or value.shape[-1] < 1:
            raise ValueError(
                f"{name} must have shape (..., N) with N >= 1, got {tuple(value.shape)}"
            )

    def _call(self, psi):
        self._check(psi, "psi")
        tau = self.temperature
        return tau * psi + (1.0 - tau) * round_to_vertex(psi)

    def _inverse(self, x):
        self._check(x, "x")
        tau = self.temperature
        return (x - (1.0 - tau) * round_to_vertex(x)) / tau

    def log_abs_det_jacobian(self, psi, x):
        n = x.shape[-1]
        batch = broadcast_shapes("batch shapes", ("psi", psi.shape[:-1]), ("x", x.shape[:-1]))
        return torch.full(batch, n * math.log(self.temperature), dtype=x.dtype, device=x.device)
