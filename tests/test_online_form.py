"""Online forms: a kind of channel that no line limits.

A form takes submissions at a rate of its own (``peak_submissions_per_hour``), none lost; capacity
arithmetic cannot rule out a claim it counts towards, and the capacity table, the summary and the
report say so instead of implying a bound. A claim about the lines alone stays bounded.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from truecount import InputError, load_case, load_spec
from truecount.model.bounds import case_capacity
from truecount.model.build import build_model
from truecount.model.data import arrays, model_inputs, model_structure
from truecount.model.equations import numpy_deterministics
from truecount.model.simulate import draw_parameters
from truecount.workflows.des import OnlineForm, case_to_toml, des_campaign, run_online_form

FORM_CASE = ROOT / "docs" / "calibration" / "online_form.toml"


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    text = FORM_CASE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "case.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _forms_only(tmp_path: Path) -> Path:
    """The form case without its lines: every claim about the form (or every channel)."""
    text = FORM_CASE.read_text(encoding="utf-8")
    start = text.index('[[channels]]\nid = "kss_phones"')
    end = text.index('[[channels]]\nid = "web_form"')
    text = text[:start] + text[end:]
    start = text.index("[readings.round_the_clock]")
    end = text.index("# -- published claims")
    text = text[:start] + text[end:]
    for claim in ("first_hours", "total_by_22", "phones_total"):
        start = text.index(f'[[claims]]\nid = "{claim}"')
        end = text.index("[[claims]]", start + 1)
        text = text[:start] + text[end:]
    start = text.index("[[evidence]]")
    end = text.index("# -- third-party arithmetic")
    text = text[:start] + text[end:]
    path = tmp_path / "forms.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "field", "message"), [
    ('kind = "online_form"\n', 'kind = "online_form"\nservers = 3\n', r"channels\[1\]\.servers",
     "An online form has no lines"),
    ('id = "social_media_failed_to_reach"\nchannel = "kss_phones"',
     'id = "social_media_failed_to_reach"\nchannel = "web_form"', r"evidence\[0\]\.channel",
     "a channel with lines"),
    ('[readings.open_from_announcement.channels.kss_phones]\n',
     '[readings.open_from_announcement.channels.web_form]\nservers = 4\n'
     '[readings.open_from_announcement.channels.kss_phones]\n', r"web_form\.servers",
     "An online form has no lines"),
])
def test_a_wrong_online_form_is_one_line_naming_its_field(tmp_path, old, new, field, message):
    with pytest.raises(InputError) as info:
        load_case(_edited(tmp_path, old, new))
    text = str(info.value)
    assert "\n" not in text and re.search(field, text) and message in text, text


def test_the_capacity_table_bounds_only_what_the_lines_alone_count():
    result = case_capacity(load_case(FORM_CASE), 5.0)
    phones, form = result.channels
    assert phones.max_registrations == pytest.approx(3960.0) and form.max_registrations is None
    claims = {c.id: c for c in result.claims}
    # Before the form opens (21-22 November) and about the lines alone: bounded.
    for claim_id in ("first_hours", "total_by_22", "phones_total"):
        assert claims[claim_id].bounded, claim_id
    assert not claims["total_by_22"].possible  # 2,000 on 66 line-hours a day at 5 minutes
    for claim_id in ("form_on_the_24th", "grand_total"):
        c = claims[claim_id]
        assert (c.bounded, c.possible, c.unbounded_because) == (False, True, "online_form")
        assert c.handle_time_needed is None and c.days_needed is None
    from truecount.cli import render_capacity

    text = render_capacity(result)
    assert "online form" in text and "capacity arithmetic cannot rule the claim out" in text


@pytest.mark.parametrize("forms_only", [False, True])
def test_the_model_of_a_form_has_its_own_demand_and_no_limit(tmp_path, forms_only):
    from test_switches import assert_forward_equals_model

    case = load_case(_forms_only(tmp_path) if forms_only else FORM_CASE)
    spec = load_spec("baseline")
    model = build_model(case, spec)
    names = {v.name for v in model.free_RVs}
    assert "peak_submissions_per_hour" in names
    assert ("handle_time" in names) is not forms_only
    assert_forward_equals_model(model, draws=20, rtol=1e-8)

    ds = case.to_dataset()
    structure = model_structure(ds, spec)
    inputs = arrays(model_inputs(ds, spec))
    params = draw_parameters(spec, ds.sizes["channel"], np.random.default_rng(3), size=(50,),
                             kinds=structure["kinds"])
    det = numpy_deterministics(inputs, structure, params, 2.0)
    form = list(ds.channel.values).index("web_form")
    assert np.all(det["blocking"][:, form] == 0.0)
    assert np.all(np.isinf(det["capacity"][:, form]))
    claims = list(ds.claim.values)
    assert np.all(np.isinf(det["capacity_at_claim"][:, claims.index("grand_total")]))
    # Submissions on the form: demand at its own rate, all of them answered.
    attempts = det["attempts"][:, form]
    expected = det["expected_enrolments"][:, form]
    np.testing.assert_allclose(expected, attempts * params["enrol_share"][:, form, None])
    if not forms_only:
        assert np.all(np.isfinite(det["capacity_at_claim"][:, claims.index("phones_total")]))
        assert np.all(det["days_needed"][:, claims.index("grand_total")] == 0.0)


def test_a_case_of_lines_alone_draws_and_samples_no_form_parameter(kss_path):
    case, spec = load_case(kss_path), load_spec("baseline")
    assert "peak_submissions_per_hour" not in {v.name for v in build_model(case, spec).free_RVs}
    params = draw_parameters(spec, 1, np.random.default_rng(0), kinds=("phone_lines",))
    assert "peak_submissions_per_hour" not in params


def test_the_simulated_form_takes_people_with_duplicates_and_day_swings():
    form = OnlineForm(opens_min=0, closes_min=1440, open_days=4, peak_per_hour=50.0,
                      retention=0.5, enrol_share=0.6)
    a, b = (run_online_form(form, np.random.default_rng(9)) for _ in range(2))
    np.testing.assert_array_equal(a.attempts, b.attempts)  # the seed fixes everything
    assert np.all(a.attempts >= a.new_callers) and np.all(a.enrolments <= a.new_callers)
    assert np.array_equal(a.attempts, a.answered) and not a.failed_busy.any()
    assert a.caller_enrolled.sum() == a.enrolments.sum()
    steady = OnlineForm(opens_min=0, closes_min=1440, open_days=1, peak_per_hour=100.0,
                        retention=1.0, enrol_share=1.0, day_cv=0.0, duplicate_prob=0.0)
    people = [run_online_form(steady, np.random.default_rng(s)).new_callers[0] for s in range(200)]
    assert abs(np.mean(people) - 2400) < 4 * np.sqrt(2400 / 200)
    with pytest.raises(ValueError, match="duplicate_prob"):
        OnlineForm(0, 60, 1, 1.0, 1.0, 0.5, duplicate_prob=1.0)


def test_a_simulated_form_campaign_round_trips_as_a_case_file(tmp_path):
    case = load_case(FORM_CASE)
    sim = des_campaign(case, load_spec("baseline"), np.random.default_rng(4))
    path = tmp_path / "sim.toml"
    path.write_text(case_to_toml(sim.case), encoding="utf-8")
    back = load_case(path)
    assert [c.kind for c in back.channels] == ["phone_lines", "online_form"]
    assert [(c.value, c.since, c.channel) for c in back.claims] == [
        (c.value, c.since, c.channel) for c in sim.case.claims]
    form = 1
    assert sim.truth["attempts"][form].sum() >= sim.truth["new_callers"][form].sum()


@pytest.mark.slow
def test_a_fit_says_the_form_is_not_bounded_and_shows_only_its_own_parameters():
    from truecount.inference.analysis import Options, fit_and_analyse
    from truecount.inference.fitter import Fitter
    from truecount.inference.results import FORM_TEXT, NO_LIMIT_TEXT

    case, spec = load_case(FORM_CASE), load_spec("baseline")
    analysis = fit_and_analyse(Fitter.for_case(case, spec), case, Options(), draws=300, tune=300,
                               chains=2, seed=1)
    table, summary = analysis.table, analysis.summary
    assert "peak_submissions_per_hour[web_form]" in table.index
    assert "peak_submissions_per_hour[kss_phones]" not in table.index
    assert "handle_time[web_form]" not in table.index and "handle_time[kss_phones]" in table.index
    assert summary.capacity.text() == NO_LIMIT_TEXT
    texts = {c.id: c.p_possible_text for c in summary.claims}
    assert texts["grand_total"] == FORM_TEXT and texts["phones_total"] != FORM_TEXT
    assert np.isfinite(summary.true_enrolments.upper)
    assert summary.to_dict()["capacity"]["median"] is None  # JSON has no infinity
