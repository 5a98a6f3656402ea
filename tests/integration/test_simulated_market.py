"""The simulated market as an Environment on DuckDB and PostgreSQL: experiments made from scored
opportunities wait 28 simulated days and the ledger fills with their revenue (several currencies)
and ad costs; the same seed books the same ledger; waiting again books nothing; ad costs never pass
the allocation; a budget refusal is quarantined, replayable, and the ledger still verifies; the
webhook fails the first calls of each key, then answers."""

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest

from core.experiments.lifecycle import new_experiment_id
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger import fx
from core.ledger.budgets import set_budget
from core.ledger.fraud import FraudRules
from core.ledger.verify import verify
from core.platform.quarantine import pending
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from core.simulator.environment import SimulatedMarket, market_of, playbook_spend_minor
from core.simulator.market import MARKETS

SEED = 5
START = datetime(2026, 10, 21, tzinfo=UTC)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
AD_ROOM_MINOR = 6_000  # what the allocation leaves for the market's ads beyond the playbook's spend


def _opportunities(count: int) -> list[str]:
    """The first opportunity ids whose experiments fall in `count` different markets."""
    chosen: dict[str, str] = {}
    for n in range(100):
        market = market_of(new_experiment_id(f"proposal:opp-{n}"))
        chosen.setdefault(market, f"opp-{n}")
        if len(chosen) == count:
            return sorted(chosen.values())
    raise AssertionError("no opportunity ids cover the markets")


def setup_experiments(warehouse: Warehouse, count: int = 3, ad_room: int = AD_ROOM_MINOR) -> list[dict]:
    """`count` proposed experiments (one per market) from scored opportunities whose features are in
    core.opportunity_features, with an allocation of their requested budget plus `ad_room`."""
    ensure_schema(warehouse)
    ids = _opportunities(count)
    features = pd.DataFrame(
        [
            {
                "opportunity_id": opportunity,
                "source": "hackernews",
                "opportunity_type": "saas",
                "est_monthly_revenue_cents": 2_000_000,
                "confidence": 0.95,
                "capability_match": 0.9,
                "age_days": 1.0,
            }
            for opportunity in ids
        ]
    )
    warehouse.replace("core.opportunity_features", features)
    scored = features.assign(score=0.8, title=[f"Opportunity {o}" for o in ids])
    report = propose_from_scored(warehouse, scored, count, NEVER, lambda: START)
    assert len(report.created) == count
    for row in warehouse.read("experiments.experiments").to_dict("records"):
        warehouse.execute(
            "UPDATE experiments.experiments SET allocated_budget_minor = %s WHERE experiment_id = %s",
            [playbook_spend_minor(row) + ad_room, row["experiment_id"]],
        )
    return warehouse.read("experiments.experiments", "ORDER BY experiment_id").to_dict("records")


def run(market: SimulatedMarket, experiments: list[dict], days: int) -> None:
    for experiment in experiments:
        clock = market.clock_for(experiment, None)
        assert market.wait_until(experiment, clock, START + timedelta(days=days))
        assert clock() == START + timedelta(days=days)


def ledger_content(warehouse: Warehouse) -> set[tuple[str, str]]:
    booked = warehouse.query("SELECT idempotency_key, content_hash FROM ledger.transactions")
    held = warehouse.query("SELECT idempotency_key FROM ledger.holds")
    return {(r.idempotency_key, r.content_hash) for r in booked.itertuples()} | {
        (key, "held") for key in held["idempotency_key"]
    }


def replay_from_the_shell(warehouse: Warehouse, *args: str) -> str:
    """`ventureloop quarantine replay --source simulator ARGS` on this warehouse, in this process."""
    from typer.testing import CliRunner

    from orchestration.cli import app

    done = CliRunner().invoke(
        app, ["quarantine", "replay", "--source", "simulator", *args], env={"WAREHOUSE_URL": warehouse.url}
    )
    assert done.exit_code == 0, done.output
    return done.output


def ad_costs_usd(warehouse: Warehouse, experiment_id: str) -> int:
    """The experiment's booked ad spend in USD minor units at the bundled FX (the market's own rule:
    one minor unit up per converted cost)."""
    rows = warehouse.query(
        "SELECT p.currency, p.amount_minor, t.occurred_at FROM ledger.postings p "
        "JOIN ledger.transactions t ON t.transaction_id = p.transaction_id "
        "WHERE t.source = 'simulator' AND p.account_id = %s",
        [f"expenses:ads:experiment:{experiment_id}"],
    )
    return sum(
        int(r.amount_minor)
        if r.currency == "USD"
        else fx.convert(int(r.amount_minor), r.currency, "USD", pd.Timestamp(r.occurred_at).to_pydatetime()) + 1
        for r in rows.itertuples()
    )


