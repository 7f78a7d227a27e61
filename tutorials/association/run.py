"""The data-association study, stored point by point, then its table, CSV and figure.

A point is one case and seed: ``("small", K, seed)`` fits the guide to each of ``frames``
frames and compares its hard-rounded samples with the exact posterior (Hellinger distance,
with the sampling noise floor of as many exact draws); ``("large", K, seed)`` compares the
fitted guide's mode with the exact MAP and both with the truth. Each finished point is stored
at once (:class:`~tutorials.checkpoint.RecordStore`), so an interrupted run resumes.
"""

import csv
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pyro_permutations.infer import exact_posterior, hellinger_distance, sampling_noise_floor
from pyro_permutations.ops import all_partial_perms, partial_perm_to_matrix
from tutorials.association import model as A
from tutorials.checkpoint import RecordStore

RESULTS_FILE = "points.json"
KEY = ("kind", "k", "seed")

CONFIG = {
    "p_detect": 0.9,
    "clutter_rate": 0.05,  # false alarms per unit area
    "sigma": 0.5,
    "density": 0.5,  # objects per unit area
    "small_k": [3],
    "frames": 3,
    "seeds": 5,
    "large_k": [20, 50],
    "large_frames": 2,
    "large_seeds": 2,
    "steps": 500,
    "lr": 0.3,
    "samples": 2000,
    "tau_prior": 0.3,
    "temperature": 1.0,
    "init": "zero",
    "particles": 1,
    "gate": A.GATE,
}


def _points(config):
    small = [("small", k, s) for k in config["small_k"] for s in range(config["seeds"])]
    large = [("large", k, s) for k in config["large_k"] for s in range(config["large_seeds"])]
    return small + large


def _frames(config, kind, k, seed):
    frames = config["frames"] if kind == "small" else config["large_frames"]
    generator = torch.Generator().manual_seed(1000 * k + seed + (0 if kind == "small" else 10**6))
    return A.simulate_frames(
        k,
        frames,
        config["p_detect"],
        config["clutter_rate"],
        config["sigma"],
        config["density"],
        generator,
    )


def _agreement(a, b):
    return float((a == b).double().mean())


def _marginals(pmf, table, m):
    """``P(object k made detection j)`` ``(K, M)`` under a pmf over ``table``'s matchings."""
    return torch.einsum("c,ckj->kj", pmf, partial_perm_to_matrix(table, m, dtype=pmf.dtype))


def _fit(config, frame, seed):
    return A.fit_guide(
        frame,
        config["p_detect"],
        config["clutter_rate"],
        config["sigma"],
        config["steps"],
        config["lr"],
        seed,
        tau_prior=config["tau_prior"],
        temperature=config["temperature"],
        init=config["init"],
        particles=config["particles"],
    )


def rounded_pmf(fitted, table, samples, seed):
    """Empirical pmf over ``table``'s partial matchings of ``samples`` guide samples."""
    torch.manual_seed(seed)
    draws = fitted.sample((samples,))
    hit = (draws[:, None, :] == table[None]).all(-1)
    if not bool(hit.any(-1).all()):
        raise AssertionError("a sample is not in the table of partial matchings")
    index = hit.double().argmax(-1)
    return torch.bincount(index, minlength=table.shape[0]).double() / samples


def run_small(config, k, seed):
    args = (config["p_detect"], config["clutter_rate"], config["sigma"])
    frames, figure = [], None
    for t, frame in enumerate(_frames(config, "small", k, seed)):
        exact = exact_posterior(A.discrete_model, "a", frame, *args)
        start = time.perf_counter()
        fitted, loss = _fit(config, frame, seed)
        seconds = time.perf_counter() - start
        table = all_partial_perms(k, frame["detections"].shape[0])
        empirical = rounded_pmf(fitted, table, config["samples"], seed)
        generator = torch.Generator().manual_seed(seed)
        floor = sampling_noise_floor(exact, config["samples"], generator=generator)
        mode = table[exact.argmax()]
        frames.append(
            {
                "m": frame["detections"].shape[0],
                "hellinger": float(hellinger_distance(exact, empirical)),
                "floor": float(floor),
                "map_prob": float(exact.max()),
                "map_is_truth": bool((mode == frame["truth"]).all()),
                "seconds": seconds,
                "loss": loss,
            }
        )
        if t == 0:
            m = frame["detections"].shape[0]
            figure = {
                "objects": frame["objects"].tolist(),
                "detections": frame["detections"].tolist(),
                "truth": frame["truth"].tolist(),
                "exact": _marginals(exact, table, m).tolist(),
                "guide": _marginals(empirical, table, m).tolist(),
            }
    return {"kind": "small", "k": k, "seed": seed, "frames": frames, "figure": figure}


def run_large(config, k, seed):
    args = (config["p_detect"], config["clutter_rate"], config["sigma"])
    frames = []
    for frame in _frames(config, "large", k, seed):
        best = A.exact_map(frame, *args)
        start = time.perf_counter()
        fitted, loss = _fit(config, frame, seed)
        seconds = time.perf_counter() - start
        mode = fitted.mode
        frames.append(
            {
                "m": frame["detections"].shape[0],
                "guide_vs_map": _agreement(mode, best),
                "guide_vs_truth": _agreement(mode, frame["truth"]),
                "map_vs_truth": _agreement(best, frame["truth"]),
                "seconds": seconds,
                "loss": loss,
            }
        )
    return {"kind": "large", "k": k, "seed": seed, "frames": frames}


