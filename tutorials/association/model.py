"""Data association as a Pyro model: simulated frames, the model over one frame's partial
matching (discrete and relaxed), the PartialGumbelSinkhorn guide and its fit.

One frame holds ``K`` objects at known positions ``x_k`` (a tracker's predictions) and ``M``
detections ``y_j``, shuffled: each object is detected with probability ``p_d`` at
``x_k + sigma * noise``, and a Poisson(``lambda``) number of false alarms falls uniformly on
the arena (area ``A``, clutter intensity ``kappa = lambda / A``). The latent is the partial
matching ``a``: ``a[k] = j`` when object ``k`` made detection ``j``, ``-1`` when it was
missed; an unmatched detection is clutter. Its joint with the detections is

.. math::

    p(a, y) \\propto \\prod_{a_k = j} p_d \\, \\mathcal{N}(y_j; x_k, \\sigma^2 I)
        \\prod_{a_k = -1} (1 - p_d) \\prod_{j \\text{ unmatched}} \\kappa,

the standard tracking posterior: the best match is the partial matching with pair scores
``log p_d + log N``, row scores ``log(1 - p_d)`` and column scores ``log kappa``
(:func:`~pyro_permutations.ops.matching` with unmatched scores).
"""

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.optim import Adam

from pyro_permutations.distributions import (
    PartialGumbelMatching,
    PartialGumbelSinkhorn,
    UniformPartialMatching,
)
from pyro_permutations.ops import matching, partial_perm_to_matrix

DTYPE = torch.float64


def simulate_frames(k, frames, p_detect, clutter_rate, sigma, density, generator):
    """``frames`` frames of ``k`` objects on a square arena of area ``k / density`` (the objects
    take a small random walk between frames), as a list of dicts with ``objects`` ``(K, 2)``,
    ``detections`` ``(M, 2)``, ``truth`` ``(K,)`` (the partial matching) and ``area``;
    ``clutter_rate`` is the mean number of false alarms per unit area."""
    area = k / density
    side = math.sqrt(area)
    objects = side * torch.rand(k, 2, generator=generator, dtype=DTYPE)
    out = []
    for _ in range(frames):
        objects = (
            objects + 0.1 * side * torch.randn(k, 2, generator=generator, dtype=DTYPE)
        ) % side
        seen = torch.rand(k, generator=generator, dtype=DTYPE) < p_detect
        hits = objects[seen] + sigma * torch.randn(
            int(seen.sum()), 2, generator=generator, dtype=DTYPE
        )
        rate = torch.tensor(clutter_rate * area, dtype=DTYPE)
        n_false = int(torch.poisson(rate, generator=generator)) if clutter_rate > 0 else 0
        false = side * torch.rand(n_false, 2, generator=generator, dtype=DTYPE)
        detections = torch.cat([hits, false])
        order = torch.randperm(detections.shape[0], generator=generator)
        column = torch.empty(detections.shape[0], dtype=torch.long)
        column[order] = torch.arange(detections.shape[0])  # detection i is now column[i]
        truth = torch.full((k,), -1, dtype=torch.long)
        truth[seen] = column[: int(seen.sum())]
        out.append(
            {"objects": objects, "detections": detections[order], "truth": truth, "area": area}
        )
    return out


#: Validation gate: a detection farther than ``GATE * sigma`` from an object cannot be its
#: detection (the pair is forbidden, ``-inf``); a true detection falls outside with
#: probability ``exp(-GATE**2 / 2) = 3e-4``.
GATE = 4.0


def pair_log_likelihood(frame, sigma):
    """``log N(y_j; x_k, sigma^2 I)`` ``(K, M)``, ``-inf`` outside the gate."""
    x, y = frame["objects"], frame["detections"]
    pair = dist.Normal(x[:, None, :], sigma).log_prob(y[None, :, :]).sum(-1)
    outside = (x[:, None, :] - y[None, :, :]).norm(dim=-1) > GATE * sigma
    return pair.masked_fill(outside, -math.inf)


def _linear(p, weights):
    """``sum_kj P_kj W_kj`` over the allowed pairs, ``-inf`` where ``P`` puts mass on a
    forbidden pair (``W = -inf``)."""
    allowed = torch.isfinite(weights)
    total = (p * weights.masked_fill(~allowed, 0.0)).sum((-2, -1))
    forbidden_mass = (p * (~allowed).to(p.dtype)).sum((-2, -1))
    return torch.where(forbidden_mass > 0, -math.inf, total)


def association_scores(frame, p_detect, clutter_rate, sigma):
    """``(X, u, v)``: pair scores ``log p_d + log N(y_j; x_k, sigma^2 I)`` ``(K, M)``
    (``-inf`` outside the gate), the row scores ``log(1 - p_d)`` ``(K,)`` and the column
    scores ``log kappa`` ``(M,)``, ``kappa`` the clutter intensity; ``u`` and ``v`` are
    ``None`` when ``p_d = 1`` or there is no clutter (every object of the smaller side is then
    matched)."""
    pair = pair_log_likelihood(frame, sigma)
    x, y = frame["objects"], frame["detections"]
    if p_detect >= 1 or clutter_rate <= 0:
        return pair, None, None
    u = torch.full((x.shape[0],), math.log1p(-p_detect), dtype=DTYPE)
    v = torch.full((y.shape[0],), math.log(clutter_rate), dtype=DTYPE)
    return pair + math.log(p_detect), u, v


def exact_map(frame, p_detect, clutter_rate, sigma):
    """The MAP partial matching ``(K,)``: the Hungarian method with dummy rows."""
    x, u, v = association_scores(frame, p_detect, clutter_rate, sigma)
    if u is None:
        return matching(x)
    return matching(x, unmatched_rows=u, unmatched_cols=v)


