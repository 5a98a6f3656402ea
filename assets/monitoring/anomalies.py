"""Anomalies in the daily metrics: revenue, cost and refunds from the ledger (USD), experiment
failures, source errors from the discovery quarantine and run durations from this Dagster
instance's run records (core/monitoring/daily_metrics.py), judged by robust z-score rules and an
IsolationForest (ml/anomaly.py). It only records: the alerts sensor (assets/monitoring/alerts.py)
reads monitoring.metric_anomalies and decides whom to tell."""

import dagster as dg

from assets.resources import WarehouseResource, warehouse_kind, warehouse_pool

METRICS_TABLE = "monitoring.daily_metrics"
ANOMALIES_TABLE = "monitoring.metric_anomalies"
NEWEST_SHOWN = 10
RECENT_DAYS = 2  # the check looks at the newest two days of each metric: today's and yesterday's
RUN_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("anomaly_id", "string", description="sha256(metric|day|method), first 32 hex digits."),
        dg.TableColumn("metric_date", "date", description="The UTC day that was anomalous."),
        dg.TableColumn("metric", "string", description="revenue_minor, cost_minor, refunds_minor, ..."),
        dg.TableColumn("value", "float", description="What the metric was that day."),
        dg.TableColumn("expected", "float", description="What its trailing 28 days predicted (weekday-adjusted)."),
        dg.TableColumn("score", "float", description="|robust z| or the isolation score, by method."),
        dg.TableColumn("severity", "string", description="low, medium, high or critical (docs/anomalies.md)."),
        dg.TableColumn("method", "string", description="robust_z or isolation_forest."),
        dg.TableColumn("explanation", "string", description="Which metric moved, by how much, against what."),
        dg.TableColumn("detected_at", "timestamp", description="When it was first found (UTC)."),
    ]
)


class MetricAnomaliesConfig(dg.Config):
    lookback_days: int = 180  # each metric's newest days the detector sees
    seed: int = 7  # the IsolationForest's random_state


def finished_runs(instance: dg.DagsterInstance, since_timestamp: float) -> list[tuple[float, float]]:
    """(start, end) Unix times of the runs that finished since `since_timestamp`, from the run storage."""
    from datetime import UTC, datetime

    filters = dg.RunsFilter(
        statuses=[dg.DagsterRunStatus[s] for s in RUN_STATUSES],
        updated_after=datetime.fromtimestamp(since_timestamp, UTC),
    )
    return [
        (record.start_time, record.end_time)
        for record in instance.get_run_records(filters=filters)
        if record.start_time is not None and record.end_time is not None
    ]


def replace_metrics(client, frame) -> None:
    """monitoring.daily_metrics rebuilt in one transaction, keeping its DDL (DATE, primary key): a
    Warehouse.replace would retype the table from the frame (dates as TEXT on PostgreSQL)."""
    from core.platform.warehouse import append_frame, run_sql

    with client.connect() as conn:
        run_sql(conn, f"DELETE FROM {METRICS_TABLE}", None)
        append_frame(conn, client.backend, METRICS_TABLE, frame)


@dg.asset(
    group_name="monitoring",
    owners=["team:monitoring"],
    kinds={"python", "scikit-learn", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[
        dg.AssetKey("ledger_entries"),
        dg.AssetKey("fx_rates"),
        dg.AssetKey("experiment_outcomes"),
        dg.AssetKey("opportunities"),
    ],
    metadata={"dagster/table_name": ANOMALIES_TABLE, "dagster/column_schema": COLUMNS},
    description="Daily revenue, cost, refunds (USD, from the ledger), experiment failures, source errors and run "
    "durations, written to monitoring.daily_metrics; the days that break from their own past by a robust z-score "
    "rule or an IsolationForest over rolling features go to monitoring.metric_anomalies, each once, with a "
    "severity and an explanation of what moved and by how much.",
)
def metric_anomalies(
    context: dg.AssetExecutionContext, config: MetricAnomaliesConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    from datetime import UTC, datetime, timedelta

    from core.monitoring.daily_metrics import daily_metrics
    from core.platform.schema import ensure_schema
    from ml.anomaly import Settings, detect, markdown

    client = warehouse.client()
    ensure_schema(client)
    now = datetime.now(UTC)
    runs = finished_runs(context.instance, (now - timedelta(days=config.lookback_days)).timestamp())
    metrics = daily_metrics(client, runs, lookback_days=config.lookback_days)
    for problem in metrics.problems:
        context.log.warning(problem)
    replace_metrics(client, metrics.series.assign(computed_at=now))
    found = detect(metrics.series, Settings(seed=config.seed))
    for what, why in found.skipped.items():
        context.log.info(f"{what} not judged: {why}")
    new = client.insert_new(ANOMALIES_TABLE, found.anomalies.assign(detected_at=now), key=["anomaly_id"])
    counts = found.counts()
    return dg.MaterializeResult(
        metadata={
            "anomalies": len(found.anomalies),
            "new_anomalies": len(new),
            **{f"severity_{name}": count for name, count in counts.items()},
            "newest": dg.MetadataValue.md(markdown(found.anomalies, NEWEST_SHOWN)),
            "metric_days": dg.MetadataValue.json(metrics.days()),
            "not_judged": dg.MetadataValue.json(found.skipped),
            "problems": dg.MetadataValue.json(metrics.problems),
            "runs_seen": len(runs),
            "dagster/row_count": client.count(ANOMALIES_TABLE),
        }
    )


def recent_critical(client, recent_days: int = RECENT_DAYS):
    """Critical anomalies on the newest `recent_days` days of their metric's series."""
    return client.query(
        f"""
        SELECT a.metric_date, a.metric, a.method, a.explanation
        FROM {ANOMALIES_TABLE} a
        JOIN (SELECT metric, max(metric_date) AS newest FROM {METRICS_TABLE} GROUP BY metric) m
          ON m.metric = a.metric
        WHERE a.severity = 'critical' AND a.metric_date > m.newest - CAST(%s AS INTEGER)
        ORDER BY a.metric_date DESC, a.metric, a.method
        """,
        [recent_days],
    )


@dg.asset_check(
    asset=metric_anomalies,
    description=f"No critical anomaly on the newest {RECENT_DAYS} days of any metric (WARN: the run succeeded; "
    "someone should look at what moved).",
)
def no_recent_critical_anomaly(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    client = warehouse.client()
    if not client.table_exists(METRICS_TABLE) or not client.table_exists(ANOMALIES_TABLE):
        return dg.AssetCheckResult(passed=True, description="no metrics yet: metric_anomalies has not run")
    critical = recent_critical(client)
    return dg.AssetCheckResult(
        passed=critical.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description="no critical anomaly in the newest days"
        if critical.empty
        else "; ".join(critical["explanation"].head(NEWEST_SHOWN)),
        metadata={
            "critical": len(critical),
            "anomalies": dg.MetadataValue.md(critical.to_markdown(index=False) if len(critical) else "none"),
        },
    )
