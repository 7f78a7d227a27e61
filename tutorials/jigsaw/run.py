"""Train (or load) one model per grid, evaluate it on the held-out digits, and write the
summary and the table beside [GS] Table 2."""

import csv
from pathlib import Path

from tutorials.checkpoint import load_checkpoint, save_checkpoint
from tutorials.jigsaw import experiment as E
from tutorials.jigsaw.paper import LABELS, paper_value

COLUMNS = ["grid", "kendall_tau", "prop_wrong", "prop_any_wrong", "l1", "l2", "train_seconds"]
METRICS = COLUMNS[1:-1]


def checkpoint_path(out, grid, prefix="model"):
    return Path(out) / f"{prefix}-{grid}x{grid}.pt"


def model_config(grid, steps, seed, data, fit="resize", piece_net="cnn"):
    """The training set-up of one grid: REFERENCE, the fit, and the changes that go with the
    piece network (none for the default ``"cnn"``)."""
    if piece_net not in E.PIECE_NET_CHANGES:
        raise ValueError(f"piece_net must be one of {E.PIECE_NETS}, got {piece_net!r}")
    return {
        "grid": grid,
        "steps": steps,
        "seed": seed,
        "data": data,
        **E.REFERENCE,
        "fit": fit,
        **E.PIECE_NET_CHANGES[piece_net],
    }


def load_or_train(
    config,
    train_images,
    out,
    device="cpu",
    fresh=False,
    progress=True,
    log=print,
    train=None,
    prefix="model",
):
    """The trained model of ``config``: loaded from ``out`` if stored there, else trained by
    ``train`` (default :func:`~tutorials.jigsaw.experiment.train`, looked up at call time, or
    one of its signature) and stored (atomically) as ``<prefix>-<g>x<g>.pt``.
    :returns: ``(model, train_seconds, loaded)``."""
    train = E.train if train is None else train
    grid = config["grid"]
    path = checkpoint_path(out, grid, prefix)
    model = E.make_model(config)
    if path.exists() and not fresh:
        seconds, loss = load_checkpoint(path, config, model)
        model.to(device)
        log(f"{grid}x{grid}: loaded {path} (trained in {seconds:.1f} s, final loss {loss:.2e})")
        return model, seconds, True
    model, seconds, loss = train(config, train_images, device=device, progress=progress)
    save_checkpoint(path, config, model, seconds, loss, device)
    log(f"{grid}x{grid}: trained in {seconds:.1f} s (final loss {loss:.2e}), saved {path}")
    return model, seconds, False


def run(
    grids,
    steps,
    seed,
    data,
    out,
    fit="resize",
    device="cpu",
    fresh=False,
    progress=True,
    log=print,
    piece_net="cnn",
    split="test",
):
    """Rows of ``summary.csv`` (dicts keyed by COLUMNS plus ``kendall_tau_se``,
    ``prop_wrong_pieces``, ``tie_limited_tau``, ``tie_limited_prop_wrong`` and ``loaded``, true
    when the model came from a checkpoint) and the trained models, by grid.

    The models are scored on ``data``'s test digits, or with ``split="validation"`` on its
    validation digits (:func:`~tutorials.jigsaw.data.hold_out_validation`), leaving the test
    digits untouched."""
    images = held_out_images(data, split)
    rows, models = [], {}
    for grid in grids:
        config = model_config(grid, steps, seed, data.source, fit, piece_net)
        model, seconds, loaded = load_or_train(
            config, data.train_images, out, device=device, fresh=fresh, progress=progress, log=log
        )
        metrics = E.evaluate(model, images, fit, seed, device=device)
        bound = E.tie_limited_kendall_tau(images, grid, fit, seed)
        wrong_bound = E.tie_limited_prop_wrong(images, grid, fit, seed)
        rows.append(
            {
                "grid": f"{grid}x{grid}",
                **metrics,
                "train_seconds": seconds,
                "tie_limited_tau": bound,
                "tie_limited_prop_wrong": wrong_bound,
                "loaded": loaded,
            }
        )
        models[grid] = model
    return rows, models


def held_out_images(data, split):
    """The digits models are scored on: ``data.test_images`` (``split="test"``) or
    ``data.val_images`` (``"validation"``, which needs a validation split)."""
    if split == "test":
        return data.test_images
    if split == "validation":
        if data.val_images is None:
            raise ValueError("split='validation' needs data with a validation split")
        return data.val_images
    raise ValueError(f"split must be 'test' or 'validation', got {split!r}")


def split_description(split, size, n_train):
    """The caption words for the digits a table scores, and the digits trained on."""
    if split == "validation":
        return (
            f"{size} validation digits per grid (taken at random out of the training digits "
            f"and not trained on; models trained on the other {n_train})"
        )
    return f"{size} held-out test digits per grid (models trained on {n_train} digits)"


#: Where the variants are chosen on validation digits instead of test digits.
SELECTION = "tutorials/jigsaw/results/selection-mnist/selection.md"


