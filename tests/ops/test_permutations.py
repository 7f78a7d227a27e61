import itertools
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.ops._validation import MAX_ENUMERATE_N
from pyro_permutations.ops.permutations import (
    all_permutations,
    compose_perms,
    invert_perm,
    matrix_to_perm,
    perm_to_matrix,
    perm_to_rank,
    rank_to_perm,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def random_perms(shape, n, seed=0, device=None):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape) + (n,), generator=generator).argsort(dim=-1).to(device)


def python_rank(perm):
    """Lexicographic rank by counting, for each position, the smaller unused items."""
    perm = list(perm)
    n = len(perm)
    rank = 0
    for i, x in enumerate(perm):
        smaller_unused = sum(1 for y in perm[i + 1 :] if y < x)
        rank += smaller_unused * math.factorial(n - 1 - i)
    return rank


sizes = st.integers(min_value=1, max_value=7)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@settings(deadline=None, max_examples=30)
@given(n=sizes, seed=seeds)
def test_matrix_is_permutation_matrix(n, seed):
    perm = random_perms((2, 3), n, seed)
    P = perm_to_matrix(perm)
    assert P.shape == (2, 3, n, n)
    assert P.dtype == torch.get_default_dtype()
    assert ((P == 0) | (P == 1)).all()
    assert (P.sum(-1) == 1).all() and (P.sum(-2) == 1).all()
    for b in itertools.product(range(2), range(3)):
        for i in range(n):
            assert P[b][i, perm[b][i]] == 1
    # (P x)[i] = x[perm[i]]
    x = torch.randn(n, dtype=P.dtype)
    assert torch.equal(P @ x, x[perm])


@settings(deadline=None, max_examples=30)
@given(n=sizes, seed=seeds)
def test_perm_matrix_round_trip(n, seed):
    perm = random_perms((2, 3), n, seed)
    assert torch.equal(matrix_to_perm(perm_to_matrix(perm)), perm)
    P = perm_to_matrix(perm, dtype=torch.float64)
    assert P.dtype == torch.float64
    assert torch.equal(perm_to_matrix(matrix_to_perm(P), dtype=torch.float64), P)


def test_matrix_to_perm_tolerates_tiny_errors():
    perm = random_perms((4,), 5)
    P = perm_to_matrix(perm, dtype=torch.float64)
    noise = 5e-7 * (2 * torch.rand(P.shape, dtype=torch.float64) - 1)
    assert torch.equal(matrix_to_perm(P + noise), perm)
    assert torch.equal(matrix_to_perm(P.bool()), perm)
    assert torch.equal(matrix_to_perm(P.long()), perm)


def test_perm_to_matrix_int32_input():
    perm = torch.tensor([2, 0, 1], dtype=torch.int32)
    assert torch.equal(perm_to_matrix(perm), perm_to_matrix(perm.long()))


@settings(deadline=None, max_examples=30)
@given(n=sizes, seed=seeds)
def test_invert(n, seed):
    perm = random_perms((2, 3), n, seed)
    inv = invert_perm(perm)
    assert inv.shape == perm.shape
    P = perm_to_matrix(perm)
    assert torch.equal(perm_to_matrix(inv), P.transpose(-1, -2))
    flat, flat_inv = perm.reshape(-1, n).tolist(), inv.reshape(-1, n).tolist()
    for p, p_inv in zip(flat, flat_inv):
        assert all(p_inv[p[i]] == i for i in range(n))
    identity = torch.arange(n).expand_as(perm)
    assert torch.equal(compose_perms(perm, inv), identity)
    assert torch.equal(compose_perms(inv, perm), identity)


@settings(deadline=None, max_examples=30)
@given(n=sizes, seed=seeds)
def test_compose_matches_matrix_product(n, seed):
    p = random_perms((2, 3), n, seed)
    q = random_perms((2, 3), n, seed + 1)
    pq = compose_perms(p, q)
    expected = perm_to_matrix(p) @ perm_to_matrix(q)
    assert torch.equal(perm_to_matrix(pq), expected)
    for a, b, c in zip(p.reshape(-1, n).tolist(), q.reshape(-1, n).tolist(), pq.reshape(-1, n)):
        assert c.tolist() == [b[a[i]] for i in range(n)]


def test_compose_broadcasts():
    p = random_perms((3, 1), 5, seed=1)
    q = random_perms((4,), 5, seed=2)
    pq = compose_perms(p, q)
    assert pq.shape == (3, 4, 5)
    for i in range(3):
        for j in range(4):
            assert torch.equal(pq[i, j], q[j][p[i, 0]])


def test_compose_bad_shapes():
    with pytest.raises(ValueError, match="p and q"):
        compose_perms(torch.arange(3), torch.arange(4))
    with pytest.raises(ValueError, match="do not broadcast"):
        compose_perms(random_perms((2,), 3), random_perms((3,), 3))


@pytest.mark.parametrize("n", range(1, 7))
def test_all_permutations_matches_itertools(n):
    table = all_permutations(n)
    assert table.dtype == torch.long
    assert table.shape == (math.factorial(n), n)
    assert table.tolist() == [list(p) for p in itertools.permutations(range(n))]
    assert len(set(map(tuple, table.tolist()))) == math.factorial(n)