def test_28_days_book_revenue_and_ad_costs_within_the_allocation_and_once(warehouse: Warehouse):
    experiments = setup_experiments(warehouse, count=2)
    assert len({market_of(e["experiment_id"]) for e in experiments}) == 2
    began = time.perf_counter()
    market = SimulatedMarket(warehouse, SEED, START, launch_spread_hours=0)
    run(market, experiments, 28)
    print(f"28 simulated days of 2 experiments booked in {time.perf_counter() - began:.1f} s")

    revenue = warehouse.query(
        "SELECT p.currency, t.experiment_id, sum(p.amount_minor) AS total FROM ledger.postings p "
        "JOIN ledger.transactions t ON t.transaction_id = p.transaction_id "
        "WHERE p.account_id LIKE 'revenue:experiment:%%' GROUP BY p.currency, t.experiment_id"
    )
    assert len(set(revenue["currency"])) >= 2, revenue  # several markets, several currencies
    assert set(revenue["experiment_id"]) <= {e["experiment_id"] for e in experiments}
    assert (revenue["total"] < 0).all()  # revenue is credited
    for experiment in experiments:
        room = int(experiment["allocated_budget_minor"]) - playbook_spend_minor(experiment)
        spent = ad_costs_usd(warehouse, experiment["experiment_id"])
        assert 0 < spent <= room == AD_ROOM_MINOR, experiment["experiment_id"]
        # The campaign stopped for want of allocation, not for want of days.
        assert (
            warehouse.scalar(
                "SELECT count(*) FROM ledger.transactions WHERE source = 'simulator' AND experiment_id = %s",
                [experiment["experiment_id"]],
            )
            < 28
        )
    assert verify(warehouse).ok
    oracle = market.oracle()
    assert sorted(oracle["experiment_id"]) == [e["experiment_id"] for e in experiments]
    assert {"succeeded", "success_probability", "currency"} <= set(oracle.columns)

    content, events = ledger_content(warehouse), warehouse.count("audit.events")
    run(market, experiments, 28)  # the same market: nothing left to book
    # A new market (a new run, a new process) finds where each experiment's booking stands.
    again = SimulatedMarket(warehouse, SEED, START, launch_spread_hours=0)
    run(again, experiments, 28)
    assert ledger_content(warehouse) == content and warehouse.count("audit.events") == events
    assert pending(warehouse).empty


def test_the_same_seed_books_the_same_ledger_on_another_warehouse(warehouse: Warehouse, tmp_path):
    other = Warehouse(f"duckdb:///{tmp_path}/other.duckdb")
    for target in (warehouse, other):
        run(SimulatedMarket(target, SEED, START), setup_experiments(target, count=2), 7)
    assert ledger_content(warehouse) == ledger_content(other)
    assert len(ledger_content(warehouse)) > 20


def test_a_budget_refusal_is_quarantined_the_days_go_on_and_it_replays(warehouse: Warehouse):
    experiments = setup_experiments(warehouse, count=2, ad_room=100_000)
    refused, other = experiments
    currency = MARKETS[market_of(refused["experiment_id"])][0]
    set_budget(
        warehouse,
        scope="experiment",
        scope_key=refused["experiment_id"],
        period="day",
        currency=currency,
        limit_minor=0,
        changed_by="test",
        at=START,
    )
    market = SimulatedMarket(warehouse, SEED, START, rules=FraudRules.disabled(), launch_spread_hours=0)
    run(market, experiments, 5)
    records = pending(warehouse)
    assert len(records) == 5 and set(records["source"]) == {"simulator"} and set(records["stage"]) == {"import"}
    assert all(reason.startswith("refused by the budgets: Experiment budget exceeded") for reason in records["reason"])
    assert {json.loads(p)["experiment_id"] for p in records["payload"]} == {refused["experiment_id"]}
    costs = "SELECT count(*) FROM ledger.transactions WHERE source = 'simulator' AND experiment_id = %s"
    assert warehouse.scalar(costs, [refused["experiment_id"]]) == 0
    assert warehouse.scalar(costs, [other["experiment_id"]]) == 5
    # The refused experiment's days went on: its payments are booked.
    assert warehouse.scalar(
        "SELECT count(*) FROM ledger.transactions WHERE source = 'stripe' AND experiment_id = %s",
        [refused["experiment_id"]],
    )
    assert verify(warehouse).ok

    # Waiting again stores each refusal once; once the budget allows, a replay books them once.
    run(SimulatedMarket(warehouse, SEED, START, rules=FraudRules.disabled(), launch_spread_hours=0), experiments, 5)
    assert len(pending(warehouse)) == 5
    set_budget(
        warehouse,
        scope="experiment",
        scope_key=refused["experiment_id"],
        period="day",
        currency=currency,
        limit_minor=1_000_000,
        changed_by="test",
        at=START + timedelta(days=5),
    )
    # From the shell: on the wall clock each is refused for its date (weeks before now, outside the
    # spend window); at the simulated time of their days they book.
    on_the_wall_clock = replay_from_the_shell(warehouse)
    assert "ledger imports: replayed 0, still failing 5" in on_the_wall_clock, on_the_wall_clock
    at = (START + timedelta(days=5)).isoformat(timespec="seconds")
    assert "ledger imports: replayed 5, still failing 0" in replay_from_the_shell(warehouse, "--at", at)
    assert warehouse.scalar(costs, [refused["experiment_id"]]) == 5 and pending(warehouse).empty
    assert verify(warehouse).ok


@pytest.mark.parametrize("failures", [0, 2])
def test_the_webhook_fails_the_first_calls_of_each_key_then_answers(duckdb_url: str, failures: int):
    market = SimulatedMarket(Warehouse(duckdb_url), SEED, START, webhook_failures=failures)

    def call(key: str) -> httpx.Response:
        with market.http_client() as client:  # the executor opens one per step (and per retry)
            return client.post("https://hooks.ventureloop.invalid/launch", json={}, headers={"Idempotency-Key": key})

    statuses = [call("experiment:e1:step:launch").status_code for _ in range(failures + 1)]
    assert statuses == [500] * failures + [200]
    answer = call("experiment:e1:step:launch").json()
    assert answer["ok"] is True and answer["key"] == "experiment:e1:step:launch"
    assert call("experiment:e2:step:launch").status_code == (500 if failures else 200)  # counted per key
