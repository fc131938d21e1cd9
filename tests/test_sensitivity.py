import json

import numpy as np
import pytest

from truecount.errors import InputError
from truecount.inference.results import Interval
from truecount.inputs.spec import load_spec
from truecount.workflows.sensitivity import (
    Alternative,
    Row,
    conclusions,
    load_outputs,
    parse_alternative,
    plan,
    run_sensitivity,
    spec_text,
    write_outputs,
)


def row(name, upper, p_possible, passed=True):
    iv = Interval(upper / 3, upper / 10, upper, 0.9)
    claims = {"c1": {"value": 23_000, "inflation": iv, "p_possible": p_possible,
                     "p_possible_text": "x"}}
    return Row(name, (), "baseline", passed, iv, claims)


def test_parse_alternative():
    assert parse_alternative("reading:a+spec:wide") == Alternative("reading:a+spec:wide", ("a",),
                                                                   "wide")
    assert parse_alternative("spec:x").spec == "x"
    alt = parse_alternative("prior:handle_time=1-30@0.95+structure:honest_claims=False")
    assert alt.priors == (("handle_time", 1.0, 30.0, 0.95),)
    assert alt.structure == (("honest_claims", "false"),) and alt.generated
    for bad, says in [("hours:24", "reading:NAME"), ("prior:speed=1-2", "not a model parameter"),
                      ("prior:handle_time=30-1", "LOWER < UPPER"),
                      ("prior:handle_time=1-3@2", "@MASS"), ("structure:demand=wavy", "demand"),
                      ("structure:colour=red", "a switch of")]:
        with pytest.raises(InputError, match="--vary") as err:
            parse_alternative(bad)
        assert says in str(err.value) and "\n" not in str(err.value)


def test_command_line_alternatives_become_specs_that_extend_the_base(tmp_path):
    alt = parse_alternative("prior:handle_time=1-30+prior:claim_noise=0.01-0.5"
                            "+structure:honest_claims=false")
    path = tmp_path / "alt.toml"
    path.write_text(spec_text(alt, "baseline"), encoding="utf-8")
    spec, base = load_spec(path), load_spec("baseline")
    handle = spec.priors["handle_time"].scipy()
    assert handle.cdf(1.0) == pytest.approx(0.05) and handle.cdf(30.0) == pytest.approx(0.95)
    assert spec.priors["claim_noise"].dist == base.priors["claim_noise"].dist
    assert spec.structure["honest_claims"] is False
    # Everything else is the base spec's.
    assert spec.priors["attended_share"] == base.priors["attended_share"]
    assert spec.structure["demand"] == base.structure["demand"]


def test_plan_checks_every_input_and_skips_missing_readings(tmp_path, kss_path):
    said = []
    plans = plan(kss_path, "baseline", ("reading:nope", "reading:round_the_clock",
                                        "prior:handle_time=1-20"), tmp_path, said.append)
    assert [p[0] for p in plans] == ["baseline", "reading:round_the_clock",
                                     "prior:handle_time=1-20"]
    assert said == ["skipping reading:nope: the case defines no such reading"]
    assert (tmp_path / "prior_handle_time_1-20.toml").exists()
    with pytest.raises(InputError):
        plan(kss_path, "baseline", ("spec:does_not_exist",), tmp_path)
    with pytest.raises(InputError, match="nope"):  # a reading the user named must exist
        plan(kss_path, "baseline", ("reading:nope",), tmp_path, strict=True)


