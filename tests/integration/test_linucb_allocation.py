"""The experiment_allocations asset on DuckDB and PostgreSQL: LinUCB learns from finished
experiments' features and outcomes and its UCB, not the score, decides who is funded first; a
candidate without features ranks by its score and says so; alpha comes from the config, its
default from VENTURELOOP_LINUCB_ALPHA."""

import tempfile
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.experiments.allocations import AllocationConfig, experiment_allocations, linucb_alpha
from assets.resources import MlflowResource, WarehouseResource
from core.platform.warehouse import Warehouse
from ml.features import FEATURE_COLUMNS, NUMERIC_FEATURES
from tests.integration.test_allocation import T0, allocated, allocation_events, approved, monthly

# Finished hackernews experiments made money, reddit ones lost it: what LinUCB should learn.
NET_PER_BUDGET = {"hackernews": 0.8, "reddit": -0.6}


# LinUCB logs each round that learned something to MLflow: a store of this module's own.
MLFLOW = MlflowResource(tracking_uri=f"sqlite:///{tempfile.mkdtemp(prefix='ventureloop-mlflow-')}/mlflow.db")


def feature_row(experiment_id: str, source: str, proposed_at, rng: np.random.Generator) -> dict:
    row = dict.fromkeys(NUMERIC_FEATURES, 0.0)
    row |= {name: float(rng.normal(0, 1)) for name in ("confidence", "market_trend", "competition")}
    row |= {"budget_minor": 30_000.0, "est_duration_days": 30.0}
    return row | {
        "experiment_id": experiment_id,
        "opportunity_id": f"opp-{experiment_id}",
        "proposed_at": proposed_at,
        "source": source,
        "opportunity_type": "saas",
    }


def history(warehouse: Warehouse, per_source: int = 12) -> None:
    rng = np.random.default_rng(11)
    features, outcomes = [], []
    for source, ratio in NET_PER_BUDGET.items():
        for i in range(per_source):
            key = f"done-{source}-{i:02d}"
            features.append(feature_row(key, source, T0 - timedelta(days=60 - i), rng))
            net = int(30_000 * (ratio + rng.normal(0, 0.1)))
            cost = 30_000
            outcomes.append(
                {
                    "experiment_id": key,
                    "state": "completed",
                    "evaluated_at": T0 - timedelta(days=20 - i),
                    "succeeded": net > 0,
                    "revenue_minor": cost + net,
                    "cost_minor": cost,
                    "net_minor": net,
                    "roi": net / cost,
                    "duration_days": 30.0,
                    "currency": "USD",
                    "criteria": "{}",
                    "reason": "test history",
                }
            )
    warehouse.append("learning.experiment_features", pd.DataFrame(features)[FEATURE_COLUMNS])
    warehouse.append("experiments.outcomes", pd.DataFrame(outcomes))


def candidate_features(warehouse: Warehouse, sources: dict[str, str]) -> None:
    rng = np.random.default_rng(12)
    rows = [feature_row(key, source, T0, rng) for key, source in sources.items()]
    warehouse.append("learning.experiment_features", pd.DataFrame(rows)[FEATURE_COLUMNS])


def materialize(warehouse: Warehouse, alpha: float | None = None) -> dict:
    config = {} if alpha is None else {"ops": {"experiment_allocations": {"config": {"alpha": alpha}}}}
    result = dg.materialize(
        [experiment_allocations],
        resources={
            "warehouse": WarehouseResource(url=warehouse.url),
            "mlflow": MLFLOW,
        },
        run_config=config,
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("experiment_allocations")
    return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}


def test_linucb_funds_what_resembles_past_winners_first_whatever_the_score(warehouse: Warehouse):
    from core.platform.schema import ensure_schema

    ensure_schema(warehouse)
    history(warehouse)
    like_winners, like_losers = approved(warehouse, 0.1), approved(warehouse, 0.9)
    no_features = approved(warehouse, 0.3)
    candidate_features(warehouse, {like_winners: "hackernews", like_losers: "reddit"})
    monthly(warehouse, 100_000)

    metadata = materialize(warehouse, alpha=0.5)
    # The score would fund like_losers first; LinUCB declines it (even its UCB is negative).
    assert allocated(warehouse) == {like_winners: 30_000, like_losers: None, no_features: 30_000}
    assert (metadata["learned_from"], metadata["alpha"], metadata["ranked_by_score"]) == (24, 0.5, 1)
    assert (metadata["allocated"], metadata["declined"]) == (2, 1)
    table = metadata["allocations"]
    assert all(f" {column} " in table.splitlines()[0] for column in ("rank", "ucb", "mean", "width", "limited_by"))
    assert "expected to lose money even optimistically" in table
    assert "ranked by its score: no features for it in learning.experiment_features yet" in table
    events = {e["experiment_id"]: e for e in allocation_events(warehouse)}
    winner = events[like_winners]
    assert winner["basis"] == "linucb" and winner["rank"] == 1
    assert winner["mean"] == pytest.approx(0.8, abs=0.15) and winner["width"] > 0
    assert winner["ucb"] == pytest.approx(winner["mean"] + 0.5 * winner["width"])
    assert events[no_features]["ucb"] == 0.3 and events[no_features]["width"] == 0.0
    metrics = metadata["linucb_metrics"]
    assert metrics["learned_from"] == 24.0 and metrics["alpha"] == 0.5 and metrics["allocated_minor"] == 60_000.0
    assert all(isinstance(value, float) for value in metrics.values())
    assert "source=hackernews" in metadata["theta"]


def test_without_features_or_history_every_candidate_ranks_by_score_and_nothing_crashes(warehouse: Warehouse):
    high, low = approved(warehouse, 0.7), approved(warehouse, 0.2)
    monthly(warehouse, 40_000)
    metadata = materialize(warehouse)  # the features table is empty: nothing to learn from
    assert allocated(warehouse) == {high: 30_000, low: 10_000}
    assert (metadata["learned_from"], metadata["ranked_by_score"], metadata["alpha"]) == (0, 2, 1.0)
    assert "no features for it in learning.experiment_features yet" in metadata["allocations"]
    assert "theta" not in metadata


def test_alpha_defaults_to_the_environment_and_a_bad_value_says_what_to_use():
    assert linucb_alpha({}) == 1.0 and linucb_alpha({"VENTURELOOP_LINUCB_ALPHA": " "}) == 1.0
    assert linucb_alpha({"VENTURELOOP_LINUCB_ALPHA": "0.25"}) == 0.25
    for bad in ("lots", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match=f"VENTURELOOP_LINUCB_ALPHA='{bad}': use a number >= 0"):
            linucb_alpha({"VENTURELOOP_LINUCB_ALPHA": bad})
    assert AllocationConfig().alpha == linucb_alpha()
    with pytest.raises(Exception, match="greater than or equal to 0"):
        AllocationConfig(alpha=-0.5)
