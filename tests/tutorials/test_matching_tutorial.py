"""The matching tutorial: a tiny run produces well-formed outputs, resumes without redoing
work, refuses corrupt or mismatched results, and each family recovers an easy posterior."""

import csv
import json

import pytest
import torch

from tutorials.matching import experiment as E
from tutorials.matching.__main__ import main
from tutorials.matching.run import RESULTS_FILE, noise_floor_rows

TINY = [
    "--reps",
    "2",
    "--sigmas",
    "0.1",
    "--steps",
    "5",
    "--samples",
    "20",
    "--batch",
    "1",
    "--no-progress",
]


def read_summary(out):
    with (out / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_tiny_run_outputs_and_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out)])
    rows = read_summary(out)
    floor = [r for r in rows if r["method"].startswith("noise floor")]
    assert {r["method"] for r in rows} == set(E.METHODS) | {floor[0]["method"]}
    for r in rows:
        assert set(r) == {"method", "sigma", "mean", "stderr", "reps"}
        assert r["sigma"] == "0.1" and r["reps"] == "2" and 0 <= float(r["mean"]) <= 1
    table = (out / "table1.md").read_text()
    assert "stick-breaking" in table and "[0.09]" in table and "gumbel-sinkhorn" in table
    assert "| noise floor (" in table
    for name in ("figure2a_data.png", "figure2b_pmfs.png", "figure2c_densities.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = capsys.readouterr().out

    # A rerun finds every repetition done: nothing is fitted again, the table is the same.
    def fail(*args, **kwargs):
        raise AssertionError("a finished repetition was fitted again")

    monkeypatch.setattr(E, "fit_relaxation", fail)
    main(TINY + ["--out", str(out)])
    assert (out / "table1.md").read_text() == table
    assert capsys.readouterr().out.split("wall time")[0] == first.split("wall time")[0]


def test_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = TINY + ["--out", str(out), "--methods", "rounding", "mallows-1"]
    calls = {"n": 0}
    real = E.fit_relaxation

    def crash_on_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(E, "fit_relaxation", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    stored = json.loads((out / RESULTS_FILE).read_text())["records"]
    assert [(r["method"], r["rep"]) for r in stored] == [("rounding", 0)]
    monkeypatch.setattr(E, "fit_relaxation", real)
    main(args)
    stored = json.loads((out / RESULTS_FILE).read_text())["records"]
    assert sorted((r["method"], r["rep"]) for r in stored) == [
        ("mallows-1", 0),
        ("mallows-1", 1),
        ("rounding", 0),
        ("rounding", 1),
    ]
    # The resumed repetition equals a fresh run of it (each repetition has its own seeds).
    fresh = tmp_path / "fresh"
    main(TINY + ["--out", str(fresh), "--methods", "rounding", "mallows-1"])
    assert read_summary(fresh) == read_summary(out)


def test_corrupt_or_mismatched_results_are_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / RESULTS_FILE).write_text("{not json")
    with pytest.raises(SystemExit, match="not a valid results file"):
        main(TINY + ["--out", str(out), "--methods", "mallows-1"])
    main(TINY + ["--out", str(out), "--methods", "mallows-1", "--fresh"])
    with pytest.raises(SystemExit, match="other settings .*steps"):
        main(TINY + ["--out", str(out), "--methods", "mallows-1", "--steps", "6"])


@pytest.mark.parametrize("method", E.RELAXATIONS)
def test_each_family_recovers_an_easy_posterior(method):
    # SVI can end in a local optimum (a neighbouring vertex), so the property is that most
    # fits of an easy, concentrated posterior succeed: 3 of 4 within distance 0.3.
    problem = E.make_problem(0.05, [0, 1, 2, 3], seed=3, sigma_index=0)
    truth = E.exact_posteriors(problem)
    assert (truth.max(-1).values > 0.99).all()  # an easy, concentrated posterior
    pmfs = E.fit_relaxation(
        problem, method, E.DEFAULT_HYPER[method], 600, 0.1, 200, 0, final_lr=0.01
    )
    good = (E.distances(truth, pmfs) < 0.3) & (pmfs.argmax(-1) == truth.argmax(-1))
    assert good.sum() >= 3


def test_grid_search_over_one_method_keeps_the_other_methods_rows(tmp_path, monkeypatch):
    import tutorials.matching.__main__ as cli

    grid = [
        ("rounding", {"temperature": 0.5, "prior_eta": 0.3}),
        ("rounding", {"temperature": 0.7, "prior_eta": 0.5, "anneal_from": 0.9}),
        ("gumbel-sinkhorn", {"temperature": 1.0, "prior_temperature": 1.0}),
    ]
    monkeypatch.setattr(cli, "GRID", grid)
    tiny = ["--grid-search", "--reps", "2", "--sigmas", "0.1", "--steps", "3", "--samples", "10"]
    main(tiny + ["--no-progress", "--out", str(tmp_path)])
    with (tmp_path / "grid_search.csv").open() as f:
        first = list(csv.DictReader(f))
    assert [(r["method"], json.loads(r["hyper"])) for r in first] == grid
    for r in first:
        assert 0 <= float(r["sigma=0.1"]) <= 1 and r["average"] == r["sigma=0.1"]

    main(tiny + ["--methods", "rounding", "--no-progress", "--out", str(tmp_path)])
    with (tmp_path / "grid_search.csv").open() as f:
        second = list(csv.DictReader(f))
    # the Gumbel-Sinkhorn row is kept as it was, the rounding rows are searched again
    assert [r for r in second if r["method"] == "gumbel-sinkhorn"] == first[2:]
    assert [json.loads(r["hyper"]) for r in second if r["method"] == "rounding"] == [
        h for _, h in grid[:2]
    ]


def test_table_takes_the_papers_numbers_by_sigma_not_by_column():
    from tutorials.matching.run import markdown_table

    # Five sigmas, in another order than the paper's, one it did not run (0.3), one read back
    # with float rounding: each cell gets the paper's number at its own sigma, or none.
    sigmas = [0.75, 0.3, 0.5, 0.1 + 1e-12, 0.25]
    rows = [("mallows-1", s, 0.5, 0.01, 2) for s in sigmas]
    rows += [("gumbel-sinkhorn", s, 0.4, 0.01, 2) for s in sigmas]
    table = markdown_table(rows, sigmas)
    mallows = next(line for line in table.splitlines() if line.startswith("| mallows-1"))
    cells = [c.strip() for c in mallows.strip("|").split("|")[1:]]
    assert cells == [
        "0.50 ± 0.01 [0.71]",
        "0.50 ± 0.01",
        "0.50 ± 0.01 [0.61]",
        "0.50 ± 0.01 [0.51]",
        "0.50 ± 0.01 [0.53]",
    ]
    assert "[" not in table.split("| gumbel-sinkhorn")[1].splitlines()[0]


@pytest.mark.parametrize(
    "bad,message",
    [
        (["--lr", "0"], "--lr must be positive"),
        (["--lr=-0.1"], "--lr must be positive"),
        (["--final-lr", "0"], "--final-lr must be positive"),
        (["--final-lr=-1e-3"], "--final-lr must be positive"),
        (["--methods", "rounding", "mallows-1", "rounding"], "--methods lists rounding more"),
        (["--sigmas", "0.1", "0.25", "0.10"], "--sigmas lists 0.1 more than once"),
    ],
)
def test_bad_learning_rates_and_repeated_methods_or_sigmas_are_refused(
    tmp_path, capsys, monkeypatch, bad, message
):
    def fail(*args, **kwargs):
        raise AssertionError("fitted despite bad arguments")

    monkeypatch.setattr(E, "fit_relaxation", fail)
    monkeypatch.setattr(E, "mallows_pmfs", fail)
    with pytest.raises(SystemExit) as exc:
        main(TINY + ["--out", str(tmp_path / "run")] + bad)
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_zero_final_learning_rate_is_refused_not_read_as_no_decay():
    problem = E.make_problem(0.1, [0], seed=0, sigma_index=0)
    hyper = E.DEFAULT_HYPER["rounding"]
    with pytest.raises(ValueError, match="final_lr must be positive"):
        E.fit_relaxation(problem, "rounding", hyper, 2, 0.1, 10, 0, final_lr=0.0)


def test_interrupted_grid_search_keeps_finished_configurations_and_resumes(tmp_path, monkeypatch):
    import tutorials.matching.__main__ as cli

    grid = [
        ("rounding", {"temperature": 0.5, "prior_eta": 0.3}),
        ("gumbel-sinkhorn", {"temperature": 1.0, "prior_temperature": 1.0}),
    ]
    monkeypatch.setattr(cli, "GRID", grid)
    tiny = ["--grid-search", "--reps", "2", "--sigmas", "0.1", "0.5", "--steps", "3"]
    tiny += ["--samples", "10", "--no-progress"]
    out = tmp_path / "run"
    real = E.fit_relaxation
    calls = []

    def crash_on_third(*a, **k):
        calls.append((a[1], a[0].sigma))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(E, "fit_relaxation", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        main(tiny + ["--out", str(out)])
    # the two fits of the rounding configuration were stored as they finished
    stored = json.loads((out / "grid_search.json").read_text())["records"]
    assert [(r["method"], r["hyper"], r["sigma"]) for r in stored] == [
        ("rounding", grid[0][1], 0.1),
        ("rounding", grid[0][1], 0.5),
    ]
    calls.clear()
    main(tiny + ["--out", str(out)])
    assert calls == [("gumbel-sinkhorn", 0.1), ("gumbel-sinkhorn", 0.5)]  # only what was left
    # the resumed search writes what an uninterrupted one writes
    monkeypatch.setattr(E, "fit_relaxation", real)
    main(tiny + ["--out", str(tmp_path / "fresh")])
    assert (out / "grid_search.csv").read_text() == (
        tmp_path / "fresh" / "grid_search.csv"
    ).read_text()
    # other settings are refused, not mixed in; --fresh starts over
    with pytest.raises(SystemExit, match="other settings .*steps"):
        main(tiny + ["--out", str(out), "--steps", "4"])
    main(tiny + ["--out", str(out), "--steps", "4", "--fresh"])
    stored = json.loads((out / "grid_search.json").read_text())
    assert stored["config"]["steps"] == 4 and len(stored["records"]) == 4


def test_noise_floor_rows_are_the_sampling_error_of_exact_draws():
    # The same repetitions as the run; a concentrated posterior (small sigma) is resolved by
    # fewer draws than a spread one, and more draws lower the floor.
    config = {"sigmas": [0.1, 0.75], "reps": 6, "seed": 0, "samples": 200}
    rows = noise_floor_rows(config, repeats=5)
    assert [r[1] for r in rows] == [0.1, 0.75] and all(r[4] == 6 for r in rows)
    assert all(0 < r[2] < 1 for r in rows)
    assert rows[0][2] < rows[1][2]
    more = noise_floor_rows({**config, "samples": 5000}, repeats=5)
    assert all(m[2] < r[2] for m, r in zip(more, rows))
    assert more[0][0] == "noise floor (5000 exact draws)"


def test_stick_breaking_under_the_flat_prior_recovers_a_concentrated_posterior():
    # The FlatBirkhoff pairing of docs/choosing.rst: the ELBO stays finite and the fitted pmf
    # puts its mode on the exact posterior's mode.
    problem = E.make_problem(0.05, [0, 1], seed=3, sigma_index=0)
    truth = E.exact_posteriors(problem)
    hyper = {"temperature": 1.0, "prior": "flat", "init_scale": 0.1, "scale_range": [0.01, 0.3]}
    pmfs = E.fit_relaxation(problem, "stick-breaking", hyper, 400, 0.1, 200, 0, final_lr=0.01)
    assert torch.equal(pmfs.argmax(-1), truth.argmax(-1))


def test_an_unknown_stick_breaking_prior_is_refused():
    problem = E.make_problem(0.1, [0], seed=0, sigma_index=0)
    with pytest.raises(ValueError, match="hyper\\['prior'\\] must be 'rounding'.*or 'flat'"):
        E.fit_relaxation(
            problem, "stick-breaking", {"temperature": 1.0, "prior": "x"}, 1, 0.1, 5, 0
        )


def test_pairings_table_keeps_the_best_setting_of_every_guide_and_prior():
    from tutorials.matching.pairings import pairings_markdown

    def row(method, hyper, d1, d2):
        return {
            "method": method,
            "hyper": json.dumps(hyper),
            "sigma=0.1": str(d1),
            "sigma=0.5": str(d2),
            "average": str((d1 + d2) / 2),
        }

    rows = [
        row("stick-breaking", {"temperature": 1.0, "prior_eta": 0.3}, 0.2, 0.4),
        row("stick-breaking", {"temperature": 0.3, "prior_eta": 0.3}, 0.1, 0.3),
        row("stick-breaking", {"temperature": 1.0, "prior": "flat"}, 0.05, 0.25),
        row("gumbel-sinkhorn", {"temperature": 1.0, "prior_temperature": 0.3}, 0.3, 0.5),
        row("gumbel-sinkhorn", {"temperature": 1.0, "prior_temperature": 1.0}, 0.6, 0.8),
    ]
    table = pairings_markdown(rows, [0.1, 0.5], 20, "python -m x")
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    body = [line.split(" | ")[:5] for line in lines[1:]]
    assert body == [
        ["| StickBreakingBirkhoff", "FlatBirkhoff", "0.05", "0.25", "0.15"],
        ["| StickBreakingBirkhoff", "RoundingPrior(eta=0.3)", "0.10", "0.30", "0.20"],
        ["| GumbelSinkhorn", "GumbelSinkhorn(0, tau=0.3)", "0.30", "0.50", "0.40"],
        ["| GumbelSinkhorn", "GumbelSinkhorn(0, tau=1)", "0.60", "0.80", "0.70"],
    ]
    assert '{"temperature": 0.3}' in lines[2] and "`python -m x`" in table


def test_a_change_of_one_methods_hyper_parameters_refits_that_method_only(tmp_path, capsys):
    from tutorials.matching.store import ResultsFileError, ResultsStore

    hyper = {"rounding": {"temperature": 0.9}, "stick-breaking": {"temperature": 1.0}}
    config = {"sigmas": [0.1], "methods": ["rounding", "stick-breaking"], "steps": 5}
    path = tmp_path / RESULTS_FILE
    store = ResultsStore(path, {**config, "hyper": hyper})
    records = [
        {"method": m, "sigma": 0.1, "rep": r, "distance": 0.5, "seconds": 1.0}
        for m in config["methods"]
        for r in (0, 1)
    ]
    store.add(records, {"0.1/rounding": [1.0], "0.1/stick-breaking": [1.0], "0.1/truth": [1.0]})

    changed = {**hyper, "stick-breaking": {"temperature": 1.0, "prior": "flat"}}
    again = ResultsStore(path, {**config, "hyper": changed})
    assert again.done("rounding", 0.1) == {0, 1}
    assert again.done("stick-breaking", 0.1) == set()
    assert set(again.examples) == {"0.1/rounding", "0.1/truth"}
    assert "hyper-parameters of stick-breaking changed" in capsys.readouterr().err
    # Any other difference is still refused, hyper-parameters or not.
    with pytest.raises(ResultsFileError, match="other settings .*steps"):
        ResultsStore(path, {**config, "steps": 6, "hyper": changed})
