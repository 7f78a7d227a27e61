"""Train (or load) one model per list length, evaluate it on every test interval in float32
and in float64, and write the summary and the table beside [GS] Table 1."""

import csv
import math
from pathlib import Path

import torch

from tutorials.checkpoint import load_checkpoint, save_checkpoint
from tutorials.sorting import experiment as E
from tutorials.sorting.paper import INTERVALS, NS, VINYALS, paper_value

COLUMNS = [
    "interval",
    "n",
    "dtype",
    "prop_any_wrong",
    "prop_wrong",
    "kendall_tau",
    "lists_with_ties",
    "train_seconds",
]
METRICS = ("prop_any_wrong", "prop_wrong", "kendall_tau", "lists_with_ties")

#: The arithmetic of the test lists and scores: float32 is the paper's (TensorFlow's default).
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def checkpoint_path(out, n):
    return Path(out) / f"model-n{n}.pt"


def model_config(n, steps, seed, setup="tutorial"):
    """The training settings of one N: REFERENCE with the changes of ``setup``
    (:data:`~tutorials.sorting.experiment.SETUPS`)."""
    if setup not in E.SETUPS:
        raise ValueError(f"setup must be one of {sorted(E.SETUPS)}, got {setup!r}")
    return {"n": n, "steps": steps, "seed": seed, **E.REFERENCE, **E.SETUPS[setup]}


def network_facts(model):
    """What the weights say (:func:`~tutorials.sorting.experiment.affine_pieces`): the kinks
    of g1 at ``x > 0``, the point beyond which the scores are affine, and whether the slopes
    increase on every piece of ``x > 0`` and of ``x < 0``."""
    kinks, _ = E.affine_pieces(model)
    positive = [k for k in kinks if k > 0]
    return {
        "kinks_positive": positive,
        "affine_beyond": positive[-1] if positive else 0.0,
        "sorts_positive": E.sorts_every_list_on(model, 0.0, math.inf),
        "sorts_negative": E.sorts_every_list_on(model, -math.inf, 0.0),
    }


def run(
    ns,
    steps,
    seed,
    test_size,
    out,
    device="cpu",
    fresh=False,
    progress=True,
    log=print,
    setup="tutorial",
):
    """Rows of ``summary.csv`` (dicts keyed by COLUMNS), one per ``(interval, n, dtype)``
    over Table 1's intervals and :data:`~tutorials.sorting.experiment.OTHER_INTERVALS`, and
    :func:`network_facts` by ``n``.

    ``steps`` is the number of training steps, or a dict giving it for each ``n``."""
    rows, facts = [], {}
    for n in ns:
        config = model_config(n, steps[n] if isinstance(steps, dict) else steps, seed, setup)
        path = checkpoint_path(out, n)
        model = E.make_model(config)
        if path.exists() and not fresh:
            seconds, loss = load_checkpoint(path, config, model)
            model.to(device)
            log(f"N={n}: loaded {path} (trained in {seconds:.1f} s, final loss {loss:.2e})")
        else:
            model, seconds, loss = E.train(config, device=device, progress=progress)
            save_checkpoint(path, config, model, seconds, loss, device)
            log(f"N={n}: trained in {seconds:.1f} s (final loss {loss:.2e}), saved {path}")
        facts[n] = network_facts(model)
        for label, low, high in INTERVALS + E.OTHER_INTERVALS:
            for name, dtype in DTYPES.items():
                metrics = E.evaluate(model, low, high, test_size, seed, device=device, dtype=dtype)
                rows.append(
                    {"interval": label, "n": n, "dtype": name, **metrics, "train_seconds": seconds}
                )
    return rows, facts


def write_summary(rows, out):
    path = Path(out) / "summary.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    **r,
                    **{k: f"{r[k]:.4f}" for k in METRICS},
                    "train_seconds": f"{r['train_seconds']:.2f}",
                }
            )
    return path


def _fmt(v):
    return "-" if v is None else f"{v:.2f}"


def _steps_text(steps, ns):
    if not isinstance(steps, dict):
        return f"{steps} steps"
    by_steps = {}
    for n in ns:
        by_steps.setdefault(steps[n], []).append(str(n))
    return "; ".join(f"{v} steps for N = {', '.join(k)}" for v, k in by_steps.items())


def setup_text(setup):
    """The training set-up in words, for the table's caption."""
    ref = E.REFERENCE
    if setup == "reference":
        return (
            f"[GS]'s reference set-up trained here: learning rate {ref['lr']:g}, temperature "
            f"{ref['temperature']:g}, Gumbel noise factor {ref['noise_factor']:g}, "
            f"{ref['samples']} samples per list, {ref['n_iters']} Sinkhorn sweeps, Glorot "
            "initialisation"
        )
    ch = E.CHANGES
    return (
        f"the tutorial's set-up, not the paper's: learning rate {ch['lr']:g}, no Gumbel noise, "
        f"temperature annealed from {ref['temperature']:g} to {ch['temperature_end']:g}, "
        f"Sinkhorn to marginal error {ch['tol']:g}, Glorot initialisation"
    )


def selection_text(setup):
    """What was chosen by looking at test results, for the table's caption."""
    if setup == "reference":
        return (
            "Selection: none. The set-up is [GS]'s reference one "
            "(`tutorials.sorting.experiment.REFERENCE`); the number of steps is ours (the "
            "paper does not give it); one model per N, the last step's."
        )
    return (
        "Selection: no model was chosen on the test lists (one model per N, the last step's), "
        "but the set-up (annealing, no noise, the learning rate, and Glorot's initialisation "
        "over torch's) was chosen after looking at Prop. any wrong on these intervals (one "
        "seed, float64; mostly N = 120 with 300 lists; `tutorials.sorting.experiment.CHANGES`): "
        "the set-up was selected on the test distributions."
    )


