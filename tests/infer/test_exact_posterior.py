import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_permutations.distributions import (
    FlatBirkhoff,
    GumbelSinkhorn,
    Mallows,
    RoundingBirkhoff,
    RoundingPrior,
    StickBreakingBirkhoff,
    UniformPermutation,
)
from pyro_permutations.infer import exact_posterior
from pyro_permutations.ops import all_permutations, perm_to_matrix

SIGMA = 0.4


def by_hand(centers, obs):
    """Posterior under a uniform prior: softmax over permutations of the Gaussian likelihood,
    summed over every observation set in ``obs`` (shape ``(..., N, D)``)."""
    n = centers.shape[0]
    logliks = []
    for perm in all_permutations(n).tolist():
        mean = centers[perm]  # observation i is centre perm[i]
        logliks.append(dist.Normal(mean, SIGMA).log_prob(obs).sum().item())
    logliks = torch.tensor(logliks, dtype=torch.float64)
    return (logliks - torch.logsumexp(logliks, 0)).exp()


@pytest.fixture
def problem():
    torch.manual_seed(0)
    n = 4
    centers = torch.randn(n, 2, dtype=torch.float64)
    obs = centers[torch.tensor([1, 3, 0, 2])] + SIGMA * torch.randn(n, 2, dtype=torch.float64)
    return centers, obs


def test_matrix_site_matches_hand_computation(problem):
    centers, obs = problem

    def model():
        p = pyro.sample("P", FlatBirkhoff(4))
        pyro.sample("y", dist.Normal(p.to(centers) @ centers, SIGMA).to_event(2), obs=obs)

    probs = exact_posterior(model, "P", prior="uniform")
    assert probs.shape == (24,) and probs.dtype == torch.float64
    assert torch.allclose(probs, by_hand(centers, obs), atol=1e-10)
    assert torch.allclose(exact_posterior(model, "P", chunk_size=5, prior="uniform"), probs)
    numpy_ints = {"chunk_size": np.int64(5), "max_plate_nesting": np.int32(0)}
    assert torch.allclose(exact_posterior(model, "P", prior="uniform", **numpy_ints), probs)
    log_probs = exact_posterior(model, "P", log=True, prior="uniform")
    assert torch.allclose(log_probs.exp(), probs)


def test_model_keywords_named_dtype_and_device_reach_the_model():
    """Only ``value_dtype`` / ``value_device`` belong to exact_posterior; a model's own ``dtype``
    or ``device`` keyword passes through like any other."""
    seen = {}

    def model(dtype=torch.float32, device="cpu"):
        seen.update(dtype=dtype, device=device)
        p = pyro.sample("P", FlatBirkhoff(3)).to(dtype)
        obs = torch.eye(3, dtype=dtype)
        pyro.sample("y", dist.Normal(p, 0.5).to_event(2), obs=obs)

    probs = exact_posterior(model, "P", prior="uniform", dtype=torch.float64, device="any-device")
    assert seen == {"dtype": torch.float64, "device": "any-device"}
    assert probs.argmax() == 0  # the identity explains obs = I best


def test_plates_and_model_arguments(problem):
    centers, _ = problem
    torch.manual_seed(1)
    sets = centers[torch.tensor([1, 3, 0, 2])] + SIGMA * torch.randn(3, 4, 2, dtype=torch.float64)
    weights = torch.randn(4, 4, dtype=torch.float64)
    extra = torch.randn(2, 3, dtype=torch.float64)

    def model(data, scale=1.0):
        p = pyro.sample("P", FlatBirkhoff(4)).to(centers)
        with pyro.plate("sets", data.shape[0], dim=-1):
            pyro.sample("y", dist.Normal(p @ centers, SIGMA).to_event(2), obs=data)
        score = (p * weights).sum((-2, -1))
        with pyro.plate("a", 2, dim=-2), pyro.plate("b", 3, dim=-1):
            pyro.sample("w", dist.Normal(score, scale), obs=extra)

    probs = exact_posterior(model, "P", sets, prior="uniform")
    # By hand: the Gaussian likelihood of every set plus the plated score terms.
    log_post = torch.log(by_hand(centers, sets))
    for k, perm in enumerate(all_permutations(4).tolist()):
        score = weights[torch.arange(4), perm].sum()
        log_post[k] += dist.Normal(score, 1.0).log_prob(extra).sum()
    expected = (log_post - torch.logsumexp(log_post, 0)).exp()
    assert torch.allclose(probs, expected, atol=1e-10)
    again = exact_posterior(model, "P", sets, max_plate_nesting=3, prior="uniform")
    assert torch.allclose(again, probs)
    wide = exact_posterior(model, "P", sets, scale=1e3, prior="uniform")
    assert torch.allclose(wide, by_hand(centers, sets), atol=1e-5)


