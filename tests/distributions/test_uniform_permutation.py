import contextlib
import math
import re

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from pyro.infer import TraceEnum_ELBO, config_enumerate, infer_discrete

from pyro_permutations.constraints import permutation
from pyro_permutations.distributions.uniform_permutation import UniformPermutation
from pyro_permutations.ops import all_permutations, perm_to_rank


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_log_prob_is_minus_log_n_factorial(n):
    d = UniformPermutation(n, batch_shape=(2,))
    perms = d.enumerate_support(expand=False)
    log_p = d.log_prob(perms)
    assert log_p.shape == (math.factorial(n), 2)
    assert torch.allclose(log_p, torch.tensor(-math.log(math.factorial(n))))
    assert torch.allclose(torch.logsumexp(log_p, dim=0), torch.zeros(2), atol=1e-5)


def test_log_prob_outside_support():
    d = UniformPermutation(3, validate_args=False)
    log_p = d.log_prob(torch.tensor([[2, 0, 1], [0, 0, 1], [0, 1, 3]]))
    assert log_p[0] == -math.log(6) and torch.isneginf(log_p[1:]).all()
    with pytest.raises(ValueError, match="event_shape"):  # a wrong length is a shape error
        d.log_prob(torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="support"):
        UniformPermutation(3, validate_args=True).log_prob(torch.tensor([0, 0, 1]))


@pytest.mark.parametrize("n, batch", [(3, ()), (4, (2,)), (5, (2, 1))])
def test_samples_are_uniform(n, batch):
    torch.manual_seed(1)
    d = UniformPermutation(n, batch_shape=batch)
    samples = d.sample((30000,))
    assert samples.shape == (30000,) + batch + (n,) and samples.dtype == torch.long
    assert permutation.check(samples).all()
    ranks = perm_to_rank(samples).reshape(30000, -1)
    probs = torch.full((math.factorial(n),), 1 / math.factorial(n), dtype=torch.float64)
    for b in range(ranks.shape[1]):  # every batch element is uniform on its own
        counts = torch.bincount(ranks[:, b], minlength=math.factorial(n)).double()
        assert multinomial_goodness_of_fit(probs, counts) > 1e-3


def test_batch_elements_are_independent():
    torch.manual_seed(1)
    ranks = perm_to_rank(UniformPermutation(3, batch_shape=(2,)).sample((30000,)))
    counts = torch.bincount(6 * ranks[:, 0] + ranks[:, 1], minlength=36).double()
    assert (
        multinomial_goodness_of_fit(torch.full((36,), 1 / 36, dtype=torch.float64), counts) > 1e-3
    )


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
def test_shapes_expand_and_enumerate_support(batch):
    d = UniformPermutation(4, batch_shape=batch)
    assert d.batch_shape == batch and d.event_shape == (4,)
    assert d.sample().shape == batch + (4,) and d.sample((5,)).shape == (5,) + batch + (4,)
    full = d.enumerate_support()
    lean = d.enumerate_support(expand=False)
    assert full.shape == (24,) + batch + (4,)
    assert lean.shape == (24,) + (1,) * len(batch) + (4,)
    assert torch.equal(lean.reshape(24, 4), all_permutations(4))
    assert d.log_prob(full).shape == (24,) + batch
    e = d.expand((7,) + batch)
    assert isinstance(e, UniformPermutation) and e.n == 4
    assert e.batch_shape == (7,) + batch and e.sample().shape == (7,) + batch + (4,)
    assert e.log_prob(lean.unsqueeze(1)).shape == (24, 7) + batch


def test_errors():
    for bad in [0, -1, 2.0, True, "3", None]:
        with pytest.raises(ValueError, match="n must be a positive int"):
            UniformPermutation(bad)
    assert UniformPermutation(np.int64(3)).n == 3
    with pytest.raises(ValueError, match="enumerate"):
        UniformPermutation(9).enumerate_support()


