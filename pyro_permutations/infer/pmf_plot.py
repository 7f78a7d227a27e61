"""[BP] Figure 2(b): a true pmf over permutations beside approximations of it."""

import torch

from pyro_permutations.infer.pmf_distances import hellinger_distance
from pyro_permutations.ops._validation import is_int

__all__ = ["plot_pmf_comparison"]


def plot_pmf_comparison(
    true_pmf,
    pmfs,
    *,
    top_k=10,
    distance=hellinger_distance,
    distance_label="H",
    ax=None,
    title=None,
):
    """Bar chart of the most probable permutations under ``true_pmf`` and each approximation.

    Permutations are sorted by true probability; the ``top_k`` most probable are shown one bar
    group each (truth first, then every method), and one last group holds the mass of all the
    rest. Each method's legend entry gives its distance to the truth. This is the layout of
    [BP] Figure 2(b).

    :param torch.Tensor true_pmf: ``(K,)`` probabilities (e.g. from ``exact_posterior``).
    :param dict pmfs: method name -> ``(K,)`` probabilities aligned with ``true_pmf``.
    :param int top_k: permutations shown individually.
    :param callable distance: ``distance(p, q)`` shown in the legend (default Hellinger).
    :param str distance_label: its symbol in the legend.
    :param ax: a matplotlib Axes to draw on; a new figure is made if ``None``.
    :returns: the matplotlib Figure (saving it is the caller's choice).

    Example::

        >>> import torch
        >>> truth = torch.tensor([0.6, 0.3, 0.1])
        >>> fig = plot_pmf_comparison(truth, {"approx": torch.tensor([0.5, 0.4, 0.1])}, top_k=2)
        >>> len(fig.axes[0].patches)  # 2 methods x (2 top + 1 rest) bars
        6
    """
    from matplotlib.figure import Figure

    if not is_int(top_k) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    top_k = int(top_k)
    if ax is None:
        # A bare Figure (no pyplot state): nothing to close, works without a display.
        fig = Figure(figsize=(1.0 + 0.6 * (top_k + 1) * (1 + len(pmfs)) / 2, 3.2))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    true_pmf = torch.as_tensor(true_pmf, dtype=torch.float64).detach().cpu()
    order = torch.argsort(true_pmf, descending=True)
    top_k = min(top_k, true_pmf.numel())
    top, rest = order[:top_k], order[top_k:]

    def bars(pmf):
        pmf = torch.as_tensor(pmf, dtype=torch.float64).detach().cpu()
        if pmf.shape != true_pmf.shape:
            raise ValueError(
                f"every pmf must have the shape of true_pmf {tuple(true_pmf.shape)}, "
                f"got {tuple(pmf.shape)}"
            )
        return torch.cat([pmf[top], pmf[rest].sum().reshape(1)]).numpy()

    series = [("truth", bars(true_pmf))]
    for name, pmf in pmfs.items():
        heights = bars(pmf)
        d = float(distance(true_pmf, torch.as_tensor(pmf, dtype=torch.float64).cpu()))
        series.append((f"{name} ({distance_label} = {d:.2f})", heights))
    groups = top_k + 1
    width = 0.8 / len(series)
    for s, (label, heights) in enumerate(series):
        positions = [g + (s - (len(series) - 1) / 2) * width for g in range(groups)]
        ax.bar(positions, heights, width=width, label=label)
    ax.set_xticks(range(groups))
    ax.set_xticklabels([str(i + 1) for i in range(top_k)] + ["rest"])
    ax.set_xlabel("permutations, by true probability")
    ax.set_ylabel("probability")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
