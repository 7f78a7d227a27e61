import contextlib
import math
import re

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from pyro.infer import TraceEnum_ELBO

from pyro_permutations.constraints import permutation
from pyro_permutations.distributions import Mallows, UniformPermutation
from pyro_permutations.distributions.plackett_luce import PlackettLuce
from pyro_permutations.ops import all_permutations, invert_perm, perm_to_rank


def sequential_choice_prob(logits, perm):
    """Pure-Python Plackett-Luce probability: pick the items position by position."""
    order = [None] * len(perm)
    for item, position in enumerate(perm):
        order[position] = item
    remaining = list(range(len(perm)))
    prob = 1.0
    for item in order:
        prob *= math.exp(logits[item]) / sum(math.exp(logits[m]) for m in remaining)
        remaining.remove(item)
    return prob


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_log_prob_matches_sequential_choices(n):
    torch.manual_seed(n)
    logits = 1.5 * torch.randn(2, n, dtype=torch.float64)
    d = PlackettLuce(logits)
    perms = all_permutations(n)
    log_p = d.log_prob(perms[:, None, :])  # values broadcast against the batch
    assert log_p.shape == (math.factorial(n), 2) and log_p.dtype == torch.float64
    expected = torch.tensor(
        [[sequential_choice_prob(row.tolist(), p.tolist()) for row in logits] for p in perms],
        dtype=torch.float64,
    )
    assert torch.allclose(log_p.exp(), expected, rtol=1e-10, atol=0)
    assert torch.allclose(log_p.exp().sum(0), torch.ones(2, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalised_shift_invariant_and_gradient_of_total_is_zero(dtype):
    torch.manual_seed(0)
    logits = (3 * torch.randn(3, 5, dtype=dtype)).requires_grad_()
    log_p = PlackettLuce(logits).log_prob_all()
    assert log_p.shape == (120, 3) and log_p.dtype == dtype
    total = torch.logsumexp(log_p, dim=0)
    assert torch.allclose(total, torch.zeros(3, dtype=dtype), atol=1e-5)
    (grad,) = torch.autograd.grad(total.sum(), logits)
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-5)
    shifted = PlackettLuce(logits.detach() + torch.tensor([[1.0], [-7.0], [30.0]], dtype=dtype))
    assert torch.allclose(shifted.log_prob_all(), log_p.detach(), atol=1e-4)


def exact_pmf(d):
    """``(N!,) + batch_shape`` probabilities, row r the permutation of rank r."""
    return d.log_prob_all().double().exp()


@pytest.mark.parametrize(
    "logits",
    [
        [0.0, 0.0, 0.0],
        [2.0, -1.0, 0.5],
        [0.3, 1.2, -0.8, 0.0],
        [1.0, 0.5, 0.0, -0.5, -1.0],
        [[0.0, 1.0, -1.0, 0.5], [1.5, 0.0, 0.0, -1.5]],  # batched: each element checked
    ],
)
def test_samples_match_exact_pmf(logits):
    torch.manual_seed(0)
    d = PlackettLuce(torch.tensor(logits))
    n = d.event_shape[0]
    samples = d.sample((40000,))
    assert samples.dtype == torch.long and permutation.check(samples).all()
    probs = exact_pmf(d).reshape(math.factorial(n), -1)
    ranks = perm_to_rank(samples).reshape(samples.shape[0], -1)
    for b in range(probs.shape[1]):
        counts = torch.bincount(ranks[:, b], minlength=math.factorial(n)).double()
        assert multinomial_goodness_of_fit(probs[:, b], counts) > 1e-3


def test_values_are_positions_per_item():
    # Item 2 is almost surely chosen first: it is at position 0, perm[2] == 0.
    logits = torch.tensor([0.0, 1.0, 40.0, -1.0], dtype=torch.float64)
    d = PlackettLuce(logits)
    samples = d.sample((1000,))
    assert (samples[:, 2] == 0).all()
    assert (invert_perm(samples)[:, 0] == 2).all()  # the ordering view lists item 2 first
    perms = all_permutations(4)
    item_2_first = d.log_prob(perms).exp()[perms[:, 2] == 0].sum()
    assert item_2_first == pytest.approx(1.0, abs=1e-15)


def test_mode():
    d = PlackettLuce(torch.tensor([0.3, 2.0, -1.0, 0.5]))
    # Order by decreasing logit: items 1, 3, 0, 2; item 0 is at position 2, etc.
    assert d.mode.tolist() == [2, 0, 3, 1]
    torch.manual_seed(0)
    batched = PlackettLuce(torch.randn(3, 2, 5))
    best = all_permutations(5)[batched.log_prob_all().argmax(0)]
    assert torch.equal(batched.mode, best)
    assert PlackettLuce(torch.zeros(3)).mode.tolist() == [0, 1, 2]  # ties to the lower index


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("sample_shape", [(), (4,)])
def test_shapes_expand_and_enumerate_support(batch, sample_shape):
    torch.manual_seed(0)
    n = 4
    logits = torch.randn(batch + (n,))
    d = PlackettLuce(logits)
    assert d.batch_shape == batch and d.event_shape == (n,)
    assert PlackettLuce.infer_shapes(logits.shape) == (batch, (n,))
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + batch + (n,)
    assert d.log_prob(x).shape == sample_shape + batch
    assert d.mode.shape == batch + (n,)

    e = d.expand((5,) + batch)
    assert e.batch_shape == (5,) + batch and e.sample().shape == (5,) + batch + (n,)
    k = len(sample_shape)
    expected = d.log_prob(x).unsqueeze(k).expand(sample_shape + (5,) + batch)
    assert torch.equal(e.log_prob(x.unsqueeze(k)), expected)

    full = d.enumerate_support()
    assert full.shape == (24,) + batch + (n,)
    lean = d.enumerate_support(expand=False)
    assert lean.shape == (24,) + (1,) * len(batch) + (n,)
    assert torch.equal(full, lean.expand_as(full))
    assert torch.allclose(d.log_prob(lean).exp().sum(0), torch.ones(batch))
    assert torch.equal(d.log_prob(full), d.log_prob(lean))


def test_errors():
    with pytest.raises(ValueError, match="logits"):
        PlackettLuce(torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match="logits"):
        PlackettLuce(torch.tensor([0.0, math.inf]))
    with pytest.raises(ValueError, match="logits"):
        PlackettLuce(torch.tensor([-math.inf, 0.0]))
    with pytest.raises(ValueError, match="logits"):
        PlackettLuce(torch.tensor(1.0))
    with pytest.raises(ValueError, match="logits"):
        PlackettLuce(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="logits"):
        PlackettLuce(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="logits"):
        PlackettLuce([0.0, 1.0])
    d = PlackettLuce(torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="enumerate"):
        PlackettLuce(torch.zeros(9)).enumerate_support()


NON_PERMUTATIONS = [
    torch.tensor([0, 0, 1]),  # a repeated item
    torch.tensor([-1, 0, 1]),  # out of range
    torch.tensor([0, 1, 3]),
    torch.tensor([0.0, 1.0, 2.0]),  # not an integer tensor
]
#: Values with too few or too many items: a shape error, not -inf, with or without validation.
WRONG_LENGTHS = [torch.tensor([0, 1]), torch.tensor([0, 1, 2, 3])]


@pytest.mark.parametrize("validate_args", [False, True])
@pytest.mark.parametrize("value", WRONG_LENGTHS, ids=str)
def test_a_value_of_the_wrong_length_is_a_shape_error(value, validate_args):
    dists = [
        PlackettLuce(torch.zeros(3), validate_args=validate_args),
        Mallows(torch.tensor([2, 0, 1]), 1.0, validate_args=validate_args),
        UniformPermutation(3, validate_args=validate_args),
    ]
    for d in dists:
        message = f"value has shape {tuple(value.shape)}, but {type(d).__name__} has event_shape"
        with pytest.raises(ValueError, match=re.escape(message)):
            d.log_prob(value)


@pytest.mark.parametrize("value", NON_PERMUTATIONS, ids=str)
def test_non_permutations_get_minus_inf_like_mallows_and_uniform(value):
    logits = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    dists = [
        PlackettLuce(logits, validate_args=False),
        Mallows(torch.tensor([2, 0, 1]), 1.0, validate_args=False),
        UniformPermutation(3, validate_args=False),
    ]
    for d in dists:
        assert d.log_prob(value) == -math.inf
    # In a batch beside permutations: -inf only where the value is not one, no NaN gradient.
    batch = torch.stack([torch.tensor([1, 2, 0]), torch.tensor([0, 2, 2])])
    for d in dists:
        log_p = d.log_prob(batch)
        assert torch.isfinite(log_p[0]) and log_p[1] == -math.inf
    (grad,) = torch.autograd.grad(dists[0].log_prob(batch)[0], logits)
    assert torch.isfinite(grad).all()


def test_a_value_on_another_device_or_batch_is_named():
    """PlackettLuce and Mallows name the value and their parameter (not an internal ``p`` and
    ``q``) when the value's batch shape does not broadcast or it is on another device (meta
    here: it does not mix with the CPU, as CUDA does not)."""
    dists = {
        "logits": PlackettLuce(torch.zeros(2, 3), validate_args=False),
        "center": Mallows(torch.tensor([[2, 0, 1], [0, 1, 2]]), 1.0, validate_args=False),
    }
    for name, d in dists.items():
        with pytest.raises(ValueError, match=rf"value \(3,\) and {name} \(2,\) do not broadcast"):
            d.log_prob(torch.tensor([[1, 2, 0]] * 3))
        with pytest.raises(ValueError, match=f"value is on meta but {name} is on cpu"):
            d.log_prob(torch.tensor([1, 2, 0], device="meta"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_log_prob_needs_the_value_on_cuda():
    for name, d in {
        "logits": PlackettLuce(torch.tensor([0.5, -1.0, 2.0], device="cuda")),
        "center": Mallows(torch.tensor([2, 0, 1], device="cuda"), 1.0),
    }.items():
        value = torch.tensor([1, 2, 0])
        log_p = d.log_prob(value.cuda())
        assert log_p.device.type == "cuda" and torch.isfinite(log_p)
        with pytest.raises(ValueError, match=f"value is on cpu but {name} is on cuda"):
            d.log_prob(value)


def observation_log_lik(perm, locs, data):
    """log N(data[i] | locs[perm[i]], 1), summed over the items: item i's reading depends on
    its position."""
    return dist.Normal(locs[perm], 1.0).to_event(1).log_prob(data)


@pytest.mark.parametrize("plate", [False, True])
def test_enumerated_in_trace_enum_elbo(plate):
    torch.manual_seed(0)
    n = 4
    locs = torch.tensor([-2.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    logits = (
        torch.randn(2, n, dtype=torch.float64) if plate else torch.randn(n, dtype=torch.float64)
    )
    data = torch.randn(logits.shape, dtype=torch.float64)

    def model():
        with pyro.plate("items", 2) if plate else contextlib.nullcontext():
            perm = pyro.sample("perm", PlackettLuce(logits), infer={"enumerate": "parallel"})
            pyro.sample("obs", dist.Normal(locs[perm], 1.0).to_event(1), obs=data)

    def guide():
        pass

    loss = TraceEnum_ELBO(max_plate_nesting=int(plate)).loss(model, guide)
    # By hand: log p(data) = sum over plate elements of logsumexp over all N! permutations.
    perms = all_permutations(n)
    if plate:
        perms = perms[:, None, :]  # (N!, 1, N) broadcasts against the plate's batch (2,)
    joint = PlackettLuce(logits).log_prob(perms) + observation_log_lik(perms, locs, data)
    log_marginal = torch.logsumexp(joint, dim=0).sum()
    assert loss == pytest.approx(-log_marginal.item(), rel=1e-10)
