"""Argument checks shared by the distributions: what they accept, what they refuse and how they
say it, and their ``repr``."""

import numpy as np
import pytest

from pyro_permutations.distributions import FlatBirkhoff, RoundingPrior, UniformPermutation


@pytest.mark.parametrize("n", [np.int64(3), np.int32(3), 3])
def test_numpy_integers_are_sizes(n):
    assert RoundingPrior(n, 0.1).event_shape == (3, 3)
    assert RoundingPrior.infer_shapes(n, ()) == ((), (3, 3))
    assert FlatBirkhoff(n).event_shape == (3, 3) and type(FlatBirkhoff(n).n) is int
    assert UniformPermutation(n).event_shape == (3,)


@pytest.mark.parametrize("make", [RoundingPrior, FlatBirkhoff, UniformPermutation])
@pytest.mark.parametrize("bad", [True, np.float64(3.0), 0, np.int64(-1)])
def test_sizes_that_are_not_positive_integers_are_refused(make, bad):
    args = (bad, 0.1) if make is RoundingPrior else (bad,)
    with pytest.raises(ValueError, match="n must be a positive int"):
        make(*args)
