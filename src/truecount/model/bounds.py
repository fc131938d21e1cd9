"""Deterministic capacity bounds of a case: what the channel could have done, claim by claim.

The back-of-the-envelope analysis, made explicit: for a stated handle time, how many line-hours each
channel had, the most registrations they allow, and for each claim the handle time it implies and the
days of operation it would need. Built on :mod:`truecount.model.capacity`; rendered by ``truecount
capacity`` as a table or JSON. No probability here: the model (:mod:`truecount.model.build`) replaces the
fixed handle time and full use with priors and data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from truecount.inputs.case import Case, Channel
from truecount.model import capacity

#: Handle time used when none is given: the value that reproduces the KSS analysts' 28 days.
DEFAULT_HANDLE_TIME = 5.0


@dataclass(frozen=True)
class ChannelBound:
    """Capacity of one channel over its open days."""

    id: str
    servers: int
    hours: str
    hours_per_day: float
    first_day: str | None
    last_day: str | None
    days: int
    line_hours: float
    #: None for an online form: no line limits it.
    max_registrations: float | None
    kind: str = "phone_lines"
    #: The most servers (desks whose count is a range: the top of it; capacity is an upper bound).
    servers_upper: int | None = None
    #: ``"6"``, ``"40 agents"``, ``"20-60 desks"`` (:attr:`truecount.inputs.case.Channel.servers_label`).
    servers_label: str = ""


@dataclass(frozen=True)
class ClaimBound:
    """What one claim requires of the channels."""

    id: str
    value: int
    date: str | None
    line_hours_before: float
    #: None when an online form counts towards the claim (no handle time or days limit it).
    handle_time_needed: float | None
    days_needed: float | None
    possible: bool
    #: False for a claim of call attempts (lines limit the calls they answer, not the attempts
    #: made) and for a claim an online form counts towards (no line limits a form): capacity
    #: cannot rule it out, and ``possible`` is then True.
    bounded: bool = True
    #: Why the claim is not bounded: "attempts" or "online_form" ("" when it is bounded).
    unbounded_because: str = ""


@dataclass(frozen=True)
class CapacityResult:
    """The capacity table of a case (or of options alone) at one handle time."""

    source: str
    readings: list[str]
    handle_time: float
    channels: list[ChannelBound]
    claims: list[ClaimBound]
    statements: list[dict[str, Any]]
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dataclasses.asdict(self)


def override_channels(
    case: Case, *, lines: int | None = None, hours_per_day: float | None = None,
    days: int | None = None,
) -> Case:
    """The case with every channel's lines, daily hours or number of open days replaced.

    Daily hours keep the channel's opening time where they fit in the day, else end at midnight.
    """
    channels = []
    for c in case.channels:
        changes: dict[str, Any] = {}
        if lines is not None:
            changes["servers"] = lines
        if hours_per_day is not None:
            length = round(hours_per_day * 60)
            opens = min(c.opens, 1440 - length)
            changes.update(opens=opens, closes=opens + length)
        if days is not None:
            changes["last_day"] = c.first_day + dt.timedelta(days=days - 1)
        channels.append(dataclasses.replace(c, **changes))
    return dataclasses.replace(case, channels=tuple(channels))


def case_capacity(case: Case, handle_time: float = DEFAULT_HANDLE_TIME) -> CapacityResult:
    """Capacity of every channel of ``case`` and what each claim requires, at ``handle_time``."""
    channels = [_channel_bound(c, handle_time) for c in case.channels]
    # Line-hours each claim counts (before its date, within its period, on its channels): the
    # exposure the model uses, so the two cannot disagree.
    ds = case.to_dataset()
    line_hours = ds.servers_upper.values[:, None] * ds.open_hours.values  # (channel, day)
    before = (ds.claim_exposure.values * line_hours).sum(axis=(1, 2))
    is_form = ds.channel_kind.values == "online_form"
    form_hours = (ds.claim_exposure.values * ds.open_hours.values)[:, is_form].sum(axis=(1, 2))
    claims = []
    for claim, b, on_form in zip(case.claims, before, form_hours, strict=True):
        about = [c for c in case.channels if claim.channel in (None, c.id)]
        per_day = sum(c.line_hours_per_day for c in about)
        label = claim.when if claim.since is None and claim.channel is None else \
            f"{claim.period}, {claim.scope}"
        if on_form > 0:
            claims.append(ClaimBound(claim.id, claim.value, label, float(b), None, None,
                                     possible=True, bounded=False,
                                     unbounded_because="online_form"))
            continue
        bound = _claim_bound(claim.id, claim.value, label, float(b), per_day, handle_time)
        if claim.counts == "attempts":
            bound = dataclasses.replace(bound, possible=True, bounded=False,
                                        unbounded_because="attempts")
        claims.append(bound)
    statements = [
        {"id": s.id, "value": s.value, "unit": s.unit, "about": s.about, "source": s.cited.source}
        for s in case.statements
    ]
    return CapacityResult(str(case.path), list(case.applied_readings), handle_time, channels,
                          claims, statements, case.warnings())


def options_capacity(
    *, lines: int, hours_per_day: float, days: int, claims: list[int],
    handle_time: float = DEFAULT_HANDLE_TIME,
) -> CapacityResult:
    """Capacity of one channel described by options alone; claims are taken at the window's end."""
    length = round(hours_per_day * 60)
    channel = Channel("lines", "phone_lines", lines, 0, length, dt.date.min,
                      dt.date.min + dt.timedelta(days=days - 1), ())
    bound = dataclasses.replace(_channel_bound(channel, handle_time), first_day=None,
                                last_day=None)
    claim_bounds = [
        _claim_bound(f"claim_{i + 1}", value, None, bound.line_hours, channel.line_hours_per_day,
                     handle_time)
        for i, value in enumerate(claims)
    ]
    return CapacityResult("options", [], handle_time, [bound], claim_bounds, [], [])


def _channel_bound(c: Channel, handle_time: float) -> ChannelBound:
    most_servers = c.servers_range[1]
    line_hours = most_servers * c.hours_per_day * c.n_days
    most = (float(capacity.max_registrations(most_servers, c.hours_per_day * c.n_days,
                                             handle_time)) if c.bounded else None)
    return ChannelBound(
        id=c.id, servers=c.servers, hours=c.hours_label, hours_per_day=c.hours_per_day,
        first_day=c.first_day.isoformat(), last_day=c.last_day.isoformat(), days=c.n_days,
        line_hours=line_hours, max_registrations=most, kind=c.kind, servers_upper=most_servers,
        servers_label=c.servers_label,
    )


def _claim_bound(claim_id: str, value: int, date: str | None, line_hours_before: float,
                 line_hours_per_day: float, handle_time: float) -> ClaimBound:
    needed = float(capacity.required_handle_time(value, line_hours_before))
    return ClaimBound(
        id=claim_id, value=value, date=date, line_hours_before=line_hours_before,
        handle_time_needed=needed,
        days_needed=float(capacity.required_days(value, line_hours_per_day, handle_time)),
        possible=needed >= handle_time,
    )
