"""The dbt models of the ledger (dbt_project/) as assets, their dbt tests as asset checks, and the
automation sensor that rebuilds them when the ledger changes.

They load in a code location of their own (orchestration/marts_definitions.py): dagster_dbt
doubles the import time of a code location, and the one that runs discovery and experiments
must start fast. So no job can hold both the ledger writers and the marts: the marts follow the
ledger by themselves, through their eager automation condition (assets/ledger_marts/dbt.py)."""

import dagster as dg

from assets.ledger_marts.dbt import GROUP, ledger_dbt_assets

# Dagster 1.13 adds a `default_automation_condition_sensor` for assets with a condition, but
# stopped until someone switches it on in the UI; this one is declared running, so a deployment
# (the daemon of `make dev`) keeps the marts current without a manual step.
ledger_marts_automation = dg.AutomationConditionSensorDefinition(
    "ledger_marts_automation",
    target=dg.AssetSelection.groups(GROUP),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the dbt marts (once, in one run) after ledger_entries, fx_rates or budgets "
    "materialize in the main code location.",
)

defs = dg.Definitions(assets=[ledger_dbt_assets], sensors=[ledger_marts_automation])
