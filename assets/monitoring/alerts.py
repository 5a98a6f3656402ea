"""The sensors that raise alerts (core/monitoring/alerts.py) through the `alerts` resource:

- `alert_on_run_failure`: every run that fails, in every code location (the dbt marts too);
- `alert_on_failed_blocking_checks`: every failed blocking asset check, from the event log;
- `alert_on_anomalies`: new high and critical rows of monitoring.metric_anomalies.

The SLO-burn alerts are raised by slo_report itself (assets/monitoring/slo.py). A sink that is down
never fails a sensor: the Alerter retries, then records the delivery as undelivered.

On a DuckDB warehouse (one writer process) a sensor does not open the file while a run may be
writing it: the run-failure alert is then delivered unrecorded (a run status sensor cannot come back
to a run later), the other two sensors wait for the next tick (their cursors stay)."""

import json
from datetime import datetime

import dagster as dg

from assets.resources import AlertsResource

# Runs that may hold the DuckDB file open for writing.
WRITING = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
ANOMALIES_TABLE = "monitoring.metric_anomalies"
ALERTED_SEVERITIES = ("high", "critical")
# Alerts a sensor raises in one tick at most; the cursor resumes after the last one next tick.
PER_TICK = 50


def busy_run(instance: dg.DagsterInstance, alerts: AlertsResource, exclude: str | None = None) -> str | None:
    """A run that may be writing a DuckDB warehouse now (None on PostgreSQL, where writers share)."""
    if alerts.warehouse.client().backend != "duckdb":
        return None
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=WRITING), limit=5):
        if record.dagster_run.run_id != exclude:
            return record.dagster_run.run_id
    return None


def run_failure_alert(run: dg.DagsterRun, message: str, base_url: str, failed_steps: list[str] | None = None):
    from core.monitoring.alerts import Alert, run_link

    what = run.job_name
    if run.job_name.startswith("__"):
        # An ad hoc run (the UI's Materialize button, `dagster asset materialize`): its selected
        # assets, else its failed steps, say what failed; the hidden job's name says nothing.
        named = sorted(key.to_user_string() for key in run.asset_selection or ()) or sorted(failed_steps or ())
        if named:
            what = f"{', '.join(named[:5])}{' and more' if len(named) > 5 else ''}"
    return Alert(
        # One alert per job (or asset set) in the dedup window: one failing every minute is one problem.
        dedup_key=f"run_failure:{what}",
        kind="run_failure",
        severity="high",
        title=f"run of {what} failed",
        body=f"run {run.run_id} of {what} failed: {message}"[:4000],
        link=run_link(base_url, run.run_id),
    )


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    monitor_all_code_locations=True,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises a run_failure alert (log, webhook, email) for every failed run in every code location.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    run = context.dagster_run
    message = context.failure_event.message or "no message"
    steps = sorted({e.step_key for e in context.get_step_failure_events() if e.step_key})
    if steps:
        message += "; failed steps: " + ", ".join(steps)
    busy = busy_run(context.instance, alerts, exclude=run.run_id)
    alerter = alerts.alerter(record=busy is None)
    outcome = alerter.raise_alert(run_failure_alert(run, message, alerts.base_url(), steps))
    context.log.info(
        f"run {run.run_id} ({run.job_name}): alert {outcome.alert_id} "
        + ("raised" if outcome.new else f"repeat #{outcome.occurrences}, not sent again")
        + ("" if outcome.recorded else f" (not recorded: run {busy} may be writing the DuckDB warehouse)")
    )


def check_failure_alert(record, base_url: str):
    """The alert of one failed asset check evaluation event record."""
    from core.monitoring.alerts import Alert, check_link

    evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
    asset = evaluation.asset_key.to_user_string()
    return Alert(
        dedup_key=f"check_failure:{asset}:{evaluation.check_name}",
        kind="check_failure",
        severity="high",
        title=f"blocking check {evaluation.check_name} on {asset} failed",
        body=(
            f"{evaluation.check_name} on {asset} failed with severity {evaluation.severity.value} in run "
            f"{record.run_id}, which stopped what depends on {asset}: {evaluation.description or 'no description'}"
        )[:4000],
        link=check_link(base_url, evaluation.asset_key.path, evaluation.check_name),
    )


