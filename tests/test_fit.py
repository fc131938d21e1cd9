"""Real inference: slow, run with --runslow and always in CI."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from truecount import load_case, load_spec
from truecount.cli import main
from truecount.inference.diagnostics import gate
from truecount.inference.fitter import Fitter, StructureError
from truecount.model.simulate import simulate


def test_fit_cli_refuses_bad_input_before_sampling(capsys, tmp_path, kss_path):
    code = main(["fit", str(kss_path), "--spec", str(tmp_path / "nope.toml")])
    assert code == 2
    assert "nope.toml: found no such file" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine", encoding="utf-8")
    code = main(["fit", str(kss_path), "--out", str(tmp_path / "full")])
    assert code == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text(encoding="utf-8") == "mine"


@pytest.mark.slow
def test_kss_fit_passes_the_gate_and_writes_the_run(capsys, tmp_path, kss_path):
    out = tmp_path / "kss"
    code = main(["fit", str(kss_path), "--out", str(out), "--seed", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Diagnostics gate PASSED" in captured.out
    assert "True enrolments by the end of the drive" in captured.out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["gate_passed"] is True and summary["stamp"] is None
    assert summary["conflicts"] == []  # no prior-data conflict (tests/test_conflict.py)
    headline = summary["true_enrolments"]
    assert 0 < headline["lower"] < headline["median"] < headline["upper"]
    # 49,000 registrations cannot fit through six lines in five days.
    final = next(c for c in summary["claims"] if c["id"] == "final_49000")
    assert final["p_possible"] < 0.01
    tree = xr.open_datatree(out / "posterior.nc", engine="h5netcdf")
    assert {"posterior", "sample_stats", "prior", "prior_predictive", "posterior_predictive",
            "observed_data", "constant_data"} <= set(tree.children)
    for key in ("truecount_version", "pymc_version", "pytensor_version", "arviz_version",
                "nutpie_version", "seed", "case_sha256", "spec_sha256"):
        assert key in tree.attrs
    assert tree.attrs["case_sha256"] == load_case(kss_path).sha256
    assert tree.attrs["gate_passed"] == 1


@pytest.fixture(scope="module")
def kss_fitter():
    from tests.conftest import BASELINE, KSS
    return Fitter.for_case(load_case(KSS), load_spec(BASELINE))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_parameter_recovery(kss_fitter, seed):
    params = {"handle_time": np.array([4.0]), "attended_share": np.array([0.8]),
              "peak_load_per_line": np.array([5.0]), "daily_retention": np.array([0.7]),
              "enrol_share": np.array([0.5]), "claim_noise": 0.1, "honest_probability": 0.3,
              "counts_attempts_probability": 0.3, "report_bias_odds": 3.0}
    from tests.conftest import KSS
    sim = simulate(load_case(KSS), kss_fitter.spec, np.random.default_rng(seed), params)
    tree = kss_fitter.fit(sim.case, draws=1000, tune=1000, chains=2, seed=seed)
    post = tree["posterior"].to_dataset()
    lo, hi = np.quantile(post["true_enrolments_total"].values, [0.025, 0.975])
    truth = sim.truth["true_enrolments_total"]
    assert lo <= truth <= hi, (lo, truth, hi)
    lo, hi = np.quantile(post["failed_share"].values, [0.025, 0.975])
    assert lo <= sim.truth["failed_share"][0] <= hi
    assert gate(tree).divergences == 0


@pytest.mark.slow
def test_refits_reuse_the_compiled_model_and_reproduce(kss_fitter, kss_path):
    kss_fitter.prepare(draws=200, tune=200)  # for the JAX sampler, per settings
    a = kss_fitter.fit(draws=200, tune=200, chains=2, seed=4)
    b = kss_fitter.fit(load_case(kss_path), draws=200, tune=200, chains=2, seed=4)
    assert a.attrs["compile_seconds"] == 0 and b.attrs["compile_seconds"] == 0
    for name in ("handle_time", "true_enrolments_total", "inflation_factor"):
        np.testing.assert_array_equal(a["posterior"][name].values, b["posterior"][name].values)
    np.testing.assert_array_equal(a["posterior_predictive"]["claim_value"].values,
                                  b["posterior_predictive"]["claim_value"].values)


def test_fitter_refuses_another_structure(kss_path, baseline_path, tmp_path):
    text = kss_path.read_text(encoding="utf-8").replace('counts = "unclear"', 'counts = '
                                                        '"registrations"')
    other = tmp_path / "clear.toml"
    other.write_text(text, encoding="utf-8")
    spec = load_spec(baseline_path)
    fitter = Fitter.for_case(load_case(kss_path), spec)
    with pytest.raises(StructureError, match="another model structure"):
        fitter.fit(load_case(other))


def test_another_line_count_is_data_not_structure(kss_path, baseline_path, tmp_path):
    # The Erlang-B recursion runs as one compiled operation whose line count is data: a model
    # compiled for 6 lines fits 156 without compiling again.
    text = kss_path.read_text(encoding="utf-8").replace("servers = 6", "servers = 156")
    other = tmp_path / "many.toml"
    other.write_text(text, encoding="utf-8")
    fitter = Fitter.for_case(load_case(kss_path), load_spec(baseline_path))
    inputs = fitter.inputs_for(load_case(other))
    assert inputs["servers"].tolist() == [156]


class _Fitter:
    """Records the settings of each fit; the gate is replaced to fail the first."""

    def __init__(self):
        self.calls = []

    def fit(self, case=None, **settings):
        self.calls.append(settings)
        return xr.DataTree()


@pytest.mark.parametrize(("divergences", "changed"), [(2, ("target_accept", 0.99)),
                                                      (0, ("draws", 400))])
def test_a_fit_that_fails_the_gate_is_refitted_once_and_says_why(monkeypatch, divergences,
                                                                 changed):
    import truecount.inference.diagnostics
    from truecount.inference.fitter import fit_gated

    verdicts = iter([SimpleNamespace(passed=False, divergences=divergences),
                     SimpleNamespace(passed=True, divergences=0)])
    monkeypatch.setattr(truecount.inference.diagnostics, "gate", lambda tree: next(verdicts))
    fitter, said = _Fitter(), []
    _, verdict, note = fit_gated(fitter, draws=200, tune=100, chains=2, seed=0,
                                 target_accept=0.95, say=said.append)
    assert verdict.passed and len(fitter.calls) == 2
    key, value = changed
    assert fitter.calls[1][key] == value and fitter.calls[0][key] != value
    assert {k: v for k, v in fitter.calls[1].items() if k != key} == {
        k: v for k, v in fitter.calls[0].items() if k != key}  # the same seed and the rest
    why = "2 divergent transitions" if divergences else "low ESS or high R-hat"
    assert note == f"refit after the first failed the gate ({why})"
    assert len(said) == 1 and why in said[0]


def test_no_retry_fits_once(monkeypatch):
    import truecount.inference.diagnostics
    from truecount.inference.fitter import fit_gated

    monkeypatch.setattr(truecount.inference.diagnostics, "gate",
                        lambda tree: SimpleNamespace(passed=False, divergences=1))
    fitter = _Fitter()
    _, verdict, note = fit_gated(fitter, draws=200, tune=100, chains=2, seed=0, retry=False)
    assert not verdict.passed and note == "" and len(fitter.calls) == 1


def test_divergences_after_the_refit_advise_smaller_steps_not_more_draws(capsys, tmp_path,
                                                                          kss_path, monkeypatch):
    import truecount.cli as cli

    verdict = SimpleNamespace(passed=False, divergences=2, text="Diagnostics gate FAILED: 2 "
                              "divergent transitions")
    analysis = SimpleNamespace(tree=xr.DataTree(), verdict=verdict, summary=None)
    monkeypatch.setattr(cli, "_fit_case", lambda *a, **k: analysis)
    code = main(["fit", str(kss_path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 3 and "--target-accept 0.995" in err and "more --draws" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_366_day_campaign_fits_behind_the_gate(capsys, tmp_path, kss_path):
    # Fading demand over a year reaches offered loads of 1e-80 Erlangs: the blocking's gradient
    # was NaN there (4,178 divergences, exit 3). Now it fits (a refit at smaller steps allowed).
    text = kss_path.read_text(encoding="utf-8")
    for old, new in (("start = 2021-11-19", "start = 2021-01-01"),
                     ("end = 2021-11-25", "end = 2022-01-01"),
                     ("first_day = 2021-11-21", "first_day = 2021-01-01"),
                     ("last_day = 2021-11-25", "last_day = 2022-01-01")):
        assert old in text
        text = text.replace(old, new, 1)
    case = tmp_path / "year.toml"
    case.write_text(text, encoding="utf-8")
    code = main(["fit", str(case), "--out", str(tmp_path / "run"), "--no-report"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Diagnostics gate PASSED" in out
    ds = load_case(case).to_dataset()
    assert ds.sizes["day"] == 366


def test_the_compile_message_says_what_this_machine_measured(tmp_path, monkeypatch, kss_path,
                                                            baseline_path):
    from truecount.cli import _compile_estimate
    from truecount.inference.fitter import _remember_compile_seconds, compile_times_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    fitter = Fitter.for_case(load_case(kss_path), load_spec(baseline_path))
    assert fitter.expected_compile_seconds() is None
    assert "not timed on this machine yet" in _compile_estimate(fitter, 2000, 1000)
    _remember_compile_seconds(fitter._settings_key(2000, 1000), 12.34)
    assert compile_times_file().parent == tmp_path / "truecount"
    assert _compile_estimate(fitter, 2000, 1000) == "12 s last time on this machine"
    # The JAX programs depend on the tuning steps and the draws per call: other settings,
    # other compile; a refit with twice the draws runs the same programs.
    assert "not timed" in _compile_estimate(fitter, 2000, 500)
    assert _compile_estimate(fitter, 4000, 1000) == "12 s last time on this machine"
    other = Fitter.for_case(load_case(kss_path, ["round_the_clock"]), load_spec(baseline_path))
    assert other.structure_key() == fitter.structure_key()  # a reading changes data, not code
    compile_times_file().write_text("not json", encoding="utf-8")
    assert fitter.expected_compile_seconds() is None  # a damaged file is no estimate, no error


def test_quiet_says_nothing_while_fitting(capsys, tmp_path, kss_path, monkeypatch):
    import truecount.cli as cli
    import truecount.inference.fitter as inference

    monkeypatch.setattr(inference.Fitter, "expected_compile_seconds", lambda self, *a: None)

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    monkeypatch.setattr(inference, "fit_gated", stop)
    for quiet, said in ((False, True), (True, False)):
        with pytest.raises(Stop):
            cli._fit_case(load_case(kss_path), load_spec("baseline"), None, seed=0, draws=100,
                          tune=100, chains=1, quiet=quiet)
        assert ("compiling the model first" in capsys.readouterr().err) is said
