"""[BP] Figure 7 from the stored results, as PNGs: accuracy against the mean number of candidates
per neuron (J = 1 and J = 5 side by side), against the fraction of known neurons (one panel per
tolerance), and against wall-clock time (one panel per J). Error bars: one standard error over
seeds."""

from pathlib import Path

from matplotlib.figure import Figure

MARKERS = {
    "start": "x",
    "rounding": "o",
    "gumbel-sinkhorn": "s",
    "naive": "^",
    "mcmc": "D",
    "mcmc-collapsed": "P",
    "map": "v",
}


def _errorbars(ax, rows, x_field, methods):
    for m in methods:
        pts = sorted((r[x_field], r["accuracy"], r["se"]) for r in rows if r["method"] == m)
        if not pts:
            continue
        xs, ys, es = zip(*pts)
        es = [0.0 if e != e else e for e in es]  # one seed: no error bar
        style = "--" if m == "start" else "-"
        ax.errorbar(xs, ys, yerr=es, marker=MARKERS.get(m, "o"), ls=style, ms=4, capsize=2, label=m)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def save_figures(rows, trows, config, out):
    """Write the three PNGs into ``out``; returns their paths."""
    out = Path(out)
    methods = ["start"] + list(config["methods"])
    paths = []

    fig = Figure(figsize=(4.2 * len(config["worms"]), 3.6))
    for i, worms in enumerate(config["worms"]):
        ax = fig.add_subplot(1, len(config["worms"]), i + 1)
        sel = [r for r in rows if r["study"] == "tolerance" and r["worms"] == worms]
        _errorbars(ax, sel, "candidates", methods)
        ax.set_xscale("log")
        ax.set_xlabel("mean candidates per unknown neuron")
        ax.set_ylabel("accuracy")
        ax.set_title(f"J = {worms}, known {config['known']:g}")
        if i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(out / "accuracy_vs_candidates.png")
    fig.savefig(paths[-1], dpi=120)

    tols = config["known_tolerances"]
    fig = Figure(figsize=(4.2 * len(tols), 3.6))
    for i, nu in enumerate(tols):
        ax = fig.add_subplot(1, len(tols), i + 1)
        sel = [r for r in rows if r["study"] == "known" and r["nu"] == nu]
        _errorbars(ax, sel, "known", methods)
        ax.set_xlabel("fraction of neurons known")
        ax.set_ylabel("accuracy")
        cand = [r["candidates"] for r in sel]
        extra = f" (~{sum(cand) / len(cand):.0f} cand.)" if cand else ""
        ax.set_title(f"nu = {nu:g}, J = {config['known_worms']}{extra}")
        if i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(out / "accuracy_vs_known.png")
    fig.savefig(paths[-1], dpi=120)

    fig = Figure(figsize=(4.2 * len(config["worms"]), 3.6))
    for i, worms in enumerate(config["worms"]):
        ax = fig.add_subplot(1, len(config["worms"]), i + 1)
        sel = [r for r in trows if r["worms"] == worms]
        _errorbars(ax, sel, "seconds", config["methods"])
        ax.set_xlabel("wall-clock seconds after the start")
        ax.set_ylabel("accuracy (mean over the tolerance sweep)")
        ax.set_title(f"J = {worms}")
        if i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    paths.append(out / "accuracy_vs_time.png")
    fig.savefig(paths[-1], dpi=120)
    return paths


def save_elbo_figure(store, out):
    """The ELBO (one-sample estimate, as Adam saw it) against wall clock of each VI fit at the
    tolerance sweep's first point of seed 0, one panel per J; returns the path, or None if no
    such fit is stored."""
    config = store.config
    nu, known = config["tolerances"][0], config["known"]
    fig = Figure(figsize=(4.2 * len(config["worms"]), 3.6))
    drawn = False
    for i, worms in enumerate(config["worms"]):
        ax = fig.add_subplot(1, len(config["worms"]), i + 1)
        for method in config["methods"]:
            r = store.get(worms=worms, nu=nu, known=known, seed=0, method=method)
            if r is None or not r["trace"] or r["trace"][0][2] is None:
                continue
            ax.plot([t[0] for t in r["trace"]], [t[2] for t in r["trace"]], label=method)
            drawn = True
        ax.set_xlabel("wall-clock seconds after the start")
        ax.set_ylabel("ELBO")
        ax.set_title(f"J = {worms}, nu = {nu:g}, seed 0")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize="small")
    if not drawn:
        return None
    fig.tight_layout()
    path = Path(out) / "elbo_vs_time.png"
    fig.savefig(path, dpi=120)
    return path


def save_spread_figure(srows, config, out):
    """The posterior's spread (solid) and its mass on the true labels (dashed) against wall
    clock, means over the tolerance sweep's fits (:func:`~tutorials.celegans.run.
    spread_rows`), one panel per J; returns the path, or None if no fit recorded a spread."""
    if not srows:
        return None
    fig = Figure(figsize=(4.2 * len(config["worms"]), 3.6))
    for i, worms in enumerate(config["worms"]):
        ax = fig.add_subplot(1, len(config["worms"]), i + 1)
        for k, method in enumerate(config["methods"]):
            pts = sorted(
                (r["seconds"], r["spread"], r["truth_mass"])
                for r in srows
                if r["worms"] == worms and r["method"] == method
            )
            if not pts:
                continue
            ts, sp, tm = zip(*pts)
            colour = f"C{k}"
            marker = MARKERS.get(method, "o")
            ax.plot(ts, sp, marker=marker, ms=4, color=colour, label=f"{method} spread")
            ax.plot(ts, tm, marker=marker, ms=4, ls="--", color=colour, label=f"{method} truth")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("wall-clock seconds after the start")
        ax.set_ylabel("spread (solid), truth mass (dashed)")
        ax.set_title(f"J = {worms}")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize="x-small")
    fig.tight_layout()
    path = Path(out) / "spread_vs_time.png"
    fig.savefig(path, dpi=120)
    return path
