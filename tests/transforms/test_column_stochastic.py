import pyro
import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import biject_to, transform_to

from pyro_permutations.constraints import column_stochastic
from pyro_permutations.transforms import ColumnStickBreakingTransform


def test_registered_for_column_stochastic():
    assert isinstance(biject_to(column_stochastic), ColumnStickBreakingTransform)
    assert isinstance(transform_to(column_stochastic), ColumnStickBreakingTransform)
    pyro.clear_param_store()
    p = pyro.param("p_test", torch.full((3, 4), 1 / 3), constraint=column_stochastic)
    assert p.shape == (3, 4) and column_stochastic.check(p)
    assert torch.allclose(p, torch.full((3, 4), 1 / 3))


@pytest.mark.parametrize("batch_shape", [(), (2,), (2, 3)])
def test_bijection_onto_column_stochastic_matrices(batch_shape):
    torch.manual_seed(0)
    t = ColumnStickBreakingTransform()
    y = torch.randn(batch_shape + (3, 5), dtype=torch.float64)
    x = t(y)
    assert x.shape == batch_shape + (4, 5) and column_stochastic.check(x).all() and (x > 0).all()
    assert torch.allclose(t.inv(x), y)
    assert t.forward_shape(y.shape) == x.shape and t.inverse_shape(x.shape) == y.shape
    # Column j is torch's stick-breaking of column j of y.
    stick = torch.distributions.transforms.StickBreakingTransform()
    assert torch.allclose(x[..., :, 1], stick(y[..., :, 1]))


def test_log_abs_det_jacobian_matches_autograd():
    torch.manual_seed(1)
    t = ColumnStickBreakingTransform()
    y = torch.randn(2, 3, dtype=torch.float64)
    jac = jacobian(lambda v: t(v.reshape(2, 3))[:2].reshape(-1), y.reshape(-1))
    assert torch.allclose(t.log_abs_det_jacobian(y, t(y)), torch.linalg.slogdet(jac).logabsdet)
    batch = torch.randn(4, 2, 3, dtype=torch.float64)
    assert t.log_abs_det_jacobian(batch, t(batch)).shape == (4,)


def test_equality_and_cache():
    t = ColumnStickBreakingTransform()
    assert t == ColumnStickBreakingTransform() and hash(t) == hash(ColumnStickBreakingTransform())
    cached = t.with_cache()
    assert cached == t and cached._cache_size == 1 and cached.with_cache() is cached
