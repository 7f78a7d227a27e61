"""Every public distribution against the contract of a Pyro ``TorchDistribution``.

What Pyro's own generic distribution tests check, for each distribution of
:mod:`pyro_permutations.distributions`: ``infer_shapes`` with every constructor argument,
``expand`` (new dimensions, existing ones, refusals, ``ExpandedDistribution``), ``support``
shapes, ``log_prob`` broadcasting and shape errors, ``enumerate_support`` order and shape,
``sample`` / ``rsample`` shapes, empty batches, and behaviour with ``validate_args`` on and off.

Adding a distribution is one line in ``CASES``: the class and a function from a batch shape to
its constructor arguments (and, where needed, the arguments ``infer_shapes`` takes by value,
since no tensor carries them).
"""

import inspect
import math
from dataclasses import dataclass, field

import pyro.distributions as dist
import pytest
import torch

import pyro_permutations.distributions as ppd
from pyro_permutations.distributions import (
    FlatBirkhoff,
    GumbelMatching,
    GumbelSinkhorn,
    GumbelSinkhornStraightThrough,
    Mallows,
    PartialGumbelMatching,
    PartialGumbelSinkhorn,
    PlackettLuce,
    RoundingBirkhoff,
    RoundingPrior,
    RoundingSimplex,
    StickBreakingBirkhoff,
    StickBreakingSimplex,
    UniformPartialMatching,
    UniformPermutation,
)
from pyro_permutations.ops import all_partial_perms, all_permutations

N = 3


def _center(batch):
    return torch.arange(N).flip(0).expand(batch + (N,))


def _scores(batch):
    return torch.randn(batch + (N, N))


def _sized(batch):
    return dict(n=N, batch_shape=batch)


def _partial(batch):
    """Scores of N rows and N + 1 columns with unmatched scores."""
    return dict(
        log_alpha=torch.randn(batch + (N, N + 1)),
        unmatched_rows=torch.zeros(batch + (N,)),
        unmatched_cols=torch.zeros(batch + (N + 1,)),
    )


@dataclass
class Case:
    cls: type
    #: batch shape -> constructor keyword arguments with that batch shape
    make: callable
    #: batch shape -> the arguments infer_shapes takes by value (sizes no tensor carries)
    by_value: callable = field(default=lambda batch: {})
    #: log_prob is defined for values drawn by sample/rsample
    has_log_prob: bool = True

    @property
    def name(self):
        return self.cls.__name__

    def __call__(self, batch, **extra):
        return self.cls(**self.make(batch), **extra)

    def __repr__(self):
        return self.name


CASES = [
    Case(GumbelSinkhorn, lambda b: dict(log_alpha=_scores(b), temperature=0.5)),
    Case(GumbelSinkhornStraightThrough, lambda b: dict(log_alpha=_scores(b), temperature=0.5)),
    Case(GumbelMatching, lambda b: dict(log_alpha=_scores(b)), has_log_prob=False),
    Case(Mallows, lambda b: dict(center=_center(b), theta=torch.full(b, 0.7), distance="cayley")),
    Case(PlackettLuce, lambda b: dict(logits=torch.randn(b + (N,)))),
    Case(UniformPermutation, _sized, by_value=_sized),
    Case(StickBreakingBirkhoff, lambda b: dict(loc=torch.randn(b + (N - 1, N - 1)), scale=0.5)),
    Case(StickBreakingSimplex, lambda b: dict(loc=torch.randn(b + (N - 1,)), scale=0.5)),
    Case(RoundingBirkhoff, lambda b: dict(loc=torch.rand(b + (N, N)), scale=0.3, temperature=0.2)),
    Case(RoundingSimplex, lambda b: dict(loc=torch.rand(b + (N,)), scale=0.3, temperature=0.2)),
    Case(RoundingPrior, lambda b: dict(n=N, eta=torch.full(b, 0.2)), by_value=lambda b: dict(n=N)),
    Case(FlatBirkhoff, _sized, by_value=_sized),
    Case(PartialGumbelSinkhorn, lambda b: dict(**_partial(b), temperature=0.5)),
    Case(PartialGumbelMatching, _partial, has_log_prob=False),
    Case(
        UniformPartialMatching,
        lambda b: dict(n=N, m=N + 1, match_prob=torch.full(b, 0.6)),
        by_value=lambda b: dict(n=N, m=N + 1),
    ),
]
#: Distributions whose log_prob scores the perturbed scores their own samples carry.
SCORES_OWN_SAMPLES = (GumbelSinkhorn, PartialGumbelSinkhorn)