def test_all_permutations_sorted_and_distinct_n8():
    table = all_permutations(8)
    assert table.shape == (40320, 8)
    assert len(set(map(tuple, table.tolist()))) == 40320
    rows = table.tolist()
    assert all(a < b for a, b in zip(rows, rows[1:]))
    assert (table.sort(dim=-1).values == torch.arange(8)).all()


def test_all_permutations_cache_cannot_be_mutated():
    table = all_permutations(4)
    table.zero_()
    assert all_permutations(4).tolist() == [list(p) for p in itertools.permutations(range(4))]


@pytest.mark.parametrize("n", [0, -1, 2.0, True, MAX_ENUMERATE_N + 1])
def test_all_permutations_bad_n(n):
    with pytest.raises(ValueError, match="n"):
        all_permutations(n)


def test_all_permutations_too_large_message():
    with pytest.raises(ValueError, match=f"n <= {MAX_ENUMERATE_N}"):
        all_permutations(MAX_ENUMERATE_N + 1)


@pytest.mark.parametrize("n", range(1, 7))
def test_rank_is_row_index(n):
    table = all_permutations(n)
    ranks = torch.arange(math.factorial(n))
    assert torch.equal(perm_to_rank(table), ranks)
    assert torch.equal(rank_to_perm(ranks, n), table)


@settings(deadline=None, max_examples=30)
@given(n=st.integers(min_value=1, max_value=20), seed=seeds)
def test_rank_round_trip_large_n(n, seed):
    rng = random.Random(seed)
    ranks = [rng.randrange(math.factorial(n)) for _ in range(6)] + [0, math.factorial(n) - 1]
    ranks = torch.tensor(ranks).reshape(2, 4)
    perm = rank_to_perm(ranks, n)
    assert perm.shape == (2, 4, n)
    assert (perm.sort(dim=-1).values == torch.arange(n)).all()
    assert torch.equal(perm_to_rank(perm), ranks)
    assert [python_rank(p) for p in perm.reshape(-1, n).tolist()] == ranks.reshape(-1).tolist()


def test_rank_of_python_int():
    assert torch.equal(rank_to_perm(5, 3), torch.tensor([2, 1, 0]))
    assert perm_to_rank(torch.tensor([2, 1, 0])).shape == ()


@pytest.mark.parametrize("rank", [-1, 6, 100])
def test_rank_out_of_range(rank):
    with pytest.raises(ValueError, match="rank"):
        rank_to_perm(torch.tensor([0, rank]), 3)


def test_sizes_and_ranks_accept_numpy_integers_not_bools():
    """Every integer argument takes a Python or NumPy integer (as the distributions' sizes do)
    and refuses a bool, which is an int to Python."""
    assert torch.equal(all_permutations(np.int64(3)), all_permutations(3))
    assert torch.equal(rank_to_perm(np.int32(5), np.int64(3)), torch.tensor([2, 1, 0]))
    for bad in (True, np.bool_(True)):
        with pytest.raises(ValueError, match="n must be a positive int"):
            all_permutations(bad)
        with pytest.raises(ValueError, match="n must be a positive int"):
            rank_to_perm(0, bad)


def test_rank_bad_inputs():
    with pytest.raises(ValueError, match="rank"):
        rank_to_perm(torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(ValueError, match="n"):
        rank_to_perm(0, 21)
    with pytest.raises(ValueError, match="n"):
        rank_to_perm(0, 0)
    with pytest.raises(ValueError, match="perm"):
        perm_to_rank(torch.arange(21))


@pytest.mark.parametrize(
    "fn", [perm_to_matrix, invert_perm, perm_to_rank, lambda p: compose_perms(p, p)]
)
def test_bad_perm_raises(fn):
    with pytest.raises(ValueError, match="perm|p"):
        fn(torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="perm|p"):
        fn(torch.tensor([0, 0, 2]))
    with pytest.raises(ValueError, match="perm|p"):
        fn(torch.tensor([1, 2, 3]))


def test_bad_perm_names_argument():
    with pytest.raises(ValueError, match=r"^perm must"):
        invert_perm(torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"^q must"):
        compose_perms(torch.tensor([0, 1]), torch.tensor([1, 1]))


def test_matrix_to_perm_bad_inputs():
    with pytest.raises(ValueError, match="P must have shape"):
        matrix_to_perm(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="matching"):
        matrix_to_perm(torch.full((3, 3), 1.0 / 3))
    with pytest.raises(ValueError, match="matching"):
        matrix_to_perm(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="matching"):
        matrix_to_perm(torch.tensor([[float("nan"), 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="matching"):
        matrix_to_perm(torch.tensor([[1e-5, 1.0], [1.0, 0.0]]))


@requires_cuda
def test_cuda():
    device = torch.device("cuda")
    perm = random_perms((2, 3), 5, device=device)
    P = perm_to_matrix(perm)
    assert P.device.type == "cuda"
    assert torch.equal(matrix_to_perm(P), perm)
    inv = invert_perm(perm)
    assert torch.equal(perm_to_matrix(inv), P.transpose(-1, -2))
    assert torch.equal(compose_perms(perm, inv), torch.arange(5, device=device).expand_as(perm))
    table = all_permutations(5, device=device)
    assert table.device.type == "cuda"
    assert torch.equal(table.cpu(), all_permutations(5))
    ranks = torch.arange(120, device=device)
    assert torch.equal(perm_to_rank(table), ranks)
    assert torch.equal(rank_to_perm(ranks, 5), table)
