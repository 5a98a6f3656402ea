"""The one Definitions object: wiring only. Loading it must stay fast (every run step and the
webserver re-import it), so nothing here imports pandas, great_expectations or dbt."""

import os

import dagster as dg

from assets.checks import every_source_has_opportunities, opportunities_pass_quality_suite, scores_within_unit_interval
from assets.dbt import ledger_dbt_assets
from assets.discovery import discovery_assets
from assets.ledger import budgets, fx_rates, ledger_entries, ledger_verifies
from assets.opportunities import opportunities, opportunity_features, scored_opportunities
from orchestration.resources import resources
from orchestration.sensors import build_inbox_sensor

discovery_job = dg.define_asset_job(
    "discovery_job",
    selection=dg.AssetSelection.groups("discovery", "opportunities"),
    description="Fetch every enabled source, then normalize, deduplicate, featurize and score.",
)

ledger_import_job = dg.define_asset_job(
    "ledger_import_job",
    selection=dg.AssetSelection.assets(ledger_entries) | dg.AssetSelection.groups("ledger_marts"),
    description="Book what arrived (inbox files or simulated payments), then rebuild the ledger marts.",
)

hourly_discovery = dg.ScheduleDefinition(
    name="hourly_discovery",
    job=discovery_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    # Replaying the same snapshots every hour adds nothing: the schedule starts on only in live mode.
    default_status=dg.DefaultScheduleStatus.RUNNING if os.environ.get("DISCOVERY_MODE") == "live"
    else dg.DefaultScheduleStatus.STOPPED,
)


def _executor() -> dg.ExecutorDefinition:
    # In-process by default: each multiprocess step re-imports the code location, and a DuckDB
    # file has one writer anyway. DAGSTER_EXECUTOR=multiprocess for a server warehouse.
    if os.environ.get("DAGSTER_EXECUTOR", "in_process") == "multiprocess":
        return dg.multiprocess_executor
    return dg.in_process_executor


defs = dg.Definitions(
    assets=[*discovery_assets, opportunities, opportunity_features, scored_opportunities,
            fx_rates, budgets, ledger_entries, ledger_dbt_assets],
    asset_checks=[opportunities_pass_quality_suite, every_source_has_opportunities, scores_within_unit_interval,
                  ledger_verifies],
    jobs=[discovery_job, ledger_import_job],
    schedules=[hourly_discovery],
    sensors=[build_inbox_sensor(ledger_import_job)],
    resources=resources(),
    executor=_executor(),
)
