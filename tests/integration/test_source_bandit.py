"""The source bandit on DuckDB and PostgreSQL: source_bandit materialized over experiments proposed by
the real code and outcomes written into the real schema, its learning.source_posterior and metadata;
then hourly_discovery evaluated on that warehouse, whose run request selects the sources it sampled
(plus the opportunities group) and says why in its tags."""

import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.discovery import (
    DOWNSTREAM,
    FLOOR_TAG,
    REASON_TAG,
    SOURCES_TAG,
    discovery_request,
    exploration_floor,
    hourly_discovery,
)
from assets.discovery.raw import SOURCES
from assets.learning.bandit import COLUMNS, POSTERIOR_TABLE, read_posterior, source_bandit, source_outcomes
from assets.resources import MlflowResource, WarehouseResource
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import fixed_clock
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from ml.bandit import POSTERIOR_COLUMNS

# The MLflow store of this module's runs (the learning assets log each materialization).
MLFLOW = MlflowResource(tracking_uri=f"sqlite:///{tempfile.mkdtemp(prefix='ventureloop-mlflow-')}/mlflow.db")

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
NAMES = [source.name for source in SOURCES]
# (source, succeeded) of each finished experiment; None: its opportunity is not in core.opportunities.
FINISHED = [
    ("hackernews", True),
    ("hackernews", True),
    ("hackernews", True),
    ("hackernews", False),
    ("github", False),
    ("github", False),
    ("github", False),
    (None, True),
]


def opportunity(warehouse: Warehouse, number: int, source: str | None) -> str:
    opportunity_id = f"opp-{number}"
    if source is not None:
        warehouse.execute(
            "INSERT INTO core.opportunities (fingerprint, opportunity_id, source, family, external_id, url, "
            "canonical_url, title, body, author, points, comments, created_at, fetched_at, cluster_id, record_id) "
            "VALUES (%s, %s, %s, 'forum', %s, %s, %s, %s, '', NULL, 1, 0, %s, %s, %s, %s)",
            [
                f"fp-{number}",
                opportunity_id,
                source,
                str(number),
                f"https://example.com/{number}",
                f"https://example.com/{number}",
                f"Opportunity {number}",
                T0,
                T0,
                f"cluster-{number}",
                f"record-{number}",
            ],
        )
    return opportunity_id


def finished_experiments(warehouse: Warehouse) -> dict[str, str | None]:
    """The experiments of FINISHED, proposed by the real code, each with an outcome row: experiment id -> source."""
    ids = {}
    with warehouse.held():  # one open DuckDB file for the whole set-up, not one per statement
        for number, (source, succeeded) in enumerate(FINISHED):
            row = {
                "opportunity_id": opportunity(warehouse, number, source),
                "score": 0.5,
                "opportunity_type": "saas",
                "title": f"Opportunity {number}",
                "est_monthly_revenue_cents": 300_000,
            }
            (experiment_id,) = propose_from_scored(warehouse, pd.DataFrame([row]), 1, NEVER, fixed_clock(T0)).created
            cost, revenue = 10_000, 25_000 if succeeded else 2_000
            warehouse.execute(
                "INSERT INTO experiments.outcomes (experiment_id, state, evaluated_at, succeeded, revenue_minor, "
                "cost_minor, net_minor, roi, duration_days, currency, criteria, reason) "
                "VALUES (%s, 'completed', %s, %s, %s, %s, %s, %s, 30.0, 'USD', '{}', 'test')",
                [experiment_id, T0, succeeded, revenue, cost, revenue - cost, (revenue - cost) / cost],
            )
            ids[experiment_id] = source
    return ids


