"""Jigsaw puzzles: cut images into a grid of pieces, scramble them, and put them back.

Pieces are numbered in raster order: piece ``k`` of a ``rows x cols`` grid is the tile at grid
row ``k // cols`` and grid column ``k % cols``. Images are ``(..., C, H, W)`` and pieces
``(..., n, C, h, w)`` with ``n = rows * cols``, ``h = H / rows``, ``w = W / cols``: the piece
axis comes right after the batch axes, the layout :class:`~pyro_permutations.nn.SinkhornNetwork`
and :func:`~pyro_permutations.nn.reconstruct` expect.

Scrambling follows the library convention: with ``perm[i] = j`` (``P[i, perm[i]] = 1``),
scrambled piece ``i`` belongs at position ``j``, so ``scrambled = P ordered`` and
``reconstruct(scrambled, perm)`` (``P^T scrambled``) gives the ordered pieces back.
"""

import torch

from pyro_permutations.ops._validation import check_perm, check_size, check_tensor

__all__ = ["crop_to_grid", "image_to_pieces", "pieces_to_image", "resize_to_grid", "scramble"]


def _grid(rows, cols):
    """``rows`` and ``cols`` (default ``rows``) as Python ints, each a positive Python or NumPy
    integer (not a bool)."""
    rows = check_size(rows, "rows", "the grid rows")
    cols = rows if cols is None else check_size(cols, "cols", "the grid columns")
    return rows, cols


def _check_images(images):
    check_tensor(images, "images")
    if images.dim() < 3:
        raise ValueError(
            f"images must have shape (..., C, H, W), got shape {tuple(images.shape)}; add a "
            f"channel axis to grey images (images.unsqueeze(-3))"
        )