def test_values_take_the_models_dtype(problem):
    """A float64 model gets float64 matrices: from ``dtype`` (or the default dtype) at a site
    without parameters, from the parameters at a site with them; a model that fails on the
    values' dtype is told to pass ``dtype``."""
    centers, obs = problem  # float64
    seen = set()

    def model():
        p = pyro.sample("P", FlatBirkhoff(4))
        seen.add(p.dtype)
        pyro.sample("y", dist.Normal(p @ centers, SIGMA).to_event(2), obs=obs)

    with pytest.raises(ValueError, match=r"float32 at site 'P'.*value_dtype=torch.float64"):
        exact_posterior(model, "P", prior="uniform")
    seen.clear()
    probs = exact_posterior(model, "P", prior="uniform", value_dtype=torch.float64)
    assert seen == {torch.float64}
    assert torch.allclose(probs, by_hand(centers, obs), atol=1e-10)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert torch.equal(exact_posterior(model, "P", prior="uniform"), probs)
    finally:
        torch.set_default_dtype(default)

    def gumbel_sinkhorn_model():
        p = pyro.sample("P", GumbelSinkhorn(torch.zeros(4, 4, dtype=torch.float64), 1.0))
        pyro.sample("y", dist.Normal(p @ centers, SIGMA).to_event(2), obs=obs)

    assert torch.allclose(exact_posterior(gumbel_sinkhorn_model, "P", prior="uniform"), probs)
    with pytest.raises(ValueError, match="value_dtype must be a floating torch.dtype"):
        exact_posterior(model, "P", prior="uniform", value_dtype=torch.long)

    def permutation_model():
        pyro.sample("perm", Mallows(torch.arange(4), 0.7))

    with pytest.raises(ValueError, match="site 'perm' holds permutations"):
        exact_posterior(permutation_model, "perm", value_dtype=torch.float64)


@pytest.mark.parametrize(
    "make",
    [
        lambda: StickBreakingBirkhoff(torch.zeros(3, 3, dtype=torch.float64), 1.0),
        lambda: RoundingBirkhoff(torch.full((4, 4), 0.25, dtype=torch.float64), 0.3, 0.5),
        lambda: StickBreakingBirkhoff(torch.zeros(3, 3, dtype=torch.float64), 1.0).mask(False),
        lambda: dist.Normal(torch.zeros(4, 4, dtype=torch.float64), 1.0).to_event(2),
    ],
    ids=["StickBreakingBirkhoff", "RoundingBirkhoff", "masked", "Independent"],
)
def test_values_take_the_dtype_of_a_wrapped_distribution(problem, make):
    """The parameters of a transformed distribution are those of its base (``loc`` of the
    Normal inside StickBreakingBirkhoff and RoundingBirkhoff), found through any wrapper."""
    centers, obs = problem  # float64
    seen = set()

    def model():
        p = pyro.sample("P", make())
        seen.add(p.dtype)
        pyro.sample("y", dist.Normal(p @ centers, SIGMA).to_event(2), obs=obs)

    probs = exact_posterior(model, "P", prior="uniform")
    assert seen == {torch.float64}
    assert torch.allclose(probs, by_hand(centers, obs), atol=1e-10)


