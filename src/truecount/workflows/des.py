r"""An independent discrete-event simulation of a campaign's channels, for testing the model.

The model (:mod:`truecount.model.build`) describes a channel with closed-form queueing arithmetic:
Poisson call attempts at rate :math:`\lambda`, Erlang-B blocking :math:`B(S, A)` for :math:`S`
lines, and a line attended a share :math:`s` of the time as an independent thinning, so that
answered calls are :math:`\lambda H s (1 - B)`. :mod:`truecount.model.simulate` runs that same story
forwards, so a fit to its output can only show that the model recovers its own assumptions.

This module builds the channel from events instead, with :mod:`simpy`, and never calls the Erlang-B
arithmetic. Its data come from a call centre that differs from the model's in the ways real ones do,
so that fitting the model to them tests its calibration against data it did not generate.

Queueing assumptions of the simulated call centre (:class:`CallCentre`)
    * **New callers** arrive as a Poisson process during each day's opening hours, at
      ``peak_per_hour * retention ** i`` per hour on the ``i``-th open day (0 for the first). Unlike
      the model's attempts, this rate counts *first* attempts only.
    * **Retries.** A caller whose attempt fails tries again with probability ``retry_prob`` after an
      exponential delay (mean ``retry_mean_min``), at most ``max_retries`` times. A retry that would
      fall after closing is dropped (the caller gives up); a round-the-clock channel (days that
      follow each other without a gap) is one opening for this purpose. Retries make the attempt
      stream bursty and correlated with blocking, which Erlang's loss model (blocked calls cleared,
      never return) excludes; attempts per new caller rise with congestion.
    * **Lines.** A hunt group by default: a call takes any free, attended line (the lowest-numbered
      one), as in Erlang's model. With ``separate_numbers`` every attempt dials one of the ``servers``
      published numbers at random and fails if that line is busy or unattended even when another
      line is free: each line is then its own one-line loss system offered :math:`A/S`, which
      blocks more than :math:`B(S, A)`. Busy lines never queue callers; a failed call takes no time.
    * **Handle times** are log-normal with mean ``handle_mean_min`` and coefficient of variation
      ``handle_cv`` (0.7 by default). Erlang-B blocking is insensitive to the distribution; the
      retries and attendance cycles below are not.
    * **Attendance.** Each line alternates attended and unattended periods of exponential length
      with means ``attended_share * attend_cycle_min`` and ``(1 - attended_share) *
      attend_cycle_min``, so it is attended ``attended_share`` of the time in the long run; the
      state at each opening follows exactly from the state at the previous closing (the two-state
      process is Markov; after a night's gap it is the stationary draw). A call to a free but
      unattended line is not answered and does not occupy the line; a call in progress when the
      attendant leaves is completed. In a hunt group a call fails for lack of attendance only when
      *every* free line is unattended, so unattended time costs far fewer calls than the model's
      factor :math:`s`; with separate numbers a retry a few minutes later often finds the same line
      still unattended, where the model treats attempts as independent.
    * **Enrolment.** Each answered call becomes an enrolment with probability ``enrol_share``. A
      caller whose call is answered stops calling, so a caller enrols at most once.
    * **Opening hours** are the same clock hours every open day (a time-zone change during the
      campaign is ignored). Calls in progress at closing are completed; no call starts after it.

The call centre with a queue (:class:`QueueCentre`)
    The model's call centre is Erlang-A: Poisson callers, exponential handle times and patience,
    agents present a share :math:`s` of the time as a thinning of the callers. The simulated
    one takes callers **one by one, first come first served** (:func:`run_queue_centre`) and
    differs in four ways. **Handle times** are log-normal (mean ``handle_mean_min``, cv 0.7) and
    **patience** log-normal too (mean ``patience_mean_min``, cv 1.0), where Erlang-A's are
    exponential (its answered share depends on both distributions, unlike Erlang-B's).
    **Agents** go on and off duty one by one (exponential periods, a cycle of 60 minutes on
    average, on duty ``attended_share`` of it; each opening starts from the stationary state): an
    agent off duty finishes their call and takes no new one, and callers keep holding, so that
    absent agents make callers wait rather than lose them as the model's thinning does.
    **Retries**: a caller who hung up (or was still holding at closing) calls again with
    probability ``retry_prob`` after an exponential delay, as on the lines. Under Erlang-A's own
    assumptions (``exponential=True``, every agent on duty, no retries) the simulation answers
    the share :func:`truecount.model.capacity.erlang_a_chain` gives (``tests/test_call_centre.py``).
    **Walk-in desks** (``kind = "walk_in"``) are the same simulation, desks for agents and
    ``queue_patience`` for ``patience``; a number of desks given as a range is drawn as the
    model's ``servers_position`` says (log-uniform between the fewest and the most) and rounded
    to whole desks, where the model interpolates between whole numbers.

The online form (:class:`OnlineForm`)
    An online form, website or messaging account has no lines: the model's form takes
    ``peak_submissions_per_hour`` submissions an open hour on its first open day, decaying by the
    daily retention, each an enrolment with probability ``enrol_share``. The simulated form
    differs in three ways. **People** arrive, not submissions: ``peak_per_hour`` counts people.
    **Demand swings** from day to day around its trend, by a gamma factor with a coefficient of
    variation of 0.3, where the model's expected count follows the trend exactly. **Duplicates**:
    a person submits again with probability 0.15, and again after that, so that submissions
    (the form's attempts and answered calls) exceed people by about 18%, while a person is
    enrolled at most once.

Claims and evidence (:func:`des_campaign`)
    The published claims are drawn with :func:`truecount.model.simulate.claims_from_funnel` (the model's
    story of inflation, honesty, imprecision and rounding) from the call centre's realised counts at
    each claim: enrolments, answered calls and attempts including retries. A day counts towards a
    claim only if it is wholly before it (partial-day exposures are rounded down; the claims of the
    cases so far are end-of-day, where nothing is rounded). Reports of (un)reachable lines are
    sampled from *callers*, not attempts: ``n_reports`` distinct callers, drawn without replacement
    with weight ``report_bias_odds`` for a caller who never got through and 1 for one who did,
    whereas the model reads the failed share of *attempts*, :math:`f_c`, through the odds ratio.
    A caller who got through on a retry reports a success.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import heapq
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from truecount.inputs._fields import format_clock
from truecount.inputs.case import Case, Sourced
from truecount.inputs.spec import Spec
from truecount.model.capacity import attempts_per_hour
from truecount.model.data import model_inputs, model_structure
from truecount.model.equations import NUMPY, inflation_scale
from truecount.model.simulate import (
    InflationWorld,
    Simulated,
    claims_from_funnel,
    draw_parameters,
    significant_rounding,
)
from truecount.quantities import CHANNEL_PARAMETERS, FUNNEL

__all__ = [
    "CallCentre",
    "DesResult",
    "OnlineForm",
    "QueueCentre",
    "case_to_toml",
    "des_campaign",
    "erlang_b_check",
    "run_call_centre",
    "run_online_form",
    "run_queue_centre",
]

#: Random numbers are drawn from the generator in blocks of this size (one block per stream at a time).
_BLOCK = 4096
_MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class _Staffed:
    """What a simulated channel with servers (lines, agents or desks) shares.

    Its hours and days, demand, handle time, attendance and enrolment, each documented on
    :class:`CallCentre`.
    """

    servers: int
    opens_min: int
    closes_min: int
    open_days: int
    peak_per_hour: float
    retention: float
    handle_mean_min: float
    attended_share: float
    enrol_share: float

    def _check(self, own: list[tuple[bool, str]]) -> None:
        checks = [
            (self.servers >= 1, "servers must be >= 1"),
            (0 <= self.opens_min < self.closes_min <= _MINUTES_PER_DAY,
             "need 0 <= opens_min < closes_min <= 1440"),
            (self.open_days >= 1, "open_days must be >= 1"),
            (self.peak_per_hour >= 0, "peak_per_hour must be >= 0"),
            (self.retention >= 0, "retention must be >= 0"),
            (self.handle_mean_min > 0, "handle_mean_min must be > 0"),
            (0 <= self.enrol_share <= 1, "enrol_share must be in [0, 1]"),
            *own,
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{type(self).__name__}: {message}")

    @property
    def windows(self) -> list[tuple[float, float]]:
        """Each open day's ``(opens, closes)`` in minutes from midnight of the first open day."""
        return [(float(d * _MINUTES_PER_DAY + self.opens_min),
                 float(d * _MINUTES_PER_DAY + self.closes_min)) for d in range(self.open_days)]

    @property
    def new_caller_rates(self) -> np.ndarray:
        """New callers per hour on each open day."""
        return np.asarray(self.peak_per_hour * self.retention ** np.arange(self.open_days), float)


