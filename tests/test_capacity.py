import itertools
import math

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp

from truecount.model import capacity


def erlang_b_log_reference(c: int, a: float) -> float:
    """The closed form in log space: exact for large c where factorials overflow."""
    k = np.arange(c + 1)
    log_terms = k * math.log(a) - gammaln(k + 1)
    return float(np.exp(log_terms[-1] - logsumexp(log_terms)))


@pytest.mark.parametrize("c", [1, 2, 3, 6, 10, 20])
@pytest.mark.parametrize("a", [0.01, 0.5, 1.0, 6.0, 17.3, 100.0])
def test_erlang_b_matches_closed_form(c, a):
    assert capacity.erlang_b(c, a) == pytest.approx(capacity.erlang_b_closed_form(c, a), rel=1e-12)


def test_erlang_b_textbook_values():
    # Erlang-B tables: 10 lines offered 5 Erlangs block 1.84% of calls; 6 lines at 6 Erlangs 26.5%.
    assert capacity.erlang_b(10, 5.0) == pytest.approx(0.018385, abs=1e-6)
    assert capacity.erlang_b(6, 6.0) == pytest.approx(0.264922, abs=1e-6)


def test_erlang_b_limits():
    assert capacity.erlang_b(6, 0.0) == 0.0
    assert capacity.erlang_b(6, np.inf) == 1.0
    assert capacity.erlang_b(0, 3.0) == 1.0
    loads = np.array([0.1, 1.0, 7.5, 1e6])
    np.testing.assert_allclose(capacity.erlang_b(1, loads), loads / (1 + loads), rtol=1e-14)
    # Heavy load: B -> 1 - c/A.
    assert capacity.erlang_b(6, 1e6) == pytest.approx(1 - 6 / 1e6, rel=1e-9)


def test_erlang_b_stable_where_factorials_overflow():
    # 300! overflows a float; the recursion never forms it.
    assert capacity.erlang_b(300, 280.0) == pytest.approx(erlang_b_log_reference(300, 280.0),
                                                          rel=1e-10)


def test_erlang_b_monotone():
    loads = np.linspace(0.0, 60.0, 301)
    for c in (1, 6, 20):
        assert np.all(np.diff(capacity.erlang_b(c, loads)) > 0)
    by_servers = [float(capacity.erlang_b(c, 6.0)) for c in range(0, 30)]
    assert all(b1 > b2 for b1, b2 in itertools.pairwise(by_servers))


def test_erlang_b_shape_and_bad_input():
    assert capacity.erlang_b(3, np.ones((2, 4))).shape == (2, 4)
    with pytest.raises(ValueError, match="servers"):
        capacity.erlang_b(-1, 1.0)
    with pytest.raises(ValueError, match="servers"):
        capacity.erlang_b(2.5, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="load"):
        capacity.erlang_b(2, -1.0)


def test_carried_load_is_at_most_the_lines():
    loads = np.array([0.0, 1.0, 6.0, 50.0, np.inf])
    carried = capacity.carried_load(6, loads)
    assert carried[0] == 0.0
    assert np.all(carried <= 6.0)
    assert carried[-1] == 6.0
    assert carried[1] == pytest.approx(1.0 * (1 - capacity.erlang_b_closed_form(6, 1.0)))


def test_offered_load():
    assert capacity.offered_load(120, 5) == pytest.approx(10.0)


def test_capacity_hand_worked_kss_numbers():
    # Six lines, 09:00-20:00 (11 h) for five days, 5 minutes a call: 6 * 55 * 12 = 3,960.
    assert capacity.max_registrations(6, 11 * 5, 5.0) == pytest.approx(3960.0)
    # Half the time attended, a third of answered calls enrol: 3,960 / 6 = 660.
    assert capacity.max_registrations(6, 55, 5.0, 0.5, 1 / 3) == pytest.approx(660.0)
    # Round the clock at 5 minutes, 6 lines register 1,728 a day: 49,000 takes 28.36 days
    # (the article's "at least twenty-eight days").
    assert capacity.required_days(49_000, 6 * 24, 5.0) == pytest.approx(49_000 / 1728)
    # 49,000 in 7 days round the clock needs a call every 1.23 minutes per line.
    assert capacity.required_handle_time(49_000, 6 * 24 * 7) == pytest.approx(1.2343, abs=1e-4)