def provenance_text(piece_net="cnn", split="test"):
    """The caption words for what is [GS]'s method, what is our set-up, and what was selected
    on which digits."""
    ref = E.REFERENCE
    lr = E.PIECE_NET_CHANGES.get(piece_net, {}).get("lr", ref["lr"])
    if piece_net == "cnn":
        net = "the piece network described for [GS] (cnn)"
    else:
        net = f"a piece network of ours ({piece_net}, not in [GS]: a method difference)"
    text = (
        f"Method: [GS]'s Sinkhorn network, Gumbel-Sinkhorn training and Hungarian decoding, "
        f"with {net}. Set-up ours ([GS] gives no jigsaw hyper-parameters): Adam at learning "
        f"rate {lr:g}, batch {ref['batch']}, temperature {ref['temperature']:g}, noise factor "
        f"{ref['noise_factor']:g}, {ref['samples']} samples, {ref['n_iters']} Sinkhorn sweeps, "
        "one seed. "
    )
    if split == "validation":
        return text + (
            "Selection: none; these validation scores are what "
            "`python -m tutorials.jigsaw.select` chooses variants on, and the test digits were "
            "not used."
        )
    return text + (
        "Selection: one model per grid (the last step's), but the piece network and the number "
        "of steps were compared with other variants on test digits; the choice made on "
        f"validation digits instead is in `{SELECTION}`."
    )


def write_csv(rows, path, columns, metrics):
    """Write ``rows`` (dicts) to ``path`` with the given ``columns``: ``metrics`` to four
    decimals and ``train_seconds`` to two. :returns: ``path``."""
    with Path(path).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    **r,
                    **{k: f"{r[k]:.4f}" for k in metrics},
                    "train_seconds": f"{r['train_seconds']:.2f}",
                }
            )
    return path


def write_summary(rows, out):
    return write_csv(rows, Path(out) / "summary.csv", COLUMNS, METRICS)


#: Rows of the table after the paper's metrics: (label, row key, decimals).
EXTRA_ROWS = (
    ("Prop. wrong, identical pieces counted right", "prop_wrong_pieces", 3),
    ("Kendall tau standard error", "kendall_tau_se", 3),
    ("Kendall tau bound (identical pieces swapped)", "tie_limited_tau", 3),
    ("Prop. wrong bound (identical pieces swapped)", "tie_limited_prop_wrong", 3),
    ("train seconds", "train_seconds", 1),
)


def markdown_table(
    rows,
    test_size,
    steps,
    fit,
    command=None,
    wall_seconds=None,
    piece_net="cnn",
    split="test",
    n_train=None,
    caption=None,
):
    """Our metrics beside [GS] Table 2 (in brackets), as markdown. The caption says which
    digits were scored (``split``) and, given ``n_train``, how many were trained on;
    ``caption`` replaces it."""
    grids = [r["grid"] for r in rows]
    net = "" if piece_net == "cnn" else f", piece network {piece_net!r}"
    if n_train is None:
        digits = f"{test_size} held-out digits per grid"
    else:
        digits = split_description(split, test_size, n_train)
    if caption is None:
        caption = (
            f"MNIST jigsaw puzzles: {digits}, one scramble each, {steps} training steps per "
            f"grid, images fitted to the grid by {fit}{net}, float32 (the paper's arithmetic); "
            f"[GS] Table 2 in brackets. {provenance_text(piece_net, split)}"
        )
    lines = [
        caption,
        "",
        "| metric | " + " | ".join(grids) + " |",
        "|---|" + "---|" * len(grids),
    ]
    for metric in METRICS:
        cells = []
        for r in rows:
            paper = paper_value(metric, int(r["grid"].split("x")[0]))
            cells.append(f"{r[metric]:.3f}" + ("" if paper is None else f" [{paper:.2f}]"))
        lines.append(f"| {LABELS[metric]} | " + " | ".join(cells) + " |")
    for label, key, digits in EXTRA_ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:.{digits}f}" for r in rows) + " |")
    lines += [
        "",
        "l1 and l2 are the mean absolute and squared pixel errors of the hard reconstruction "
        "(pixels in [0, 1]); the paper does not state its scale. The bound rows are the Kendall "
        "tau (one draw) and the expected Prop. wrong of a solver that is right except among "
        "pieces identical pixel for pixel (mostly blank), which it places at random. The "
        "standard error is that of the mean Kendall tau over the test puzzles (std / "
        "sqrt(number of puzzles)). 'Prop. wrong, identical pieces counted right' counts a "
        "position as wrong only when the piece put there differs from the true one pixel for "
        "pixel.",
    ]
    if command is not None:
        loaded = sum(bool(r.get("loaded")) for r in rows)
        if wall_seconds is None:
            wall = ""
        elif loaded:
            wall = (
                f"; wall time {wall_seconds:.0f} s (all grids; {loaded} of {len(rows)} models "
                "loaded from checkpoints, whose train seconds above are from their training)"
            )
        else:
            wall = f"; wall time {wall_seconds:.0f} s (all grids, training and evaluation)"
        lines += ["", f"Command: `{command}`{wall}."]
    return "\n".join(lines) + "\n"
