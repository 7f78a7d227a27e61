"""pyro-permutations: inference over permutations and matchings in Pyro.

Layers, each importing only those below it: :mod:`~pyro_permutations.ops` (tensor
operations), :mod:`~pyro_permutations.constraints` and :mod:`~pyro_permutations.transforms`,
:mod:`~pyro_permutations.distributions`, then :mod:`~pyro_permutations.infer` (exact
posteriors, empirical pmfs, distances between pmfs) and :mod:`~pyro_permutations.nn`
(Sinkhorn networks).

Convention: ``perm[i] = j`` means row ``i`` goes to column ``j``, ``P[i, perm[i]] = 1``.
"""

from pyro_permutations import constraints, distributions, infer, nn, ops, transforms
from pyro_permutations.distributions import *  # noqa: F403
from pyro_permutations.distributions import __all__ as _distributions_all
from pyro_permutations.ops import *  # noqa: F403
from pyro_permutations.ops import __all__ as _ops_all

__version__ = "0.1.0"

__all__ = (
    ["constraints", "distributions", "infer", "nn", "ops", "transforms"]
    + _distributions_all
    + _ops_all
)
