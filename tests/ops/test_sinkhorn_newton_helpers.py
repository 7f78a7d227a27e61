"""The tiny-number helpers under the Sinkhorn Newton solver: each equals its plain definition
to rounding, and none produces a subnormal number (the slow path on CPUs)."""

import math

import pytest
import torch

from pyro_permutations.ops._sinkhorn_newton import (
    _col_logsumexp,
    _col_lse,
    _exp_flushed,
    _newton_cg,
    _tiny_limits,
)

DTYPES = [torch.float32, torch.float64]


def _subnormal(x):
    return (x != 0) & (x.abs() < torch.finfo(x.dtype).tiny)


def _log_p(dtype, width, seed=0):
    """Column-normalised ``log P`` whose entries span about ``width`` below zero."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(4, 30, 30, generator=g, dtype=torch.float64) * -width).to(dtype)
    return y - torch.logsumexp(y, dim=-2, keepdim=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exp_flushed_is_exp_above_the_floor_and_zero_below(dtype):
    floor, _ = _tiny_limits(dtype)
    y = torch.linspace(1.5 * math.log(floor), 0.0, 2001, dtype=dtype)
    p = _exp_flushed(y)
    big = y.exp() > 2 * floor
    torch.testing.assert_close(p[big], y[big].exp())
    assert (p[~big] == 0).all() and (~big).any() and not _subnormal(p).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_col_logsumexp_matches_torch_on_wide_columns(dtype):
    y = _log_p(dtype, width=-3 * math.log(torch.finfo(dtype).tiny))
    torch.testing.assert_close(_col_logsumexp(y), torch.logsumexp(y, dim=-2, keepdim=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shift_width", [1.0, 15.0, 60.0, 300.0])
def test_col_lse_matches_logsumexp_for_narrow_and_wide_shifts(dtype, shift_width):
    """Narrow shifts go through ``exp(y)`` by a product, wide ones (above the spread limit)
    through the exact normaliser; both must equal ``logsumexp(y + f)`` over columns."""
    y = _log_p(dtype, width=200.0 if dtype == torch.float32 else 900.0)
    g = torch.Generator().manual_seed(1)
    f = (torch.rand(4, 30, generator=g, dtype=torch.float64) * shift_width).to(dtype)
    got = _col_lse(y, _exp_flushed(y), f)
    expected = torch.logsumexp(y.double() + f.double().unsqueeze(-1), dim=-2).to(dtype)
    tol = 2e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    if shift_width < _tiny_limits(dtype)[1]:
        # the product path: no product of a flushed entry and a weight is subnormal
        w = torch.exp(f - f.amax(-1, keepdim=True))
        assert not _subnormal(_exp_flushed(y) * w.unsqueeze(-1)).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_newton_cg_gradients_are_finite_next_to_a_solved_element(dtype):
    """An element whose rows already sum to one has ``grad = 0``, so its CG quantities
    ``d H d`` and ``r z`` are exactly 0 while another element iterates: the denominators'
    floor must be positive in the dtype, or the discarded ``0 / 0`` of ``torch.where`` turns
    the unrolled gradients into NaN (in float32, where ``1e-300`` rounds to 0)."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 8, 8, generator=g, dtype=dtype)
    y[0] = 0.0  # uniform, entries 1/8: rows sum to exactly 1, grad exactly 0
    y.requires_grad_()
    p = torch.softmax(y, dim=-2)  # columns normalised, as in the solver
    r = p.sum(-1)
    x = _newton_cg(p, r, 1 - r)
    x.sum().backward()
    assert (x[0] == 0).all() and torch.isfinite(x).all()
    assert torch.isfinite(y.grad).all()
