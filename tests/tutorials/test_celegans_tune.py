"""The VI tuning study: every change touches a hyper-parameter its method has, a run on a small
subset stores one record per (method, setting) and MAP, a rerun refits nothing, and the report
of an empty folder says what to do."""

import pytest

from tutorials.celegans import tune
from tutorials.celegans.model import DEFAULT_HYPER, VI_METHODS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method", VI_METHODS)
def test_settings_change_only_the_methods_own_keys(method):
    names = [name for name, _ in tune.settings_for(method, tune.CHANGES)]
    assert names[0] == "default" and "anneal 0.9 -> default" in names
    for name, change in tune.settings_for(method, tune.CHANGES):
        keys = set(change) - {"anneal_from", "anneal_fraction"}
        assert keys <= set(tune.BASE_HYPER[method]), name
    # the rounding guide's scale interval is rounding's alone
    assert ("scale in [0.01, 0.1]" in names) == (method == "rounding")


def test_base_has_every_hyper_parameter_of_the_defaults():
    for method in VI_METHODS:
        assert set(tune.BASE_HYPER[method]) == set(DEFAULT_HYPER[method]), method


def test_anneal_schedule_reaches_the_default_after_its_steps():
    change = tune.CHANGES["anneal 0.9 -> default"]
    assert round(change["anneal_fraction"] * tune.E.MAX_STEPS) == tune.ANNEAL_STEPS


def test_run_stores_every_setting_and_resumes_without_refitting(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "CHANGES", {k: tune.CHANGES[k] for k in ("default", "lr 0.2")})
    store = tune.run(1, [0.05], [0], 0.2, tmp_path, progress=False, methods=["naive"], n=20)
    keys = {(r["method"], r["setting"]) for r in store.records.values()}
    assert keys == {("map", "-"), ("naive", "default"), ("naive", "lr 0.2")}
    for r in store.records.values():
        assert 0.0 <= r["accuracy"] <= 1.0 and r["steps"] >= 1

    def refit(*args, **kwargs):
        raise AssertionError("a stored fit was refitted")

    monkeypatch.setattr(tune, "fit_vi", refit)
    monkeypatch.setattr(tune.E, "run_method", refit)
    again = tune.run(1, [0.05], [0], 0.2, tmp_path, progress=False, methods=["naive"], n=20)
    assert again.records == store.records
    text = tune.table([again])
    assert "N = 20" in text and "| naive | lr 0.2 |" in text


def test_report_of_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="no results"):
        tune.main(["--report", "--out", str(tmp_path)])
