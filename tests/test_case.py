import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest

from truecount import InputError, load_case

#: The text of the article the KSS case quotes (malik_knights_2021, with the announcement it quotes).
SOURCE_TEXT = Path(__file__).resolve().parents[1] / "data" / "sources" / \
    "kss-fake-recruitment-drive-2021.txt"


def test_kss_case_encodes_the_article(kss_path):
    case = load_case(kss_path)
    (phones,) = case.channels
    assert (phones.servers, phones.hours_label, phones.n_days) == (6, "09:00-20:00", 5)
    assert phones.first_day == dt.date(2021, 11, 21)
    assert [(c.id, c.value, c.rounding, c.counts) for c in case.claims] == [
        ("utv_23000", 23_000, 1000, "unclear"), ("final_49000", 49_000, 1000, "unclear")]
    assert case.claims[0].time == dt.datetime(2021, 11, 22, tzinfo=case.tz)  # end of 21 Nov
    assert case.claims[0].when == "2021-11-21 (end of day)"
    assert [e.strength for e in case.evidence] == ["many"]
    assert {s.value for s in case.statements} == {3500, 28}
    assert case.announced == dt.date(2021, 11, 19)
    assert case.warnings() == []


def _normalise(text: str) -> str:
    # Markdown links "[Name \(/path\)](#)" read as "Name"; emphasis marks go.
    text = re.sub(r"\[([^\]]+?)(?: \\\(.*?\\\))?\]\([^)]*\)", r"\1", text)
    return " ".join(text.replace("*", "").split())


def test_every_quote_of_the_article_is_in_the_article(kss_path):
    article = _normalise(SOURCE_TEXT.read_text(encoding="utf-8"))
    case = load_case(kss_path)
    cited = [case.announced_cited, case.window_cited]
    cited += [s for c in case.channels for s in c.cited]
    cited += [c.cited for c in case.claims] + [e.cited for e in case.evidence]
    cited += [r.cited for r in case.readings.values()] + [s.cited for s in case.statements]
    checked = 0
    for item in cited:
        assert item.source in case.sources
        if item.source in ("malik_knights_2021", "kss_announcement_2021_11_21"):
            assert _normalise(item.quote) in article, item.quote
            checked += 1
    assert checked >= 10


def test_dataset_has_named_dimensions_and_exposures(kss_path):
    ds = load_case(kss_path).to_dataset()
    assert dict(ds.sizes) == {"channel": 1, "day": 7, "claim": 2, "evidence": 1}
    assert ds.open_hours.sum().item() == 55.0
    assert ds.day.values[0] == np.datetime64("2021-11-19")
    exposure_days = ds.claim_exposure.sum(("channel", "day")).values
    np.testing.assert_array_equal(exposure_days, [1.0, 5.0])
    assert ds.claim_value.sel(claim="final_49000").item() == 49_000
    assert ds.evidence_strength.item() == "many"
    assert np.isnan(ds.evidence_failed.item())
    assert len(ds.attrs["case_sha256"]) == 64


def test_readings_apply_and_combine(kss_path):
    clock = load_case(kss_path, ["round_the_clock"])
    assert clock.channels[0].hours_per_day == 24
    assert clock.applied_readings == ("round_the_clock",)
    both = load_case(kss_path, ["round_the_clock", "open_from_announcement"])
    ds = both.to_dataset()
    assert ds.open_hours.sum().item() == 24 * 7
    # The 23,000 claim (end of 21 Nov) now sees three full days.
    assert ds.claim_exposure.sel(claim="utv_23000").sum().item() == 3.0


def test_unknown_reading_is_an_input_error(kss_path):
    with pytest.raises(InputError, match="round_the_clock"):
        load_case(kss_path, ["round_the_clok"])


def test_claim_with_a_time_counts_part_of_the_day(tmp_path, kss_path):
    text = kss_path.read_text(encoding="utf-8").replace(
        "date = 2021-11-21  #", "date = 2021-11-21T14:30:00  #")
    path = tmp_path / "case.toml"
    path.write_text(text, encoding="utf-8")
    ds = load_case(path).to_dataset()
    # Open from 09:00: 5.5 of 11 hours had passed at 14:30 local time.
    assert ds.claim_exposure.sel(claim="utv_23000").sum().item() == pytest.approx(0.5)
    assert load_case(path).claims[0].when == "2021-11-21 14:30"
    assert ds.claim_time.sel(claim="utv_23000").values == np.datetime64("2021-11-21T11:30:00")


def test_claim_before_lines_open_is_a_warning(tmp_path, kss_path):
    text = kss_path.read_text(encoding="utf-8").replace(
        "date = 2021-11-21  #", "date = 2021-11-20  #")
    path = tmp_path / "case.toml"
    path.write_text(text, encoding="utf-8")
    (warning,) = load_case(path).warnings()
    assert "utv_23000" in warning and "before any channel opened" in warning


