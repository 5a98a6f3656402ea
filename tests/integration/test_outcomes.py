"""experiment_totals and record_outcomes on DuckDB and PostgreSQL: money booked through the real
ledger in three currencies (with a reversed spend), converted at the stored ECB rates; one outcome
row per finished experiment, judged within its criteria's window, upserted on a rerun; and, on
DuckDB, the same totals as the dbt mart experiment_pnl built by the real dbt."""

import json
import os
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.experiments.lifecycle import transition
from core.experiments.outcomes import OutcomeError, Totals, experiment_totals, read_outcomes, record_outcomes
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger import fx
from core.ledger.audit import fixed_clock
from core.ledger.booking import book
from core.ledger.budgets import expense, reverse_spend, spend
from core.ledger.validation import Posting, TransactionRequest
from core.platform.dbt_env import DBT_PROJECT_DIR, dbt_env_for
from core.platform.warehouse import Warehouse

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday inside the bundled ECB snapshot
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
PATHS = {
    "approved": ["approved"],
    "running": ["approved", "queued", "running"],
    "completed": ["approved", "queued", "running", "completed"],
    "failed": ["approved", "queued", "running", "failed"],
    "rolled_back": ["approved", "queued", "running", "failed", "rolled_back"],
}


def experiment(warehouse: Warehouse, state: str, started: datetime, finished: datetime | None = None) -> str:
    """An experiment requesting 30_000 USD minor units (so: revenue >= 60_000 or ROI >= 0.5 within 30
    days), moved to `state` with its transitions stamped at `started` (and the last at `finished`)."""
    opportunity = f"opp-{uuid.uuid4().hex[:10]}"
    row = {
        "opportunity_id": opportunity,
        "score": 0.5,
        "opportunity_type": "saas",
        "title": f"Opportunity {opportunity}",
        "est_monthly_revenue_cents": 300_000,
    }
    (experiment_id,) = propose_from_scored(warehouse, pd.DataFrame([row]), 1, NEVER, fixed_clock(started)).created
    path = PATHS[state]
    for position, step in enumerate(path):
        at = finished if finished is not None and position == len(path) - 1 else started
        transition(warehouse, experiment_id, step, actor="test", reason=step, clock=fixed_clock(at))
    return experiment_id


def stamp(warehouse: Warehouse, experiment_id: str, started: datetime, finished: datetime) -> None:
    """What the executor writes: environment times of the start and the end."""
    warehouse.execute(
        "UPDATE experiments.experiments SET started_at = %s, finished_at = %s WHERE experiment_id = %s",
        [started, finished, experiment_id],
    )


def sale(warehouse: Warehouse, experiment_id: str, amount: int, currency: str, at: datetime) -> None:
    book(
        warehouse,
        TransactionRequest(
            idempotency_key=f"sale:{experiment_id}:{at.isoformat()}:{currency}",
            kind="sale",
            description="sale",
            occurred_at=at,
            postings=[
                Posting(f"assets:cash:stripe:{currency.lower()}", currency, amount),
                Posting(f"revenue:experiment:{experiment_id}", currency, -amount),
            ],
            experiment_id=experiment_id,
            source="test",
        ),
        clock=fixed_clock(at),
    )


def ad_spend(warehouse: Warehouse, experiment_id: str, amount: int, currency: str, at: datetime) -> str:
    result = spend(
        warehouse,
        expense(
            f"spend:{experiment_id}:{at.isoformat()}",
            f"expenses:ads:experiment:{experiment_id}",
            amount,
            currency,
            at,
            paid_from="liabilities:card:amex",
            description="ads",
            experiment_id=experiment_id,
        ),
        clock=fixed_clock(at),
    )
    assert result.ok, result.message
    return result.transaction_id