def test_every_public_distribution_has_a_case():
    public = {
        name
        for name in ppd.__all__
        if inspect.isclass(getattr(ppd, name))
        and issubclass(getattr(ppd, name), torch.distributions.Distribution)
    }
    assert public == {case.name for case in CASES}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def draw(d, sample_shape=()):
    return d.rsample(sample_shape) if d.has_rsample else d.sample(sample_shape)


# ------------------------------------------------------------------------------ infer_shapes


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("batch", [(), (2,), (4, 1)])
def test_infer_shapes_takes_every_constructor_argument(case, batch):
    d = case(batch)
    given = case.make(batch)
    by_value = case.by_value(batch)
    shapes = {}
    for name in inspect.signature(case.cls.__init__).parameters:
        if name == "self":
            continue
        if name in by_value:
            shapes[name] = by_value[name]
        elif isinstance(given.get(name), torch.Tensor):
            shapes[name] = tuple(given[name].shape)
        else:  # a number, a string, an option or an argument left at its default
            shapes[name] = ()
    assert case.cls.infer_shapes(**shapes) == (d.batch_shape, d.event_shape)


@pytest.mark.parametrize("cls", [PartialGumbelSinkhorn, PartialGumbelMatching])
def test_unmatched_scores_may_carry_the_larger_batch(cls):
    """``infer_shapes`` broadcasts the unmatched scores' batch shapes with ``log_alpha``'s; so
    does the constructor, and a draw has that batch shape."""
    shapes = dict(log_alpha=(3, N, N + 1), unmatched_rows=(5, 1, N), unmatched_cols=(N + 1,))
    args = {k: torch.randn(v) for k, v in shapes.items()}
    extra = {"temperature": 0.5} if cls is PartialGumbelSinkhorn else {}
    d = cls(**args, **extra)
    assert (d.batch_shape, d.event_shape) == cls.infer_shapes(**shapes)
    assert d.batch_shape == (5, 3) and draw(d).shape == (5, 3) + d.event_shape


# ------------------------------------------------------------------------------------ expand


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_expand_adds_dimensions_and_grows_dimensions_of_size_one(case):
    d = case((2,))
    e = d.expand((3, 2))
    assert type(e) is type(d) and e.batch_shape == (3, 2) and e.event_shape == d.event_shape
    assert draw(e).shape == (3, 2) + d.event_shape
    grown = case((1,)).expand((4,))
    assert grown.batch_shape == (4,) and draw(grown, (5,)).shape == (5, 4) + d.event_shape
    assert grown.expand((2, 4)).batch_shape == (2, 4)
    for validate_args in (True, False):
        assert case((2,), validate_args=validate_args).expand((3, 2))._validate_args is (
            validate_args
        )


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("bad", [(3,), (), (2, 3)])
def test_expand_refuses_a_shape_it_cannot_reach(case, bad):
    # As for a torch distribution: an existing dimension of size 2 cannot become 3, and no
    # dimension can be dropped.
    d = case((2,))
    with pytest.raises(ValueError, match=r"cannot expand .* of batch_shape \(2,\)"):
        d.expand(bad)
    with pytest.raises(ValueError, match=r"cannot expand .* of batch_shape \(3,\)"):
        case(()).expand((3,)).expand((4,))


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_pyro_expanded_distribution_wraps_it(case):
    d = case((2,))
    e = dist.ExpandedDistribution(d, (3, 2))
    assert e.batch_shape == (3, 2) and e.event_shape == d.event_shape
    x = draw(e)
    assert x.shape == (3, 2) + d.event_shape
    if case.has_log_prob and not isinstance(d, SCORES_OWN_SAMPLES):
        assert e.log_prob(x).shape == (3, 2)


# ---------------------------------------------------------------------- support and sampling


@pytest.mark.parametrize("case", CASES, ids=repr)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 3)])
def test_samples_have_the_extended_shape_and_lie_in_the_support(case, sample_shape):
    d = case((2,))
    assert d.support.event_dim == len(d.event_shape)
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + (2,) + d.event_shape
    inside = d.support.check(x)
    assert inside.shape == sample_shape + (2,) and inside.all()
    if d.has_rsample:
        assert d.rsample(sample_shape).shape == x.shape
    else:
        with pytest.raises(NotImplementedError):
            d.rsample(sample_shape)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_an_empty_batch_samples_and_scores_nothing(case):
    d = case((0,))
    assert d.batch_shape == (0,)
    x = draw(d, (3,))
    assert x.shape == (3, 0) + d.event_shape
    if case.has_log_prob:
        assert d.log_prob(x).shape == (3, 0)


# ----------------------------------------------------------------------------------- log_prob


