"""The data-association tutorial: its model against exact enumeration, a tiny end-to-end run,
resume and a corrupt store."""

import csv

import pytest
import torch

from pyro_permutations.infer import exact_posterior
from pyro_permutations.ops import all_partial_perms
from tutorials.association import model as A
from tutorials.association import run as R
from tutorials.checkpoint import CheckpointError

TINY = dict(
    R.CONFIG,
    small_k=[2],
    frames=1,
    seeds=2,
    large_k=[5],
    large_frames=1,
    large_seeds=1,
    steps=10,
    samples=100,
)
ARGS = (0.8, 0.05, 0.5)  # p_detect, clutter_rate, sigma


def frames(k, count, p_detect=0.8, clutter_rate=0.05, sigma=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return A.simulate_frames(k, count, p_detect, clutter_rate, sigma, 0.5, generator)


def test_simulated_truth_points_at_nearby_detections():
    for frame in frames(6, 3, sigma=0.05):
        truth = frame["truth"]
        matched = truth >= 0
        assert len(set(truth[matched].tolist())) == int(matched.sum())  # distinct columns
        gap = frame["objects"][matched] - frame["detections"][truth[matched]]
        assert float(gap.norm(dim=-1).max()) < 0.05 * A.GATE


def test_map_is_truth_without_clutter_or_misses_at_low_noise():
    for seed in range(3):
        for frame in frames(12, 2, p_detect=1.0, clutter_rate=0.0, sigma=0.01, seed=seed):
            assert frame["detections"].shape[0] == 12
            assert torch.equal(A.exact_map(frame, 1.0, 0.0, 0.01), frame["truth"])


def test_relaxed_model_has_the_discrete_posterior_and_map():
    """At the partial permutation matrices, with a uniform prior, the relaxed model's
    posterior is the discrete model's; the exact MAP (Hungarian with dummy rows) is its mode."""
    for frame in frames(3, 3, seed=4):
        discrete = exact_posterior(A.discrete_model, "a", frame, *ARGS)
        relaxed = exact_posterior(A.relaxed_model, "P", frame, *ARGS, prior="uniform")
        assert torch.allclose(discrete, relaxed, atol=1e-10)
        table = all_partial_perms(3, frame["detections"].shape[0])
        assert torch.equal(table[discrete.argmax()], A.exact_map(frame, *ARGS))


def test_tiny_run_end_to_end_and_resume(tmp_path, monkeypatch):
    store = R.run(TINY, tmp_path, progress=False)
    assert len(store.records) == 3
    rows = R.summarize(store)
    assert [(r["kind"], r["K"]) for r in rows] == [("small", 2), ("large", 5)]
    small, large = rows
    assert 0 <= small["hellinger"] <= 1 and 0 <= small["floor"] <= 1
    assert small["floor"] > 0  # 100 draws of a pmf with several outcomes
    for field in ("guide_vs_map", "guide_vs_truth", "map_vs_truth"):
        assert 0 <= large[field] <= 1
    R.write_table(rows, tmp_path, "test")
    assert R.write_figure(store, tmp_path).exists()
    with open(tmp_path / "summary.csv") as f:
        assert [r["kind"] for r in csv.DictReader(f)] == ["small", "large"]
    assert "| small | 2 | 2 |" in (tmp_path / "table.md").read_text()

    def refit(*args):
        raise AssertionError("a stored point was fitted again")

    monkeypatch.setattr(R, "run_small", refit)
    monkeypatch.setattr(R, "run_large", refit)
    again = R.run(TINY, tmp_path, progress=False)
    assert again.records == store.records
    with pytest.raises(CheckpointError, match="other settings"):
        R.run(dict(TINY, steps=11), tmp_path, progress=False)


def test_corrupt_store_is_refused(tmp_path):
    (tmp_path / R.RESULTS_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        R.run(TINY, tmp_path, progress=False)
    from tutorials.association.__main__ import main

    with pytest.raises(SystemExit, match="corrupt"):
        main(["--out", str(tmp_path), "--no-progress"])
