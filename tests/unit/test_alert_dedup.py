"""Alert deduplication and delivery bookkeeping (core/monitoring/alerts.py) on a DuckDB warehouse,
with sinks in this process: a repeat within the window is counted, not sent; after the window it
is a new alert; a failing sink is retried, then recorded as undelivered, and never raises."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from core.monitoring.alerts import (
    DELIVERED,
    UNDELIVERED,
    Alert,
    Alerter,
    AlertError,
    AlertStore,
    LogSink,
    Retry,
    asset_link,
    check_link,
    run_link,
)
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FAILED_RUN = Alert("run_failure:discovery_job", "run_failure", "high", "run of discovery_job failed", "boom")


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Collecting:
    """A sink that keeps what it was given; fails its first `failures` sends."""

    def __init__(self, name: str = "collect", failures: int = 0):
        self.name, self.failures, self.sent, self.calls = name, failures, [], 0

    def send(self, alert: Alert, alert_id: str, occurrences: int) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"{self.name} is down (call {self.calls})")
        self.sent.append((alert.dedup_key, alert_id))


@pytest.fixture
def store(tmp_path) -> AlertStore:
    warehouse = Warehouse(f"duckdb:///{tmp_path}/w.duckdb")
    ensure_schema(warehouse)
    return AlertStore(warehouse)


def alerter(store, sinks, clock, attempts=3) -> Alerter:
    return Alerter(
        store, sinks, timedelta(minutes=30), Retry(attempts=attempts, first_wait_seconds=0), clock, sleep=lambda s: None
    )


def test_a_repeat_within_the_window_is_counted_not_sent(store):
    sink, clock = Collecting(), Clock(START)
    first = alerter(store, [sink], clock).raise_alert(FAILED_RUN)
    clock.at = START + timedelta(minutes=20)
    again = alerter(store, [sink], clock).raise_alert(FAILED_RUN)
    assert first.new and not again.new
    assert again.alert_id == first.alert_id and again.occurrences == 2 and again.deliveries == ()
    assert sink.sent == [(FAILED_RUN.dedup_key, first.alert_id)]
    row = store.warehouse.query("SELECT occurrences, first_seen_at, last_seen_at FROM monitoring.alerts").iloc[0]
    assert row.occurrences == 2
    assert row.last_seen_at.to_pydatetime() - row.first_seen_at.to_pydatetime() == timedelta(minutes=20)


def test_the_window_slides_with_the_last_repeat_and_a_quiet_window_alerts_again(store):
    sink, clock = Collecting(), Clock(START)
    alerts = alerter(store, [sink], clock)
    alerts.raise_alert(FAILED_RUN)
    clock.at = START + timedelta(minutes=25)
    assert not alerts.raise_alert(FAILED_RUN).new  # 25 min after the first
    clock.at = START + timedelta(minutes=50)
    assert not alerts.raise_alert(FAILED_RUN).new  # 25 min after the last repeat: still the same problem
    clock.at = START + timedelta(minutes=81)
    fresh = alerts.raise_alert(FAILED_RUN)  # 31 min of quiet
    assert fresh.new and len(sink.sent) == 2
    other = alerts.raise_alert(Alert("run_failure:learning_job", "run_failure", "high", "t", "b"))
    assert other.new and len(sink.sent) == 3
    assert store.warehouse.count("monitoring.alerts") == 3


def test_a_failing_sink_is_retried_then_recorded_undelivered_and_the_others_still_get_it(store):
    down, up = Collecting("webhook", failures=99), Collecting("email")
    outcome = alerter(store, [down, up], Clock(START), attempts=3).raise_alert(FAILED_RUN)
    by_sink = {d.sink: d for d in outcome.deliveries}
    assert down.calls == 3
    assert by_sink["webhook"].status == UNDELIVERED and by_sink["webhook"].attempts == 3
    assert by_sink["webhook"].error == "ConnectionError: webhook is down (call 3)"
    assert by_sink["email"].status == DELIVERED and by_sink["email"].attempts == 1
    rows = store.warehouse.query(
        "SELECT sink, status, attempts, coalesce(error, '') AS error FROM monitoring.alert_deliveries ORDER BY sink"
    )
    assert rows.values.tolist() == [
        ["email", DELIVERED, 1, ""],
        ["webhook", UNDELIVERED, 3, "ConnectionError: webhook is down (call 3)"],
    ]
    [(alert, alert_id, sink, occurrences)] = store.undelivered()
    assert (alert, alert_id, sink, occurrences) == (FAILED_RUN, outcome.alert_id, "webhook", 1)


def test_a_sink_that_recovers_within_the_retries_is_delivered(store):
    flaky = Collecting("webhook", failures=2)
    outcome = alerter(store, [flaky], Clock(START), attempts=3).raise_alert(FAILED_RUN)
    assert outcome.deliveries[0].status == DELIVERED and outcome.deliveries[0].attempts == 3
    assert store.undelivered() == []


def test_redeliver_sends_the_undelivered_and_records_the_success(store):
    clock = Clock(START)
    alerter(store, [Collecting("webhook", failures=99)], clock, attempts=2).raise_alert(FAILED_RUN)
    clock.at = START + timedelta(hours=1)
    recovered = Collecting("webhook")
    [(alert_id, delivery)] = alerter(store, [recovered], clock).redeliver()
    assert delivery.status == DELIVERED and recovered.sent == [(FAILED_RUN.dedup_key, alert_id)]
    assert store.undelivered() == []
    assert alerter(store, [recovered], clock).redeliver() == []  # nothing left to send


def test_an_unreachable_store_still_delivers(tmp_path, caplog):
    broken = AlertStore(Warehouse(f"duckdb:///{tmp_path}/no-tables.duckdb"))  # no schema: every write fails
    sink = Collecting()
    with caplog.at_level(logging.WARNING, logger="ventureloop.alerts"):
        outcome = alerter(broken, [sink], Clock(START)).raise_alert(FAILED_RUN)
    assert outcome.new and not outcome.recorded and len(sink.sent) == 1
    assert "could not be recorded in monitoring.alerts" in caplog.text


def test_the_log_sink_writes_one_structured_line(caplog):
    with caplog.at_level(logging.WARNING, logger="ventureloop.alerts"):
        LogSink().send(FAILED_RUN, "a-1", 3)
    [record] = caplog.records
    assert record.levelno == logging.ERROR  # high
    assert "\n" not in record.getMessage()
    payload = json.loads(record.getMessage().removeprefix("alert "))
    assert payload["alert_id"] == "a-1" and payload["occurrences"] == 3 and payload["kind"] == "run_failure"


def test_alerts_refuse_unknown_kinds_and_severities():
    with pytest.raises(AlertError, match="kind"):
        Alert("k", "outage", "high", "t", "b")
    with pytest.raises(AlertError, match="severity"):
        Alert("k", "anomaly", "urgent", "t", "b")


def test_links_point_into_the_dagster_ui():
    base = "http://dagster.internal:3000/"
    assert run_link(base, "abc") == "http://dagster.internal:3000/runs/abc"
    assert asset_link(base, ["marts", "daily_cash_flow"]) == "http://dagster.internal:3000/assets/marts/daily_cash_flow"
    assert check_link(base, ["slo_report"], "slo_run_success_rate").endswith(
        "/assets/slo_report?view=checks&checkDetail=slo_run_success_rate"
    )