def crop_to_grid(images, rows, cols=None):
    """Crop images at their centre to the largest size a ``rows x cols`` grid divides.

    ``H`` becomes ``rows * (H // rows)`` and ``W`` becomes ``cols * (W // cols)``; the rows
    (columns) removed are split between the two sides, the extra one (if odd) at the bottom
    (right). For example a 28 x 28 MNIST digit becomes 27 x 27 for a 3 x 3 grid, 25 x 25 for
    5 x 5 and 24 x 24 for 6 x 6; grids that divide 28 leave it unchanged.

    :param torch.Tensor images: ``(..., C, H, W)`` with ``H >= rows`` and ``W >= cols``.
    :param int rows: grid rows.
    :param int cols: grid columns (default ``rows``).
    :returns: a view of shape ``(..., C, rows * (H // rows), cols * (W // cols))``.

    Example::

        >>> crop_to_grid(torch.zeros(2, 1, 28, 28), 3).shape
        torch.Size([2, 1, 27, 27])
    """
    rows, cols = _grid(rows, cols)
    _check_images(images)
    height, width = images.shape[-2:]
    if height < rows or width < cols:
        raise ValueError(
            f"images of size {height} x {width} are smaller than the {rows} x {cols} grid"
        )
    new_h, new_w = rows * (height // rows), cols * (width // cols)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return images[..., top : top + new_h, left : left + new_w]


def resize_to_grid(images, rows, cols=None, mode="bilinear"):
    """Resize images to the smallest size at least their own that a ``rows x cols`` grid
    divides.

    ``H`` becomes ``rows * ceil(H / rows)`` and ``W`` becomes ``cols * ceil(W / cols)``, by
    :func:`torch.nn.functional.interpolate` (``align_corners=False``). For example a 28 x 28
    MNIST digit becomes 30 x 30 for a 3 x 3, 5 x 5 or 6 x 6 grid; grids that divide the
    size leave the images unchanged (no interpolation). Unlike :func:`crop_to_grid` nothing is
    cut off, and interpolation spreads a stroke that ends near a piece's border a little into
    the next piece.

    :param torch.Tensor images: floating ``(..., C, H, W)``.
    :param int rows: grid rows.
    :param int cols: grid columns (default ``rows``).
    :param str mode: interpolation mode of :func:`~torch.nn.functional.interpolate`.
    :returns: images of shape ``(..., C, rows * ceil(H / rows), cols * ceil(W / cols))``.

    Example::

        >>> resize_to_grid(torch.zeros(2, 1, 28, 28), 3).shape
        torch.Size([2, 1, 30, 30])
    """
    rows, cols = _grid(rows, cols)
    _check_images(images)
    *batch, channels, height, width = images.shape
    size = (rows * -(-height // rows), cols * -(-width // cols))
    if size == (height, width):
        return images
    flat = images.reshape(-1, channels, height, width)
    kwargs = {} if mode in ("nearest", "area", "nearest-exact") else {"align_corners": False}
    out = torch.nn.functional.interpolate(flat, size=size, mode=mode, **kwargs)
    return out.reshape(*batch, channels, *size)


def image_to_pieces(images, rows, cols=None):
    """Cut images into a ``rows x cols`` grid of equal pieces, in raster order.

    .. math::

        \\mathrm{pieces}[\\ldots, k, c, a, b] = \\mathrm{images}[\\ldots, c,\\,
            (k \\,//\\, \\mathrm{cols})\\, h + a,\\ (k \\bmod \\mathrm{cols})\\, w + b]

    The inverse is :func:`pieces_to_image`.

    :param torch.Tensor images: ``(..., C, H, W)``; ``rows`` must divide ``H`` and ``cols``
        divide ``W`` (see :func:`crop_to_grid` or :func:`resize_to_grid` otherwise).
    :param int rows: grid rows.
    :param int cols: grid columns (default ``rows``).
    :returns: pieces of shape ``(..., rows * cols, C, H // rows, W // cols)``.

    Example::

        >>> image = torch.arange(16.0).reshape(1, 4, 4)  # C=1, H=W=4
        >>> image_to_pieces(image, 2)[1]  # top-right piece
        tensor([[[2., 3.],
                 [6., 7.]]])
    """
    rows, cols = _grid(rows, cols)
    _check_images(images)
    *batch, channels, height, width = images.shape
    if height % rows or width % cols:
        raise ValueError(
            f"a {rows} x {cols} grid does not divide images of size {height} x {width}; crop "
            f"them first (crop_to_grid) or resize them (resize_to_grid)"
        )
    h, w = height // rows, width // cols
    x = images.reshape(*batch, channels, rows, h, cols, w)
    k = len(batch)
    # (..., C, rows, h, cols, w) -> (..., rows, cols, C, h, w)
    x = x.permute(*range(k), k + 1, k + 3, k, k + 2, k + 4)
    return x.reshape(*batch, rows * cols, channels, h, w)


def pieces_to_image(pieces, rows, cols=None):
    """Put a ``rows x cols`` grid of pieces, in raster order, back into images.

    The inverse of :func:`image_to_pieces`: ``pieces_to_image(image_to_pieces(x, r, c), r, c)``
    equals ``x``. Soft reconstructions (weighted averages of pieces, as given by
    :func:`~pyro_permutations.nn.reconstruct` with a doubly-stochastic matrix) are assembled the
    same way.

    :param torch.Tensor pieces: ``(..., rows * cols, C, h, w)``.
    :param int rows: grid rows.
    :param int cols: grid columns (default ``rows``).
    :returns: images of shape ``(..., C, rows * h, cols * w)``.

    Example::

        >>> x = torch.rand(3, 1, 6, 6)
        >>> torch.equal(pieces_to_image(image_to_pieces(x, 3), 3), x)
        True
    """
    rows, cols = _grid(rows, cols)
    check_tensor(pieces, "pieces")
    if pieces.dim() < 4 or pieces.shape[-4] != rows * cols:
        raise ValueError(
            f"pieces must have shape (..., n={rows * cols}, C, h, w) for a {rows} x {cols} "
            f"grid, got shape {tuple(pieces.shape)}"
        )
    *batch, _, channels, h, w = pieces.shape
    k = len(batch)
    x = pieces.reshape(*batch, rows, cols, channels, h, w)
    # (..., rows, cols, C, h, w) -> (..., C, rows, h, cols, w)
    x = x.permute(*range(k), k + 2, k, k + 3, k + 1, k + 4)
    return x.reshape(*batch, channels, rows * h, cols * w)


def scramble(ordered, perm):
    """Scramble ordered pieces: scrambled piece ``i`` is the ordered piece at ``perm[i]``.

    .. math::

        \\tilde x_i = x_{\\mathrm{perm}(i)}, \\qquad \\text{i.e. } \\tilde x = P x
        \\text{ with } P_{i, \\mathrm{perm}(i)} = 1.

    This is the convention of :func:`~pyro_permutations.nn.reconstruct`, which undoes it:
    ``reconstruct(scramble(x, perm), perm)`` equals ``x``, and ``perm`` is the target a
    :class:`~pyro_permutations.nn.SinkhornNetwork` should infer from the scrambled pieces.

    :param torch.Tensor ordered: pieces ``(B, n, *piece_shape)``.
    :param torch.Tensor perm: integer permutations ``(B, n)``.
    :returns: scrambled pieces, same shape and dtype as ``ordered``.

    Example::

        >>> ordered = torch.tensor([[10.0, 20.0, 30.0]]).unsqueeze(-1)
        >>> scramble(ordered, torch.tensor([[2, 0, 1]])).squeeze(-1)
        tensor([[30., 10., 20.]])
    """
    check_tensor(ordered, "ordered")
    check_perm(perm, "perm")
    if ordered.dim() < 2 or perm.shape != ordered.shape[:2]:
        raise ValueError(
            f"perm must have shape (B, n) matching ordered's first two axes, got perm "
            f"{tuple(perm.shape)} and ordered {tuple(ordered.shape)}"
        )
    flat = ordered.reshape(ordered.shape[:2] + (-1,))
    index = perm.long().to(ordered.device).unsqueeze(-1).expand(flat.shape)
    return torch.gather(flat, 1, index).reshape(ordered.shape)