def discrete_model(frame, p_detect, clutter_rate, sigma):
    """The generative model of one frame given its number of detections ``M``: ``a`` from
    ``UniformPartialMatching(K, M, p_d)``, the Poisson law of the ``M - k`` false alarms, a
    Gaussian per matched detection and the uniform density ``1 / A`` per false alarm."""
    x, y, area = frame["objects"], frame["detections"], frame["area"]
    k_obj, m = x.shape[0], y.shape[0]
    a = pyro.sample("a", UniformPartialMatching(k_obj, m, torch.tensor(p_detect, dtype=DTYPE)))
    p = partial_perm_to_matrix(a, m, dtype=DTYPE)
    false_alarms = m - p.sum((-2, -1))
    rate = clutter_rate * area
    pyro.factor(
        "false_alarms", false_alarms * math.log(rate) - rate - torch.lgamma(false_alarms + 1)
    )
    pair = pair_log_likelihood(frame, sigma)
    pyro.factor("detections", _linear(p, pair) - false_alarms * math.log(area))


def relaxed_model(frame, p_detect, clutter_rate, sigma, tau_prior=0.3, temperature=None):
    """The same posterior with a relaxed site: ``P`` from ``PartialGumbelSinkhorn(0,
    tau_prior)`` with zero unmatched scores, standing in for the uniform prior over partial
    matchings, and the rest of the log joint, linear in ``P``, as one factor
    ``sum_kj P_kj (X_kj - u_k - v_j)``. At the partial permutation matrices (and a uniform
    prior) it equals :func:`discrete_model` up to a constant. (``temperature`` is the
    guide's.)"""
    x, u, v = association_scores(frame, p_detect, clutter_rate, sigma)
    if u is None:
        raise ValueError("relaxed_model needs p_detect < 1 and clutter_rate > 0")
    k_obj, m = x.shape
    prior = PartialGumbelSinkhorn(
        torch.zeros(k_obj, m, dtype=DTYPE).masked_fill(torch.isinf(x), -math.inf),
        tau_prior,
        unmatched_rows=torch.zeros(k_obj, dtype=DTYPE),
        unmatched_cols=torch.zeros(m, dtype=DTYPE),
    )
    p = pyro.sample("P", prior)
    pyro.factor("association", _linear(p, x - u[:, None] - v[None, :]))


def initial_scores(frame, p_detect, clutter_rate, sigma, init):
    """The guide's starting ``(log_alpha, unmatched_rows, unmatched_cols)``: zeros
    (``init="zero"``), or the model's own scores ``(X, u, v)`` (``init="scores"``, the
    forbidden pairs set to 0, they are masked anyway): the perturb-and-MAP guess of the
    posterior, ``PartialGumbelMatching(X, u, v)``, before any SVI step."""
    k_obj, m = frame["objects"].shape[0], frame["detections"].shape[0]
    if init == "zero":
        zeros = torch.zeros
        return zeros(k_obj, m, dtype=DTYPE), zeros(k_obj, dtype=DTYPE), zeros(m, dtype=DTYPE)
    if init == "scores":
        x, u, v = association_scores(frame, p_detect, clutter_rate, sigma)
        return x.masked_fill(torch.isinf(x), 0.0), u.clone(), v.clone()
    raise ValueError(f"init must be 'zero' or 'scores', got {init!r}")


def guide(frame, p_detect, clutter_rate, sigma, tau_prior=0.3, temperature=1.0, init="zero"):
    """``PartialGumbelSinkhorn`` with learnable scores and unmatched scores (started at
    :func:`initial_scores`)."""
    outside = torch.isinf(pair_log_likelihood(frame, sigma))
    start = initial_scores(frame, p_detect, clutter_rate, sigma, init)
    log_alpha = pyro.param("log_alpha", start[0])
    log_alpha = log_alpha.masked_fill(outside, -math.inf)  # the gate's forbidden pairs
    rows = pyro.param("unmatched_rows", start[1])
    cols = pyro.param("unmatched_cols", start[2])
    pyro.sample(
        "P",
        PartialGumbelSinkhorn(
            log_alpha, temperature, unmatched_rows=rows, unmatched_cols=cols, tol=1e-4
        ),
    )


def fit_guide(
    frame,
    p_detect,
    clutter_rate,
    sigma,
    steps,
    lr,
    seed,
    tau_prior=0.3,
    temperature=1.0,
    init="zero",
    particles=1,
):
    """SVI on the score-space ELBO; returns the fitted guide's ``PartialGumbelMatching``
    (its hard-rounded samples, the gate's pairs forbidden as in the guide) and the final loss
    (mean of the last 10% of steps; ``nan`` with no steps)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    args = (frame, p_detect, clutter_rate, sigma)
    elbo = TraceMeanField_ELBO(num_particles=particles)
    svi = SVI(relaxed_model, guide, Adam({"lr": lr}), elbo)
    options = {"tau_prior": tau_prior, "temperature": temperature}
    # the first step creates the parameters at their initial values (``init``)
    pyro.get_param_store().clear()
    outside = torch.isinf(pair_log_likelihood(frame, sigma))
    start = initial_scores(frame, p_detect, clutter_rate, sigma, init)
    for name, value in zip(("log_alpha", "unmatched_rows", "unmatched_cols"), start):
        pyro.param(name, value)
    losses = [svi.step(*args, **options) for _ in range(steps)]
    store = pyro.get_param_store()
    fitted = PartialGumbelMatching(
        store["log_alpha"].detach().masked_fill(outside, -math.inf),
        unmatched_rows=store["unmatched_rows"].detach(),
        unmatched_cols=store["unmatched_cols"].detach(),
    )
    if not losses:
        return fitted, math.nan
    tail = losses[-max(1, steps // 10) :]
    return fitted, sum(tail) / len(tail)
