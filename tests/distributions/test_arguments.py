"""Argument checks shared by the distributions: what they accept, what they refuse and how they
say it, and their ``repr``."""

import re

import numpy as np
import pytest
import torch

from pyro_permutations.distributions import (
    FlatBirkhoff,
    GumbelSinkhorn,
    RoundingBirkhoff,
    RoundingPrior,
    RoundingSimplex,
    StickBreakingBirkhoff,
    StickBreakingSimplex,
    UniformPermutation,
)

LOC_SCALE_FAMILIES = {
    "StickBreakingBirkhoff": (StickBreakingBirkhoff, (3, 3)),
    "RoundingBirkhoff": (RoundingBirkhoff, (3, 3)),
    "StickBreakingSimplex": (StickBreakingSimplex, (3,)),
    "RoundingSimplex": (RoundingSimplex, (3,)),
}
FAMILIES = list(LOC_SCALE_FAMILIES.values())
IDS = list(LOC_SCALE_FAMILIES)


@pytest.mark.parametrize("family, event", FAMILIES, ids=IDS)
def test_integer_loc_is_refused(family, event):
    with pytest.raises(ValueError, match="loc must have a floating-point dtype"):
        family(torch.zeros(event, dtype=torch.long), 1.0, 0.5)


@pytest.mark.parametrize("family, event", FAMILIES, ids=IDS)
def test_loc_and_scale_that_do_not_broadcast_are_named(family, event):
    loc, scale = torch.zeros((2,) + event), torch.ones((4,) + event)
    message = f"loc {tuple(loc.shape)} and scale {tuple(scale.shape)} do not broadcast"
    with pytest.raises(ValueError, match=re.escape(message)):
        family(loc, scale, 0.5)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: GumbelSinkhorn(torch.randn(2, 4, 4), torch.ones(3)),
            "batch shapes of log_alpha (2,) and temperature (3,) do not broadcast",
        ),
        (
            lambda: StickBreakingBirkhoff(torch.zeros(2, 3, 3), 1.0, 0.5 * torch.ones(4)),
            "batch shapes of loc and scale (2,) and temperature (4,) do not broadcast",
        ),
        (
            lambda: StickBreakingSimplex(torch.zeros(2, 3), 1.0, 0.5 * torch.ones(4)),
            "batch shapes of loc and scale (2,) and temperature (4,) do not broadcast",
        ),
    ],
)
def test_temperature_that_does_not_broadcast_is_named(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("family, event", FAMILIES, ids=IDS)
def test_repr_shows_the_parameters(family, event):
    d = family(torch.zeros((2,) + event), 0.5, 0.25)
    name = type(d).__name__
    shape = torch.Size((2,) + event)
    assert repr(d) == f"{name}(loc: {shape}, scale: {shape}, temperature: 0.25)"
    one = family(torch.zeros((1,) * len(event)), 0.5, torch.tensor(0.25))
    assert repr(one) == f"{name}(loc: 0.0, scale: 0.5, temperature: 0.25)"


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


def test_flat_birkhoff_log_prob_of_a_batch_that_does_not_broadcast_names_both_shapes():
    d = FlatBirkhoff(3, batch_shape=(2,), validate_args=False)
    value = torch.full((3, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"value \(3,\) and batch_shape \(2,\) do not broadcast"):
        d.log_prob(value)
