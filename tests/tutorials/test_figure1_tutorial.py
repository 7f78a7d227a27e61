"""The Figure 1 tutorial: a tiny run writes a readable PNG; bad options are refused."""

import pytest

from tutorials.figure1.__main__ import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_tiny_run_writes_a_png(tmp_path, capsys):
    out = tmp_path / "fig"
    path = main(
        ["--out", str(out), "--samples", "20", "--temperatures", "0.5", "0.1", "--grid", "10"]
        + ["--seed", "3", "--dpi", "40"]
    )
    assert path == out / "figure1.png" and path.read_bytes()[:8] == PNG_SIGNATURE
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > image.shape[0]
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["--temperatures", "1.0"], ["--samples", "0"], ["--grid", "2"], ["--bogus"]]
)
def test_bad_options_exit(argv, tmp_path):
    with pytest.raises(SystemExit):
        main(argv + ["--out", str(tmp_path)])


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--temperatures" in capsys.readouterr().out