def run(config, out, fresh=False, progress=True):
    """Run (or resume) the study ``config`` into folder ``out``; returns the store."""
    if config["gate"] != A.GATE:
        raise ValueError(f"config['gate'] must be the model's GATE = {A.GATE}")
    store = RecordStore(Path(out) / RESULTS_FILE, config, KEY, fresh=fresh)
    todo = [p for p in _points(config) if store.get(kind=p[0], k=p[1], seed=p[2]) is None]
    for kind, k, seed in tqdm(todo, desc="association", disable=not progress):
        store.add((run_small if kind == "small" else run_large)(config, k, seed))
    return store


def _mean_se(values):
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def summarize(store):
    """One row per case: the per-seed means over frames, then their mean and standard error
    over seeds."""
    cases = {}
    for r in store.records.values():
        cases.setdefault((r["kind"], r["k"]), []).append(r)
    rows = []
    for (kind, k), records in sorted(cases.items(), key=lambda c: (c[0][0] != "small", c[0][1])):
        records = sorted(records, key=lambda r: r["seed"])

        def per_seed(field, records=records):
            return [sum(f[field] for f in r["frames"]) / len(r["frames"]) for r in records]

        row = {"kind": kind, "K": k, "seeds": len(records)}
        row["mean M"] = sum(per_seed("m")) / len(records)
        fields = ["hellinger", "floor", "map_prob"] if kind == "small" else []
        fields += ["guide_vs_map", "guide_vs_truth", "map_vs_truth"] if kind == "large" else []
        for field in fields + ["seconds"]:
            row[field], row[field + " se"] = _mean_se(per_seed(field))
        rows.append(row)
    return rows


COLUMNS = [
    ("hellinger", "H(guide, exact)"),
    ("floor", "noise floor"),
    ("map_prob", "exact MAP prob."),
    ("guide_vs_map", "guide mode = MAP"),
    ("guide_vs_truth", "guide mode = truth"),
    ("map_vs_truth", "MAP = truth"),
    ("seconds", "fit seconds"),
]


def _cell(row, field):
    if field not in row:
        return ""
    se = row[field + " se"]
    return f"{row[field]:.3f}" if math.isnan(se) else f"{row[field]:.3f} ± {se:.3f}"


def write_table(rows, out, command):
    lines = [
        f"Written by `{command}`. Mean ± standard error over seeds of the per-seed mean over "
        "frames; agreements are the fraction of objects given the same detection (or none).",
        "",
        "| case | K | seeds | mean M | " + " | ".join(name for _, name in COLUMNS) + " |",
        "|" + "---|" * (4 + len(COLUMNS)),
    ]
    for row in rows:
        cells = [row["kind"], str(row["K"]), str(row["seeds"]), f"{row['mean M']:.1f}"]
        cells += [_cell(row, field) for field, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    Path(out, "table.md").write_text("\n".join(lines) + "\n")
    fields = ["kind", "K", "seeds", "mean M"]
    fields += [f for name, _ in COLUMNS for f in (name, name + " se")]
    with open(Path(out, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_figure(store, out):
    """One frame (the first small case, seed 0, frame 0): objects, detections and the match
    probabilities as line widths, exact posterior and guide side by side; ``None`` if that
    point is not stored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = store.config
    if not config["small_k"]:
        return None
    record = store.get(kind="small", k=config["small_k"][0], seed=0)
    if record is None:
        return None
    data = record["figure"]
    objects, detections = torch.tensor(data["objects"]), torch.tensor(data["detections"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6), sharex=True, sharey=True)
    fig.suptitle("P(object k made detection j) as line width", fontsize=10)
    for ax, key, title in zip(axes, ("exact", "guide"), ("exact posterior", "guide's samples")):
        probs = torch.tensor(data[key])
        for i in range(probs.shape[0]):
            for j in range(probs.shape[1]):
                if probs[i, j] > 0.01:
                    xs = [objects[i, 0], detections[j, 0]]
                    ys = [objects[i, 1], detections[j, 1]]
                    ax.plot(xs, ys, color="tab:blue", lw=6 * float(probs[i, j]), alpha=0.7)
        ax.scatter(objects[:, 0], objects[:, 1], s=80, c="tab:red", label="objects", zorder=3)
        ax.scatter(detections[:, 0], detections[:, 1], s=60, marker="x", c="k", label="detections")
        for i, j in enumerate(data["truth"]):
            if j >= 0:
                xs, ys = [objects[i, 0], detections[j, 0]], [objects[i, 1], detections[j, 1]]
                ax.plot(xs, ys, color="k", lw=0.8, ls="--", label="truth" if i == 0 else None)
            miss = 1 - float(probs[i].sum())
            ax.annotate(f"miss {miss:.2f}", objects[i].tolist(), fontsize=8, xytext=(4, 4),
                        textcoords="offset points")  # fmt: skip
        ax.set_title(title)
        ax.set_aspect("equal")
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = Path(out, "frame.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
