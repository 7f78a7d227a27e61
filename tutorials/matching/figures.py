"""[BP] Figure 2 from the stored results: (a) data, (b) pmfs of one repetition, (c) densities
of the distances over repetitions. Each is saved as a PNG beside the results."""

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import gaussian_kde

from pyro_permutations.infer import plot_pmf_comparison
from tutorials.matching import experiment as E

#: Methods drawn in Figure 2(b), as in [BP]: the relaxations and three Mallows baselines.
PMF_METHODS = (
    "stick-breaking",
    "rounding",
    "gumbel-sinkhorn",
    "mallows-0.1",
    "mallows-1",
    "mallows-5",
)


def figure_data(config):
    """(a): the centres and the shuffled noisy observations of repetition 0 at each sigma."""
    sigmas = config["sigmas"]
    fig = Figure(figsize=(3.2 * len(sigmas), 3.2))
    for i, sigma in enumerate(sigmas):
        ax = fig.add_subplot(1, len(sigmas), i + 1)
        p = E.make_problem(sigma, [0], config["seed"], i)
        c, y, truth = p.centers[0], p.obs[0], p.truth[0]
        for n in range(E.N):
            ax.plot(*zip(c[truth[n]].tolist(), y[n].tolist()), color="0.7", lw=0.8, zorder=1)
        ax.scatter(c[:, 0], c[:, 1], s=60, marker="o", label="centres", zorder=2)
        ax.scatter(y[:, 0], y[:, 1], s=40, marker="x", label="observations", zorder=3)
        ax.set_title(f"sigma = {sigma:g}")
        ax.set_aspect("equal", adjustable="datalim")
        if i == 0:
            ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def figure_pmfs(store, top_k=8):
    """(b): true vs inferred pmfs of repetition 0 at each sigma."""
    sigmas = store.config["sigmas"]
    methods = [m for m in PMF_METHODS if m in store.config["methods"]]
    fig = Figure(figsize=(2.2 + 0.9 * (top_k + 1) * (1 + len(methods)) / 3, 3.0 * len(sigmas)))
    for i, sigma in enumerate(sigmas):
        truth = store.examples.get(f"{sigma}/truth")
        if truth is None:
            continue
        pmfs = {
            m: torch.tensor(store.examples[f"{sigma}/{m}"])
            for m in methods
            if f"{sigma}/{m}" in store.examples
        }
        ax = fig.add_subplot(len(sigmas), 1, i + 1)
        plot_pmf_comparison(
            torch.tensor(truth), pmfs, top_k=top_k, ax=ax, title=f"sigma = {sigma:g}, repetition 0"
        )
    fig.tight_layout()
    return fig


def figure_densities(store):
    """(c): kernel density of the per-repetition distances, per method and sigma."""
    sigmas = store.config["sigmas"]
    fig = Figure(figsize=(3.4 * len(sigmas), 3.0))
    grid = np.linspace(0, 1, 201)
    for i, sigma in enumerate(sigmas):
        ax = fig.add_subplot(1, len(sigmas), i + 1)
        for method in store.config["methods"]:
            d = np.array(
                [
                    r["distance"]
                    for r in store.records
                    if r["method"] == method and r["sigma"] == sigma
                ]
            )
            if d.size == 0:
                continue
            if d.size > 2 and d.std() > 1e-6:
                ax.plot(grid, gaussian_kde(d)(grid), label=method)
            else:
                ax.axvline(d.mean(), label=method, lw=1)
        ax.set_title(f"sigma = {sigma:g}")
        ax.set_xlabel("Hellinger distance to the exact posterior")
        if i == 0:
            ax.set_ylabel("density over repetitions")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def save_figures(store, out):
    """Write ``figure2a_data.png``, ``figure2b_pmfs.png``, ``figure2c_densities.png``."""
    out = Path(out)
    paths = []
    for name, fig in (
        ("figure2a_data.png", figure_data(store.config)),
        ("figure2b_pmfs.png", figure_pmfs(store)),
        ("figure2c_densities.png", figure_densities(store)),
    ):
        path = out / name
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
