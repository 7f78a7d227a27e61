"""The rounding transform of [BP]: pull a real matrix part of the way to its nearest permutation."""

import math
import numbers

import torch
from torch.distributions import constraints
from torch.distributions.transforms import Transform

from pyro_permutations.ops.matching import matching
from pyro_permutations.ops.permutations import perm_to_matrix
from pyro_permutations.transforms._temperature import TemperatureTransformMixin

__all__ = ["RoundingBirkhoffTransform"]


def _check_temperature(temperature, name="temperature"):
    """``temperature`` is a real number strictly between 0 and 1; returns it as a ``float``.

    A 0-dim tensor is accepted and converted (gradients with respect to it are not tracked).
    """
    if isinstance(temperature, torch.Tensor):
        if temperature.dim() != 0:
            raise ValueError(
                f"{name} must be a number in the open interval (0, 1) or a 0-dim tensor, got a "
                f"tensor of shape {tuple(temperature.shape)}"
            )
        temperature = temperature.item()
    if not isinstance(temperature, numbers.Real) or isinstance(temperature, bool):
        raise TypeError(
            f"{name} must be a real number in the open interval (0, 1), "
            f"got {type(temperature).__name__} {temperature!r}"
        )
    temperature = float(temperature)
    if not 0.0 < temperature < 1.0:
        raise ValueError(
            f"{name} must lie in the open interval (0, 1), got {temperature!r}; "
            f"values near 0 give near-permutations, values near 1 barely move the matrix"
        )
    return temperature


def _round_to_permutation(x):
    """The permutation matrix nearest to ``x`` in Frobenius norm, ``(..., N, N)``, detached.

    Since every permutation matrix has ``||P||_F^2 = N``, minimising ``||x - P||_F`` is
    maximising ``<P, x>_F``: ``perm_to_matrix(matching(x))``, with ``x``'s dtype and device.
    """
    return perm_to_matrix(matching(x), dtype=x.dtype)


class RoundingBirkhoffTransform(TemperatureTransformMixin, Transform):
    """The rounding transform of [BP] section 3.2, from real matrices to near-permutations.

    .. math::

        x = \\tau \\psi + (1 - \\tau)\\, \\mathrm{round}(\\psi), \\qquad
        \\mathrm{round}(\\psi) = \\arg\\min_{P \\in \\mathcal{P}_N} \\|\\psi - P\\|_F
                             = \\arg\\max_{P \\in \\mathcal{P}_N} \\langle P, \\psi \\rangle_F,

    with temperature ``tau`` in ``(0, 1)``: ``x`` lies on the segment from ``psi`` to its
    nearest permutation matrix, a fraction ``1 - tau`` of the way there. ``round`` is the
    matching operator (:func:`~pyro_permutations.ops.matching`) followed by
    :func:`~pyro_permutations.ops.perm_to_matrix`; convention ``P[..., i, perm[i]] = 1``.

    **Inverse.** The Voronoi cells of the permutation matrices are convex and ``x`` lies between
    ``psi`` and its vertex, so ``round(x) = round(psi)`` (strictly: ``x`` has a unique nearest
    vertex even when ``psi`` is a tie) and

    .. math:: \\psi = \\bigl(x - (1 - \\tau)\\, \\mathrm{round}(x)\\bigr) / \\tau

    exactly. The map is injective but not onto: its image is every ``N x N`` real matrix except
    a hole around the centre ``1/N`` of the Birkhoff polytope (the points whose recovered
    ``psi`` would round elsewhere). The ``codomain`` is declared as all real matrices; a
    distribution built on this transform gives density zero in the hole (see
    :class:`~pyro_permutations.distributions.rounding_birkhoff.RoundingBirkhoff`).

    **Jacobian.** ``round`` is piecewise constant, so within a Voronoi cell the map is the
    scaling ``psi -> tau psi`` plus a constant: ``log |det J| = N^2 log tau`` for every matrix
    in the batch. Gradients flow through the ``tau psi`` term only (``round`` is detached).

    Shapes: ``psi`` and ``x`` are ``(..., N, N)``, any leading batch shape; float32 or float64.
    ``round`` solves one assignment problem per matrix with SciPy on CPU.

    :param float temperature: ``tau``, a real number in ``(0, 1)``.
    :param int cache_size: 0 or 1, as for any :class:`~torch.distributions.transforms.Transform`.
    :raises ValueError: if ``temperature`` is not in ``(0, 1)``.
    :raises TypeError: if ``temperature`` is not a number (or a 0-dim tensor).

    Example::

        >>> import torch
        >>> t = RoundingBirkhoffTransform(0.5)
        >>> psi = torch.tensor([[0.2, 0.9], [0.7, 0.1]])
        >>> x = t(psi)
        >>> x
        tensor([[0.1000, 0.9500],
                [0.8500, 0.0500]])
        >>> t.inv(x)
        tensor([[0.2000, 0.9000],
                [0.7000, 0.1000]])
        >>> t.log_abs_det_jacobian(psi, x)  # 4 log(0.5)
        tensor(-2.7726)

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, section 3.2.
    """

    domain = constraints.independent(constraints.real, 2)
    codomain = constraints.independent(constraints.real, 2)
    bijective = True
    sign = +1

    def __init__(self, temperature, cache_size=0):
        self.temperature = _check_temperature(temperature)
        super().__init__(cache_size=cache_size)

    def _call(self, psi):
        tau = self.temperature
        return tau * psi + (1.0 - tau) * _round_to_permutation(psi)

    def _inverse(self, x):
        tau = self.temperature
        return (x - (1.0 - tau) * _round_to_permutation(x)) / tau

    def log_abs_det_jacobian(self, x, y):
        n = x.shape[-1]
        value = n * n * math.log(self.temperature)
        return torch.full(x.shape[:-2], value, dtype=x.dtype, device=x.device)
