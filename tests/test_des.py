import dataclasses
import datetime as dt

import numpy as np
import pytest

from truecount import load_case, load_spec
from truecount.model import capacity
from truecount.workflows.des import CallCentre, case_to_toml, des_campaign, erlang_b_check, run_call_centre

PARAMS = {"handle_time": np.array([5.0]), "attended_share": np.array([0.8]),
          "peak_load_per_line": np.array([4.0]), "daily_retention": np.array([0.7]),
          "enrol_share": np.array([0.5]), "claim_noise": 0.1, "honest_probability": 1.0,
          "counts_attempts_probability": 0.0, "report_bias_odds": 3.0}


def centre(**changes):
    base = CallCentre(servers=6, opens_min=9 * 60, closes_min=20 * 60, open_days=3, peak_per_hour=120.0,
                      retention=0.8, handle_mean_min=5.0, attended_share=0.8, enrol_share=0.5)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("load", [3.0, 8.0])
def test_blocking_matches_erlang_b(load):
    share, se = erlang_b_check(6, load, 400.0, np.random.default_rng(int(load)))
    assert se > 0
    assert abs(share - float(capacity.erlang_b(6, load))) < 4 * se


def test_separate_numbers_block_more_than_a_hunt_group():
    cc = centre(peak_per_hour=72.0, retention=1.0, attended_share=1.0, retry_prob=0.0, open_days=10)
    hunt = run_call_centre(cc, np.random.default_rng(1))
    separate = run_call_centre(dataclasses.replace(cc, separate_numbers=True), np.random.default_rng(1))
    hunt_share = hunt.failed_busy.sum() / hunt.attempts.sum()
    separate_share = separate.failed_busy.sum() / separate.attempts.sum()
    assert separate_share > hunt_share + 0.1  # 6 Erlangs: B(6, 6) = 0.26 vs 1/(1 + 1) = 0.5 per line
    assert hunt.failed_unattended.sum() == separate.failed_unattended.sum() == 0


def test_retries_add_attempts_and_rescue_callers():
    res = run_call_centre(centre(peak_per_hour=150.0, retry_prob=0.9), np.random.default_rng(2))
    assert res.attempts.sum() > res.new_callers.sum()
    failed_attempts = (res.failed_busy + res.failed_unattended).sum() / res.attempts.sum()
    assert 0 < res.caller_failed.mean() < failed_attempts
    no_retry = run_call_centre(centre(peak_per_hour=150.0, retry_prob=0.0), np.random.default_rng(2))
    assert no_retry.attempts.sum() == no_retry.new_callers.sum()


@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("hours", [(540, 1200), (0, 1440)])
def test_conservation(separate, hours):
    opens, closes = hours
    res = run_call_centre(centre(separate_numbers=separate, opens_min=opens, closes_min=closes,
                                 peak_per_hour=200.0), np.random.default_rng(3))
    assert res.attempts.shape == res.new_callers.shape == (3,)
    assert np.array_equal(res.answered, res.attempts - res.failed_busy - res.failed_unattended)
    assert (res.enrolments <= res.answered).all()
    assert res.enrolments.sum() == res.caller_enrolled.sum()
    assert res.caller_failed.size == res.caller_enrolled.size == res.new_callers.sum()
    assert not (res.caller_failed & res.caller_enrolled).any()
    assert (~res.caller_failed).sum() == res.answered.sum()  # one answered call per caller at most
    assert res.failed_busy.sum() > 0 and res.failed_unattended.sum() > 0


def test_same_seed_same_result():
    cc = centre(separate_numbers=True)
    a, b = run_call_centre(cc, np.random.default_rng(7)), run_call_centre(cc, np.random.default_rng(7))
    for field in dataclasses.fields(a):
        assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name
    c = run_call_centre(cc, np.random.default_rng(8))
    assert not np.array_equal(a.caller_failed, c.caller_failed)


def test_call_centre_rejects_impossible_values():
    with pytest.raises(ValueError, match="closes_min"):
        centre(opens_min=600, closes_min=600)
    with pytest.raises(ValueError, match="attended_share"):
        centre(attended_share=1.5)


def test_des_campaign_on_kss(kss_path, tmp_path):
    case, spec = load_case(kss_path), load_spec("baseline")
    sim = des_campaign(case, spec, np.random.default_rng(4), PARAMS)
    for claim in sim.case.claims:
        assert claim.value >= claim.rounding and claim.value % claim.rounding == 0
    (evidence,) = sim.case.evidence
    assert evidence.strength is None and evidence.failed + evidence.succeeded == 20
    truth = sim.truth
    assert truth["true_enrolments"].shape == (1, len(case.days))
    assert truth["true_enrolments"][0, :2].sum() == 0  # closed on 19 and 20 November
    assert truth["true_at_claim"][-1] == truth["true_enrolments_total"] > 0
    assert truth["true_at_claim"][0] == truth["true_enrolments"][0, 2]  # end of 21 November
    assert 0 < truth["failed_share"][0] < 1 and truth["blocking"].max() < 1
    assert sim.case.sha256 != case.sha256

    again = des_campaign(case, spec, np.random.default_rng(4), PARAMS)
    assert [c.value for c in again.case.claims] == [c.value for c in sim.case.claims]
    assert again.truth["true_enrolments_total"] == truth["true_enrolments_total"]

    path = tmp_path / "simulated.toml"
    path.write_text(case_to_toml(sim.case), encoding="utf-8")
    loaded = load_case(path)
    for name in ("channels", "claims", "evidence", "sources", "readings", "statements", "notes",
                 "announced", "window_start", "window_end", "id", "title", "timezone", "actor"):
        assert getattr(loaded, name) == getattr(sim.case, name), name


def test_des_campaign_draws_from_the_priors_and_caps_reports(kss_path):
    case, spec = load_case(kss_path), load_spec("baseline")
    sim = des_campaign(case, spec, np.random.default_rng(5), n_reports=10, retry_prob=0.0,
                       separate_numbers=True)
    assert sim.truth["separate_numbers"] and sim.truth["retry_prob"] == 0.0
    assert sim.truth["handle_time"].shape == (1,)
    (evidence,) = sim.case.evidence
    n_callers = int(sim.truth["new_callers"].sum())
    assert evidence.failed + evidence.succeeded == min(10, n_callers)


def test_case_to_toml_round_trips_readings_and_datetimes(kss_path, tmp_path):
    case = load_case(kss_path)
    first = case.claims[0]
    timed = dataclasses.replace(first, time=first.time - dt.timedelta(hours=5, minutes=30),
                                time_given="datetime")
    case = dataclasses.replace(case, claims=(timed, *case.claims[1:]))
    path = tmp_path / "case.toml"
    path.write_text(case_to_toml(case), encoding="utf-8")
    loaded = load_case(path)
    assert loaded.claims == case.claims and loaded.readings == case.readings
    assert loaded.channels == case.channels and loaded.sources == case.sources

    applied = load_case(kss_path, readings=["round_the_clock"])
    path.write_text(case_to_toml(applied), encoding="utf-8")
    loaded = load_case(path)
    assert loaded.channels == applied.channels and loaded.readings == {}
