import doctest
import importlib
import itertools
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.ops import (
    all_permutations,
    log_sinkhorn,
    matching,
    perm_to_matrix,
    sinkhorn,
)

FLOAT_DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-5, torch.float64: 1e-8}
TAUS = [1.0, 0.1, 0.01, 1e-3]
GRAD_MODES = ["implicit", "unrolled"]
NEG_INF = float("-inf")
# ``pyro_permutations.ops.sinkhorn`` is the function (re-exported), which shadows the module.
sinkhorn_module = importlib.import_module("pyro_permutations.ops.sinkhorn")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def marginal_errors(p):
    """``max(|P 1 - 1|_inf, |P^T 1 - 1|_inf)``, computed here, independently of the library."""
    rows = (p.sum(-1) - 1).abs().amax(-1)
    cols = (p.sum(-2) - 1).abs().amax(-1)
    return torch.maximum(rows, cols)


def reference_sweeps(x, n_iters):
    """``n_iters`` plain Sinkhorn sweeps in probability space: rows, then columns."""
    p = x.exp()
    for _ in range(n_iters):
        p = p / p.sum(-1, keepdim=True)
        p = p / p.sum(-2, keepdim=True)
    return p


def forbid_some(scores, generator, fraction=0.5):
    """Set about ``fraction`` of the entries to ``-inf``, keeping one hidden permutation allowed."""
    n = scores.shape[-1]
    forbidden = torch.rand(scores.shape, generator=generator) < fraction
    hidden = torch.rand(scores.shape[:-1], generator=generator).argsort(-1)
    forbidden &= ~perm_to_matrix(hidden, dtype=torch.bool)
    assert forbidden.shape[-1] == n
    return scores.masked_fill(forbidden, NEG_INF), forbidden


def graph_nodes(tensor):
    """All autograd nodes reachable from ``tensor.grad_fn``."""
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen


# ----------------------------------------------------------------------------------------------
# 1. Doubly stochastic within tol.


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("tau", TAUS)
@settings(deadline=None, max_examples=12)
@given(
    n=st.integers(min_value=1, max_value=12),
    batch_shape=st.sampled_from([(), (3,), (2, 3)]),
    seed=st.integers(0, 2**31 - 1),
)
def test_doubly_stochastic(dtype, tau, n, batch_shape, seed):
    tol = TOL[dtype]
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch_shape + (n, n), generator=generator, dtype=dtype) / tau
    p, info = sinkhorn(scores, tol=tol, return_info=True)
    assert p.shape == scores.shape and p.dtype == dtype
    assert torch.isfinite(p).all() and (p >= 0).all()
    error = marginal_errors(p)
    assert (error <= tol).all()
    assert info.iterations.shape == info.error.shape == info.converged.shape == batch_shape
    assert info.iterations.dtype == torch.long and info.converged.dtype == torch.bool
    assert info.converged.all()
    assert (info.error <= tol).all()
    torch.testing.assert_close(info.error, error, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("value", [0.0, 3.0, -1e4, 1e4])
def test_constant_matrix_is_uniform(dtype, value):
    scores = torch.full((2, 5, 5), value, dtype=dtype)
    p, info = sinkhorn(scores, tol=TOL[dtype], return_info=True)
    torch.testing.assert_close(p, torch.full_like(p, 1 / 5), rtol=0, atol=TOL[dtype])
    assert info.converged.all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("value", [0.0, -7.5, 1e4])
@pytest.mark.parametrize("n_iters", [None, 3])
def test_n_equals_one(dtype, value, n_iters):
    scores = torch.full((4, 1, 1), value, dtype=dtype)
    p, info = sinkhorn(scores, n_iters=n_iters, return_info=True)
    assert torch.equal(p, torch.ones_like(p))
    assert info.converged.all() and (info.error == 0).all()


def test_empty_batch():
    p, info = sinkhorn(torch.zeros(0, 3, 3), return_info=True)
    assert p.shape == (0, 3, 3) and info.converged.shape == (0,)


def test_batch_elements_are_independent():
    generator = torch.Generator().manual_seed(0)
    # Mix temperatures in one batch so that elements finish after different numbers of steps.
    scores = torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64)
    scores = scores / torch.tensor([1.0, 0.1, 1e-3, 0.01, 1.0, 0.3], dtype=torch.float64).reshape(
        2, 3, 1, 1
    )
    p = sinkhorn(scores, tol=1e-10)
    for index in itertools.product(range(2), range(3)):
        single = sinkhorn(scores[index], tol=1e-10)
        torch.testing.assert_close(p[index], single, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# 2. Log space, invariances and the diag(u) exp(x) diag(v) form.


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_log_sinkhorn_exp_is_sinkhorn(dtype, tau):
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 7, 7, generator=generator, dtype=dtype) / tau
    log_p = log_sinkhorn(scores)
    assert log_p.shape == scores.shape and log_p.dtype == dtype
    assert not torch.isnan(log_p).any() and (log_p <= TOL[dtype]).all()
    torch.testing.assert_close(log_p.exp(), sinkhorn(scores), rtol=0, atol=0)


