"""The hierarchical Pyro model of [BP] section 6 and its variational fits.

.. math::

    G_e \\sim \\mathcal{N}(0, 1) \\text{ on every directed edge } e \\text{ of } A, \\quad
    W = c\\, G, \\qquad
    X^{(j)} \\sim p(X) \\quad (j = 1..J), \\qquad
    y^{(j)}_t \\sim \\mathcal{N}\\big(X^{(j)} W X^{(j)\\top} y^{(j)}_{t-1}, \\sigma^2 I\\big),

with ``X^(j)`` a relaxed permutation (``X[m, n] = 1``: observed neuron ``m`` is connectome
neuron ``n``) drawn inside a ``pyro.plate`` over worms, and ``W`` shared. Each method is a
guide on that model (the prior ``p(X)`` goes with the relaxation):

- ``rounding`` ([BP], the paper's method): ``RoundingBirkhoff`` whose mean is
  ``sinkhorn(log M0)`` with ``-inf`` at the forbidden pairs (exactly zero there) and whose
  scale there is ``FORBIDDEN_SCALE``; prior ``RoundingPrior``.
- ``gumbel-sinkhorn``: ``GumbelSinkhorn`` with ``-inf`` scores at the forbidden pairs, prior a
  ``GumbelSinkhorn`` with zero scores and the same ``-inf`` entries (the density is on the
  perturbed scores, [GS] section 4).
- ``naive``: each row of ``X`` its own relaxed categorical (Gumbel-softmax over the allowed
  labels, no column constraint), density on the same perturbed scores, prior of the same form.

``W``'s guide is a mean-field Normal on ``G``. The posterior mode of a fitted guide is the
permutation that maximises its (masked) scores, by :func:`~pyro_permutations.ops.matching`.
"""

import math
import time
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import ClippedAdam
from torch.distributions import constraints as tc

from pyro_permutations.distributions import GumbelSinkhorn, RoundingBirkhoff, RoundingPrior
from pyro_permutations.distributions.gumbel_sinkhorn import attach_scores
from pyro_permutations.ops import matching, perm_to_matrix, sinkhorn
from tutorials.celegans.posterior import label_frequencies, spread
from tutorials.celegans.simulate import edge_index

VI_METHODS = ("rounding", "gumbel-sinkhorn", "naive")
#: Scale of the rounding guide's Gaussian at forbidden pairs, where its mean is zero.
FORBIDDEN_SCALE = 1e-3

#: Chosen at N = 279 by ``python -m tutorials.celegans.tune`` on held-out seeds 100 to 102
#: (``results/tuning/tables.md``): from the earlier values (``tune.BASE_HYPER``), the rounding
#: guide's scale interval [0.05, 0.3] became [0.01, 0.1] (its draws were nearly uniform over
#: the candidates), and the Gumbel guides' start strength 2 became 5 (at 2 their Gumbel noise
#: swamped the start and they lost accuracy).
DEFAULT_HYPER = {
    "rounding": {
        "temperature": 0.2,
        "prior_eta": 0.3,
        "scale": [0.01, 0.1],
        "lr": 0.05,
        "start_strength": 2.0,
    },
    "gumbel-sinkhorn": {
        "temperature": 0.2,
        "prior_temperature": 1.0,
        "lr": 0.05,
        "start_strength": 5.0,
        # A fixed number of Sinkhorn sweeps, differentiated by unrolling: at N = 279 the
        # converged operator's implicit gradient costs ~0.6 s a step (profiled in the docs).
        "n_iters": 20,
    },
    "naive": {"temperature": 0.2, "prior_temperature": 1.0, "lr": 0.05, "start_strength": 5.0},
}


class RowGumbelSoftmax(GumbelSinkhorn):
    """The naive relaxation: the perturbed scores ``Z = (X + Gumbel) / tau`` of
    :class:`GumbelSinkhorn`, mapped to a matrix by a softmax over each row only
    (a Gumbel-softmax per row, no column constraint). ``-inf`` scores are forbidden
    labels. Density and KL are those of the scores, inherited."""

    @property
    def support(self):
        return tc.independent(tc.simplex, 1)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RowGumbelSoftmax, _instance)
        return super().expand(batch_shape, _instance=new)

    def scores_to_matrix(self, scores):
        return attach_scores(torch.softmax(scores, dim=-1), scores)


