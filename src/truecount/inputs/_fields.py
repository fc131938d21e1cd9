"""Typed reading of parsed TOML tables, with errors that name the file and the field.

Case files and model specs are read through :class:`Fields`: each accessor checks one field's type
and range and raises :class:`~truecount.errors.InputError` naming the file, the dotted field path,
what was found and what is allowed. :meth:`Fields.finish` rejects fields that nobody read, with a
suggestion for a misspelt name, so that a typo is never silently ignored.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from truecount.errors import InputError, show, show_choices

#: Largest file we read: case and spec files are hand-written and small; anything bigger is a
#: mistake (a data dump, a binary), and reading it whole would only waste memory.
MAX_FILE_BYTES = 1_000_000

_MISSING = object()

#: A key (or the schema's dotted keys) that reads as itself in a path; any other key is shown
#: quoted and shortened, so that an empty, long or odd key still gives a readable line.
_BARE_KEY = re.compile(r"(?=.{1,60}$)[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def read_toml(path: Path, kind: str) -> dict[str, Any]:
    """Read a TOML file into a dict, turning every failure into one :class:`InputError`."""
    try:
        if not path.exists():
            raise InputError(path, "", "no such file", f"a {kind} file (TOML)", "Check the path.")
        if not path.is_file():
            raise InputError(path, "", "a directory", f"a {kind} file (TOML)",
                             "Name the file itself.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(
                path, "", f"{size:,} bytes", f"a {kind} file under {MAX_FILE_BYTES:,} bytes",
                "Case and spec files hold facts and assumptions, not data dumps.",
            )
        raw = path.read_bytes()
    except OSError as exc:  # unreadable, or a name the file system refuses
        raise InputError(path, "", f"a file that cannot be read ({exc.strerror})",
                         f"a readable {kind} file (TOML)", "Check the path and permissions.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            path, "", f"a byte that is not UTF-8 at offset {exc.start}", "UTF-8 text",
            "Save the file as UTF-8.",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc).splitlines()[0]
        raise InputError(path, "", f"invalid TOML ({message})", "a valid TOML document") from None
    except ValueError:  # tomllib reads integers with int(), which refuses more than 4300 digits
        raise InputError(path, "", "an integer too long to read", "numbers of a sensible size",
                         "Shorten the number.") from None
    except RecursionError:
        raise InputError(path, "", "arrays or tables nested too deeply to read",
                         "a valid TOML document of modest depth") from None


def _type_name(value: object) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "an array", dict: "a table", dt.date: "a date", dt.datetime: "a date-time",
        dt.time: "a time",
    }.get(type(value), type(value).__name__)


class Fields:
    """One TOML table being read, with its file and its dotted location for error messages."""

    def __init__(self, data: Mapping[str, Any], file: Path | str, where: str = "") -> None:
        if not isinstance(data, Mapping):
            raise InputError(file, where, _type_name(data), "a table")
        self.data = data
        self.file = file
        self.where = where
        self._read: set[str] = set()

    # -- locations and errors -------------------------------------------------------------------

    def path(self, key: str) -> str:
        """Dotted location of ``key`` inside this table (the table itself for ``""``)."""
        return self.child(key) if key else self.where

    def child(self, key: str) -> str:
        """Dotted location of the entry named ``key``; an odd key (empty, long, spaces) is quoted."""
        return dotted(self.where, key)

    def error(self, key: str, found: str, expected: str, fix: str | None = None) -> InputError:
        """An :class:`InputError` for ``key`` of this table (returned, to be raised by the caller)."""
        return InputError(self.file, self.path(key), found, expected, fix)

    def has(self, key: str) -> bool:
        """Whether the table sets ``key``."""
        return key in self.data

    def _get(self, key: str, required: bool) -> Any:
        self._read.add(key)
        if key in self.data:
            return self.data[key]
        if required:
            typo = difflib.get_close_matches(key, [k for k in self.data if k not in self._read], n=1)
            hint = f"Is {typo[0]!r} a misspelling of {key!r}?" if typo else None
            raise self.error(key, "nothing (the field is missing)", "this field to be set", hint)
        return _MISSING

    def raw(self, key: str) -> Any:
        """The value of a required ``key`` as TOML gave it, for a field of several shapes."""
        return self._get(key, True)

    # -- scalar accessors ---------------------------------------------------------------------

    def text(self, key: str, *, required: bool = True, choices: Iterable[str] | None = None,
            default: str | None = None) -> str | None:
        """A non-empty string, optionally one of ``choices``."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, show(value), "a non-empty string")
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise self.error(key, show(value), "one of " + show_choices(allowed),
                                 _did_you_mean(value, allowed))
        return value

    def req_text(self, key: str, *, choices: Iterable[str] | None = None) -> str:
        """A required string (typed for the checker)."""
        value = self.text(key, required=True, choices=choices)
        assert value is not None
        return value

    def integer(self, key: str, *, required: bool = True, min: int | None = None,
            max: int | None = None, default: int | None = None) -> int | None:
        """An integer (not a boolean, not a float) within ``[min, max]``."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, show(value), "an integer")
        if min is not None and value < min:
            raise self.error(key, show(value), f"an integer >= {min}")
        if max is not None and value > max:
            raise self.error(key, show(value), f"an integer <= {max}")
        return value

    def req_integer(self, key: str, *, min: int | None = None, max: int | None = None) -> int:
        """A required integer (typed for the checker)."""
        value = self.integer(key, required=True, min=min, max=max)
        assert value is not None
        return value

    def number(self, key: str, *, required: bool = True, gt: float | None = None,
              ge: float | None = None, lt: float | None = None, le: float | None = None,
              default: float | None = None) -> float | None:
        """A finite number (integers accepted) within the given bounds."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, show(value), "a number")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the largest float
            number = math.inf
        if not math.isfinite(number):
            raise self.error(key, show(value), "a finite number")
        checks = (
            (gt, ">", gt is not None and number > gt), (ge, ">=", ge is not None and number >= ge),
            (lt, "<", lt is not None and number < lt), (le, "<=", le is not None and number <= le),
        )
        for bound, sign, ok in checks:
            if bound is not None and not ok:
                raise self.error(key, show(value), f"a number {sign} {bound}")
        return number

    def req_number(self, key: str, **bounds: float) -> float:
        """A required number (typed for the checker)."""
        value = self.number(key, required=True, **bounds)
        assert value is not None
        return value

    def flag(self, key: str, *, required: bool = True, default: bool | None = None) -> bool | None:
        """A TOML boolean (``true``/``false``)."""
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self.error(key, show(value), "true or false")
        return value

    def date(self, key: str, *, required: bool = True) -> dt.date | None:
        """A TOML local date (``2021-11-19``), not a date-time."""
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise self.error(key, show(value), "a TOML date such as 2021-11-19 (no quotes)")
        return value

    def req_date(self, key: str) -> dt.date:
        """A required date (typed for the checker)."""
        value = self.date(key, required=True)
        assert value is not None
        return value

    def date_or_datetime(self, key: str) -> dt.date | dt.datetime:
        """A TOML date, or a date-time (local or with an offset)."""
        value = self._get(key, True)
        if not isinstance(value, dt.date):
            raise self.error(
                key, show(value),
                "a TOML date (2021-11-21) or date-time (2021-11-21T18:30:00+03:00), no quotes",
            )
        return value

    def clock(self, key: str, *, required: bool = True) -> int | None:
        """A time of day ``"HH:MM"`` (``"24:00"`` allowed for midnight at the end), in minutes."""
        value = self._get(key, required)
        if value is _MISSING:
            return None
        minutes = parse_clock(value)
        if minutes is None:
            raise self.error(key, show(value), 'a time of day as a string "HH:MM", 00:00 to 24:00')
        return minutes

    def str_list(self, key: str, *, required: bool = True) -> list[str]:
        """An array of non-empty strings."""
        value = self._get(key, required)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(key, show(value), "an array of non-empty strings")
        return list(value)

    # -- nested tables ------------------------------------------------------------------------

    def table(self, key: str, *, required: bool = True) -> Fields | None:
        """A sub-table."""
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if not isinstance(value, Mapping):
            raise self.error(key, _type_name(value), "a table", f"Write it as [{self.child(key)}].")
        return Fields(value, self.file, self.child(key))

    def req_table(self, key: str) -> Fields:
        """A required sub-table (typed for the checker)."""
        value = self.table(key, required=True)
        assert value is not None
        return value

    def tables(self, key: str, *, required: bool = True, min_items: int = 0) -> list[Fields]:
        """An array of tables (``[[key]]``)."""
        value = self._get(key, required)
        if value is _MISSING:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.error(key, _type_name(value), "an array of tables",
                             f"Write each entry as [[{self.path(key)}]].")
        if len(value) < min_items:
            raise self.error(key, f"{len(value)} entries", f"at least {min_items}")
        return [Fields(v, self.file, f"{self.path(key)}[{i}]") for i, v in enumerate(value)]

    def subtables(self, key: str, *, required: bool = True) -> dict[str, Fields]:
        """A table of named tables (``[key.name]`` sections), in file order."""
        outer = self.table(key, required=required)
        if outer is None:
            return {}
        result = {}
        for name in outer.data:
            sub = outer.table(name)
            assert sub is not None
            result[name] = sub
        return result

    def finish(self) -> None:
        """Reject any field that was not read: it is a typo or belongs elsewhere."""
        unknown = [k for k in self.data if k not in self._read]
        if unknown:
            key = unknown[0]
            raise InputError(self.file, self.child(key), "an unknown field",
                             "only the fields of this table's schema",
                             _did_you_mean(key, sorted(self._read)) or "Remove it or check the "
                             "spelling against the format in docs/formats.md.")


def dotted(where: str, key: str) -> str:
    """``where.key`` for an error message; a key that is not plain (empty, long, spaces) is quoted."""
    name = key if _BARE_KEY.fullmatch(key) else show(key, limit=40)
    return f"{where}.{name}" if where else name


def parse_clock(value: object) -> int | None:
    """Minutes since midnight for ``"HH:MM"``; ``None`` if malformed. ``"24:00"`` gives 1440."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        return None
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit()):
        return None
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m != 0):
        return None
    return 60 * h + m


def format_clock(minutes: int) -> str:
    """Inverse of :func:`parse_clock`."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _did_you_mean(value: str, allowed: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f"Did you mean {close[0]!r}?" if close else None
