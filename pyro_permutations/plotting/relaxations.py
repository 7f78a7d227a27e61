"""[BP] Figure 1: relaxations of categorical variables and of permutations, side by side."""

import math
import numbers

import torch
from torch.distributions import RelaxedOneHotCategorical

from pyro_permutations.distributions import (
    RoundingBirkhoff,
    StickBreakingBirkhoff,
    StickBreakingSimplex,
)
from pyro_permutations.ops import all_permutations, perm_to_matrix
from pyro_permutations.ops._validation import is_int
from pyro_permutations.plotting.projections import birkhoff3_to_plane, simplex_to_plane

__all__ = ["plot_relaxations"]

#: Default temperatures, one row of panels each (rounding needs ``tau < 1``).
TEMPERATURES = (0.8, 0.4, 0.1)

COLUMNS = (
    "(a) Gumbel-softmax, simplex",
    "(b) stick-breaking, simplex",
    "(c) stick-breaking, Birkhoff $B_3$",
    "(d) rounding, Birkhoff $B_3$",
)


def _check_temperatures(temperatures):
    temperatures = tuple(temperatures)
    if not temperatures:
        raise ValueError("temperatures must hold at least one temperature")
    for tau in temperatures:
        if not isinstance(tau, numbers.Real) or isinstance(tau, bool) or not 0 < tau < 1:
            raise ValueError(
                f"temperatures must be real numbers in the open interval (0, 1) (rounding needs "
                f"tau < 1), got {tau!r}"
            )
    return tuple(float(t) for t in temperatures)


def _check_probs(probs):
    probs = torch.as_tensor(probs, dtype=torch.float64).detach().cpu()
    if probs.shape != (3,) or not bool((probs > 0).all()) or abs(float(probs.sum()) - 1) > 1e-6:
        raise ValueError(f"probs must be 3 positive probabilities summing to 1, got {probs}")
    return probs


def stick_breaking_loc(probs):
    """``loc`` (with ``scale = 1``) of the :class:`StickBreakingSimplex` whose zero-temperature
    limit is the categorical ``probs``: ``rho_n = pi_n / (1 - sum_{m<n} pi_m)``, ``loc_n =
    Phi^{-1}(rho_n)``."""
    left = 1 - torch.cumsum(probs, -1) + probs
    rho = (probs / left)[..., :-1]
    return torch.special.ndtri(rho)


def _simplex_grid(size):
    """Interior points of the lattice ``{(i, j, k) / size : i + j + k = size}``, ``(P, 3)``."""
    i, j = torch.meshgrid(torch.arange(1, size), torch.arange(1, size), indexing="ij")
    keep = i + j < size
    i, j = i[keep], j[keep]
    return torch.stack([i, j, size - i - j], -1).to(torch.float64) / size


def _colour_limits(log_density):
    """Colour range: the 2nd to 99.5th percentiles of the finite values (the densities of the
    low-temperature panels span hundreds of nats near the faces)."""
    finite = log_density[torch.isfinite(log_density)]
    if finite.numel() == 0:
        return -1.0, 1.0
    lo, hi = torch.quantile(finite, torch.tensor([0.02, 0.995], dtype=finite.dtype)).tolist()
    return lo, max(hi, lo + 1e-6)


def _draw_triangle(ax):
    corners = simplex_to_plane(torch.eye(3, dtype=torch.float64))
    closed = torch.cat([corners, corners[:1]])
    ax.plot(closed[:, 0], closed[:, 1], color="black", lw=0.8)
    for k, (px, py) in enumerate(corners.tolist()):
        ax.text(1.13 * px, 1.13 * py, f"$e_{k + 1}$", ha="center", va="center")


def _draw_hexagon(ax):
    perms = all_permutations(3)
    corners = birkhoff3_to_plane(perm_to_matrix(perms, dtype=torch.float64))
    order = torch.argsort(torch.atan2(corners[:, 1], corners[:, 0]))
    closed = torch.cat([corners[order], corners[order[:1]]])
    ax.plot(closed[:, 0], closed[:, 1], color="black", lw=0.8)
    for perm, (px, py) in zip(perms.tolist(), corners.tolist(), strict=True):
        label = "".join(str(p) for p in perm)
        ax.text(1.14 * px, 1.14 * py, label, ha="center", va="center", fontsize=8)


