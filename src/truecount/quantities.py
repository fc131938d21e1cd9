"""Every quantity truecount names, defined once: model parameters, Deterministics, derived draws.

Each :class:`Quantity` carries its name, unit, support, meaning, its dimensions after the sample
dimensions (``("channel",)`` for a per-channel parameter, ``()`` for a shared one), the label of its
figure axis, whether it is drawn on a log scale, and the roles it plays (checked by the gate,
ranked by SBC, checked for power-scaling sensitivity, shown among the main parameters). The
spec loader, the model, inference, the gate, the figures, the report, calibration and sensitivity
all read their lists from here; nothing else restates a parameter.

>>> PARAMETERS["handle_time"].dims
('channel',)
>>> "log_inflation" in SAMPLED
False
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: The order of the funnel quantities a claim can report (the ``quantity`` dimension).
FUNNEL = ("registrations", "answered", "attempts")
#: Kinds of channel (a case's ``channels[].kind``): phone lines where a busy line is lost; a call
#: centre whose callers hold in a queue and may hang up; walk-in desks (offices, stands) where
#: people queue in person and may leave, their number possibly uncertain; an online form (or
#: website, or messaging account) that no line limits.
CHANNEL_KINDS = ("phone_lines", "call_centre", "walk_in", "online_form")


@dataclass(frozen=True)
class Quantity:
    """One named quantity of the model or of its results."""

    name: str
    kind: str  # "parameter" (a spec prior), "deterministic" (in the model), "derived" (after it)
    dims: tuple[str, ...]
    unit: str
    support: str  # "positive", "unit" (0 to 1), "real", "count", "boolean"
    meaning: str
    label: str = ""  # figure axis label, with the unit
    log_scale: bool = False
    gated: bool = False  # its R-hat and ESS must pass the diagnostics gate
    sbc: bool = False  # its rank is recorded by simulation-based calibration
    psense: bool = False  # its power-scaling sensitivity is reported
    sampled: bool = True  # a parameter the sampler draws (not integrated out of the model)
    #: The kinds of channel a per-channel quantity describes: the model has a per-channel
    #: parameter only if the case has a channel of one of them, and tables leave out the
    #: elements of other channels (their draws are the prior's, and mean nothing).
    kinds: tuple[str, ...] = CHANNEL_KINDS
    #: ``(switch, choice)``: the parameter exists only when the spec's structure switch has
    #: that choice (``None``: always, kinds of channel permitting).
    when: tuple[str, object] | None = None

    def switched_on(self, switches: Mapping[str, object]) -> bool:
        """Whether the structure ``switches`` (a spec's, or a model structure) give it a place."""
        return self.when is None or switches.get(self.when[0]) == self.when[1]

    @property
    def per_channel(self) -> bool:
        """One value per channel (else shared by the case, or per claim or day)."""
        return "channel" in self.dims


def _p(name: str, dims: tuple[str, ...], unit: str, support: str, meaning: str, label: str,
       kinds: tuple[str, ...] = CHANNEL_KINDS, when: tuple[str, object] | None = None,
       **roles: bool) -> Quantity:
    return Quantity(name, "parameter", dims, unit, support, meaning, label,
                    **({"gated": True, "sbc": True} | roles), kinds=kinds, when=when)


_CH, _CLAIM, _CD = ("channel",), ("claim",), ("channel", "day")
#: Channels of servers (lines, agents, desks) that take one caller each; call centres; walk-in
#: desks; online forms.
_SERVED = ("phone_lines", "call_centre", "walk_in")
_QUEUES, _DESKS, _FORMS = ("call_centre",), ("walk_in",), ("online_form",)

#: Every quantity, in the order tables and figures show them.
QUANTITIES: tuple[Quantity, ...] = (
    _p("handle_time", _CH, "minutes", "positive",
       "mean time a registration call occupies a line or an agent",
       "mean handle time (minutes)", psense=True, kinds=_SERVED),
    _p("attended_share", _CH, "share", "unit",
       "share of a line's (or a call centre's) open time that someone is there to answer it",
       "share of open hours attended", psense=True, kinds=_SERVED),
    _p("peak_load_per_line", _CH, "erlangs per line", "positive",
       "demand on the first open day relative to the channel's size: call attempts an open hour "
       "times the handle time, per line (1: just enough lines for every attempt)",
       "peak offered load per line (log scale)", log_scale=True, psense=True, kinds=_SERVED),
    _p("patience", _CH, "minutes", "positive",
       "mean time a caller holds in a call centre's queue before hanging up (exponential)",
       "mean patience on hold (minutes, log scale)", log_scale=True, psense=True,
       kinds=_QUEUES),
    _p("queue_patience", _CH, "minutes", "positive",
       "mean time a person queues at walk-in desks before leaving (exponential)",
       "mean time queued before leaving (minutes, log scale)", log_scale=True, psense=True,
       kinds=_DESKS),
    _p("servers_position", _CH, "share", "unit",
       "where the number of walk-in desks lies in the case's stated range, on the log scale "
       "(0: the fewest, 1: the most)", "position of the desk count in its range", kinds=_DESKS),
    _p("peak_submissions_per_hour", _CH, "submissions per hour", "positive",
       "submissions an open hour to an online form on its first open day (a form has no size "
       "to state demand against)", "peak form submissions per hour (log scale)", log_scale=True,
       psense=True, kinds=_FORMS),
    _p("enrol_share", _CH, "share", "unit", "share of answered calls that end in an enrolment",
       "share of answered calls (or form submissions) enrolled", psense=True),
    _p("daily_retention", _CH, "share", "unit",
       "each open day's call attempts as a share of the day before's",
       "demand retained per day (factor)"),
    _p("log_inflation", (), "log factor", "positive",
       "log of the factor by which an inflated claim exceeds the count it reports",
       "log inflation factor", gated=False, sbc=False, sampled=False),
    _p("inflation_scale", (), "log factor", "positive",
       "scale of the half-normal log inflation of a campaign's inflated claims, shared by them and "
       "learnt from them (only with structure inflation = 'pooled'; else the log_inflation "
       "prior's fixed scale)", "inflation scale (log factor)", when=("inflation", "pooled"),
       psense=True),
    _p("claim_noise", (), "log scale", "positive",
       "imprecision of a claim around the count it reports (log scale)",
       "claim imprecision (sd on log scale)", psense=True),
    _p("honest_probability", (), "probability", "unit",
       "prior probability that a claim is not inflated", "probability a claim is honest",
       psense=True),
    _p("counts_attempts_probability", (), "probability", "unit",
       "prior probability that a claim of unclear meaning counts call attempts, not people",
       "probability an unclear claim counts attempts", psense=True),
    _p("report_bias_odds", (), "odds ratio", "positive",
       "odds that a caller who failed posts about it, over the odds for one who got through",
       "odds ratio: failed callers post more (log scale)", log_scale=True),
    # -- Deterministics of the model ("deterministic") and draws derived after sampling ------
    Quantity("true_enrolments_total", "derived", (), "enrolments", "count",
             "true enrolments over the campaign", gated=True, sbc=True, psense=True),
    Quantity("true_at_claim", "derived", _CLAIM, "enrolments", "count",
             "true enrolments before the claim's date", gated=True),
    Quantity("inflation_factor", "derived", _CLAIM, "factor", "positive",
             "published value over the true count of what it says it counts (enrolments, or the "
             "expected answered calls or attempts)", gated=True, psense=True),
    Quantity("p_honest", "deterministic", _CLAIM, "probability", "unit",
             "posterior probability that the claim is honest", gated=True),
    Quantity("p_counts_attempts", "deterministic", _CLAIM, "probability", "unit",
             "posterior probability that the claim counts call attempts", gated=True),
    Quantity("capacity", "deterministic", _CH, "registrations", "positive",
             "most registrations the channel could take over the campaign (infinite for an "
             "online form)", gated=True),
    Quantity("capacity_at_claim", "deterministic", _CLAIM, "registrations", "positive",
             "most registrations every channel could take before the claim", gated=True,
             psense=True),
    Quantity("days_needed", "deterministic", _CLAIM, "days", "positive",
             "open days of full capacity the claim needs", gated=True),
    Quantity("desks", "deterministic", _CH, "desks", "positive",
             "number of walk-in desks (or points) serving at once: the case's count, or a value "
             "in its stated range", "walk-in desks", gated=True, kinds=_DESKS),
    Quantity("peak_attempts_per_hour", "deterministic", _CH, "attempts per hour", "positive",
             "call attempts offered to a channel per open hour on its first open day",
             "peak call attempts per hour (log scale)", log_scale=True),
    Quantity("blocking", "deterministic", _CD, "probability", "unit",
             "share of callers lost while the channel is attended: Erlang-B's probability that "
             "every line is busy, Erlang-A's share of callers who hang up on hold in a call "
             "centre, 0 for an online form", gated=True),
    Quantity("failed_share", "deterministic", _CH, "share", "unit",
             "share of call attempts that failed", gated=True),
    Quantity("attempts", "deterministic", _CD, "attempts", "positive",
             "call attempts offered to the channel"),
    Quantity("expected_enrolments", "deterministic", _CD, "enrolments", "positive",
             "expected enrolments (the Poisson mean)"),
    Quantity("unanswered_attempts", "deterministic", _CD, "attempts", "positive",
             "call attempts that found every line busy, hung up on hold or found nobody there"),
    Quantity("funnel_at_claim", "deterministic", ("claim", "quantity"), "count", "positive",
             "expected registrations, answered calls and attempts before the claim"),
    Quantity("claim_loglik", "deterministic", _CLAIM, "log density", "real",
             "log likelihood of the claim"),
    Quantity("true_enrolments", "derived", _CD, "enrolments", "count",
             "true enrolments per channel and day (Poisson draw)"),
    Quantity("claim_possible", "derived", _CLAIM, "", "boolean",
             "the claim is within the channel's capacity before its date (always for a count of "
             "call attempts, which lines do not bound, and for a claim an online form counts "
             "towards)"),
)

#: By name.
QUANTITY: dict[str, Quantity] = {q.name: q for q in QUANTITIES}
#: The parameters a spec gives priors for, in order.
PARAMETERS: dict[str, Quantity] = {q.name: q for q in QUANTITIES if q.kind == "parameter"}
#: The parameters the sampler draws (the inflation scale is integrated out of the model).
SAMPLED: tuple[str, ...] = tuple(n for n, q in PARAMETERS.items() if q.sampled)
#: Parameters that take one value per channel.
CHANNEL_PARAMETERS: tuple[str, ...] = tuple(n for n, q in PARAMETERS.items() if q.per_channel)
#: Quantities checked by the diagnostics gate: parameters first, then derived.
GATED: tuple[str, ...] = tuple(q.name for q in QUANTITIES if q.gated)
#: Quantities ranked by simulation-based calibration.
SBC: tuple[str, ...] = tuple(q.name for q in QUANTITIES if q.sbc)
#: Headline quantities whose power-scaling sensitivity is reported.
PSENSE: tuple[str, ...] = tuple(
    [q.name for q in QUANTITIES if q.psense and q.kind != "parameter"]
    + [q.name for q in QUANTITIES if q.psense and q.kind == "parameter"])


def dims_of(name: str) -> tuple[str, ...]:
    """The dimensions of ``name`` after the sample dimensions."""
    return QUANTITY[name].dims