@settings(deadline=None, max_examples=20)
@given(n=st.integers(min_value=1, max_value=8), seed=st.integers(0, 2**31 - 1))
def test_invariant_to_row_and_column_shifts(n, seed):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, n, n, generator=generator, dtype=torch.float64)
    shifted = scores + 5 * torch.randn(3, n, 1, generator=generator, dtype=torch.float64)
    shifted = shifted + 5 * torch.randn(3, 1, n, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(
        sinkhorn(shifted, tol=1e-12), sinkhorn(scores, tol=1e-12), rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("tau", [1.0, 0.1])
def test_scaling_form(tau):
    # log S(X) - X = a_i + b_j: the result is diag(u) exp(X) diag(v).
    generator = torch.Generator().manual_seed(2)
    scores = torch.randn(4, 6, 6, generator=generator, dtype=torch.float64) / tau
    d = log_sinkhorn(scores, tol=1e-12) - scores
    residual = d - d[..., :, :1] - d[..., :1, :] + d[..., :1, :1]
    assert residual.abs().max() < 1e-9


# ----------------------------------------------------------------------------------------------
# 3. Theorem 1 of Gumbel-Sinkhorn: S(X / tau) -> matching(X) as tau -> 0.


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_low_temperature_limit_is_matching(dtype):
    n = 5
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(16, n, n, generator=generator, dtype=dtype)
    # Keep matrices whose best assignment beats the second best by a clear margin (near ties
    # converge slowly: the distance decays like exp(-gap / tau)).
    table = all_permutations(n)
    totals = scores.double()[..., torch.arange(n), table].sum(-1).sort(-1, descending=True)
    clear = (totals.values[:, 0] - totals.values[:, 1]) > 0.05
    assert clear.sum() >= 8
    scores = scores[clear]
    target = perm_to_matrix(matching(scores), dtype=dtype)
    distances = torch.stack(
        [(sinkhorn(scores / tau, tol=TOL[dtype]) - target).abs().amax((-2, -1)) for tau in TAUS]
    )
    assert (distances[1:] <= distances[:-1]).all()
    assert (distances[0] > 0.1).all()  # far from a vertex at tau = 1
    assert (distances[-1] < 1e-3).all()


# ----------------------------------------------------------------------------------------------
# 4. A fixed number of plain sweeps.


@pytest.mark.parametrize("n_iters", [1, 5, 20])
@pytest.mark.parametrize("grad", [None, "unrolled"])
def test_n_iters_matches_reference_loop(n_iters, grad):
    generator = torch.Generator().manual_seed(4)
    scores = 2 * torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64)
    p, info = sinkhorn(scores, n_iters=n_iters, grad=grad, return_info=True)
    torch.testing.assert_close(p, reference_sweeps(scores, n_iters), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p.sum(-2), torch.ones(2, 3, 6, dtype=torch.float64))
    assert (info.iterations == n_iters).all() and info.iterations.shape == (2, 3)
    torch.testing.assert_close(info.error, marginal_errors(p), rtol=0, atol=0)
    torch.testing.assert_close(info.converged, info.error <= 1e-5)


@pytest.mark.parametrize("n_iters", [0, -1])
def test_n_iters_below_one_is_refused(n_iters):
    # n_iters=0 used to return exp(scores), not normalised at all.
    with pytest.raises(ValueError, match="n_iters must be None .* or a positive int"):
        sinkhorn(torch.zeros(3, 4, 4), n_iters=n_iters)


def test_twenty_sweeps_do_not_reach_tol():
    # The reason the default stops on tol: 20 sweeps at tau = 0.1 leave the rows off.
    generator = torch.Generator().manual_seed(6)
    scores = torch.randn(20, 8, 8, generator=generator, dtype=torch.float64) / 0.1
    p_fixed, info_fixed = sinkhorn(scores, n_iters=20, return_info=True)
    error_fixed = marginal_errors(p_fixed)
    assert (error_fixed > 1e-3).float().mean() >= 0.8
    assert not info_fixed.converged.all()
    p_tol, info_tol = sinkhorn(scores, return_info=True)
    assert (marginal_errors(p_tol) <= 1e-5).all() and info_tol.converged.all()


# ----------------------------------------------------------------------------------------------
# 5. Gradients.


@pytest.mark.parametrize(
    "op, tau",
    [(sinkhorn, 1.0), (sinkhorn, 0.1), (sinkhorn, 0.01), (log_sinkhorn, 1.0), (log_sinkhorn, 0.3)],
    ids=["sinkhorn-1", "sinkhorn-0.1", "sinkhorn-0.01", "log_sinkhorn-1", "log_sinkhorn-0.3"],
)
def test_implicit_and_unrolled_gradients_agree(op, tau):
    # log_sinkhorn is kept to temperatures where every entry of P is well above machine
    # epsilon: the log of an entry below eps * (row sum) is not determined by the marginals in
    # floating point, and neither is its gradient (the two modes then differ).
    generator = torch.Generator().manual_seed(7)
    scores = torch.randn(2, 3, 5, 5, generator=generator, dtype=torch.float64) / tau
    weights = torch.randn(2, 3, 5, 5, generator=generator, dtype=torch.float64)
    grads = []
    for mode in GRAD_MODES:
        x = scores.clone().requires_grad_()
        (weights * op(x, tol=1e-12, grad=mode)).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-9)
    # Row and column shifts leave S unchanged, so the gradient sums to zero along both axes.
    for grad in grads:
        assert grad.sum(-1).abs().max() < 1e-9 and grad.sum(-2).abs().max() < 1e-9


