"""The MCMC baseline of [BP] section 6: Gibbs sampling that alternates an exact Gaussian draw of
``W`` given the permutations with :class:`~pyro_permutations.infer.PermutationKernel` moves on
each worm's permutation given ``W``.

The target is the model of :mod:`tutorials.celegans.model` with each ``X^(j)`` a permutation
matrix under a uniform prior (the distribution the relaxations approximate):

.. math::

    G \\sim \\mathcal{N}(0, I), \\quad W = c\\, G, \\quad \\pi^{(j)} \\sim \\mathrm{Uniform}(S_N),
    \\quad y^{(j)}_t \\sim \\mathcal{N}\\big(W_{\\pi^{(j)} \\pi^{(j)}} \\, y^{(j)}_{t-1},
    \\sigma^2 I\\big),

where ``(X W X^T)[m, m'] = W[pi[m], pi[m']]`` for ``X = perm_to_matrix(pi)``. One Gibbs sweep:

1. ``G | pi``: each row ``i`` of ``W`` regresses the activity of neuron ``i`` on that of its
   ``k_i`` connectome neighbours one step earlier, pooled over worms, so its free entries
   ``g_i`` have the exact Gaussian conditional with precision
   ``Lambda_i = (c^2 / sigma^2) Z_i^T Z_i + I`` and mean
   ``Lambda_i^{-1} (c / sigma^2) Z_i^T z_i`` (the ridge of
   :func:`~tutorials.celegans.map_fit.fit_weights` is its mean). It is drawn exactly:
   ``g_i = mean + L_i^{-T} xi``, ``Lambda_i = L_i L_i^T``, ``xi ~ N(0, I)``.
2. ``pi | G``: one step of :class:`~pyro_permutations.infer.PermutationKernel` on the model
   with ``G`` conditioned, which updates every worm's permutation in turn by
   ``moves_per_step`` random transpositions (Metropolis-Hastings within the allowed pairs of
   the mask) and ``moves_per_step`` exact block-Gibbs rearrangements of ``block_size`` rows.

Why not the kernel's own HMC on ``G``: ``G`` has 4,574 free entries at N = 279 whose
conditional scales differ by orders of magnitude (a neuron's neighbours' activity sets them),
and HMC with an identity mass matrix moves through that slowly; the conditional is Gaussian,
so an exact draw is an independent sample from it at the cost of 279 small Cholesky
factorisations (the scheme [BP] describes). The kernel reads ``G`` from the conditioning dict at
every model call, and a new ``G`` is handed to it as new parameters (so it recomputes the
current log density before its next move).

The fitted permutation of each worm is the assignment that maximises the marginal frequencies
of the draws after burn-in (the first ``burn_fraction`` of the sweeps):
``matching(log marginal_assignment(draws))``.
"""

import time

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch

from pyro_permutations.distributions import UniformPermutation
from pyro_permutations.infer import PermutationKernel
from tutorials.celegans.posterior import chain_estimate, spread

DEFAULT_MCMC = {"moves_per_step": 5, "block_size": 3, "burn_fraction": 0.5}


def permutation_model(problem, g=None):
    """The joint of ``G`` and the worms' permutations ``X`` ``(J, N)`` (uniform prior, in the
    ``worms`` plate) with the recordings observed. Broadcasts over a leading batch of
    permutations (the kernel's chains and block arrangements)."""
    e = problem.rows.numel()
    dtype = problem.activity.dtype
    device = problem.activity.device
    g = pyro.sample("G", dist.Normal(torch.zeros(e, dtype=dtype, device=device), 1.0).to_event(1))
    w = problem.weights(g)  # (N, N)
    y = problem.activity
    with pyro.plate("worms", problem.worms, dim=-1):
        perm = pyro.sample("X", UniformPermutation(problem.n, device=device))  # (..., J, N)
        transition = w[perm[..., :, None], perm[..., None, :]]  # W[pi[m], pi[m']]
        mean = y[:, :-1] @ transition.transpose(-1, -2)
        pyro.sample("Y", dist.Normal(mean, problem.sigma).to_event(2), obs=y[:, 1:])


