"""The planar maps behind [BP] Figure 1 and the figure function itself."""

import math

import numpy as np
import pytest
import torch

from pyro_permutations.distributions import StickBreakingSimplex
from pyro_permutations.ops import all_permutations, perm_to_matrix
from pyro_permutations.plotting import birkhoff3_to_plane, plot_relaxations, simplex_to_plane
from pyro_permutations.plotting.relaxations import stick_breaking_loc

F64 = torch.float64


def _coefficients(project, shape):
    """The linear map as a (numel, 2) matrix, from the images of the unit vectors."""
    basis = torch.eye(math.prod(shape), dtype=F64).reshape(-1, *shape)
    return project(basis)


def test_simplex_to_plane_is_an_equilateral_triangle():
    corners = simplex_to_plane(torch.eye(3, dtype=F64))
    sides = torch.pdist(corners)
    torch.testing.assert_close(sides, torch.full((3,), math.sqrt(3), dtype=F64))
    torch.testing.assert_close(
        simplex_to_plane(torch.full((3,), 1 / 3, dtype=F64)).abs().sum(),
        torch.tensor(0.0, dtype=F64),
    )
    x = torch.rand(5, 4, 3, dtype=F64)
    assert simplex_to_plane(x).shape == (5, 4, 2)
    with pytest.raises(ValueError, match="x"):
        simplex_to_plane(torch.zeros(4))


def test_birkhoff3_to_plane_is_an_orthogonal_projection_onto_a_hexagon():
    c = _coefficients(birkhoff3_to_plane, (3, 3))  # (9, 2)
    torch.testing.assert_close(c.T @ c, torch.eye(2, dtype=F64))  # orthonormal
    # Directions within the polytope: rows and columns of each coefficient matrix sum to 0.
    m = c.T.reshape(2, 3, 3)
    torch.testing.assert_close(m.sum(-1), torch.zeros(2, 3, dtype=F64))
    torch.testing.assert_close(m.sum(-2), torch.zeros(2, 3, dtype=F64))
    perms = all_permutations(3)
    points = birkhoff3_to_plane(perm_to_matrix(perms, dtype=F64))
    torch.testing.assert_close(points.norm(dim=-1), torch.ones(6, dtype=F64))
    torch.testing.assert_close(points[0], torch.tensor([0.0, 1.0], dtype=F64))  # identity on top
    angles = torch.atan2(points[:, 1], points[:, 0])
    order = torch.argsort(angles)
    gaps = torch.diff(torch.cat([angles[order], angles[order[:1]] + 2 * math.pi]))
    torch.testing.assert_close(gaps, torch.full((6,), math.pi / 3, dtype=F64))
    # Even and odd permutations alternate around the hexagon.
    parity = torch.linalg.det(perm_to_matrix(perms, dtype=F64)).sign()
    assert (parity[order] * parity[order.roll(1)] == -1).all()
    assert birkhoff3_to_plane(torch.zeros(7, 3, 3)).shape == (7, 2)
    with pytest.raises(ValueError, match="x"):
        birkhoff3_to_plane(torch.zeros(4, 4))


def test_stick_breaking_loc_relaxes_the_given_categorical():
    probs = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    d = StickBreakingSimplex(stick_breaking_loc(probs), 1.0, 0.5)
    torch.testing.assert_close(d.zero_temperature_probs(), probs)


def test_plot_relaxations_layout_and_rng_restored():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fig = plot_relaxations(temperatures=(0.6, 0.2), num_samples=30, grid_size=12, seed=1)
    assert torch.equal(torch.rand(3), expected)  # the global RNG is left as it was
    assert len(fig.axes) == 2 * 4 * 2  # every panel has its colour bar
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4 and titles[0].startswith("(a)") and titles[3].startswith("(d)")
    assert [ax.get_ylabel() for ax in fig.axes[:8:4]] == ["$\\tau = 0.6$", "$\\tau = 0.2$"]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperatures": (0.5, 1.0)}, "temperatures"),
        ({"temperatures": ()}, "temperatures"),
        ({"temperatures": (0.0,)}, "temperatures"),
        ({"probs": (0.5, 0.5)}, "probs"),
        ({"probs": (0.5, 0.6, -0.1)}, "probs"),
        ({"num_samples": 0}, "num_samples"),
        ({"grid_size": 2.5}, "grid_size"),
        ({"birkhoff_loc": torch.eye(4)}, "birkhoff_loc"),
        ({"num_samples": True}, "num_samples"),
        ({"grid_size": np.float64(10)}, "grid_size"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"rounding_scale": -1.0}, "rounding_scale"),
        ({"rounding_scale": 0}, "rounding_scale"),
        ({"rounding_scale": float("inf")}, "rounding_scale"),
        ({"rounding_scale": True}, "rounding_scale"),
    ],
)
def test_plot_relaxations_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        plot_relaxations(**kwargs)


def test_plot_relaxations_takes_numpy_numbers():
    """Counts and the seed may be NumPy integers and rounding_scale any real number, as
    everywhere in the library: the figure is the one of the Python numbers."""
    kwargs = {"temperatures": (0.5,), "num_samples": 20, "grid_size": 6, "seed": 3}
    fig = plot_relaxations(
        temperatures=(np.float32(0.5),),
        num_samples=np.int64(20),
        grid_size=np.int32(6),
        seed=np.int64(3),
        rounding_scale=np.float32(0.25),
    )
    expected = plot_relaxations(rounding_scale=0.25, **kwargs)
    for ax, ax_expected in zip(fig.axes[:4], expected.axes[:4], strict=True):
        for dots, dots_expected in zip(ax.collections, ax_expected.collections, strict=True):
            assert (dots.get_offsets() == dots_expected.get_offsets()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_plot_relaxations_takes_cuda_probs_and_birkhoff_loc():
    """CUDA arguments are moved to the CPU up front: the figure equals the CPU one."""
    probs = torch.tensor([0.6, 0.3, 0.1])
    loc = torch.full((3, 3), 1 / 3)
    kwargs = {"temperatures": (0.5,), "num_samples": 20, "grid_size": 6, "seed": 2}
    fig = plot_relaxations(probs=probs.cuda(), birkhoff_loc=loc.cuda(), **kwargs)
    expected = plot_relaxations(probs=probs, birkhoff_loc=loc, **kwargs)
    assert len(fig.axes) == len(expected.axes) == 8
    for ax, ax_expected in zip(fig.axes[:4], expected.axes[:4], strict=True):
        for dots, dots_expected in zip(ax.collections, ax_expected.collections, strict=True):
            assert (dots.get_offsets() == dots_expected.get_offsets()).all()
