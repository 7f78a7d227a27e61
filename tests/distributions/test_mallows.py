"""Tests of the Mallows distribution against brute-force sums over all permutations."""

import functools
import itertools
import math
from collections import Counter

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.testing.gof import multinomial_goodness_of_fit
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyro_permutations.distributions.mallows import Mallows
from pyro_permutations.ops import all_permutations, compose_perms, invert_perm, perm_to_rank

DISTANCES = ["kendall", "footrule", "hamming", "cayley"]
THETAS = [0.0, 0.1, 1.0, 5.0]


# Pure-Python definitions, independent of the library's tensor code.
def kendall_py(p, q):
    n = len(p)
    return sum((p[i] - p[j]) * (q[i] - q[j]) < 0 for i in range(n) for j in range(i + 1, n))


def footrule_py(p, q):
    return sum(abs(a - b) for a, b in zip(p, q))


def hamming_py(p, q):
    return sum(a != b for a, b in zip(p, q))


def cayley_py(p, q):
    """Fewest swaps of two entries turning ``p`` into ``q`` (selection by swaps is optimal)."""
    p = list(p)
    swaps = 0
    for i in range(len(p)):
        if p[i] != q[i]:
            j = p.index(q[i])
            p[i], p[j] = p[j], p[i]
            swaps += 1
    return swaps


DISTANCE_PY = {
    "kendall": kendall_py,
    "footrule": footrule_py,
    "hamming": hamming_py,
    "cayley": cayley_py,
}


@functools.cache
def brute_counts(distance, center):
    """``Counter`` of ``d(pi, center)`` over all permutations ``pi``."""
    fn = DISTANCE_PY[distance]
    return Counter(fn(pi, center) for pi in itertools.permutations(range(len(center))))


def brute_log_z(distance, center, theta):
    counts = brute_counts(distance, tuple(center))
    return math.log(math.fsum(c * math.exp(-theta * d) for d, c in counts.items()))


def random_perms(shape, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape) + (n,), generator=g).argsort(-1)


@pytest.fixture(autouse=True)
def _seed():
    pyro.set_rng_seed(0)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("n", range(1, 8))
