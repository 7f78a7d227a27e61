import numpy as np
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
    prop_wrong_objects,
    reconstruct,
    scramble,
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


def test_prop_wrong_objects_matches_brute_force_and_bounds_prop_wrong():
    generator = torch.Generator().manual_seed(5)
    batch, n = 40, 6
    # Objects (2, 2) drawn from three values per entry, so some objects of an input repeat.
    ordered = torch.randint(0, 2, (batch, n, 2, 2), generator=generator).double()
    ordered[:, :2] = 0.0  # at least two identical (blank) objects per input
    true = random_perms((batch,), n, seed=6)
    inferred, _ = close_pair(n, batch, seed=7)
    scrambled = scramble(ordered, true)
    rebuilt = reconstruct(scrambled, inferred)
    brute = sum(
        not torch.equal(rebuilt[b, j], ordered[b, j]) for b in range(batch) for j in range(n)
    ) / (batch * n)
    value = prop_wrong_objects(rebuilt, ordered, object_dims=2).item()
    assert value == pytest.approx(brute, abs=1e-6)
    assert value < prop_wrong(inferred, true).item()  # blank swaps no longer count
    assert prop_wrong_objects(reconstruct(scrambled, true), ordered, object_dims=2).item() == 0.0
    # With distinct objects it is prop_wrong.
    distinct = torch.arange(batch * n, dtype=torch.float64).view(batch, n)
    rebuilt = reconstruct(scramble(distinct, true), inferred)
    assert prop_wrong_objects(rebuilt, distinct, object_dims=0).item() == pytest.approx(
        prop_wrong(inferred, true).item(), abs=1e-6
    )


def test_prop_wrong_objects_errors():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="same shape"):
        prop_wrong_objects(x, torch.zeros(1, 3, 4), object_dims=1)
    for bad in (3, -1, 1.0, True, np.float64(1.0), "1"):
        with pytest.raises(ValueError, match=r"object_dims must be an int in \[0, 2\]"):
            prop_wrong_objects(x, x, object_dims=bad)


def test_prop_wrong_objects_takes_numpy_object_dims():
    x = torch.zeros(2, 3, 4)
    y = x.clone()
    y[0, 1, 2] = 1.0
    for object_dims in (np.int64(1), np.int32(1)):
        assert prop_wrong_objects(y, x, object_dims=object_dims).item() == pytest.approx(1 / 6)
