"""The SLO arithmetic (core/monitoring/slo.py): burn rates, error budget, status, and the SLIs built
from run ends, materialization times and revenue days."""

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.monitoring.slo import (
    BREACHED,
    BURNING,
    NO_DATA,
    OK,
    Event,
    Slo,
    SloError,
    burn_rate,
    error_budget_remaining,
    evaluate,
    freshness_events,
    revenue_days,
    run_events,
    tally,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
RUNS = Slo("run_success_rate", 0.95, timedelta(days=7), "runs")


def test_burn_rate_is_the_error_rate_over_the_allowed_error_rate():
    # 2 bad of 20 = 10% errors against 5% allowed: twice the sustainable rate.
    assert burn_rate(18, 20, 0.95) == pytest.approx(2.0)
    assert burn_rate(20, 20, 0.95) == 0.0
    assert burn_rate(0, 10, 0.99) == pytest.approx(100.0)
    assert burn_rate(0, 0, 0.95) is None


def test_error_budget_is_what_is_left_of_the_allowed_bad_events():
    # 100 events at 0.95 allow 5 bad ones: 1 bad spends a fifth, 5 spend all of it, 10 overspend.
    assert error_budget_remaining(99, 100, 0.95) == pytest.approx(0.8)
    assert error_budget_remaining(95, 100, 0.95) == pytest.approx(0.0)
    assert error_budget_remaining(90, 100, 0.95) == pytest.approx(-1.0)
    assert error_budget_remaining(0, 0, 0.95) is None


@given(
    good=st.integers(min_value=0, max_value=1000),
    extra=st.integers(min_value=0, max_value=1000),
    objective=st.floats(min_value=0.5, max_value=0.999),
)
def test_budget_and_burn_agree(good, extra, objective):
    """Over the SLO's own window, budget left = 1 - burn rate (both measure bad / allowed bad)."""
    total = good + extra
    if total == 0:
        return
    assert error_budget_remaining(good, total, objective) == pytest.approx(1 - burn_rate(good, total, objective))


def test_windows_count_only_their_events():
    events = [
        Event(NOW - timedelta(minutes=30), False),  # in 1h, 6h and 7d
        Event(NOW - timedelta(hours=3), True),  # in 6h and 7d
        Event(NOW - timedelta(days=2), True),
        Event(NOW - timedelta(days=8), False),  # outside the SLO's window
    ]
    assert tally(events, NOW - timedelta(hours=1), NOW) == (0, 1)
    result = evaluate(RUNS, events, NOW, unit="runs")
    assert (result.good, result.total) == (2, 3)
    assert result.burn_rate_1h == pytest.approx(1 / 0.05)  # 100% errors in the last hour
    assert result.burn_rate_6h == pytest.approx(0.5 / 0.05)
    assert result.attainment == pytest.approx(2 / 3)
    assert result.status == BREACHED
    assert "2 of 3 runs good in the last 7d" in result.detail


def test_status_burning_needs_both_windows_over_the_threshold():
    # 1,000 good runs over the week keep attainment above 0.95; the failures are recent.
    history = [Event(NOW - timedelta(days=1, minutes=i), True) for i in range(1000)]
    recent_failures = [Event(NOW - timedelta(minutes=10 * i + 1), False) for i in range(6)]  # all in the last hour
    burning = evaluate(RUNS, history + recent_failures, NOW)
    assert burning.attainment > RUNS.objective
    assert burning.burn_rate_1h == pytest.approx(20.0) and burning.burn_rate_6h == pytest.approx(20.0)
    assert burning.status == BURNING
    # A blip: one failure an hour ago among many good runs in the 6 hours: the long window says no.
    six_hours = [Event(NOW - timedelta(hours=2, minutes=i), True) for i in range(100)]
    blip = evaluate(RUNS, history + six_hours + [Event(NOW - timedelta(minutes=5), False)], NOW)
    assert blip.burn_rate_1h == pytest.approx(20.0)
    assert blip.burn_rate_6h < RUNS.burn_threshold
    assert blip.status == OK


def test_no_events_is_no_data_not_ok():
    result = evaluate(RUNS, [Event(NOW - timedelta(days=30), False)], NOW)
    assert result.status == NO_DATA
    assert result.attainment is None and result.burn_rate_1h is None and result.error_budget_remaining is None
    assert result.row()["status"] == NO_DATA and result.row()["slo_window"] == "7d"


def test_objectives_outside_the_unit_interval_are_refused():
    with pytest.raises(SloError, match="between 0 and 1"):
        Slo("x", 1.0, timedelta(days=1), "x")
    with pytest.raises(SloError, match="timezone"):
        evaluate(RUNS, [], datetime(2026, 1, 1))


def test_run_events_one_per_run():
    events = run_events([(NOW - timedelta(hours=1), True), (NOW - timedelta(hours=2), False)])
    assert [e.good for e in events] == [True, False] and all(e.weight == 1 for e in events)


def test_freshness_counts_stale_seconds():
    """Updated 10h and 4h ago with a 2h maximum age over a 12h window: fresh 10h..8h and 4h..2h ago
    (4 hours), stale the rest since the first update (6 hours); nothing before it counts."""
    slo = Slo("data_freshness:x", 0.95, timedelta(hours=12), "x")
    updates = [NOW - timedelta(hours=10), NOW - timedelta(hours=4)]
    events = freshness_events(updates, timedelta(hours=2), NOW - slo.window, NOW)
    result = evaluate(slo, events, NOW, unit="seconds")
    assert result.total == pytest.approx(10 * 3600)
    assert result.good == pytest.approx(4 * 3600)
    assert result.burn_rate_1h == pytest.approx(1 / 0.05)  # stale for the whole last hour
    assert result.burn_rate_6h == pytest.approx((4 / 6) / 0.05)  # stale 6h..4h ago and the last 2h
    assert result.status == BREACHED


def test_an_asset_updated_before_the_window_is_fresh_from_its_start():
    updates = [NOW - timedelta(hours=13), NOW - timedelta(minutes=30)]
    events = freshness_events(updates, timedelta(hours=2), NOW - timedelta(hours=12), NOW)
    good, total = tally(events, NOW - timedelta(hours=12), NOW)
    assert total == pytest.approx(12 * 3600)
    assert good == pytest.approx(1.5 * 3600)  # 12h..11h ago (from the update 13h ago) and the last 30 minutes
    assert freshness_events([], timedelta(hours=2), NOW - timedelta(hours=12), NOW) == []


def test_revenue_days_count_closed_days_and_a_missing_day_earned_nothing():
    by_day = {date(2026, 11, 19): 250, date(2026, 11, 18): 99, date(2026, 11, 20): 10_000}  # the 20th is open
    events = revenue_days(by_day, 100, timedelta(days=3), NOW)
    assert [(e.at.date(), e.good) for e in events] == [
        (date(2026, 11, 20), True),  # the 19th, closed at midnight
        (date(2026, 11, 19), False),  # the 18th: 99 < 100
        (date(2026, 11, 18), False),  # the 17th: no revenue row
    ]
    result = evaluate(Slo("revenue_per_day", 0.9, timedelta(days=3), "r"), events, NOW, unit="days")
    assert (result.good, result.total) == (1, 3) and result.burn_rate_1h is None
