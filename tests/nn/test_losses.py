import pytest
import torch

from pyro_permutations.nn import reconstruction_loss
from pyro_permutations.ops import perm_to_matrix


def random_perms(shape, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape) + (n,), generator=generator).argsort(dim=-1)


def py_loss(ordered, scrambled, P):
    """Mean over b, j, d of (ordered[b, j, d] - sum_i P[b, i, j] scrambled[b, i, d])^2."""
    B, n, D = ordered.shape
    total = 0.0
    for b in range(B):
        for j in range(n):
            for d in range(D):
                rec = sum(float(P[b, i, j]) * float(scrambled[b, i, d]) for i in range(n))
                total += (float(ordered[b, j, d]) - rec) ** 2
    return total / (B * n * D)


def test_matches_brute_force():
    generator = torch.Generator().manual_seed(0)
    ordered = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    scrambled = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    P = torch.rand(3, 4, 4, generator=generator, dtype=torch.float64)
    loss = reconstruction_loss(ordered, scrambled, P)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(py_loss(ordered, scrambled, P), rel=1e-12)


def test_zero_at_true_permutation():
    generator = torch.Generator().manual_seed(1)
    ordered = torch.randn(5, 6, 3, generator=generator)
    perm = random_perms((5,), 6, seed=2)
    scrambled = torch.gather(ordered, 1, perm.unsqueeze(-1).expand_as(ordered))
    assert reconstruction_loss(ordered, scrambled, perm).item() == 0.0
    assert reconstruction_loss(ordered, scrambled, perm_to_matrix(perm)).item() == 0.0
    wrong = perm.roll(1, dims=-1)
    assert reconstruction_loss(ordered, scrambled, wrong).item() > 0


def test_sample_axis_is_averaged():
    generator = torch.Generator().manual_seed(3)
    ordered = torch.randn(2, 4, 1, generator=generator, dtype=torch.float64)
    scrambled = torch.randn(2, 4, 1, generator=generator, dtype=torch.float64)
    P = torch.rand(5, 2, 4, 4, generator=generator, dtype=torch.float64)
    per_sample = torch.stack([reconstruction_loss(ordered, scrambled, p) for p in P])
    assert torch.allclose(reconstruction_loss(ordered, scrambled, P), per_sample.mean())


def test_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(torch.zeros(2, 3, 1), torch.zeros(2, 3, 2), random_perms((2,), 3))