def sample_weights(problem, perms, generator=None):
    """An exact draw of ``G`` from its Gaussian conditional given the permutations ``perms``
    ``(J, N)`` (see the module docstring)."""
    y = problem.activity
    z = torch.empty_like(y)
    z.scatter_(2, perms[:, None, :].expand_as(y), y)  # connectome order
    z0, z1 = z[:, :-1].reshape(-1, problem.n), z[:, 1:].reshape(-1, problem.n)
    gram, cross = z0.T @ z0, z0.T @ z1
    c2 = problem.scale**2 / problem.sigma**2
    g = torch.empty(problem.rows.numel(), dtype=y.dtype, device=y.device)
    noise = torch.randn(g.shape, generator=generator, dtype=y.dtype).to(y.device)
    start = 0
    for i in range(problem.n):
        nbrs = problem.cols[problem.rows == i]
        k = nbrs.numel()
        if k:
            precision = c2 * gram[nbrs][:, nbrs] + torch.eye(k, dtype=y.dtype, device=y.device)
            chol = torch.linalg.cholesky(precision)
            rhs = (problem.scale / problem.sigma**2) * cross[nbrs, i]
            mean = torch.cholesky_solve(rhs[:, None], chol)[:, 0]
            # L^T x = xi  gives  x ~ N(0, Lambda^{-1}).
            dev = torch.linalg.solve_triangular(chol.T, noise[start : start + k, None], upper=True)[
                :, 0
            ]
            g[start : start + k] = mean + dev
        start += k
    return g


def fit_mcmc(
    problem,
    start,
    seed,
    sweeps=None,
    time_budget=None,
    truth=None,
    known=None,
    every=None,
    hyper=None,
):
    """Run the Gibbs sampler from the permutations ``start`` ``(J, N)``.

    :param int sweeps: Gibbs sweeps (``G`` then every permutation); with ``time_budget`` alone,
        as many as fit in it.
    :param float time_budget: seconds; the run stops after the sweep that exceeds it.
    :param truth, known: if both are given, the accuracy of the current estimate is recorded
        every ``every`` sweeps (default: every sweep) beside the elapsed time.
    :returns: ``(perms, history, info)``: the estimate ``(J, N)``, a list of
        ``(seconds, accuracy, spread, truth mass)`` (:mod:`tutorials.celegans.posterior`, of
        the draws kept so far), and the kernel's acceptance rates plus the sweep count.
    """
    from tutorials.celegans.model import accuracy

    if sweeps is None and time_budget is None:
        raise ValueError("give sweeps, time_budget or both, so that the run ends")
    hyper = {**DEFAULT_MCMC, **(hyper or {})}
    pyro.set_rng_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    every = every or 1
    begin = time.perf_counter()
    perms = start.clone()
    conditioned = {"G": sample_weights(problem, perms, generator)}
    kernel = PermutationKernel(
        poutine.condition(permutation_model, data=conditioned),
        "X",
        proposals=("swap", "block"),
        block_size=hyper["block_size"],
        moves_per_step=hyper["moves_per_step"],
        mask={"X": problem.allowed},
        init={"X": perms},
        max_plate_nesting=1,
    )
    kernel.setup(0, problem)
    params = kernel.initial_params
    draws = []
    history = []

    def estimate():
        return chain_estimate(draws, hyper["burn_fraction"], problem.allowed)

    sweep = 0
    while True:
        params = kernel.sample(params)
        draws.append(params["X"].clone())
        conditioned["G"] = sample_weights(problem, params["X"], generator)
        params = dict(params)  # new parameters: the kernel recomputes log p under the new G
        sweep += 1
        elapsed = time.perf_counter() - begin
        done = sweeps is not None and sweep >= sweeps
        out_of_time = time_budget is not None and elapsed > time_budget
        if truth is not None and known is not None and (sweep % every == 0 or done or out_of_time):
            perm, freq = estimate()
            history.append((elapsed, accuracy(perm, truth, known), *spread(freq, truth, known)))
        if done or out_of_time:
            break
    info = {**kernel.diagnostics(), "sweeps": sweep}
    return estimate()[0], history, info
