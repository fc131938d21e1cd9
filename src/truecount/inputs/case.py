"""Case files: the facts of one recruitment drive, each with its source.

A case file (TOML, see ``docs/formats.md``) holds what is known about one campaign: the actor, the
announcement, the campaign window and its time zone, each enrolment channel, each published claim,
each piece of evidence about whether the channel could be reached, the sources every fact cites, the
alternative *readings* of ambiguous facts, and third-party arithmetic kept for comparison.

:func:`load_case` validates a file into a :class:`Case` (frozen dataclasses); :meth:`Case.to_dataset`
turns it into the one canonical :class:`xarray.Dataset` (dimensions ``channel``, ``day``, ``claim``,
``evidence``) that the model consumes. Loading runs no code from the file.

Conventions
-----------
* A claim dated with a day but no time is taken at the *end* of that day (local time): the reading
  most favourable to the claimant, since it gives the channel the most time.
* Date-times without an offset are local time in the case's time zone.
* A channel's daily opening hours are the same every day it is open; ``closes = "24:00"`` with
  ``opens = "00:00"`` is round the clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import xarray as xr

from truecount.errors import InputError, show, show_choices
from truecount.inputs._fields import Fields, dotted, format_clock, read_toml
from truecount.quantities import CHANNEL_KINDS as QUANTITY_CHANNEL_KINDS

SCHEMA_VERSION = 1

#: What a published figure counts, on the funnel attempts -> answered calls -> registrations ->
#: people who turned up. "unclear" lets the model weigh the possibilities.
CLAIM_COUNTS = ("attempts", "answered", "registrations", "turned_up", "unclear")
#: What the claimant presented the figure as (the same steps; a figure is usually presented as people).
CLAIM_PRESENTED = ("attempts", "answered", "registrations", "turned_up")
#: Kinds of channel: lines that take one call each, a busy line lost (``phone_lines``); a call
#: centre whose agents take one call each while the others hold and may hang up
#: (``call_centre``); walk-in desks or points where people queue in person and may leave, whose
#: number may be known only within a range (``walk_in``); an online form, website or messaging
#: account that no line limits (``online_form``).
CHANNEL_KINDS = QUANTITY_CHANNEL_KINDS
#: Qualitative strengths of unreachability evidence, weakest first; the spec maps each to data.
EVIDENCE_STRENGTHS = ("some", "many", "most", "nearly_all")
#: Channel fields that a reading may override.
READING_FIELDS = ("servers", "opens", "closes", "first_day", "last_day")
#: Years a case's dates may fall in: any drive with phone lines, and days whose hours all exist.
CASE_YEARS = (1900, 2199)
#: Longest window, channel opening and distance of a channel day or a claim from the window (days).
MAX_DAYS = 366


@dataclass(frozen=True)
class Source:
    """A document that facts of the case cite."""

    id: str
    title: str
    authors: tuple[str, ...]
    publisher: str
    date: dt.date
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Sourced:
    """Where a fact comes from: a source id and the words it rests on."""

    source: str
    quote: str


@dataclass(frozen=True)
class Channel:
    """One enrolment channel: ``servers`` lines open ``opens``-``closes`` daily, first to last day.

    For a ``call_centre`` the servers are its agents; for ``walk_in`` desks its desks (or
    points), whose number may be known only as a range, ``servers`` to ``servers_upper``. An
    ``online_form`` has no lines (``servers`` is 0): nothing limits how many it takes an hour.
    """

    id: str
    kind: str
    servers: int
    opens: int  # minutes after local midnight
    closes: int  # minutes after local midnight, up to 1440
    first_day: dt.date
    last_day: dt.date
    cited: tuple[Sourced, ...]
    note: str | None = None
    #: The most desks a ``walk_in`` channel whose count is a range may have (None: ``servers``
    #: exactly).
    servers_upper: int | None = None

    @property
    def servers_range(self) -> tuple[int, int]:
        """The fewest and the most servers (the same number twice when the count is known)."""
        return self.servers, self.servers if self.servers_upper is None else self.servers_upper

    @property
    def servers_label(self) -> str:
        """``"6"``, ``"40 agents"``, ``"1,000-3,000 desks"``; ``""`` for an online form."""
        low, high = self.servers_range
        count = f"{low:,}" if low == high else f"{low:,}-{high:,}"
        unit = {"call_centre": " agents", "walk_in": " desks", "online_form": ""}.get(self.kind, "")
        return "" if not self.bounded else count + unit

    @property
    def hours_per_day(self) -> float:
        """Hours the lines are open each day."""
        return (self.closes - self.opens) / 60.0

    @property
    def n_days(self) -> int:
        """Number of days the channel is open."""
        return (self.last_day - self.first_day).days + 1

    @property
    def days(self) -> list[dt.date]:
        """The days the channel is open."""
        return [self.first_day + dt.timedelta(days=i) for i in range(self.n_days)]

    @property
    def line_hours_per_day(self) -> float:
        """Lines times hours open, per day (0 for an online form, which has no lines).

        For walk-in desks whose count is a range, the most desks: an upper bound, as capacity is.
        """
        return self.servers_range[1] * self.hours_per_day

    @property
    def bounded(self) -> bool:
        """Whether lines limit what the channel can take (not for an online form)."""
        return self.kind != "online_form"

    @property
    def hours_label(self) -> str:
        """``"09:00-20:00"``."""
        return f"{format_clock(self.opens)}-{format_clock(self.closes)}"

    def open_hours_before(self, day: dt.date, until: dt.datetime, tz: ZoneInfo) -> float:
        """Hours the channel is open on ``day`` before the instant ``until`` (0 if closed)."""
        if not self.first_day <= day <= self.last_day:
            return 0.0
        midnight = dt.datetime.combine(day, dt.time(0), tzinfo=tz)
        start = midnight + dt.timedelta(minutes=self.opens)
        end = midnight + dt.timedelta(minutes=self.closes)
        end = min(end, until)
        return max((end - start).total_seconds() / 3600.0, 0.0)


@dataclass(frozen=True)
class Claim:
    """A published figure: ``value`` (rounded to ``rounding``) at ``time``, counting ``counts``."""

    id: str
    value: int
    time: dt.datetime  # aware, in the case's time zone
    time_given: str  # "date" (taken at the end of the day) or "datetime"
    counts: str
    presented_as: str
    cumulative: bool
    rounding: int
    by: str
    cited: Sourced
    original_source: str | None = None
    note: str | None = None
    #: Start of the period a count for a period covers (``cumulative = false``): aware, local.
    since: dt.datetime | None = None
    since_given: str = ""  # "date" (from the start of the day) or "datetime"; "" for a total
    #: The one channel the claim is about (None: every channel of the case).
    channel: str | None = None

    @property
    def day(self) -> dt.date:
        """The local calendar day of the claim (a date-only claim's ``time`` is the next midnight)."""
        return (self.time - dt.timedelta(microseconds=1)).date()

    @property
    def when(self) -> str:
        """``"2021-11-21 (end of day)"`` for a date-only claim, ``"2021-11-21 14:30"`` otherwise."""
        if self.time_given == "date":
            return f"{self.day} (end of day)"
        return f"{self.time:%Y-%m-%d %H:%M}"

    @property
    def period(self) -> str:
        """What the claim covers in time: ``"up to 2021-11-21 (end of day)"`` for a running total.

        For a period: ``"2021-11-22 to 2021-11-22 (end of day)"`` or ``"2021-11-22 09:00 to 12:00"``.
        """
        if self.since is None:
            return f"up to {self.when}"
        start = f"{self.since:%Y-%m-%d}" if self.since_given == "date" else \
            f"{self.since:%Y-%m-%d %H:%M}"
        end = self.when if self.time_given == "date" or self.time.date() != self.since.date() \
            else f"{self.time:%H:%M}"
        return f"{start} to {end}"

    @property
    def label(self) -> str:
        """What the claim covers, as the fit's summary names it after the value.

        ``"by 2021-11-21 (end of day)"`` for a running total of every channel, ``"up to
        2021-11-21 (end of day), channel desk"`` for one about a channel, ``"for 2021-11-21 09:00
        to 12:00, all channels"`` for a count for a period.
        """
        if self.since is None and self.channel is None:
            return f"by {self.when}"
        covers = f"up to {self.when}" if self.since is None else f"for {self.period}"
        return f"{covers}, {self.scope}"

    @property
    def scope(self) -> str:
        """``"all channels"`` or ``"channel kss_phones"``."""
        return "all channels" if self.channel is None else f"channel {self.channel}"

    @property
    def series(self) -> tuple[str, str, str]:
        """What a running total counts and where: totals of one series cannot fall."""
        return (self.counts, self.presented_as if self.counts == "unclear" else "",
                self.channel or "")


@dataclass(frozen=True)
class Evidence:
    """Reports on reaching a channel: counts of failed/succeeded attempts, or a stated strength."""

    id: str
    channel: str
    failed: int | None
    succeeded: int | None
    strength: str | None
    cited: Sourced
    note: str | None = None

    @property
    def has_counts(self) -> bool:
        """Whether the evidence gives counts (else it gives a strength)."""
        return self.failed is not None


@dataclass(frozen=True)
class Reading:
    """An alternative reading of ambiguous facts: overrides of channel fields, with its source."""

    id: str
    description: str
    cited: Sourced
    channels: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Statement:
    """Third-party arithmetic about the case (e.g. an analyst's bound), kept for comparison."""

    id: str
    value: float
    unit: str
    about: str
    cited: Sourced


@dataclass(frozen=True)
class Case:
    """The validated facts of one campaign. Build it with :func:`load_case`."""

    path: Path
    sha256: str
    id: str
    title: str
    actor: str
    timezone: str
    announced: dt.date
    announced_cited: Sourced
    window_start: dt.date
    window_end: dt.date
    window_cited: Sourced
    channels: tuple[Channel, ...]
    claims: tuple[Claim, ...]
    evidence: tuple[Evidence, ...]
    sources: dict[str, Source]
    readings: dict[str, Reading]
    statements: tuple[Statement, ...]
    applied_readings: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    simulated: bool = False  # a simulated campaign: falling cumulative claims are warnings

    @property
    def tz(self) -> ZoneInfo:
        """The case's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def days(self) -> list[dt.date]:
        """Every calendar day from the window's start to the last open day or claim, whichever is later."""
        last = max(
            [self.window_end]
            + [c.last_day for c in self.channels]
            + [c.day for c in self.claims]
        )
        first = min([self.window_start] + [c.first_day for c in self.channels])
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]

    def channel(self, channel_id: str) -> Channel:
        """The channel with this id."""
        for c in self.channels:
            if c.id == channel_id:
                return c
        raise KeyError(channel_id)

    def with_readings(self, names: Iterable[str]) -> Case:
        """The case under the named alternative readings (applied in order; they may not clash)."""
        names = tuple(names)
        channels = {c.id: c for c in self.channels}
        set_by: dict[tuple[str, str], str] = {}
        for name in names:
            if name not in self.readings:
                allowed = ", ".join(self.readings) or "none (the case defines no readings)"
                raise InputError("--reading", "", show(name), f"a reading of {self.path}: {allowed}")
            for channel_id, overrides in self.readings[name].channels.items():
                for key in overrides:
                    if (channel_id, key) in set_by:
                        raise InputError(
                            "--reading", "", f"{set_by[channel_id, key]!r} and {name!r}",
                            "readings that set different fields",
                            f"Both set channels.{channel_id}.{key}; choose one of them.",
                        )
                    set_by[channel_id, key] = name
                updated = dataclasses.replace(channels[channel_id], **overrides)
                _check_channel(updated, self.path,
                               dotted(dotted(dotted("readings", name), "channels"), channel_id),
                               (self.window_start, self.window_end))
                channels[channel_id] = updated
        return dataclasses.replace(
            self, channels=tuple(channels.values()),
            applied_readings=self.applied_readings + names,
        )

    def warnings(self) -> list[str]:
        """Facts that are legal but suspicious, for the user and the report to see.

        Each is one line ``FILE: FIELD: what is odd``: a claim before any channel opened or after
        the window, a channel open less than an hour a day or outside the window (under the
        applied readings, if any), and falling cumulative claims in a simulated case.
        """
        found = []
        under = f" (under the reading {', '.join(self.applied_readings)})" if self.applied_readings else ""
        first_open = min(
            dt.datetime.combine(c.first_day, dt.time(0), tzinfo=self.tz) + dt.timedelta(minutes=c.opens)
            for c in self.channels
        )
        for i, claim in enumerate(self.claims):
            if claim.time <= first_open:
                found.append(
                    f"{self.path}: claims[{i}].date: claim {claim.id!r} ({claim.time:%Y-%m-%d %H:%M}) "
                    f"comes before any channel opened ({first_open:%Y-%m-%d %H:%M}){under}; the "
                    "channel cannot explain any of it"
                )
            if claim.day > self.window_end:
                found.append(f"{self.path}: claims[{i}].date: claim {claim.id!r} ({claim.when}) "
                             f"comes after the window ended ({self.window_end})")
        for i, c in enumerate(self.channels):
            if c.hours_per_day < 1:
                found.append(f"{self.path}: channels[{i}].closes: channel {c.id!r} is open only "
                             f"{c.hours_label} each day{under}")
            for key, day in (("first_day", c.first_day), ("last_day", c.last_day)):
                if not self.window_start <= day <= self.window_end:
                    found.append(f"{self.path}: channels[{i}].{key}: channel {c.id!r} is open on "
                                 f"{day}{under}, outside the window ({self.window_start} to "
                                 f"{self.window_end})")
        if self.simulated:
            for i, earlier, later in _falling_claims(self):
                found.append(f"{self.path}: claims[{i}].value: cumulative claim {later.id!r} "
                             f"({later.value:,}) is below the earlier {earlier.id!r} "
                             f"({earlier.value:,}); allowed because the case is simulated")
        return found

    def to_dataset(self) -> xr.Dataset:
        """The case as one :class:`xarray.Dataset` with named dimensions.

        Dimensions: ``channel``, ``day`` (calendar days, local time), ``claim``, ``evidence``.

        Variables: ``servers(channel)`` (0 for an online form), ``servers_upper(channel)`` (the
        most desks of walk-in desks whose count is a range, else ``servers``),
        ``channel_kind(channel)``;
        ``open_hours(channel, day)``; ``claim_value``,
        ``claim_rounding``, ``claim_cumulative``, ``claim_counts``, ``claim_presented_as``,
        ``claim_time`` (UTC), ``claim_channel`` (the one channel it is about, "" for all)
        ``(claim)``; ``claim_exposure(claim, channel, day)``: the share of each
        day's open hours the claim counts (before its date; for a count for a period, from the
        period's start; zero on channels a claim about one channel does not name);
        ``evidence_channel``, ``evidence_failed``, ``evidence_succeeded`` (NaN where a strength
        is given instead), ``evidence_strength`` ("" where counts are given) ``(evidence)``.
        """
        tz = self.tz
        days = self.days
        day_coord = np.array(days, dtype="datetime64[D]")
        open_hours = np.array(
            [[c.open_hours_before(d, _end_of_day(d, tz), tz) for d in days] for c in self.channels]
        )
        day_index = np.array([d.toordinal() for d in days])

        def before(t: dt.datetime) -> np.ndarray:
            """Share of each (channel, day)'s open hours before the instant ``t``."""
            # A day wholly before t's local date is wholly before it (channels close by
            # midnight), a day after it wholly after; only t's own day needs the clock.
            local = t.astimezone(tz).date()
            share = ((day_index < local.toordinal())[None, :] & (open_hours > 0)).astype(float)
            if local in days:
                k = days.index(local)
                for j, channel in enumerate(self.channels):
                    if open_hours[j, k] > 0:
                        share[j, k] = channel.open_hours_before(local, t, tz) / open_hours[j, k]
            return share

        channel_ids = [c.id for c in self.channels]
        exposure = np.zeros((len(self.claims), len(self.channels), len(days)))
        for i, claim in enumerate(self.claims):
            exposure[i] = before(claim.time)
            if claim.since is not None:  # a count for a period: what falls before its start
                exposure[i] -= before(claim.since)
            if claim.channel is not None:  # about one channel: the others do not count
                exposure[i, [j for j, c in enumerate(channel_ids) if c != claim.channel]] = 0.0
        exposure = np.clip(exposure, 0.0, 1.0)  # differences of shares: no -0.0 or 1 + 1e-16
        ev = self.evidence

        def nan_int(x: int | None) -> float:
            return float("nan") if x is None else float(x)

        return xr.Dataset(
            {
                "servers": ("channel", np.array([c.servers for c in self.channels], dtype=np.int64)),
                "servers_upper": ("channel", np.array([c.servers_range[1] for c in self.channels],
                                                      dtype=np.int64)),
                "channel_kind": ("channel", np.array([c.kind for c in self.channels], dtype=str)),
                "open_hours": (("channel", "day"), open_hours),
                "claim_value": ("claim", np.array([c.value for c in self.claims], dtype=float)),
                "claim_rounding": ("claim", np.array([c.rounding for c in self.claims], dtype=float)),
                "claim_cumulative": ("claim", np.array([c.cumulative for c in self.claims], bool)),
                "claim_counts": ("claim", np.array([c.counts for c in self.claims], dtype=str)),
                "claim_presented_as": (
                    "claim", np.array([c.presented_as for c in self.claims], dtype=str)),
                "claim_time": ("claim", np.array(
                    [c.time.astimezone(dt.UTC).replace(tzinfo=None) for c in self.claims],
                    dtype="datetime64[s]")),
                "claim_exposure": (("claim", "channel", "day"), exposure),
                "claim_channel": ("claim", np.array([c.channel or "" for c in self.claims],
                                                    dtype=str)),
                "evidence_channel": ("evidence", np.array([e.channel for e in ev], dtype=str)),
                "evidence_failed": ("evidence", np.array([nan_int(e.failed) for e in ev])),
                "evidence_succeeded": ("evidence", np.array([nan_int(e.succeeded) for e in ev])),
                "evidence_strength": ("evidence", np.array([e.strength or "" for e in ev], str)),
            },
            coords={
                "channel": [c.id for c in self.channels],
                "day": day_coord,
                "claim": [c.id for c in self.claims],
                "evidence": [e.id for e in ev],
            },
            attrs={
                "case_id": self.id,
                "case_title": self.title,
                "case_file": str(self.path),
                "case_sha256": self.sha256,
                "timezone": self.timezone,
                "readings": ",".join(self.applied_readings),
            },
        )