# Each bad case: (text to replace in the KSS file, replacement, expected field, words in message).
BAD_CASES = [
    ("servers = 6", "servers = -6", "channels[0].servers", ">= 1"),
    ("servers = 6", 'servers = "six"', "channels[0].servers", "an integer"),
    ("servers = 6", "servers = 6.5", "channels[0].servers", "an integer"),
    ("servers = 6", "servres = 6", "channels[0].servers", "misspelling"),
    ('closes = "20:00"', 'closes = "08:00"', "channels[0].closes", "after opens"),
    ('opens = "09:00"', 'opens = "9am"', "channels[0].opens", "HH:MM"),
    ("last_day = 2021-11-25", "last_day = 2021-11-20", "channels[0].last_day", "on or after"),
    ("value = 23000", "value = 23500", "claims[0].value", "multiple of rounding"),
    ("value = 49000", "value = 19000", "claims[1].value", "Running totals cannot fall"),
    ("value = 23000", "value = 0", "claims[0].value", ">= 1"),
    ('counts = "unclear"', 'counts = "people"', "claims[0].counts", "'registrations'"),
    ("date = 2021-11-21  #", 'date = "21 Nov"  #', "claims[0].date", "no quotes"),
    ("date = 2021-11-21  #", "date = 2021-11-18  #", "claims[0].date", "announcement"),
    ('original_source = "utv_2021_11_21"', 'original_source = "utv"', "claims[0].original_source",
     "sources"),
    ('id = "final_49000"', 'id = "utv_23000"', "claims[1].id", "not used before"),
    ('source = "malik_knights_2021"\noriginal_source', 'source = "wapo"\noriginal_source',
     "claims[0].source", "Add the source"),
    ('strength = "many"', 'strength = "lots"', "evidence[0].strength", "'many'"),
    ('strength = "many"', "failed = 3", "evidence[0].succeeded", "both"),
    ('strength = "many"', 'strength = "many"\nfailed = 3\nsucceeded = 1', "evidence[0].strength",
     "not both"),
    ('channel = "kss_phones"', 'channel = "radio"', "evidence[0].channel", "'kss_phones'"),
    ('timezone = "Asia/Baghdad"', 'timezone = "Baghdad"', "timezone", "IANA"),
    ("schema_version = 1", "schema_version = 2", "schema_version", "1"),
    ("start = 2021-11-19", "start = 2021-11-30", "window.end", "on or after start"),
    ('[readings.round_the_clock.channels.kss_phones]\nopens = "00:00"',
     '[readings.round_the_clock.channels.kss_phones]\nkind = "radio"\nopens = "00:00"',
     "readings.round_the_clock.channels.kss_phones.kind", "cannot change"),
    ('[readings.round_the_clock.channels.kss_phones]\nopens = "00:00"\ncloses = "24:00"',
     '[readings.round_the_clock.channels.kss_phones]\nopens = "22:00"\ncloses = "24:00"\n'
     'last_day = 2021-11-01', "readings.round_the_clock.channels.kss_phones.last_day",
     "on or after first_day"),
]


@pytest.mark.parametrize(("old", "new", "field", "words"), BAD_CASES,
                         ids=[b[2] + ":" + b[1][:20] for b in BAD_CASES])
def test_bad_case_files_give_one_line_naming_file_and_field(tmp_path, kss_path, old, new, field,
                                                            words):
    text = kss_path.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_case(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {field}: found ")
    assert words in message


@pytest.mark.parametrize(("content", "words"), [
    (b"schema_version = 1\n[actor\n", "invalid TOML"),
    (b"\xff\xfe not utf-8", "UTF-8"),
    (b"", "schema_version"),
    (b"schema_version = 1\n", "sources: found nothing"),
])
def test_broken_files(tmp_path, content, words):
    path = tmp_path / "broken.toml"
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(words)) as info:
        load_case(path)
    assert "\n" not in str(info.value)


def test_missing_and_huge_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_case(tmp_path / "nope.toml")
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * 2_000_000)
    with pytest.raises(InputError, match="bytes"):
        load_case(huge)


@pytest.mark.parametrize("when", [None, "2021-11-21T14:30:00", "2021-11-23T08:00:00+03:00",
                                  "2021-11-24T23:30:00+00:00"])
@pytest.mark.parametrize("readings", [(), ("round_the_clock",), ("open_from_announcement",)])
def test_claim_exposure_equals_its_definition(kss_path, tmp_path, readings, when):
    """The shortcut in to_dataset (only a claim's own day needs the clock) changes no number."""
    path = kss_path
    if when is not None:  # the first claim at a time of day, in local time or with an offset
        path = tmp_path / "case.toml"
        text = kss_path.read_text(encoding="utf-8")
        path.write_text(text.replace("date = 2021-11-21  #", f"date = {when}  #", 1),
                        encoding="utf-8")
    case = load_case(path, readings)
    if when is not None:
        assert case.claims[0].time_given == "datetime"
    ds = case.to_dataset()
    hours = ds.open_hours.values
    for i, claim in enumerate(case.claims):
        for j, channel in enumerate(case.channels):
            for k, day in enumerate(case.days):
                want = (channel.open_hours_before(day, claim.time, case.tz) / hours[j, k]
                        if hours[j, k] > 0 else 0.0)
                assert ds.claim_exposure.values[i, j, k] == pytest.approx(want, abs=1e-12)
