"""The weekly_report asset, materialized on a temporary warehouse and home: its file, and the
metadata the asset page shows (the path, the sections drawn and the missing ones with the reason)."""

from pathlib import Path

import dagster as dg

from assets.monitoring import defs as monitoring_defs
from assets.monitoring.report import weekly_report
from assets.resources import WarehouseResource
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from tests.unit.test_report import fill_learning


def test_weekly_report_writes_under_the_home_and_says_what_it_drew(tmp_path, monkeypatch):
    monkeypatch.setenv("VENTURELOOP_HOME", str(tmp_path / "home"))
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    fill_learning(warehouse)
    result = dg.materialize([weekly_report], resources={"warehouse": WarehouseResource(url=warehouse.url)})
    assert result.success
    metadata = result.asset_materializations_for_node("weekly_report")[0].metadata
    path = Path(metadata["path"].value)
    assert path.parent == tmp_path / "home" / "reports" and path.is_file()
    assert Path(metadata["latest"].value).read_bytes() == path.read_bytes()
    assert metadata["sections_drawn"].value == ["bandit"] and metadata["charts"].value == 1
    missing = metadata["sections_missing"].value
    assert set(missing) == {"revenue_cost", "forecast", "funnel", "roi", "anomalies", "slo"}
    assert "materialize the asset slo_report" in missing["slo"]
    assert metadata["sections_failed"].value == {}


def test_the_report_runs_every_monday_morning_utc_after_the_tables_it_reads():
    schedule = next(s for s in monitoring_defs.schedules if s.name == "weekly_report")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * 1", "UTC")
    assert schedule.job_name == "weekly_report_job"
    deps = {key.to_user_string() for key in weekly_report.asset_deps[dg.AssetKey("weekly_report")]}
    assert deps >= {
        "cash_flow_forecast",
        "metric_anomalies",
        "slo_report",
        "source_bandit",
        "marts/daily_cash_flow",
        "experiment_outcomes",
    }
