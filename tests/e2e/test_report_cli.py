"""`ventureloop report` as a user types it, in-process through typer's runner: the path on stdout (so
`xdg-open "$(ventureloop report)"` works), what is missing on stderr, and no warehouse created."""

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from orchestration.cli import app
from tests.unit.test_report import fill_learning

PREFIXES = ("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_")


@pytest.fixture
def home(tmp_path) -> Path:
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    fill_learning(warehouse)  # one section with a chart; the others say what is missing
    return tmp_path / "home"


def _cli(home: Path, args: list[str], expect: int = 0):
    unset = {k: None for k in os.environ if k.startswith(PREFIXES)}
    done = CliRunner().invoke(app, args, env={**unset, "VENTURELOOP_HOME": str(home)}, catch_exceptions=False)
    assert done.exit_code == expect, f"{args}: exit {done.exit_code}\n{done.stdout}\n{done.stderr}"
    return done


def test_report_writes_under_the_home_and_prints_the_path(home):
    done = _cli(home, ["report"])
    path = Path(done.stdout.strip())
    assert path.parent == home / "reports" and re.fullmatch(r"report-\d{4}-\d{2}-\d{2}\.html", path.name)
    assert (home / "reports" / "latest.html").read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    assert "Source bandit posteriors" in path.read_text(encoding="utf-8")
    assert "1 of 7 sections drawn" in done.stderr
    assert "forecast: forecasting.cash_flow_forecast has no forecast yet: materialize the asset cash_flow_forecast" in (
        done.stderr
    )


def test_report_out_writes_that_file_only(home, tmp_path):
    target = tmp_path / "mail" / "week.html"
    done = _cli(home, ["report", "--out", str(target)])
    assert done.stdout.strip() == str(target) and target.stat().st_size > 10_000
    assert not (home / "reports").exists()


def test_report_without_a_warehouse_refuses_and_creates_none(tmp_path):
    done = _cli(tmp_path / "empty", ["report"], expect=2)
    assert "no warehouse at" in done.stderr and "make demo" in done.stderr
    assert not (tmp_path / "empty").exists()