@dataclass
class Problem:
    """What inference sees: recordings ``activity`` ``(J, T, N)``, the ``adjacency``, the
    constants ``scale`` (``c``) and ``sigma``, and the ``allowed`` mask ``(J, N, N)``."""

    activity: torch.Tensor
    adjacency: torch.Tensor
    scale: float
    sigma: float
    allowed: torch.Tensor
    rows: torch.Tensor = field(init=False)
    cols: torch.Tensor = field(init=False)

    def __post_init__(self):
        self.rows, self.cols = edge_index(self.adjacency)

    @property
    def worms(self):
        return self.activity.shape[0]

    @property
    def n(self):
        return self.activity.shape[-1]

    def weights(self, g):
        """``W = c G`` with ``g`` on the directed edges, ``(N, N)``."""
        w = g.new_zeros(g.shape[:-1] + (self.n, self.n))
        w[..., self.rows, self.cols] = self.scale * g
        return w

    def log_mask(self):
        zero = torch.zeros(
            self.allowed.shape, dtype=self.activity.dtype, device=self.allowed.device
        )
        return zero.masked_fill(~self.allowed, -math.inf)


def model(problem, x_prior, *_):
    """[BP]'s model: ``G`` (hence ``W``), a relaxed ``X`` per worm, recordings given both."""
    loc = problem.activity.new_zeros(problem.rows.numel())
    g = pyro.sample("G", dist.Normal(loc, 1.0).to_event(1))
    w = problem.weights(g)
    y = problem.activity
    with pyro.plate("worms", problem.worms, dim=-1):
        x = pyro.sample("X", x_prior)  # (J, N, N)
        transition = x @ w @ x.transpose(-1, -2)
        mean = y[:, :-1] @ transition.transpose(-1, -2)
        pyro.sample("Y", dist.Normal(mean, problem.sigma).to_event(2), obs=y[:, 1:])


def _prior(method, problem, hyper):
    j, n = problem.worms, problem.n
    dtype = problem.activity.dtype
    if method == "rounding":
        eta = torch.tensor(hyper["prior_eta"], dtype=dtype, device=problem.activity.device)
        return RoundingPrior(n, eta).expand((j,))
    family = GumbelSinkhorn if method == "gumbel-sinkhorn" else RowGumbelSoftmax
    return family(problem.log_mask(), torch.tensor(hyper["prior_temperature"], dtype=dtype))


def _x_family(method, problem, hyper, tau=None):
    """The guide's distribution of ``X`` from its parameters (read from the param store), at
    temperature ``tau`` (default: the final ``hyper["temperature"]``)."""
    mask = problem.log_mask()
    tau = hyper["temperature"] if tau is None else tau
    if method == "rounding":
        loc = sinkhorn(pyro.param("log_m0") + mask, n_iters=10)
        scale = torch.where(problem.allowed, pyro.param("scale"), FORBIDDEN_SCALE)
        return RoundingBirkhoff(loc, scale, tau)
    family = GumbelSinkhorn if method == "gumbel-sinkhorn" else RowGumbelSoftmax
    return family(
        pyro.param("log_alpha") + mask,
        torch.tensor(tau, dtype=mask.dtype),
        n_iters=hyper.get("n_iters"),
    )


def _init_params(method, problem, hyper, generator, start):
    j, n, dtype = problem.worms, problem.n, problem.activity.dtype
    if start is None:
        g_loc = torch.zeros(problem.rows.numel(), dtype=dtype, device=problem.activity.device)
    else:  # the ridge estimate of G given the start permutations
        from tutorials.celegans.map_fit import fit_weights

        g_loc = fit_weights(problem, start)
    pyro.param("g_loc", g_loc)
    pyro.param(
        "g_scale",
        torch.full_like(g_loc, 0.1),
        constraint=tc.positive,
    )
    noise = 0.01 * torch.randn(j, n, n, generator=generator, dtype=dtype).to(g_loc.device)
    if start is not None:  # scores favouring the start permutations, still easy to move
        noise = noise + hyper["start_strength"] * perm_to_matrix(
            start.to(g_loc.device), dtype=dtype
        )
    if method == "rounding":
        low, high = hyper["scale"]
        pyro.param("log_m0", noise)
        pyro.param("scale", torch.full_like(noise, high), constraint=tc.interval(low, high))
    else:
        pyro.param("log_alpha", noise)


def guide(problem, x_prior, method, hyper, schedule=None):
    g_loc, g_scale = pyro.param("g_loc"), pyro.param("g_scale")
    pyro.sample("G", dist.Normal(g_loc, g_scale).to_event(1))
    tau = None if schedule is None else schedule["tau"]
    with pyro.plate("worms", problem.worms, dim=-1):
        pyro.sample("X", _x_family(method, problem, hyper, tau))


def posterior_mode(method, problem):
    """The permutation maximising the fitted guide's masked scores, ``(J, N)`` long."""
    name = "log_m0" if method == "rounding" else "log_alpha"
    with torch.no_grad():
        return matching(pyro.param(name).detach() + problem.log_mask())


