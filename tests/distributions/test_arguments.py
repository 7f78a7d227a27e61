"""Argument checks shared by the distributions: what they accept, what they refuse and how they
say it, and their ``repr``."""

import math
import re

import numpy as np
import pytest
import torch

from pyro_permutations.distributions import (
    FlatBirkhoff,
    GumbelMatching,
    GumbelSinkhorn,
    GumbelSinkhornStraightThrough,
    Mallows,
    PartialGumbelMatching,
    PartialGumbelSinkhorn,
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


# ------------------------------------------------------------- issue 21: clear errors everywhere

TEMPERED = {
    "GumbelSinkhorn": lambda tau: GumbelSinkhorn(torch.zeros(4, 4), tau),
    "StickBreakingBirkhoff": lambda tau: StickBreakingBirkhoff(torch.zeros(3, 3), 1.0, tau),
    "StickBreakingSimplex": lambda tau: StickBreakingSimplex(torch.zeros(3), 1.0, tau),
}


@pytest.mark.parametrize("make", TEMPERED.values(), ids=TEMPERED.keys())
@pytest.mark.parametrize(
    "tau", [float("inf"), torch.tensor(float("inf")), torch.tensor([1.0, float("nan")]), 0.0]
)
@pytest.mark.parametrize("validate_args", [True, False])
def test_temperature_must_be_finite_and_positive(make, tau, validate_args):
    # GumbelSinkhorn(X, inf) was accepted: uniform samples and a NaN log_prob.
    with pytest.raises(ValueError, match="temperature must be positive and finite|positive finite"):
        make(tau)


@pytest.mark.parametrize("make", TEMPERED.values(), ids=TEMPERED.keys())
def test_a_string_temperature_is_a_type_error(make):
    with pytest.raises(TypeError, match="temperature must be a positive float or a floating"):
        make("1")


def test_a_string_theta_is_a_type_error():
    with pytest.raises(TypeError, match="theta must be a number or a floating tensor"):
        Mallows(torch.arange(3), "1")


@pytest.mark.parametrize("family, event", FAMILIES, ids=IDS)
@pytest.mark.parametrize("bad", [float("inf"), -float("inf"), float("nan")])
@pytest.mark.parametrize("validate_args", [True, False])
def test_loc_must_be_finite_whatever_validate_args(family, event, bad, validate_args):
    # torch's constraints.real admits +-inf, and with validate_args=False a NaN loc sampled NaN.
    loc = torch.zeros(event)
    loc[0] = bad
    with pytest.raises(ValueError, match="loc contains NaN or"):
        family(loc, 1.0, 0.5, validate_args=validate_args)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(n_iters=0), "n_iters must be None .* or a positive int"),
        (dict(n_iters=-2), "n_iters must be None .* or a positive int"),
        (dict(tol=-1e-3), "tol must be a positive number"),
        (dict(tol=0.0), "tol must be a positive number"),
        (dict(grad="backprop"), "grad must be one of"),
        (dict(grad="implicit", n_iters=5), "grad='implicit' differentiates"),
    ],
)
@pytest.mark.parametrize("family", [GumbelSinkhorn, GumbelSinkhornStraightThrough])
def test_sinkhorn_options_are_checked_at_construction(family, options, message):
    # They were accepted, and failed (or, for n_iters=0, gave unnormalised samples that passed
    # their own support check) only when sampling.
    with pytest.raises(ValueError, match=message):
        family(torch.zeros(4, 4), 1.0, **options)


def test_gumbel_sinkhorn_log_prob_of_a_matrix_of_the_wrong_size_names_the_shapes():
    d = GumbelSinkhorn(torch.zeros(4, 4), 1.0)
    message = "value has shape (3, 3), but GumbelSinkhorn has event_shape (4, 4)"
    with pytest.raises(ValueError, match=re.escape(message)):
        d.log_prob(torch.eye(3))


def test_gumbel_matching_rsample_says_what_to_use_instead():
    with pytest.raises(NotImplementedError, match="no reparameterized sample.*GumbelSinkhorn"):
        GumbelMatching(torch.zeros(4, 4)).rsample()