BACKENDS = pytest.mark.parametrize(
    "shared_warehouse", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture(scope="module")
def learned(shared_warehouse: Warehouse) -> tuple[Warehouse, dg.ExecuteInProcessResult]:
    # Once per backend for the module: the tests below only read it (a rerun rebuilds the same table).
    finished_experiments(shared_warehouse)
    result = dg.materialize(
        [source_bandit], resources={"warehouse": WarehouseResource(url=shared_warehouse.url), "mlflow": MLFLOW}
    )
    return shared_warehouse, result


@BACKENDS
def test_the_posterior_counts_each_sources_outcomes(learned):
    warehouse, result = learned
    assert result.success
    table = warehouse.read(POSTERIOR_TABLE).set_index("source")
    # Every configured source has a row; the ones without outcomes hold the Beta(1, 1) prior.
    assert set(table.index) == set(NAMES)
    hn, github = table.loc["hackernews"], table.loc["github"]
    assert (hn.experiments, hn.successes, hn.failures, hn.alpha, hn.beta) == (4, 3, 1, 4.0, 2.0)
    assert hn["mean"] == pytest.approx(4 / 6)
    assert (github.experiments, github.alpha, github.beta) == (3, 1.0, 4.0)
    # ROI 1.5 three times and -0.8 once for hackernews, on the asinh scale, prior NIG(0, 1, 2, 1).
    z = np.arcsinh([1.5, 1.5, 1.5, -0.8])
    assert hn.roi_experiments == 4 and hn.roi_mu == pytest.approx(z.sum() / 5)
    # The table is what LEARNING_DDL declares, and what the asset page documents.
    columns = [*POSTERIOR_COLUMNS, "computed_at"]
    assert list(warehouse.read(POSTERIOR_TABLE).columns) == columns
    assert [column.name for column in COLUMNS.columns] == columns
    untried = table.drop(index=["hackernews", "github"])
    assert (untried["experiments"] == 0).all() and (untried["alpha"] == 1.0).all()
    assert pd.Timestamp(table["computed_at"].iloc[0]).tzinfo is not None

    metadata = result.asset_materializations_for_node("source_bandit")[0].metadata
    assert metadata["favoured_source"].value == "hackernews"
    assert "posterior mean success 0.667" in metadata["why"].value and "4 experiment(s)" in metadata["why"].value
    assert metadata["experiments"].value == 7
    assert metadata["unattributed"].value == 1  # counted, not silently dropped
    assert "| hackernews | 4 | 3 | 0.667 |" in metadata["posterior"].value
    assert len(metadata["posterior"].value) < 1000  # shown in place on the asset page
    assert metadata["metrics"].value["hackernews.success_mean"] == pytest.approx(4 / 6)


@BACKENDS
def test_a_rerun_rebuilds_the_posterior_from_all_outcomes(learned):
    warehouse, _ = learned
    assert dg.materialize(
        [source_bandit], resources={"warehouse": WarehouseResource(url=warehouse.url), "mlflow": MLFLOW}
    ).success
    table = warehouse.read(POSTERIOR_TABLE)
    assert len(table) == len(NAMES)
    assert int(table.loc[table.source == "hackernews", "experiments"].item()) == 4


@BACKENDS
def test_the_schedule_queries_the_sources_it_samples_and_says_why(learned):
    warehouse, _ = learned
    schedule = hourly_discovery(live=False)
    tick = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    context = dg.build_schedule_context(
        scheduled_execution_time=tick, resources={"warehouse": WarehouseResource(url=warehouse.url)}
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    chosen = request.tags[SOURCES_TAG].split(",")
    assert set(request.asset_selection) == {dg.AssetKey(["raw", s]) for s in chosen} | set(DOWNSTREAM)
    # Every source without an outcome is queried; of hackernews and github (the rule: half, rounded
    # up, so one) the better draws.
    assert set(NAMES) - {"hackernews", "github"} <= set(chosen)
    assert "no outcome yet: always queried" in request.tags[REASON_TAG]
    assert "ranked 1 of 2" in request.tags[REASON_TAG]
    assert request.tags[FLOOR_TAG] == "0.2"
    assert request.run_key == f"hourly_discovery:{tick.isoformat()}"
    # The same tick evaluated again chooses the same sources; the selection is one discovery_job can run.
    (again,) = schedule.evaluate_tick(context).run_requests
    assert again.asset_selection == request.asset_selection
    from orchestration.definitions import defs

    defs.resolve_job_def("discovery_job").get_subset(asset_selection=set(request.asset_selection))

    # Over many cycles the posterior shows: hackernews (3 of 4) is queried far more often than github (0 of 3).
    posterior = read_posterior(warehouse)
    rng = np.random.default_rng(0)
    counts = Counter(
        source
        for _ in range(300)
        for source in discovery_request(posterior, NAMES, 0.2, rng).tags[SOURCES_TAG].split(",")
    )
    assert counts["hackernews"] > 2 * counts["github"]
    assert counts["github"] >= 0.2 * 300 * 0.7  # the floor keeps it in play


def test_an_experiment_whose_opportunity_was_never_discovered_takes_its_source_from_the_snapshot(warehouse):
    # The simulated history's experiments: proposed, with a proposal-time snapshot naming the
    # source, for opportunities core.opportunities never held. The table arrives with the
    # proposal snapshot (core/experiments/proposals.py); this creates the columns it requires if absent.
    warehouse.execute(
        "CREATE TABLE IF NOT EXISTS experiments.proposal_features (experiment_id TEXT PRIMARY KEY, "
        "opportunity_id TEXT NOT NULL, proposed_at TIMESTAMPTZ NOT NULL, source TEXT, opportunity_type TEXT NOT NULL, "
        "est_monthly_revenue_cents BIGINT NOT NULL, requested_budget_minor BIGINT NOT NULL, "
        "window_days INTEGER NOT NULL, score DOUBLE PRECISION NOT NULL)"
    )
    row = {
        "opportunity_id": "hist-1",
        "score": 0.5,
        "opportunity_type": "saas",
        "title": "simulated history: saas from reddit",
        "est_monthly_revenue_cents": 300_000,
    }
    (experiment_id,) = propose_from_scored(warehouse, pd.DataFrame([row]), 1, NEVER, fixed_clock(T0)).created
    warehouse.execute(
        "INSERT INTO experiments.proposal_features (experiment_id, opportunity_id, proposed_at, source, "
        "opportunity_type, est_monthly_revenue_cents, requested_budget_minor, window_days, score) "
        "VALUES (%s, 'hist-1', %s, 'reddit', 'saas', 300000, 30000, 30, 0.5) "
        "ON CONFLICT (experiment_id) DO UPDATE SET source = excluded.source",
        [experiment_id, T0],
    )
    warehouse.execute(
        "INSERT INTO experiments.outcomes (experiment_id, state, evaluated_at, succeeded, revenue_minor, "
        "cost_minor, net_minor, roi, duration_days, currency, criteria, reason) "
        "VALUES (%s, 'completed', %s, TRUE, 50000, 10000, 40000, 4.0, 30.0, 'USD', '{}', 'test')",
        [experiment_id, T0],
    )
    attributed, unattributed = source_outcomes(warehouse)
    assert attributed[["experiment_id", "source"]].values.tolist() == [[experiment_id, "reddit"]]
    assert unattributed.empty


def test_without_a_posterior_the_schedule_queries_every_source(tmp_path):
    missing = Warehouse(f"duckdb:///{tmp_path}/none.duckdb")
    empty = Warehouse(f"duckdb:///{tmp_path}/empty.duckdb")
    ensure_schema(empty)  # learning.source_posterior exists, with no row yet
    for warehouse in (missing, empty):
        context = dg.build_schedule_context(
            scheduled_execution_time=datetime(2026, 12, 4, 11, tzinfo=UTC),
            resources={"warehouse": WarehouseResource(url=warehouse.url)},
        )
        (request,) = hourly_discovery(live=False).evaluate_tick(context).run_requests
        assert request.tags[SOURCES_TAG].split(",") == NAMES
        assert request.tags[REASON_TAG] == "no source posterior yet: every source"
    assert not missing.exists()  # reading never creates a warehouse


def test_a_damaged_posterior_is_reported_and_every_source_queried(tmp_path):
    damaged = Warehouse(f"duckdb:///{tmp_path}/damaged.duckdb")
    ensure_schema(damaged)
    damaged.replace(POSTERIOR_TABLE, pd.DataFrame({"source": ["hackernews"], "experiments": [-3], "successes": [1]}))
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 12, 4, 12, tzinfo=UTC),
        resources={"warehouse": WarehouseResource(url=damaged.url)},
    )
    (request,) = hourly_discovery(live=False).evaluate_tick(context).run_requests
    assert request.tags[SOURCES_TAG].split(",") == NAMES
    assert request.tags[REASON_TAG].startswith("source posterior unusable (posterior: missing column(s) ['failures'")


