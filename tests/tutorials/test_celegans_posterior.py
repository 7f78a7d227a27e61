"""The posterior summaries of the C. elegans fits: label frequencies, spread and truth mass
against hand-computed values, guide draws inside the mask that leave the fit's random stream
alone, and the samplers' histories."""

import math

import pyro
import pytest
import torch

from tests.tutorials.celegans_tiny import tiny_data
from tutorials.celegans import experiment as E
from tutorials.celegans.map_fit import regression_start
from tutorials.celegans.mcmc import fit_mcmc
from tutorials.celegans.model import VI_METHODS, fit_vi, guide_draws
from tutorials.celegans.posterior import chain_estimate, label_frequencies, spread

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("cache"), worms=2, seed=1)[1:]


def test_spread_and_truth_mass_of_hand_made_draws():
    # One worm, three neurons; neuron 0 is known. Four draws:
    # neuron 1 takes label 1, 1, 2, 1 (top 3/4); neuron 2 takes 2, 2, 1, 2 (top 3/4).
    labels = torch.tensor([[[0, 1, 2]], [[0, 1, 2]], [[0, 2, 1]], [[0, 1, 2]]])
    freq = label_frequencies(labels, 3)
    assert torch.allclose(freq.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    assert freq[0, 1].tolist() == [0.0, 0.75, 0.25]
    known = torch.tensor([[True, False, False]])
    # Truth: neuron 1 is label 2 (mass 1/4), neuron 2 is label 2 (mass 3/4).
    truth = torch.tensor([[0, 2, 2]])
    sp, tm = spread(freq, truth, known)
    assert sp == pytest.approx(0.25) and tm == pytest.approx(0.5)
    # A point mass has no spread and puts its accuracy on the truth.
    sp, tm = spread(label_frequencies(labels[:1], 3), truth, known)
    assert sp == 0 and tm == pytest.approx(0.5)
    assert all(math.isnan(v) for v in spread(freq, truth, torch.ones(1, 3, dtype=torch.bool)))


def test_chain_estimate_drops_burn_in_and_respects_the_mask():
    a, b = torch.tensor([[0, 1, 2]]), torch.tensor([[1, 0, 2]])
    allowed = torch.ones(1, 3, 3, dtype=torch.bool)
    perm, freq = chain_estimate([b, b, b, a, a], 0.6, allowed)  # keeps the last two: a, a
    assert perm.tolist() == a.tolist() and freq[0, 0, 0] == 1
    perm, _ = chain_estimate([b], 0.9, allowed)  # nothing left after burn-in: the last draw
    assert perm.tolist() == b.tolist()
    allowed[0, 0, 0] = False  # a's pair (0, 0) forbidden: the estimate avoids it
    perm, _ = chain_estimate([a, a, b], 0.0, allowed)
    assert perm[0, 0] != 0


@pytest.mark.parametrize("method", VI_METHODS)
def test_guide_draws_stay_in_the_mask_and_leave_the_fit_alone(tiny, method):
    rec, con, prob = tiny
    start = regression_start(prob)
    kw = dict(start=start, truth=rec.truth, known=con.known, every=5)
    plain = fit_vi(method, prob, 10, seed=3, **kw)
    fit = fit_vi(method, prob, 10, seed=3, spread_draws=6, **kw)
    # Same random stream: the same ELBOs and modes with and without the draws.
    assert fit.elbo == plain.elbo and fit.accuracy == plain.accuracy
    assert torch.equal(fit.perm, plain.perm)
    assert len(fit.spread) == len(fit.accuracy) == 2
    for sp, tm in fit.spread:
        assert 0 <= sp <= 1 - 1 / 6 + 1e-12 and 0 <= tm <= 1
    labels = guide_draws(method, prob, 6, torch.Generator().manual_seed(0))
    assert labels.shape == (6, prob.worms, prob.n)
    j = torch.arange(prob.worms)[None, :, None]
    m = torch.arange(prob.n)[None, None, :]
    assert prob.allowed[j, m, labels].all()
    if method != "naive":  # permutations: every label once per worm
        assert (labels.sort(-1).values == torch.arange(prob.n)).all()


def test_guide_draws_of_a_sharp_guide_have_no_spread(tiny):
    rec, con, prob = tiny
    start = regression_start(prob)
    # Scores 50 at the start's pairs: every Gumbel-Matching draw is the start.
    fit_vi("gumbel-sinkhorn", prob, 1, seed=0, start=start, hyper={"start_strength": 50.0})
    labels = guide_draws("gumbel-sinkhorn", prob, 8, torch.Generator().manual_seed(0))
    sp, tm = spread(label_frequencies(labels, prob.n), rec.truth, con.known)
    assert sp == 0
    unknown = ~con.known
    assert tm == pytest.approx(float((start == rec.truth)[unknown].float().mean()))


def test_sampler_and_run_method_traces_carry_the_spread(tiny):
    rec, con, prob = tiny
    start = regression_start(prob)
    pyro.set_rng_seed(0)
    _, history, _ = fit_mcmc(prob, start, 0, sweeps=4, truth=rec.truth, known=con.known)
    assert len(history) == 4 and all(len(h) == 4 and 0 <= h[2] <= 1 for h in history)
    point = E.Point(prob, rec.truth, con.known, 5.0, start, 0.5, 0.0)
    for method, has_spread in (("mcmc-collapsed", True), ("map", False), ("naive", True)):
        trace = E.run_method(method, point, 0.3, 0)["trace"]
        assert trace and all(len(row) == 5 for row in trace)
        assert all((row[3] is not None) == has_spread for row in trace)
