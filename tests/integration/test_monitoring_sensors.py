"""The alert sensors (assets/monitoring/alerts.py) and slo_report (assets/monitoring/slo.py) on a
temporary Dagster instance: a real failing run raises one run_failure alert with a link to the run,
a failed blocking check one check_failure alert, new high anomalies one alert each (the cursor
remembers what was alerted), and slo_report turns run records, experiment runs and revenue into
SLO rows, checks and slo_burn alerts, on DuckDB and PostgreSQL, with the webhook down."""

import socket
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from assets.monitoring.alerts import alert_on_anomalies, alert_on_failed_blocking_checks, alert_on_run_failure
from assets.monitoring.slo import slo_report
from assets.resources import AlertsResource, WarehouseResource
from core.ledger.booking import book
from core.ledger.validation import Posting, TransactionRequest
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

UI = "http://dagster.example:3000"


@dg.op
def call_source():
    raise RuntimeError("the source API answered 503 three times")


@dg.job
def flaky_job():
    call_source()


@dg.op
def nothing():
    return None


@dg.job
def steady_job():
    nothing()


@dg.asset
def scores():
    return 1


@dg.asset_check(asset=scores, blocking=True)
def scores_within_unit_interval() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="3 scores above 1.0")


@dg.asset_check(asset=scores)
def scores_not_blocking() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="advisory only")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def instance():
    """One temporary instance for the sensor tests (each starts from its own cursor or run ids);
    creating one costs seconds here. slo_report counts every run, so it gets its own."""
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="module")
def failed_runs(instance) -> list[str]:
    """Two real failed runs of flaky_job on the module's instance (each sensor test alerts on them
    on its own warehouse)."""
    runs = [flaky_job.execute_in_process(instance=instance, raise_on_error=False) for _ in range(2)]
    assert not any(run.success for run in runs)
    return [run.run_id for run in runs]


@pytest.fixture
def duckdb_warehouse(duckdb_url) -> Warehouse:
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    return warehouse


def alerts_for(warehouse: Warehouse, **settings) -> AlertsResource:
    return AlertsResource(
        warehouse=WarehouseResource(url=warehouse.url), ui_url=UI, retry_wait_seconds=0.01, **settings
    )


def alert_rows(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.query("SELECT dedup_key, kind, severity, title, body, link, occurrences FROM monitoring.alerts")


def failure_context(instance, run_id: str, alerts: AlertsResource):
    run = instance.get_run_by_id(run_id)
    [failure] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    return dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.event_log_entry.dagster_event,
        resources={"alerts": alerts},
    ).for_run_failure()


def test_a_failed_run_raises_one_alert_linked_to_the_run(instance, failed_runs, duckdb_warehouse, caplog):
    alerts = alerts_for(duckdb_warehouse)
    for run_id in failed_runs:
        with failure_context(instance, run_id, alerts) as context:
            alert_on_run_failure(context)
    first = instance.get_run_by_id(failed_runs[0])
    [row] = alert_rows(duckdb_warehouse).itertuples()
    assert (row.dedup_key, row.kind, row.severity) == ("run_failure:flaky_job", "run_failure", "high")
    assert row.link == f"{UI}/runs/{first.run_id}"
    assert row.occurrences == 2  # the second failure of the same job within the window is not sent again
    assert first.run_id in row.body and "call_source" in row.body
    assert duckdb_warehouse.query("SELECT sink, status FROM monitoring.alert_deliveries").values.tolist() == [
        ["log", "delivered"]
    ]
    assert f'"link": "{UI}/runs/{first.run_id}"' in caplog.text  # the log sink's line


def test_a_run_failure_alert_while_another_run_writes_duckdb_is_delivered_unrecorded(
    instance, failed_runs, duckdb_warehouse
):
    alerts = alerts_for(duckdb_warehouse)
    writing = instance.create_run_for_job(steady_job, run_id=str(uuid.uuid4()))
    instance.handle_run_event(  # the other run is now STARTED: it may hold the DuckDB file
        writing.run_id,
        dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=steady_job.name, message="started"),
    )
    assert instance.get_run_by_id(writing.run_id).status == dg.DagsterRunStatus.STARTED
    try:
        with failure_context(instance, failed_runs[0], alerts) as context:
            alert_on_run_failure(context)
    finally:
        instance.report_run_canceled(instance.get_run_by_id(writing.run_id))
    assert len(alert_rows(duckdb_warehouse)) == 0  # not opened while the other run may write


