r"""Capacity arithmetic of an enrolment channel, in plain NumPy.

This is the ground floor of truecount: the queueing and capacity formulas that the probabilistic
model (:mod:`truecount.model`) is built on, here as ordinary array functions that can be checked
against closed forms and hand-worked numbers.

A channel is ``c`` lines (servers). Callers arrive at ``lam`` attempts per hour; a call occupies a
line for a mean handle time of ``tau`` minutes, so the offered load is ``A = lam * tau / 60`` Erlangs.
A caller who finds every line busy gets no answer and is lost (a loss system, Erlang's B model); the
share of attempts lost is the Erlang-B blocking probability

.. math::

    B(c, A) = \frac{A^c / c!}{\sum_{k=0}^{c} A^k / k!},

which depends on the handle-time distribution only through its mean (the insensitivity of the
M/G/c/c queue). It is computed by the stable recursion

.. math::

    \frac{1}{B(k, A)} = 1 + \frac{k}{A} \frac{1}{B(k-1, A)}, \qquad B(0, A) = 1,

which never forms a factorial or a large power.

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

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

__all__ = [
    "carried_load",
    "erlang_b",
    "erlang_b_closed_form",
    "inverse_blocking",
    "max_registrations",
    "offered_load",
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
    Uses :math:`1/B_k = 1 + (k/A)/B_{k-1}`, :math:`B_0 = 1`: every term is positive, so there is no
    cancellation, and no factorial is formed. The model's PyTensor version
    (:func:`truecount.model.erlang_b_pt`) unrolls the same recursion.

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
    with np.errstate(divide="ignore", invalid="ignore"):
        # At A = 0, k / A = inf makes B = 0 (nothing is blocked); at A = inf, B = 1.
        return _floats(1.0 / inverse_blocking(int(servers), a, np.ones_like(a)))


def inverse_blocking(servers: int, load: Any, one: Any) -> Any:
    """``1 / B(servers, load)`` by the recursion :math:`1/B_k = 1 + (k/A)/B_{k-1}`, :math:`1/B_0 = 1`.

    Written with ``+``, ``*`` and ``/`` only, so that the same definition serves NumPy arrays here
    and PyTensor tensors in the model (:func:`truecount.model.erlang_b_pt`); ``one`` is ones of the
    load's shape in the caller's array library. The loop is unrolled ``servers`` times.
    """
    inv_b = one
    for k in range(1, servers + 1):
        inv_b = 1.0 + (k / load) * inv_b
    return inv_b


def erlang_b_closed_form(servers: int, load: float) -> float:
    """Erlang-B from the textbook sum, in exact rational arithmetic where possible.

    A slow reference for tests: ``(A^c / c!) / sum_k A^k / k!``.
    """
    if load == 0:
        return 0.0 if servers > 0 else 1.0
    terms = [load**k / math.factorial(k) for k in range(servers + 1)]
    return terms[-1] / math.fsum(terms)


def carried_load(servers: int, load: ArrayLike) -> FloatArray:
    """Carried load ``A (1 - B(c, A))``: the mean number of busy lines, at most ``c``."""
    a = np.asarray(load, dtype=float)
    with np.errstate(invalid="ignore"):
        carried = a * (1.0 - erlang_b(servers, a))
    # At infinite load every line is always busy.
    return _floats(np.where(np.isinf(a), float(servers), carried))


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
    return _floats(
        _floats(servers) * _floats(open_hours) * _floats(attended_share)
        * 60.0 / _floats(handle_time_min) * _floats(enrol_share)
    )


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
    return _floats(_floats(claim) * _floats(handle_time_min) / (60.0 * _floats(line_hours_per_day)))


def _floats(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)
