"""A supervised reference for the jigsaw table: the same network, told the answer.

    python -m tutorials.jigsaw.supervised --grid 2 3 4 --steps 3000

The Sinkhorn network learns where pieces go only through the reconstruction error of
``P^T x~``. Here the same network (:func:`tutorials.jigsaw.experiment.make_model`) is trained
instead by cross-entropy between each piece's row of scores and its true position, which
[GS] never sees, and is then decoded and scored exactly as in the main tutorial (noiseless
scores, matching operator, the same held-out puzzles). It shows how much the network can get
out of these digits when it is given the positions (with ``cnn`` or ``deep``, a network that
scores each piece on its own): if it does no better than the Sinkhorn network, the
reconstruction loss is not what holds the results back.

``--piece-net deep`` swaps in a larger piece network (``experiment.PIECE_NETS``), to see
whether a stronger g1 than the one described for [GS] would help; ``deep-context`` also shows
each piece the mean features of its puzzle, so that it is no longer scored on its own.

Writes ``supervised.csv`` (columns ``grid,kendall_tau,prop_wrong,prop_any_wrong,
kendall_tau_se,piece_net,steps,train_seconds``) to ``--out``, rewritten as each grid finishes.
Trained models are kept there too (``supervised-<g>x<g>.pt``): a rerun with the same settings
evaluates them again instead of retraining, so an interrupted run loses at most the grid in
training.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tutorials.checkpoint import CheckpointError
from tutorials.jigsaw import experiment as E
from tutorials.jigsaw.data import MnistError, load_mnist
from tutorials.jigsaw.run import load_or_train, model_config, write_csv

COLUMNS = [
    "grid",
    "kendall_tau",
    "prop_wrong",
    "prop_any_wrong",
    "kendall_tau_se",
    "piece_net",
    "steps",
    "train_seconds",
]


def position_loss(model, scrambled, perm):
    """Mean cross-entropy between the scores of each scrambled piece and its true position
    ``perm[b, i]`` (the library convention: piece ``i`` goes to position ``perm[b, i]``)."""
    scores = model.scores(scrambled)  # (B, n, n): row i scores the positions of piece i
    return F.cross_entropy(scores.flatten(0, 1), perm.flatten())


def train(config, train_images, device="cpu", progress=True):
    """Train ``E.make_model(config)`` on the true positions of random training puzzles.

    :returns: ``(model, seconds, final_loss)``.
    """
    torch.manual_seed(config["seed"] * 1000 + config["grid"])
    model = E.make_model(config).to(device)
    model.train()
    images = E.fit_to_grid(train_images, config["grid"], config["fit"]).to(device)
    optim = torch.optim.Adam(model.parameters(), lr=config["lr"])
    bar = tqdm(range(config["steps"]), desc=f"supervised {config['grid']}", disable=not progress)
    start = time.perf_counter()
    loss = torch.tensor(float("nan"))
    for _ in bar:
        index = torch.randint(len(images), (config["batch"],))
        scrambled, _, perm = E.make_puzzles(images[index.to(device)], config["grid"])
        loss = position_loss(model, scrambled, perm.to(device))
        optim.zero_grad()
        loss.backward()
        optim.step()
    final = loss.item()
    seconds = time.perf_counter() - start
    bar.close()
    return model, seconds, final


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.jigsaw.supervised",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--grid", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument(
        "--piece-net",
        default="cnn",
        choices=E.PIECE_NETS,
        help="cnn: the tutorial's network (default); deep: a larger one; deep-context: deep "
        "with the puzzle's mean features (see PIECE_NETS)",
    )
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: the tutorial's for it)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mnist-dir", default=None, help="folder holding the standard MNIST files")
    p.add_argument("--out", default="runs/jigsaw-supervised")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="retrain, overwriting stored models")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.lr is not None and not args.lr > 0:
        p.error("--lr must be positive")
    if args.steps < 1 or args.threads < 1:
        p.error("--steps and --threads must be at least 1")
    if any(not 2 <= g <= E.MAX_GRID for g in args.grid):
        p.error(f"--grid must be between 2 and {E.MAX_GRID}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here; use --device cpu")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    try:
        data = load_mnist(args.mnist_dir)
    except MnistError as e:
        raise SystemExit(f"error: {e}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    path = out / "supervised.csv"
    for grid in args.grid:
        config = model_config(grid, args.steps, args.seed, data.source, piece_net=args.piece_net)
        if args.lr is not None:
            config["lr"] = args.lr
        config["objective"] = "supervised"  # never taken for a model of the main tutorial
        try:
            model, seconds, _ = load_or_train(
                config,
                data.train_images,
                out,
                device=args.device,
                fresh=args.fresh,
                progress=not args.no_progress,
                train=train,
                prefix="supervised",
            )
        except CheckpointError as e:
            raise SystemExit(f"error: {e}") from None
        metrics = E.evaluate(model, data.test_images, config["fit"], args.seed, device=args.device)
        row = {
            "grid": f"{grid}x{grid}",
            "piece_net": args.piece_net,
            "steps": args.steps,
            "train_seconds": seconds,
            **metrics,
        }
        rows.append(row)
        print(
            f"{grid}x{grid}: Kendall tau {metrics['kendall_tau']:.3f}, Prop. wrong "
            f"{metrics['prop_wrong']:.3f}, Prop. any wrong {metrics['prop_any_wrong']:.3f} "
            f"({seconds:.1f} s)"
        )
        write_csv(rows, path, COLUMNS, COLUMNS[1:5])  # the grids so far, should the run stop
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
