import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.nn import (
    kendall_tau_mean,
    l1_error,
    l2_error,
    prop_any_wrong,
    prop_wrong,
)


def random_perms(shape, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape) + (n,), generator=generator).argsort(dim=-1)


# Pure-Python definitions, one row at a time.


def py_prop_wrong(inferred, true):
    rows = [[a != b for a, b in zip(p, q)] for p, q in zip(inferred, true)]
    return sum(sum(r) for r in rows) / sum(len(r) for r in rows)


def py_prop_any_wrong(inferred, true):
    return sum(any(a != b for a, b in zip(p, q)) for p, q in zip(inferred, true)) / len(true)


def py_kendall_tau_mean(inferred, true):
    taus = [scipy.stats.kendalltau(p, q).statistic for p, q in zip(inferred, true)]
    return sum(taus) / len(taus)


def close_pair(n, batch, seed):
    """True perms and inferred ones that agree on some rows and differ on others."""
    true = random_perms((batch,), n, seed=seed)
    other = random_perms((batch,), n, seed=seed + 1)
    keep = torch.rand(batch, generator=torch.Generator().manual_seed(seed + 2)) < 0.5
    return torch.where(keep.unsqueeze(-1), true, other), true


@settings(deadline=None, max_examples=25)
@given(n=st.integers(2, 7), batch=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_perm_metrics_match_brute_force(n, batch, seed):
    inferred, true = close_pair(n, batch, seed)
    p, q = inferred.tolist(), true.tolist()
    assert prop_wrong(inferred, true).item() == pytest.approx(py_prop_wrong(p, q), abs=1e-6)
    assert prop_any_wrong(inferred, true).item() == pytest.approx(py_prop_any_wrong(p, q), abs=1e-6)
    assert kendall_tau_mean(inferred, true).item() == pytest.approx(
        py_kendall_tau_mean(p, q), abs=1e-6
    )


def test_perfect_and_reversed():
    true = random_perms((4,), 5, seed=0)
    assert prop_wrong(true, true).item() == 0.0
    assert prop_any_wrong(true, true).item() == 0.0
    assert kendall_tau_mean(true, true).item() == 1.0
    reversed_ = 4 - true  # every pair ordered the other way
    assert kendall_tau_mean(reversed_, true).item() == pytest.approx(-1.0)


def test_known_values():
    inferred = torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]])
    true = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    assert prop_wrong(inferred, true).item() == pytest.approx(2 / 8)
    assert prop_any_wrong(inferred, true).item() == pytest.approx(1 / 2)
    assert kendall_tau_mean(inferred, true).item() == pytest.approx((1 + 2 / 3) / 2)


def test_extra_leading_dims():
    inferred, true = close_pair(5, 12, seed=3)
    flat = [f(inferred, true) for f in (prop_wrong, prop_any_wrong, kendall_tau_mean)]
    nested = [
        f(inferred.reshape(3, 4, 5), true.reshape(3, 4, 5))
        for f in (prop_wrong, prop_any_wrong, kendall_tau_mean)
    ]
    for a, b in zip(flat, nested):
        assert torch.allclose(a, b)


def test_l1_l2_match_brute_force():
    generator = torch.Generator().manual_seed(4)
    rec = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    ordered = torch.randn(3, 4, 2, generator=generator, dtype=torch.float64)
    pairs = list(zip(rec.flatten().tolist(), ordered.flatten().tolist()))
    l1 = sum(abs(a - b) for a, b in pairs) / len(pairs)
    l2 = sum((a - b) ** 2 for a, b in pairs) / len(pairs)
    assert l1_error(rec, ordered).item() == pytest.approx(l1, rel=1e-12)
    assert l2_error(rec, ordered).item() == pytest.approx(l2, rel=1e-12)
    assert l1_error(ordered, ordered).item() == 0.0
    # A leading samples axis broadcasts against the target.
    samples = torch.stack([rec, ordered])
    assert l2_error(samples, ordered).item() == pytest.approx(l2 / 2, rel=1e-12)


def test_errors():
    true = random_perms((2,), 4)
    with pytest.raises(ValueError, match="same shape"):
        prop_wrong(random_perms((3,), 4), true)
    with pytest.raises(ValueError, match="permutations"):
        prop_any_wrong(torch.zeros(2, 4, dtype=torch.long), true)
    with pytest.raises(ValueError, match="integer"):
        kendall_tau_mean(true.float(), true)
    with pytest.raises(ValueError, match="broadcast"):
        l1_error(torch.zeros(2, 3), torch.zeros(2, 4))
