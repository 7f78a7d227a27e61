"""Where a step of each method goes at the full scale (N = 279 neurons, T = 40 steps, J = 1
and J = 5 worms, nu = 0.05): wall clock per step, and cProfile's cumulative time in the parts
that matter, as a share of the step.

    python -m tutorials.celegans.profile [--steps 10] [--out tutorials/celegans/results/profile.md]

A VI step is one SVI step (ELBO, gradient, Adam); an MCMC step is one Gibbs sweep (the Gaussian
draw of W, then ``moves_per_step`` swap and block moves per worm); a MAP step one round (ridge W,
then FAQ per worm). ``gumbel-sinkhorn (implicit)`` is the library's default operator (converged
to ``tol``, implicit gradient) that the tutorial replaces by 20 unrolled sweeps.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from tutorials.celegans.data import load_connectome  # noqa: E402
from tutorials.celegans.experiment import make_point  # noqa: E402
from tutorials.celegans.map_fit import fit_map  # noqa: E402
from tutorials.celegans.mcmc import fit_mcmc  # noqa: E402
from tutorials.celegans.model import fit_vi  # noqa: E402

#: (label, function name, file fragment) of the parts reported.
PARTS = [
    ("log_sinkhorn (forward)", "log_sinkhorn", "ops/sinkhorn.py"),
    ("  feasibility check", "_check_feasible", "ops/sinkhorn.py"),
    ("  linear_sum_assignment", "linear_sum_assignment", ""),
    ("backward", "run_backward", ""),
    ("  implicit Sinkhorn backward", "implicit_sinkhorn_backward", "_sinkhorn_implicit.py"),
    ("model (likelihood)", "model", "celegans/model.py"),
    ("PermutationKernel moves", "sample", "permutation_kernel.py"),
    ("  kernel's model calls", "_log_density", "permutation_kernel.py"),
    ("W Gaussian draw", "sample_weights", "celegans/mcmc.py"),
    ("ridge W", "fit_weights", "celegans/map_fit.py"),
    ("FAQ", "faq", "celegans/map_fit.py"),
    ("posterior mode (matching)", "posterior_mode", "celegans/model.py"),
]


def _cumulative(stats, name, fragment):
    """cProfile's cumulative seconds in function ``name`` of a file matching ``fragment``
    (built-ins, such as ``<method 'run_backward' ...>``, matched by a name inside theirs)."""
    total = 0.0
    for (file, _, func), (_, _, _, ct, _) in stats.stats.items():
        builtin = func.startswith("<") and (f"'{name}'" in func or f".{name}>" in func)
        if (func == name and fragment in file) or (builtin and not fragment):
            total = max(total, ct)
    return total


def _run(point, method, steps):
    if method.startswith("gumbel-sinkhorn"):
        hyper = {"n_iters": None} if "implicit" in method else None
        name = "gumbel-sinkhorn"
    else:
        hyper, name = None, method
    if method == "mcmc":
        fit_mcmc(point.problem, point.start, 0, sweeps=steps)
    elif method == "map":
        fit_map(point.problem, rounds=steps, start=point.start)
    else:
        fit_vi(name, point.problem, steps, 0, hyper=hyper, start=point.start, every=steps)


def profile(point, method, steps):
    """Seconds per step and cProfile's cumulative seconds per part, after one untimed step
    (lazy imports and first-call costs)."""
    _run(point, method, 1)
    prof = cProfile.Profile()
    begin = time.perf_counter()
    prof.enable()
    _run(point, method, steps)
    prof.disable()
    per_step = (time.perf_counter() - begin) / steps
    stats = pstats.Stats(prof)
    parts = {label: _cumulative(stats, n, f) / steps for label, n, f in PARTS}
    return per_step, parts


def swap_costs(point, count=20, seed=0):
    """The change of the log likelihood when ``count`` random allowed transpositions are
    applied to worm 0's start, under one Gaussian draw of ``G`` given the start (the Gibbs
    sampler's first move): why its swap acceptance is near zero."""
    import pyro.poutine as poutine

    from tutorials.celegans.mcmc import permutation_model, sample_weights

    gen = torch.Generator().manual_seed(seed)
    prob, start = point.problem, point.start
    g = sample_weights(prob, start, gen)

    def log_lik(perm):
        data = {"G": g, "X": perm}
        tr = poutine.trace(poutine.condition(permutation_model, data=data)).get_trace(prob)
        return float(tr.nodes["Y"]["fn"].log_prob(tr.nodes["Y"]["value"]).sum())

    base, out = log_lik(start), []
    allowed = prob.allowed[0]
    while len(out) < count:
        i = int(torch.randint(prob.n, (1,), generator=gen))
        ok = allowed[i, start[0]] & allowed[:, start[0, i]]
        ok[i] = False
        if not ok.any():
            continue
        choices = ok.nonzero().flatten()
        j = int(choices[torch.randint(choices.numel(), (1,), generator=gen)])
        new = start.clone()
        new[0, i], new[0, j] = start[0, j], start[0, i]
        out.append(log_lik(new) - base)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tutorials.celegans.profile", description=__doc__)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--worms", type=int, nargs="+", default=[1, 5])
    p.add_argument(
        "--methods",
        nargs="+",
        default=[
            "rounding",
            "gumbel-sinkhorn",
            "gumbel-sinkhorn (implicit)",
            "naive",
            "mcmc",
            "map",
        ],
    )
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "profile.md"))
    p.add_argument(
        "--swap-costs", action="store_true", help="only the swap costs (swap_costs.md beside)"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    connectome = load_connectome()
    if args.swap_costs:
        point = make_point(connectome, 1, 0.05, 0.1, 0)
        costs = sorted(swap_costs(point))
        text = (
            f"Log-likelihood change of 20 random allowed transpositions of the start (N = "
            f"{connectome.n}, J = 1, T = 40, nu = 0.05, known 0.1, seed 0), under one Gaussian "
            f"draw of G given the start (`python -m tutorials.celegans.profile --swap-costs`): "
            f"from {costs[0]:.0f} to {costs[-1]:.0f} nats, median "
            f"{costs[len(costs) // 2]:.0f}.\n"
        )
        path = Path(args.out).with_name("swap_costs.md")
        path.write_text(text)
        print(text + f"wrote {path}")
        return
    lines = [
        f"Seconds per step at N = {connectome.n}, T = 40, nu = 0.05, known 0.1, 1 torch thread "
        f"(`python -m tutorials.celegans.profile --steps {args.steps}`); the parts are "
        f"cProfile's cumulative time per step (nested parts indented; cProfile adds overhead). "
        f"Each run includes its set-up (the guide's parameters, the kernel's set-up), "
        f"spread over the steps.",
        "",
    ]
    for worms in args.worms:
        point = make_point(connectome, worms, 0.05, 0.1, 0)
        lines += [f"**J = {worms}**", ""]
        results = {m: profile(point, m, args.steps) for m in args.methods}
        lines.append("| part | " + " | ".join(args.methods) + " |")
        lines.append("|---|" + "---|" * len(args.methods))
        lines.append(
            "| **step (wall clock)** | "
            + " | ".join(f"**{results[m][0]:.3f} s**" for m in args.methods)
            + " |"
        )
        for label, *_ in PARTS:
            cells = []
            for m in args.methods:
                step, parts = results[m]
                v = parts[label]
                cells.append(f"{v:.3f} ({100 * v / step:.0f}%)" if v > 0 else "")
            if any(cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        print("\n".join(lines), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