@pytest.mark.parametrize("validate_args", [True, False])
def test_stick_breaking_log_prob_is_minus_inf_at_a_vertex(validate_args):
    # It was a finite -6929, an artefact of clamping Psi; the density tends to 0 there.
    d = StickBreakingBirkhoff(torch.zeros(3, 3), 1.0, validate_args=validate_args)
    vertices = torch.eye(4)[torch.tensor([[0, 1, 2, 3], [2, 0, 3, 1]])]
    assert (d.log_prob(vertices) == -math.inf).all()
    near = 0.999 * vertices + 0.001 / 4  # inside the polytope, next to the vertex
    assert torch.isfinite(d.log_prob(near)).all()
    simplex = StickBreakingSimplex(torch.zeros(3), 1.0, validate_args=validate_args)
    assert simplex.log_prob(torch.eye(4)).eq(-math.inf).all()


def test_stick_breaking_keeps_the_density_of_its_own_sample_that_rounds_to_a_vertex():
    d = StickBreakingBirkhoff(torch.full((2, 2), 40.0), 0.01, temperature=0.1)
    x = d.rsample()
    assert ((x == 0) | (x == 1)).all()  # rounded to a vertex in float32
    assert torch.isfinite(d.log_prob(x))  # through the cache: the exact Psi
    assert d.log_prob(x.clone()) == -math.inf


# A mask of forbidden pairs that no matching avoids was accepted at construction and failed only
# at the first sample; with validate_args it is now refused where it is given.
def _blocked(shape, where):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    if where == "row":
        x[..., 0, :] = -math.inf
    elif where == "column":
        x[..., :, 0] = -math.inf
    else:  # every row and column keeps a pair, yet rows 0 and 1 both have only column 0
        x[..., :2, 1:] = -math.inf
    return x


MASKED = {
    "GumbelSinkhorn": (lambda x, **kw: GumbelSinkhorn(x, 0.5, **kw), (2, 3, 3)),
    "GumbelMatching": (lambda x, **kw: GumbelMatching(x, **kw), (2, 3, 3)),
    "PartialGumbelSinkhorn": (lambda x, **kw: PartialGumbelSinkhorn(x, 0.5, **kw), (2, 3, 4)),
    "PartialGumbelMatching": (lambda x, **kw: PartialGumbelMatching(x, **kw), (2, 3, 4)),
    "PartialGumbelSinkhorn, N > M": (
        lambda x, **kw: PartialGumbelSinkhorn(x.transpose(-1, -2), 0.5, **kw),
        (2, 3, 4),
    ),
}


@pytest.mark.parametrize("make, shape", MASKED.values(), ids=MASKED.keys())
@pytest.mark.parametrize("where", ["row", "pair"])
def test_an_infeasible_mask_is_refused_at_construction_with_validate_args(make, shape, where):
    x = _blocked(shape, where)
    with pytest.raises(
        ValueError, match="log_alpha: no (permutation|matching)|pairs are all -inf|entirely -inf"
    ):
        make(x, validate_args=True)
    make(x, validate_args=False)  # validate_args=False skips the check, as Pyro's does


@pytest.mark.parametrize("make, shape", MASKED.values(), ids=MASKED.keys())
def test_a_feasible_mask_is_accepted_and_sampled_inside_it(make, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    x[..., 0, 1:] = -math.inf  # row 0 has column 0 only
    d = make(x, validate_args=True)
    sample = d.sample((5,))
    if sample.dim() == 4:  # relaxed matrices: no mass on a forbidden pair
        forbidden = torch.isneginf(d.log_alpha)
        assert float(sample.masked_select(forbidden.expand_as(sample)).abs().max()) == 0.0
    else:  # hard matchings (N <= M here): row 0 goes to column 0, its only allowed pair
        assert bool((sample[..., 0] == 0).all())


def test_unmatched_scores_make_any_mask_feasible():
    x = torch.full((3, 4), -math.inf)
    u, v = torch.zeros(3), torch.zeros(4)
    p = PartialGumbelSinkhorn(x, 0.5, unmatched_rows=u, unmatched_cols=v, validate_args=True)
    assert float(p.rsample().abs().max()) == 0.0
    m = PartialGumbelMatching(x, unmatched_rows=u, unmatched_cols=v, validate_args=True)
    assert bool((m.sample() == -1).all())
