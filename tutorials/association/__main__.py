"""Data association as a Pyro model: objects in 2-D, detections with misses and clutter, the
partial matching inferred by SVI with a PartialGumbelSinkhorn guide, against the exact
posterior (small cases) and the exact MAP (large ones).

    python -m tutorials.association          # ~2-4 minutes on one core

Results go to tutorials/association/results (or --out DIR): points.json (every finished
point, stored at once: rerunning the same command resumes), table.md, summary.csv and
frame.png.
"""

import os

# Pin the BLAS and OpenMP pools before numpy and torch load them (the problems are small: on
# shared cores, threads cost more than they give).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from tutorials.association import run as R  # noqa: E402
from tutorials.checkpoint import CheckpointError  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.association",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seeds", type=int, help=f"seeds of the small cases ({R.CONFIG['seeds']})")
    p.add_argument("--steps", type=int, help=f"SVI steps per frame ({R.CONFIG['steps']})")
    p.add_argument("--out", help="results folder (default tutorials/association/results)")
    p.add_argument("--fresh", action="store_true", help="discard stored results first")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for name in ("seeds", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be at least 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    config = dict(R.CONFIG)
    if args.seeds is not None:
        config["seeds"] = args.seeds
    if args.steps is not None:
        config["steps"] = args.steps
    out = Path(args.out) if args.out else RESULTS
    start = time.perf_counter()
    try:
        store = R.run(config, out, fresh=args.fresh, progress=not args.no_progress)
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    command = "python -m tutorials.association" + (" " + " ".join(argv) if argv else "")
    if argv is None and sys.argv[1:]:
        command = "python -m tutorials.association " + " ".join(sys.argv[1:])
    R.write_table(R.summarize(store), out, command)
    figure = R.write_figure(store, out)
    print((out / "table.md").read_text())
    print(f"wrote {out / 'table.md'}, {out / 'summary.csv'}" + (f", {figure}" if figure else ""))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