def _simplex_panel(fig, ax, dist, num_samples, grid):
    from matplotlib.tri import Triangulation

    points = simplex_to_plane(grid)
    log_density = dist.log_prob(grid).detach()
    lo, hi = _colour_limits(log_density)
    triangulation = Triangulation(points[:, 0].numpy(), points[:, 1].numpy())
    shaded = ax.tripcolor(
        triangulation,
        log_density.clamp(lo, hi).numpy(),
        shading="gouraud",
        cmap="viridis",
        vmin=lo,
        vmax=hi,
    )
    samples = simplex_to_plane(dist.sample((num_samples,)).to(torch.float64))
    ax.scatter(samples[:, 0], samples[:, 1], s=1.5, color="white", alpha=0.6, linewidths=0)
    _draw_triangle(ax)
    fig.colorbar(shaded, ax=ax, shrink=0.8, label="log density")


def _birkhoff_panel(fig, ax, dist, num_samples):
    x = dist.sample((num_samples,))
    log_density = dist.log_prob(x).detach()
    lo, hi = _colour_limits(log_density)
    order = torch.argsort(log_density)  # densest points drawn last, on top
    points = birkhoff3_to_plane(x[order].to(torch.float64))
    dots = ax.scatter(
        points[:, 0],
        points[:, 1],
        c=log_density[order].clamp(lo, hi).numpy(),
        s=2,
        cmap="viridis",
        vmin=lo,
        vmax=hi,
        linewidths=0,
    )
    _draw_hexagon(ax)
    fig.colorbar(dots, ax=ax, shrink=0.8, label="log density")


