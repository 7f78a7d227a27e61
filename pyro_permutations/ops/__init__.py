"""Tensor operations on permutations, matchings and doubly-stochastic matrices.

Convention, everywhere in this library: a permutation of ``N`` items is a long tensor ``perm``
of shape ``(..., N)`` where ``perm[i] = j`` means row ``i`` goes to column ``j``; its matrix has
``P[..., i, perm[i]] = 1``. A partial permutation (:mod:`pyro_permutations.ops.partial`) of
``N`` rows into ``M`` columns has ``perm[..., i] = -1`` where row ``i`` is unmatched.

Floating dtypes, one policy for the whole library: computations (Sinkhorn, matching, the
distributions' parameters and densities, the pmf distances) take float32 or float64 and refuse
float16 and bfloat16 with a ``ValueError`` that says to convert, since their rounding (about
``1e-3`` and ``1e-2``) is coarser than the tolerances those computations work to; exact
conversions whose results are 0, 1 or indices (``perm_to_matrix``, ``matrix_to_perm``) accept
any floating dtype.
"""

from pyro_permutations.ops.distances import (
    cayley_distance,
    footrule_distance,
    hamming_distance,
    kendall_distance,
    kendall_tau,
)
from pyro_permutations.ops.gumbel import sample_gumbel
from pyro_permutations.ops.matching import matching
from pyro_permutations.ops.partial import (
    all_partial_perms,
    matrix_to_partial_perm,
    num_partial_perms,
    partial_perm_to_matrix,
)
from pyro_permutations.ops.permutations import (
    all_permutations,
    compose_perms,
    invert_perm,
    matrix_to_perm,
    perm_to_matrix,
    perm_to_rank,
    rank_to_perm,
)
from pyro_permutations.ops.sinkhorn import SinkhornInfo, log_sinkhorn, marginal_error, sinkhorn

__all__ = [
    "SinkhornInfo",
    "all_partial_perms",
    "all_permutations",
    "cayley_distance",
    "compose_perms",
    "footrule_distance",
    "hamming_distance",
    "invert_perm",
    "kendall_distance",
    "kendall_tau",
    "log_sinkhorn",
    "marginal_error",
    "matching",
    "matrix_to_partial_perm",
    "matrix_to_perm",
    "num_partial_perms",
    "partial_perm_to_matrix",
    "perm_to_matrix",
    "perm_to_rank",
    "rank_to_perm",
    "sample_gumbel",
    "sinkhorn",
]
