"""Simulated recordings of several worms from the real connectome ([BP] section 6).

The true activity of worm ``j`` in connectome order follows a linear Gaussian system with the
weights ``W`` shared by all worms and nonzero only on the connectome's edges,

.. math::

    z_t = W z_{t-1} + \\epsilon_t, \\qquad \\epsilon_t \\sim \\mathcal{N}(0, \\sigma^2 I),

and each worm's neurons are recorded in an unknown order: ``y_t[m] = z_t[truth[j, m]]``, i.e.
``y_t = X z_t`` with ``X = perm_to_matrix(truth[j])`` (``X[m, n] = 1``: observed neuron ``m``
is connectome neuron ``n``), so that ``y_t = X W X^T y_{t-1} + eps_t``.

**Stability.** ``W = c * (A * G)`` with ``G`` standard Gaussian on every directed edge (``A``
is symmetric, ``W`` is not) and ``c = rho / r(A * G)``, ``r`` the spectral radius: the
simulated system has spectral radius exactly ``rho < 1`` (0.9 by default), so it is stable and
the activity neither dies out nor blows up. The model's prior is the standard Gaussian on ``G``
with the same known ``c`` (``W = c G``).

Each recording starts from the stationary regime: ``burn_in`` steps from ``z = 0`` are run and
dropped.
"""

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Recordings:
    """:ivar weights: ``(N, N)`` the true ``W`` (connectome order).
    :ivar scale: the constant ``c`` of ``W = c G``.
    :ivar truth: ``(J, N)`` long, ``truth[j, m]`` = label of observed neuron ``m``.
    :ivar activity: ``(J, T, N)`` recordings ``y`` in observed order.
    :ivar sigma: noise standard deviation.
    """

    weights: torch.Tensor
    scale: float
    truth: torch.Tensor
    activity: torch.Tensor
    sigma: float


def edge_index(adjacency):
    """Rows and columns of the directed free entries of ``W``: every ``(i, j)`` with
    ``A[i, j] = 1`` (both directions of each undirected edge), in row-major order."""
    a = torch.as_tensor(np.asarray(adjacency), dtype=torch.bool)
    return a.nonzero(as_tuple=True)


def simulate(adjacency, worms, steps, generator, sigma=1.0, rho=0.9, burn_in=100):
    """Draw ``W`` and ``worms`` recordings of ``steps`` time steps each.

    :param adjacency: ``(N, N)`` bool, symmetric, zero diagonal.
    :param int worms: ``J``.
    :param int steps: ``T``, time steps per recording.
    :param torch.Generator generator: the random stream.
    :returns: :class:`Recordings` (float64).
    """
    if not 0 < rho < 1:
        raise ValueError(f"rho must be in (0, 1) for stable dynamics, got {rho!r}")
    a = torch.as_tensor(np.asarray(adjacency), dtype=torch.bool)
    n = a.shape[0]
    rows, cols = edge_index(a)
    g = torch.randn(rows.numel(), generator=generator, dtype=torch.float64)
    raw = torch.zeros(n, n, dtype=torch.float64)
    raw[rows, cols] = g
    radius = float(torch.linalg.eigvals(raw).abs().max())
    scale = rho / radius
    weights = scale * raw
    truth = torch.stack([torch.randperm(n, generator=generator) for _ in range(worms)])
    z = torch.zeros(worms, n, dtype=torch.float64)
    out = torch.empty(worms, steps, n, dtype=torch.float64)
    for t in range(burn_in + steps):
        z = z @ weights.T + sigma * torch.randn(worms, n, generator=generator, dtype=z.dtype)
        if t >= burn_in:
            out[:, t - burn_in] = z
    # Observed order: y[m] = z[truth[m]].
    activity = torch.gather(out, 2, truth[:, None, :].expand(worms, steps, n))
    return Recordings(weights, scale, truth, activity, sigma)
