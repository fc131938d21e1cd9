"""Hostile input for the loaders: every bad case or spec file gets one clear line, never a traceback.

Strategies start from the real case (``data/kss_2021.toml``) and spec (``models/baseline.toml``),
parsed with :mod:`tomllib`, mutate them (wrong types, NaN, huge and negative numbers, empty strings,
tables where scalars belong, deleted and unknown fields, duplicate ids, shifted dates, falling
cumulative claims, sources that do not exist, ...), write them back with the small TOML writer
below, and also throw raw bytes (random, truncated, corrupted, not UTF-8, nested too deep). The
property: loading succeeds, or raises :class:`~truecount.errors.InputError` whose text is one line
``FILE: FIELD: found X; expected Y[. Fix.]``; through the CLI, exit status 2 and one line on stderr.

Example counts and deadlines keep the file well under a minute; the ``ci`` profile (``CI=true``,
see ``conftest.py``) makes the run derandomized, so CI is reproducible.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truecount import InputError, load_case, load_spec
from truecount.cli import main
from truecount.model.bounds import case_capacity

ROOT = Path(__file__).resolve().parents[1]
KSS_TEXT = (ROOT / "data" / "kss_2021.toml").read_text(encoding="utf-8")
BASELINE_TEXT = (ROOT / "models" / "baseline.toml").read_text(encoding="utf-8")
KSS = tomllib.loads(KSS_TEXT)
BASELINE = tomllib.loads(BASELINE_TEXT)

#: Longest acceptable error line: a message quotes short excerpts, never whole values.
MAX_LINE = 1000

FUZZ = settings(max_examples=150, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- a tiny TOML writer (everything inline, so any nesting of dicts and lists can be written) -------


class Raw:
    """Text written into the TOML document as it is (for values the writer cannot produce)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r}...)"


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(doc: dict[str, Any]) -> str:
    """A TOML document that :mod:`tomllib` reads back as ``doc``."""
    return "".join(f"{_string(k)} = {_value(v)}\n" for k, v in doc.items())


def test_writer_round_trips_the_real_files():
    for doc in (KSS, BASELINE):
        assert tomllib.loads(to_toml(doc)) == doc
    odd = {"a": [math.inf, -0.5, {"b": dt.time(9, 30)}], "c\n\"": "\x00\\é",
           "d": dt.datetime(2021, 11, 21, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))}
    assert tomllib.loads(to_toml(odd)) == odd


# -- strategies -----------------------------------------------------------------------------------

offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
scalars = st.one_of(
    st.integers(),
    st.integers(-10, 10),
    st.sampled_from([10**18, -(10**18), 10**30, 2**63]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.0, -0.0]),
    st.text(max_size=20),
    st.sampled_from(["", "   ", "\n", "x" * 5000, "00:00", "24:00", "25:61", "2021-11-21",
                     "Asia/Baghdad", "America", "a" * 300, "../etc", "baseline", "..", "/"]),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=offsets),
    st.times(),
)
#: Values that do not belong wherever they land (or that are legal but odd there).
bad_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    st.sampled_from([Raw("1" * 5000), Raw("-" + "9" * 4400), Raw("[" * 2000 + "]" * 2000),
                     Raw("{a = " * 1500 + "1" + "}" * 1500), [], {}]),
)
extreme_dates = st.sampled_from([dt.date.min, dt.date.max, dt.date(1, 1, 2), dt.date(9999, 12, 30),
                                 dt.date(1900, 1, 1), dt.date(2199, 12, 31)])
hostile_dates = st.one_of(
    st.dates(), extreme_dates,
    st.builds(dt.datetime.combine, extreme_dates, st.times(), offsets),
    st.datetimes(timezones=offsets), st.times())
