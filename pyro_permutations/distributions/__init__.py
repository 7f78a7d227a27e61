"""Pyro distributions over permutations and their continuous relaxations.

Importing this package registers the Birkhoff transforms (``biject_to`` / ``transform_to``)
and the closed-form ``kl_divergence(GumbelSinkhorn, GumbelSinkhorn)`` (and its partial
counterpart).
"""

import pyro_permutations.transforms  # noqa: F401  (registers biject_to/transform_to)
from pyro_permutations.distributions.flat_birkhoff import FlatBirkhoff
from pyro_permutations.distributions.gumbel_matching import GumbelMatching
from pyro_permutations.distributions.gumbel_sinkhorn import (
    GumbelSinkhorn,
    GumbelSinkhornStraightThrough,
    perturbed_scores,
)
from pyro_permutations.distributions.mallows import Mallows
from pyro_permutations.distributions.partial_gumbel_matching import PartialGumbelMatching
from pyro_permutations.distributions.partial_gumbel_sinkhorn import (
    PartialGumbelSinkhorn,
    partial_perturbed_scores,
)
from pyro_permutations.distributions.plackett_luce import PlackettLuce
from pyro_permutations.distributions.rounding_birkhoff import RoundingBirkhoff
from pyro_permutations.distributions.rounding_prior import RoundingPrior
from pyro_permutations.distributions.rounding_simplex import RoundingSimplex
from pyro_permutations.distributions.stick_breaking_birkhoff import StickBreakingBirkhoff
from pyro_permutations.distributions.stick_breaking_simplex import StickBreakingSimplex
from pyro_permutations.distributions.uniform_partial_matching import UniformPartialMatching
from pyro_permutations.distributions.uniform_permutation import UniformPermutation

__all__ = [
    "FlatBirkhoff",
    "GumbelMatching",
    "GumbelSinkhorn",
    "GumbelSinkhornStraightThrough",
    "Mallows",
    "PartialGumbelMatching",
    "PartialGumbelSinkhorn",
    "PlackettLuce",
    "RoundingBirkhoff",
    "RoundingPrior",
    "RoundingSimplex",
    "StickBreakingBirkhoff",
    "StickBreakingSimplex",
    "UniformPartialMatching",
    "UniformPermutation",
    "partial_perturbed_scores",
    "perturbed_scores",
]