@pytest.mark.parametrize("plate", [False, True])
def test_enumerated_in_trace_enum_elbo(plate):
    torch.manual_seed(0)
    n = 4
    # log_prob has the default dtype (the distribution has no tensor to take one from), and
    # Pyro's enumerated contraction needs every site in one dtype: float32 here.
    locs = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    data = torch.randn((2, n) if plate else (n,))

    def model():
        with pyro.plate("items", 2) if plate else contextlib.nullcontext():
            perm = pyro.sample("perm", UniformPermutation(n), infer={"enumerate": "parallel"})
            # Item i's reading depends on its position: loc = locs[perm[i]].
            pyro.sample("obs", dist.Normal(locs[perm], 1.0).to_event(1), obs=data)

    def guide():
        pass

    loss = TraceEnum_ELBO(max_plate_nesting=int(plate)).loss(model, guide)
    # By hand: log p(data) = sum over plate elements of logsumexp over all N! permutations.
    perms = all_permutations(n)
    if plate:
        perms = perms[:, None, :]
    log_lik = dist.Normal(locs[perms], 1.0).to_event(1).log_prob(data)
    log_marginal = (torch.logsumexp(log_lik.double(), dim=0) - math.log(math.factorial(n))).sum()
    assert loss == pytest.approx(-log_marginal.item(), rel=1e-5)


def test_validate_args_keeps_its_position_and_device_is_keyword_only():
    d = UniformPermutation(3, (2,), False)  # (n, batch_shape, validate_args) as before
    assert d._validate_args is False and d.batch_shape == (2,)
    with pytest.raises(TypeError):
        UniformPermutation(3, (), None, "cpu")


def test_device_places_samples_and_enumerated_values():
    """On the meta device, which (as CUDA) does not mix with CPU tensors."""
    assert UniformPermutation(3).device == torch.device("cpu")
    d = UniformPermutation(3, batch_shape=(2,), device="meta", validate_args=False)
    assert d.device == torch.device("meta")
    for e in [d, d.expand((5, 2))]:
        assert e.device == d.device
        sample = e.sample((4,))
        assert sample.device == d.device and sample.shape == (4,) + e.batch_shape + (3,)
        assert e.enumerate_support().device == d.device
        assert e.log_prob_all().device == d.device
    # log_prob follows the value's device, as for any value of this parameterless law.
    assert d.log_prob(torch.tensor([2, 0, 1])).device == torch.device("cpu")
    for bad in ["gpu", 0, torch.zeros(1)]:
        with pytest.raises(ValueError, match="device must be a torch.device"):
            UniformPermutation(3, device=bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("plate", [False, True])
def test_enumerated_on_cuda(plate):
    torch.manual_seed(0)
    n = 3
    locs = torch.tensor([-2.0, 0.0, 1.0])
    data = torch.randn((2, n) if plate else (n,))

    def loss(device):
        def model():
            with pyro.plate("items", 2, device=device) if plate else contextlib.nullcontext():
                d = UniformPermutation(n, device=device)
                perm = pyro.sample("perm", d, infer={"enumerate": "parallel"})
                assert perm.device.type == device
                obs = data.to(device)
                pyro.sample("obs", dist.Normal(locs.to(device)[perm], 1.0).to_event(1), obs=obs)

        return TraceEnum_ELBO(max_plate_nesting=int(plate)).loss(model, lambda: None)

    assert loss("cuda") == pytest.approx(loss("cpu"), rel=1e-5)


def test_methods_named_by_the_base_docstring_exist():
    from pyro_permutations.distributions._discrete_permutation import (
        DiscretePermutationDistribution,
    )

    named = re.findall(r"``(\w+)\(\)``", DiscretePermutationDistribution.__doc__)
    assert "log_prob_all" in named and "enumerate_support" in named
    for name in named:
        assert callable(getattr(UniformPermutation(3), name))


def test_infer_discrete_refuses_a_permutation_site_as_documented():
    # Pyro's infer_discrete handles only sites without an event dimension; if this ever
    # passes, update the DiscretePermutationDistribution docstring.
    locs = torch.tensor([-2.0, 0.0, 1.0])

    @config_enumerate
    def model():
        perm = pyro.sample("perm", UniformPermutation(3))
        pyro.sample("obs", dist.Normal(locs[perm], 1.0).to_event(1), obs=torch.zeros(3))

    with pytest.raises(ValueError, match="Invalid tensor shape"):
        poutine.trace(infer_discrete(model, first_available_dim=-1)).get_trace()


def test_log_prob_of_a_batch_that_does_not_broadcast_names_both_shapes():
    d = UniformPermutation(3, batch_shape=(2,), validate_args=False)
    value = torch.stack([torch.arange(3)] * 3)  # batch (3,) against the distribution's (2,)
    with pytest.raises(ValueError, match=r"value \(3,\) and batch_shape \(2,\) do not broadcast"):
        d.log_prob(value)