def _end_of_day(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=tz)


# -- loading --------------------------------------------------------------------------------------


def load_case(path: str | Path, readings: Sequence[str] = ()) -> Case:
    """Read and validate a case file; apply the named alternative ``readings``.

    Raises
    ------
    truecount.errors.InputError
        On any problem with the file, naming the file, the field, what was found and what is allowed.

    """
    path = Path(path)
    raw = read_toml(path, "case")
    top = Fields(raw, path)
    version = top.req_integer("schema_version")
    if version != SCHEMA_VERSION:
        raise top.error("schema_version", str(version), f"{SCHEMA_VERSION}",
                        "This truecount reads case files of schema version 1.")

    sources = _parse_sources(top)

    def cited(f: Fields) -> Sourced:
        source = f.req_text("source")
        if source not in sources:
            raise f.error("source", show(source), "the id of a [sources.*] table: "
                          + show_choices(sources), "Add the source or fix the id.")
        return Sourced(source, f.req_text("quote"))

    tz_name = top.req_text("timezone")
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, a name too long
        raise top.error("timezone", show(tz_name), "an IANA time zone name such as "
                        "'Asia/Baghdad'") from None
    tz = ZoneInfo(tz_name)

    actor = top.req_table("actor")
    actor_name = actor.req_text("name")
    actor.finish()

    announcement = top.req_table("announcement")
    announced = _case_date(announcement, "date")
    announced_cited = cited(announcement)
    announcement.text("by", required=False)
    announcement.finish()

    window = top.req_table("window")
    window_start, window_end = _case_date(window, "start"), _case_date(window, "end")
    if window_end < window_start:
        raise window.error("end", str(window_end), f"a date on or after start ({window_start})")
    if (window_end - window_start).days >= MAX_DAYS:
        raise window.error("end", str(window_end), f"a window of at most {MAX_DAYS} days")
    window_cited = cited(window)
    window.finish()

    channels = [_parse_channel(f, cited) for f in top.tables("channels", min_items=1)]
    _unique([c.id for c in channels], top, "channels")
    channel_ids = [c.id for c in channels]
    for i, c in enumerate(channels):
        _check_channel(c, path, f"channels[{i}]", (window_start, window_end))

    claims = [_parse_claim(f, cited, tz, (window_start, window_end), channel_ids)
              for f in top.tables("claims", min_items=1)]
    _unique([c.id for c in claims], top, "claims")

    evidence = [_parse_evidence(f, cited, channels) for f in top.tables("evidence",
                                                                            required=False)]
    _unique([e.id for e in evidence], top, "evidence")

    reading_tables = {
        name: _parse_reading(name, f, cited, channels)
        for name, f in top.subtables("readings", required=False).items()
    }
    statements = [_parse_statement(f, cited) for f in top.tables("statements", required=False)]
    _unique([s.id for s in statements], top, "statements")

    case = Case(
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        id=top.req_text("id"),
        title=top.req_text("title"),
        actor=actor_name,
        timezone=tz_name,
        announced=announced,
        announced_cited=announced_cited,
        window_start=window_start,
        window_end=window_end,
        window_cited=window_cited,
        channels=tuple(channels),
        claims=tuple(claims),
        evidence=tuple(evidence),
        sources=sources,
        readings=reading_tables,
        statements=tuple(statements),
        notes=tuple(top.str_list("notes", required=False)),
        simulated=bool(top.flag("simulated", required=False, default=False)),
    )
    top.finish()
    _check_claims(case)
    for name in reading_tables:  # every reading must make a valid case, chosen or not
        case.with_readings([name])
    return case.with_readings(readings)