def guide_draws(method, problem, draws, generator):
    """``draws`` hard label draws ``(S, J, N)`` of the fitted guide (from the param store),
    within the allowed pairs, with its own ``generator`` (the fit's random stream is left as
    it is):

    - ``rounding``: ``round(psi)``, ``psi ~ N(M, V^2)`` (the permutation a sample rounds
      to; restricted to the allowed pairs as the posterior mode is);
    - ``gumbel-sinkhorn``: ``matching(log_alpha + g)``, ``g`` Gumbel noise (the zero
      temperature limit of a sample, a Gumbel-Matching draw);
    - ``naive``: ``argmax`` of each row of ``log_alpha + g`` (labels may repeat).
    """
    mask = problem.log_mask()
    shape = (draws,) + mask.shape
    with torch.no_grad():
        if method == "rounding":
            loc = sinkhorn(pyro.param("log_m0").detach() + mask, n_iters=10)
            scale = torch.where(problem.allowed, pyro.param("scale").detach(), FORBIDDEN_SCALE)
            eps = torch.randn(shape, generator=generator, dtype=mask.dtype).to(mask.device)
            return matching(loc + scale * eps + mask)
        u = torch.rand(shape, generator=generator, dtype=mask.dtype).to(mask.device)
        z = pyro.param("log_alpha").detach() + mask - torch.log(-torch.log(u))
        return matching(z) if method == "gumbel-sinkhorn" else z.argmax(-1)


def accuracy(perm, truth, known):
    """Fraction of the unknown neurons whose label ``perm`` gets right."""
    right = (perm.to(truth.device) == truth) & ~known
    return float(right.sum()) / max(1, int((~known).sum()))


@dataclass
class Fit:
    perm: torch.Tensor
    elbo: list
    seconds: list
    accuracy: list
    steps: int = 0
    #: ``(spread, truth mass)`` beside each recorded accuracy (with ``spread_draws``).
    spread: list = field(default_factory=list)


def fit_vi(
    method,
    problem,
    steps,
    seed,
    hyper=None,
    start=None,
    truth=None,
    known=None,
    every=None,
    time_budget=None,
    spread_draws=0,
):
    """Fit ``method`` (one of :data:`VI_METHODS`) by SVI with Adam.

    :param start: ``None`` (scores start near zero, a random tie-break) or start permutations
        ``(J, N)`` (e.g. :func:`~tutorials.celegans.map_fit.regression_start`): the initial
        scores are ``hyper["start_strength"]`` at each start pair.
    :param int steps: SVI steps (fewer if ``time_budget`` seconds run out first).
    :param truth, known: if both are given, the accuracy of the mode is recorded every
        ``every`` steps (default: ``steps // 20``) beside the ELBO and the elapsed time.
    :param int spread_draws: if positive (and ``truth``, ``known`` given), the posterior's
        spread and truth mass (:mod:`tutorials.celegans.posterior`) of that many hard draws of
        the guide (:func:`guide_draws`) are recorded with each accuracy; the clock (hence
        ``time_budget``) is paused while they are drawn.
    :returns: :class:`Fit` with the final posterior mode.
    """
    if method not in VI_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {VI_METHODS}")
    hyper = {**DEFAULT_HYPER[method], **(hyper or {})}
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    _init_params(method, problem, hyper, generator, start)
    x_prior = _prior(method, problem, hyper)
    optim = ClippedAdam({"lr": hyper["lr"], "clip_norm": 100.0})
    svi = SVI(model, guide, optim, Trace_ELBO(max_plate_nesting=1))
    every = every or max(1, steps // 20)
    # The guide's temperature falls geometrically from ``anneal_from`` to ``temperature`` over
    # the first ``anneal_fraction`` of the steps (no annealing without ``anneal_from``).
    tau_end = hyper["temperature"]
    tau_start = hyper.get("anneal_from", tau_end)
    anneal_steps = max(1, round(hyper.get("anneal_fraction", 0.5) * steps))
    schedule = {"tau": tau_start}
    elbo, seconds, acc, spreads = [], [], [], []
    paused = 0.0
    draw_generator = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    for step in range(steps):
        schedule["tau"] = tau_start * (tau_end / tau_start) ** min(1.0, step / anneal_steps)
        loss = svi.step(problem, x_prior, method, hyper, schedule)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{method}: the ELBO became {loss} at step {step}")
        last = step == steps - 1
        elapsed = time.perf_counter() - start - paused
        out_of_time = time_budget is not None and elapsed > time_budget
        if (step + 1) % every == 0 or last or out_of_time:
            elbo.append(-loss)
            seconds.append(elapsed)
            if truth is not None and known is not None:
                acc.append(accuracy(posterior_mode(method, problem), truth, known))
                if spread_draws:
                    begin = time.perf_counter()
                    labels = guide_draws(method, problem, spread_draws, draw_generator)
                    freq = label_frequencies(labels, problem.n)
                    spreads.append(spread(freq, truth, known))
                    paused += time.perf_counter() - begin
        if out_of_time:
            break
    return Fit(posterior_mode(method, problem), elbo, seconds, acc, step + 1, spreads)
