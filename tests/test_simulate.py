import numpy as np

from truecount import load_case, load_spec
from truecount.model.simulate import simulate


def test_simulation_is_reproducible_and_well_formed(kss_path, baseline_path):
    case, spec = load_case(kss_path), load_spec(baseline_path)
    a = simulate(case, spec, np.random.default_rng(3))
    b = simulate(case, spec, np.random.default_rng(3))
    assert [c.value for c in a.case.claims] == [c.value for c in b.case.claims]
    assert a.truth["true_enrolments_total"] == b.truth["true_enrolments_total"]
    for claim in a.case.claims:
        assert claim.value >= claim.rounding and claim.value % claim.rounding == 0
    (evidence,) = a.case.evidence
    assert evidence.strength is None and evidence.failed + evidence.succeeded == 10
    # Enrolments happen only on open days, and the last claim sees all of them.
    assert a.truth["true_enrolments"][0, :2].sum() == 0
    assert a.truth["true_at_claim"][-1] == a.truth["true_enrolments_total"]
    assert a.case.sha256 != case.sha256


def test_simulated_counts_follow_expected_enrolments(kss_path, baseline_path):
    case, spec = load_case(kss_path), load_spec(baseline_path)
    params = {"handle_time": np.array([5.0]), "attended_share": np.array([0.8]),
              "peak_load_per_line": np.array([4.0]), "daily_retention": np.array([0.7]),
              "enrol_share": np.array([0.5]), "claim_noise": 0.1, "honest_probability": 0.0,
              "counts_attempts_probability": 0.0, "report_bias_odds": 3.0}
    totals = [simulate(case, spec, np.random.default_rng(s), params).truth["true_enrolments_total"]
              for s in range(200)]
    expected = simulate(case, spec, np.random.default_rng(0), params).truth[
        "expected_enrolments"].sum()
    assert abs(np.mean(totals) - expected) < 4 * np.sqrt(expected / 200)
