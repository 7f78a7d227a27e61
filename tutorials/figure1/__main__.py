"""Draw [BP] Figure 1 with :func:`pyro_permutations.plotting.plot_relaxations` and save it.

    python -m tutorials.figure1                                  # runs/figure1/figure1.png
    python -m tutorials.figure1 --out tutorials/figure1/results  # the committed figure
    python -m tutorials.figure1 --temperatures 0.9 0.5 0.2 0.05 --samples 5000

Columns: (a) Gumbel-softmax and (b) stick-breaking on the 2-simplex, relaxing the same
categorical; (c) stick-breaking and (d) rounding on the Birkhoff polytope B_3, projected onto
the plane where its six vertices form a hexagon. One row per temperature.
"""

import argparse
import sys
import time
from pathlib import Path

from pyro_permutations.plotting import plot_relaxations
from pyro_permutations.plotting.relaxations import TEMPERATURES


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.figure1",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/figure1", help="output folder (default runs/figure1)")
    p.add_argument("--samples", type=int, default=2000, help="samples per panel (default 2000)")
    p.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=list(TEMPERATURES),
        help="temperatures in (0, 1), one row each (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid", type=int, default=150, help="simplex grid points per side")
    p.add_argument("--dpi", type=int, default=100)
    args = p.parse_args(argv)
    if args.samples < 3:
        p.error("--samples must be at least 3")
    if args.grid < 3:
        p.error("--grid must be at least 3")
    if not all(0 < t < 1 for t in args.temperatures):
        p.error("--temperatures must lie in the open interval (0, 1) (rounding needs tau < 1)")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    fig = plot_relaxations(args.temperatures, args.samples, seed=args.seed, grid_size=args.grid)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "figure1.png"
    fig.savefig(path, dpi=args.dpi)
    print(f"wrote {path} ({time.perf_counter() - start:.1f} s)")
    return path


if __name__ == "__main__":
    main()
