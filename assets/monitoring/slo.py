"""The SLOs (core/monitoring/slo.py) as an asset with one check per SLO, the Dagster freshness checks
of the key assets with the sensor that evaluates them, and the SLO-burn alerts.

slo_report reads the Dagster instance (run records, materializations) and the warehouse
(experiments.runs, ledger.postings), appends one monitoring.slo_report row per SLO, and raises an
`slo_burn` alert for each SLO that is burning or breached. Its checks pass when an SLO is ok (or has
no data yet), WARN when it is burning, ERROR when it is breached."""

import warnings
from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.resources import AlertsResource, WarehouseResource, warehouse_kind, warehouse_pool

SLO_TABLE = "monitoring.slo_report"
RUN_SUCCESS, FRESHNESS, EXPERIMENTS, REVENUE = (
    "run_success_rate",
    "data_freshness",
    "experiment_failure_rate",
    "revenue_per_day",
)
SLO_NAMES = (RUN_SUCCESS, FRESHNESS, EXPERIMENTS, REVENUE)
# The key assets and how old each may get: discovery and experiment planning run hourly
# (hourly_discovery, hourly_experiment_planning), learning daily at 03:15 UTC (daily_learning).
KEY_ASSETS: dict[str, timedelta] = {
    "opportunities": timedelta(hours=2),
    "scored_opportunities": timedelta(hours=2),
    "experiment_proposals": timedelta(hours=2),
    "source_bandit": timedelta(hours=26),
    "strategy_weights": timedelta(hours=26),
}
COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("evaluated_at", "timestamp", description="When slo_report evaluated the SLOs (UTC)."),
        dg.TableColumn("slo", "string", description="The SLO; data_freshness:<asset> for each key asset."),
        dg.TableColumn("objective", "float", description="Fraction of good events (or time) required."),
        dg.TableColumn("slo_window", "string", description="The window the attainment is over (7d, 30d)."),
        dg.TableColumn("good", "float", description="Good events (seconds, for freshness) in the window."),
        dg.TableColumn("total", "float", description="All events (seconds) in the window."),
        dg.TableColumn("attainment", "float", description="good / total; null without events."),
        dg.TableColumn("error_budget_remaining", "float", description="1 - bad / allowed bad; negative: overspent."),
        dg.TableColumn("burn_rate_1h", "float", description="Error rate over the last hour / (1 - objective)."),
        dg.TableColumn("burn_rate_6h", "float", description="Error rate over the last 6 hours / (1 - objective)."),
        dg.TableColumn("status", "string", description="ok, burning, breached or no_data."),
        dg.TableColumn("detail", "string", description="The numbers behind the status, in words."),
    ]
)
SEVERITY = {"burning": "high", "breached": "critical"}


class SloConfig(dg.Config):
    """The objectives and windows; the defaults are the seed's targets fitted to this platform."""

    run_success_objective: float = 0.95
    run_success_window_hours: int = 7 * 24
    freshness_objective: float = 0.95
    freshness_window_hours: int = 7 * 24
    experiment_success_objective: float = 0.90
    experiment_window_hours: int = 7 * 24
    revenue_objective: float = 0.90
    revenue_window_days: int = 30
    # The seed's "revenue generation > $1/day", in minor units of the reporting currency.
    revenue_threshold_minor: int = 100
    burn_threshold: float = 6.0


def slos(config: SloConfig) -> dict:
    """The SLOs by name (core.monitoring.slo.Slo), one data_freshness:<asset> per key asset."""
    from core.monitoring.slo import Slo

    hours = timedelta(hours=1)
    return {
        RUN_SUCCESS: Slo(
            RUN_SUCCESS,
            config.run_success_objective,
            config.run_success_window_hours * hours,
            "Dagster runs that ended, succeeded / ended",
            config.burn_threshold,
        ),
        **{
            f"{FRESHNESS}:{asset}": Slo(
                f"{FRESHNESS}:{asset}",
                config.freshness_objective,
                config.freshness_window_hours * hours,
                f"time {asset} was fresh (updated within {max_age}) / time since it first materialized",
                config.burn_threshold,
            )
            for asset, max_age in KEY_ASSETS.items()
        },
        EXPERIMENTS: Slo(
            EXPERIMENTS,
            config.experiment_success_objective,
            config.experiment_window_hours * hours,
            "experiment executor runs that ended, not failed / ended",
            config.burn_threshold,
        ),
        REVENUE: Slo(
            REVENUE,
            config.revenue_objective,
            timedelta(days=config.revenue_window_days),
            f"complete UTC days with revenue >= {config.revenue_threshold_minor} minor units",
            config.burn_threshold,
        ),
    }


