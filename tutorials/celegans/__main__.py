"""[BP] section 6 on the C. elegans connectome: neuron identities from simulated activity, body
positions and a known subset, by rounding, Gumbel-Sinkhorn and naive VI, MCMC and MAP.

    python -m tutorials.celegans            # reduced sweep: 2 seeds, 4 s per fit, ~10 minutes
    python -m tutorials.celegans --full     # the protocol: 10 seeds, 6 tolerances, 30 s per fit
    python -m tutorials.celegans --full --workers 2   # two fits at a time, one per core

Results go to tutorials/celegans/results/<reduced|full> (or --out DIR): points.json (every
finished fit, stored at once: rerunning the same command resumes), tables.md, summary.csv,
time.csv and three PNG figures.
"""

import os

# Pin the BLAS and OpenMP pools before numpy and torch load them (the matrices are small: on
# shared cores, threads cost more than they give). --threads overrides torch's own pool.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from tutorials.celegans import run as R  # noqa: E402
from tutorials.celegans.experiment import METHODS  # noqa: E402
from tutorials.celegans.figures import (  # noqa: E402
    save_elbo_figure,
    save_figures,
    save_spread_figure,
)
from tutorials.checkpoint import CheckpointError  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.celegans",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--full", action="store_true", help="the full protocol (hours)")
    p.add_argument("--seeds", type=int, help="seeds per point (reduced 2, full 10)")
    p.add_argument("--budget", type=float, help="seconds per method and point (4 / 30)")
    p.add_argument("--methods", nargs="+", choices=METHODS, help="default: all")
    p.add_argument("--n", type=int, help="a connected subset of N neurons (default: all 279)")
    p.add_argument("--out", help="results folder (default tutorials/celegans/results/<run>)")
    p.add_argument("--fresh", action="store_true", help="discard stored results first")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="fit in this many processes at once, each with --threads torch threads "
        "(default 1); the budgets are wall clock, so at most one worker per core",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--report",
        action="store_true",
        help="fit nothing: write the tables and figures of the points stored so far",
    )
    args = p.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be at least 1")
    if args.budget is not None and not args.budget > 0:
        p.error("--budget must be positive (seconds)")
    if args.threads < 1:
        p.error("--threads must be at least 1")
    if args.workers < 1:
        p.error("--workers must be at least 1")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.workers > 1 and args.workers * args.threads > cores:
        p.error(
            f"--workers {args.workers} x --threads {args.threads} needs more than the {cores} "
            "cores here: each fit's budget is wall clock, so shared cores would cut every "
            "method's work; use fewer workers"
        )
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available to torch here")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    config = dict(R.FULL if args.full else R.REDUCED)
    for name in ("seeds", "budget", "methods", "n"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    out = Path(args.out) if args.out else RESULTS / ("full" if args.full else "reduced")
    out.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    try:
        if args.report:
            store = R.RecordStore(out / R.RESULTS_FILE, config, R.KEY)
        else:
            store = R.run(
                config,
                out,
                fresh=args.fresh,
                progress=not args.no_progress,
                device=args.device,
                workers=args.workers,
                threads=args.threads,
            )
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    rows = R.summarize(store)
    trows = R.time_rows(store)
    n = next(iter(store.records.values()))["n"] if store.records else config["n"]
    srows = R.spread_rows(store)
    tables = R.markdown_tables(rows, config, n) + "\n" + R.time_table(trows)
    if srows:
        tables += "\n" + R.spread_table(srows)
    crows = R.claim_rows(store)
    if crows:
        tables += "\n" + R.claim_table(crows)
    (out / "tables.md").write_text(tables)
    R.write_csv(rows, out / "summary.csv")
    R.write_csv(trows, out / "time.csv")
    if srows:
        R.write_csv(srows, out / "spread.csv")
    if crows:
        R.write_csv(crows, out / "claim.csv")
    figures = save_figures(rows, trows, config, out)
    for extra in (save_elbo_figure(store, out), save_spread_figure(srows, config, out)):
        figures += [extra] if extra is not None else []
    print(tables)
    print(
        f"wrote {out / 'tables.md'}, summary.csv, time.csv"
        + (", spread.csv" if srows else "")
        + (", claim.csv, " if crows else ", ")
        + ", ".join(p.name for p in figures)
    )
    print(f"wall time {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