def _parse_sources(top: Fields) -> dict[str, Source]:
    sources = {}
    for sid, f in top.subtables("sources").items():
        authors = f.str_list("authors", required=False)
        sources[sid] = Source(
            id=sid, title=f.req_text("title"), authors=tuple(authors),
            publisher=f.req_text("publisher"), date=f.req_date("date"),
            url=f.text("url", required=False), note=f.text("note", required=False),
        )
        f.finish()
    if not sources:
        raise top.error("sources", "no sources", "at least one [sources.<id>] table",
                        "Every fact must cite a source.")
    return sources


def _parse_channel(f: Fields, cited: Any) -> Channel:
    kind = f.req_text("kind", choices=CHANNEL_KINDS)
    if kind == "online_form":
        if f.has("servers"):
            raise f.error("servers", show(f.data["servers"]), "no servers for an online form",
                          "An online form has no lines; remove servers, or use kind = "
                          "\"phone_lines\".")
        servers, upper = 0, None
    elif kind == "walk_in" and isinstance(f.data.get("servers"), list):
        servers, upper = _servers_range(f)
    else:
        servers, upper = f.req_integer("servers", min=1, max=100_000), None
    channel = Channel(
        id=f.req_text("id"),
        kind=kind,
        servers=servers,
        opens=_req_clock(f, "opens"),
        closes=_req_clock(f, "closes"),
        first_day=_case_date(f, "first_day"),
        last_day=_case_date(f, "last_day"),
        cited=tuple(_cited_table(s, cited) for s in f.tables("cites", min_items=1)),
        note=f.text("note", required=False),
        servers_upper=upper,
    )
    f.finish()
    return channel