@pytest.mark.parametrize("op", [sinkhorn, log_sinkhorn], ids=["sinkhorn", "log_sinkhorn"])
@pytest.mark.parametrize("grad", GRAD_MODES)
@pytest.mark.parametrize("n", [3, 4])
def test_gradcheck(op, grad, n):
    generator = torch.Generator().manual_seed(8 + n)
    x = torch.randn(2, n, n, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda z: op(z, tol=1e-13, grad=grad), (x,))


@pytest.mark.parametrize("op", [sinkhorn, log_sinkhorn], ids=["sinkhorn", "log_sinkhorn"])
def test_gradcheck_n_iters(op):
    generator = torch.Generator().manual_seed(9)
    x = torch.randn(2, 4, 4, generator=generator, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda z: op(z, n_iters=5), (x,))


@pytest.mark.parametrize("op", [sinkhorn, log_sinkhorn], ids=["sinkhorn", "log_sinkhorn"])
@pytest.mark.parametrize("grad", GRAD_MODES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_large_inputs_finite(op, grad, dtype):
    generator = torch.Generator().manual_seed(10)
    x = (torch.randn(3, 6, 6, generator=generator, dtype=dtype) / 1e-3).requires_grad_()
    weights = torch.randn(3, 6, 6, generator=generator, dtype=dtype)
    out, info = op(x, grad=grad, return_info=True)
    assert torch.isfinite(out).all() and info.converged.all()
    (weights * out).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_scores_up_to_the_largest_float(dtype):
    """At such magnitudes ``S(X)`` is the matching's permutation matrix (every gap dwarfs the
    unit temperature). Their range overflows the dtype: it must not make the starting scale
    zero (a uniform matrix, error 0). Float64's span needs about 510 temperature stages: more
    than the default ``max_iter``, which ``converged`` must report."""
    largest = torch.finfo(dtype).max
    cyclic = torch.tensor([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]], dtype=dtype)
    generator = torch.Generator().manual_seed(17)
    uniform = torch.rand(3, 3, 3, generator=generator, dtype=dtype) * 2 - 1
    scores = torch.cat([cyclic[None], uniform]) * largest
    p, info = sinkhorn(scores, max_iter=600, return_info=True)
    assert info.converged.all() and torch.isfinite(p).all()
    assert torch.equal(p, perm_to_matrix(matching(scores), dtype=dtype))
    assert torch.equal(p[0], torch.eye(3, dtype=dtype))
    _, info = sinkhorn(scores, return_info=True)  # max_iter=500
    assert info.converged.all() == (dtype == torch.float32)


