"""The C. elegans simulation, model and methods: stable dynamics, a Pyro model with a plate over
worms, valid posterior modes, and a tiny end-to-end run (N = 20) that recovers most labels."""

import pyro
import pytest
import torch

from pyro_permutations.ops import invert_perm
from tests.tutorials.celegans_tiny import tiny_data
from tutorials.celegans.map_fit import faq, fit_map, fit_weights, regression_start, residual
from tutorials.celegans.model import (
    VI_METHODS,
    RowGumbelSoftmax,
    accuracy,
    fit_vi,
    guide,
    model,
)
from tutorials.celegans.simulate import simulate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """N = 20 neurons of the real connectome, 5 worms of 30 steps, ~7.6 candidates each."""
    return tiny_data(tmp_path_factory.mktemp("cache"), worms=5)


def test_simulation_stable_sparse_and_permuted():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(30, 30, generator=g) < 0.2
    a = (a | a.T) & ~torch.eye(30, dtype=torch.bool)
    rec = simulate(a.numpy(), worms=3, steps=500, generator=g, rho=0.9)
    assert torch.isclose(torch.linalg.eigvals(rec.weights).abs().max(), torch.tensor(0.9).double())
    assert (rec.weights[~a] == 0).all() and (rec.weights[a] != 0).all()
    assert not torch.allclose(rec.weights, rec.weights.T)  # directed weights on an undirected A
    assert torch.isfinite(rec.activity).all() and rec.activity.abs().max() < 50
    # Undo each worm's permutation: the residual of the true W is the noise (variance 1).
    z = torch.gather(rec.activity, 2, invert_perm(rec.truth)[:, None, :].expand_as(rec.activity))
    eps = z[:, 1:] - z[:, :-1] @ rec.weights.T
    assert abs(float(eps.var()) - 1.0) < 0.05


def test_model_has_plate_over_worms(tiny):
    _, rec, _, prob = tiny
    from tutorials.celegans.model import _init_params, _prior

    pyro.clear_param_store()
    hyper = {"temperature": 0.5, "prior_temperature": 1.0, "start_strength": 2.0}
    _init_params("gumbel-sinkhorn", prob, hyper, torch.Generator().manual_seed(0), None)
    prior = _prior("gumbel-sinkhorn", prob, hyper)
    tr = pyro.poutine.trace(guide).get_trace(prob, prior, "gumbel-sinkhorn", hyper)
    cond = pyro.poutine.trace(pyro.poutine.replay(model, trace=tr)).get_trace(prob, prior)
    assert cond.nodes["X"]["value"].shape == (5, 20, 20)
    assert [f.name for f in cond.nodes["X"]["cond_indep_stack"]] == ["worms"]
    assert cond.nodes["Y"]["is_observed"]
    assert cond.nodes["G"]["value"].shape == (prob.rows.numel(),)
    # Forbidden pairs carry no mass in the relaxed permutation.
    assert (cond.nodes["X"]["value"][~prob.allowed] == 0).all()


def test_row_gumbel_softmax_rows_sum_to_one_columns_free():
    mask = torch.zeros(4, 6, 6)
    mask[:, 0, 1:] = -float("inf")
    d = RowGumbelSoftmax(torch.randn(4, 6, 6) + mask, 0.5)
    x = d.rsample()
    assert torch.allclose(x.sum(-1), torch.ones(4, 6))
    assert not torch.allclose(x.sum(-2), torch.ones(4, 6))
    assert (x[:, 0, 1:] == 0).all()
    assert torch.isfinite(d.log_prob(x)).all()
    assert isinstance(d.expand((2, 4)), RowGumbelSoftmax)


def test_weights_least_squares_at_truth(tiny):
    _, rec, _, prob = tiny
    w = prob.weights(fit_weights(prob, rec.truth))
    assert (w[~prob.adjacency] == 0).all()
    wrong = prob.weights(fit_weights(prob, torch.roll(rec.truth, 1, dims=1)))
    # The true permutations explain the recordings better than shifted ones.
    res = sum(residual(prob, w, rec.truth[j], j) for j in range(5))
    res_wrong = sum(residual(prob, wrong, torch.roll(rec.truth, 1, 1)[j], j) for j in range(5))
    assert res < 0.8 * res_wrong


def test_faq_finds_planted_graph_matching():
    g = torch.Generator().manual_seed(3)
    n = 25
    a = torch.rand(n, n, generator=g) < 0.3
    a = ((a | a.T) & ~torch.eye(n, dtype=torch.bool)).double()
    perm = torch.randperm(n, generator=g)
    b = a[perm][:, perm]  # b[m, m'] = a[perm m, perm m']
    allowed = torch.ones(n, n, dtype=torch.bool)
    found = faq([(-a, b)], allowed)
    assert torch.equal(b, a[found][:, found])  # an exact isomorphism (maybe not perm itself)
    # Forbidden pairs are respected.
    allowed = torch.rand(n, n, generator=g) < 0.5
    allowed[torch.arange(n), perm] = True
    found = faq([(-a, b)], allowed)
    assert allowed[torch.arange(n), found].all()


def _check_perm(perm, con, rec):
    assert perm.shape == rec.truth.shape
    assert (perm.sort(1).values == torch.arange(perm.shape[1])).all()
    assert con.allowed.gather(2, perm[:, :, None]).all()
    assert torch.equal(perm[con.known], rec.truth[con.known])


def test_tiny_end_to_end_recovers_most_labels(tiny):
    _, rec, con, prob = tiny
    start = regression_start(prob)
    start_acc = accuracy(start, rec.truth, con.known)
    fit = fit_vi("rounding", prob, 200, seed=0, start=start, truth=rec.truth, known=con.known)
    _check_perm(fit.perm, con, rec)
    acc = accuracy(fit.perm, rec.truth, con.known)
    assert acc >= 0.8 and acc > start_acc
    assert fit.accuracy[-1] == acc and len(fit.elbo) == len(fit.seconds) == 20
    perms, history = fit_map(prob, rounds=5, truth=rec.truth, known=con.known)
    _check_perm(perms, con, rec)
    assert history[-1][1] >= 0.8


@pytest.mark.parametrize("method", [m for m in VI_METHODS if m != "rounding"])
def test_other_vi_methods_run(tiny, method):
    _, rec, con, prob = tiny
    fit = fit_vi(method, prob, 20, seed=0, truth=rec.truth, known=con.known, every=5)
    _check_perm(fit.perm, con, rec)
    assert len(fit.elbo) == 4 and all(e == e for e in fit.elbo)


def test_unknown_method(tiny):
    with pytest.raises(ValueError, match="unknown method"):
        fit_vi("mcmc", tiny[3], 1, seed=0)
