import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pyro_permutations.infer import (
    bhattacharyya_coefficient,
    bhattacharyya_distance,
    empirical_pmf,
    hellinger_distance,
    kl_divergence_pmf,
    plot_pmf_comparison,
    total_variation_distance,
)
from pyro_permutations.ops import all_permutations, perm_to_matrix, rank_to_perm


def random_pmf(k, generator=None, zeros=0):
    p = torch.rand(k, generator=generator, dtype=torch.float64)
    p[:zeros] = 0
    return p / p.sum()


def test_empirical_pmf_converges_for_perms_and_matrices():
    torch.manual_seed(0)
    n = 4
    truth = random_pmf(math.factorial(n))
    ranks = torch.multinomial(truth, 100_000, replacement=True)
    perms = rank_to_perm(ranks, n)
    pmf = empirical_pmf(perms)
    assert pmf.shape == (24,) and abs(pmf.sum().item() - 1) < 1e-12
    assert total_variation_distance(pmf, truth) < 0.02
    # Relaxed matrices are rounded to their nearest permutation first.
    noisy = perm_to_matrix(perms[:2000]) + 0.2 * torch.rand(2000, n, n)
    assert torch.equal(empirical_pmf(noisy), empirical_pmf(perms[:2000]))


def test_empirical_pmf_counts_by_brute_force_and_batches():
    torch.manual_seed(1)
    samples = torch.stack([torch.randperm(3) for _ in range(60)]).reshape(2, 30, 3)
    pmf = empirical_pmf(samples)
    assert pmf.shape == (2, 6)
    table = all_permutations(3).tolist()
    for b in range(2):
        for k, perm in enumerate(table):
            hits = sum(s == perm for s in samples[b].tolist())
            assert pmf[b, k].item() == pytest.approx(hits / 30)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.tensor([0, 1, 2]), "shape"),
        (torch.tensor([[0, 0, 2]]), "permutations"),
        (torch.rand(5, 3, 4), "matrices"),
        (torch.zeros(0, 3, dtype=torch.long), "no sample"),
        (torch.zeros(2, 11, dtype=torch.long) + torch.arange(11), "too large"),
        (torch.zeros(4, 0, dtype=torch.long), "N >= 1"),
        (torch.zeros(2, 1, 0, 0), "N >= 1"),
        (torch.full((2, 3, 3), math.nan), "samples contains NaN"),
        (torch.eye(3).expand(2, 3, 3).masked_fill(torch.eye(3, dtype=bool), math.inf), "infinite"),
        (torch.eye(3).expand(2, 3, 3).half(), "samples must have a floating-point dtype"),
    ],
)
def test_empirical_pmf_errors(bad, match):
    """Each error names the argument the caller passed, ``samples``."""
    with pytest.raises(ValueError, match=match) as error:
        empirical_pmf(bad)
    assert "samples" in str(error.value) and "scores" not in str(error.value)


def test_distances_against_definitions():
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        p, q = random_pmf(7, g, zeros=1), random_pmf(7, g)
        bc = sum(math.sqrt(a * b) for a, b in zip(p.tolist(), q.tolist()))
        assert bhattacharyya_coefficient(p, q).item() == pytest.approx(bc)
        assert bhattacharyya_distance(p, q).item() == pytest.approx(-math.log(bc))
        assert hellinger_distance(p, q).item() == pytest.approx(math.sqrt(1 - bc))
        half_l2 = math.sqrt(sum((math.sqrt(a) - math.sqrt(b)) ** 2 for a, b in zip(p, q)) / 2)
        assert hellinger_distance(p, q).item() == pytest.approx(half_l2)
        tv = 0.5 * sum(abs(a - b) for a, b in zip(p.tolist(), q.tolist()))
        assert total_variation_distance(p, q).item() == pytest.approx(tv)
        kl = sum(a * math.log(a / b) for a, b in zip(p.tolist(), q.tolist()) if a > 0)
        assert kl_divergence_pmf(p, q).item() == pytest.approx(kl)
        # Le Cam: H^2 <= TV <= sqrt(2) H.
        h = hellinger_distance(p, q).item()
        assert h**2 <= tv + 1e-12 and tv <= math.sqrt(2) * h + 1e-12


def test_distance_extremes_and_batches():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    assert torch.allclose(hellinger_distance(p, q), torch.tensor([1.0, 0.0]))
    assert torch.allclose(total_variation_distance(p, q), torch.tensor([1.0, 0.0]))
    assert torch.isinf(bhattacharyya_distance(p, q)[0]) and torch.isinf(kl_divergence_pmf(p, q)[0])
    assert kl_divergence_pmf(p, q)[1] == 0


@pytest.mark.parametrize(
    "p, q, match",
    [
        (torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5]), "sum to one"),
        (torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5]), "non-negative"),
        (torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.3, 0.5]), "same set"),
        (torch.tensor([1, 0]), torch.tensor([0.5, 0.5]), "floating"),
        (torch.full((5, 4), 0.25), torch.full((2, 4), 0.25), r"p \(5,\) and q \(2,\)"),
        (torch.full((2, 3, 4), 0.25), torch.full((2, 4), 0.25), r"p \(2, 3\) and q \(2,\)"),
        # The meta device does not mix with the CPU, as CUDA does not.
        (torch.full((4,), 0.25), torch.full((4,), 0.25, device="meta"), "p is on cpu but q is"),
    ],
)
@pytest.mark.parametrize(
    "distance",
    [
        bhattacharyya_coefficient,
        bhattacharyya_distance,
        hellinger_distance,
        kl_divergence_pmf,
        total_variation_distance,
    ],
)
def test_distance_errors(distance, p, q, match):
    """Each distance raises a ValueError naming ``p`` and ``q`` (batch shapes that do not
    broadcast included: torch's RuntimeError named neither)."""
    with pytest.raises(ValueError, match=match):
        distance(p, q)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_distances_on_cuda():
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.2, 0.6])
    for distance in [bhattacharyya_distance, hellinger_distance, total_variation_distance]:
        d = distance(p.cuda(), q.cuda())
        assert d.device.type == "cuda"
        torch.testing.assert_close(d.cpu(), distance(p, q))
        with pytest.raises(ValueError, match="p is on cuda:0 but q is on cpu"):
            distance(p.cuda(), q)


def test_plot_pmf_comparison():
    g = torch.Generator().manual_seed(3)
    truth, a, b = random_pmf(24, g), random_pmf(24, g), random_pmf(24, g)
    fig = plot_pmf_comparison(truth, {"a": a, "b": b}, top_k=5, title="N = 4")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * 6
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "truth" and labels[1] == f"a (H = {hellinger_distance(truth, a):.2f})"
    # The truth's bars are its largest probabilities, in order, then the rest.
    heights = [patch.get_height() for patch in ax.patches[:6]]
    top = torch.sort(truth, descending=True).values
    assert heights[:5] == pytest.approx(top[:5].tolist())
    assert heights[5] == pytest.approx(top[5:].sum().item())
    with pytest.raises(ValueError, match="shape"):
        plot_pmf_comparison(truth, {"a": a[:5]})
    assert len(plot_pmf_comparison(truth, {"a": a}, top_k=np.int64(2)).axes[0].patches) == 2 * 3
    for bad in (True, 0, 2.0):
        with pytest.raises(ValueError, match="top_k must be a positive int"):
            plot_pmf_comparison(truth, {"a": a}, top_k=bad)
