"""Kinds of claim: running totals, counts for a period, claims about one channel.

A running total counts everything before its date; a count for a period (``cumulative = false``,
``since``) what falls between its start and its date; a claim that names a ``channel`` that channel
alone. The non-falling rule compares running totals of the same quantity about the same channels.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import KSS
from truecount import InputError, load_case, load_spec
from truecount.model.bounds import case_capacity
from truecount.model.build import build_model


def _with_claims(tmp_path: Path, claims: str, extra_channel: bool = False) -> Path:
    """KSS with its claims replaced by ``claims`` (TOML), and optionally a second channel."""
    text = KSS.read_text(encoding="utf-8")
    start = text.index("# -- published claims")
    end = text.index("# -- evidence about reaching the lines")
    text = text[:start] + claims + "\n" + text[end:]
    if extra_channel:
        desk = ('\n[[channels]]\nid = "desk"\nkind = "phone_lines"\nservers = 2\nopens = "10:00"\n'
                'closes = "14:00"\nfirst_day = 2021-11-23\nlast_day = 2021-11-25\n\n'
                '[[channels.cites]]\nsource = "malik_knights_2021"\nquote = "a test channel"\n')
        text = text.replace("# -- alternative readings", desk + "\n# -- alternative readings", 1)
    path = tmp_path / "case.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _claim(id_: str, value: int, date: str, counts: str = "registrations", **fields: str) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in fields.items())
    cumulative = "false" if "since" in fields else "true"
    return (f'\n[[claims]]\nid = "{id_}"\nvalue = {value}\nrounding = 1\ndate = {date}\n'
            f'counts = "{counts}"\npresented_as = "registrations"\ncumulative = {cumulative}\n'
            f'by = "test"\nsource = "malik_knights_2021"\nquote = "a test claim"\n{extra}')


def test_a_count_for_a_day_counts_that_day_only(tmp_path):
    path = _with_claims(tmp_path, _claim("total", 900, "2021-11-21")
                        + _claim("second_day", 500, "2021-11-22", since="2021-11-22"))
    case = load_case(path)
    second = case.claims[1]
    assert not second.cumulative and second.period == "2021-11-22 to 2021-11-22 (end of day)"
    # How the fit's summary and report name what each claim covers.
    assert case.claims[0].label == "by 2021-11-21 (end of day)"
    assert second.label == "for 2021-11-22 to 2021-11-22 (end of day), all channels"
    exposure = case.to_dataset().claim_exposure.values  # (claim, channel, day 19..25 Nov)
    np.testing.assert_array_equal(exposure[0, 0], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(exposure[1, 0], [0, 0, 0, 1, 0, 0, 0])


def test_a_count_for_the_first_hours_counts_those_hours(tmp_path):
    path = _with_claims(tmp_path, _claim("first_hours", 300, "2021-11-21T12:00:00",
                                         since="2021-11-21T09:00:00"))
    case = load_case(path)
    exposure = case.to_dataset().claim_exposure.values
    np.testing.assert_allclose(exposure[0, 0], [0, 0, 3 / 11, 0, 0, 0, 0])
    assert case.claims[0].period == "2021-11-21 09:00 to 12:00"
    (bound,) = case_capacity(case, handle_time=5.0).claims
    assert bound.line_hours_before == pytest.approx(6 * 3)


def test_a_claim_about_one_channel_counts_that_channel(tmp_path):
    path = _with_claims(tmp_path, _claim("all", 900, "2021-11-25")
                        + _claim("desk_only", 100, "2021-11-25", channel='"desk"'),
                        extra_channel=True)
    case = load_case(path)
    ds = case.to_dataset()
    assert list(ds.claim_channel.values) == ["", "desk"]
    assert ds.claim_exposure.values[1, 0].sum() == 0 and ds.claim_exposure.values[1, 1].sum() == 3
    bounds = case_capacity(case, handle_time=5.0).claims
    assert bounds[0].line_hours_before == pytest.approx(6 * 11 * 5 + 2 * 4 * 3)
    assert bounds[1].line_hours_before == pytest.approx(2 * 4 * 3)
    assert bounds[1].days_needed == pytest.approx(100 / (2 * 4 * 12))  # the desk's 12 an hour
    model = build_model(case, load_spec("baseline"))
    mask = model["claim_channels"].get_value()
    np.testing.assert_array_equal(mask, [[1, 1], [0, 1]])


def test_running_totals_of_different_quantities_may_fall(tmp_path):
    # 1.7 million calls, then 14,949 bookings: different steps of the funnel, both totals.
    path = _with_claims(tmp_path, _claim("calls", 1_700_000, "2021-11-21", counts="attempts")
                        + _claim("bookings", 14_949, "2021-11-22"))
    assert [c.value for c in load_case(path).claims] == [1_700_000, 14_949]


@pytest.mark.parametrize(("claims", "field", "message"), [
    (_claim("a", 900, "2021-11-22") + _claim("b", 500, "2021-11-23"), r"claims\[1\]\.value",
     "an earlier running total of the same quantity, registrations, about all channels"),
    (_claim("a", 500, "2021-11-22").replace("cumulative = true", "cumulative = false"),
     r"claims\[0\]\.since", "the start of the period the count covers"),
    (_claim("a", 500, "2021-11-22") + "since = 2021-11-21\n", r"claims\[0\]\.since",
     "no since for a running total"),
    (_claim("a", 500, "2021-11-22", since="2021-11-23"), r"claims\[0\]\.since",
     "a start before the claim's date"),
    (_claim("a", 500, "2021-11-22", channel='"nowhere"'), r"claims\[0\]\.channel",
     "one of 'kss_phones'"),
])
def test_a_wrong_claim_is_one_line_naming_its_field(tmp_path, claims, field, message):
    with pytest.raises(InputError) as info:
        load_case(_with_claims(tmp_path, claims))
    text = str(info.value)
    assert "\n" not in text and re.search(field, text) and message in text


def test_a_count_of_call_attempts_is_not_bounded_by_the_lines(tmp_path):
    # Lines limit the calls they answer, not the attempts made: the capacity table says "not
    # bounded" and the fit's P(possible) is 1 with words that say why, not a finding.
    from truecount.inference.diagnostics import gate
    from truecount.inference.fitter import Fitter
    from truecount.inference.results import UNBOUNDED_TEXT, summarize

    path = _with_claims(tmp_path, _claim("calls", 1_700_000, "2021-11-21", counts="attempts")
                        + _claim("bookings", 14_949, "2021-11-22"))
    case = load_case(path)
    calls, bookings = case_capacity(case, 5.0).claims
    assert (calls.bounded, calls.possible) == (False, True)
    assert (bookings.bounded, bookings.possible) == (True, False)
    fitter = Fitter.for_case(case, load_spec("baseline"))
    tree = fitter.fit(case, draws=100, tune=100, chains=1, seed=1)
    post = tree["posterior"]
    assert bool(post["claim_possible"].sel(claim="calls").all())
    assert not bool(post["claim_possible"].sel(claim="bookings").any())
    # The inflation of a count of attempts is measured against the expected attempts.
    attempts = post["funnel_at_claim"].sel(claim="calls", quantity="attempts")
    np.testing.assert_allclose(post["inflation_factor"].sel(claim="calls"),
                               1_700_000 / np.maximum(attempts, 1))
    summary = summarize(tree, gate(tree))
    texts = {c.id: c.p_possible_text for c in summary.claims}
    assert texts["calls"] == UNBOUNDED_TEXT and texts["bookings"].startswith("<")