@dataclass(frozen=True)
class CallCentre(_Staffed):
    """A phone-line channel as the discrete-event simulation sees it (see the module docstring).

    Parameters
    ----------
    servers
        Number of lines (published numbers), each taking one call at a time.
    opens_min, closes_min
        Daily opening and closing, minutes after local midnight (``0 <= opens < closes <= 1440``).
    open_days
        Number of consecutive days the lines are open.
    peak_per_hour
        New callers' first attempts per open hour on the first open day.
    retention
        Each open day's new-caller rate as a share of the previous day's.
    handle_mean_min, handle_cv
        Mean (minutes) and coefficient of variation of the log-normal handle time.
    attended_share
        Long-run share of open time a line is attended.
    enrol_share
        Probability that an answered call becomes an enrolment.
    attend_cycle_min
        Mean length (minutes) of one attended plus one unattended period.
    retry_prob, retry_mean_min, max_retries
        Probability that a failed caller tries again, mean exponential delay before the retry
        (minutes) and the most retries per caller.
    separate_numbers
        ``False``: a hunt group (any free attended line takes the call). ``True``: each attempt dials
        one line at random and fails if it is busy or unattended.
    """

    handle_cv: float = 0.7
    attend_cycle_min: float = 30.0
    retry_prob: float = 0.5
    retry_mean_min: float = 10.0
    max_retries: int = 3
    separate_numbers: bool = False

    def __post_init__(self) -> None:
        self._check([
            (self.handle_cv >= 0, "handle_cv must be >= 0"),
            (0 <= self.attended_share <= 1, "attended_share must be in [0, 1]"),
            (self.attend_cycle_min > 0, "attend_cycle_min must be > 0"),
            (0 <= self.retry_prob <= 1, "retry_prob must be in [0, 1]"),
            (self.retry_mean_min > 0, "retry_mean_min must be > 0"),
            (self.max_retries >= 0, "max_retries must be >= 0"),
        ])