def run_outcomes(instance: dg.DagsterInstance, since: datetime) -> list[tuple[datetime, bool]]:
    """(end time, succeeded) of every run that ended in success or failure since `since` (canceled
    runs were stopped by a person: not counted)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE], updated_after=since)
    )
    found = []
    for record in records:
        ended = record.end_time or record.update_timestamp.timestamp()
        found.append((datetime.fromtimestamp(ended, UTC), record.dagster_run.status == dg.DagsterRunStatus.SUCCESS))
    return found


def materialization_times(instance: dg.DagsterInstance, asset: str, since: datetime) -> list[datetime]:
    """When `asset` materialized since `since`, plus its latest materialization before that (what
    it was fresh from at the window's start)."""
    key = dg.AssetKey(asset)
    times = []
    cursor = None
    while True:
        page = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=since.timestamp()), limit=1000, cursor=cursor
        )
        times += [datetime.fromtimestamp(r.timestamp, UTC) for r in page.records]
        if not page.has_more:
            break
        cursor = page.cursor
    before = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, before_timestamp=since.timestamp()), limit=1
    ).records
    return times + [datetime.fromtimestamp(r.timestamp, UTC) for r in before]


def evaluate_slos(instance: dg.DagsterInstance, client, config: SloConfig, now: datetime) -> list:
    """Every SLO evaluated at `now` (core.monitoring.slo.Evaluation, in SLO_NAMES order)."""
    from core.experiments.outcomes import REPORTING_CURRENCY
    from core.monitoring.slo import evaluate, experiment_run_events, freshness_events, revenue_by_day, revenue_days
    from core.monitoring.slo import run_events as to_run_events

    defined = slos(config)
    found = []
    runs = defined[RUN_SUCCESS]
    found.append(evaluate(runs, to_run_events(run_outcomes(instance, now - runs.window)), now, unit="runs"))
    for asset, max_age in KEY_ASSETS.items():
        slo = defined[f"{FRESHNESS}:{asset}"]
        start = now - slo.window
        events = freshness_events(materialization_times(instance, asset, start - max_age), max_age, start, now)
        found.append(evaluate(slo, events, now, unit="seconds", note=f"fresh = updated within {max_age}"))
    experiments = defined[EXPERIMENTS]
    found.append(
        evaluate(experiments, experiment_run_events(client, now - experiments.window), now, unit="experiment runs")
    )
    revenue = defined[REVENUE]
    start = datetime.combine((now - revenue.window).date(), datetime.min.time(), UTC)
    by_day, problems = revenue_by_day(client, start, now, REPORTING_CURRENCY)
    events = revenue_days(by_day, config.revenue_threshold_minor, revenue.window, now)
    note = f"threshold {config.revenue_threshold_minor} {REPORTING_CURRENCY} minor units a day" + (
        f"; {'; '.join(problems[:3])}" if problems else ""
    )
    found.append(evaluate(revenue, events, now, unit="days", note=note))
    return found


def check_result(name: str, evaluations: list) -> dg.AssetCheckResult:
    """One SLO's check: the data_freshness check covers every key asset, its worst status decides."""
    mine = [e for e in evaluations if e.slo.name == name or e.slo.name.startswith(f"{name}:")]
    statuses = [e.status for e in mine]
    worst = next((s for s in ("breached", "burning", "ok", "no_data") if s in statuses), "no_data")
    failing = [e for e in mine if e.status in ("breached", "burning")]
    shown = failing or mine
    return dg.AssetCheckResult(
        check_name=f"slo_{name}",
        passed=worst in ("ok", "no_data"),
        severity=dg.AssetCheckSeverity.ERROR if worst == "breached" else dg.AssetCheckSeverity.WARN,
        description="; ".join(f"{e.slo.name}: {e.status} ({e.detail})" for e in shown)[:2000],
        metadata={
            "status": worst,
            **{
                f"{e.slo.name} attainment": float(e.attainment) if e.attainment is not None else float("nan")
                for e in mine
            },
            **{
                f"{e.slo.name} burn_rate_1h": float(e.burn_rate_1h) if e.burn_rate_1h is not None else float("nan")
                for e in mine
            },
        },
    )