def _servers_range(f: Fields) -> tuple[int, int]:
    """A walk-in channel's ``servers = [fewest, most]``: two integers, the first smaller."""
    value = f.raw("servers")
    fix = ("Give the number of desks, or the fewest and the most the sources allow, e.g. "
           "servers = [1000, 3000].")
    if (len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
            or not 1 <= value[0] < value[1] <= 100_000):
        raise f.error("servers", show(value), "two integers [fewest, most] with "
                      "1 <= fewest < most <= 100000", fix)
    return int(value[0]), int(value[1])


def _cited_table(f: Fields, cited: Any) -> Sourced:
    result: Sourced = cited(f)
    f.finish()
    return result


def _req_clock(f: Fields, key: str) -> int:
    value = f.clock(key)
    assert value is not None
    return value


def _case_date(f: Fields, key: str) -> dt.date:
    value = f.req_date(key)
    _check_year(f, key, value)
    return value


def _check_year(f: Fields, key: str, value: dt.date) -> None:
    first, last = CASE_YEARS
    if not first <= value.year <= last:
        raise f.error(key, str(value), f"a date in the years {first} to {last}",
                      "Check the year.")


def _near_window(day: dt.date, window: tuple[dt.date, dt.date]) -> bool:
    return (window[0] - day).days <= MAX_DAYS and (day - window[1]).days <= MAX_DAYS


