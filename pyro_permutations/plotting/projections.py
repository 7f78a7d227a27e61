"""Linear maps that draw the 2-simplex and the Birkhoff polytope ``B_3`` in the plane."""

import math

import torch

__all__ = ["birkhoff3_to_plane", "simplex_to_plane"]


def simplex_to_plane(x):
    """Barycentric coordinates ``(..., 3)`` to points ``(..., 2)`` of an equilateral triangle.

    ``x = (x_1, x_2, x_3)`` maps to ``x_1 v_1 + x_2 v_2 + x_3 v_3`` with the vertices ``v_k``
    on the unit circle at 90, 210 and 330 degrees: ``e_1`` at the top, ``e_2`` bottom left,
    ``e_3`` bottom right, the centre ``(1/3, 1/3, 1/3)`` at the origin. The map is affine on
    the simplex (and linear on ``R^3``), so it preserves ratios of areas: a density on the
    simplex is drawn up to a constant factor.

    :param torch.Tensor x: ``(..., 3)``, floating.
    :returns: ``(..., 2)``, same dtype and device.

    Example::

        >>> simplex_to_plane(torch.eye(3))
        tensor([[ 0.0000,  1.0000],
                [-0.8660, -0.5000],
                [ 0.8660, -0.5000]])
    """
    if x.shape[-1:] != (3,):
        raise ValueError(f"x must have shape (..., 3), got {tuple(x.shape)}")
    h = math.sqrt(3) / 2
    vertices = torch.tensor([[0.0, 1.0], [-h, -0.5], [h, -0.5]], dtype=x.dtype, device=x.device)
    return x @ vertices


def birkhoff3_to_plane(x):
    r"""``3 x 3`` matrices ``(..., 3, 3)`` to points ``(..., 2)``: the orthogonal projection onto
    the plane in which the six permutation matrices form a regular hexagon.

    With ``omega = exp(2 pi i / 3)`` and 0-indexed ``i, j``, the complex coordinate is

    .. math::

        z(X) = \frac{i}{3} \sum_{i,j} X_{ij}
               \bigl(\omega^{i - j} + e^{i \pi / 3}\, \omega^{i + j}\bigr).

    Its real and imaginary parts have orthonormal coefficient vectors in ``R^9`` whose rows
    and columns sum to zero, so ``z`` is the orthogonal projection onto a plane of the 4-D
    space of directions of ``B_3`` (distances in that plane are distances in ``R^{3x3}``;
    matrices off the polytope are projected the same way). The centre ``J / 3`` maps to
    ``0``, the identity to ``(0, 1)``; the even permutations (the identity and the two
    3-cycles) and the odd ones (the three transpositions) alternate around the unit circle,
    60 degrees apart, so ``B_3`` is drawn as a regular hexagon.

    Why not PCA: the covariance of the six centred vertices is invariant under permuting rows
    and columns, which acts irreducibly on that 4-D space, so it is a multiple of the identity
    there and no plane is preferred.

    :param torch.Tensor x: ``(..., 3, 3)``, floating.
    :returns: ``(..., 2)``, same dtype and device.

    Example::

        >>> from pyro_permutations.ops import all_permutations, perm_to_matrix
        >>> points = birkhoff3_to_plane(perm_to_matrix(all_permutations(3), dtype=torch.float64))
        >>> points.norm(dim=-1)
        tensor([1.0000, 1.0000, 1.0000, 1.0000, 1.0000, 1.0000], dtype=torch.float64)
        >>> birkhoff3_to_plane(torch.full((3, 3), 1 / 3)).abs().max() < 1e-6
        tensor(True)
    """
    if x.shape[-2:] != (3, 3):
        raise ValueError(f"x must have shape (..., 3, 3), got {tuple(x.shape)}")
    idx = torch.arange(3, dtype=torch.float64)
    diff = 2 * math.pi / 3 * (idx[:, None] - idx[None, :])
    summ = 2 * math.pi / 3 * (idx[:, None] + idx[None, :]) + math.pi / 3
    # (i / 3) * (w^{i-j} + e^{i pi/3} w^{i+j}): real part -Im(...), imaginary part Re(...).
    real = -(diff.sin() + summ.sin()) / 3
    imag = (diff.cos() + summ.cos()) / 3
    coefficients = torch.stack([real, imag], -1).to(dtype=x.dtype, device=x.device)  # (3, 3, 2)
    return torch.einsum("...ij,ijk->...k", x, coefficients)
