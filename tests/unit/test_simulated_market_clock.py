"""The simulated market's time: where it starts by default (anchored on the bundled FX rates, not
only the wall clock), each experiment's own clock, waits that split a day, and ad costs spread
over the hours of the day."""

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger import fx
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from core.simulator.environment import SimulatedMarket, ad_time, default_start, last_bundled_rate_date, market_of

START = datetime(2026, 10, 21, tzinfo=UTC)


def experiment(n: int, **extra) -> dict:
    return {"experiment_id": f"exp-{n}", "opportunity_id": f"opp-{n}", "category": "saas", **extra}


def test_the_default_start_is_37_days_before_today_or_the_last_bundled_rate():
    last = last_bundled_rate_date()
    assert last == max(fx.days_covered(fx.bundled_rates())) == date(2026, 11, 27)
    assert default_start(date(2026, 11, 10)) == datetime(2026, 10, 4, tzinfo=UTC)
    # Past the bundled rates the start stays put: every simulated day keeps a rate at most 7 days old.
    for today in (date(2026, 12, 3), date(2027, 6, 1), datetime(2026, 12, 3, 23, 59, tzinfo=UTC)):
        start = default_start(today)
        assert start == datetime(2026, 10, 21, tzinfo=UTC) and start.tzinfo is UTC
        for day in range(30):  # an experiment's window of 30 days converts on the bundled rates
            fx.convert(1_000, "JPY", "USD", start + timedelta(days=day))
    # A datetime counts by its UTC date.
    assert default_start(datetime(2026, 11, 10, 23, 30, tzinfo=UTC)) == datetime(2026, 10, 4, tzinfo=UTC)


def test_each_experiment_has_its_own_clock_from_its_launch_or_its_checkpoint(duckdb_url: str):
    market = SimulatedMarket(Warehouse(duckdb_url), 3, START)
    ensure_schema(market.warehouse)
    first, second = market.clock_for(experiment(1), None), market.clock_for(experiment(2), None)
    launches = [market.launch_at(experiment(n)["experiment_id"]) for n in (1, 2)]
    assert (first(), second()) == tuple(launches)
    # Launches spread over three days from the start, each experiment's at a stable minute.
    spread = [market.launch_at(experiment(n)["experiment_id"]) - START for n in range(40)]
    assert all(timedelta(0) <= offset < timedelta(hours=72) for offset in spread)
    assert len(set(spread)) == 40 and max(spread) - min(spread) > timedelta(hours=48)
    assert market.wait_until(experiment(1), first, launches[0] + timedelta(hours=72))
    assert (first(), second()) == (launches[0] + timedelta(hours=72), launches[1])
    resumed = market.clock_for(experiment(2), START + timedelta(days=9, hours=3))
    assert resumed() == START + timedelta(days=9, hours=3)
    # A moment already reached is reached: the clock never goes back.
    assert market.wait_until(experiment(1), first, START) and first() == launches[0] + timedelta(hours=72)
    with pytest.raises(TypeError, match="clock its clock_for made"):
        market.wait_until(experiment(1), lambda: START, START + timedelta(days=1))


def test_waits_that_split_days_book_what_one_wait_books(tmp_path):
    def booked(name: str, stops: list[timedelta]) -> set[tuple[str, str]]:
        warehouse = Warehouse(f"duckdb:///{tmp_path}/{name}.duckdb")
        ensure_schema(warehouse)
        market = SimulatedMarket(warehouse, 3, START)
        row = experiment(1, allocated_budget_minor=50_000, currency="USD", playbook="[]")
        clock = market.clock_for(row, None)
        launch = clock()
        for stop in stops:
            market.wait_until(row, clock, launch + stop)
            assert clock() == launch + stop
            # Nothing in the ledger lies ahead of the experiment's clock.
            latest = warehouse.scalar("SELECT max(occurred_at) FROM ledger.transactions")
            assert latest is None or latest < launch + stop
        frame = warehouse.query("SELECT idempotency_key, content_hash FROM ledger.transactions")
        return set(frame.itertuples(index=False, name=None))

    whole = booked("whole", [timedelta(days=3)])
    assert whole and whole == booked("split", [timedelta(hours=13), timedelta(days=1, hours=7), timedelta(days=3)])


def test_markets_and_ad_hours_are_stable_and_spread():
    ids = [f"exp-{n}" for n in range(40)]
    assert [market_of(i) for i in ids] == [market_of(i) for i in ids]
    assert {market_of(i) for i in ids} == {"us", "eu", "uk", "jp"}
    day = date(2026, 11, 2)
    times = [ad_time(i, day) for i in ids]
    assert all(datetime(2026, 11, 2, tzinfo=UTC) <= t < datetime(2026, 11, 2, 23, tzinfo=UTC) for t in times)
    assert len({t.hour for t in times}) >= 16  # not one hour for all: the hourly ads budget holds
    assert times == [ad_time(i, day) for i in ids]


def test_the_documented_environment_example_runs(duckdb_url: str):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text(encoding="utf-8")
    example = re.findall(r"```python\n(.*?)```", doc, re.S)[1]
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    scored = pd.DataFrame(
        [
            {
                "opportunity_id": "opp-1",
                "score": 0.8,
                "opportunity_type": "saas",
                "title": "An API",
                "est_monthly_revenue_cents": 900_000,
            }
        ]
    )
    [experiment_id] = propose_from_scored(warehouse, scored, 1, ApprovalPolicy(0, 1.0), lambda: START).created
    scope: dict = {"warehouse": warehouse, "experiment_id": experiment_id}
    exec(compile(example, "docs/simulator.md", "exec"), scope)  # our own documentation, kept runnable
    launch = scope["market"].launch_at(scope["experiment"]["experiment_id"])
    assert scope["clock"]() == launch + timedelta(days=30)
    assert list(scope["truth"]["experiment_id"]) == [experiment_id]
    assert warehouse.scalar("SELECT count(*) FROM ledger.transactions WHERE experiment_id = %s", [experiment_id]) > 0