def _check_channel(c: Channel, file: Path, where: str, window: tuple[dt.date, dt.date]) -> None:
    if c.closes <= c.opens:
        raise InputError(file, f"{where}.closes", format_clock(c.closes),
                         f"a time after opens ({format_clock(c.opens)})",
                         "Use 00:00 to 24:00 for round the clock.")
    if c.last_day < c.first_day:
        raise InputError(file, f"{where}.last_day", str(c.last_day),
                         f"a date on or after first_day ({c.first_day})")
    if c.n_days > MAX_DAYS:
        raise InputError(file, f"{where}.last_day", f"{c.n_days} open days",
                         f"a campaign of at most {MAX_DAYS} days")
    for key, day in (("first_day", c.first_day), ("last_day", c.last_day)):
        if not _near_window(day, window):
            raise InputError(file, f"{where}.{key}", str(day), f"a date within {MAX_DAYS} days of "
                             f"the window ({window[0]} to {window[1]})", "Check the year.")


def _parse_claim(f: Fields, cited: Any, tz: ZoneInfo, window: tuple[dt.date, dt.date],
                 channel_ids: list[str]) -> Claim:
    when = f.date_or_datetime("date")
    day = when.date() if isinstance(when, dt.datetime) else when
    _check_year(f, "date", day)
    if not _near_window(day, window):
        raise f.error("date", str(when), f"a date within {MAX_DAYS} days of the window "
                      f"({window[0]} to {window[1]})", "Check the year.")
    if isinstance(when, dt.datetime):
        time = when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)
        time_given = "datetime"
    else:
        time = _end_of_day(when, tz)
        time_given = "date"
    value = f.req_integer("value", min=1, max=10**10)
    rounding = f.integer("rounding", required=False, min=1, default=1)
    assert rounding is not None
    if value % rounding:
        raise f.error("value", f"{value:,}", f"a multiple of rounding ({rounding:,})",
                      "Set rounding to the precision the published figure shows.")
    original = f.text("original_source", required=False)
    cumulative = bool(f.flag("cumulative"))
    since, since_given = None, ""
    if f.has("since"):
        start = f.date_or_datetime("since")
        if isinstance(start, dt.datetime):
            since = start.replace(tzinfo=tz) if start.tzinfo is None else start.astimezone(tz)
            since_given = "datetime"
        else:
            since = dt.datetime.combine(start, dt.time(0), tzinfo=tz)
            since_given = "date"
        if cumulative:
            raise f.error("since", str(start), "no since for a running total (cumulative = true)",
                          "A count for a period takes cumulative = false and since = its start.")
        if since >= time:
            raise f.error("since", str(start), f"a start before the claim's date ({when})",
                          "A date-only since starts at 00:00 of that day; a date-only date ends "
                          "at midnight after it.")
    elif not cumulative:
        raise f.error("since", "nothing (the field is missing)", "the start of the period the "
                      "count covers (cumulative = false)",
                      "Give since = the first day (or date-time) counted, e.g. since = 2021-11-22 "
                      "for \"on the second day\".")
    channel = f.text("channel", required=False)
    if channel is not None and channel not in channel_ids:
        raise f.error("channel", show(channel), "one of " + ", ".join(map(repr, channel_ids)),
                      "Name the channel the claim is about, or leave channel out for all of "
                      "them.")
    claim = Claim(
        id=f.req_text("id"),
        value=value,
        time=time,
        time_given=time_given,
        counts=f.req_text("counts", choices=CLAIM_COUNTS),
        presented_as=f.req_text("presented_as", choices=CLAIM_PRESENTED),
        cumulative=cumulative,
        rounding=rounding,
        by=f.req_text("by"),
        cited=cited(f),
        original_source=original,
        note=f.text("note", required=False),
        since=since,
        since_given=since_given,
        channel=channel,
    )
    f.finish()
    return claim


