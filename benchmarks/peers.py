"""Peers: ``log_sinkhorn`` forward against the strongest installed Sinkhorn solvers.

Peers are installed by `pip install -e ".[peers]"` (`pygmtools`, `ott-jax`; POT is the
`bench` extra); a missing one is reported "not installed". `matching` against the
assignment solvers is the section `peers_matching` (`benchmarks/peers_matching.py`).
"""

import os

import numpy as np
import torch

from benchmarks._common import (
    cores,
    doc_markdown,
    fastest_peer_verdict,
    median_time,
    table,
    timed,
    version,
)
from benchmarks.sinkhorn_forward import TOL, plain_loop, pot_solver, run_pot, sweep_budget
from pyro_permutations.ops import log_sinkhorn, marginal_error

SINKHORN_DOC = """Scores `randn(B, N, N) / tau` (float32, one seed per shape), the same for every
method; the marginal error `max(|P 1 - 1|_inf, |P^T 1 - 1|_inf)` of each method's matrix
(in log space) is computed by one function, `pyro_permutations.ops.marginal_error`, its
maximum over the batch reported; "not reached" when above 1e-3 at the method's cap.

- **ours**: `log_sinkhorn(x, tol=1e-3)`, median of repeats.
- **plain loop**: row and column logsumexp normalisations, checked every 10 sweeps.
- **POT**: `ot.batch.bregman_log_projection_batch(x, a=1, b=1, tol=1e-3)`.
- **pygmtools**: `pygmtools.sinkhorn(x, max_iter=K, tau=1, batched_operation=True)` with
  the smallest `K = 10 * 2^k` that reaches the tolerance (it has no tolerance of its own).
- **OTT-JAX**: `Sinkhorn(threshold=1e-3, max_iterations=K)` on `Geometry(cost_matrix=-x,
  epsilon=1)` with unit marginals, `jax.jit(jax.vmap(...))`, on jax's CPU backend; the
  compile time is reported apart (not in the time); one XLA thread when torch has one;
  defaults, adaptive momentum
  (`Momentum(start=20, error_threshold=1e-2)`) and Anderson acceleration
  (`AndersonAcceleration(memory=5)`). Its log P is `f_i + g_j - C_ij`. Its threshold
  bounds the L1 error of one marginal, checked every 10 iterations, which can stop it above
  the max-norm error of both measured here: it is tightened to 1e-4, then 1e-5, until the
  measured error is within 1e-3 (the threshold used is reported).

Caps: at most {cap} sweeps (iterations) and about {time_cap:g} s per baseline solve, or
{ratio_cap:g} times our time where that is longer (the budget cut to what fits at the rate
of a short first run; OTT-JAX's cap then grown, doubled or to what the time cap allows at
its last run's rate, while it stops there unconverged in less than 90% of that time). A peer
stopped at its cap unconverged would have taken longer, so its time over ours is a lower bound
of its ratio (marked `>`): it decides the target when it is at least 5x. Times in seconds, the
iterations in brackets (sweeps; pygmtools' `max_iter`; OTT-JAX's `n_iters`)."""

# --- Sinkhorn forward -------------------------------------------------------------------------

SINKHORN_FULL = {
    "sizes": [(1000, 10), (100, 50), (10, 200), (1, 1000), (1, 5000)],
    "taus": [0.1, 0.01],
    "cap": 10_000,
    "time_cap": 10.0,
}
SINKHORN_QUICK = {"sizes": [(20, 5), (2, 20)], "taus": [0.1], "cap": 200, "time_cap": 1.0}
SINKHORN_TARGET = 5.0
#: A peer's time cap is at least this many times ours, so that a capped peer is decided.
RATIO_CAP = 5.5


def log_error(log_p):
    """The marginal error of a matrix given in log space, by one function for every method."""
    return marginal_error(torch.tensor(np.array(log_p), dtype=torch.float32)).max().item()


def ott_solvers():
    """``{name: make(x, max_iterations) -> (compile seconds, run)}`` for OTT-JAX (jit, vmap over
    the batch) with its defaults, with adaptive momentum and with Anderson acceleration, or
    ``None`` when OTT-JAX is not installed. ``run()`` returns ``(log P, iterations)``."""
    names = ["OTT-JAX default", "OTT-JAX momentum", "OTT-JAX Anderson"]
    if torch.get_num_threads() == 1:  # XLA on one thread too, like every other method
        os.environ.setdefault(
            "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
    try:
        import jax
        import jax.numpy as jnp
        from ott.geometry import geometry
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import acceleration, sinkhorn
    except ImportError:
        return dict.fromkeys(names)
    options = {
        names[0]: {},
        names[1]: {"momentum": acceleration.Momentum(start=20, error_threshold=1e-2)},
        names[2]: {"anderson": acceleration.AndersonAcceleration(memory=5)},
    }

    def make_for(opts):
        def make(x, max_iterations, threshold=TOL):
            solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations, **opts)

            def one(c):
                n = c.shape[-1]
                geom = geometry.Geometry(cost_matrix=c, epsilon=1.0)
                problem = linear_problem.LinearProblem(geom, a=jnp.ones(n), b=jnp.ones(n))
                out = solver(problem)
                return out.f[:, None] + out.g[None, :] - c, out.n_iters

            cost = jnp.asarray(-x.numpy())
            (compiled, seconds) = timed(lambda: jax.jit(jax.vmap(one)).lower(cost).compile())

            def run():
                log_p, iters = compiled(cost)
                log_p.block_until_ready()
                return log_p, int(iters.max())

            return seconds, run

        return make

    return {name: make_for(opts) for name, opts in options.items()}