def report_markdown(evaluations: list) -> str:
    def cell(value, pattern: str) -> str:
        return "-" if value is None else pattern.format(value)

    rows = [
        f"| {e.slo.name} | {e.status} | {cell(e.attainment, '{:.2%}')} | {e.slo.objective:.2%} | "
        f"{cell(e.error_budget_remaining, '{:.0%}')} | {cell(e.burn_rate_1h, '{:.2f}')} | "
        f"{cell(e.burn_rate_6h, '{:.2f}')} |"
        for e in evaluations
    ]
    return (
        "| SLO | status | attainment | objective | budget left | burn 1h | burn 6h |\n"
        "|---|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows)
    )


def burn_alert(evaluation, base_url: str):
    """The slo_burn alert of an SLO that is burning or breached (None otherwise). Deduplicated per
    SLO and status: a breach after a burn alerts again."""
    from core.monitoring.alerts import Alert, asset_link

    if evaluation.status not in SEVERITY:
        return None
    return Alert(
        dedup_key=f"slo_burn:{evaluation.slo.name}:{evaluation.status}",
        kind="slo_burn",
        severity=SEVERITY[evaluation.status],
        title=f"SLO {evaluation.slo.name} is {evaluation.status}",
        body=f"{evaluation.slo.description}: {evaluation.detail}",
        link=asset_link(base_url, ["slo_report"]),
    )


@dg.asset(
    group_name="monitoring",
    owners=["team:monitoring"],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[dg.AssetKey("experiment_outcomes"), dg.AssetKey("ledger_entries")],
    metadata={"dagster/table_name": SLO_TABLE, "dagster/column_schema": COLUMNS},
    check_specs=[
        dg.AssetCheckSpec(f"slo_{name}", asset="slo_report", description=f"The {name} SLO is not burning or breached.")
        for name in SLO_NAMES
    ],
    description="The SLOs (run success rate, data freshness of the key assets, experiment failure rate, revenue "
    "per day above a threshold) over their windows, with the error budget left and the 1-hour and 6-hour burn "
    "rates; appended to monitoring.slo_report. Raises an slo_burn alert for each SLO burning or breached.",
)
def slo_report(
    context: dg.AssetExecutionContext, config: SloConfig, warehouse: WarehouseResource, alerts: AlertsResource
) -> dg.MaterializeResult:
    import pandas as pd

    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    now = datetime.now(UTC)
    evaluations = evaluate_slos(context.instance, client, config, now)
    client.append(SLO_TABLE, pd.DataFrame([e.row() for e in evaluations]))
    alerter = alerts.alerter()
    raised = []
    for evaluation in evaluations:
        alert = burn_alert(evaluation, alerts.base_url())
        if alert is not None:
            outcome = alerter.raise_alert(alert)
            raised.append(f"{evaluation.slo.name} ({evaluation.status}, {'new' if outcome.new else 'repeat'})")
    if raised:
        context.log.warning(f"SLO alerts: {', '.join(raised)}")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(report_markdown(evaluations)),
            "evaluated_at": dg.MetadataValue.timestamp(now),
            "alerts": dg.MetadataValue.json(raised),
            **{f"{e.slo.name}": dg.MetadataValue.text(e.status) for e in evaluations},
            "dagster/row_count": len(evaluations),
        },
        check_results=[check_result(name, evaluations) for name in SLO_NAMES],
    )


def _freshness_checks() -> list:
    # build_last_update_freshness_checks is "superseded" by FreshnessPolicy in Dagster 1.13, but a
    # FreshnessPolicy is evaluated only by the freshness daemon (`freshness: enabled` in
    # dagster.yaml) and yields a state, not an asset check result; these are checks, shown on each
    # asset's Checks tab, evaluated by the sensor below, and seen by the failed-check alerts.
    by_age: dict[timedelta, list[dg.AssetKey]] = {}
    for asset, max_age in KEY_ASSETS.items():
        by_age.setdefault(max_age, []).append(dg.AssetKey(asset))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return [
            check
            for max_age, keys in sorted(by_age.items())
            for check in dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=max_age)
        ]


FRESHNESS_CHECKS = _freshness_checks()
with warnings.catch_warnings():  # superseded alike, for the same reason
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=FRESHNESS_CHECKS,
        name="freshness_checks_sensor",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
slo_job = dg.define_asset_job(
    "slo_job",
    selection=dg.AssetSelection.assets(slo_report),
    description="Evaluate the SLOs and raise the SLO-burn alerts.",
)
slo_schedule = dg.ScheduleDefinition(
    name="slo_every_15_minutes",
    job=slo_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
