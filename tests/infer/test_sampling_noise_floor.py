"""sampling_noise_floor: the distance of an empirical pmf of S exact draws from its pmf."""

import pytest
import torch

from pyro_permutations.infer import (
    hellinger_distance,
    sampling_noise_floor,
    total_variation_distance,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_a_point_mass_has_no_noise():
    pmf = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    assert sampling_noise_floor(pmf, 7, generator=_gen()).item() == 0.0


def test_squared_hellinger_matches_its_large_sample_expansion():
    # E[H^2] = 1 - E[sum sqrt(p q)] ~ (K - 1) / (8 S) for S >> K (delta method).
    pmf = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.05, 0.2], dtype=torch.float64)
    s = 20_000

    def squared(p, q):
        return hellinger_distance(p, q) ** 2

    got = sampling_noise_floor(pmf, s, distance=squared, repeats=400, generator=_gen(1))
    assert got.item() == pytest.approx((6 - 1) / (8 * s), rel=0.15)


def test_total_variation_matches_a_direct_monte_carlo():
    # The same quantity computed the slow, obvious way, on fresh draws.
    pmf = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    g = _gen(2)
    direct = []
    for _ in range(2000):
        counts = torch.bincount(torch.multinomial(pmf, 50, True, generator=g), minlength=3)
        direct.append(total_variation_distance(pmf, counts.double() / 50))
    got = sampling_noise_floor(
        pmf, 50, distance=total_variation_distance, repeats=2000, generator=g
    )
    assert got.item() == pytest.approx(torch.stack(direct).mean().item(), abs=0.005)


def test_batched_and_shrinks_with_more_samples():
    pmf = torch.softmax(torch.randn(2, 3, 24, generator=_gen(3)), -1)
    few = sampling_noise_floor(pmf, 100, generator=_gen(4))
    many = sampling_noise_floor(pmf, 10_000, generator=_gen(5))
    assert few.shape == many.shape == (2, 3)
    assert few.dtype == pmf.dtype
    assert bool((many < few).all())
    assert sampling_noise_floor(pmf[:0], 10).shape == (0, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"num_samples": 2.5}, "num_samples must be a positive integer"),
        ({"num_samples": True}, "num_samples must be a positive integer"),
        ({"num_samples": 10, "repeats": 0}, "repeats must be a positive integer"),
    ],
)
def test_counts_must_be_positive_integers(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sampling_noise_floor(torch.tensor([0.5, 0.5]), **kwargs)


def test_the_pmf_must_be_one():
    with pytest.raises(ValueError, match="must sum to one"):
        sampling_noise_floor(torch.tensor([0.5, 0.4]), 10)
    with pytest.raises(ValueError, match="floating tensor"):
        sampling_noise_floor(torch.tensor([1, 0]), 10)
