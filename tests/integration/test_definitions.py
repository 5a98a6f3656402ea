"""The one Definitions object loads, every job resolves, and the graph has what the UI promises."""

import dagster as dg

from orchestration.definitions import defs


def test_definitions_are_loadable_and_jobs_resolve():
    dg.Definitions.validate_loadable(defs)
    for name in ("discovery_job", "ledger_import_job"):
        assert defs.resolve_job_def(name) is not None
    assert defs.resolve_sensor_def("inbox_sensor") is not None
    assert defs.resolve_schedule_def("hourly_discovery").cron_schedule == "0 * * * *"


def test_the_ledger_marts_hang_off_the_ledger_writers():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"ledger_entries", "fx_rates", "budgets", "revenue_summary", "trial_balance"} <= keys
    upstream = {key.to_user_string() for key in graph.get(dg.AssetKey("stg_postings")).parent_keys}
    assert "ledger_entries" in upstream
    checks = {key.name for key in graph.asset_check_keys}
    assert {"trial_balance_nets_to_zero", "ledger_verifies", "fetch_succeeded"} <= checks