def test_a_failed_blocking_check_raises_a_check_alert_and_an_advisory_one_does_not(
    instance, failed_runs, duckdb_warehouse
):
    alerts = alerts_for(duckdb_warehouse)
    result = dg.materialize(
        [scores, scores_within_unit_interval, scores_not_blocking], instance=instance, raise_on_error=False
    )
    assert not result.success  # the blocking check stopped the run
    with failure_context(instance, result.run_id, alerts) as context:
        alert_on_failed_blocking_checks(context)
    [row] = alert_rows(duckdb_warehouse).itertuples()  # scores_not_blocking failed too, but blocks nothing
    assert row.kind == "check_failure" and row.dedup_key == "check_failure:scores:scores_within_unit_interval"
    assert row.severity == "high" and "3 scores above 1.0" in row.body and result.run_id in row.body
    assert row.link == f"{UI}/assets/scores?view=checks&checkDetail=scores_within_unit_interval"
    with failure_context(instance, result.run_id, alerts) as context:
        alert_on_run_failure(context)  # the run failed too: its alert names the step, not the ad hoc job
    assert "run_failure:scores_scores_within_unit_interval" in set(alert_rows(duckdb_warehouse).dedup_key)
    with failure_context(instance, failed_runs[0], alerts) as context:
        alert_on_failed_blocking_checks(context)  # a run that failed without a check: nothing
    assert len(alert_rows(duckdb_warehouse)) == 2


def anomaly(metric: str, severity: str, detected_at: datetime) -> dict:
    return {
        "anomaly_id": f"{metric}:2026-11-19:robust_z",
        "metric_date": datetime(2026, 11, 19).date(),
        "metric": metric,
        "value": 12.0,
        "expected": 2.0,
        "score": 7.5,
        "severity": severity,
        "method": "robust_z",
        "explanation": f"{metric} rose to 12 from a typical 2 (6x)",
        "detected_at": detected_at,
    }


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_new_high_and_critical_anomalies_alert_once_each(instance, backend, request):
    warehouse = Warehouse(request.getfixturevalue(f"{backend}_url"))
    alerts = alerts_for(warehouse)
    with dg.build_sensor_context(instance=instance, resources={"alerts": alerts}) as context:
        empty = alert_on_anomalies(context)
    assert "no monitoring.metric_anomalies yet" in empty.skip_message
    assert backend == "postgres" or not warehouse.exists()  # a DuckDB file is not created by looking
    ensure_schema(warehouse)
    at = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    warehouse.append(
        "monitoring.metric_anomalies",
        pd.DataFrame([anomaly("refunds_minor", "critical", at), anomaly("cost_minor", "low", at)]),
    )
    with dg.build_sensor_context(instance=instance, resources={"alerts": alerts}) as context:
        assert alert_on_anomalies(context).skip_message == "1 new high or critical anomaly alerted"
    warehouse.append(
        "monitoring.metric_anomalies", pd.DataFrame([anomaly("source_errors", "high", at + timedelta(hours=1))])
    )
    with dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"alerts": alerts}) as context:
        assert alert_on_anomalies(context).skip_message == "1 new high or critical anomaly alerted"
    rows = alert_rows(warehouse).sort_values("dedup_key")
    assert rows.dedup_key.tolist() == [
        "anomaly:refunds_minor:2026-11-19:robust_z",
        "anomaly:source_errors:2026-11-19:robust_z",
    ]
    assert rows.severity.tolist() == ["critical", "high"]
    assert "refunds_minor rose to 12 from a typical 2" in rows.body.iloc[0]
    assert rows.link.iloc[0] == f"{UI}/assets/metric_anomalies"
    with dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"alerts": alerts}) as context:
        assert alert_on_anomalies(context).skip_message == "0 new high or critical anomalies alerted"


def sale(key: str, amount: int, at: datetime, currency: str = "USD") -> TransactionRequest:
    return TransactionRequest(
        idempotency_key=key,
        kind="revenue",
        description="sale",
        occurred_at=at,
        postings=[
            Posting(f"assets:cash:stripe:{currency.lower()}", currency, amount),
            Posting("revenue:experiment:exp-1", currency, -amount),
        ],
        experiment_id="exp-1",
        source="stripe",
        external_ref=key,
    )


def experiment_runs(warehouse: Warehouse, now: datetime) -> None:
    """18 good experiment runs 12 hours to 3 days ago, and two failures in the last 6 hours, one of
    them in the last hour: attainment 90% = the objective, but burning fast."""
    ended = [(now - timedelta(hours=12 + 3 * i), "finished") for i in range(18)]
    ended += [(now - timedelta(minutes=30), "failed"), (now - timedelta(hours=3), "failed")]
    warehouse.append(
        "experiments.runs",
        pd.DataFrame(
            [
                {
                    "experiment_id": f"exp-{i}",
                    "attempt": 1,
                    "run_id": str(uuid.uuid4()),
                    "status": status,
                    "started_at": at - timedelta(minutes=5),
                    "finished_at": at,
                    "message": "",
                }
                for i, (at, status) in enumerate(ended)
            ]
        ),
    )


def test_slo_report_evaluates_every_slo_checks_them_and_alerts_with_the_webhook_down(duckdb_warehouse):
    with dg.instance_for_test() as instance:
        slo_report_on(instance, duckdb_warehouse)