def failed_blocking_checks(instance: dg.DagsterInstance, run_id: str) -> list:
    """The run's failed blocking check evaluations (event records), read from that run's own events:
    on the default SQLite instance the event log is sharded by run, and a cross-run query of check
    evaluations after a cursor is refused."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return [
        r
        for r in records
        if not r.event_log_entry.dagster_event.asset_check_evaluation_data.passed
        and r.event_log_entry.dagster_event.asset_check_evaluation_data.blocking
    ]


# A blocking check stops its run only when it fails with ERROR severity (a WARN failure blocks
# nothing), and then the run fails: watching failed runs sees every check that blocked something.
@dg.run_failure_sensor(
    name="alert_on_failed_blocking_checks",
    monitor_all_code_locations=True,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises a check_failure alert for each failed blocking asset check of a failed run.",
)
def alert_on_failed_blocking_checks(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    run = context.dagster_run
    failed = failed_blocking_checks(context.instance, run.run_id)
    if not failed:
        return
    busy = busy_run(context.instance, alerts, exclude=run.run_id)
    alerter = alerts.alerter(record=busy is None)
    for record in failed:
        outcome = alerter.raise_alert(check_failure_alert(record, alerts.base_url()))
        evaluation = record.event_log_entry.dagster_event.asset_check_evaluation_data
        context.log.info(
            f"{evaluation.check_name} on {evaluation.asset_key.to_user_string()}: alert {outcome.alert_id} "
            + ("raised" if outcome.new else f"repeat #{outcome.occurrences}, not sent again")
        )


def anomaly_alert(row, base_url: str):
    from core.monitoring.alerts import Alert, asset_link

    return Alert(
        dedup_key=f"anomaly:{row.anomaly_id}",
        kind="anomaly",
        severity=str(row.severity),
        title=f"{row.severity} anomaly in {row.metric} on {str(row.metric_date)[:10]}",
        body=f"{row.explanation} (value {row.value:g}, expected {_number(row.expected)}, score {row.score:.2f}, "
        f"method {row.method})",
        link=asset_link(base_url, ["metric_anomalies"]),
    )


@dg.sensor(
    name="alert_on_anomalies",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Raises an anomaly alert for each new high or critical row of monitoring.metric_anomalies.",
)
def alert_on_anomalies(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
    client = alerts.warehouse.client()
    if not client.exists() or not client.table_exists(ANOMALIES_TABLE):
        return dg.SkipReason(f"no {ANOMALIES_TABLE} yet: materialize metric_anomalies")
    if busy := busy_run(context.instance, alerts):
        return dg.SkipReason(f"run {busy} may be writing the DuckDB warehouse: next tick")
    # The cursor is the (detected_at, anomaly_id) of the last row alerted on, in that order.
    cursor = json.loads(context.cursor) if context.cursor else None
    marks = ", ".join(["%s"] * len(ALERTED_SEVERITIES))
    where = f"severity IN ({marks})"
    params: list = list(ALERTED_SEVERITIES)
    if cursor:
        where += " AND (detected_at > %s OR (detected_at = %s AND anomaly_id > %s))"
        after = datetime.fromisoformat(cursor["detected_at"])
        params += [after, after, cursor["anomaly_id"]]
    rows = client.query(
        f"SELECT anomaly_id, metric_date, metric, value, expected, score, severity, method, explanation, detected_at "
        f"FROM {ANOMALIES_TABLE} WHERE {where} ORDER BY detected_at, anomaly_id LIMIT {PER_TICK}",
        params,
    )
    alerter = alerts.alerter()
    for row in rows.itertuples():
        alerter.raise_alert(anomaly_alert(row, alerts.base_url()))
        context.update_cursor(json.dumps({"detected_at": _iso(row.detected_at), "anomaly_id": row.anomaly_id}))
    return dg.SkipReason(f"{len(rows)} new high or critical anomal{'y' if len(rows) == 1 else 'ies'} alerted")


def _number(value) -> str:
    return "unknown" if value is None or value != value else f"{value:g}"


def _iso(value) -> str:
    import pandas as pd

    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).isoformat()


ALERT_SENSORS = [alert_on_run_failure, alert_on_failed_blocking_checks, alert_on_anomalies]
