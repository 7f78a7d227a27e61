"""Neural modules: the Sinkhorn network of [GS] section 3, its loss and its metrics.

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
)
from pyro_permutations.nn.sinkhorn_network import SinkhornNetwork, reconstruct

__all__ = [
    "SinkhornNetwork",
    "kendall_tau_mean",
    "l1_error",
    "l2_error",
    "prop_any_wrong",
    "prop_wrong",
    "reconstruct",
    "reconstruction_loss",
]
