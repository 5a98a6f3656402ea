"""The ledger: FX rates, budgets and ledger entries (payment imports), the
audit check, the import job and the inbox sensor that launches it."""

import dagster as dg

from assets import with_code_references
from assets.ledger.entries import budgets, fx_rates, ledger_entries, ledger_verifies
from assets.ledger.inbox import build_inbox_sensor

ledger_import_job = dg.define_asset_job(
    "ledger_import_job",
    selection=dg.AssetSelection.assets(ledger_entries),
    description="Book what arrived (inbox files or the Stripe API). The ledger marts "
    "follow it on their own: they are eager to rebuild when ledger_entries changes.",
)

defs = dg.Definitions(
    assets=with_code_references([fx_rates, budgets, ledger_entries]),
    asset_checks=[ledger_verifies],
    jobs=[ledger_import_job],
    sensors=[build_inbox_sensor(ledger_import_job)],
)
