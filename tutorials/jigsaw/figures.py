"""[GS] Figure 2(a): a scrambled digit, its soft reconstructions ``S(X / tau)^T x~`` at several
temperatures, and its hard reconstruction ``M(X)^T x~``, one row per grid."""

from pathlib import Path

from matplotlib.figure import Figure

from pyro_permutations.nn import pieces_to_image
from tutorials.jigsaw import experiment as E

#: Temperatures of the soft reconstructions, from blurred to sharp.
TEMPERATURES = (10.0, 3.0, 1.0, 0.3)


def figure_reconstructions(models, test_images, fit, seed, index=0, device="cpu"):
    """One row per trained grid (``models``: grid -> model) for test digit ``index``: the
    scrambled input, the soft reconstructions at :data:`TEMPERATURES`, the hard one, and the
    digit itself."""
    grids = sorted(models)
    titles = ["scrambled"] + [f"soft, tau={t:g}" for t in TEMPERATURES] + ["hard", "original"]
    fig = Figure(figsize=(1.5 * len(titles), 1.6 * len(grids) + 0.3))
    for row, grid in enumerate(grids):
        scrambled, ordered, _ = E.held_out_puzzles(test_images[index : index + 1], grid, fit, seed)
        images = [pieces_to_image(scrambled, grid)]
        images += E.reconstructions(models[grid], scrambled, TEMPERATURES, device=device)
        images.append(pieces_to_image(ordered, grid))
        for col, image in enumerate(images):
            ax = fig.add_subplot(len(grids), len(titles), row * len(titles) + col + 1)
            ax.imshow(image[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col], fontsize="small")
            if col == 0:
                ax.set_ylabel(f"{grid}x{grid}")
    fig.tight_layout()
    return fig


def save_figure(models, test_images, fit, seed, out, device="cpu"):
    """Write ``figure2a_reconstructions.png`` into ``out``."""
    path = Path(out) / "figure2a_reconstructions.png"
    figure_reconstructions(models, test_images, fit, seed, device=device).savefig(path, dpi=100)
    return path
