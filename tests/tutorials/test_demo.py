"""The operators demo: its table reports what the solver did; bad options are refused."""

import pytest

import tutorials.demo.__main__ as demo


def table_rows(out):
    """The markdown table of ``out`` as dicts from column header to cell."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]
    ]


def test_table_counts_sweeps_and_newton_steps(capsys, monkeypatch):
    """Each count column is the mean of the matching ``SinkhornInfo`` count over the problems
    (the Newton column once showed every iteration, plain sweeps included), and sweeps plus
    Newton steps are at most the iterations."""
    infos = []
    solve = demo.log_sinkhorn

    def recording(*args, **kwargs):
        out = solve(*args, **kwargs)
        if kwargs.get("return_info"):
            infos.append(out[1])
        return out

    monkeypatch.setattr(demo, "log_sinkhorn", recording)
    demo.main(["--n", "5", "--batch", "16", "--seed", "1"])
    rows = table_rows(capsys.readouterr().out)
    assert len(rows) == len(infos) == 6
    for row, info in zip(rows, infos):
        counts = {
            "iterations (mean)": info.iterations,
            "of which plain sweeps": info.sweeps,
            "of which Newton steps": info.newton_steps,
        }
        for column, count in counts.items():
            assert row[column] == f"{count.double().mean().item():.1f}"
        assert (info.sweeps + info.newton_steps <= info.iterations).all()
    assert float(rows[0]["of which Newton steps"]) < float(rows[0]["iterations (mean)"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--n", "0"], "--n must be at least 1"),
        (["--n", "-3"], "--n must be at least 1"),
        (["--batch", "0"], "--batch must be at least 1"),
        (["--noise", "nan"], "--noise must be a finite"),
        (["--noise", "-1"], "--noise must be a finite"),
    ],
)
def test_bad_options_are_usage_errors(argv, message, capsys):
    """An argparse error (exit status 2, the option named), not a traceback from torch."""
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