#: For each type of value in the real files, values of that type that should not be there.
hostile_like = {
    dt.date: hostile_dates,
    int: st.one_of(st.integers(), st.integers(-3, 3), st.sampled_from(
        [10**9, 10**10, 10**12, 10**100, 10**400, -(10**400), 2**63 - 1, 2**64]),
        st.floats(allow_nan=True), st.text(max_size=5)),
    float: st.one_of(st.floats(), st.sampled_from(
        [0.0, -0.0, 1.0, 0.999999999, 1e-300, 5e-324, 1e300, 1e308, -1e308, math.nan, math.inf]),
        st.integers(), st.sampled_from([10**400, -(10**400)])),
    str: st.one_of(st.text(max_size=20), st.sampled_from(
        ["", " ", "\t", "x" * 5000, "00:00", "24:00", "23:59", "24:01", "9:00", "-1:00", "America",
         "a" * 300, "../etc/passwd", "/etc/passwd", "Etc/GMT+14", "UTC", "\u0000", "baseline",
         "models/baseline", ".", "..", "/", "x" * 300, "Beta", "Fixed", "Uniform", "HalfNormal",
         "Normal", "Gamma", "Exponential", "LogNormal"])),
}


@st.composite
def hostile(draw: st.DrawFn, original: Any) -> Any:
    """A value to put in place of ``original``: often of the same type, sometimes anything."""
    for kind, strategy in hostile_like.items():
        if isinstance(original, kind) and not isinstance(original, bool) and draw(st.booleans()):
            return draw(strategy)
    if isinstance(original, dict) and original and draw(st.booleans()):  # one level down
        value = dict(original)
        key = draw(st.sampled_from(sorted(value)))
        value[key] = draw(hostile(value[key]))
        return value
    return draw(bad_values)


keys = st.one_of(st.text(max_size=20), st.sampled_from(
    ["id", "source", "value", "date", "servers", "schema_version", "extends", "mu", "x" * 500]))


def _slots(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key-or-index) in a parsed document, depth first."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        out.append((node, key))
        if isinstance(value, dict | list):
            _slots(value, out)
    return out


def _tables(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, dict):
        out.append(node)
    for value in (node.values() if isinstance(node, dict) else node if isinstance(node, list)
                  else ()):
        _tables(value, out)
    return out


def _shift(value: Any, days: int) -> Any:
    try:
        return value + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


