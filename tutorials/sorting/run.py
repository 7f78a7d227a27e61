"""Train (or load) one model per list length, evaluate it on every test interval, and write
the summary and the table beside [GS] Table 1."""

import csv
from pathlib import Path

from tutorials.checkpoint import load_checkpoint, save_checkpoint
from tutorials.sorting import experiment as E
from tutorials.sorting.paper import INTERVALS, NS, VINYALS, paper_value

COLUMNS = ["interval", "n", "prop_any_wrong", "prop_wrong", "kendall_tau", "train_seconds"]


def checkpoint_path(out, n):
    return Path(out) / f"model-n{n}.pt"


def model_config(n, steps, seed):
    config = {"n": n, "steps": steps, "seed": seed, **E.REFERENCE, **E.CHANGES}
    return config


def run(ns, steps, seed, test_size, out, device="cpu", fresh=False, progress=True, log=print):
    """Rows of ``summary.csv`` (dicts keyed by COLUMNS), one per ``(interval, n)``.

    ``steps`` is the number of training steps, or a dict giving it for each ``n``."""
    rows = []
    for n in ns:
        config = model_config(n, steps[n] if isinstance(steps, dict) else steps, seed)
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
        for label, low, high in INTERVALS:
            metrics = E.evaluate(model, low, high, test_size, seed, device=device)
            rows.append({"interval": label, "n": n, **metrics, "train_seconds": seconds})
    return rows


def write_summary(rows, out):
    path = Path(out) / "summary.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    **r,
                    **{k: f"{r[k]:.4f}" for k in ("prop_any_wrong", "prop_wrong", "kendall_tau")},
                    "train_seconds": f"{r['train_seconds']:.2f}",
                }
            )
    return path


def _fmt(v):
    return "-" if v is None else f"{v:.2f}"


def markdown_table(rows, test_size, steps):
    """Prop. any wrong, ours beside [GS] Table 1 (in brackets), as markdown."""
    ns = list(dict.fromkeys(r["n"] for r in rows))
    by = {(r["interval"], r["n"]): r for r in rows}
    if isinstance(steps, dict):
        by_steps = {}
        for n in ns:
            by_steps.setdefault(steps[n], []).append(str(n))
        steps_text = "; ".join(f"{v} steps for N = {', '.join(k)}" for v, k in by_steps.items())
    else:
        steps_text = f"{steps} steps"
    lines = [
        f"Prop. any wrong on {test_size} test lists per cell (train U(0,1), {steps_text}, "
        f"learning rate {E.CHANGES['lr']}, Glorot initialisation, no Gumbel noise, temperature "
        f"annealed from {E.REFERENCE['temperature']:g} to {E.CHANGES['temperature_end']:g}; "
        "test lists and scores in float64); [GS] Table 1 in brackets.",
        "",
        "| test | " + " | ".join(f"N={n}" for n in ns) + " |",
        "|---|" + "---|" * len(ns),
    ]
    for label, *_ in INTERVALS:
        cells = []
        for n in ns:
            r = by.get((label, n))
            cell = "" if r is None else f"{r['prop_any_wrong']:.2f}"
            if paper_value(label, n) is not None:
                cell += f" [{paper_value(label, n):.2f}]"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    vinyals = [f"[{_fmt(VINYALS[NS.index(n)])}]" if n in NS else "" for n in ns]
    lines.append("| U(0,1) Vinyals et al. 2015 (paper only) | " + " | ".join(vinyals) + " |")
    seconds = {n: by[(INTERVALS[0][0], n)]["train_seconds"] for n in ns}
    lines.append("| train seconds | " + " | ".join(f"{seconds[n]:.1f}" for n in ns) + " |")
    taus = [min(r["kendall_tau"] for r in rows if r["n"] == n) for n in ns]
    lines.append("| worst Kendall tau | " + " | ".join(f"{t:.3f}" for t in taus) + " |")
    return "\n".join(lines) + "\n"