@pytest.fixture
def ledger(warehouse: Warehouse):
    """Four experiments and their money:
    - won: completed in 30 days; 50_000 USD and 100 EUR of sales, 20_000 JPY of ads, and a sale on
      day 31, after its window;
    - lost: completed, 10_000 USD of sales on 30_000 USD of ads;
    - undone: rolled back, its 12_000 USD of ads reversed;
    - live: still running (no outcome)."""
    rates = fx.bundled_rates()
    fx.store_rates(warehouse, rates[pd.to_datetime(rates["rate_date"]) >= pd.Timestamp("2026-10-20")])
    end = T0 + timedelta(days=30)
    won = experiment(warehouse, "completed", T0, end)
    stamp(warehouse, won, T0, end)
    sale(warehouse, won, 50_000, "USD", T0 + timedelta(days=3))
    sale(warehouse, won, 10_000, "EUR", T0 + timedelta(days=5, hours=20))  # a Saturday: Friday's rate
    ad_spend(warehouse, won, 20_000, "JPY", T0 + timedelta(hours=1))
    lost = experiment(warehouse, "completed", T0, end)
    sale(warehouse, lost, 10_000, "USD", T0 + timedelta(days=10))
    ad_spend(warehouse, lost, 30_000, "USD", T0 + timedelta(hours=2))
    undone = experiment(warehouse, "rolled_back", T0, T0 + timedelta(days=1, hours=6))
    stamp(warehouse, undone, T0, T0 + timedelta(days=1, hours=6))
    spent = ad_spend(warehouse, undone, 12_000, "USD", T0 + timedelta(hours=3))
    reverse_spend(warehouse, spent, f"reverse:{undone}", "rolled back", clock=fixed_clock(T0 + timedelta(days=1)))
    live = experiment(warehouse, "running", T0)
    ad_spend(warehouse, live, 1_000, "USD", T0)
    sale(warehouse, won, 7_000, "USD", T0 + timedelta(days=31))  # outside won's 30-day window
    return warehouse, {"won": won, "lost": lost, "undone": undone, "live": live}


def test_totals_convert_each_posting_at_its_days_rate(ledger):
    warehouse, ids = ledger
    rates = fx.RateTable.from_warehouse(warehouse)
    eur = rates.convert(10_000, "EUR", "USD", T0 + timedelta(days=5, hours=20))
    jpy = rates.convert(20_000, "JPY", "USD", T0 + timedelta(hours=1))
    assert 0 < jpy < 20_000 and eur > 10_000  # sanity: the yen is worth less than a cent, the euro more than a dollar
    assert experiment_totals(warehouse, ids["won"]) == Totals(50_000 + eur + 7_000, jpy, "USD")
    assert experiment_totals(warehouse, ids["won"], until=T0 + timedelta(days=30)) == Totals(50_000 + eur, jpy, "USD")
    assert experiment_totals(warehouse, ids["undone"]) == Totals(0, 0, "USD")  # the reversal nets the spend
    assert experiment_totals(warehouse, "no-such-experiment") == Totals(0, 0, "USD")


def test_one_outcome_per_finished_experiment_judged_within_its_window(ledger):
    warehouse, ids = ledger
    evaluated = datetime(2026, 12, 5, tzinfo=UTC)
    recorded = record_outcomes(warehouse, clock=fixed_clock(evaluated)).set_index("experiment_id")
    assert sorted(recorded.index) == sorted([ids["won"], ids["lost"], ids["undone"]])  # not the running one
    stored = read_outcomes(warehouse).set_index("experiment_id")
    assert sorted(stored.index) == sorted(recorded.index)

    won = stored.loc[ids["won"]]
    expected = experiment_totals(warehouse, ids["won"], until=T0 + timedelta(days=30))
    assert (int(won["revenue_minor"]), int(won["cost_minor"]), int(won["net_minor"])) == (
        expected.revenue_minor,
        expected.cost_minor,
        expected.net_minor,
    )
    assert bool(won["succeeded"]) and "met: revenue_minor" in won["reason"]
    assert won["duration_days"] == pytest.approx(30.0) and won["roi"] == pytest.approx(expected.roi)
    assert json.loads(won["criteria"])["any_of"][0]["at_least"] == 60_000
    assert pd.Timestamp(won["evaluated_at"]) == pd.Timestamp(evaluated)

    lost = stored.loc[ids["lost"]]
    assert not bool(lost["succeeded"]) and (int(lost["revenue_minor"]), int(lost["cost_minor"])) == (10_000, 30_000)
    assert "not met: revenue_minor 10000 USD < 60000" in lost["reason"] and "not met: roi" in lost["reason"]
    assert lost["duration_days"] == pytest.approx(30.0)  # no executor stamps: from its transitions

    undone = stored.loc[ids["undone"]]
    assert undone["state"] == "rolled_back" and not bool(undone["succeeded"])
    assert (int(undone["revenue_minor"]), int(undone["cost_minor"])) == (0, 0)
    assert undone["duration_days"] == pytest.approx(1.25) and pd.isna(undone["roi"])
    assert "did not complete" in undone["reason"]


