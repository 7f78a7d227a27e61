"""The C. elegans sweep: the results store resumes and refuses corrupt or foreign files, the CLI
resumes without refitting, the MCMC baseline's two halves are exact (the Gaussian draw of W
and the permutation model's likelihood), and a tiny run through the CLI recovers most labels."""

import json

import pyro
import pyro.poutine as poutine
import pytest
import torch

from pyro_permutations.ops import perm_to_matrix
from tests.tutorials.celegans_tiny import tiny_data
from tutorials.celegans import __main__ as cli
from tutorials.celegans import experiment as E
from tutorials.celegans import run as R
from tutorials.celegans.map_fit import fit_weights, regression_start
from tutorials.celegans.mcmc import fit_mcmc, permutation_model, sample_weights
from tutorials.celegans.model import RowGumbelSoftmax, model
from tutorials.checkpoint import CheckpointError, RecordStore

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("cache"), worms=3)[1:]


# ------------------------------------------------------------------------------ the store


def test_store_resumes_and_replaces(tmp_path):
    path = tmp_path / "points.json"
    store = RecordStore(path, {"a": (1, 2)}, ("seed", "method"))
    store.add({"seed": 0, "method": "map", "accuracy": 0.5})
    store.add({"seed": 1, "method": "map", "accuracy": 0.7})
    again = RecordStore(path, {"a": [1, 2]}, ("seed", "method"))  # tuples stored as lists
    assert again.get(seed=1, method="map")["accuracy"] == 0.7
    assert again.get(seed=2, method="map") is None
    again.add({"seed": 0, "method": "map", "accuracy": 0.9})
    assert len(RecordStore(path, {"a": [1, 2]}, ("seed", "method")).records) == 2
    assert RecordStore(path, {"a": [1, 2]}, ("seed", "method"), fresh=True).records == {}


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not a readable results file"),
        (json.dumps([1, 2]), "not a results file"),
        (json.dumps({"format": 1, "config": {"a": 2}, "records": []}), "differing: a"),
        (json.dumps({"format": 1, "config": {"a": 1}, "records": [{"x": 1}]}), "malformed"),
    ],
)
def test_store_refuses_corrupt_or_foreign_files(tmp_path, content, match):
    path = tmp_path / "points.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=match):
        RecordStore(path, {"a": 1}, ("seed",))


# ---------------------------------------------------------------------------- the MCMC halves


def test_permutation_model_likelihood_equals_matrix_model(tiny):
    rec, _, prob = tiny
    g = torch.randn(prob.rows.numel(), dtype=torch.float64)
    perm = torch.stack([torch.randperm(20) for _ in range(3)])

    def log_lik(fn, x):
        tr = poutine.trace(poutine.condition(fn, data={"G": g, "X": x})).get_trace(*args[fn])
        tr.compute_log_prob(lambda name, site: name == "Y")
        return tr.nodes["Y"]["log_prob"]

    prior = RowGumbelSoftmax(prob.log_mask(), 1.0)
    args = {permutation_model: (prob,), model: (prob, prior)}
    a = log_lik(permutation_model, perm)
    b = log_lik(model, perm_to_matrix(perm, dtype=torch.float64))
    assert a.shape == (3,) and torch.allclose(a, b, rtol=1e-10)


def test_weight_draws_match_the_gaussian_conditional(tiny):
    rec, _, prob = tiny
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([sample_weights(prob, rec.truth, gen) for _ in range(600)])
    # The mean is the ridge estimate; row 0's covariance is the inverse precision.
    mean = fit_weights(prob, rec.truth)
    se = draws.std(0) / 600**0.5
    assert ((draws.mean(0) - mean).abs() < 5 * se).all()
    y = prob.activity
    z = torch.empty_like(y).scatter_(2, rec.truth[:, None, :].expand_as(y), y)
    z0 = z[:, :-1].reshape(-1, 20)
    nbrs = prob.cols[prob.rows == 0]
    k = nbrs.numel()
    prec = (prob.scale / prob.sigma) ** 2 * z0[:, nbrs].T @ z0[:, nbrs] + torch.eye(k).double()
    cov = torch.linalg.inv(prec)
    emp = torch.cov(draws[:, :k].T)
    assert ((emp - cov).abs() < 0.15 * cov.diagonal().max()).all()