# ----------------------------------------------------------------------------------------------
# 6. Forbidden pairs (-inf).


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("tau", TAUS)
@settings(deadline=None, max_examples=8)
@given(n=st.integers(min_value=1, max_value=7), seed=st.integers(0, 2**31 - 1))
def test_forbidden_entries(dtype, tau, n, seed):
    tol = TOL[dtype]
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(3, n, n, generator=generator, dtype=dtype) / tau
    scores, forbidden = forbid_some(scores, generator, fraction=0.6)
    weights = torch.randn(3, n, n, generator=generator, dtype=dtype)
    for grad in GRAD_MODES:
        x = scores.clone().requires_grad_()
        p, info = sinkhorn(x, tol=tol, grad=grad, return_info=True)
        assert (p[forbidden] == 0).all()
        assert torch.isfinite(p).all() and (marginal_errors(p) <= tol).all()
        assert info.converged.all()
        (weights * p).sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad[forbidden] == 0).all()

        x = scores.clone().requires_grad_()
        log_p = log_sinkhorn(x, tol=tol, grad=grad)
        assert torch.isneginf(log_p[forbidden]).all() and torch.isfinite(log_p[~forbidden]).all()
        (weights * log_p.masked_fill(forbidden, 0.0)).sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad[forbidden] == 0).all()


def test_forbidden_entries_n_iters():
    generator = torch.Generator().manual_seed(11)
    scores = torch.randn(3, 5, 5, generator=generator, dtype=torch.float64)
    scores, forbidden = forbid_some(scores, generator)
    x = scores.clone().requires_grad_()
    p = sinkhorn(x, n_iters=5)
    torch.testing.assert_close(p, reference_sweeps(scores, 5), rtol=1e-12, atol=1e-14)
    assert (p[forbidden] == 0).all()
    (torch.randn(3, 5, 5, generator=generator, dtype=torch.float64) * p).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[forbidden] == 0).all()


@pytest.mark.parametrize("grad", GRAD_MODES)
def test_gradcheck_forbidden(grad):
    generator = torch.Generator().manual_seed(12)
    scores = torch.randn(2, 4, 4, generator=generator, dtype=torch.float64)
    scores, _ = forbid_some(scores, generator, fraction=0.4)
    x = scores.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: sinkhorn(z, tol=1e-13, grad=grad), (x,))


@pytest.mark.parametrize(
    "pattern",
    [
        [[NEG_INF, NEG_INF], [0.0, 0.0]],  # a row with no allowed column
        [[NEG_INF, 0.0], [NEG_INF, 0.0]],  # a column with no allowed row
        [[0.0, NEG_INF, NEG_INF], [0.0, NEG_INF, NEG_INF], [0.0, 0.0, 0.0]],  # Hall violated
    ],
)
@pytest.mark.parametrize("n_iters", [None, 5])
def test_infeasible_raises(pattern, n_iters):
    scores = torch.tensor(pattern)
    with pytest.raises(ValueError, match="log_alpha"):
        sinkhorn(scores, n_iters=n_iters)
    batch = torch.stack([torch.zeros_like(scores), scores])
    with pytest.raises(ValueError, match="log_alpha"):
        log_sinkhorn(batch, n_iters=n_iters)


# ----------------------------------------------------------------------------------------------
# 7. Bad input and options.


@pytest.mark.parametrize(
    "scores",
    [
        torch.zeros(3, 0),  # (rectangular scores are partial matchings: test_partial_sinkhorn)
        torch.zeros(3),
        torch.zeros(()),
        torch.zeros(2, 0, 0),
        torch.tensor([[0.0, float("nan")], [0.0, 0.0]]),
        torch.tensor([[0.0, float("inf")], [0.0, 0.0]]),
        torch.zeros(3, 3, dtype=torch.long),
        torch.zeros(3, 3, dtype=torch.int32),
        torch.zeros(3, 3, dtype=torch.float16),
    ],
    ids=["no_columns", "1d", "0d", "empty_matrix", "nan", "posinf", "long", "int32", "float16"],
)
@pytest.mark.parametrize("op", [sinkhorn, log_sinkhorn], ids=["sinkhorn", "log_sinkhorn"])
def test_bad_inputs(op, scores):
    with pytest.raises(ValueError, match="log_alpha"):
        op(scores)


