import numpy as np
import pytest
import torch

from pyro_permutations.nn import (
    SinkhornNetwork,
    crop_to_grid,
    image_to_pieces,
    pieces_to_image,
    reconstruct,
    resize_to_grid,
    scramble,
)
from pyro_permutations.ops import invert_perm, perm_to_matrix


def random_perms(batch, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, generator=generator).argsort(dim=-1)


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 2), (4, 4), (7, 7), (2, 4), (4, 1)])
@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_pieces_to_image_inverts_image_to_pieces(rows, cols, batch):
    images = torch.randn(*batch, 2, 28, 28, dtype=torch.float64)
    pieces = image_to_pieces(images, rows, cols)
    assert pieces.shape == (*batch, rows * cols, 2, 28 // rows, 28 // cols)
    assert torch.equal(pieces_to_image(pieces, rows, cols), images)
    again = torch.randn_like(pieces)
    assert torch.equal(image_to_pieces(pieces_to_image(again, rows, cols), rows, cols), again)


def test_pieces_are_the_raster_order_tiles():
    images = torch.randn(3, 2, 12, 8)
    rows, cols = 3, 2
    pieces = image_to_pieces(images, rows, cols)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        assert torch.equal(pieces[:, k], images[:, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4])


def test_scramble_then_reconstruct_with_true_perm_restores_image():
    images = torch.rand(5, 1, 28, 28)
    pieces = image_to_pieces(images, 4)
    perm = random_perms(5, 16)
    scrambled = scramble(pieces, perm)
    assert not torch.equal(scrambled, pieces)
    # hard permutation, permutation matrix (soft path) and the true ordering all agree
    assert torch.equal(pieces_to_image(reconstruct(scrambled, perm), 4), images)
    soft = reconstruct(scrambled, perm_to_matrix(perm, dtype=torch.float32))
    assert torch.allclose(pieces_to_image(soft, 4), images)
    # scrambled = P ordered over the piece axis
    P = perm_to_matrix(perm, dtype=torch.float32)
    assert torch.allclose(scrambled.flatten(2), P @ pieces.flatten(2))
    # the inverse permutation scrambles back
    assert torch.equal(scramble(scrambled, invert_perm(perm)), pieces)


def test_scrambled_puzzle_is_solved_equivariantly():
    """A Sinkhorn network's reconstruction of a puzzle does not depend on the scrambling."""
    _ = torch.manual_seed(0)
    g1 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(49, 8), torch.nn.ReLU())
    net = SinkhornNetwork(g1, n=16, feature_dim=8).eval()
    pieces = image_to_pieces(torch.rand(2, 1, 28, 28), 4)
    a = scramble(pieces, random_perms(2, 16, seed=1))
    b = scramble(pieces, random_perms(2, 16, seed=2))
    assert torch.equal(net.reconstruct(a), net.reconstruct(b))


@pytest.mark.parametrize("grid,size", [(2, 28), (3, 27), (4, 28), (5, 25), (6, 24), (7, 28)])
def test_crop_to_grid_sizes_and_centre(grid, size):
    images = torch.arange(28.0 * 28).reshape(1, 1, 28, 28)
    cropped = crop_to_grid(images, grid)
    assert cropped.shape == (1, 1, size, size)
    top = (28 - size) // 2
    assert cropped[0, 0, 0, 0] == images[0, 0, top, top]
    assert image_to_pieces(cropped, grid).shape == (1, grid * grid, 1, size // grid, size // grid)


def test_errors():
    with pytest.raises(ValueError, match="does not divide.*crop_to_grid"):
        image_to_pieces(torch.zeros(1, 28, 28), 3)
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\)"):
        image_to_pieces(torch.zeros(28, 28), 2)
    with pytest.raises(ValueError, match="rows must be a positive int"):
        image_to_pieces(torch.zeros(1, 28, 28), 0)
    for f in (crop_to_grid, resize_to_grid, image_to_pieces):
        for bad in (True, 2.0, np.float64(2)):
            with pytest.raises(ValueError, match="rows must be a positive int"):
                f(torch.zeros(1, 28, 28), bad)
            with pytest.raises(ValueError, match="cols must be a positive int"):
                f(torch.zeros(1, 28, 28), 2, bad)
    with pytest.raises(ValueError, match="rows must be a positive int"):
        pieces_to_image(torch.zeros(1, 1, 2, 2), True)
    with pytest.raises(ValueError, match="n=4"):
        pieces_to_image(torch.zeros(9, 1, 2, 2), 2)
    with pytest.raises(ValueError, match="smaller than"):
        crop_to_grid(torch.zeros(1, 2, 2), 3)
    with pytest.raises(ValueError, match="matching ordered"):
        scramble(torch.zeros(2, 3, 1), torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="permutations of"):
        scramble(torch.zeros(1, 3, 1), torch.tensor([[0, 0, 2]]))


@pytest.mark.parametrize("grid,size", [(2, 28), (3, 30), (4, 28), (5, 30), (6, 30)])
def test_resize_to_grid_sizes(grid, size):
    images = torch.rand(2, 3, 1, 28, 28)
    resized = resize_to_grid(images, grid)
    assert resized.shape == (2, 3, 1, size, size)
    if size == 28:
        assert resized is images  # nothing to do: no interpolation
    else:
        # bilinear interpolation stays within the range and keeps the mean roughly
        assert images.min() <= resized.min() and resized.max() <= images.max()
        assert torch.allclose(resized.mean((-1, -2)), images.mean((-1, -2)), atol=0.02)
    assert resize_to_grid(torch.zeros(1, 28, 21), 3, 2).shape == (1, 30, 22)


def test_grid_sizes_may_be_numpy_integers():
    """rows and cols are checked like every size in the library: NumPy integers are ints."""
    images = torch.rand(2, 1, 28, 21, generator=torch.Generator().manual_seed(0))
    rows, cols = np.int64(4), np.int32(7)
    assert torch.equal(crop_to_grid(images, rows, cols), crop_to_grid(images, 4, 7))
    assert torch.equal(resize_to_grid(images, np.int64(3)), resize_to_grid(images, 3))
    pieces = image_to_pieces(images, rows, cols)
    assert torch.equal(pieces, image_to_pieces(images, 4, 7)) and pieces.shape[1] == 28
    assert torch.equal(pieces_to_image(pieces, rows, cols), images)