def test_a_model_on_another_device_is_told_to_pass_device(problem):
    """The meta device does not mix with the CPU, as CUDA does not."""
    centers, obs = problem

    shift = torch.zeros_like(obs, device="meta")

    def model():
        p = pyro.sample("P", FlatBirkhoff(4))
        pyro.sample("y", dist.Normal(p @ centers + shift, SIGMA).to_event(2), obs=obs)

    with pytest.raises(ValueError, match=r"value on cpu at site 'P'.*value_device='cuda'"):
        exact_posterior(model, "P", prior="uniform", value_dtype=torch.float64)
    for bad in ["gpu", 0, torch.float64]:
        with pytest.raises(ValueError, match="value_device must be a torch.device"):
            exact_posterior(model, "P", prior="uniform", value_device=bad)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_matrix_sites(problem):
    centers, obs = problem
    expected = by_hand(centers, obs)
    centers, obs = centers.cuda(), obs.cuda()

    def flat_model():
        p = pyro.sample("P", FlatBirkhoff(4))
        pyro.sample("y", dist.Normal(p @ centers, SIGMA).to_event(2), obs=obs)

    with pytest.raises(ValueError, match="pass it as value_device"):
        exact_posterior(flat_model, "P", prior="uniform", value_dtype=torch.float64)
    probs = exact_posterior(
        flat_model, "P", prior="uniform", value_dtype=torch.float64, value_device="cuda"
    )
    assert probs.device.type == "cuda"
    torch.testing.assert_close(probs.cpu(), expected)

    def moving_model():  # the values stay on the CPU, and the model moves them
        p = pyro.sample("P", FlatBirkhoff(4))
        pyro.sample("y", dist.Normal(p.to(centers) @ centers, SIGMA).to_event(2), obs=obs)

    probs = exact_posterior(moving_model, "P", prior="uniform")
    assert probs.device.type == "cuda"
    torch.testing.assert_close(probs.cpu(), expected)

    def stick_breaking_model():  # CUDA values from the base Normal's loc
        loc = torch.zeros(3, 3, dtype=torch.float64, device="cuda")
        p = pyro.sample("P", StickBreakingBirkhoff(loc, 1.0))
        pyro.sample("y", dist.Normal(p @ centers, SIGMA).to_event(2), obs=obs)

    probs = exact_posterior(stick_breaking_model, "P", prior="uniform")
    assert probs.device.type == "cuda"
    torch.testing.assert_close(probs.cpu(), expected)


@needs_cuda
def test_cuda_permutation_sites(problem):
    centers, obs = problem
    expected = by_hand(centers, obs)
    centers, obs = centers.cuda(), obs.cuda()
    sites = {
        "cpu values": lambda: UniformPermutation(4),
        "device": lambda: UniformPermutation(4, device="cuda"),
        "parameters": lambda: Mallows(torch.arange(4, device="cuda"), 0.0),
    }
    for name, make in sites.items():

        def model(make=make):
            perm = pyro.sample("perm", make())
            # Observation i comes from centre perm[i] (a CPU index into a CUDA tensor is fine).
            pyro.sample("y", dist.Normal(centers[perm], SIGMA).to_event(2), obs=obs)

        probs = exact_posterior(model, "perm")  # a uniform prior: the site's own
        assert probs.device.type == "cuda", name
        torch.testing.assert_close(probs.cpu(), expected)


CONTINUOUS_SITES = {
    "FlatBirkhoff": lambda: FlatBirkhoff(4),
    "GumbelSinkhorn": lambda: GumbelSinkhorn(torch.zeros(4, 4), 1.0),
    "StickBreakingBirkhoff": lambda: StickBreakingBirkhoff(torch.zeros(3, 3), torch.ones(3, 3)),
    "RoundingBirkhoff": lambda: RoundingBirkhoff(torch.full((4, 4), 0.25), 0.3, 0.5),
    "RoundingPrior": lambda: RoundingPrior(4, 0.3),
}


