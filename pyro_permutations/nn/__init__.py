"""Neural modules: the Sinkhorn network of [GS] section 3, its loss, its metrics, and jigsaw
puzzle operations (cutting images into pieces and putting them back).

Convention: scrambled piece ``i`` belongs at position ``perm[i]`` (``P[i, perm[i]] = 1``), so
the ordered objects are ``P^T x`` over the piece axis (:func:`reconstruct`).
"""

from pyro_permutations.nn.losses import reconstruction_loss
from pyro_permutations.nn.metrics import (
    kendall_tau_mean,
    l1_error,
    l2_error,
    prop_any_wrong,
    prop_wrong,
    prop_wrong_objects,
)
from pyro_permutations.nn.puzzles import (
    crop_to_grid,
    image_to_pieces,
    pieces_to_image,
    resize_to_grid,
    scramble,
)
from pyro_permutations.nn.sinkhorn_network import SinkhornNetwork, reconstruct

__all__ = [
    "SinkhornNetwork",
    "crop_to_grid",
    "image_to_pieces",
    "kendall_tau_mean",
    "l1_error",
    "l2_error",
    "pieces_to_image",
    "prop_any_wrong",
    "prop_wrong",
    "prop_wrong_objects",
    "reconstruct",
    "reconstruction_loss",
    "resize_to_grid",
    "scramble",
]
