"""One floating-dtype policy across the library (documented in ``pyro_permutations.ops``):
computations take float32 or float64 and refuse float16 and bfloat16 with a ValueError that
says to convert; exact conversions (results 0, 1 or indices) take any floating dtype."""

import pytest
import torch

from pyro_permutations.distributions import GumbelSinkhorn, StickBreakingBirkhoff
from pyro_permutations.infer import hellinger_distance, total_variation_distance
from pyro_permutations.ops import (
    log_sinkhorn,
    marginal_error,
    matching,
    matrix_to_perm,
    perm_to_matrix,
    sinkhorn,
)

HALF = [torch.float16, torch.bfloat16]

COMPUTATIONS = {
    "sinkhorn": lambda dt: sinkhorn(torch.zeros(3, 3, dtype=dt)),
    "log_sinkhorn": lambda dt: log_sinkhorn(torch.zeros(3, 3, dtype=dt)),
    "matching": lambda dt: matching(torch.zeros(3, 3, dtype=dt)),
    "marginal_error": lambda dt: marginal_error(torch.zeros(3, 3, dtype=dt)),
    "hellinger_distance": lambda dt: hellinger_distance(
        torch.full((3,), 1 / 3, dtype=dt), torch.full((3,), 1 / 3, dtype=dt)
    ),
    "total_variation_distance": lambda dt: total_variation_distance(
        torch.full((3,), 1 / 3), torch.full((3,), 1 / 3, dtype=dt)
    ),
    "GumbelSinkhorn": lambda dt: GumbelSinkhorn(torch.zeros(3, 3, dtype=dt), 1.0),
    "StickBreakingBirkhoff": lambda dt: StickBreakingBirkhoff(torch.zeros(2, 2, dtype=dt), 1.0),
}


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("compute", COMPUTATIONS.values(), ids=COMPUTATIONS.keys())
def test_computations_refuse_half_precision_and_say_what_to_do(compute, dtype):
    with pytest.raises(ValueError, match=r"float32 or float64.*convert it"):
        compute(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64] + HALF, ids=str)
def test_exact_conversions_take_any_floating_dtype(dtype):
    perm = torch.tensor([[2, 0, 1], [0, 1, 2]])
    p = perm_to_matrix(perm, dtype=dtype)
    assert p.dtype == dtype and torch.equal(matrix_to_perm(p), perm)


def test_marginal_error_of_a_vector_is_a_shape_error():
    # It raised IndexError: Dimension out of range.
    with pytest.raises(ValueError, match=r"log_p must have shape \(\.\.\., N, N\)"):
        marginal_error(torch.zeros(3))
