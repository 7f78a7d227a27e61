"""Reproduce [BP] Table 1 and Figure 2 (synthetic matching, N = 6), with a Gumbel-Sinkhorn row.

    python -m tutorials.matching                   # quick run: 10 repetitions, about 2 minutes
    python -m tutorials.matching --reps 200 --out tutorials/matching/results   # the paper's
    python -m tutorials.matching --grid-search     # the hyper-parameter search behind the defaults

Rerunning a command resumes it: finished repetitions are read back from ``repetitions.json``
(the grid search's finished configurations from ``grid_search.json``).
"""

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tutorials.matching import experiment as E
from tutorials.matching.figures import save_figures
from tutorials.matching.pairings import pairings_markdown
from tutorials.matching.paper import SIGMAS
from tutorials.matching.run import (
    markdown_table,
    noise_floor_rows,
    run,
    summarize,
    write_summary,
)
from tutorials.matching.store import GridSearchStore, ResultsFileError


#: The configurations searched for each relaxation, on repetitions disjoint from the evaluation
#: ones (seeds offset by GRID_SEED_OFFSET). Temperatures span [BP]'s [1e-2, 1] range; the
#: scale range bounds the variational scale (rounding: [BP]'s V in [0.1, 0.5]).
def _grid():
    out = []
    for tau in (0.1, 0.3, 1.0):
        for eta in (0.1, 0.3, 1.0):
            out.append(("stick-breaking", {"temperature": tau, "prior_eta": eta}))
        for high in (0.3, 0.6):
            out.append(
                (
                    "stick-breaking",
                    {
                        "temperature": tau,
                        "prior_eta": 0.3,
                        "init_scale": 0.1,
                        "scale_range": [0.01, high],
                    },
                )
            )
    # Stick-breaking under the flat prior on the polytope (FlatBirkhoff) instead of
    # RoundingPrior: which prior to pair it with (docs/choosing.rst).
    for tau in (0.3, 1.0):
        for high in (0.3, 0.6):
            flat = {"prior": "flat", "init_scale": 0.1, "scale_range": [0.01, high]}
            out.append(("stick-breaking", {"temperature": tau, **flat}))
    for tau in (0.1, 0.3, 0.5):
        for eta in (0.1, 0.3, 1.0):
            out.append(("rounding", {"temperature": tau, "prior_eta": eta}))
            bounded = {"init_scale": 0.3, "scale_range": [0.1, 0.5]}
            out.append(("rounding", {"temperature": tau, "prior_eta": eta, **bounded}))
            out.append(
                (
                    "rounding",
                    {"temperature": tau, "prior_eta": eta, **bounded, "sinkhorn_loc": True},
                )
            )
    # Second rounding stage (after the first pointed to larger temperatures, a wider prior and
    # a smaller scale): [BP]'s mean kept in the polytope by Sinkhorn, scale bounded above.
    for tau in (0.5, 0.7, 0.9):
        for eta in (0.3, 0.5, 0.7, 1.0):
            for high in (0.15, 0.25):
                out.append(
                    (
                        "rounding",
                        {
                            "temperature": tau,
                            "prior_eta": eta,
                            "init_scale": 0.3,
                            "scale_range": [0.05, high],
                            "sinkhorn_loc": True,
                        },
                    )
                )
    # [BP] section 5 fits "with an annealing schedule": the guide's temperature falls from 0.9.
    for tau in (0.1, 0.5):
        out.append(
            (
                "rounding",
                {
                    "temperature": tau,
                    "anneal_from": 0.9,
                    "prior_eta": 0.5,
                    "init_scale": 0.3,
                    "scale_range": [0.05, 0.25],
                    "sinkhorn_loc": True,
                },
            )
        )
    for tau in (0.3, 1.0, 2.0):
        for prior_tau in (0.3, 1.0, 2.0):
            out.append(("gumbel-sinkhorn", {"temperature": tau, "prior_temperature": prior_tau}))
    return out


