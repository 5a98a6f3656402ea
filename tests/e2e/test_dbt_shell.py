"""The dbt marts from a shell, as a user types it: both code locations of workspace.yaml validate,
and one mart materializes on its own with `dagster asset materialize --select` once the tables
it reads exist, running only its own dbt model and tests."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.platform.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_", "DBT_"))}
    env.update(VENTURELOOP_HOME=str(tmp_path / "home"), DAGSTER_HOME=str(tmp_path / "home" / "dagster"))
    return env


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _materialize(args: list[str], env: dict[str, str]) -> str:
    out = _run([str(BIN / "dagster"), *args], env)
    assert "RUN_SUCCESS" in out
    return out


def materialized(out: str) -> set[str]:
    # "ASSET_MATERIALIZATION - Materialized value marts revenue_summary."
    return set(re.findall(r"ASSET_MATERIALIZATION - Materialized value (.+?)\.$", out, re.MULTILINE))


def test_the_workspace_validates(tmp_path):
    env = _env(tmp_path)
    _run([str(BIN / "ventureloop"), "instance", "init"], env)
    out = _run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"], env)
    assert "All code locations passed validation" in out


def test_one_mart_materializes_alone_from_the_shell(tmp_path):
    env = _env(tmp_path)
    _run([str(BIN / "ventureloop"), "instance", "init"], env)
    # The upstream tables: a Stripe export of experiments' payments (outside experiment runs only an
    # import books payments) and the ledger's writers in the main location, then the marts
    # revenue_summary reads (everything above experiment_pnl in the marts location).
    _run(
        [
            str(BIN / "ventureloop"),
            "ledger",
            "import",
            str(ROOT / "tests" / "fixtures" / "imports" / "stripe_export.csv"),
        ],
        env,
    )
    _materialize(
        ["asset", "materialize", "--select", "fx_rates,budgets,ledger_entries", "-m", "orchestration.definitions"], env
    )
    # Word for word what docs/dbt.md shows (tests/unit/test_documented_commands.py checks it).
    upstream = _materialize(
        ["asset", "materialize", "--select", "*marts/experiment_pnl", "-m", "orchestration.marts_definitions"], env
    )
    assert "marts revenue_summary" not in materialized(upstream)
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")
    assert not warehouse.table_exists("analytics.revenue_summary")

    out = _materialize(
        ["asset", "materialize", "--select", "marts/revenue_summary", "-m", "orchestration.marts_definitions"], env
    )
    assert materialized(out) == {"marts revenue_summary"}
    assert "--select ventureloop.marts.revenue_summary`" in out  # dbt was given that model alone
    assert re.search(r"dbt build: [\d.]+ s, 6 pass, 1 success$", out, re.MULTILINE), out[-3000:]
    assert len(re.findall(r"Asset check '\w+' on 'marts/revenue_summary' passed", out)) == 6
    assert (
        warehouse.query("SELECT * FROM analytics.revenue_summary").shape[0]
        == warehouse.query("SELECT * FROM analytics.experiment_pnl").shape[0]
        > 0
    )

    # The same warehouse by hand: `ventureloop dbt` points dbt at it as the assets do.
    checked = _run([str(BIN / "ventureloop"), "dbt", "build", "--select", "trial_balance"], env)
    assert re.search(r"Done\. PASS=4 WARN=0 ERROR=0", checked), checked[-2000:]
    refused = subprocess.run(
        [str(BIN / "ventureloop"), "dbt", "build"],
        cwd=ROOT,
        env={**env, "DBT_TARGET": "postgres"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "DBT_TARGET=postgres but the warehouse is duckdb" in refused.stderr