def slo_report_on(instance, warehouse: Warehouse) -> None:
    now = datetime.now(UTC)
    today = datetime.combine(now.date(), datetime.min.time(), UTC)
    flaky_job.execute_in_process(instance=instance, raise_on_error=False)
    steady_job.execute_in_process(instance=instance)
    experiment_runs(warehouse, now)
    book(warehouse, sale("s-1", 500, today - timedelta(hours=12)))  # yesterday: 5.00 USD
    book(warehouse, sale("s-2", 150, today - timedelta(hours=36)))  # the day before: 1.50 USD
    book(warehouse, sale("s-3", 9_000, today - timedelta(hours=60), currency="EUR"))  # no EUR rate loaded
    alerts = alerts_for(warehouse, webhook_url=f"http://127.0.0.1:{closed_port()}/hook", retry_attempts=2)
    result = dg.materialize(
        [slo_report],
        instance=instance,
        resources={"warehouse": WarehouseResource(url=warehouse.url), "alerts": alerts},
        run_config={"ops": {"slo_report": {"config": {"revenue_window_days": 3, "revenue_objective": 0.6}}}},
    )
    assert result.success  # a webhook that is down fails nothing
    report = warehouse.read("monitoring.slo_report").set_index("slo")
    runs = report.loc["run_success_rate"]
    assert (runs.good, runs.total, runs.status) == (1, 2, "breached")
    assert runs.error_budget_remaining == pytest.approx(1 - 1 / (0.05 * 2))
    experiments = report.loc["experiment_failure_rate"]
    assert (experiments.good, experiments.total) == (18, 20)
    assert experiments.burn_rate_1h == pytest.approx(10.0) and experiments.burn_rate_6h == pytest.approx(10.0)
    assert experiments.status == "burning"
    revenue = report.loc["revenue_per_day"]
    assert (revenue.good, revenue.total, revenue.status) == (2, 3, "ok")
    assert "EUR on" in revenue.detail and "not counted" in revenue.detail
    assert report.loc["data_freshness:opportunities"].status == "no_data"  # never materialized here

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["slo_run_success_rate"].passed
    assert checks["slo_run_success_rate"].severity == dg.AssetCheckSeverity.ERROR
    assert not checks["slo_experiment_failure_rate"].passed
    assert checks["slo_experiment_failure_rate"].severity == dg.AssetCheckSeverity.WARN
    assert checks["slo_revenue_per_day"].passed and checks["slo_data_freshness"].passed

    raised = alert_rows(warehouse).set_index("dedup_key")
    assert sorted(raised.index) == ["slo_burn:experiment_failure_rate:burning", "slo_burn:run_success_rate:breached"]
    assert raised.loc["slo_burn:run_success_rate:breached", "severity"] == "critical"
    assert raised.loc["slo_burn:run_success_rate:breached", "link"] == f"{UI}/assets/slo_report"
    deliveries = warehouse.query("SELECT sink, status, attempts, error FROM monitoring.alert_deliveries")
    webhook = deliveries[deliveries.sink == "webhook"]
    assert len(webhook) == 2 and set(webhook.status) == {"undelivered"} and set(webhook.attempts) == {2}
    assert webhook.error.str.contains("ConnectError").all()


def test_the_warehouse_slis_read_alike_on_both_backends(warehouse):
    """revenue_by_day (UTC days, refunds netted, other currencies named when they have no rate) and
    experiment_run_events on the conftest's DuckDB and PostgreSQL warehouses."""
    from core.ledger.booking import reverse
    from core.monitoring.slo import experiment_run_events, revenue_by_day

    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    experiment_runs(warehouse, now)
    # 23:30 UTC on the 18th is the 18th, whatever the session time zone says.
    book(warehouse, sale("late", 700, datetime(2026, 11, 18, 23, 30, tzinfo=UTC)))
    refunded = book(warehouse, sale("refunded", 200, datetime(2026, 11, 19, 8, 0, tzinfo=UTC)))
    reverse(
        warehouse,
        refunded.transaction_id,
        idempotency_key="refund:refunded",
        reason="refund",
        occurred_at=datetime(2026, 11, 19, 15, 0, tzinfo=UTC),
    )
    book(warehouse, sale("kept", 300, datetime(2026, 11, 19, 9, 0, tzinfo=UTC)))
    book(warehouse, sale("euros", 900, datetime(2026, 11, 19, 10, 0, tzinfo=UTC), currency="EUR"))
    by_day, problems = revenue_by_day(warehouse, datetime(2026, 11, 17, tzinfo=UTC), now, "USD")
    assert by_day == {datetime(2026, 11, 18).date(): 700, datetime(2026, 11, 19).date(): 300}
    assert len(problems) == 1 and problems[0].startswith("EUR on 2026-11-19 not counted")
    events = experiment_run_events(warehouse, now - timedelta(days=7))
    assert len(events) == 20 and sum(not e.good for e in events) == 2
    assert all(e.at.tzinfo is not None for e in events)