@pytest.mark.parametrize("make", CONTINUOUS_SITES.values(), ids=CONTINUOUS_SITES.keys())
def test_a_continuous_site_needs_a_uniform_prior(problem, make):
    centers, obs = problem

    def model():
        p = pyro.sample("P", make())
        pyro.sample("y", dist.Normal(p.to(centers) @ centers, SIGMA).to_event(2), obs=obs)

    uniform = exact_posterior(model, "P", prior="uniform")
    assert torch.allclose(uniform, by_hand(centers, obs), atol=1e-10)
    if isinstance(make(), FlatBirkhoff):  # a constant density: its own prior is the uniform one
        assert torch.equal(exact_posterior(model, "P"), uniform)
        return
    # Its density at the vertices is no pmf (StickBreakingBirkhoff's is clamped, not zero).
    with pytest.raises(ValueError, match="continuous.*prior='uniform'"):
        exact_posterior(model, "P")


def test_a_discrete_site_is_its_own_prior(problem):
    centers, obs = problem
    center = torch.tensor([1, 3, 0, 2])

    def model():
        perm = pyro.sample("perm", Mallows(center, 0.7))
        p = perm_to_matrix(perm, dtype=centers.dtype)
        pyro.sample("y", dist.Normal(p @ centers, SIGMA).to_event(2), obs=obs)

    log_prior = Mallows(center, 0.7).log_prob_all().double()
    expected = torch.softmax(torch.log(by_hand(centers, obs)) + log_prior, 0)
    assert torch.allclose(exact_posterior(model, "perm"), expected, atol=1e-10)
    assert torch.allclose(exact_posterior(model, "perm", prior="uniform"), by_hand(centers, obs))


def test_errors():
    def big():
        pyro.sample("P", FlatBirkhoff(11))

    with pytest.raises(ValueError, match="too many to enumerate"):
        exact_posterior(big, "P")

    def latent():
        p = pyro.sample("P", FlatBirkhoff(3))
        pyro.sample("s", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(p.sum(), 1.0), obs=torch.tensor(3.0))

    with pytest.raises(ValueError, match="'s' is latent"):
        exact_posterior(latent, "P", prior="uniform")
    with pytest.raises(ValueError, match="'P' is latent.*if 'Q' is not a sample site"):
        exact_posterior(latent, "Q")
    with pytest.raises(ValueError, match="prior must be"):
        exact_posterior(latent, "P", prior="flat")
    for option in ({"chunk_size": True}, {"chunk_size": 0}, {"max_plate_nesting": -1}):
        with pytest.raises(ValueError, match=f"{next(iter(option))} must be"):
            exact_posterior(latent, "P", prior="uniform", **option)

    def nan_model():
        p = pyro.sample("P", FlatBirkhoff(3))
        pyro.sample("y", dist.Normal(p.sum() * math.nan, 1.0), obs=torch.tensor(0.0))

    with pyro.validation_enabled(False), pytest.raises(ValueError, match="NaN"):
        exact_posterior(nan_model, "P", prior="uniform")


def test_another_latent_site_is_reported_before_the_vectorised_trace():
    """A latent site is named even where its value would break the batched trace (a scale
    drawn before ``P``, which does not broadcast against the batch of values) or cannot be
    drawn at all (an improper prior before or after ``P``)."""
    centers = torch.randn(3, 2, generator=torch.Generator().manual_seed(3))

    def scale_first():
        s = pyro.sample("s", dist.HalfNormal(1.0))
        p = pyro.sample("P", FlatBirkhoff(3))
        pyro.sample("y", dist.Normal(p @ centers, s).to_event(2), obs=centers[[1, 0, 2]])

    with pytest.raises(ValueError, match="'s' is latent"):
        exact_posterior(scale_first, "P", prior="uniform")

    def improper_after():
        p = pyro.sample("P", FlatBirkhoff(3))
        pyro.sample("Q", FlatBirkhoff(2))
        pyro.sample("y", dist.Normal(p @ centers, 1.0).to_event(2), obs=centers)

    with pytest.raises(ValueError, match="'Q' is latent"):
        exact_posterior(improper_after, "P", prior="uniform", max_plate_nesting=0)

    def improper_before():
        pyro.sample("Q", FlatBirkhoff(2))
        p = pyro.sample("P", FlatBirkhoff(3))
        pyro.sample("y", dist.Normal(p @ centers, 1.0).to_event(2), obs=centers)

    with pytest.raises(ValueError, match="'Q' is latent"):
        exact_posterior(improper_before, "P", prior="uniform")