@dataclass(frozen=True)
class OnlineForm:
    """An online form (or website, or messaging account) as the simulation sees it.

    Nothing limits how many it takes; it differs from the model's form in the ways real ones do
    (see the module docstring): people, not submissions, arrive; demand swings from day to day
    around its decaying trend; some people submit more than once.

    Parameters
    ----------
    opens_min, closes_min, open_days, peak_per_hour, retention, enrol_share
        As for :class:`CallCentre`; ``peak_per_hour`` counts people (first submissions).
    day_cv
        Coefficient of variation of each open day's demand around the trend (a gamma factor).
    duplicate_prob
        Probability that a person who submitted submits again (geometric: each further
        submission with the same probability).
    """

    opens_min: int
    closes_min: int
    open_days: int
    peak_per_hour: float
    retention: float
    enrol_share: float
    day_cv: float = 0.3
    duplicate_prob: float = 0.15

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.opens_min < self.closes_min <= _MINUTES_PER_DAY,
             "need 0 <= opens_min < closes_min <= 1440"),
            (self.open_days >= 1, "open_days must be >= 1"),
            (self.peak_per_hour >= 0, "peak_per_hour must be >= 0"),
            (self.retention >= 0, "retention must be >= 0"),
            (0 <= self.enrol_share <= 1, "enrol_share must be in [0, 1]"),
            (self.day_cv >= 0, "day_cv must be >= 0"),
            (0 <= self.duplicate_prob < 1, "duplicate_prob must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"OnlineForm: {message}")


def run_online_form(form: OnlineForm, rng: np.random.Generator) -> DesResult:
    """Simulate ``form`` day by day (people and submissions are counts; no queue to follow).

    Per open day: people arrive as a Poisson count with mean ``peak * retention ** i * hours * G``,
    ``G`` a gamma factor of mean 1 and coefficient of variation ``day_cv``; each person submits
    once plus a geometric number of duplicates, and is enrolled with probability ``enrol_share``.
    Submissions are the form's ``attempts`` and ``answered`` (nothing fails).
    """
    hours = (form.closes_min - form.opens_min) / 60.0
    trend = form.peak_per_hour * form.retention ** np.arange(form.open_days) * hours
    if form.day_cv > 0:
        shape = 1.0 / form.day_cv**2
        trend = trend * rng.gamma(shape, 1.0 / shape, size=form.open_days)
    people = rng.poisson(trend)
    extra = rng.negative_binomial(np.maximum(people, 1), 1.0 - form.duplicate_prob)
    submissions = people + np.where(people > 0, extra, 0)
    enrolled = rng.binomial(people, form.enrol_share)
    zeros = np.zeros(form.open_days, dtype=np.int64)
    n = int(people.sum())
    flags = np.zeros(n, dtype=bool)
    flags[rng.choice(n, size=int(enrolled.sum()), replace=False)] = True
    return DesResult(
        attempts=submissions.astype(np.int64), answered=submissions.astype(np.int64),
        enrolments=enrolled.astype(np.int64), failed_busy=zeros, failed_unattended=zeros,
        new_callers=people.astype(np.int64), caller_failed=np.zeros(n, dtype=bool),
        caller_enrolled=flags,
    )


@dataclass(frozen=True)
class QueueCentre(_Staffed):
    """A call centre with a queue as the simulation sees it (see the module docstring).

    Parameters
    ----------
    servers
        Agents, each taking one call at a time; callers wait in one queue, first come first served.
    opens_min, closes_min, open_days, peak_per_hour, retention, handle_mean_min, handle_cv, \
attended_share, enrol_share, retry_prob, retry_mean_min, max_retries
        As for :class:`CallCentre`; ``attended_share`` is each agent's long-run share of open time
        on duty, and a retry is a caller who hung up trying again.
    patience_mean_min, patience_cv
        Mean (minutes) and coefficient of variation of a caller's log-normal patience: the
        longest they hold before hanging up.
    duty_cycle_min
        Mean length (minutes) of one on-duty plus one off-duty period of an agent.
    exponential
        Exponential handle times and patience (Erlang-A's own assumptions, for checking the
        simulation against it) instead of log-normal ones.
    """

    patience_mean_min: float
    handle_cv: float = 0.7
    patience_cv: float = 1.0
    duty_cycle_min: float = 60.0
    retry_prob: float = 0.5
    retry_mean_min: float = 10.0
    max_retries: int = 3
    exponential: bool = False

    def __post_init__(self) -> None:
        self._check([
            (self.patience_mean_min > 0, "patience_mean_min must be > 0"),
            (0 < self.attended_share <= 1, "attended_share must be in (0, 1]"),
            (0 <= self.retry_prob <= 1, "retry_prob must be in [0, 1]"),
            (self.retry_mean_min > 0, "retry_mean_min must be > 0"),
            (self.max_retries >= 0, "max_retries must be >= 0"),
            (self.duty_cycle_min > 0, "duty_cycle_min must be > 0"),
        ])


#: Most first attempts one simulated call centre is asked to take (about a minute of simulation
#: per ten million): a larger campaign is refused before it starts, with the reason.
MAX_QUEUE_CALLERS = 20_000_000


def run_queue_centre(q: QueueCentre, rng: np.random.Generator) -> DesResult:
    """Simulate the call centre ``q`` caller by caller (first come, first served).

    With one queue served in order of arrival, each caller's outcome follows from the callers
    before: the agent who can take them first is the one whose next moment free *and* on duty
    is earliest; a caller whose wait for that moment would exceed their patience hangs up
    without taking an agent, and one still waiting at closing is not answered. Attempts (first
    attempts and retries) are taken in order of time, agents kept in a heap by the moment they
    are next free (an off-duty agent's entry is moved on to their next on-duty period when it
    comes up), so the cost is a few heap operations per attempt. ``failed_busy`` counts callers
    who hung up or were still waiting at closing; nobody fails for an unattended line.
    """
    windows = q.windows
    rates = q.new_caller_rates
    expected = float(rates.sum() * (q.closes_min - q.opens_min) / 60.0)
    if expected > MAX_QUEUE_CALLERS:
        raise ValueError(f"QueueCentre: about {expected:,.0f} callers, over the simulation's "
                         f"limit of {MAX_QUEUE_CALLERS:,}; simulate a smaller campaign")
    mu, sigma = _lognormal(q.handle_mean_min, q.handle_cv)
    p_mu, p_sigma = _lognormal(q.patience_mean_min, q.patience_cv)
    if q.exponential:
        handle = _stream(lambda n: rng.exponential(q.handle_mean_min, n))
        patience = _stream(lambda n: rng.exponential(q.patience_mean_min, n))
    else:
        handle = _stream(lambda n: rng.lognormal(mu, sigma, n))
        patience = _stream(lambda n: rng.lognormal(p_mu, p_sigma, n))
    uniform = _stream(lambda n: rng.random(n))
    delay = _stream(lambda n: rng.exponential(q.retry_mean_min, n))
    on_mean = q.attended_share * q.duty_cycle_min
    off_mean = (1.0 - q.attended_share) * q.duty_cycle_min
    n_days = q.open_days
    attempts = [0] * n_days
    answered = [0] * n_days
    enrolments = [0] * n_days
    failed = [0] * n_days
    new_callers = [0] * n_days
    caller_answered: list[bool] = []
    caller_enrolled: list[bool] = []
    for span_start, span_end in _spans(windows):
        # Each agent's on-duty periods in the span (stationary at its start): flat lists of
        # starts and ends, searched with bisect.
        duty: list[tuple[list[float], list[float]]] = []
        for _ in range(q.servers):
            starts, ends = [], []
            t = span_start
            on = off_mean == 0.0 or uniform() < q.attended_share
            while t < span_end:
                length = -math.log(1.0 - uniform()) * (on_mean if on else off_mean)
                if on:
                    starts.append(t)
                    ends.append(min(t + length, span_end))
                t += length
                on = not on or off_mean == 0.0
            duty.append((starts, ends))

        def next_on(agent: int, t: float, duty: list[tuple[list[float], list[float]]] = duty
                    ) -> float:
            starts, ends = duty[agent]
            i = bisect.bisect_right(ends, t)
            if i == len(starts):
                return math.inf
            return max(t, starts[i])

        agents = [(next_on(a, span_start), a) for a in range(q.servers)]
        heapq.heapify(agents)
        # First attempts of the span's days, then retries as they come (a heap by time).
        pending: list[tuple[float, int, int]] = []  # (time, caller, attempt number)
        for d, (start, end) in enumerate(windows):
            if not span_start <= start < span_end:
                continue
            n = int(rng.poisson(rates[d] * (end - start) / 60.0))
            times = np.sort(rng.uniform(start, end, n))
            first = len(caller_answered)
            caller_answered.extend([False] * n)
            caller_enrolled.extend([False] * n)
            new_callers[d] += n
            pending.extend((float(t), first + i, 0) for i, t in enumerate(times))
        heapq.heapify(pending)
        day_of = [(start, end, d) for d, (start, end) in enumerate(windows)
                  if span_start <= start < span_end]
        while pending:
            t, caller, tries = heapq.heappop(pending)
            closes, d = next((end, d) for _, end, d in day_of if t < end)  # the attempt's day
            attempts[d] += 1
            while True:  # the agent free and on duty soonest
                free_at, agent = agents[0]
                if free_at >= t:
                    break
                heapq.heapreplace(agents, (next_on(agent, t), agent))
            start = agents[0][0]
            holds = patience()
            if start - t <= holds and start < closes:
                end = start + handle()
                heapq.heapreplace(agents, (next_on(agent, end), agent))
                answered[d] += 1
                caller_answered[caller] = True
                if uniform() < q.enrol_share:
                    enrolments[d] += 1
                    caller_enrolled[caller] = True
                continue
            failed[d] += 1
            if tries < q.max_retries and uniform() < q.retry_prob:
                again = min(t + holds, closes) + delay()  # hung up, or closed on

                if again < span_end:
                    heapq.heappush(pending, (again, caller, tries + 1))

    def ints(x: list[int]) -> np.ndarray:
        return np.asarray(x, dtype=np.int64)

    return DesResult(
        attempts=ints(attempts), answered=ints(answered), enrolments=ints(enrolments),
        failed_busy=ints(failed), failed_unattended=np.zeros(n_days, dtype=np.int64),
        new_callers=ints(new_callers), caller_failed=~np.asarray(caller_answered, dtype=bool),
        caller_enrolled=np.asarray(caller_enrolled, dtype=bool),
    )


@dataclass(frozen=True, eq=False)
class DesResult:
    """What one simulated call centre did: per open day, and per new caller.

    Per open day (arrays of length ``open_days``, by the day an attempt was made): ``attempts``
    (first attempts and retries), ``answered``, ``enrolments``, ``failed_busy`` (the line, or every
    line, busy), ``failed_unattended`` (no free line attended), ``new_callers``. Per new caller, in
    order of arrival: ``caller_failed`` (never got an answer) and ``caller_enrolled``.
    """

    attempts: np.ndarray
    answered: np.ndarray
    enrolments: np.ndarray
    failed_busy: np.ndarray
    failed_unattended: np.ndarray
    new_callers: np.ndarray
    caller_failed: np.ndarray
    caller_enrolled: np.ndarray


@dataclass(frozen=True)
class _Run:
    """Raw output of :func:`_simulate`: counters per window, flags per caller, optional attempt log."""

    attempts: list[int]
    answered: list[int]
    enrolments: list[int]
    failed_busy: list[int]
    failed_unattended: list[int]
    new_callers: list[int]
    caller_answered: list[bool]
    caller_enrolled: list[bool]
    log_time: list[float]
    log_busy: list[bool]


def run_call_centre(cc: CallCentre, rng: np.random.Generator) -> DesResult:
    """Simulate ``cc`` event by event with :mod:`simpy` (assumptions: see the module docstring).

    Parameters
    ----------
    cc
        The call centre.
    rng
        Every random number (arrivals, attendance periods, line choices, handle times, enrolments,
        retries) comes from it: the same seed gives the same result.

    Returns
    -------
    DesResult
        Counts per open day and outcomes per new caller.
    """
    mu, sigma = _lognormal(cc.handle_mean_min, cc.handle_cv)
    run = _simulate(
        cc.windows, cc.new_caller_rates, cc.servers, mu, sigma, cc.attended_share,
        cc.attend_cycle_min, cc.enrol_share, cc.retry_prob, cc.retry_mean_min, cc.max_retries,
        cc.separate_numbers, rng, record=False)

    def ints(x: list[int]) -> np.ndarray:
        return np.asarray(x, dtype=np.int64)

    answered = np.asarray(run.caller_answered, dtype=bool)
    return DesResult(
        attempts=ints(run.attempts), answered=ints(run.answered), enrolments=ints(run.enrolments),
        failed_busy=ints(run.failed_busy), failed_unattended=ints(run.failed_unattended),
        new_callers=ints(run.new_callers), caller_failed=~answered,
        caller_enrolled=np.asarray(run.caller_enrolled, dtype=bool),
    )


def erlang_b_check(servers: int, load_erlangs: float, hours: float,
                   rng: np.random.Generator) -> tuple[float, float]:
    """Blocking of the simulated hunt group under Erlang-B assumptions, and its standard error.

    One continuous opening of ``hours`` hours, lines always attended, no retries, Poisson attempts
    offering ``load_erlangs`` Erlangs with log-normal handle times (mean 5 minutes, cv 0.7: Erlang-B
    does not depend on the distribution). The first 10 mean handle times are a warm-up (the lines
    start idle) and are not counted.

    Returns
    -------
    tuple[float, float]
        The share of counted attempts that found every line busy, and its standard error by batch
        means (20 batches of equal length; the ratio estimator's delta-method variance), which
        allows for the correlation between nearby calls that a binomial error would ignore.
    """
    handle = 5.0
    horizon = hours * 60.0
    mu, sigma = _lognormal(handle, 0.7)
    rate = np.array([load_erlangs * 60.0 / handle])
    run = _simulate([(0.0, horizon)], rate, servers, mu, sigma, 1.0, 30.0, 0.0, 0.0, 10.0, 0,
                    False, rng, record=True)
    times = np.asarray(run.log_time)
    blocked = np.asarray(run.log_busy, dtype=float)
    warmup = min(10.0 * handle, 0.1 * horizon)
    keep = times >= warmup
    n_batches = 20
    batch = np.minimum(((times[keep] - warmup) / (horizon - warmup) * n_batches).astype(int),
                       n_batches - 1)
    n = np.bincount(batch, minlength=n_batches).astype(float)
    b = np.bincount(batch, weights=blocked[keep], minlength=n_batches)
    if n.sum() == 0:
        return 0.0, 0.0
    share = float(b.sum() / n.sum())
    resid = b - share * n
    se = math.sqrt(float((resid**2).sum()) / (n_batches * (n_batches - 1))) / float(n.mean())
    return share, se


def des_campaign(case: Case, spec: Spec, rng: np.random.Generator,
                 params: dict[str, Any] | None = None, *, retry_prob: float = 0.5,
                 separate_numbers: bool = False, n_reports: int = 20,
                 inflation: InflationWorld | None = None) -> Simulated:
    """A synthetic campaign whose channel is the discrete-event call centre, not the model's.

    Parameters
    ----------
    case
        Supplies the channels (lines, hours, days), the claims (dates, rounding, what they count) and
        the evidence items (which become counts of failed and succeeded reports).
    spec
        Supplies the priors (for a parameter draw), the structure (``demand = "constant"`` sets the
        retention to 1; honest claims; unclear claims) and the inflation scale.
    rng
        Source of all randomness; the same seed gives the same campaign.
    params
        Values of the sampled parameters (as :func:`truecount.model.simulate.draw_parameters` gives them):
        per-channel ``handle_time`` (mean, minutes), ``attended_share``, ``peak_load_per_line``
        (its attempts an hour, :func:`truecount.model.capacity.attempts_per_hour`, are read as
        *new callers* per hour), ``daily_retention``, ``enrol_share``; shared
        ``claim_noise``, ``honest_probability``, ``counts_attempts_probability``,
        ``report_bias_odds``. Default: a draw from the spec's priors.
    retry_prob, separate_numbers
        Options of every channel's :class:`CallCentre` (other options keep their defaults).
    n_reports
        Reports drawn per evidence item (fewer if the channel had fewer callers).
    inflation
        Inflate the claims as this world does instead of as the spec's prior says.

    Returns
    -------
    truecount.model.simulate.Simulated
        The case with claims and evidence replaced (and ``sha256`` a hash of the simulated values),
        and the truth: the parameters, ``true_enrolments`` ``(channel, day)`` on the case's day axis,
        ``true_enrolments_total``, ``true_at_claim``, ``failed_share`` (failed attempts / attempts per
        channel), ``callers_failed_share`` (new callers who never got through), ``blocking``
        (``(channel, day)``: attempts that found the line(s) busy / attempts), ``attempts``,
        ``answered`` and ``new_callers`` ``(channel, day)``, the claims' ``honest`` and ``counted``,
        and the options used.

    Notes
    -----
    If a channel had no callers at all, its evidence items get 0 failed and 0 succeeded reports,
    which a case file cannot hold (:func:`truecount.load_case` requires at least one report).
    """
    ds = case.to_dataset()
    n_channels, n_days = ds.sizes["channel"], ds.sizes["day"]
    structure = model_structure(ds, spec)
    if params is None:
        params = draw_parameters(spec, n_channels, rng, kinds=structure["kinds"])
    per_channel = {name: np.broadcast_to(np.asarray(params[name], float), (n_channels,))
                   for name in CHANNEL_PARAMETERS if name in params}
    if structure["demand"] != "decaying" or "daily_retention" not in per_channel:
        per_channel["daily_retention"] = np.ones(n_channels)

    day0 = case.days[0]
    enrolments = np.zeros((n_channels, n_days), dtype=np.int64)
    answered = np.zeros_like(enrolments)
    attempts = np.zeros_like(enrolments)
    busy = np.zeros_like(enrolments)
    callers = np.zeros_like(enrolments)
    results: list[DesResult] = []
    for c, channel in enumerate(case.channels):
        if not channel.bounded:  # an online form
            res = run_online_form(OnlineForm(
                opens_min=channel.opens, closes_min=channel.closes, open_days=channel.n_days,
                peak_per_hour=float(per_channel["peak_submissions_per_hour"][c]),
                retention=float(per_channel["daily_retention"][c]),
                enrol_share=float(per_channel["enrol_share"][c])), rng)
        elif channel.kind in ("call_centre", "walk_in"):
            servers = channel.servers
            patience = per_channel["patience" if channel.kind == "call_centre"
                                   else "queue_patience"][c]
            low, high = channel.servers_range
            if high > low:  # desks whose number is a range: the drawn count, whole
                servers = max(1, round(low * (high / low) ** per_channel["servers_position"][c]))
            res = run_queue_centre(QueueCentre(
                servers=servers, opens_min=channel.opens, closes_min=channel.closes,
                open_days=channel.n_days, peak_per_hour=float(attempts_per_hour(
                    per_channel["peak_load_per_line"][c], servers,
                    per_channel["handle_time"][c])),
                retention=float(per_channel["daily_retention"][c]),
                handle_mean_min=float(per_channel["handle_time"][c]),
                attended_share=float(per_channel["attended_share"][c]),
                enrol_share=float(per_channel["enrol_share"][c]),
                patience_mean_min=float(patience), retry_prob=retry_prob,
            ), rng)
        else:
            res = run_call_centre(CallCentre(
                servers=channel.servers, opens_min=channel.opens, closes_min=channel.closes,
                open_days=channel.n_days, peak_per_hour=float(attempts_per_hour(
                    per_channel["peak_load_per_line"][c], channel.servers,
                    per_channel["handle_time"][c])),
                retention=float(per_channel["daily_retention"][c]),
                handle_mean_min=float(per_channel["handle_time"][c]),
                attended_share=float(per_channel["attended_share"][c]),
                enrol_share=float(per_channel["enrol_share"][c]),
                retry_prob=retry_prob, separate_numbers=separate_numbers,
            ), rng)
        results.append(res)
        first = (channel.first_day - day0).days
        days = slice(first, first + channel.n_days)
        enrolments[c, days] = res.enrolments
        answered[c, days] = res.answered
        attempts[c, days] = res.attempts
        busy[c, days] = res.failed_busy
        callers[c, days] = res.new_callers

    # -- claims: the realised funnel at each claim's date ----------------------------------------
    # What each claim counts: the days wholly in its period (on its channels), and of a day
    # partly in it (a count for the first hours, a claim before closing time) a binomial share
    # by the day's open hours, as demand is even over a day's hours; no draw where there is none.
    exposure = ds.claim_exposure.values  # (claim, channel, day)
    partial = (exposure > 1e-9) & (exposure < 1.0 - 1e-9)
    whole = (exposure >= 1.0 - 1e-9).astype(float)

    def within_claims(q: np.ndarray) -> np.ndarray:
        per = whole * q[None]
        if partial.any():
            per[partial] = rng.binomial(np.broadcast_to(q, exposure.shape)[partial],
                                        exposure[partial])
        return np.asarray(per.sum(axis=(1, 2)))

    at_claim = within_claims(enrolments).astype(np.int64)
    funnel = np.stack([at_claim.astype(float), within_claims(answered).astype(float),
                       within_claims(attempts).astype(float)], axis=-1)
    sigma_u = float(spec.priors["log_inflation"].params["sigma"])
    values, honest, counted = claims_from_funnel(
        funnel, model_inputs(ds, spec)["claim_quantity"].values, np.asarray(structure["unclear"], bool),
        None, params, inflation_scale(NUMPY, params, structure, sigma_u),
        structure["honest_claims"], rng, inflation)
    units = significant_rounding(values)  # published figures keep two significant digits

    # -- evidence: reports from callers, biased towards those who never got through --------------
    bias = float(np.asarray(params.get("report_bias_odds", 1.0), float))
    channel_ids = [ch.id for ch in case.channels]
    evidence = []
    for item in case.evidence:
        failed_callers = results[channel_ids.index(item.channel)].caller_failed
        n = min(n_reports, failed_callers.size)
        failed = 0
        if n > 0:
            weights = np.where(failed_callers, bias, 1.0)
            chosen = rng.choice(failed_callers.size, size=n, replace=False, p=weights / weights.sum())
            failed = int(failed_callers[chosen].sum())
        evidence.append(dataclasses.replace(item, failed=failed, succeeded=n - failed, strength=None))

    claims = tuple(dataclasses.replace(c, value=int(v), rounding=int(u))
                   for c, v, u in zip(case.claims, values, units, strict=True))
    digest = hashlib.sha256(repr((
        "des", case.sha256, values.tolist(), [(e.failed, e.succeeded) for e in evidence],
    )).encode()).hexdigest()
    simulated = dataclasses.replace(case, claims=claims, evidence=tuple(evidence), sha256=digest,
                                    simulated=True)

    total_attempts = attempts.sum(axis=1)
    failed_attempts = total_attempts - answered.sum(axis=1)
    n_callers = np.array([r.caller_failed.size for r in results])
    truth: dict[str, Any] = dict(params)
    truth.update(
        true_enrolments=enrolments,
        true_enrolments_total=int(enrolments.sum()),
        true_at_claim=at_claim,
        failed_share=failed_attempts / np.maximum(total_attempts, 1),
        callers_failed_share=(np.array([r.caller_failed.sum() for r in results])
                              / np.maximum(n_callers, 1)),
        blocking=np.divide(busy, attempts, out=np.zeros(busy.shape), where=attempts > 0),
        attempts=attempts, answered=answered, new_callers=callers,
        honest=honest, counted=[FUNNEL[i] for i in counted],
        retry_prob=retry_prob, separate_numbers=separate_numbers, n_reports=n_reports,
    )
    return Simulated(simulated, truth)


# -- the simulation -------------------------------------------------------------------------------


def _lognormal(mean: float, cv: float) -> tuple[float, float]:
    """``(mu, sigma)`` of the log-normal with this mean and coefficient of variation."""
    sigma2 = math.log1p(cv * cv)
    return math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)


