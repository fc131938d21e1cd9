import pytest

from truecount.errors import InputError
from truecount.results import Interval
from truecount.sensitivity import Row, conclusions, parse_alternative, run_sensitivity


def row(name, upper, p_possible, passed=True):
    iv = Interval(upper / 3, upper / 10, upper, 0.9)
    claims = {"c1": {"value": 23_000, "inflation": iv, "p_possible": p_possible,
                     "p_possible_text": "x"}}
    return Row(name, (), "baseline", passed, iv, claims)


def test_parse_alternative():
    assert parse_alternative("reading:a+spec:wide", "baseline") == (("a",), "wide")
    assert parse_alternative("spec:x", "base") == ((), "x")
    with pytest.raises(InputError, match="--vary"):
        parse_alternative("hours:24", "baseline")


def test_conclusions_name_what_changes_and_leave_out_unconverged():
    same = conclusions([row("baseline", 5_000, 0.0), row("alt", 9_000, 0.01)])
    assert same[0].startswith("Claim c1 was not physically possible")
    assert same[1].startswith("The upper end of every interval")
    changed = conclusions([row("baseline", 5_000, 0.0), row("alt", 30_000, 0.2),
                           row("bad", 1e6, 0.9, passed=False)])
    assert any(line.startswith("CHANGES: claim c1") and "alt" in line for line in changed)
    assert any("reaches the smallest claim" in line for line in changed)
    assert changed[-1].startswith("UNCONVERGED, left out") and "bad" in changed[-1]


@pytest.mark.slow
def test_sensitivity_refits_a_reading_with_the_compiled_model(kss_path):
    rows = run_sensitivity(kss_path, alternatives=("reading:round_the_clock",), draws=300,
                           tune=300, chains=2, seed=1)
    assert [r.name for r in rows] == ["baseline", "reading:round_the_clock"]
    # Round the clock more than doubles the line-hours: the truth can be larger.
    assert rows[1].true_enrolments.upper > rows[0].true_enrolments.upper