def _falling_claims(case: Case) -> list[tuple[int, Claim, Claim]]:
    """Running totals below an earlier total of the same series: (index, earlier, later).

    Only like is compared with like: totals of the same quantity (``counts``, and for an unclear
    claim what it was presented as) about the same channels (:attr:`Claim.series`). A count of
    call attempts and a count of bookings are different steps of the funnel.
    """
    falling = []
    for series in dict.fromkeys(c.series for c in case.claims if c.cumulative):
        totals = sorted(((c.time, i, c) for i, c in enumerate(case.claims)
                         if c.cumulative and c.series == series), key=lambda t: t[:2])
        falling += [(i, earlier, later)
                    for (_, _, earlier), (_, i, later) in itertools.pairwise(totals)
                    if later.value < earlier.value]
    return sorted(falling, key=lambda t: t[0])


def _check_claims(case: Case) -> None:
    falling = _falling_claims(case)
    if falling and not case.simulated:
        i, earlier, later = falling[0]
        raise InputError(
            case.path, f"claims[{i}].value", f"{later.value:,} on {later.day}",
            f"at least {earlier.value:,} (claim {earlier.id!r} is an earlier running total of "
            f"the same quantity, {later.counts}, about {later.scope})",
            "Running totals cannot fall; if one counts a period, set cumulative = false and "
            "since = its start; if it is about one channel, name it with channel = ...",
        )
    for i, claim in enumerate(case.claims):
        if claim.original_source is not None and claim.original_source not in case.sources:
            raise InputError(case.path, f"claims[{i}].original_source", show(claim.original_source),
                             "the id of a [sources.*] table")
        if claim.day < case.announced:
            raise InputError(case.path, f"claims[{i}].date", f"{claim.day}",
                             f"a date on or after the announcement ({case.announced})")


