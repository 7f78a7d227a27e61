import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyro_permutations.constraints import birkhoff
from pyro_permutations.distributions.flat_birkhoff import FlatBirkhoff
from pyro_permutations.distributions.rounding_prior import RoundingPrior
from pyro_permutations.ops import sinkhorn

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
Z = 4.5  # z-test threshold: a false alarm about once in 150,000 runs per check


# ----------------------------------------------------------------------------- RoundingPrior


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(1, 5),
    eta=st.floats(0.05, 2.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_log_prob_matches_per_entry_formula(n, eta, seed):
    generator = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(4, n, n, generator=generator, dtype=torch.float64) + 0.5
    log_p = RoundingPrior(n, torch.tensor(eta, dtype=torch.float64)).log_prob(x)
    xs = x.numpy()
    pdf = 0.5 * (scipy.stats.norm.pdf(xs, 0, eta) + scipy.stats.norm.pdf(xs, 1, eta))
    with np.errstate(divide="ignore"):
        expected = np.log(pdf).sum((-1, -2))
    finite = np.isfinite(expected)  # the direct formula underflows far out in the tails
    assert log_p.shape == (4,) and torch.isfinite(log_p).all()
    np.testing.assert_allclose(log_p.numpy()[finite], expected[finite], rtol=1e-10)


def test_batched_eta_shapes_and_log_prob():
    eta = torch.tensor([0.1, 0.3, 1.0], dtype=torch.float64)
    prior = RoundingPrior(3, eta)
    assert prior.batch_shape == (3,) and prior.event_shape == (3, 3)
    assert prior.mean.shape == (3, 3, 3) and prior.variance.shape == (3, 3, 3)
    x = torch.eye(3, dtype=torch.float64)
    log_p = prior.log_prob(x)
    assert log_p.shape == (3,)
    for k in range(3):
        torch.testing.assert_close(log_p[k], RoundingPrior(3, float(eta[k])).log_prob(x))
    assert prior.log_prob(torch.zeros(5, 1, 3, 3, dtype=torch.float64)).shape == (5, 3)
    assert prior.sample((2,)).shape == (2, 3, 3, 3) and prior.sample().dtype == torch.float64


@pytest.mark.parametrize("n, eta_shape", [(1, ()), (3, (3,)), (4, (2, 1))])
def test_infer_shapes_agrees_with_an_instance(n, eta_shape):
    prior = RoundingPrior(n, torch.full(eta_shape, 0.3))
    assert RoundingPrior.infer_shapes(n, eta_shape) == (prior.batch_shape, prior.event_shape)
    with pytest.raises(ValueError, match="n must be a positive int"):
        RoundingPrior.infer_shapes((n,), eta_shape)


def test_expand():
    prior = RoundingPrior(2, torch.tensor([0.2, 0.4]))
    e = prior.expand((3, 2))
    assert type(e) is RoundingPrior and e.batch_shape == (3, 2) and e.n == 2
    x = torch.randn(2, 2)
    torch.testing.assert_close(e.log_prob(x), prior.log_prob(x).expand(3, 2))
    assert e.sample().shape == (3, 2, 2, 2)


def test_log_prob_computes_on_the_values_device():
    """eta (a float, a CPU tensor, expanded) moves to the value's device: here the meta device,
    which mixes with the CPU as CUDA does (and has no values to validate)."""
    value = torch.zeros(2, 3, 3, device="meta")
    for prior in [
        RoundingPrior(3, 0.3, validate_args=False),
        RoundingPrior(3, torch.tensor([0.3, 0.5]), validate_args=False),
        RoundingPrior(3, torch.tensor(0.3), validate_args=False).expand((2,)),
    ]:
        log_p = prior.log_prob(value)
        assert log_p.device.type == "meta" and log_p.shape == (2,)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda(dtype):
    x = torch.eye(3, dtype=dtype)
    cpu = RoundingPrior(3, torch.tensor([0.3, 0.5], dtype=dtype))
    prior = RoundingPrior(3, torch.tensor([0.3, 0.5], dtype=dtype, device="cuda"))
    sample = prior.sample((4,))
    assert sample.device.type == "cuda" and sample.dtype == dtype and sample.shape == (4, 2, 3, 3)
    log_p = prior.log_prob(x.cuda())
    assert log_p.device.type == "cuda" and log_p.dtype == dtype
    torch.testing.assert_close(log_p.cpu(), cpu.log_prob(x))
    for float_eta in [RoundingPrior(3, 0.3), cpu]:  # eta on the CPU, the value on CUDA
        log_p = float_eta.log_prob(x.cuda())
        assert log_p.device.type == "cuda"
        torch.testing.assert_close(log_p.cpu(), float_eta.log_prob(x))


@pytest.mark.parametrize("eta", [0.05, 0.3, 1.0])
def test_sample_moments(eta):
    torch.manual_seed(0)
    prior = RoundingPrior(4, torch.tensor(eta, dtype=torch.float64))
    x = prior.sample((20000,)).reshape(-1)  # 320,000 entries, all independent
    m = x.numel()
    mean, var = prior.mean.reshape(-1)[0], prior.variance.reshape(-1)[0]
    assert float(mean) == 0.5 and math.isclose(float(var), eta**2 + 0.25)
    assert abs(x.mean() - mean) / (var / m).sqrt() < Z
    centred = (x - mean) ** 2
    assert abs(centred.mean() - var) / (centred.var() / m).sqrt() < Z


def test_sample_mixture_weights():
    torch.manual_seed(1)
    x = RoundingPrior(5, 0.1).sample((10000,))  # 250,000 entries
    near_one = (x > 0.5).double().mean()
    assert abs(near_one - 0.5) / math.sqrt(0.25 / x.numel()) < Z
    # Each component is a N(centre, eta^2): check the spread around the nearest centre.
    residual = x - (x > 0.5).to(x.dtype)
    assert abs(residual.std() - 0.1) < 0.002


def test_support_and_flags():
    prior = RoundingPrior(3, 0.2)
    assert prior.support.event_dim == 2 and not prior.has_rsample
    assert prior.eta.dtype == torch.get_default_dtype()


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "3"])
def test_invalid_n(bad):
    with pytest.raises(ValueError, match="n must"):
        RoundingPrior(bad, 0.1)


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_invalid_eta_float(bad):
    with pytest.raises(ValueError, match="eta"):
        RoundingPrior(3, bad)


