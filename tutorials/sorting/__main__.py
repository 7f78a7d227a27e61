"""Reproduce [GS] Table 1: sorting lists of numbers with a Sinkhorn network.

    python -m tutorials.sorting                      # quick: 2,000 steps per N
    python -m tutorials.sorting --n 5 10 15          # the small lists only (about a minute)
    python -m tutorials.sorting --paper              # 10,000 steps per N (see --paper)
    python -m tutorials.sorting --setup reference    # [GS]'s training set-up instead of ours

One model per N is trained on U(0,1) lists and tested, without retraining or rescaling the
inputs, on each interval of Table 1 and on three with negative numbers, in float32 (the
paper's arithmetic) and in float64. Trained models are kept in the output folder
(``model-n<N>.pt``): a rerun with the same settings evaluates them again without retraining.
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from tutorials.checkpoint import CheckpointError
from tutorials.sorting.experiment import SETUPS
from tutorials.sorting.paper import NS
from tutorials.sorting.run import markdown_table, run, write_summary

QUICK_STEPS = 2000
PAPER_STEPS = 10_000


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.sorting",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, nargs="+", default=list(NS), help="list lengths N")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"training steps per N (default {QUICK_STEPS}, or {PAPER_STEPS} with --paper)",
    )
    p.add_argument(
        "--paper",
        action="store_true",
        help=f"the paper's protocol as far as known: {PAPER_STEPS} training steps per N unless "
        "--steps says otherwise. The paper's step count is not confirmed; this is our choice.",
    )
    p.add_argument(
        "--setup",
        default="tutorial",
        choices=sorted(SETUPS),
        help="training set-up: tutorial (ours: annealed temperature, no noise, learning rate "
        "0.003; the default) or reference ([GS]'s: temperature 1, noise, learning rate 0.1, "
        "10 Sinkhorn sweeps)",
    )
    p.add_argument("--test-size", type=int, default=1000, help="test lists per interval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/sorting", help="output folder (default runs/sorting)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--fresh", action="store_true", help="retrain, overwriting stored models")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    for name in ("steps", "test_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.steps is None:
        args.steps = PAPER_STEPS if args.paper else QUICK_STEPS
    if any(n < 2 for n in args.n):
        p.error("--n must be at least 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)  # the tensors are small: threads cost more than they give
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        rows, facts = run(
            args.n,
            args.steps,
            args.seed,
            args.test_size,
            out,
            device=args.device,
            fresh=args.fresh,
            progress=not args.no_progress,
            setup=args.setup,
        )
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    write_summary(rows, out)
    command = "python -m tutorials.sorting" + "".join(f" {shlex.quote(a)}" for a in argv)
    table = markdown_table(rows, args.test_size, args.steps, facts, args.setup, command)
    (out / "table1.md").write_text(table)
    print(table)
    print(f"wrote {out / 'summary.csv'}, {out / 'table1.md'}")
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