def plot_relaxations(
    temperatures=TEMPERATURES,
    num_samples=2000,
    *,
    seed=0,
    probs=(0.5, 0.3, 0.2),
    birkhoff_loc=None,
    rounding_scale=0.2,
    grid_size=150,
):
    r"""[BP] Figure 1: samples and densities of four relaxations, one row per temperature.

    Columns, left to right:

    (a) Gumbel-softmax on the 2-simplex: torch's
        :class:`~torch.distributions.RelaxedOneHotCategorical` with ``probs``;
    (b) stick-breaking on the 2-simplex:
        :class:`~pyro_permutations.distributions.StickBreakingSimplex` with ``scale = 1`` and
        the ``loc`` whose zero-temperature limit is the same categorical ``probs``
        (``loc_n = Phi^{-1}(rho_n)``, ``rho_n = pi_n / (1 - sum_{m<n} pi_m)``);
    (c) stick-breaking on the Birkhoff polytope ``B_3``:
        :class:`~pyro_permutations.distributions.StickBreakingBirkhoff` with ``loc = 0``,
        ``scale = 1`` (``Psi ~ N(0, I)``, as in [BP]'s picture);
    (d) rounding towards ``B_3``'s vertices:
        :class:`~pyro_permutations.distributions.RoundingBirkhoff` with ``loc = birkhoff_loc``
        and ``scale = rounding_scale``.

    In (a) and (b) the colours are the exact log density (with respect to Lebesgue measure on
    the first two coordinates) on a triangular grid of the simplex, drawn with
    :func:`~pyro_permutations.plotting.simplex_to_plane`, with the samples as white dots. In
    (c) and (d) each sample is a ``3 x 3`` matrix, drawn at its orthogonal projection
    :func:`~pyro_permutations.plotting.birkhoff3_to_plane` (the six permutation matrices form
    the labelled hexagon, ``012`` the identity) and coloured by its exact log density
    (stick-breaking's on the polytope's 4 free entries; rounding's on ``R^{3x3}``, whose
    samples leave the polytope). Colours are clipped to the 2nd-99.5th percentiles of each
    panel; each panel has its own colour bar.

    :param temperatures: a sequence of temperatures ``tau`` in ``(0, 1)``, one row each
        (rounding needs ``tau < 1``).
    :param int num_samples: samples drawn per panel.
    :param int seed: seed of the draws (the global torch RNG is restored afterwards).
    :param probs: the categorical relaxed in (a) and (b), 3 positive probabilities (a
        sequence or a tensor on any device: the figure is computed on the CPU).
    :param birkhoff_loc: ``(3, 3)`` mean of the rounding Gaussian in (d), a tensor on any
        device or nested sequences; default
        ``0.5 I + 0.3 P_{120} + 0.2 P_{201}`` (a point of ``B_3`` nearest the identity).
    :param float rounding_scale: standard deviation of the rounding Gaussian in (d).
    :param int grid_size: the simplex grid has ``grid_size - 1`` points per side.
    :returns: a :class:`matplotlib.figure.Figure` (no pyplot state; saving it is the caller's
        choice).
    :raises ValueError: for a temperature outside ``(0, 1)``, bad ``probs``, counts, ``seed``
        or ``rounding_scale``.

    Example::

        >>> from pyro_permutations.plotting import plot_relaxations
        >>> fig = plot_relaxations(temperatures=(0.5,), num_samples=50, grid_size=20)
        >>> len(fig.axes)  # 4 panels and their colour bars
        8

    References:

    [BP] Linderman, Mena, Cooper, Paninski, Cunningham. Reparameterizing the Birkhoff Polytope
    for Variational Permutation Inference. AISTATS 2018, Figure 1 and sections 3.1-3.2.
    """
    from matplotlib.figure import Figure

    temperatures = _check_temperatures(temperatures)
    probs = _check_probs(probs)
    for name, value in (("num_samples", num_samples), ("grid_size", grid_size)):
        if not is_int(value) or value < 3:
            raise ValueError(f"{name} must be an int >= 3, got {value!r}")
    num_samples, grid_size = int(num_samples), int(grid_size)
    if not is_int(seed) or not -(2**63) <= seed < 2**64:
        raise ValueError(
            f"seed must be an int (a Python or NumPy integer, not a bool) that "
            f"torch.manual_seed takes, in [-2**63, 2**64), got {seed!r}"
        )
    seed = int(seed)
    if (
        not isinstance(rounding_scale, numbers.Real)
        or isinstance(rounding_scale, bool)
        or not 0 < rounding_scale < math.inf
    ):
        raise ValueError(
            f"rounding_scale must be a positive finite real number (the standard deviation of "
            f"the rounding Gaussian in panel (d)), got {rounding_scale!r}"
        )
    rounding_scale = float(rounding_scale)
    if birkhoff_loc is None:
        perms = torch.tensor([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
        weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
        birkhoff_loc = (weights[:, None, None] * perm_to_matrix(perms, dtype=torch.float64)).sum(0)
    # The figure is computed on the CPU (matplotlib needs its arrays there), whatever the
    # device of the tensors given.
    birkhoff_loc = torch.as_tensor(birkhoff_loc, dtype=torch.float64).detach().cpu()
    if birkhoff_loc.shape != (3, 3):
        raise ValueError(f"birkhoff_loc must have shape (3, 3), got {tuple(birkhoff_loc.shape)}")

    grid = _simplex_grid(grid_size)
    sb_loc = stick_breaking_loc(probs)
    fig = Figure(figsize=(4 * 3.6, 3.1 * len(temperatures)), layout="constrained")
    axes = fig.subplots(len(temperatures), 4, squeeze=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for row, tau in enumerate(temperatures):
            f64 = torch.float64
            panels = [
                RelaxedOneHotCategorical(torch.tensor(tau, dtype=f64), probs=probs),
                StickBreakingSimplex(sb_loc, 1.0, tau),
                StickBreakingBirkhoff(
                    torch.zeros(2, 2, dtype=f64), torch.ones(2, 2, dtype=f64), tau
                ),
                RoundingBirkhoff(birkhoff_loc, rounding_scale, tau),
            ]
            for col, dist in enumerate(panels):
                ax = axes[row, col]
                if col < 2:
                    _simplex_panel(fig, ax, dist, num_samples, grid)
                else:
                    _birkhoff_panel(fig, ax, dist, num_samples)
                ax.set_aspect("equal")
                ax.set_xlim(-1.25, 1.25)
                ax.set_ylim(-1.25 if col >= 2 else -0.75, 1.25)
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if row == 0:
                    ax.set_title(COLUMNS[col], fontsize=10)
                if col == 0:
                    ax.set_ylabel(f"$\\tau = {tau:g}$")
    return fig
