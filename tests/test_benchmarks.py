"""The benchmark runner's command line (``python -m benchmarks``): a thread count below one is
refused, and one given is set and recorded, without running any real benchmark."""

import types

import pytest
import torch

import benchmarks.__main__ as B


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_threads_below_one_are_refused(threads, capsys):
    with pytest.raises(SystemExit) as exc:
        B.parse_args([f"--threads={threads}"])
    assert exc.value.code == 2 and "--threads must be at least 1" in capsys.readouterr().err


def test_threads_given_are_set_and_recorded(tmp_path, monkeypatch):
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    fake = types.SimpleNamespace(run=lambda quick, log: "- nothing measured")
    monkeypatch.setattr(B, "SECTIONS", {"fake": ("A fake section", fake)})
    out = tmp_path / "results.md"
    B.main(["--quick", "--threads", "1", "--out", str(out)])
    assert set_to == [1]
    assert "- torch threads set to 1 by `--threads`" in out.read_text()
    set_to.clear()
    B.main(["--quick", "--out", str(out)])  # left out: torch's default, untouched
    assert set_to == [] and "by `--threads`" not in out.read_text()