def differences_text(setup):
    """Which differences from [GS] Table 1 are set-up and which are method."""
    common = (
        "The network (g1 = Linear(1, 32) + ReLU, a linear head), the loss and the decoding are "
        "[GS]'s; "
    )
    if setup == "reference":
        return (
            common + "what differs from [GS] in this table is set-up: the training length, "
            "what the paper leaves unsaid (seed, framework), and, in the float64 block, the "
            "arithmetic."
        )
    return (
        common + "what differs from [GS] in this table is set-up, not method: the training "
        "set-up (ours, above) in every block, and the arithmetic in the float64 block. "
        "[GS]'s own set-up trained here: `python -m tutorials.sorting --setup reference`."
    )


def markdown_table(rows, test_size, steps, facts=None, setup="tutorial", command=None):
    """Prop. any wrong, ours beside [GS] Table 1 (in brackets), as markdown: one block of
    Table 1's intervals per arithmetic, the intervals [GS] does not test, and what the
    weights say (``facts``, from :func:`network_facts`)."""
    ns = list(dict.fromkeys(r["n"] for r in rows))
    by = {(r["interval"], r["n"], r["dtype"]): r for r in rows}
    header = ["| test | " + " | ".join(f"N={n}" for n in ns) + " |", "|---|" + "---|" * len(ns)]
    lines = [
        f"Prop. any wrong (share of test lists with a number out of place, positions compared "
        f"by index), {test_size} test lists per cell, Hungarian decoding. Trained on fresh "
        f"U(0,1) lists in float32 for {_steps_text(steps, ns)}, one seed, with "
        f"{setup_text(setup)}. Test lists drawn afresh from each interval (fixed seed), in "
        f"the arithmetic each block names. {selection_text(setup)} {differences_text(setup)} "
        "[GS] Table 1 in brackets.",
        "",
    ]

    def block(title, intervals, dtype, paper=True):
        out = [f"**{title}**", "", *header]
        for label, *_ in intervals:
            cells = []
            for n in ns:
                r = by.get((label, n, dtype))
                cell = "" if r is None else f"{r['prop_any_wrong']:.2f}"
                if paper and paper_value(label, n) is not None:
                    cell += f" [{paper_value(label, n):.2f}]"
                cells.append(cell)
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        return out

    lines += block(
        "float32: test lists drawn and scored in float32 (the paper's arithmetic)",
        INTERVALS,
        "float32",
    )
    vinyals = [f"[{_fmt(VINYALS[NS.index(n)])}]" if n in NS else "" for n in ns]
    lines.append("| U(0,1) Vinyals et al. 2015 (paper only) | " + " | ".join(vinyals) + " |")
    ties = [by.get(("U(1000,1001)", n, "float32")) for n in ns]
    lines.append(
        "| float32 U(1000,1001) lists holding two equal numbers | "
        + " | ".join("" if r is None else f"{r['lists_with_ties']:.2f}" for r in ties)
        + " |"
    )
    lines.append("")
    lines += block(
        "float64: the same models, test lists drawn and scored in float64 (not the paper's "
        "arithmetic)",
        INTERVALS,
        "float64",
    )
    lines.append("")
    other = E.OTHER_INTERVALS
    out = ["**Not in [GS]: lists with negative numbers, float32 / float64**", "", *header]
    for label, *_ in other:
        cells = []
        for n in ns:
            a, b = by.get((label, n, "float32")), by.get((label, n, "float64"))
            cells.append(
                ""
                if a is None or b is None
                else f"{a['prop_any_wrong']:.2f} / {b['prop_any_wrong']:.2f}"
            )
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += out
    if facts:
        lines += [
            "",
            "**The trained networks, from their weights** "
            "(`tutorials.sorting.experiment.affine_pieces`)",
            "",
            "| | " + " | ".join(f"N={n}" for n in ns) + " |",
            header[1],
            "| kinks of g1 at x > 0 | "
            + " | ".join(
                ", ".join(f"{k:.3g}" for k in facts[n]["kinks_positive"]) or "none" for n in ns
            )
            + " |",
            "| affine for x > | "
            + " | ".join(f"{facts[n]['affine_beyond']:.3g}" for n in ns)
            + " |",
            "| slopes increase on every piece of x > 0 | "
            + " | ".join("yes" if facts[n]["sorts_positive"] else "no" for n in ns)
            + " |",
            "| slopes increase on every piece of x < 0 | "
            + " | ".join("yes" if facts[n]["sorts_negative"] else "no" for n in ns)
            + " |",
        ]
    seconds = {n: by[(INTERVALS[0][0], n, "float32")]["train_seconds"] for n in ns}
    lines.append("| train seconds | " + " | ".join(f"{seconds[n]:.1f}" for n in ns) + " |")
    table1 = {label for label, *_ in INTERVALS}
    for name in DTYPES:
        taus = [
            min(
                r["kendall_tau"]
                for r in rows
                if r["n"] == n and r["dtype"] == name and r["interval"] in table1
            )
            for n in ns
        ]
        lines.append(
            f"| worst Kendall tau on Table 1's intervals, {name} | "
            + " | ".join(f"{t:.3f}" for t in taus)
            + " |"
        )
    lines += [
        "",
        "Where the slopes increase on every piece of x > 0, the matching operator sorts every "
        "list of distinct positive numbers exactly in exact arithmetic, at any shift or scale "
        "(the rearrangement inequality): then every positive interval above measures the same "
        "thing, and what separates them is the arithmetic (close neighbours and equal numbers "
        "in float32). Lists with negative numbers are where such a network is not right for "
        "free.",
    ]
    if command is not None:
        lines += ["", f"Command: `{command}`."]
    return "\n".join(lines) + "\n"