def test_cli_refuses_bad_alternatives_and_too_few_draws(kss_path, tmp_path, capsys):
    from truecount.cli import main

    for args in (["--vary", "reading:nope"], ["--vary", "prior:handle_time=5-1"],
                 ["--draws", "5"]):
        assert main(["sensitivity", str(kss_path), "--out", str(tmp_path / "s"), *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("truecount: error: ")
    assert not (tmp_path / "s").exists()


def test_conclusions_name_what_changes_and_leave_out_unconverged():
    same = conclusions([row("baseline", 5_000, 0.0), row("alt", 9_000, 0.01)])
    assert same[0].startswith("Claim c1 was not physically possible")
    assert same[1].startswith("The upper end of every interval")
    changed = conclusions([row("baseline", 5_000, 0.0), row("alt", 30_000, 0.2),
                           row("bad", 1e6, 0.9, passed=False)])
    assert any(line.startswith("CHANGES: claim c1") and "alt" in line for line in changed)
    assert any("reaches the smallest claim" in line for line in changed)
    assert changed[-1].startswith("UNCONVERGED, left out") and "bad" in changed[-1]


def test_outputs_round_trip_and_are_written_whole(tmp_path):
    rows = [row("baseline", 5_000, 0.0), row("alt", 30_000, 0.2, passed=False)]
    out = tmp_path / "sens"
    write_outputs(out, rows, {"case_sha256": "abc", "seed": 3})
    back, meta = load_outputs(out)
    assert back == rows and meta == {"case_sha256": "abc", "seed": 3,
                                     "conclusions": conclusions(rows)}
    assert sorted(p.name for p in out.iterdir()) == ["forest.png", "sensitivity.csv",
                                                     "sensitivity.json", "sensitivity.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["sens"]  # no temporary folder left
    (out / "sensitivity.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match=r"sensitivity\.json: rows: found unreadable"):
        load_outputs(out)
    with pytest.raises(InputError, match=r"no sensitivity\.json"):
        load_outputs(tmp_path)


@pytest.mark.slow
def test_sensitivity_on_dask_workers(kss_path, tmp_path):
    rows = run_sensitivity(kss_path, alternatives=("reading:round_the_clock",
                                                   "prior:handle_time=3-7"),
                           draws=300, tune=300, chains=2, seed=1, workers=2, spec_dir=tmp_path,
                           retry=False)
    assert [r.name for r in rows] == ["baseline", "reading:round_the_clock",
                                      "prior:handle_time=3-7"]
    # Round the clock more than doubles the line-hours: the truth can be larger.
    assert rows[1].true_enrolments.upper > rows[0].true_enrolments.upper
    assert rows[2].spec == "baseline-prior_handle_time_3_7"
    # Same seed, in this process instead: the same numbers (workers change nothing).
    again = run_sensitivity(kss_path, alternatives=("reading:round_the_clock",), draws=300,
                            tune=300, chains=2, seed=1, workers=1, retry=False)
    assert again == rows[:2]


@pytest.mark.slow
def test_cli_sensitivity_and_report_section(kss_path, tmp_path, capsys):
    from truecount.cli import main

    run, sens = tmp_path / "run", tmp_path / "sens"
    main(["fit", str(kss_path), "--out", str(run), "--draws", "200", "--tune", "200",
          "--chains", "2", "--allow-unconverged", "--no-report"])
    code = main(["sensitivity", str(kss_path), "--vary", "structure:honest_claims=false",
                 "--draws", "200", "--tune", "200", "--chains", "2", "--workers", "1",
                 "--out", str(sens)])
    assert (sens / "specs" / "structure_honest_claims_false.toml").exists()
    data = json.loads((sens / "sensitivity.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in data["rows"]] == ["baseline", "structure:honest_claims=false"]
    # A fit that failed the gate was refitted once (the row says how); the exit code says
    # whether any row still fails.
    for r in data["rows"]:
        assert r["gate_passed"] or "refit after the first failed the gate" in r["fit"]
        assert r["fit"].startswith("2 x ")
    assert code == (0 if all(r["gate_passed"] for r in data["rows"]) else 3)
    assert main(["sensitivity", str(kss_path), "--out", str(sens)]) == 2  # never overwritten
    assert "--force" in capsys.readouterr().err
    main(["report", str(run), "--sensitivity", str(sens)])
    md = (run / "report.md").read_text(encoding="utf-8")
    assert "refitted under 1 alternatives" in md and "| gate | fit |" in md
    assert "Power-scaling sensitivity of this fit" in md
    assert "| true_enrolments_total |" in md
    assert "figures/sensitivity.png" in md
    other = tmp_path / "other.toml"
    other.write_text(kss_path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    data["case_sha256"] = "0" * 64
    (sens / "sensitivity.json").write_text(json.dumps(data), encoding="utf-8")
    assert main(["report", str(run), "--sensitivity", str(sens)]) == 2
    assert "made from another case file" in capsys.readouterr().err


@pytest.mark.slow
def test_log_densities_equal_pymc_and_feed_psense(kss_path):
    import pymc as pm

    from truecount import load_case
    from truecount.inference.analysis import power_scaling
    from truecount.inference.fitter import Fitter

    fitter = Fitter.for_case(load_case(kss_path), load_spec("baseline"))
    tree = fitter.fit(draws=200, tune=200, chains=2, seed=3)
    prior = pm.stats.compute_log_prior(tree.copy(), model=fitter.model,
                                       extend_inferencedata=False, progressbar=False)
    like = pm.stats.compute_log_likelihood(tree.copy(), model=fitter.model,
                                           extend_inferencedata=False, progressbar=False)
    ours_prior, ours_like = tree["log_prior"].to_dataset(), tree["log_likelihood"].to_dataset()
    assert set(prior.data_vars) == set(ours_prior.data_vars)
    for name in prior.data_vars:
        np.testing.assert_allclose(ours_prior[name].values, prior[name].values, rtol=1e-6,
                                   atol=1e-8)
    np.testing.assert_allclose(ours_like["evidence_reports_failed"].values,
                               like["evidence_reports_failed"].values, rtol=1e-9)
    # The claims' Potential, summed, is the claims' log likelihood.
    np.testing.assert_allclose(ours_like["claim_value"].sum("claim").values,
                               tree["posterior"]["claim_loglik"].sum("claim").values)
    table = power_scaling(tree)
    assert {"true_enrolments_total", "inflation_factor[final_49000]",
            "handle_time[kss_phones]"} <= set(table.index)
    assert ((table[["prior", "likelihood"]] >= 0).all()).all()
    assert table["diagnosis"].str.len().min() > 0
