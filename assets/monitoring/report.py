"""The weekly report: one self-contained HTML file under $VENTURELOOP_HOME/reports/ with the charts a
person looks at (revenue and cost, the forecast, the funnel, ROI, the bandit, anomalies, SLOs),
written by core/monitoring/report.py from the tables the assets below it in the graph write."""

import dagster as dg

from assets.resources import WarehouseResource, warehouse_kind, warehouse_pool

# The tables each section reads, by the asset that writes them. Deps by key: some are in the other
# code location (the dbt marts) or built by another domain's module, and a missing one only leaves
# its section saying what is missing.
REPORT_DEPS = [
    dg.AssetKey(["marts", "daily_cash_flow"]),
    dg.AssetKey(["marts", "fct_postings"]),
    dg.AssetKey("cash_flow_forecast"),
    dg.AssetKey("experiment_outcomes"),
    dg.AssetKey("source_bandit"),
    dg.AssetKey("metric_anomalies"),
    dg.AssetKey("slo_report"),
]


@dg.asset(
    group_name="monitoring",
    owners=["team:monitoring"],
    kinds={"python", "matplotlib", warehouse_kind()},
    # It only reads, but opening a DuckDB file takes its one lock: it waits for the writers' pool.
    pool=warehouse_pool(),
    deps=REPORT_DEPS,
    description="A self-contained HTML report (inline CSS, charts as inline PNG; opens offline) under "
    "$VENTURELOOP_HOME/reports/: revenue and cost over time, the cash-flow forecast with its 80%/95% intervals, "
    "the experiment funnel, the ROI distribution, the source bandit's posteriors, anomalies on their series and "
    "the latest SLO status. reports/latest.html is always the newest.",
)
def weekly_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from core.monitoring.report import write_report

    report = write_report(warehouse.client())
    for key, why in {**report.missing, **report.errors}.items():
        context.log.warning(f"report section {key}: {why}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(report.path)),
            "latest": dg.MetadataValue.path(str(report.latest)),
            "sections_drawn": dg.MetadataValue.json(report.drawn),
            "sections_missing": dg.MetadataValue.json(report.missing),
            "sections_failed": dg.MetadataValue.json(report.errors),
            "charts": report.charts,
            "bytes": report.size,
            "warehouse": report.warehouse,
        }
    )


weekly_report_job = dg.define_asset_job(
    "weekly_report_job",
    selection=[weekly_report],
    description="Write the HTML report from what the warehouse holds now (reports/latest.html).",
)
# Monday morning, UTC: the week's numbers are in by then (the daily learning runs at 03:15).
weekly_report_schedule = dg.ScheduleDefinition(
    name="weekly_report",
    job=weekly_report_job,
    cron_schedule="0 6 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