def _parse_evidence(f: Fields, cited: Any, channels: list[Channel]) -> Evidence:
    channel = f.req_text("channel", choices=[c.id for c in channels])
    if not next(c for c in channels if c.id == channel).bounded:
        raise f.error("channel", show(channel), "a channel with lines",
                      "Reports of unreachable lines are about phone lines; this channel is an "
                      "online form, which the model does not let fail.")
    failed = f.integer("failed", required=False, min=0, max=10**9)
    succeeded = f.integer("succeeded", required=False, min=0, max=10**9)
    strength = f.text("strength", required=False, choices=EVIDENCE_STRENGTHS)
    if (failed is None) != (succeeded is None):
        missing = "succeeded" if succeeded is None else "failed"
        raise f.error(missing, "nothing", "both failed and succeeded counts, or neither",
                      "Give both counts, or a strength instead.")
    if (failed is None) == (strength is None):
        raise f.error("strength", show(strength),
                      "either counts (failed and succeeded) or a strength, not both or neither")
    if failed is not None and succeeded is not None and failed + succeeded == 0:
        raise f.error("failed", "0 failed and 0 succeeded", "at least one reported attempt")
    evidence = Evidence(
        id=f.req_text("id"), channel=channel, failed=failed, succeeded=succeeded,
        strength=strength, cited=cited(f), note=f.text("note", required=False),
    )
    f.finish()
    return evidence