GRID = _grid()
GRID_SEED_OFFSET = 1000
GRID_RESULTS_FILE = "grid_search.json"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.matching",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--reps", type=int, default=10, help="repetitions per sigma (paper: 200)")
    p.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    p.add_argument("--methods", nargs="+", default=list(E.METHODS), choices=E.METHODS)
    p.add_argument("--steps", type=int, default=1000, help="SVI steps per fit (Adam)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (paper: 0.1)")
    p.add_argument(
        "--final-lr",
        type=float,
        default=0.01,
        help="learning rate reached by geometric decay at the last step (--lr's value: no decay)",
    )
    p.add_argument("--samples", type=int, default=1000, help="samples per fitted pmf")
    p.add_argument(
        "--batch", type=int, default=50, help="repetitions fitted side by side and stored together"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="results folder (default runs/matching-r<reps>)")
    p.add_argument("--fresh", action="store_true", help="discard stored results first")
    p.add_argument(
        "--grid-search", action="store_true", help="run the hyper-parameter grid search instead"
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for name in ("reps", "steps", "samples", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if any(not 0 < s for s in args.sigmas):
        p.error("--sigmas must be positive")
    for name in ("lr", "final_lr"):
        if not getattr(args, name) > 0:  # also refuses nan
            p.error(f"--{name.replace('_', '-')} must be positive (Adam's learning rate)")
    # A repeated method or sigma would be fitted twice and counted as one cell of twice the
    # repetitions (a sigma with two seeds, by its two positions): refuse rather than mix them.
    for name in ("methods", "sigmas"):
        values = getattr(args, name)
        twice = sorted({f"{v:g}" if name == "sigmas" else v for v in values if values.count(v) > 1})
        if twice:
            p.error(f"--{name} lists {', '.join(twice)} more than once; give each once")
    return args


def grid_search(args, out):
    """Mean distance of every configuration in GRID at every sigma: ``grid_search.csv``.

    Each mean is stored in ``grid_search.json`` as soon as it is found (atomically, as the
    main run stores its repetitions), so an interrupted search loses at most the fit in flight:
    the same command again goes on where it stopped. A file from a search with other settings
    is refused (``--fresh`` discards it)."""
    config = {
        "n": E.N,
        "reps": args.reps,
        "sigmas": args.sigmas,
        "steps": args.steps,
        "lr": args.lr,
        "final_lr": args.final_lr,
        "samples": args.samples,
        "seed": args.seed,
        "seed_offset": GRID_SEED_OFFSET,
    }
    store = GridSearchStore(out / GRID_RESULTS_FILE, config, fresh=args.fresh)
    grid = [(m, h) for m, h in GRID if m in args.methods]
    todo = [
        (method, hyper, i, sigma)
        for method, hyper in grid
        for i, sigma in enumerate(args.sigmas)
        if store.mean(method, hyper, sigma) is None
    ]
    problems = {}
    for method, hyper, i, sigma in tqdm(todo, desc="grid", unit="fit", disable=args.no_progress):
        if sigma not in problems:  # the same repetitions for every configuration
            reps = list(range(GRID_SEED_OFFSET, GRID_SEED_OFFSET + args.reps))
            problem = E.make_problem(sigma, reps, args.seed, i)
            problems[sigma] = (problem, E.exact_posteriors(problem))
        problem, truth = problems[sigma]
        pmfs = E.fit_relaxation(
            problem,
            method,
            hyper,
            args.steps,
            args.lr,
            args.samples,
            args.seed,
            final_lr=args.final_lr,
        )
        mean = E.distances(truth, pmfs).mean().item()
        store.add([{"method": method, "hyper": hyper, "sigma": sigma, "distance": mean}])
    rows = []
    for method, hyper in grid:
        means = [store.mean(method, hyper, sigma) for sigma in args.sigmas]
        rows.append((method, json.dumps(hyper), *means, sum(means) / len(means)))
    path = out / "grid_search.csv"
    header = ["method", "hyper"] + [f"sigma={s:g}" for s in args.sigmas] + ["average"]
    # A search over some methods keeps the stored rows of the others (same columns only).
    kept = []
    if path.exists():
        with path.open(newline="") as f:
            old = list(csv.reader(f))
        if old and old[0] == header:
            kept = [r for r in old[1:] if r and r[0] not in args.methods]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(kept)
        for r in rows:
            w.writerow([r[0], r[1]] + [f"{v:.4f}" for v in r[2:]])
    with path.open(newline="") as f:
        every = list(csv.DictReader(f))
    command = f"python -m tutorials.matching --grid-search --reps {args.reps} --out {out}"
    pairings = out / "pairings.md"
    pairings.write_text(pairings_markdown(every, args.sigmas, args.reps, command))
    print(f"wrote {pairings}")
    for method in dict.fromkeys(m for m, _ in grid):
        best = min((r for r in rows if r[0] == method), key=lambda r: r[-1])
        print(f"best {method}: {best[1]} (mean distance over sigmas {best[-1]:.3f})")
    print(f"wrote {path}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)  # the tensors are small: threads cost more than they give
    out = Path(args.out or f"runs/matching-r{args.reps}")
    out.mkdir(parents=True, exist_ok=True)
    if args.grid_search:
        try:
            grid_search(args, out)
        except ResultsFileError as e:
            sys.exit(f"error: {e}")
        return
    config = {
        "n": E.N,
        "reps": args.reps,
        "sigmas": args.sigmas,
        "methods": args.methods,
        "steps": args.steps,
        "lr": args.lr,
        "final_lr": args.final_lr,
        "samples": args.samples,
        "batch": args.batch,
        "seed": args.seed,
        "hyper": E.DEFAULT_HYPER,
    }
    start = time.perf_counter()
    try:
        store = run(config, out, fresh=args.fresh, progress=not args.no_progress)
    except ResultsFileError as e:
        sys.exit(f"error: {e}")
    rows = summarize(store) + noise_floor_rows(store.config)
    write_summary(rows, out)
    table = markdown_table(rows, args.sigmas)
    (out / "table1.md").write_text(table)
    figures = save_figures(store, out)
    print(table)
    print(f"wrote {out / 'summary.csv'}, {out / 'table1.md'}, " + ", ".join(map(str, figures)))
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