def test_log_blocking_is_finite_from_tiny_to_huge_loads_and_many_lines():
    # The far tails: 0.01 N Erlangs on 5,000 lines is B ~ 1e-18000 (finite on the log scale).
    for n in (1, 6, 156, 5000):
        log_a = np.log(n * np.geomspace(0.01, 50, 25))
        log_b = capacity.log_blocking(n, log_a)
        assert np.all(np.isfinite(log_b)) and np.all(log_b <= 0)
        assert np.all(np.diff(log_b) > 0)  # more load, more blocking
    assert capacity.log_blocking(5000, np.log(50.0)) < -18000
    assert capacity.log_blocking(6, -200.0) == pytest.approx(6 * -200.0 - math.log(720), rel=1e-12)


def test_scaled_recursion_equals_the_log_scale_form_and_the_closed_form_on_the_grid():
    # N 1..5,000 and A from 0.01 N to 50 N (issue 13): the fast scaled recursion against the
    # softplus form it replaced (the same recursion on the log scale) and against the textbook
    # sum evaluated independently in log space; log B to 1e-10, i.e. B to 1e-10 relative, also
    # in the far tails where B itself underflows.
    ns = np.unique(np.concatenate([np.arange(1, 41), np.geomspace(41, 5000, 40).round()])).astype(int)
    for n in ns:
        log_a = np.log(n * np.geomspace(0.01, 50, 25))
        fast = capacity.log_blocking(n, log_a)
        slow = np.array([capacity._log_blocking_softplus(int(n), float(x)) for x in log_a])
        np.testing.assert_allclose(fast, slow, rtol=1e-13, atol=1e-10)
        if n in (1, 2, 3, 6, 17, 156, 1000, 5000):
            closed = np.array([_log_reference(int(n), float(x)) for x in log_a])
            np.testing.assert_allclose(fast, closed, rtol=1e-13, atol=1e-10)


def test_scaled_recursion_at_the_edges_of_its_range():
    # Below 4e-18 Erlangs the log-scale form takes over; both sides of the switch agree with
    # B ~ A^c / c!, and nothing overflows at a million lines or at the largest loads.
    for log_a in (-40.0 - 1e-9, -40.0 + 1e-9, -45.0, -1e4):
        assert capacity.log_blocking(6, log_a) == pytest.approx(6 * log_a - math.log(720), rel=1e-12)
    assert capacity.log_blocking(1_000_000, np.log(1e-17)) < -1e7
    assert np.isfinite(capacity.log_blocking(1_000_000, np.log(2e6)))
    assert capacity.log_blocking(6, np.inf) == 0.0 and capacity.log_blocking(6, -np.inf) == -np.inf
    assert np.isnan(capacity.log_blocking(6, np.nan))
    assert capacity.log_blocking(0, 3.0) == 0.0


def _log_reference(n: int, log_a: float) -> float:
    k = np.arange(n + 1)
    log_terms = k * log_a - gammaln(k + 1)
    return float(log_terms[-1] - logsumexp(log_terms))


@pytest.mark.parametrize("n", [1, 6, 40, 156, 2000])
def test_log_blocking_slope_is_the_derivative_of_the_recursion(n):
    a = n * np.geomspace(0.01, 50, 15)
    h = 1e-6
    numeric = (capacity.log_blocking(n, np.log(a) + h) - capacity.log_blocking(n, np.log(a) - h)) \
        / (2 * h)
    exact = capacity.log_blocking_slope(n, a, capacity.erlang_b(n, a))
    np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-6)
    assert np.all((exact >= 0) & (exact <= n))