def test_log_normalizer_matches_brute_force(distance, n):
    center = list(range(n))[::-1] if n % 2 else list(range(n))
    theta = torch.tensor(THETAS, dtype=torch.float64)
    d = Mallows(torch.tensor(center), theta, distance=distance)
    expected = torch.tensor([brute_log_z(distance, center, t) for t in THETAS], dtype=torch.float64)
    assert torch.allclose(d.log_normalizer, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("n", range(1, 6))
def test_distance_law_does_not_depend_on_center(distance, n):
    identity = tuple(range(n))
    law = brute_counts(distance, identity)
    fn = DISTANCE_PY[distance]
    for center in itertools.permutations(range(n)):
        assert brute_counts(distance, center) == law
    # The relabelling the samplers use: d(compose_perms(center, sigma), center) = d(sigma, id).
    perms = all_permutations(n)
    for center in perms.tolist():
        pis = compose_perms(torch.tensor(center), perms).tolist()
        for sigma, pi in zip(perms.tolist(), pis):
            assert fn(pi, center) == fn(sigma, identity)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("n", range(1, 6))
def test_log_prob_matches_brute_force_pmf(distance, n):
    centers = random_perms((3, 1), n, seed=n)
    theta = torch.tensor(THETAS, dtype=torch.float64)
    d = Mallows(centers, theta, distance=distance)
    assert d.batch_shape == (3, 4)
    perms = all_permutations(n)
    actual = d.log_prob(perms[:, None, None, :])
    assert actual.shape == (len(perms), 3, 4)
    fn = DISTANCE_PY[distance]
    for b, center in enumerate(centers[:, 0].tolist()):
        for k, t in enumerate(THETAS):
            log_z = brute_log_z(distance, center, t)
            expected = [-t * fn(pi, center) - log_z for pi in perms.tolist()]
            assert torch.allclose(actual[:, b, k], torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("n", range(1, 7))
def test_log_prob_sums_to_one(distance, n, dtype):
    centers = random_perms((2, 1), n, seed=10 + n)
    theta = torch.tensor([0.0, 0.3, 2.0, 10.0], dtype=dtype)
    d = Mallows(centers, theta, distance=distance)
    total = d.log_prob_all().logsumexp(0)
    assert total.dtype == dtype
    assert torch.allclose(total, torch.zeros(2, 4, dtype=dtype), atol=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("n", range(1, 7))
def test_theta_zero_is_uniform(distance, n):
    d = Mallows(random_perms((3,), n, seed=n), 0.0, distance=distance)
    expected = torch.full((math.factorial(n), 3), -math.lgamma(n + 1))
    assert torch.allclose(d.log_prob_all(), expected, atol=1e-5)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("theta", [0.0, 0.5, 3.0])
def test_gradient_of_log_prob_in_theta(distance, theta):
    """``d/dtheta log p(pi) = E[d] - d(pi, center)``, exact at ``theta = 0`` too."""
    center = torch.tensor([3, 0, 4, 1, 2])
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    d = Mallows(center, t, distance=distance)
    (grad,) = torch.autograd.grad(d.log_normalizer, t)
    counts = brute_counts(distance, tuple(center.tolist()))
    weights = {k: c * math.exp(-theta * k) for k, c in counts.items()}
    mean = math.fsum(k * w for k, w in weights.items()) / math.fsum(weights.values())
    assert grad.item() == pytest.approx(-mean, rel=1e-9, abs=1e-12)


def _counts_and_probs(d, samples, b):
    n = d.n
    counts = torch.bincount(perm_to_rank(samples[:, b]), minlength=math.factorial(n))
    probs = d.log_prob_all()[:, b].exp().double()
    return counts, probs


def _gof(probs, counts):
    """Pearson's test with the cells of expected count below 10 merged (or dropped)."""
    total = int(counts.sum())
    big = probs * total >= 10
    rest_p = probs[~big].sum()
    if rest_p * total >= 10:
        p = torch.cat([probs[big], rest_p[None]])
        c = torch.cat([counts[big], counts[~big].sum()[None]])
        return multinomial_goodness_of_fit(p, c)
    return multinomial_goodness_of_fit(probs[big], counts[big], total_count=total)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("n", [3, 4, 5])
def test_sampler_matches_exact_pmf(distance, n):
    centers = random_perms((4,), n, seed=100 + n)
    centers[0] = torch.arange(n).flip(0)  # a non-identity centre for every batch element
    theta = torch.tensor([0.0, 0.1, 1.0, 2.0])
    d = Mallows(centers, theta, distance=distance)
    samples = d.sample((20000,))
    assert samples.shape == (20000, 4, n)
    for b in range(4):
        counts, probs = _counts_and_probs(d, samples, b)
        assert _gof(probs, counts) > 1e-3, (distance, n, theta[b].item())


@pytest.mark.parametrize("distance", ["kendall", "hamming", "cayley"])
def test_sampler_mean_distance_for_large_n(distance):
    """Beyond enumeration: the sample mean of ``d(pi, center)`` is ``-d log Z / d theta``."""
    n, num_samples = 25, 4000
    center = random_perms((), n, seed=7)
    t = torch.tensor([0.05, 0.5], dtype=torch.float64, requires_grad=True)
    d = Mallows(center, t, distance=distance)
    (grad,) = torch.autograd.grad(d.log_normalizer.sum(), t)
    samples = d.sample((num_samples,))
    assert Mallows(center, 1.0).support.check(samples).all()
    fn = {"kendall": kendall_py, "hamming": hamming_py, "cayley": cayley_py}[distance]
    dists = torch.tensor(
        [[fn(s, center.tolist()) for s in row] for row in samples.transpose(0, 1).tolist()],
        dtype=torch.float64,
    )
    stderr = dists.std(-1) / math.sqrt(num_samples)
    assert ((dists.mean(-1) + grad).abs() < 4 * stderr).all()


def test_large_theta_samples_the_center():
    center = random_perms((3,), 6, seed=3)
    for distance in DISTANCES:
        d = Mallows(center, torch.tensor([50.0, math.inf, 1e3]), distance=distance)
        samples = d.sample((100,))
        assert (samples == center).all()
        assert torch.isfinite(d.log_prob(center)).all()
        assert torch.allclose(d.log_prob(center), torch.zeros(3), atol=1e-6)


@pytest.mark.parametrize("distance", DISTANCES)
def test_shapes_expand_enumerate_and_mode(distance):
    n = 4
    center = random_perms((2, 1), n, seed=1)
    theta = torch.tensor([0.5, 1.0, 2.0])
    d = Mallows(center, theta, distance=distance)
    assert d.batch_shape == (2, 3) and d.event_shape == (n,)
    assert Mallows.infer_shapes(center.shape, theta.shape) == ((2, 3), (n,))
    x = d.sample((5,))
    assert x.shape == (5, 2, 3, n) and x.dtype == torch.long
    assert d.support.check(x).all()
    assert d.log_prob(x).shape == (5, 2, 3)
    assert d.sample().shape == (2, 3, n)

    assert d.enumerate_support(expand=False).shape == (24, 1, 1, n)
    assert d.enumerate_support(expand=True).shape == (24, 2, 3, n)
    assert d.log_prob(d.enumerate_support(expand=False)).shape == (24, 2, 3)

    assert torch.equal(d.mode, center.expand(2, 3, n))
    best = all_permutations(n)[d.log_prob_all().argmax(0)]
    assert torch.equal(best, d.mode)

    e = d.expand((7, 2, 3))
    assert e.batch_shape == (7, 2, 3) and e.distance == distance
    assert e.sample((2,)).shape == (2, 7, 2, 3, n)
    assert torch.allclose(e.log_prob(x[0]), d.log_prob(x[0]).expand(7, 2, 3))
    assert torch.equal(e.mode, center.expand(7, 2, 3, n))


def test_scalar_theta_and_integer_theta():
    center = torch.tensor([1, 2, 0])
    d = Mallows(center, 2)
    assert d.theta.dtype == torch.get_default_dtype() and d.batch_shape == ()
    assert torch.allclose(Mallows(center, 2.0).log_prob_all(), d.log_prob_all())


def test_log_prob_of_non_permutations():
    d = Mallows(torch.tensor([1, 0, 2]), 1.0, validate_args=False)
    value = torch.tensor([[0, 0, 2], [1, 0, 2]])
    lp = d.log_prob(value)
    assert lp[0] == -math.inf and torch.isfinite(lp[1])
    with pytest.raises(ValueError):
        Mallows(torch.tensor([1, 0, 2]), 1.0, validate_args=True).log_prob(value)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="center"):
        Mallows(torch.tensor([0, 0, 1]), 1.0)
    with pytest.raises(ValueError, match="center"):
        Mallows(torch.tensor([0.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="distance.*cayley.*footrule.*hamming.*kendall"):
        Mallows(torch.tensor([0, 1]), 1.0, distance="spearman")
    with pytest.raises(ValueError, match="theta"):
        Mallows(torch.tensor([0, 1]), torch.tensor([1.0, -0.5]), validate_args=True)
    with pytest.raises(ValueError, match="center.*N <= 10"):
        Mallows(torch.arange(11), 1.0, distance="footrule")
    with pytest.raises(ValueError, match="do not broadcast"):
        Mallows(torch.zeros(2, 3, dtype=torch.long).add(torch.arange(3)), torch.ones(4))
    footrule9 = Mallows(torch.arange(9), 1.0, distance="footrule")
    with pytest.raises(ValueError, match="N <= 8"):
        footrule9.sample()
    with pytest.raises(ValueError, match="N <= 8"):
        footrule9.enumerate_support()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("theta", [1.0, torch.tensor(1.0), torch.tensor([0.5, 2.0])])
def test_cuda_center_with_a_cpu_theta(distance, theta):
    center = torch.tensor([2, 0, 3, 1])
    cpu = Mallows(center, theta, distance=distance)
    d = Mallows(center.cuda(), theta, distance=distance)
    assert d.theta.device.type == "cuda" and d.theta.dtype == torch.get_default_dtype()
    x = d.sample((3,))
    assert x.device.type == "cuda" and x.shape == (3,) + d.batch_shape + (4,)
    log_p = d.log_prob_all()
    assert log_p.device.type == "cuda"
    torch.testing.assert_close(log_p.cpu(), cpu.log_prob_all())
    assert d.expand((5,) + d.batch_shape).sample().device.type == "cuda"


@pytest.mark.parametrize("distance", ["kendall", "footrule"])
def test_trace_enum_elbo_is_exact_marginal_likelihood(distance):
    n = 4
    center = torch.tensor([2, 0, 3, 1])
    theta = torch.tensor(0.7)
    weights = torch.tensor([0.3, -1.0, 0.5, 2.0])
    y = torch.tensor(1.5)

    @config_enumerate
    def model():
        pi = pyro.sample("pi", Mallows(center, theta, distance=distance))
        loc = (pi.to(weights.dtype) * weights).sum(-1)
        pyro.sample("y", dist.Normal(loc, 1.0), obs=y)

    def guide():
        pass

    loss = TraceEnum_ELBO(max_plate_nesting=0).loss(model, guide)
    perms = all_permutations(n)
    prior = Mallows(center, theta, distance=distance).log_prob(perms)
    lik = dist.Normal((perms.to(weights.dtype) * weights).sum(-1), 1.0).log_prob(y)
    expected = -torch.logsumexp(prior + lik, 0).item()
    assert math.isfinite(loss)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_footrule_counts_match_invert_relabelling():
    """Footrule is invariant under relabelling items, not positions: a check that the
    relabelling used by the sampler (``compose_perms(center, sigma)``) is the right one."""
    center = torch.tensor([1, 2, 0, 3])
    perms = all_permutations(4)
    d = Mallows(center, 1.0, distance="footrule")
    sigma = compose_perms(invert_perm(center), perms)  # pi = compose_perms(center, sigma)
    assert torch.equal(compose_perms(center, sigma), perms)
    by_sigma = Mallows(torch.arange(4), 1.0, distance="footrule").log_prob(sigma)
    assert torch.allclose(d.log_prob(perms), by_sigma)
