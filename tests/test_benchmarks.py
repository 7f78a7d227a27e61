"""The benchmark runner's command line (``python -m benchmarks``): a thread count below one is
refused, and one given is set and recorded, without running any real benchmark."""

import types

import pytest
import torch

import benchmarks.__main__ as B
import benchmarks._common as C


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


def test_fastest_peer_verdict_decides_with_lower_bounds():
    """A peer that hit its cap unconverged gives a lower bound of its ratio: it decides "met"
    when that bound reaches the target and leaves the verdict undecided otherwise; a converged
    peer below the target is a miss, whatever the capped ones say."""
    v = C.fastest_peer_verdict
    assert v(1.0, True, {"a": (6.0, False), "b": (9.0, True)}, 5.0).endswith(">6.0x (met)")
    assert "undecided" in v(1.0, True, {"a": (3.0, False), "b": (9.0, True)}, 5.0)
    assert "MISSED: 2.5x short" in v(1.0, True, {"a": (2.0, True), "b": (1.5, False)}, 5.0)
    assert v(2.0, True, {"a": (20.0, True)}, 5.0).endswith(": 10.0x (met)")
    assert "ours did not reach" in v(1.0, False, {"a": (60.0, True)}, 5.0)
    assert "no peer ran" in v(1.0, True, {}, 5.0)
