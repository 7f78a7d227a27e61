"""pyro-permutations: inference over permutations and matchings in Pyro.

Convention: ``perm[i] = j`` means row ``i`` goes to column ``j``, ``P[i, perm[i]] = 1``.
"""

from pyro_permutations.ops import *  # noqa: F403
from pyro_permutations.ops import __all__ as _ops_all

__version__ = "0.1.0"

__all__ = list(_ops_all)
