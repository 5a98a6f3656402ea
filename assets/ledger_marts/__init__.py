"""The dbt models of the ledger (dbt_project/) as assets, their dbt tests as asset checks.

They load in a code location of their own (orchestration/marts_definitions.py): dagster_dbt
doubles the import time of a code location, and the one that runs discovery and experiments
must start fast."""

import dagster as dg

from assets.ledger_marts.dbt import ledger_dbt_assets

defs = dg.Definitions(assets=[ledger_dbt_assets])
