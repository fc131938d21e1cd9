r"""Capacity arithmetic of an enrolment channel, in plain NumPy.

This is the ground floor of truecount: the queueing and capacity formulas that the probabilistic
model (:mod:`truecount.model.build`) is built on, here as ordinary array functions that can be checked
against closed forms and hand-worked numbers.

A channel is ``c`` lines (servers). Callers arrive at ``lam`` attempts per hour; a call occupies a
line for a mean handle time of ``tau`` minutes, so the offered load is ``A = lam * tau / 60`` Erlangs.
A caller who finds every line busy gets no answer and is lost (a loss system, Erlang's B model); the
share of attempts lost is the Erlang-B blocking probability

.. math::

    B(c, A) = \frac{A^c / c!}{\sum_{k=0}^{c} A^k / k!},

which depends on the handle-time distribution only through its mean (the insensitivity of the
M/G/c/c queue). It is computed by the stable recursion
:math:`B(k, A) = A B(k-1, A) / (k + A B(k-1, A))`, :math:`B(0, A) = 1`, on the log scale:

.. math::

    \log B(k, A) = -\operatorname{softplus}\bigl(\log k - \log A - \log B(k-1, A)\bigr),
    \qquad \operatorname{softplus}(x) = \log(1 + e^x),

which never forms a factorial, a large power or a large intermediate, and takes the load on the
log scale, so that neither it nor its derivative overflows or underflows into NaN however small
the load (a long campaign's fading demand), however large, or however many the lines.

References
----------
.. [1] A. K. Erlang, "Solution of some problems in the theory of probabilities of significance in
   automatic telephone exchanges", Elektroteknikeren 13, 1917.
.. [2] D. Gross, J. F. Shortle, J. M. Thompson, C. M. Harris, *Fundamentals of Queueing Theory*,
   4th ed., Wiley, 2008, section 2.6 (M/M/c/c) and 6.2 (M/G/c/c insensitivity).

"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

__all__ = [
    "attempts_per_hour",
    "carried_load",
    "erlang_a_chain",
    "erlang_b",
    "erlang_b_closed_form",
    "log_blocking",
    "log_blocking_scalar",
    "log_blocking_slope",
    "max_registrations",
    "offered_load",
    "registrations_per_hour",
    "required_days",
    "required_handle_time",
]


def offered_load(attempts_per_hour: ArrayLike, handle_time_min: ArrayLike) -> FloatArray:
    """Offered load in Erlangs: ``attempts_per_hour * handle_time_min / 60``."""
    return _floats(_floats(attempts_per_hour) * _floats(handle_time_min) / 60.0)


def erlang_b(servers: int, load: ArrayLike) -> FloatArray:
    r"""Erlang-B blocking probability of ``servers`` lines offered ``load`` Erlangs.

    Parameters
    ----------
    servers
        Number of lines ``c`` (a non-negative integer; the recursion runs ``c`` steps).
    load
        Offered load ``A >= 0`` in Erlangs; any shape (broadcast elementwise). ``inf`` is allowed.

    Returns
    -------
    numpy.ndarray
        ``B(c, A)`` with the shape of ``load``: 0 at no load (for ``c >= 1``), tending to 1 as the
        load grows, ``A / (1 + A)`` for one line, and 1 for no lines.

    Notes
    -----
    Uses :func:`log_blocking`, the recursion :math:`B_k = A B_{k-1} / (k + A B_{k-1})` on the log
    scale, which the model runs too (:func:`truecount.model.build.log_erlang_b`).

    Examples
    --------
    >>> float(erlang_b(1, 1.0))
    0.5
    >>> round(float(erlang_b(6, 6.0)), 4)
    0.2649

    """
    if isinstance(servers, bool) or int(servers) != servers or servers < 0:
        raise ValueError(f"servers must be a non-negative integer, got {servers!r}")
    a = np.asarray(load, dtype=float)
    if np.any(a < 0) or np.any(np.isnan(a)):
        raise ValueError("load must be >= 0 and not NaN")
    with np.errstate(divide="ignore"):  # log 0 = -inf is meant: no load, nothing blocked
        log_load = np.log(a)
    return _floats(np.exp(log_blocking(int(servers), log_load)))


#: Powers of two that keep the scaled recursion in range: rescaling by them is exact.
_RESCALE_ABOVE = 2.0**500
_RESCALE_BY = 2.0**-500
_LOG_RESCALE = 500 * math.log(2.0)
#: Below this log-load (A < 4e-18 Erlangs) four factors k/A could overflow before a rescale: the
#: softplus form takes over (demand that has faded to nothing; B ~ A^c / c! there). With at most
#: a million lines, (k/A)^4 < 1e94 and m < 2^500 keep every intermediate below 1e245.
_PLAIN_FROM_LOG_LOAD = -40.0
#: Above this many lines the same overflow bound needs the softplus form too.
_PLAIN_UP_TO_SERVERS = 1_000_000


# Not cached on disk: numba keys a cached function by its source and signature, not by the
# options it was compiled with, and PyTensor's numba backend compiles this same function inside
# the model with its own (fast-math) options. The two shared one cache entry: a fit could load
# the other's code (other last bits), and a fresh clone's CI run loaded an entry that crashed
# the process (segmentation fault). Compiling it takes well under a second.
@numba.njit(cache=False)  # type: ignore[untyped-decorator]
def log_blocking_scalar(servers: int, log_load: float) -> float:  # pragma: no cover - compiled
    r"""``log B(servers, A)`` from ``log A`` for one pair of numbers: the recursion, written once.

    The recursion :math:`x_k = 1 + (k/A)\,x_{k-1}`, :math:`x_0 = 1`, for :math:`x_k = 1/B(k, A)`,
    run on a scaled value :math:`x_k = m_k e^{s}` (``m`` is multiplied by :math:`2^{-500}`, which
    is exact, whenever it passes :math:`2^{500}`), so that it never overflows however small the
    load or however many the lines; :math:`\log B = -(\log m + s)`. Every term is positive, so
    the result is accurate to about ``servers`` rounding errors (1e-12 relative at 5,000 lines),
    and the chain of dependent operations is one multiplication and one addition per four lines:
    17 times faster than the softplus form below at 2,000 lines (3.6 against 61 microseconds),
    which matters because the model evaluates it per channel and day at every gradient (a
    2,000-line call centre sampled in 65 s with the softplus form alone).

    For a load below :math:`4 \cdot 10^{-18}` (or more than a million lines) the factors
    :math:`k/A` could overflow, and the same recursion runs on the log scale instead,
    :math:`\log B_k = -\mathrm{softplus}(\log k - \log A - \log B_{k-1})` from
    :math:`\log B_0 = 0` (:func:`_log_blocking_softplus`), bounded at every step.

    Compiled by Numba; :func:`log_blocking` applies it to arrays and the model runs this very
    function in its compiled log density (:func:`truecount.model.build.log_erlang_b`).
    """
    if not (log_load > _PLAIN_FROM_LOG_LOAD) or servers > _PLAIN_UP_TO_SERVERS:
        return float(_log_blocking_softplus(servers, log_load))
    inverse_load = math.exp(-log_load)
    one = 1.0  # the 1 of x_k = 1 + (k/A) x_{k-1}, in the units of the scaled m
    m = 1.0
    log_scale = 0.0
    k = 0
    # Four steps at a time, x_{k+4} = one (1 + r4 (1 + r3 (1 + r2))) + r4 r3 r2 r1 x_k with
    # r_j = (k + j) / A: the products do not depend on m, so the chain of dependent operations,
    # which sets the speed, is one multiplication and one addition per four lines.
    while k + 4 <= servers:
        r1 = (k + 1) * inverse_load
        r2 = (k + 2) * inverse_load
        r3 = (k + 3) * inverse_load
        r4 = (k + 4) * inverse_load
        m = one * (1.0 + r4 * (1.0 + r3 * (1.0 + r2))) + (r4 * r3) * (r2 * r1) * m
        k += 4
        if m > _RESCALE_ABOVE:
            m *= _RESCALE_BY
            one *= _RESCALE_BY  # underflows to 0 after a few rescales: then it no longer counts
            log_scale += _LOG_RESCALE
    while k < servers:
        k += 1
        m = one + (k * inverse_load) * m
    return -(math.log(m) + log_scale)


@numba.njit(cache=False)  # type: ignore[untyped-decorator]
def _log_blocking_softplus(servers: int, log_load: float) -> float:  # pragma: no cover - compiled
    r"""The same recursion on the log scale, for loads too small for :func:`log_blocking_scalar`.

    :math:`\log B_k = -\mathrm{softplus}(\log k - \log A - \log B_{k-1})`, the softplus split
    so that neither branch overflows; every step is bounded (:math:`\log B \le 0`) at any load,
    including 0 (``log_load = -inf`` gives ``-inf``). Used by :func:`log_blocking_scalar` for loads
    below :math:`4 \cdot 10^{-18}`.
    """
    log_b = 0.0
    for k in range(1, servers + 1):
        x = math.log(k) - log_load - log_b
        log_b = -(x + math.log1p(math.exp(-x))) if x > 0.0 else -math.log1p(math.exp(x))
    return log_b


_log_blocking_ufunc = numba.vectorize(cache=True)(log_blocking_scalar.py_func)


def log_blocking(servers: ArrayLike, log_load: ArrayLike) -> FloatArray:
    """``log B(servers, A)`` from ``log A``, elementwise with broadcasting (:func:`log_blocking_scalar`)."""
    return _floats(_log_blocking_ufunc(np.asarray(servers, dtype=np.int64),
                                       np.asarray(log_load, dtype=np.float64)))


def log_blocking_slope(servers: Any, load: Any, blocking: Any) -> Any:
    r"""The derivative :math:`\partial \log B / \partial \log A = c - A(1 - B)`.

    From the classical :math:`\partial B/\partial A = B\,(c/A - 1 + B)` (Gross et al., section
    2.6): the lines minus the carried load, between 0 and ``c``. The model's loop uses it as its
    exact gradient instead of differentiating through ``c`` steps.
    """
    return servers - load * (1.0 - blocking)


def erlang_b_closed_form(servers: int, load: float) -> float:
    """Erlang-B from the textbook sum, in exact rational arithmetic where possible.

    A slow reference for tests: ``(A^c / c!) / sum_k A^k / k!``.
    """
    if load == 0:
        return 0.0 if servers > 0 else 1.0
    terms = [load**k / math.factorial(k) for k in range(servers + 1)]
    return terms[-1] / math.fsum(terms)


def erlang_a_chain(servers: int, load: float, patience_ratio: float) -> float:
    """Share of callers answered by ``servers`` agents with a queue (Erlang-A), state by state.

    A slow reference for tests, independent of the model's formula
    (:func:`truecount.model.equations.erlang_a_answered`): the birth-death chain's stationary
    probabilities on the log scale (arrivals ``load``, ``min(n, S)`` services and ``(n - S) /
    patience_ratio`` abandonments per mean handle time), summed until they vanish; the answered
    share is the mean number of busy agents over the load.
    """
    log_p = [0.0]
    n = 0
    while True:
        n += 1
        death = min(n, servers) + max(n - servers, 0) / patience_ratio
        log_p.append(log_p[-1] + math.log(load) - math.log(death))
        if n > servers and log_p[-1] < max(log_p) - 60.0:
            break
    p = np.exp(np.array(log_p) - max(log_p))
    p /= p.sum()
    busy = np.minimum(np.arange(len(p)), servers)
    return float((p * busy).sum() / load)


def carried_load(servers: int, load: ArrayLike) -> FloatArray:
    """Carried load ``A (1 - B(c, A))``: the mean number of busy lines, at most ``c``."""
    a = np.asarray(load, dtype=float)
    with np.errstate(invalid="ignore"):
        carried = a * (1.0 - erlang_b(servers, a))
    # At infinite load every line is always busy.
    return _floats(np.where(np.isinf(a), float(servers), carried))


def registrations_per_hour(servers: Any, handle_time_min: Any, attended_share: Any = 1.0) -> Any:
    """Most registrations an open hour: every attended line busy, ``servers * share * 60 / tau``.

    Plain arithmetic on any array type, so the model's capacity
    (:mod:`truecount.model.equations`, NumPy or PyTensor) and the capacity table are this one
    formula.
    """
    return servers * attended_share * 60.0 / handle_time_min


def attempts_per_hour(load_per_line: Any, servers: Any, handle_time_min: Any) -> Any:
    """Call attempts an hour that offer ``load_per_line`` Erlangs to each of ``servers`` lines.

    ``load_per_line * servers * 60 / tau``: the demand relative to the channel's size times the
    most calls its lines can take an hour (:func:`registrations_per_hour`). The model states its
    demand this way, so that one prior serves six lines and five hundred agents. Plain arithmetic
    on any array type.
    """
    return load_per_line * registrations_per_hour(servers, handle_time_min)


def max_registrations(
    servers: ArrayLike,
    open_hours: ArrayLike,
    handle_time_min: ArrayLike,
    attended_share: ArrayLike = 1.0,
    enrol_share: ArrayLike = 1.0,
) -> FloatArray:
    """Most registrations a channel can make: every attended line busy for all its open hours.

    ``servers * open_hours * attended_share * 60 / handle_time_min * enrol_share``; the upper bound
    reached only under unlimited demand (blocking -> 1, every line always busy). ``open_hours`` is
    per line (the hours the channel is open), not line-hours.
    """
    per_hour = registrations_per_hour(_floats(servers), _floats(handle_time_min),
                                      _floats(attended_share))
    return _floats(per_hour * _floats(open_hours) * _floats(enrol_share))


def required_handle_time(claim: ArrayLike, line_hours: ArrayLike) -> FloatArray:
    """Mean handle time (minutes) at which ``line_hours`` of busy lines register ``claim`` people.

    A claim is physically possible on the channel only if registrations could take this long or
    less; compare it with what a registration call takes.
    """
    return _floats(_floats(line_hours) * 60.0 / _floats(claim))


def required_days(
    claim: ArrayLike, line_hours_per_day: ArrayLike, handle_time_min: ArrayLike
) -> FloatArray:
    """Days of operation the channel needs to register ``claim`` people at full use.

    ``claim * handle_time_min / (60 * line_hours_per_day)``, with ``line_hours_per_day`` the lines
    times the hours they are open each day (6 lines round the clock: 144).
    """
    per_day = registrations_per_hour(_floats(line_hours_per_day), _floats(handle_time_min))
    return _floats(_floats(claim) / per_day)


def _floats(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)