def test_invalid_eta_tensor():
    with pytest.raises(ValueError, match="eta"):
        RoundingPrior(3, torch.tensor([0.1, 0.0]), validate_args=True)
    with pytest.raises(TypeError, match="eta must be a positive float or a tensor, got list"):
        RoundingPrior(3, [0.1])


# ----------------------------------------------------------------------------- FlatBirkhoff


def test_flat_log_prob_zero_on_doubly_stochastic():
    prior = FlatBirkhoff(4, validate_args=True)
    assert prior.support is birkhoff and prior.event_shape == (4, 4) and prior.batch_shape == ()
    x = sinkhorn(torch.randn(6, 4, 4, dtype=torch.float64, generator=torch.Generator()))
    log_p = prior.log_prob(x)
    assert log_p.shape == (6,) and log_p.dtype == torch.float64 and (log_p == 0).all()


def test_flat_batch_shape_and_expand():
    prior = FlatBirkhoff(3, batch_shape=(2,), validate_args=True)
    assert prior.batch_shape == (2,)
    x = torch.full((3, 3), 1 / 3)
    assert prior.log_prob(x).shape == (2,)
    assert prior.log_prob(x.expand(5, 1, 3, 3)).shape == (5, 2)
    e = prior.expand((4, 2))
    assert type(e) is FlatBirkhoff and e.batch_shape == (4, 2) and e.n == 3
    assert e._validate_args and e.support is birkhoff
    with pytest.raises(ValueError):
        e.log_prob(torch.ones(3, 3))


@pytest.mark.parametrize(
    "value",
    [
        torch.ones(3, 3),  # rows and columns sum to 3
        torch.tensor([[1.5, -0.5, 0.0], [-0.5, 1.5, 0.0], [0.0, 0.0, 1.0]]),  # negative entries
        torch.full((4, 4), 0.25),  # wrong event shape
    ],
)
def test_flat_validation_rejects_outside_birkhoff(value):
    with pytest.raises(ValueError):
        FlatBirkhoff(3, validate_args=True).log_prob(value)
    if value.shape == (3, 3):
        # Without validation, the flat density is returned unchecked.
        assert FlatBirkhoff(3, validate_args=False).log_prob(value) == 0


def test_flat_sample_is_the_centre_of_the_polytope():
    # Not a draw (the density is improper) but a valid point, for Pyro's initialisation.
    d = FlatBirkhoff(3, batch_shape=(2,))
    x = d.sample((4,))
    assert x.shape == (4, 2, 3, 3) and birkhoff.check(x).all()
    assert torch.equal(x, torch.full((4, 2, 3, 3), 1 / 3)) and torch.equal(d.mean, x[0])
    with pytest.raises(NotImplementedError):
        FlatBirkhoff(3).rsample()


@pytest.mark.parametrize("bad", [0, 1.5, True])
def test_flat_invalid_n(bad):
    with pytest.raises(ValueError, match="n must"):
        FlatBirkhoff(bad)