@pytest.mark.parametrize("case", [c for c in CASES if c.has_log_prob], ids=repr)
def test_log_prob_broadcasts_values_against_the_batch(case):
    d = case((2,))
    x = draw(d, (5,))
    assert d.log_prob(x).shape == (5, 2)
    if isinstance(d, SCORES_OWN_SAMPLES):
        return  # its log_prob is that of the scores a sample carries (no broadcasting of P)
    one = x[:, :1]  # (5, 1) + event: broadcasts against the batch (2,)
    assert d.log_prob(one).shape == (5, 2)
    assert d.log_prob(x[0, 0]).shape == (2,)


@pytest.mark.parametrize("case", [c for c in CASES if c.has_log_prob], ids=repr)
@pytest.mark.parametrize("validate_args", [True, False])
def test_log_prob_of_a_value_of_the_wrong_event_shape_is_a_shape_error(case, validate_args):
    d = case((2,), validate_args=validate_args)
    wrong = torch.Size(s + 1 for s in d.event_shape)
    value = torch.zeros(wrong, dtype=torch.long if d.support.is_discrete else torch.float32)
    with pytest.raises(ValueError, match=r"value has shape .* but .* has event_shape"):
        d.log_prob(value)


@pytest.mark.parametrize("case", [c for c in CASES if c.has_log_prob], ids=repr)
def test_log_prob_of_batches_that_do_not_broadcast_is_an_error(case):
    d = case((2,))
    if isinstance(d, SCORES_OWN_SAMPLES):
        return  # scores its own samples only
    x = draw(case((3,)))
    with pytest.raises(ValueError):
        d.log_prob(x)


# -------------------------------------------------------------------------- validate_args


OUTSIDE = {
    "Mallows": torch.tensor([0, 0, 1]),
    "PlackettLuce": torch.tensor([0, 0, 1]),
    "UniformPermutation": torch.tensor([0, 0, 1]),
    "StickBreakingBirkhoff": torch.full((N, N), 0.5),
    "StickBreakingSimplex": torch.full((N,), 0.5),
    "FlatBirkhoff": torch.full((N, N), 0.5),
    "UniformPartialMatching": torch.tensor([0, 0, -1]),
}


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_validate_args_refuses_a_value_outside_the_support_and_off_scores_it(name):
    case = next(c for c in CASES if c.name == name)
    with pytest.raises(ValueError, match="support"):
        case((2,), validate_args=True).log_prob(OUTSIDE[name])
    log_p = case((2,), validate_args=False).log_prob(OUTSIDE[name])
    assert log_p.shape == (2,) and not torch.isnan(log_p).any()
    if case.cls(**case.make((2,))).support.is_discrete:
        assert (log_p == -math.inf).all()


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_validate_args_off_still_samples_in_the_support(case):
    d = case((2,), validate_args=False)
    assert not d._validate_args and d.support.check(draw(d, (4,))).all()


# -------------------------------------------------------------------------- enumerate_support


PARTIAL_ENUMERABLE = {"UniformPartialMatching"}


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.cls.has_enumerate_support and c.name not in PARTIAL_ENUMERABLE],
    ids=repr,
)
def test_enumerate_support_lists_every_permutation_in_lexicographic_order(case):
    d = case((2,))
    perms = all_permutations(N)
    full = d.enumerate_support()
    assert full.shape == (math.factorial(N), 2, N)
    assert torch.equal(full, perms[:, None].expand(-1, 2, -1))
    compact = d.enumerate_support(expand=False)
    assert compact.shape == (math.factorial(N), 1, N) and torch.equal(compact[:, 0], perms)
    total = d.log_prob(full).logsumexp(0)
    torch.testing.assert_close(total, torch.zeros(2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(PARTIAL_ENUMERABLE))
def test_enumerate_support_lists_every_partial_matching_in_order(name):
    case = next(c for c in CASES if c.name == name)
    d = case((2,))
    perms = all_partial_perms(N, N + 1)
    full = d.enumerate_support()
    assert full.shape == (perms.shape[0], 2, N)
    assert torch.equal(full, perms[:, None].expand(-1, 2, -1))
    compact = d.enumerate_support(expand=False)
    assert compact.shape == (perms.shape[0], 1, N) and torch.equal(compact[:, 0], perms)
    total = d.log_prob(full).logsumexp(0)
    torch.testing.assert_close(total, torch.zeros(2), atol=1e-5, rtol=0)


def test_only_the_distributions_over_permutations_enumerate():
    enumerable = {c.name for c in CASES if c.cls.has_enumerate_support}
    assert enumerable == {"Mallows", "PlackettLuce", "UniformPermutation"} | PARTIAL_ENUMERABLE