def test_non_tensor_raises():
    with pytest.raises(TypeError, match="log_alpha"):
        sinkhorn([[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize(
    "options",
    [
        {"tol": 0.0},
        {"tol": -1e-5},
        {"tol": "1e-5"},
        {"max_iter": 0},
        {"max_iter": 2.0},
        {"max_iter": True},
        {"n_iters": -1},
        {"n_iters": 2.5},
        {"n_iters": False},
        {"grad": "foo"},
        {"grad": "implicit", "n_iters": 3},
    ],
    ids=str,
)
def test_bad_options(options):
    with pytest.raises(ValueError):
        sinkhorn(torch.zeros(3, 3), **options)


def test_numpy_numbers_as_options():
    """Options take NumPy numbers like Python ones (as every integer argument does)."""
    scores = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(19))
    expected = sinkhorn(scores, n_iters=3)
    assert torch.equal(sinkhorn(scores, n_iters=np.int64(3)), expected)
    p, info = sinkhorn(scores, tol=np.float32(1e-6), max_iter=np.int32(1), return_info=True)
    assert torch.equal(p, sinkhorn(scores, tol=1e-6, max_iter=1)) and (info.iterations <= 1).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_not_converged_is_reported(dtype):
    generator = torch.Generator().manual_seed(13)
    scores = torch.randn(2, 6, 6, generator=generator, dtype=dtype) / 1e-3
    p, info = sinkhorn(scores, max_iter=1, return_info=True)
    assert torch.isfinite(p).all()
    assert not info.converged.any() and (info.error > TOL[dtype]).all()
    assert (info.iterations <= 1).all()
    torch.testing.assert_close(info.error, marginal_errors(p), rtol=0, atol=0)


def plain_sweeps_to_tol(x, tol):
    """Plain sweeps (rows, then columns) after one column normalisation until the rows are
    within ``tol``: the count the plain loop needs."""
    y = x - torch.logsumexp(x, dim=-2, keepdim=True)
    sweeps = 0
    while (y.exp().sum(-1) - 1).abs().max() > tol:
        y = y - torch.logsumexp(y, dim=-1, keepdim=True)
        y = y - torch.logsumexp(y, dim=-2, keepdim=True)
        sweeps += 1
    return sweeps


def test_info_splits_iterations_into_sweeps_newton_steps_and_stages():
    """``iterations = sweeps + newton_steps + stage changes``: at a high temperature only plain
    sweeps, as many as the plain loop needs; at a low one Newton steps too, and one stage per
    factor of up to 4 from the starting scale ``32 / range`` to 1. The named triple still
    unpacks, and the counts survive pickling and ``_replace``."""
    generator = torch.Generator().manual_seed(18)
    scores = torch.randn(3, 6, 6, generator=generator, dtype=torch.float64)
    _, info = log_sinkhorn(scores / 10.0, tol=1e-8, return_info=True)
    assert (info.newton_steps == 0).all() and torch.equal(info.sweeps, info.iterations)
    assert info.sweeps.tolist() == [plain_sweeps_to_tol(x / 10.0, 1e-8) for x in scores]

    _, info = log_sinkhorn(scores / 1e-3, tol=1e-8, return_info=True)
    spread = (scores.amax((-2, -1)) - scores.amin((-2, -1))) / 1e-3
    stages = torch.ceil(torch.log(spread / 32) / math.log(4)).long()
    assert (stages >= 3).all() and (info.newton_steps >= 1).all()
    assert torch.equal(info.iterations, info.sweeps + info.newton_steps + stages)

    iterations, error, converged = info
    assert len(info) == 3 and iterations is info.iterations and converged.all()
    again = pickle.loads(pickle.dumps(info))
    assert torch.equal(again.newton_steps, info.newton_steps)
    assert torch.equal(info._replace(error=error / 2).sweeps, info.sweeps)
    _, info = log_sinkhorn(scores, n_iters=7, return_info=True)
    assert (info.sweeps == 7).all() and (info.newton_steps == 0).all()


# ----------------------------------------------------------------------------------------------
# 8. Implicit mode keeps no per-iteration graph.


def test_implicit_graph_does_not_grow():
    generator = torch.Generator().manual_seed(14)
    sizes = {}
    for tau in [10.0, 1e-3]:  # a few plain sweeps versus tens of Newton steps
        x = (torch.randn(2, 6, 6, generator=generator, dtype=torch.float64) / tau).requires_grad_()
        for grad in GRAD_MODES:
            log_p, info = log_sinkhorn(x, grad=grad, return_info=True)
            sizes[tau, grad] = len(graph_nodes(log_p)), int(info.iterations.max())
    (small_implicit, few), (large_implicit, many) = sizes[10.0, "implicit"], sizes[1e-3, "implicit"]
    assert many != few  # the two solves run different numbers of iterations ...
    assert small_implicit == large_implicit <= 5  # ... yet the implicit graph is the same
    unrolled = sizes[1e-3, "unrolled"][0], sizes[10.0, "unrolled"][0]
    assert unrolled[0] != unrolled[1] and min(unrolled) > large_implicit


def test_implicit_only_depends_on_input():
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    log_p = log_sinkhorn(x)
    leaves = [node for node in graph_nodes(log_p) if not node.next_functions]
    assert len(leaves) == 1 and leaves[0].variable is x
    assert any("ImplicitSinkhorn" in type(node).__name__ for node in graph_nodes(log_p))


def test_no_graph_without_requires_grad():
    assert sinkhorn(torch.randn(3, 3)).grad_fn is None


def test_docstring_examples():
    result = doctest.testmod(sinkhorn_module)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------------------------
# 9. CUDA.


@needs_cuda
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("tau", [1.0, 0.1, 1e-3])
def test_cuda_matches_cpu(dtype, tau):
    tol = TOL[dtype]
    generator = torch.Generator().manual_seed(15)
    scores = torch.randn(2, 3, 6, 6, generator=generator, dtype=dtype) / tau
    p_cuda, info = sinkhorn(scores.cuda(), tol=tol, return_info=True)
    assert p_cuda.device.type == "cuda" and info.converged.device.type == "cuda"
    assert info.converged.all() and (marginal_errors(p_cuda) <= tol).all()
    torch.testing.assert_close(p_cuda.cpu(), sinkhorn(scores, tol=tol), rtol=0, atol=10 * tol)


@needs_cuda
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("grad", GRAD_MODES)
def test_cuda_gradients(dtype, grad):
    generator = torch.Generator().manual_seed(16)
    scores = torch.randn(2, 5, 5, generator=generator, dtype=dtype)
    scores, forbidden = forbid_some(scores, generator)
    scores = torch.cat([scores, torch.randn(2, 5, 5, generator=generator, dtype=dtype) / 1e-3])
    weights = torch.randn(4, 5, 5, generator=generator, dtype=dtype)
    grads = []
    for device in ["cpu", "cuda"]:
        x = scores.to(device, copy=True).requires_grad_()
        p = sinkhorn(x, grad=grad, tol=TOL[dtype])
        (weights.to(device) * p).sum().backward()
        assert torch.isfinite(x.grad).all() and (x.grad[:2][forbidden.to(device)] == 0).all()
        grads.append(x.grad.cpu())
    torch.testing.assert_close(grads[1][:2], grads[0][:2], rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------------------------
# Conjugate-gradient Newton steps (large N): forced on small problems, and one real size.


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_conjugate_gradient_newton_reaches_tol(monkeypatch, dtype, tau):
    from pyro_permutations.ops import _sinkhorn_newton

    monkeypatch.setattr(_sinkhorn_newton, "CG_MIN_N", 1)
    tol = TOL[dtype]
    generator = torch.Generator().manual_seed(3)
    scores = torch.randn(4, 9, 9, generator=generator, dtype=dtype) / tau
    scores, forbidden = forbid_some(scores, generator, fraction=0.4)
    p, info = sinkhorn(scores, tol=tol, return_info=True)
    assert info.converged.all() and (marginal_errors(p) <= tol).all()
    assert (p[forbidden] == 0).all() and torch.isfinite(p).all()
    monkeypatch.setattr(_sinkhorn_newton, "CG_MIN_N", 10**9)
    torch.testing.assert_close(p, sinkhorn(scores, tol=tol), rtol=0, atol=10 * tol)


def test_large_matrix_uses_conjugate_gradients_and_reaches_tol():
    from pyro_permutations.ops import _sinkhorn_newton

    n = _sinkhorn_newton.CG_MIN_N + 44
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(1, n, n, generator=generator) / 0.1
    p, info = sinkhorn(scores, tol=1e-4, return_info=True)
    assert info.converged.all() and (marginal_errors(p) <= 1e-4).all()
    assert info.iterations.item() < 50  # Newton steps, not ~1,000 plain sweeps
