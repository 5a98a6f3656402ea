"""`ventureloop strategy versions` and `ventureloop strategy rollback` as a user types them, in-process
through typer's runner, on a DuckDB warehouse holding two recorded versions."""

import os
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from core.discovery.strategy_versions import deployed_weights, record_version, versions
from core.discovery.weights import Weights
from core.ledger.audit import fixed_clock
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from orchestration.cli import app

LEARNED = Weights(revenue=0.1, confidence=0.1, time_to_revenue=0.1, capability=0.6, timing=0.1)
PREFIXES = ("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_")


@pytest.fixture
def home(tmp_path) -> tuple[dict[str, str], Warehouse]:
    env = {"VENTURELOOP_HOME": str(tmp_path / "home"), "USER": "operator"}
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'home' / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    clock = fixed_clock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    backtest = {"metric": "top_k_net_minor", "old": 71_000, "new": 83_050, "k": 10, "trained_on": 70, "held_out": 30}
    good = {"weights": LEARNED, "velocity": {}, "reason": "ranks better", "backtest": backtest}
    record_version(warehouse, status="deployed", clock=clock, **good)
    record_version(warehouse, status="rejected", weights=Weights(), velocity={}, reason="ranks worse", clock=clock)
    return env, warehouse


def _cli(env: dict[str, str], args: list[str], expect: int = 0):
    unset = {k: None for k in os.environ if k.startswith(PREFIXES)}
    done = CliRunner().invoke(app, args, env={**unset, **env}, catch_exceptions=False)
    assert done.exit_code == expect, f"{args}: exit {done.exit_code}\n{done.stdout}\n{done.stderr}"
    return done


def _row(table: str, version: int) -> list[str]:
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [str(version)])


def test_versions_list_every_version_and_mark_the_deployed_one(home):
    env, _warehouse = home
    table = _cli(env, ["strategy", "versions"]).stdout
    assert _row(table, 0)[:3] == ["0", "defaults", "0.4"]  # the seed's, not deployed: no mark
    assert _row(table, 1)[:8] == ["1", "deployed", "*", "0.1", "0.1", "0.1", "0.6", "0.1"]
    assert "710.00 USD -> 830.50 USD" in table and "ranks better" in table
    assert _row(table, 2)[:2] == ["2", "rejected"] and "*" not in _row(table, 2)


def test_rollback_appends_a_version_that_scores_next(home):
    env, warehouse = home
    done = _cli(env, ["strategy", "rollback", "0", "--reason", "learned weights overfit"])
    assert "version 3 (restores 0) deployed by operator" in done.stdout
    assert deployed_weights(warehouse) == (Weights(), 3)
    table = _cli(env, ["strategy", "versions"]).stdout
    assert _row(table, 3)[:3] == ["3", "rolled_back", "*"] and "restores 0" in table
    assert versions(warehouse).iloc[-1]["reason"] == "learned weights overfit"


@pytest.mark.parametrize(
    ("version", "message"),
    [("7", "no strategy weights version 7: versions are 0 to 2"), ("2", "version 2 was rejected by its backtest")],
)
def test_an_unknown_or_rejected_version_exits_1_and_says_why(home, version, message):
    env, warehouse = home
    done = _cli(env, ["strategy", "rollback", version, "--reason", "try"], expect=1)
    assert f"refused: {message}" in done.stderr
    assert len(versions(warehouse)) == 2


def test_rollback_needs_a_reason(home):
    env, _warehouse = home
    done = _cli(env, ["strategy", "rollback", "0"], expect=2)
    assert "--reason" in done.stderr
