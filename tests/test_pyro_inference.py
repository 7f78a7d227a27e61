"""The relaxations inside Pyro: SVI with each family as the guide recovers a clear matching;
autoguides and NUTS run on a Birkhoff-valued latent through the registered transforms."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoDelta, AutoMultivariateNormal, AutoNormal
from pyro.infer.autoguide.initialization import (
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
)
from pyro.optim import Adam
from torch.distributions import biject_to, transform_to
from torch.distributions.constraints import positive

from pyro_permutations.constraints import birkhoff
from pyro_permutations.distributions import (
    FlatBirkhoff,
    GumbelSinkhorn,
    RoundingBirkhoff,
    RoundingPrior,
    StickBreakingBirkhoff,
)
from pyro_permutations.ops import matching, sinkhorn
from pyro_permutations.transforms import SinkhornTransform, StickBreakingBirkhoffTransform

N = 4
SIGMA = 0.1


@pytest.fixture
def data():
    """Four well-separated centres; observation ``i`` is a noisy copy of centre ``sigma[i]``."""
    torch.manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sigma = torch.tensor([2, 0, 3, 1])
    obs = centers[sigma] + SIGMA * torch.randn(N, 2)
    return centers, obs, sigma


def matching_model(prior, centers, obs):
    p = pyro.sample("P", prior)
    pyro.sample("obs", dist.Normal(p @ centers, SIGMA).to_event(2), obs=obs)


def fit(model, guide, steps, loss=None, lr=0.1):
    pyro.clear_param_store()
    svi = SVI(model, guide, Adam({"lr": lr}), loss or Trace_ELBO())
    for _ in range(steps):
        svi.step()


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_gumbel_sinkhorn_guide_recovers_matching(data, elbo):
    centers, obs, sigma = data

    def model():
        matching_model(GumbelSinkhorn(torch.zeros(N, N), 1.0), centers, obs)

    def guide():
        log_alpha = pyro.param("log_alpha", 0.01 * torch.randn(N, N))
        pyro.sample("P", GumbelSinkhorn(log_alpha, 0.5))

    fit(model, guide, 300, elbo())
    assert torch.equal(matching(pyro.param("log_alpha").detach()), sigma)


def test_stick_breaking_guide_recovers_matching(data):
    centers, obs, sigma = data

    def model():
        matching_model(FlatBirkhoff(N), centers, obs)

    def guide():
        loc = pyro.param("loc", torch.zeros(N - 1, N - 1))
        scale = pyro.param(
            "scale", 0.1 * torch.ones(N - 1, N - 1), constraint=dist.constraints.positive
        )
        pyro.sample("P", StickBreakingBirkhoff(loc, scale, 0.5))

    fit(model, guide, 400)
    mode = StickBreakingBirkhoffTransform(0.5)(pyro.param("loc").detach())
    assert torch.equal(matching(mode), sigma)


def test_flat_prior_needs_a_guide_with_a_density_on_the_matrix(data):
    """With ``FlatBirkhoff``, ``-ELBO >= -log vol - max log p(obs | P) >= N D log(sigma
    sqrt(2 pi))`` for a guide with a density on ``P`` (the free entries lie in the unit cube, so
    ``vol <= 1``). A stick-breaking guide (learnable temperature too) respects the bound; a
    Gumbel-Sinkhorn guide's density is on the scores ``Z``, so its loss is no bound and falls
    through it as the temperature shrinks; a rounding guide leaves the polytope."""
    centers, obs, sigma = data
    bound = N * 2 * math.log(SIGMA * math.sqrt(2 * math.pi))

    def model():
        matching_model(FlatBirkhoff(N), centers, obs)

    def stick_breaking_guide():
        loc = pyro.param("loc", torch.zeros(N - 1, N - 1))
        scale = pyro.param("scale", 0.5 * torch.ones(N - 1, N - 1), constraint=positive)
        tau = pyro.param("tau", torch.tensor(1.0), constraint=positive)
        pyro.sample("P", StickBreakingBirkhoff(loc, scale, tau))

    def gumbel_sinkhorn_guide():
        log_alpha = pyro.param("log_alpha", torch.zeros(N, N))
        tau = pyro.param("tau", torch.tensor(1.0), constraint=positive)
        pyro.sample("P", GumbelSinkhorn(log_alpha, tau))

    def rounding_guide():
        pyro.sample("P", RoundingBirkhoff(sinkhorn(torch.zeros(N, N)), 0.2, 0.5))

    pyro.set_rng_seed(0)
    fit(model, stick_breaking_guide, 100, lr=0.05)
    loss = Trace_ELBO(num_particles=100, vectorize_particles=False)
    assert loss.loss(model, stick_breaking_guide) > bound
    mode = StickBreakingBirkhoffTransform(pyro.param("tau").item())(pyro.param("loc").detach())
    assert torch.equal(matching(mode), sigma)
    fit(model, gumbel_sinkhorn_guide, 100, lr=0.05)
    assert loss.loss(model, gumbel_sinkhorn_guide) < bound - 10
    with pytest.raises(ValueError, match="support"):
        Trace_ELBO().loss(model, rounding_guide)


def test_rounding_guide_recovers_matching(data):
    centers, obs, sigma = data

    def model():
        matching_model(RoundingPrior(N, 0.3), centers, obs)

    def guide():
        loc = pyro.param("loc", sinkhorn(0.01 * torch.randn(N, N)))
        scale = pyro.param("scale", 0.1 * torch.ones(N, N), constraint=dist.constraints.positive)
        pyro.sample("P", RoundingBirkhoff(loc, scale, 0.3))

    fit(model, guide, 400)
    assert torch.equal(matching(pyro.param("loc").detach()), sigma)


def test_registered_transforms():
    assert isinstance(biject_to(birkhoff), StickBreakingBirkhoffTransform)
    assert isinstance(transform_to(birkhoff), SinkhornTransform)
    p = pyro.param("p_test", torch.full((3, 3), 1 / 3), constraint=birkhoff)
    assert p.shape == (3, 3) and birkhoff.check(p)


@pytest.mark.parametrize("autoguide", [AutoNormal, AutoDelta, AutoMultivariateNormal])
def test_autoguides_on_a_birkhoff_latent(data, autoguide):
    centers, obs, _ = data
    prior = StickBreakingBirkhoff(torch.zeros(N - 1, N - 1), torch.ones(N - 1, N - 1), 1.0)

    def model():
        matching_model(prior, centers, obs)

    guide = autoguide(model)
    fit(model, guide, 20, lr=0.05)
    samples = torch.stack([guide()["P"].detach() for _ in range(5)])
    assert samples.shape == (5, N, N) and birkhoff.check(samples).all()


@pytest.mark.parametrize("init", [init_to_feasible, init_to_mean, init_to_median, init_to_sample])
@pytest.mark.parametrize("autoguide", [AutoNormal, AutoDelta])
def test_autoguide_init_strategies(data, autoguide, init):
    centers, obs, _ = data
    prior = StickBreakingBirkhoff(torch.zeros(N - 1, N - 1), torch.ones(N - 1, N - 1), 1.0)

    def model():
        matching_model(prior, centers, obs)

    pyro.clear_param_store()
    guide = autoguide(model, init_loc_fn=init)
    value = guide()["P"].detach()
    assert value.shape == (N, N) and birkhoff.check(value)


def test_nuts_on_a_birkhoff_latent(data):
    centers, obs, _ = data
    prior = StickBreakingBirkhoff(torch.zeros(2, 2), torch.ones(2, 2), 1.0)

    def model():
        matching_model(prior, centers[:3], obs[:3])

    pyro.set_rng_seed(0)
    mcmc = pyro.infer.MCMC(
        pyro.infer.NUTS(model), num_samples=20, warmup_steps=20, disable_progbar=True
    )
    mcmc.run()
    samples = mcmc.get_samples()["P"]
    assert samples.shape == (20, 3, 3) and birkhoff.check(samples).all()