def _parse_reading(name: str, f: Fields, cited: Any, channels: list[Channel]) -> Reading:
    overrides: dict[str, dict[str, Any]] = {}
    channel_ids = [c.id for c in channels]
    for channel_id, sub in f.subtables("channels").items():
        if channel_id not in channel_ids:
            raise sub.error("", "an unknown channel id", "one of " + show_choices(channel_ids))
        if sub.has("servers") and not channels[channel_ids.index(channel_id)].bounded:
            raise sub.error("servers", show(sub.data["servers"]), "no servers for an online form",
                            "An online form has no lines; a reading can change its hours and "
                            "days.")
        values: dict[str, Any] = {}
        for key in sub.data:
            if key not in READING_FIELDS:
                raise sub.error(key, "a field a reading cannot change",
                                "one of " + ", ".join(READING_FIELDS))
        if sub.has("servers"):  # a reading states the count: no range
            values["servers"] = sub.req_integer("servers", min=1, max=100_000)
            values["servers_upper"] = None
        for key in ("opens", "closes"):
            if sub.has(key):
                values[key] = sub.clock(key)
        for key in ("first_day", "last_day"):
            if sub.has(key):
                values[key] = _case_date(sub, key)
        sub.finish()
        overrides[channel_id] = values
    reading = Reading(name, f.req_text("description"), cited(f), overrides)
    f.finish()
    return reading


def _parse_statement(f: Fields, cited: Any) -> Statement:
    statement = Statement(
        id=f.req_text("id"), value=f.req_number("value", gt=0),
        unit=f.req_text("unit", choices=("registrations", "days", "minutes", "line_hours")),
        about=f.req_text("about"), cited=cited(f),
    )
    f.finish()
    return statement


def _unique(ids: list[str], top: Fields, key: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(ids):
        if item in seen:
            raise InputError(top.file, f"{key}[{i}].id", show(item), "an id not used before",
                             "Give every entry its own id.")
        seen.add(item)
