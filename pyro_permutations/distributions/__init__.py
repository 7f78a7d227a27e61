"""Pyro distributions over permutations and their continuous relaxations."""

from pyro_permutations.distributions.gumbel_matching import GumbelMatching
from pyro_permutations.distributions.gumbel_sinkhorn import (
    GumbelSinkhorn,
    GumbelSinkhornStraightThrough,
    perturbed_scores,
)

__all__ = [
    "GumbelMatching",
    "GumbelSinkhorn",
    "GumbelSinkhornStraightThrough",
    "perturbed_scores",
]