def _stream(draw: Callable[[int], np.ndarray]) -> Callable[[], float]:
    """A function returning one number at a time from blocks that ``draw(n)`` makes."""

    def numbers() -> Iterator[float]:
        while True:
            yield from draw(_BLOCK).tolist()

    return numbers().__next__


def _spans(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Open windows merged where one starts as the previous ends (round the clock)."""
    spans: list[tuple[float, float]] = []
    for start, end in windows:
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _attendance(spans: list[tuple[float, float]], servers: int, share: float, cycle: float,
                rng: np.random.Generator) -> tuple[list[list[float]], list[list[float]]]:
    """Attended periods per line, as sorted lists of their starts and ends, over the open spans.

    Each line alternates attended and unattended periods, exponential with means ``share * cycle``
    and ``(1 - share) * cycle``; it starts a span in the state that the two-state Markov process
    reaches over the gap since the previous span (the stationary draw for the first span).
    """
    mean_on, mean_off = share * cycle, (1.0 - share) * cycle
    relax = 1.0 / mean_on + 1.0 / mean_off  # the two-state chain forgets its state at this rate
    state = rng.random(servers) < share
    previous_end: float | None = None
    starts: list[list[np.ndarray]] = [[] for _ in range(servers)]
    ends: list[list[np.ndarray]] = [[] for _ in range(servers)]
    rows = np.arange(servers)
    for a, b in spans:
        if previous_end is not None:
            p_on = share + (state - share) * math.exp(-(a - previous_end) * relax)
            state = rng.random(servers) < p_on
        n = int(2.0 * (b - a) / cycle) + 16
        while True:
            on = state[:, None] ^ (np.arange(n) % 2 == 1)[None, :]  # period k attended?
            cum = a + np.cumsum(rng.exponential(1.0, (servers, n)) * np.where(on, mean_on, mean_off),
                                axis=1)
            if (cum[:, -1] >= b).all():
                break
            n *= 2
        begin = np.concatenate([np.full((servers, 1), a), cum[:, :-1]], axis=1)
        keep = on & (begin < b)
        for j in range(servers):
            starts[j].append(begin[j, keep[j]])
            ends[j].append(np.minimum(cum[j, keep[j]], b))
        state = on[rows, np.argmax(cum >= b, axis=1)]
        previous_end = b
    return ([np.concatenate(s).tolist() for s in starts], [np.concatenate(e).tolist() for e in ends])


def _simulate(windows: list[tuple[float, float]], rates_per_hour: np.ndarray, servers: int,
              handle_mu: float, handle_sigma: float, share: float, cycle: float, enrol: float,
              retry_prob: float, retry_mean: float, max_retries: int, separate: bool,
              rng: np.random.Generator, *, record: bool) -> _Run:
    """The event simulation behind :func:`run_call_centre` and :func:`erlang_b_check`.

    Time is in minutes. Events are simpy timeouts with callbacks (new caller's arrival, retry, end of
    a call) rather than one process per caller: a caller's only state is its number of tries, and
    the lines' state is a set of free lines, so no process needs to wait on anything.
    """
    n_windows = len(windows)
    win_start = [w[0] for w in windows]
    win_end = [w[1] for w in windows]
    spans = _spans(windows)
    span_end = [next(e for s, e in spans if s <= w[0] < e) for w in windows]

    # New callers: a Poisson number per window, uniformly placed in it, in time order.
    counts = rng.poisson(np.asarray(rates_per_hour, float) * [(e - s) / 60.0 for s, e in windows])
    arrival = np.concatenate([np.sort(rng.uniform(s, e, k)) for (s, e), k in zip(windows, counts,
                                                                                  strict=True)])
    arrival_t: list[float] = arrival.tolist()
    arrival_day: list[int] = np.repeat(np.arange(n_windows), counts).tolist()
    n_callers = len(arrival_t)

    always = share >= 1.0
    never = share <= 0.0
    if always or never:
        att_start: list[list[float]] = [[] for _ in range(servers)]
        att_end: list[list[float]] = [[] for _ in range(servers)]
    else:
        att_start, att_end = _attendance(spans, servers, share, cycle, rng)

    uniform = _stream(rng.random)
    handle = _stream(lambda n: rng.lognormal(handle_mu, handle_sigma, n))
    delay = _stream(lambda n: rng.exponential(retry_mean, n))

    attempts = [0] * n_windows
    answered = [0] * n_windows
    enrolments = [0] * n_windows
    failed_busy = [0] * n_windows
    failed_unattended = [0] * n_windows
    caller_answered = [False] * n_callers
    caller_enrolled = [False] * n_callers
    log_time: list[float] = []
    log_busy: list[bool] = []
    free = set(range(servers))
    env = simpy.Environment()
    bisect_right = bisect.bisect_right

    def attended(j: int, t: float) -> bool:
        if always:
            return True
        if never:
            return False
        starts = att_start[j]
        k = bisect_right(starts, t) - 1
        return k >= 0 and t < att_end[j][k]

    def release(event: simpy.Event) -> None:
        free.add(event.value)

    def attempt(caller: int, tries: int, day: int) -> None:
        now = env.now
        attempts[day] += 1
        line = -1
        all_busy = False
        if separate:
            j = int(uniform() * servers)
            if j not in free:
                all_busy = True
            elif attended(j, now):
                line = j
        elif not free:
            all_busy = True
        else:
            for j in free:
                if attended(j, now):
                    line = j
                    break
        if record:
            log_time.append(now)
            log_busy.append(all_busy)
        if line >= 0:
            free.remove(line)
            answered[day] += 1
            caller_answered[caller] = True
            if uniform() < enrol:
                enrolments[day] += 1
                caller_enrolled[caller] = True
            env.timeout(handle(), line).callbacks.append(release)
            return
        if all_busy:
            failed_busy[day] += 1
        else:
            failed_unattended[day] += 1
        if tries < max_retries and uniform() < retry_prob:
            when = now + delay()
            if when < span_end[day]:
                later = day if when < win_end[day] else bisect_right(win_start, when) - 1
                env.timeout(when - now, (caller, tries + 1, later)).callbacks.append(retry)

    def retry(event: simpy.Event) -> None:
        attempt(*event.value)

    def arrive(event: simpy.Event) -> None:
        caller: int = event.value
        attempt(caller, 0, arrival_day[caller])
        following = caller + 1
        if following < n_callers:
            env.timeout(arrival_t[following] - env.now, following).callbacks.append(arrive)

    if n_callers:
        env.timeout(arrival_t[0], 0).callbacks.append(arrive)
    env.run()
    return _Run(attempts, answered, enrolments, failed_busy, failed_unattended, counts.tolist(),
                caller_answered, caller_enrolled, log_time, log_busy)


# -- writing a case file --------------------------------------------------------------------------


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else _string(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if hasattr(value, "isoformat"):  # date, or an aware date-time (an offset date-time in TOML)
        return str(value.isoformat())
    raise TypeError(f"cannot write {value!r} to TOML")


def _lines(pairs: list[tuple[str, Any]]) -> list[str]:
    """``key = value`` lines, leaving out optional fields that are ``None``."""
    return [f"{_key(k)} = {_value(v)}" for k, v in pairs if v is not None]


def _cited(cited: Sourced) -> list[tuple[str, Any]]:
    return [("source", cited.source), ("quote", cited.quote)]


def case_to_toml(case: Case) -> str:
    """The case as a case file (``docs/formats.md``) that :func:`truecount.load_case` reads back.

    The channels are written as they are in ``case``. If readings were applied to it
    (``case.applied_readings``), the readings are left out, since applying them again would be
    wrong; otherwise they are written. The announcement's optional ``by`` is not kept by
    :class:`~truecount.inputs.case.Case` and so is not written. A claim given as a date is written as that
    date (read back as the end of the day); one given as a date-time as an offset date-time.
    """
    out = _lines([("schema_version", 1), ("id", case.id), ("title", case.title),
                  ("timezone", case.timezone), ("simulated", True if case.simulated else None)])
    if case.notes:
        out.append("notes = [\n" + "".join(f"    {_string(n)},\n" for n in case.notes) + "]")
    out += ["", "[actor]", *_lines([("name", case.actor)])]
    out += ["", "[announcement]", *_lines([("date", case.announced), *_cited(case.announced_cited)])]
    out += ["", "[window]", *_lines([("start", case.window_start), ("end", case.window_end),
                                     *_cited(case.window_cited)])]
    for ch in case.channels:
        out += ["", "[[channels]]", *_lines([
            ("id", ch.id), ("kind", ch.kind), ("servers", None if not ch.bounded else ch.servers
                                          if ch.servers_upper is None else list(ch.servers_range)),
            ("opens", format_clock(ch.opens)),
            ("closes", format_clock(ch.closes)), ("first_day", ch.first_day),
            ("last_day", ch.last_day), ("note", ch.note)])]
        for cite in ch.cited:
            out += ["[[channels.cites]]", *_lines(_cited(cite))]
    for claim in case.claims:
        when = claim.day if claim.time_given == "date" else claim.time
        out += ["", "[[claims]]", *_lines([
            ("id", claim.id), ("value", claim.value), ("rounding", claim.rounding), ("date", when),
            ("counts", claim.counts), ("presented_as", claim.presented_as),
            ("cumulative", claim.cumulative),
            ("since", None if claim.since is None else
             claim.since.date() if claim.since_given == "date" else claim.since),
            ("channel", claim.channel), ("by", claim.by), *_cited(claim.cited),
            ("original_source", claim.original_source), ("note", claim.note)])]
    for item in case.evidence:
        measure = ([("failed", item.failed), ("succeeded", item.succeeded)] if item.has_counts
                   else [("strength", item.strength)])
        out += ["", "[[evidence]]", *_lines([("id", item.id), ("channel", item.channel), *measure,
                                             *_cited(item.cited), ("note", item.note)])]
    if not case.applied_readings:
        for name, reading in case.readings.items():
            out += ["", f"[readings.{_key(name)}]", *_lines([("description", reading.description),
                                                            *_cited(reading.cited)])]
            for channel_id, overrides in reading.channels.items():
                fields = [(k, format_clock(v) if k in ("opens", "closes") else v)
                          for k, v in overrides.items()]
                out += [f"[readings.{_key(name)}.channels.{_key(channel_id)}]", *_lines(fields)]
    for st in case.statements:
        out += ["", "[[statements]]", *_lines([("id", st.id), ("value", st.value), ("unit", st.unit),
                                               ("about", st.about), *_cited(st.cited)])]
    for sid, source in case.sources.items():
        out += ["", f"[sources.{_key(sid)}]", *_lines([
            ("title", source.title), ("authors", list(source.authors)), ("publisher", source.publisher),
            ("date", source.date), ("url", source.url), ("note", source.note)])]
    return "\n".join(out) + "\n"
