import json

import numpy as np
import pytest

from truecount.workflows.calibration import (
    Job,
    calibrate,
    coverage,
    ecdf_outside_band,
    run_one,
    sbc_rank,
    uniformity,
)


def test_sbc_rank_counts_draws_below_and_breaks_ties():
    rng = np.random.default_rng(0)
    draws = np.arange(100.0)
    assert sbc_rank(draws, -1.0, 9, rng) == 0
    assert sbc_rank(draws, 1000.0, 9, rng) == 9
    assert 0 <= sbc_rank(np.zeros(50), 0.0, 9, rng) <= 9


def test_uniformity_accepts_uniform_and_rejects_piled_up_ranks():
    rng = np.random.default_rng(1)
    uniform = [{"ranks": {"x": int(r)}} for r in rng.integers(0, 100, 300)]
    (check,) = uniformity(uniform, thin=99)
    assert check.uniform
    piled = [{"ranks": {"x": int(r)}} for r in np.r_[np.zeros(100), np.full(100, 99),
                                                    rng.integers(0, 100, 100)]]
    (check,) = uniformity(piled, thin=99)
    assert not check.uniform and check.chi2_p < 1e-6
    assert ecdf_outside_band(np.r_[np.zeros(60), rng.integers(0, 100, 140)], 99, rng)


def test_coverage_counts_hits_with_binomial_interval():
    results = [{"intervals": {f"{m:g}": {"lower": 0.0, "upper": 2.0, "covered": i % 10 != 0}
                              for m in (0.5, 0.8, 0.9, 0.95)}} for i in range(100)]
    row = next(r for r in coverage(results) if r["mass"] == 0.9)
    assert (row["covered"], row["n"]) == (90, 100)
    assert row["ci_low"] < 0.9 < row["ci_high"]
    assert row["median_width"] == 2.0


@pytest.mark.slow
def test_quick_sbc_passes_and_a_too_narrow_posterior_fails(kss_path, tmp_path):
    job = Job(case=str(kss_path), draws=200, tune=200, chains=2, cores=2, thin=19, seed=3)
    good = calibrate(job, 40, tmp_path / "good", workers=1)
    assert all(u.uniform for u in uniformity(good, job.thin)), uniformity(good, job.thin)
    # The same simulations with every posterior shrunk to a fifth of its width: overconfident.
    bad = [run_one((Job(**{**job.__dict__, "shrink": 0.2}), i)) for i in range(40)]
    failed = [u.quantity for u in uniformity(bad, job.thin) if not u.uniform]
    assert "handle_time[kss_phones]" in failed and "true_enrolments_total" in failed


@pytest.mark.slow
def test_dask_two_workers_give_the_ranks_of_one_worker_and_resume(kss_path, tmp_path):
    job = Job(case=str(kss_path), draws=100, tune=100, chains=2, cores=1, thin=19, seed=5)
    serial = calibrate(job, 4, tmp_path / "serial", workers=1)
    parallel = calibrate(job, 4, tmp_path / "dask", workers=2)
    assert [r["ranks"] for r in serial] == [r["ranks"] for r in parallel]
    written = sorted((tmp_path / "serial" / "cases").glob("sbc-*.toml"))
    assert len(written) == 4
    from truecount.errors import InputError
    from truecount.inputs.case import load_case
    loaded = 0
    for path in written:
        try:
            load_case(path)
            loaded += 1
        except InputError as exc:  # only a simulated cumulative claim that fell is refused
            assert "Cumulative claims cannot fall" in str(exc)
    assert loaded >= 1
    # Resume: a run cut after two results completes the other two and keeps the first two.
    lines = (tmp_path / "serial" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "results.jsonl").write_text("\n".join(lines[:2]) + "\n{broken",
                                                    encoding="utf-8")
    resumed = calibrate(job, 4, tmp_path / "cut", workers=1)
    assert [r["ranks"] for r in resumed] == [r["ranks"] for r in serial]
    assert json.loads(lines[0])["index"] == 0


def test_inflation_world_parses_and_draws_its_own_distribution():
    from truecount.model.simulate import InflationWorld

    assert InflationWorld.parse("prior") is None
    world = InflationWorld.parse("log-uniform:60:0.15")
    assert world == InflationWorld(60.0, 0.15)
    assert InflationWorld.parse("log-uniform:20") == InflationWorld(20.0, 0.15)
    for bad in ("uniform:60", "log-uniform", "log-uniform:x", "log-uniform:0.5", "log-uniform:60:1"):
        with pytest.raises(ValueError):
            InflationWorld.parse(bad)
    honest, log_u = world.draw((20_000,), np.random.default_rng(0))
    assert abs(honest.mean() - 0.15) < 0.01
    assert np.all(log_u[honest] == 0.0)
    inflated = log_u[~honest]
    assert inflated.min() >= 0.0 and inflated.max() <= np.log(60.0)
    # Log-uniform: each half of the log range holds half of the inflated claims.
    assert abs((inflated < np.log(60.0) / 2).mean() - 0.5) < 0.02


def test_simulators_inflate_claims_as_the_world_says(kss_path, baseline_path):
    from truecount import load_case, load_spec
    from truecount.model.simulate import InflationWorld, simulate
    from truecount.workflows.des import des_campaign

    case, spec = load_case(kss_path), load_spec(baseline_path)
    never = InflationWorld(60.0, 0.0)
    always = InflationWorld(60.0, 0.999999)
    for make in (simulate, des_campaign):
        assert not any(make(case, spec, np.random.default_rng(s), inflation=never).truth["honest"]
                       .any() for s in range(3))
        assert all(make(case, spec, np.random.default_rng(s), inflation=always).truth["honest"]
                   .all() for s in range(3))


def test_honest_claims_called_impossible_are_counted():
    from truecount.workflows.calibration import honest_called_impossible

    results = [{"honest_as_stated": [True, False], "p_possible": [0.01, 0.0]},
               {"honest_as_stated": [True, True], "p_possible": [0.5, 0.2]},
               {"ranks": {}}]  # a result from before the field existed
    assert honest_called_impossible(results) == {"honest_claims": 3,
                                                 "honest_called_impossible": 1}


def test_calibrate_refuses_an_unknown_inflation_world(kss_path, capsys):
    from truecount.cli import main

    assert main(["calibrate", str(kss_path), "--inflation", "log-normal:3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--inflation" in err[0] and "log-uniform:MAX" in err[0]