def test_eight_items_is_vectorised():
    torch.manual_seed(2)
    centers = torch.randn(8, 2)
    truth = torch.tensor([3, 1, 7, 0, 2, 6, 5, 4])
    obs = centers[truth] + 0.05 * torch.randn(8, 2)

    def model():
        p = pyro.sample("P", FlatBirkhoff(8))
        pyro.sample("y", dist.Normal(p @ centers, 0.05).to_event(2), obs=obs)

    probs = exact_posterior(model, "P", prior="uniform")
    assert probs.shape == (math.factorial(8),)
    assert torch.equal(all_permutations(8)[probs.argmax()], truth)
    assert abs(probs.sum().item() - 1) < 1e-9


# ------------------------------------------- issue 21: items in a plate, and batch misuse


def _indexed_model(centers, obs, items):
    """``obs[i] ~ Normal(centers[pi[i]])``, the items in a plate (``"plate"``), an event
    dimension (``"event"``) or neither (``"bare"``)."""

    def model():
        pi = pyro.sample("pi", UniformPermutation(centers.shape[0]))
        mu = centers[pi]  # (..., N, D): observation i is centre pi[i]
        if items == "plate":
            with pyro.plate("items", centers.shape[0], dim=-1):
                pyro.sample("y", dist.Normal(mu, SIGMA).to_event(1), obs=obs)
        elif items == "event":
            pyro.sample("y", dist.Normal(mu, SIGMA).to_event(2), obs=obs)
        else:
            pyro.sample("y", dist.Normal(mu, SIGMA).to_event(1), obs=obs)

    return model


def test_items_as_an_event_dimension_give_the_exact_posterior(problem):
    centers, obs = problem
    probs = exact_posterior(_indexed_model(centers, obs, "event"), "pi")
    assert torch.allclose(probs, by_hand(centers, obs), atol=1e-10)


@pytest.mark.parametrize("max_plate_nesting", [None, 1])
def test_items_in_a_plate_say_what_to_write_instead(problem, max_plate_nesting):
    # It said "batch dimensions outside any pyro.plate", which the model does not have.
    centers, obs = problem
    model = _indexed_model(centers, obs, "plate")
    with pytest.raises(ValueError, match=r"site 'y' has log_prob shape .*to_event\(1\), obs=y"):
        exact_posterior(model, "pi", max_plate_nesting=max_plate_nesting)


def test_items_without_a_plate_name_the_site_not_an_internal_plate(problem):
    centers, obs = problem
    with pytest.raises(ValueError, match=r"site 'y' does not broadcast .*to_event\(1\)"):
        exact_posterior(_indexed_model(centers, obs, "bare"), "pi")


def test_a_model_that_flattens_the_values_gets_a_warning(problem):
    # It returned the uniform pmf silently: every value was scored as the first one.
    centers, obs = problem
    n = centers.shape[0]

    def model():
        pi = pyro.sample("pi", UniformPermutation(n))
        first = pi.reshape(-1)[:n]
        pyro.sample("y", dist.Normal(centers[first], SIGMA).to_event(2), obs=obs)

    with pytest.warns(UserWarning, match="does not treat the values' batch dimension"):
        exact_posterior(model, "pi")


def test_a_likelihood_that_ignores_the_site_gets_a_warning(problem):
    centers, obs = problem

    def model():
        pyro.sample("pi", UniformPermutation(centers.shape[0]))
        pyro.sample("y", dist.Normal(centers, SIGMA).to_event(2), obs=obs)

    with pytest.warns(UserWarning, match="the same at all 24 values"):
        probs = exact_posterior(model, "pi")
    assert torch.allclose(probs, torch.full((24,), 1 / 24, dtype=torch.float64))