def test_the_exploration_floor_setting_is_a_probability():
    assert exploration_floor({}) == 0.2
    assert exploration_floor({"VENTURELOOP_BANDIT_EXPLORATION_FLOOR": "0.5"}) == 0.5
    for bad in ("1.5", "-0.1", "often", "nan"):
        with pytest.raises(ValueError, match=rf"VENTURELOOP_BANDIT_EXPLORATION_FLOOR='{bad}': use a probability"):
            exploration_floor({"VENTURELOOP_BANDIT_EXPLORATION_FLOOR": bad})


@BACKENDS
def test_the_exploration_floor_comes_from_the_environment(learned, monkeypatch):
    warehouse, _ = learned
    # Floor 1: every source every cycle, whatever the posterior.
    monkeypatch.setenv("VENTURELOOP_BANDIT_EXPLORATION_FLOOR", "1")
    resources = {"warehouse": WarehouseResource(url=warehouse.url)}
    for hour in range(2):
        when = datetime(2026, 12, 4, tzinfo=UTC) + timedelta(hours=hour)
        context = dg.build_schedule_context(scheduled_execution_time=when, resources=resources)
        (request,) = hourly_discovery(live=False).evaluate_tick(context).run_requests
        assert sorted(request.tags[SOURCES_TAG].split(",")) == sorted(NAMES)
        assert request.tags[FLOOR_TAG] == "1"
