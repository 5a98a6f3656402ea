"""metric_anomalies on a real ledger: the market simulator's days booked through the import path
and the ledger's booking API, one extra sale of a size the series never saw booked on the last day.
The asset writes the daily series with the ledger's own totals, finds the spike with the right
explanation, its check warns about it, and a second run adds nothing. Once on each backend."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from assets.monitoring.anomalies import metric_anomalies, no_recent_critical_anomaly
from assets.resources import WarehouseResource
from core.ledger.booking import book, book_many
from core.ledger.fx import RateTable, bundled_rates, store_rates
from core.ledger.imports import import_objects
from core.ledger.validation import Posting, TransactionRequest
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from core.simulator.ground_truth import truths
from core.simulator.market import Experiment, SimulatedClock, simulate

SEED = 5
START = date(2026, 10, 1)
SPIKE = 600_000  # USD cents in one sale: the simulated experiments earn a few hundred dollars a day


def opportunities(count: int) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "opportunity_id": f"opp-{n}",
                "source": "hackernews",
                "opportunity_type": "saas",
                "est_monthly_revenue_cents": 2_000_000,
                "confidence": 1.0,
                "capability_match": 1.0,
                "age_days": 1.0,
            }
            for n in range(count)
        ]
    )


def book_simulated_ledger(warehouse: Warehouse, days: int, markets: tuple[str, ...]) -> date:
    """`days` simulated days of one experiment per market, then the spike on the last day; returns it."""
    ensure_schema(warehouse)
    store_rates(warehouse, bundled_rates())
    frame = opportunities(len(markets))
    experiments = [Experiment(f"exp-{n}", f"opp-{n}", START, market) for n, market in enumerate(markets)]
    simulated = list(simulate(SEED, experiments, truths(SEED, frame), START, days))
    last = START + timedelta(days=days - 1)
    clock = SimulatedClock(START, elapsed_days=days - 1)  # standing on the last day: every day is past
    with warehouse.held():
        objects = [obj for day in simulated for obj in day.objects]
        import_objects(warehouse, objects, origin=f"simulator:{START}..{last}", now=clock.now())
        book_many(warehouse, [cost.request() for day in simulated for cost in day.costs])
    book(
        warehouse,
        TransactionRequest(
            idempotency_key="test:spike",
            kind="revenue",
            description="one enterprise deal, ten times a normal day",
            occurred_at=datetime(last.year, last.month, last.day, 15, tzinfo=UTC),
            postings=[
                Posting("assets:cash:bank:usd", "USD", SPIKE),
                Posting("revenue:experiment:exp-0", "USD", -SPIKE),
            ],
            experiment_id="exp-0",
            source="test",
        ),
    )
    return last


def revenue_in(warehouse: Warehouse, day: date, currency: str) -> int:
    """The day's credits to revenue accounts in one currency, straight from the ledger."""
    return int(
        warehouse.scalar(
            "SELECT coalesce(-sum(amount_minor), 0) FROM ledger.postings WHERE currency = %s "
            "AND account_id LIKE 'revenue:%%' AND amount_minor < 0 "
            "AND CAST(occurred_at AT TIME ZONE 'UTC' AS DATE) = %s",
            [currency, day],
        )
    )


def materialize(url: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [metric_anomalies, no_recent_critical_anomaly],
        resources={"warehouse": WarehouseResource(url=url)},
        instance=instance,
        raise_on_error=True,
    )


def check_result(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def assert_spike_found_once(url: str, last: date, markets: tuple[str, ...]) -> None:
    warehouse = Warehouse(url)
    with dg.instance_for_test() as instance:
        first = materialize(url, instance)
        metrics = warehouse.read("monitoring.daily_metrics")
        metrics["metric_date"] = pd.to_datetime(metrics["metric_date"]).dt.date
        revenue = metrics[metrics["metric"] == "revenue_minor"].set_index("metric_date")["value"]
        assert len(revenue) == (last - START).days + 1
        # The ledger's own sums, the euro part converted at the ledger's rate of the day.
        rates = RateTable.from_warehouse(warehouse)
        for day in (START + timedelta(days=20), last):
            euros = revenue_in(warehouse, day, "EUR")
            assert revenue[day] == revenue_in(warehouse, day, "USD") + rates.convert(euros, "EUR", "USD", day)
            assert (euros > 0) == ("eu" in markets)
        assert revenue[last] >= SPIKE
        assert {"revenue_minor", "cost_minor", "refunds_minor"} <= set(metrics["metric"])

        anomalies = warehouse.read("monitoring.metric_anomalies")
        spike = anomalies[(anomalies["metric"] == "revenue_minor") & (anomalies["method"] == "robust_z")]
        spike = spike[pd.to_datetime(spike["metric_date"]).dt.date == last]
        assert len(spike) == 1
        row = spike.iloc[0]
        assert row["severity"] == "critical"
        assert row["explanation"].startswith(f"revenue_minor {row['value']:,.0f} on {last.isoformat()} vs expected ")
        assert row["value"] > 5 * row["expected"]

        evaluation = check_result(first)
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert f"revenue_minor {row['value']:,.0f} on {last.isoformat()}" in evaluation.description

        materialization = first.asset_materializations_for_node("metric_anomalies")[0]
        assert materialization.metadata["new_anomalies"].value == len(anomalies)
        assert materialization.metadata["severity_critical"].value >= 1
        assert last.isoformat() in materialization.metadata["newest"].value

        # The first run is in the instance now: its duration is a metric of the second.
        second = materialize(url, instance)
        again = second.asset_materializations_for_node("metric_anomalies")[0]
        assert again.metadata["new_anomalies"].value == 0
        assert warehouse.count("monitoring.metric_anomalies") == len(anomalies)
        metrics = warehouse.read("monitoring.daily_metrics")
        durations = metrics[metrics["metric"] == "run_duration_seconds"]
        assert len(durations) == 1 and durations["value"].iloc[0] > 0
        assert "run_duration_seconds" in again.metadata["not_judged"].value


def test_spike_in_a_simulated_ledger_is_found_once_duckdb(duckdb_url: str):
    markets = ("us", "eu")
    last = book_simulated_ledger(Warehouse(duckdb_url), 30, markets)
    assert_spike_found_once(duckdb_url, last, markets)


@pytest.mark.postgres
def test_spike_in_a_simulated_ledger_is_found_once_postgres(postgres_url: str):
    markets = ("us",)
    last = book_simulated_ledger(Warehouse(postgres_url), 25, markets)
    assert_spike_found_once(postgres_url, last, markets)


def test_an_empty_warehouse_gives_empty_series_and_a_passing_check(duckdb_url: str):
    with dg.instance_for_test() as instance:
        result = materialize(duckdb_url, instance)
    materialization = result.asset_materializations_for_node("metric_anomalies")[0]
    assert materialization.metadata["anomalies"].value == 0
    assert materialization.metadata["newest"].value == "no anomaly"
    assert Warehouse(duckdb_url).count("monitoring.daily_metrics") == 0
    assert check_result(result).passed
