"""The published numbers: [GS] Table 2, MNIST columns.

Mena, Belanger, Linderman, Snoek. Learning Latent Permutations with Gumbel-Sinkhorn Networks.
ICLR 2018, Table 2. The paper's training length, hyper-parameters and its handling of grids
that do not divide 28 pixels are not given.
"""

#: The grid sizes of Table 2 (MNIST): puzzles of g x g pieces.
GRIDS = (2, 3, 4, 5, 6)

#: Metric -> values for 2x2, 3x3, 4x4, 5x5, 6x6.
TABLE2 = {
    "kendall_tau": (1.0, 0.83, 0.43, 0.39, 0.27),
    "prop_wrong": (0.0, 0.09, 0.45, 0.45, 0.59),
    "prop_any_wrong": (0.0, 0.28, 0.97, 1.0, 1.0),
    "l1": (0.0, 0.0, 0.04, 0.02, 0.03),
    "l2": (0.0, 0.0, 0.26, 0.18, 0.19),
}

#: Row labels of the table, in the paper's order.
LABELS = {
    "kendall_tau": "Kendall tau",
    "prop_wrong": "Prop. wrong",
    "prop_any_wrong": "Prop. any wrong",
    "l1": "l1",
    "l2": "l2",
}


def paper_value(metric, grid):
    """[GS] Table 2's value of ``metric`` for ``grid x grid`` MNIST puzzles, or None."""
    if metric not in TABLE2 or grid not in GRIDS:
        return None
    return TABLE2[metric][GRIDS.index(grid)]