def test_mcmc_respects_mask_and_known_neurons(tiny):
    rec, con, prob = tiny
    start = regression_start(prob)
    perm, history, info = fit_mcmc(prob, start, 0, sweeps=3, truth=rec.truth, known=con.known)
    assert (perm.sort(1).values == torch.arange(20)).all()
    assert con.allowed.gather(2, perm[:, :, None]).all()
    assert torch.equal(perm[con.known], rec.truth[con.known])
    assert len(history) == 3 and info["sweeps"] == 3
    assert 0 <= info["swap acceptance"] <= 1
    with pytest.raises(ValueError, match="sweeps, time_budget"):
        fit_mcmc(prob, start, 0)


# ------------------------------------------------------------------------------- the CLI


ARGS = ["--n", "20", "--seeds", "1", "--budget", "0.3", "--methods", "map", "rounding"]


def test_cli_end_to_end_resumes_and_refuses_a_corrupt_store(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    cli.main(ARGS + ["--out", str(out), "--no-progress"])
    data = json.loads((out / "points.json").read_text())
    records = data["records"]
    # 10 data settings (6 of the tolerance sweep, 4 more of the known sweep) x 2 methods.
    assert len(records) == 20
    for name in (
        "tables.md",
        "summary.csv",
        "time.csv",
        "spread.csv",
        "claim.csv",
        "accuracy_vs_candidates.png",
        "spread_vs_time.png",
    ):
        assert (out / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "Tolerance sweep, J = 5" in printed and "Posterior spread against wall clock" in printed
    assert "best VI method against the best baseline" in printed
    # MAP on five worms at the tightest tolerance gets most labels right.
    best = [r for r in records if r["method"] == "map" and r["worms"] == 5 and r["nu"] == 0.01]
    assert best[0]["accuracy"] >= 0.8
    assert all(0 <= r["accuracy"] <= 1 and r["trace"] for r in records)

    # A rerun fits nothing: every point is read back.
    def refit(*a, **k):
        raise AssertionError("a stored point was fitted again")

    monkeypatch.setattr(E, "run_method", refit)
    cli.main(ARGS + ["--out", str(out), "--no-progress"])
    # Other settings, or a damaged file: a clear error, nothing overwritten.
    with pytest.raises(SystemExit, match="differing: budget"):
        cli.main(ARGS[:-4] + ["1.0"] + ARGS[-3:] + ["--out", str(out), "--no-progress"])
    (out / "points.json").write_text('{"format": 1, "config": ')
    with pytest.raises(SystemExit, match="not a readable results file.*--fresh"):
        cli.main(ARGS + ["--out", str(out), "--no-progress"])


def test_claim_compares_the_best_methods_seed_by_seed(tmp_path):
    """The claim table pairs the best VI method with the best baseline on the seeds both ran:
    a steady lead that the seeds' spread would hide in two separate standard errors is *above*,
    and a point lacking a baseline has no row."""
    config = {
        "worms": [5],
        "tolerances": [0.05, 0.1],
        "known": 0.1,
        "known_tolerances": [],
        "known_fractions": [],
        "known_worms": 1,
    }
    store = RecordStore(tmp_path / "points.json", config, R.KEY)
    level = [0.3, 0.5, 0.7, 0.9, 0.6]  # the data sets differ far more than the methods
    lead = [0.03, 0.02, 0.04, 0.03]
    for seed, base in enumerate(level):
        fits = {"naive": base - 0.1, "map": base, "mcmc-collapsed": base - 0.05}
        if seed < 4:
            fits["rounding"] = base + lead[seed]
        for method, acc in fits.items():
            for nu in config["tolerances"]:
                if nu == 0.1 and method not in R.VI_METHODS:
                    continue
                store.add(
                    {
                        "worms": 5,
                        "nu": nu,
                        "known": 0.1,
                        "seed": seed,
                        "method": method,
                        "accuracy": acc,
                        "candidates": 40.0,
                    }
                )
    rows = R.claim_rows(store)
    assert len(rows) == 1
    (row,) = rows
    assert (row["vi"], row["baseline"], row["seeds"]) == ("rounding", "map", 4)
    d = torch.tensor(lead, dtype=torch.float64)
    assert row["difference"] == pytest.approx(float(d.mean()))
    assert row["se"] == pytest.approx(float(d.std() / 2))
    assert row["vi_accuracy"] - row["baseline_accuracy"] == pytest.approx(float(d.mean()))
    # Unpaired, the lead is inside one standard error of either method's accuracy.
    spread = torch.tensor(level[:4], dtype=torch.float64).std() / 2
    assert row["difference"] < spread
    table = R.claim_table(rows)
    assert "| above |" in table and "rounding (" in table and "map (" in table


def test_workers_fit_the_same_data_sets_as_one_process(tmp_path):
    """Two fitting processes store every point once, each on the data set a serial run
    simulates (same candidates, same regression start), and a rerun of either resumes."""
    config = dict(R.REDUCED, n=20, seeds=1, budget=0.2, methods=["map", "naive"])
    config.update(tolerances=[0.05, 0.2], known_fractions=[0.0], known_tolerances=[0.2])
    serial = R.run(config, tmp_path / "serial", progress=False)
    parallel = R.run(config, tmp_path / "parallel", progress=False, workers=2, threads=1)
    # 2 worm counts x 2 tolerances, plus known = 0 at nu = 0.2, for J = 1; x 2 methods.
    assert len(serial.records) == len(parallel.records) == 10
    assert serial.records.keys() == parallel.records.keys()
    for key, r in serial.records.items():
        q = parallel.records[key]
        assert (q["candidates"], q["start_accuracy"], q["n"]) == (
            r["candidates"],
            r["start_accuracy"],
            r["n"],
        )
        assert 0 <= q["accuracy"] <= 1 and q["trace"]
    stored = json.loads((tmp_path / "parallel" / "points.json").read_text())["records"]
    assert len(stored) == 10
    again = R.run(config, tmp_path / "parallel", progress=False, workers=2, threads=1)
    assert again.records == parallel.records
    with pytest.raises(ValueError, match="workers must be at least 1"):
        R.run(config, tmp_path / "parallel", progress=False, workers=0)


def test_cli_rejects_bad_arguments():
    for bad in (
        ["--seeds", "0"],
        ["--budget", "-1"],
        ["--methods", "sorting"],
        ["--workers", "0"],
        ["--workers", "4096"],  # more workers than cores
    ):
        with pytest.raises(SystemExit):
            cli.parse_args(bad)


def test_unknown_method_in_run_method(tiny):
    with pytest.raises(ValueError, match="unknown method"):
        E.run_method("sorting", None, 1.0, 0)
    pyro.clear_param_store()


def test_device_cuda_is_refused_where_torch_has_no_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        cli.parse_args(["--device", "cuda"])
    assert "no CUDA device is available" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_method_runs_on_cuda_on_the_data_sets_of_the_cpu(tmp_path):
    """``--device cuda``: every method fits on the GPU, on the data sets a CPU run simulates
    (same candidates and regression start), and MAP on five worms still finds most labels."""
    config = dict(R.REDUCED, n=20, seeds=1, budget=0.5)
    config.update(tolerances=[0.01], known_fractions=[0.0], known_tolerances=[0.01])
    cpu = R.run(config, tmp_path / "cpu", progress=False)
    gpu = R.run(config, tmp_path / "cuda", progress=False, device="cuda")
    assert cpu.records.keys() == gpu.records.keys() and len(gpu.records) > 0
    methods = {r["method"] for r in gpu.records.values()}
    assert methods == set(config["methods"])
    for key, r in gpu.records.items():
        assert r["device"].startswith("cuda")
        assert r["candidates"] == cpu.records[key]["candidates"]
        assert abs(r["start_accuracy"] - cpu.records[key]["start_accuracy"]) <= 0.1
        assert 0 <= r["accuracy"] <= 1 and r["trace"]
    best = [r for r in gpu.records.values() if r["method"] == "map" and r["worms"] == 5]
    assert best and best[0]["accuracy"] >= 0.8