def test_a_rerun_updates_in_place_and_bad_criteria_name_their_experiment(ledger):
    warehouse, ids = ledger
    record_outcomes(warehouse, clock=fixed_clock(datetime(2026, 12, 5, tzinfo=UTC)))
    sale(warehouse, ids["lost"], 80_000, "USD", T0 + timedelta(days=20))  # late-booked money inside the window
    again = record_outcomes(warehouse, clock=fixed_clock(datetime(2026, 12, 6, tzinfo=UTC)))
    assert len(again) == 3 and warehouse.count("experiments.outcomes") == 3
    lost = read_outcomes(warehouse).set_index("experiment_id").loc[ids["lost"]]
    assert bool(lost["succeeded"]) and int(lost["revenue_minor"]) == 90_000

    warehouse.execute(
        "UPDATE experiments.experiments SET success_criteria = %s WHERE experiment_id = %s",
        ['{"all_of": []}', ids["won"]],
    )
    with pytest.raises(OutcomeError) as refused:
        record_outcomes(warehouse, clock=fixed_clock(datetime(2026, 12, 7, tzinfo=UTC)))
    assert f"experiment {ids['won']}: success criteria" in str(refused.value) and "any_of" in str(refused.value)
    stamps = read_outcomes(warehouse).set_index("experiment_id")["evaluated_at"].map(pd.Timestamp)
    assert stamps.loc[ids["lost"]] == pd.Timestamp(datetime(2026, 12, 7, tzinfo=UTC))  # the others were written
    assert stamps.loc[ids["won"]] == pd.Timestamp(datetime(2026, 12, 6, tzinfo=UTC))


def run_dbt(warehouse: Warehouse, target: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **dbt_env_for(warehouse.url), "DBT_TARGET_PATH": str(target), "DBT_LOG_PATH": str(target)}
    dbt = Path(sys.executable).parent / "dbt"
    command = [str(dbt), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["duckdb"], indirect=True)
def test_totals_equal_the_dbt_experiment_pnl_mart(ledger, tmp_path):
    warehouse, ids = ledger
    done = run_dbt(warehouse, tmp_path / "target", "build", "--select", "+experiment_pnl")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    mart = warehouse.query("SELECT experiment_id, revenue_minor, cost_minor FROM analytics.experiment_pnl")
    assert sorted(mart["experiment_id"]) == sorted(ids.values())
    for row in mart.itertuples():
        totals = experiment_totals(warehouse, row.experiment_id)
        assert (totals.revenue_minor, totals.cost_minor) == (int(row.revenue_minor), int(row.cost_minor))


def _metadata(result, name: str) -> dict:
    (materialization,) = result.asset_materializations_for_node(name)
    return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}


def test_the_allocation_and_outcome_assets_materialize_and_check(ledger):
    import dagster as dg

    from assets.experiments.allocations import experiment_allocations
    from assets.experiments.outcomes import completed_experiments_have_outcomes, experiment_outcomes
    from assets.resources import MlflowResource, WarehouseResource
    from core.ledger.budgets import set_budget

    warehouse, _ids = ledger
    waiting = experiment(warehouse, "approved", T0)  # approved, without an allocation
    set_budget(warehouse, scope="global", period="month", currency="USD", limit_minor=10**9, changed_by="t", at=T0)
    mlflow = MlflowResource(tracking_uri=f"sqlite:///{tempfile.mkdtemp(prefix='ventureloop-mlflow-')}/mlflow.db")
    resources = {"warehouse": WarehouseResource(url=warehouse.url), "mlflow": mlflow}
    result = dg.materialize(
        [experiment_allocations, experiment_outcomes, completed_experiments_have_outcomes], resources=resources
    )
    assert result.success
    allocations = _metadata(result, "experiment_allocations")
    assert (allocations["allocated"], allocations["allocated_minor"]) == (1, 30_000)
    assert waiting in allocations["allocations"]
    outcomes = _metadata(result, "experiment_outcomes")
    assert (outcomes["evaluated"], outcomes["succeeded"], outcomes["did_not_succeed"]) == (3, 1, 2)
    assert outcomes["dagster/row_count"] == warehouse.count("experiments.outcomes") == 3
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["missing"].value == 0

    # A finished experiment whose criteria cannot be read: the asset records the others, the check names it.
    for step in ("queued", "running", "completed"):
        transition(warehouse, waiting, step, actor="test", reason=step, clock=fixed_clock(T0))
    warehouse.execute("UPDATE experiments.experiments SET success_criteria = '[]' WHERE experiment_id = %s", [waiting])
    again = dg.materialize(
        [experiment_outcomes, completed_experiments_have_outcomes], resources=resources, raise_on_error=False
    )
    problems = _metadata(again, "experiment_outcomes")
    assert f"experiment {waiting}" in problems["problems"] and problems["evaluated"] == 3
    (check,) = again.get_asset_check_evaluations()
    assert not check.passed and waiting in check.metadata["experiments"].value
