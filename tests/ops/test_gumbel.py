import math

import pytest
import scipy.stats
import torch

from pyro_permutations.ops.gumbel import sample_gumbel

EULER_GAMMA = 0.5772156649015329
FLOAT_DTYPES = [torch.float32, torch.float64]


def constant_rand(value):
    """A stand-in for ``torch.rand`` that returns ``value`` everywhere (``None``: the largest
    float below 1 in the requested dtype)."""

    def rand(shape, dtype=None, device=None, generator=None):
        out = torch.empty(shape, dtype=dtype, device=device)
        if value is None:
            one = torch.ones((), dtype=out.dtype)
            return out.fill_(torch.nextafter(one, torch.zeros_like(one)).item())
        return out.fill_(value)

    return rand


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("u", [0.0, 1.0, None], ids=["zero", "one", "below_one"])
def test_finite_at_uniform_extremes(monkeypatch, dtype, u):
    monkeypatch.setattr(torch, "rand", constant_rand(u))
    g = sample_gumbel((4, 3), dtype=dtype)
    assert g.dtype == dtype and g.shape == (4, 3)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_extremes_are_ordered(monkeypatch, dtype):
    # U -> 0 gives the most negative noise, U -> 1 the largest: the transform is increasing.
    values = []
    for u in [0.0, 1e-30, 0.5, None, 1.0]:
        monkeypatch.setattr(torch, "rand", constant_rand(u))
        values.append(sample_gumbel(1, dtype=dtype).item())
    assert all(math.isfinite(v) for v in values)
    assert values == sorted(values)
    assert values[2] == pytest.approx(-math.log(math.log(2)))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_moments(dtype):
    n = 200_000
    g = sample_gumbel(n, dtype=dtype, generator=torch.Generator().manual_seed(0)).double()
    assert torch.isfinite(g).all()
    variance = math.pi**2 / 6
    # Standard errors of the sample mean and variance (Gumbel excess kurtosis is 12/5).
    mean_se = math.sqrt(variance / n)
    var_se = variance * math.sqrt((2 + 12 / 5) / n)
    assert abs(g.mean().item() - EULER_GAMMA) < 5 * mean_se
    assert abs(g.var().item() - variance) < 5 * var_se


def test_distribution_matches_gumbel_cdf():
    g = sample_gumbel(20_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert scipy.stats.kstest(g.numpy(), "gumbel_r").pvalue > 1e-3


def test_shapes_defaults_and_generator():
    assert sample_gumbel(()).shape == ()
    assert sample_gumbel([2, 3]).shape == (2, 3)
    assert sample_gumbel(torch.Size([2, 3, 4])).shape == (2, 3, 4)
    assert sample_gumbel(5).dtype == torch.get_default_dtype()
    a = sample_gumbel((3, 3), generator=torch.Generator().manual_seed(5))
    b = sample_gumbel((3, 3), generator=torch.Generator().manual_seed(5))
    c = sample_gumbel((3, 3), generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_dtype():
    with pytest.raises(ValueError, match="dtype"):
        sample_gumbel((2,), dtype=torch.long)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_cuda(dtype):
    g = sample_gumbel((1000,), dtype=dtype, device="cuda")
    assert g.device.type == "cuda" and g.dtype == dtype
    assert torch.isfinite(g).all()
