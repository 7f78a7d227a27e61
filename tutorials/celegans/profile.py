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
    total = 0.0
    for (file, _, func), (_, _, _, ct, _) in stats.stats.items():
        if func == name and fragment in file:
            total = max(total, ct)  # recursion-free functions: one entry per file
    return total


def profile(point, method, steps):
    """Seconds per step and cProfile's cumulative seconds per part."""
    prof = cProfile.Profile()
    if method.startswith("gumbel-sinkhorn"):
        hyper = {"n_iters": None} if "implicit" in method else None
        name = "gumbel-sinkhorn"
    else:
        hyper, name = None, method
    begin = time.perf_counter()
    prof.enable()
    if method == "mcmc":
        fit_mcmc(point.problem, point.start, 0, sweeps=steps)
    elif method == "map":
        fit_map(point.problem, rounds=steps, start=point.start)
    else:
        fit_vi(name, point.problem, steps, 0, hyper=hyper, start=point.start, every=steps)
    prof.disable()
    per_step = (time.perf_counter() - begin) / steps
    stats = pstats.Stats(prof)
    parts = {label: _cumulative(stats, n, f) / steps for label, n, f in PARTS}
    return per_step, parts


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
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    connectome = load_connectome()
    lines = [
        f"Seconds per step at N = {connectome.n}, T = 40, nu = 0.05, known 0.1, 1 torch thread "
        f"(`python -m tutorials.celegans.profile --steps {args.steps}`); the parts are "
        f"cProfile's cumulative time per step (nested parts indented; cProfile adds overhead).",
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