@st.composite
def mutated(draw: st.DrawFn, original: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """``original`` with one to three hostile changes."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc, [])
        tables = _tables(doc, [])
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "unknown",
                                     "duplicate", "date", "date", "decrease", "reference", "swap"]))
        if kind == "replace" and slots:
            # A table first, then one of its fields: every table gets its share of the changes.
            table = draw(st.sampled_from([t for t in tables if t] or [doc]))
            if table:
                key = draw(st.sampled_from(list(table)))
                table[key] = draw(hostile(table[key]))
        elif kind == "delete" and slots:
            table = draw(st.sampled_from([t for t in tables if t] or [doc]))
            if table:
                del table[draw(st.sampled_from(list(table)))]
        elif kind == "unknown":
            table = draw(st.sampled_from(tables))
            table[draw(keys)] = draw(bad_values)
        elif kind == "duplicate":
            arrays = [(c, k) for c, k in slots if isinstance(c[k], list) and c[k]
                      and all(isinstance(v, dict) for v in c[k])]
            if arrays:
                container, key = draw(st.sampled_from(arrays))
                array = container[key]
                array.append(copy.deepcopy(draw(st.sampled_from(array))))
        elif kind == "date":
            dated = [(c, k) for c, k in slots if isinstance(c[k], dt.date)]
            if dated:
                container, key = draw(st.sampled_from(dated))
                days = draw(st.one_of(st.integers(-10, 10), st.integers(-400, 400),
                                      st.integers(-10**6, 10**6)))
                container[key] = (_shift(container[key], days) if draw(st.booleans())
                                  else draw(hostile_dates))
                if isinstance(container[key], dt.date) and draw(st.booleans()):  # at an hour
                    container[key] = dt.datetime.combine(
                        container[key], draw(st.times()), draw(offsets))
        elif kind == "decrease":
            claims = [c for c in doc.get("claims", []) if isinstance(c, dict)]
            if claims:
                claim = draw(st.sampled_from(claims))
                claim["value"] = draw(st.sampled_from([1, 1000, 22000, 23000, 48000]))
        elif kind == "reference":
            refs = [(c, k) for c, k in slots
                    if k in ("source", "original_source", "channel", "extends")]
            if refs:
                container, key = draw(st.sampled_from(refs))
                container[key] = draw(st.one_of(st.sampled_from(ids), st.text(max_size=12)))
        elif kind == "swap" and len(slots) >= 2:
            (c1, k1), (c2, k2) = draw(st.lists(st.sampled_from(slots), min_size=2, max_size=2))
            with contextlib.suppress(KeyError, IndexError):
                c1[k1], c2[k2] = c2[k2], c1[k1]
    return doc


CASE_IDS = ["kss_phones", "malik_knights_2021", "utv_2021_11_21", "utv_23000", "final_49000",
            "nowhere"]
SPEC_IDS = ["baseline", "handle_time_wide", "../data/kss_2021.toml", "nowhere", "x" * 300]


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _parses(path: Path) -> bool:
    try:
        tomllib.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError):  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return True


def check_error(error: InputError, path: Path) -> None:
    """The error is one line ``FILE: FIELD: found X; expected Y``, naming a field if it can."""
    line = str(error)
    assert line.splitlines() == [line], line
    assert len(line) <= MAX_LINE, line
    assert line.startswith(f"{path}: "), line
    assert "found " in line and "; expected " in line, line
    assert error.found.strip() and error.expected.strip(), line
    if _parses(path):  # the file is TOML: the problem lies in a field, and the line names it
        assert error.field, line
        assert line.startswith(f"{path}: {error.field}: found "), line


def check_case(path: Path) -> None:
    try:
        case = load_case(path)
    except InputError as error:
        check_error(error, path)
        return
    # A case that loads is fit for every later stage, and its warnings are one line each.
    case.to_dataset()
    case_capacity(case)
    for warning in case.warnings():
        assert warning.splitlines() == [warning] and warning.startswith(f"{path}: "), warning


def check_spec(path: Path) -> None:
    try:
        spec = load_spec(path)
    except InputError as error:
        check_error(error, path)
        return
    for prior in spec.priors.values():
        assert all(math.isfinite(v) for v in prior.params.values()), prior


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# -- properties -----------------------------------------------------------------------------------


@FUZZ
@given(doc=mutated(KSS, CASE_IDS))
def test_mutated_case_files_load_or_give_one_line(folder, doc):
    check_case(_write(folder, "case.toml", to_toml(doc)))


@FUZZ
@given(doc=mutated(BASELINE, SPEC_IDS))
def test_mutated_spec_files_load_or_give_one_line(folder, doc):
    check_spec(_write(folder, "spec.toml", to_toml(doc)))


@FUZZ
@given(doc=mutated({k: v for k, v in BASELINE.items() if k != "evidence_strength"}
                   | {"extends": "baseline", "priors": {"handle_time":
                                                        BASELINE["priors"]["handle_time"]}},
                   SPEC_IDS))
def test_mutated_extending_specs_load_or_give_one_line(folder, doc):
    check_spec(_write(folder, "extending.toml", to_toml(doc)))


def _corrupt(text: str) -> st.SearchStrategy[bytes]:
    data = text.encode("utf-8")
    cut = st.integers(0, len(data)).map(lambda n: data[:n])
    flip = st.tuples(st.integers(0, len(data) - 1), st.binary(min_size=1, max_size=4)).map(
        lambda t: data[: t[0]] + t[1] + data[t[0] + 1:])
    splice = st.tuples(st.integers(0, len(data)), st.sampled_from(
        [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"[", b"]]", b'"', b"\n[[claims]]\n",
         b"\n[sources]\n", b"= ", b"\r", b"\\"])).map(lambda t: data[: t[0]] + t[1] + data[t[0]:])
    return st.one_of(cut, flip, splice, st.binary(max_size=300), st.text(max_size=300).map(
        lambda s: s.encode("utf-8")))


@FUZZ
@given(content=_corrupt(KSS_TEXT))
def test_corrupt_case_bytes_give_one_line(folder, content):
    check_case(_write(folder, "raw_case.toml", content))


@FUZZ
@given(content=_corrupt(BASELINE_TEXT))
def test_corrupt_spec_bytes_give_one_line(folder, content):
    check_spec(_write(folder, "raw_spec.toml", content))


@settings(FUZZ, max_examples=60)
@given(doc=mutated(KSS, CASE_IDS))
def test_cli_exits_2_with_one_line_for_bad_cases(folder, doc):
    path = _write(folder, "cli_case.toml", to_toml(doc))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["capacity", str(path)])
    lines = err.getvalue().splitlines()
    if code == 0:
        assert all(line.startswith("truecount: warning: ") for line in lines), lines
    else:
        assert code == 2, (code, lines)
        assert out.getvalue() == ""
        assert len(lines) == 1 and lines[0].startswith(f"truecount: error: {path}: "), lines
        assert err.getvalue().endswith("\n")


# -- regressions: each bug the fuzzing found, as a plain example ----------------------------------


def _kss_with(folder: Path, name: str, change: Any) -> Path:
    doc = copy.deepcopy(KSS)
    change(doc)
    return _write(folder, name, to_toml(doc))


def _one_line(error: pytest.ExceptionInfo[InputError], path: Path, field: str, words: str) -> None:
    check_error(error.value, path)
    assert str(error.value).startswith(f"{path}: {field}: found "), str(error.value)
    assert words in str(error.value), str(error.value)


def test_integer_too_long_for_python_is_an_input_error(folder):
    path = _write(folder, "long_int.toml", KSS_TEXT.replace("servers = 6", "servers = " + "6" * 5000))
    with pytest.raises(InputError) as error:
        load_case(path)
    check_error(error.value, path)
    assert "integer too long" in str(error.value)


def test_nesting_too_deep_for_the_parser_is_an_input_error(folder):
    path = _write(folder, "deep.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(InputError) as error:
        load_spec(path)
    check_error(error.value, path)
    assert "nested too deeply" in str(error.value)


@pytest.mark.parametrize(("key", "shown"), [("", "''"), ("a b\x1c", "'a b\\x1c'"),
                                             ("k" * 500, "'" + "k" * 36 + "...")])
def test_odd_unknown_keys_are_named_quoted_and_short(folder, key, shown):
    # An empty key gave no field at all; a control character was dropped from the line but kept
    # in the field; a long key was printed whole.
    path = _kss_with(folder, "odd_key.toml", lambda d: d["window"].__setitem__(key, 1))
    with pytest.raises(InputError) as error:
        load_case(path)
    _one_line(error, path, f"window.{shown}", "unknown field")


@pytest.mark.parametrize("zone", ["America", "a" * 300])
def test_timezone_naming_a_folder_or_too_long(folder, zone):
    path = _kss_with(folder, "zone.toml", lambda d: d.__setitem__("timezone", zone))
    with pytest.raises(InputError) as error:
        load_case(path)
    _one_line(error, path, "timezone", "IANA time zone")


@pytest.mark.parametrize("when", [
    dt.date.max, dt.date.min,
    dt.datetime(1, 1, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))),
    dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
])
def test_claim_at_the_edge_of_the_calendar(folder, when):
    path = _kss_with(folder, "edge.toml", lambda d: d["claims"][1].__setitem__("date", when))
    with pytest.raises(InputError) as error:
        load_case(path)
    _one_line(error, path, "claims[1].date", "years 1900 to 2199")


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["claims"][1].__setitem__("date", dt.date(2191, 1, 1)), "claims[1].date"),
    (lambda d: d["window"].__setitem__("start", dt.date(1901, 1, 1)), "window.end"),
    (lambda d: d["channels"][0].update(first_day=dt.date(1950, 1, 1),
                                       last_day=dt.date(1950, 1, 2)), "channels[0].first_day"),
    (lambda d: d["readings"]["open_from_announcement"]["channels"]["kss_phones"].update(
        first_day=dt.date(2020, 11, 1), last_day=dt.date(2020, 11, 2)),
     "readings.open_from_announcement.channels.kss_phones.first_day"),
])
def test_dates_far_from_the_window_are_refused_not_a_hang(folder, change, field):
    # A claim in 2191 made the case's days span 62,000 days: to_dataset took seconds, and minutes
    # for dates further out.
    path = _kss_with(folder, "far.toml", change)
    with pytest.raises(InputError) as error:
        load_case(path)
    _one_line(error, path, field, "366 days")


def test_number_beyond_the_largest_float(folder):
    path = _kss_with(folder, "big.toml", lambda d: d["statements"][0].__setitem__("value", 10**400))
    with pytest.raises(InputError) as error:
        load_case(path)
    _one_line(error, path, "statements[0].value", "a finite number")


def test_evidence_counts_beyond_the_largest_float(folder):
    def change(d: dict[str, Any]) -> None:
        evidence = d["evidence"][0]
        del evidence["strength"]
        evidence.update(failed=10**400, succeeded=1)

    path = _kss_with(folder, "counts.toml", change)
    with pytest.raises(InputError) as error:
        load_case(path)
    _one_line(error, path, "evidence[0].failed", "<= 1000000000")


def test_extends_with_a_name_too_long_for_the_file_system(folder):
    path = _write(folder, "long_extends.toml", 'schema_version = 1\nid = "x"\ntitle = "x"\n'
                  f'extends = "{"x" * 300}"\n')
    with pytest.raises(InputError) as error:
        load_spec(path)
    _one_line(error, path, "extends", "a spec file path")


def test_elicitation_that_overflows_is_an_input_error(folder):
    # Found reading the code, not by the fuzzer: an infinite sigma was accepted as a prior.
    path = _write(folder, "overflow.toml", 'schema_version = 1\nid = "x"\ntitle = "x"\n'
                  'extends = "baseline"\n[priors.log_inflation]\ndist = "HalfNormal"\n'
                  'elicit = {upper = 1e308, mass = 1e-15}\nreason = "r"\n')
    with pytest.raises(InputError) as error:
        load_spec(path)
    _one_line(error, path, "priors.log_inflation.elicit", "bounds that a HalfNormal can match")


# -- legal but suspicious: warnings that name the field -------------------------------------------


@pytest.mark.parametrize(("change", "readings", "field", "words"), [
    (lambda d: d["claims"][0].__setitem__("date", dt.date(2021, 11, 20)), (), "claims[0].date",
     "before any channel opened"),
    (lambda d: d["claims"][1].__setitem__("date", dt.date(2021, 12, 3)), (), "claims[1].date",
     "after the window ended (2021-11-25)"),
    (lambda d: d["readings"]["round_the_clock"]["channels"]["kss_phones"].update(
        opens="09:00", closes="09:30"), ("round_the_clock",), "channels[0].closes",
     "open only 09:00-09:30 each day (under the reading round_the_clock)"),
    (lambda d: d["channels"][0].__setitem__("last_day", dt.date(2021, 11, 30)), (),
     "channels[0].last_day", "outside the window"),
])
def test_suspicious_but_legal_values_are_warnings_naming_the_field(folder, change, readings, field,
                                                                   words):
    path = _kss_with(folder, "odd.toml", change)
    warnings = load_case(path, readings).warnings()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{path}: {field}: ") and words in warnings[0], warnings[0]
    assert warnings[0].splitlines() == warnings


def test_simulated_case_may_have_falling_cumulative_claims(folder):
    import dataclasses

    from truecount.workflows.des import case_to_toml

    real = load_case(ROOT / "data" / "kss_2021.toml")
    noisy = dataclasses.replace(real, simulated=True, claims=(
        real.claims[0], dataclasses.replace(real.claims[1], value=22000)))
    path = _write(folder, "simulated.toml", case_to_toml(noisy))
    case = load_case(path)
    assert case.simulated
    (warning,) = case.warnings()
    assert warning.startswith(f"{path}: claims[1].value: ") and "simulated" in warning
    path.write_text(path.read_text(encoding="utf-8").replace("simulated = true\n", ""),
                    encoding="utf-8")
    with pytest.raises(InputError, match=r"claims\[1\]\.value: found 22,000"):
        load_case(path)


def test_a_long_list_of_choices_is_cut_in_the_message(folder):
    # Found with a huge (but allowed) file: 2,000 channels made a 20,000-character error line.
    def change(d: dict[str, Any]) -> None:
        small = {k: v for k, v in d["channels"][0].items() if k != "note"}
        small["cites"] = [{"source": "malik_knights_2021", "quote": "q"}]
        d["channels"] = [dict(small, id=f"c{i}") for i in range(2000)]
        d["readings"] = {}

    path = _kss_with(folder, "many.toml", change)
    with pytest.raises(InputError) as error:
        load_case(path)
    _one_line(error, path, "evidence[0].channel", "'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', "
              "... (2000 in all)")
