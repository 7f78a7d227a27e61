import itertools
from collections import deque

import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.ops.distances import (
    cayley_distance,
    footrule_distance,
    hamming_distance,
    kendall_distance,
    kendall_tau,
)
from pyro_permutations.ops.permutations import all_permutations

DISTANCES = [kendall_distance, footrule_distance, hamming_distance, cayley_distance]


def random_perms(shape, n, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape) + (n,), generator=generator).argsort(dim=-1)


# Pure-Python definitions, one pair at a time.


def py_kendall(p, q):
    n = len(p)
    return sum(1 for i in range(n) for j in range(i + 1, n) if (p[i] < p[j]) != (q[i] < q[j]))


def py_footrule(p, q):
    return sum(abs(a - b) for a, b in zip(p, q))


def py_hamming(p, q):
    return sum(a != b for a, b in zip(p, q))


def py_cayley_cycles(p, q):
    """n minus the number of cycles of the map p[i] -> q[i] on values."""
    n = len(p)
    step = {p[i]: q[i] for i in range(n)}
    seen, cycles = set(), 0
    for start in range(n):
        if start not in seen:
            cycles += 1
            x = start
            while x not in seen:
                seen.add(x)
                x = step[x]
    return n - cycles


def py_cayley_bfs(p, q):
    """Fewest swaps of two entries turning p into q, by breadth-first search."""
    start, goal = tuple(p), tuple(q)
    dist = {start: 0}
    queue = deque([start])
    while queue:
        x = queue.popleft()
        if x == goal:
            return dist[x]
        for i, j in itertools.combinations(range(len(x)), 2):
            y = list(x)
            y[i], y[j] = y[j], y[i]
            y = tuple(y)
            if y not in dist:
                dist[y] = dist[x] + 1
                queue.append(y)
    raise AssertionError("unreachable")


REFERENCE = {
    kendall_distance: py_kendall,
    footrule_distance: py_footrule,
    hamming_distance: py_hamming,
    cayley_distance: py_cayley_cycles,
}


def check_against_reference(fn, p, q):
    d = fn(p, q)
    assert d.dtype == torch.long
    assert d.shape == torch.broadcast_shapes(p.shape[:-1], q.shape[:-1])
    n = p.shape[-1]
    p, q = torch.broadcast_tensors(p, q)
    expected = [
        REFERENCE[fn](a, b) for a, b in zip(p.reshape(-1, n).tolist(), q.reshape(-1, n).tolist())
    ]
    assert d.reshape(-1).tolist() == expected


@pytest.mark.parametrize("fn", DISTANCES, ids=lambda f: f.__name__)
@settings(deadline=None, max_examples=25)
@given(n=st.integers(min_value=1, max_value=7), seed=st.integers(0, 2**31 - 1))
def test_matches_pure_python(fn, n, seed):
    p = random_perms((2, 3), n, seed)
    q = random_perms((2, 3), n, seed + 1)
    check_against_reference(fn, p, q)


@pytest.mark.parametrize("fn", DISTANCES, ids=lambda f: f.__name__)
def test_broadcasting(fn):
    p = random_perms((3, 1), 6, seed=1)
    q = random_perms((4,), 6, seed=2)
    check_against_reference(fn, p, q)
    check_against_reference(fn, p[0, 0], q)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_cayley_is_fewest_swaps(n):
    table = all_permutations(n)
    generator = torch.Generator().manual_seed(n)
    idx = torch.randint(len(table), (12, 2), generator=generator)
    p, q = table[idx[:, 0]], table[idx[:, 1]]
    d = cayley_distance(p, q)
    assert d.tolist() == [py_cayley_bfs(a, b) for a, b in zip(p.tolist(), q.tolist())]


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_kendall_is_fewest_adjacent_swaps(n):
    # Kendall distance to the identity = number of inversions = adjacent swaps to sort.
    table = all_permutations(n)
    identity = torch.arange(n)
    for perm, d in zip(table.tolist(), kendall_distance(table, identity).tolist()):
        swaps, x = 0, list(perm)
        for _ in range(n):
            for i in range(n - 1):
                if x[i] > x[i + 1]:
                    x[i], x[i + 1] = x[i + 1], x[i]
                    swaps += 1
        assert swaps == d


@settings(deadline=None, max_examples=25)
@given(n=st.integers(min_value=1, max_value=8), seed=st.integers(0, 2**31 - 1))
def test_metric_properties(n, seed):
    p, q, r = random_perms((3, 16), n, seed).unbind(0)
    for fn in DISTANCES:
        assert (fn(p, p) == 0).all()
        assert torch.equal(fn(p, q), fn(q, p))
        assert (fn(p, r) <= fn(p, q) + fn(q, r)).all()
        assert ((fn(p, q) == 0) == (p == q).all(-1)).all()
        # Relabelling positions the same way in both leaves every distance unchanged.
        s = random_perms((), n, seed + 7)
        assert torch.equal(fn(p[..., s], q[..., s]), fn(p, q))
    # Diaconis-Graham: d_K + d_C <= d_F <= 2 d_K.
    d_k, d_f, d_c = kendall_distance(p, q), footrule_distance(p, q), cayley_distance(p, q)
    assert (d_k + d_c <= d_f).all() and (d_f <= 2 * d_k).all()


@settings(deadline=None, max_examples=25)
@given(n=st.integers(min_value=2, max_value=7), seed=st.integers(0, 2**31 - 1))
def test_kendall_tau_matches_scipy(n, seed):
    p = random_perms((2, 3), n, seed)
    q = random_perms((2, 3), n, seed + 1)
    tau = kendall_tau(p, q)
    assert tau.shape == (2, 3)
    assert tau.dtype == torch.get_default_dtype()
    for a, b, t in zip(p.reshape(-1, n).tolist(), q.reshape(-1, n).tolist(), tau.reshape(-1)):
        assert t.item() == pytest.approx(scipy.stats.kendalltau(a, b).statistic, abs=1e-6)


def test_kendall_tau_extremes():
    p = torch.arange(5)
    assert kendall_tau(p, p).item() == 1.0
    assert kendall_tau(p, p.flip(-1)).item() == -1.0


def test_kendall_tau_needs_two_items():
    with pytest.raises(ValueError, match="n >= 2"):
        kendall_tau(torch.tensor([0]), torch.tensor([0]))


@pytest.mark.parametrize("fn", DISTANCES + [kendall_tau], ids=lambda f: f.__name__)
def test_bad_inputs(fn):
    good = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"^p must"):
        fn(torch.tensor([0, 0, 2]), good)
    with pytest.raises(ValueError, match=r"^q must"):
        fn(good, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"^q must .*integer"):
        fn(good, good.double())
    with pytest.raises(ValueError, match="p and q"):
        fn(good, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="do not broadcast"):
        fn(random_perms((2,), 3), random_perms((3,), 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fn", DISTANCES + [kendall_tau], ids=lambda f: f.__name__)
def test_cuda(fn):
    p = random_perms((2, 3), 6, seed=3)
    q = random_perms((2, 3), 6, seed=4)
    d = fn(p.cuda(), q.cuda())
    assert d.device.type == "cuda"
    # Integer distances agree exactly; CUDA may divide via a reciprocal (last-ulp differences).
    torch.testing.assert_close(d.cpu(), fn(p, q), rtol=1e-6, atol=0)