def pygm_sinkhorn():
    try:
        import pygmtools
    except ImportError:
        return None

    def run(x, k):
        p = pygmtools.sinkhorn(x, max_iter=k, tau=1.0, batched_operation=True, backend="pytorch")
        return torch.log(p.clamp(min=0))

    return run


def sinkhorn_table(params, log):
    pot = pot_solver()
    pygm = pygm_sinkhorn()
    otts = ott_solvers()
    log_sinkhorn(torch.randn(4, 5, 5) / 0.1, tol=TOL)  # warm-up
    peers = ["plain loop", "POT", "pygmtools", *otts]
    rows, targets = [], []
    for tau in params["taus"]:
        for b, n in params["sizes"]:
            x = torch.randn(b, n, n, generator=torch.Generator().manual_seed(b + n)) / tau
            results = {}  # name: (seconds, iterations, error, extra)
            t_ours = median_time(lambda x=x: log_sinkhorn(x, tol=TOL))
            results["ours"] = (t_ours, "", log_error(log_sinkhorn(x, tol=TOL)), "")
            # A peer may run for the time cap or RATIO_CAP times ours, whichever is longer,
            # so that one stopped there unconverged still decides the target (a lower bound).
            time_cap = max(params["time_cap"], RATIO_CAP * t_ours)
            budget = sweep_budget(x, params["cap"], time_cap)
            (y, sweeps), t = timed(lambda x=x, k=budget: plain_loop(x, TOL, k))
            results["plain loop"] = (t, sweeps, log_error(y), "")
            if pot is not None:
                (y, sweeps), t = timed(lambda x=x, k=budget: run_pot(pot, x, TOL, k))
                results["POT"] = (t, sweeps, log_error(y), "")
            if pygm is not None:
                t, k, err = oracle_iterations(lambda k, x=x: pygm(x, k), 2 * budget)
                results["pygmtools"] = (t, k, err, "")
            for name, make in otts.items():
                if make is None:
                    continue
                # Its threshold bounds its own error (L1, one marginal): tightened by 10x
                # until the error measured here is within the tolerance. Its iteration cap
                # starts at what the time cap allows at the rate of a short first run (which
                # overstates the rate) and grows while it stops there unconverged in less than
                # 90% of the time cap: doubled, or cut to what the time cap allows at the rate
                # of the last run, so that a peer capped unconverged ran close to the time cap.
                _, probe = make(x, 20)
                rate = median_time(probe, min_total=0.1) / 20
                start = max(20, min(params["cap"], int(time_cap / rate) // 10 * 10))
                for threshold in (TOL, TOL / 10, TOL / 100):
                    cap = start
                    while True:
                        compile_s, solve = make(x, cap, threshold)
                        (log_p, iters), t = timed(solve)
                        err = log_error(log_p)
                        capped = iters >= cap and err > TOL
                        if not capped or t > 0.9 * time_cap or cap >= params["cap"]:
                            break
                        grow = min(2.0, 0.95 * time_cap / t)
                        cap = min(params["cap"], max(cap + 10, int(cap * grow) // 10 * 10))
                    if err <= TOL or capped:
                        break
                t = t if t > 0.3 else median_time(solve)  # one call decides a long solve
                results[name] = (t, iters, err, f"threshold {threshold:g}, compile {compile_s:.2f}")
            row = [f"{tau:g}", b, n]
            for name in ["ours", *peers]:
                if name not in results or results[name] is None:
                    row.append("not installed")
                    continue
                t, k, err, extra = results[name]
                cell = f"{t:.4g}" + (f" ({k})" if k != "" else "")
                cell += f", {err:.0e}" + ("" if err <= TOL else " not reached")
                if extra:
                    cell += f", {extra} s"
                row.append(cell)
            rows.append(row)
            log(" | ".join(str(c) for c in row))
            peers_ = {k: (r[0], r[2] <= TOL) for k, r in results.items() if k != "ours"}
            ours_ok = results["ours"][2] <= TOL
            verdict_ = fastest_peer_verdict(t_ours, ours_ok, peers_, SINKHORN_TARGET)
            targets.append(f"- tau = {tau:g}, B = {b}, N = {n}: ours {t_ours:.4g} s; " + verdict_)
    header = ["tau", "B", "N", "ours s, err"] + [f"{k} s (iters), err" for k in peers]
    return table(header, rows), targets


def oracle_iterations(run, cap):
    """Smallest ``K = 10 * 2^k <= cap`` with ``log_error(run(K)) <= TOL``: its time (median of
    repeats), ``K`` and error; the time and error at ``cap`` if none (not reached)."""
    k = 10
    while True:
        err = log_error(run(k))
        if err <= TOL or k >= cap:
            return median_time(lambda k=k: run(k)), k, err
        k = min(2 * k, cap)


def run(quick, log=print):
    params = SINKHORN_QUICK if quick else SINKHORN_FULL
    versions = ", ".join(f"{pkg} {version(pkg)}" for pkg in ["POT", "pygmtools", "ott-jax"])
    text, targets = sinkhorn_table(params, log)
    lines = [
        doc_markdown(__doc__),
        "",
        f"Peer versions: {versions}; {cores()} cores.",
        "",
        "### Sinkhorn forward to marginal error 1e-3 (CPU, float32)",
        "",
        SINKHORN_DOC.format(cap=params["cap"], time_cap=params["time_cap"], ratio_cap=RATIO_CAP),
        "",
        text,
        "",
        f"**Target**: ours at least {SINKHORN_TARGET:g}x faster than the fastest peer at every "
        "shape (a peer stopped unconverged at its cap counts with a lower bound of its ratio).",
        "",
        *targets,
    ]
    return "\n".join(lines)
