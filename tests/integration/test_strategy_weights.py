"""Strategy weights on a real warehouse, both backends: versions are appended (deployed, rejected,
rolled back), deployed_weights follows them, scored_opportunities scores with the deployed version
unless its run config sets weights, and the strategy_weights asset learns from the history, or
records nothing when there is too little of it."""

import tempfile
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.discovery import scoring_weights
from assets.discovery.opportunities import scored_opportunities
from assets.learning.strategy import strategy_weights
from assets.resources import MlflowResource, WarehouseResource
from core.discovery.strategy_versions import (
    PROPOSALS_TABLE,
    StrategyVersionError,
    UnknownVersion,
    deployed_weights,
    record_version,
    rollback,
    versions,
)
from core.discovery.weights import Weights
from core.ledger.audit import fixed_clock
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse

# The MLflow store of this module's runs (the learning assets log each materialization).
MLFLOW = MlflowResource(tracking_uri=f"sqlite:///{tempfile.mkdtemp(prefix='ventureloop-mlflow-')}/mlflow.db")

START = datetime(2026, 9, 1, tzinfo=UTC)
LEARNED = Weights(revenue=0.1, confidence=0.1, time_to_revenue=0.1, capability=0.6, timing=0.1)
BACKTEST = {"metric": "top_k_net_minor", "old": 70_000, "new": 90_000, "k": 10, "trained_on": 70, "held_out": 30}

# experiments.proposal_features in the shape ISSUE8.md gives it (the FEATURES helper's table).
PROPOSAL_FEATURES_DDL = f"""CREATE TABLE IF NOT EXISTS {PROPOSALS_TABLE} (
    experiment_id TEXT PRIMARY KEY, opportunity_id TEXT NOT NULL, proposed_at TIMESTAMPTZ NOT NULL,
    source TEXT NOT NULL, opportunity_type TEXT NOT NULL, age_days DOUBLE PRECISION NOT NULL,
    confidence DOUBLE PRECISION NOT NULL, est_monthly_revenue_cents BIGINT NOT NULL,
    capability_match DOUBLE PRECISION NOT NULL, days_to_revenue DOUBLE PRECISION NOT NULL,
    cluster_size BIGINT NOT NULL, requested_budget_minor BIGINT NOT NULL, window_days BIGINT NOT NULL,
    score DOUBLE PRECISION NOT NULL
)"""


def finished_history(warehouse: Warehouse, n: int, finished: int | None = None) -> None:
    """n proposals an hour apart, the first `finished` (default all) with an outcome whose net rises
    with the capability match."""
    rng = np.random.default_rng(7)
    ids = [f"exp-{i:04d}" for i in range(n)]
    capability = rng.uniform(0, 1, n)
    warehouse.execute(PROPOSAL_FEATURES_DDL)
    warehouse.append(
        PROPOSALS_TABLE,
        pd.DataFrame(
            {
                "experiment_id": ids,
                "opportunity_id": [f"opp-{i:04d}" for i in range(n)],
                "proposed_at": [START + timedelta(hours=i) for i in range(n)],
                "source": "hackernews",
                "opportunity_type": "saas",
                "age_days": rng.uniform(0, 30, n),
                "confidence": rng.uniform(0, 1, n),
                "est_monthly_revenue_cents": rng.integers(0, 1_000_000, n),
                "capability_match": capability,
                "days_to_revenue": rng.uniform(0, 120, n),
                "cluster_size": 1,
                "requested_budget_minor": 10_000,
                "window_days": 30,
                "score": 0.5,
            }
        ),
    )
    done = n if finished is None else finished
    net = (capability * 100_000 + rng.normal(0, 5_000, n)).round().astype("int64")[:done]
    warehouse.append(
        "experiments.outcomes",
        pd.DataFrame(
            {
                "experiment_id": ids[:done],
                "state": "completed",
                "evaluated_at": START + timedelta(days=30),
                "succeeded": net > 50_000,
                "revenue_minor": net + 10_000,
                "cost_minor": 10_000,
                "net_minor": net,
                "roi": net / 10_000,
                "duration_days": 30.0,
                "currency": "USD",
                "criteria": "{}",
                "reason": "test",
            }
        ),
    )


def opportunity_features(warehouse: Warehouse) -> pd.DataFrame:
    """Three opportunities with the columns scoring reads, one strong on each of two factors."""
    features = pd.DataFrame(
        {
            "opportunity_id": ["opp-rich", "opp-fit", "opp-plain"],
            "source": "hackernews",
            "title": ["Big revenue, no fit", "Small revenue, perfect fit", "Average"],
            "opportunity_type": "saas",
            "cluster_id": ["c1", "c2", "c3"],
            "revenue_signal": "price",
            "est_monthly_revenue_cents": [1_000_000, 10_000, 300_000],
            "confidence": 0.5,
            "days_to_revenue": 30.0,
            "capability_match": [0.0, 1.0, 0.5],
            "age_days": 7.0,
        }
    )
    warehouse.replace("core.opportunity_features", features)
    return features


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key.to_user_string() == key
    ]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def _materialize(asset, warehouse: Warehouse, config: dict | None = None) -> dict:
    result = dg.materialize(
        [asset],
        resources={"warehouse": WarehouseResource(url=warehouse.url), "mlflow": MLFLOW},
        run_config={"ops": {asset.op.name: {"config": config}}} if config is not None else None,
    )
    assert result.success
    return _metadata(result, asset.key.to_user_string())


def test_versions_are_appended_and_a_rollback_restores_earlier_weights(warehouse: Warehouse):
    clock = fixed_clock(START)
    assert deployed_weights(warehouse) == (Weights(), 0)
    assert versions(warehouse).empty

    first = record_version(
        warehouse, status="deployed", weights=LEARNED, velocity={"capability": 0.01}, reason="better", clock=clock
    )
    worse = Weights(revenue=1.0, confidence=0.0, time_to_revenue=0.0, capability=0.0, timing=0.0)
    second = record_version(warehouse, status="rejected", weights=worse, velocity={}, reason="worse", clock=clock)
    assert (first, second) == (1, 2)
    assert deployed_weights(warehouse) == (LEARNED, 1)  # a rejected version changes nothing
    before = versions(warehouse)

    third = rollback(warehouse, 0, actor="operator", reason="the learned weights overfit", clock=clock)
    assert third == 3
    assert deployed_weights(warehouse) == (Weights(), 3)
    fourth = rollback(warehouse, 1, actor="operator", reason="it was fine after all", clock=clock)
    assert deployed_weights(warehouse) == (LEARNED, fourth)

    table = versions(warehouse)
    assert table["status"].tolist() == ["deployed", "rejected", "rolled_back", "rolled_back"]
    assert table["parent_version"].tolist() == [0, 1, 1, 3]
    assert table["restores_version"].iloc[2:].astype(int).tolist() == [0, 1]
    assert table["actor"].iloc[2:].tolist() == ["operator", "operator"]
    assert table.iloc[0]["backtest_old"] is None or pd.isna(table.iloc[0]["backtest_old"])
    # Append-only: the rows that were there are exactly as they were.
    # Each version is an audit event, in the same chain as the ledger's.
    events = warehouse.query("SELECT event_type, payload FROM audit.events ORDER BY seq")
    assert events["event_type"].tolist() == ["strategy_weights.recorded"] * 2 + ["strategy_weights.rolled_back"] * 2
    assert '"restores_version":0' in events["payload"].iloc[2] and '"actor":"operator"' in events["payload"].iloc[2]
    assert verify(warehouse).ok
    kept = ["version", "status", "weights", "velocity", "parent_version", "reason", "actor", "created_at"]
    pd.testing.assert_frame_equal(table.iloc[:2][kept].reset_index(drop=True), before[kept], check_dtype=False)


def test_rollback_refusals_say_why(warehouse: Warehouse):
    with pytest.raises(UnknownVersion, match="no strategy weights version 5: only version 0"):
        rollback(warehouse, 5, actor="operator", reason="r")
    with pytest.raises(StrategyVersionError, match="version 0 is the deployed version already"):
        rollback(warehouse, 0, actor="operator", reason="r")
    record_version(warehouse, status="deployed", weights=LEARNED, velocity={}, reason="r", backtest=BACKTEST)
    record_version(warehouse, status="rejected", weights=Weights(), velocity={}, reason="r")
    with pytest.raises(UnknownVersion, match="versions are 0 to 2"):
        rollback(warehouse, 3, actor="operator", reason="r")
    with pytest.raises(StrategyVersionError, match="version 2 was rejected by its backtest"):
        rollback(warehouse, 2, actor="operator", reason="r")
    with pytest.raises(StrategyVersionError, match="needs a reason"):
        rollback(warehouse, 0, actor="operator", reason=" ")
    with pytest.raises(StrategyVersionError, match="records deployed or rejected"):
        record_version(warehouse, status="rolled_back", weights=LEARNED, velocity={}, reason="r")
    assert len(versions(warehouse)) == 2


def test_scored_opportunities_use_the_deployed_version_unless_the_run_config_sets_weights(warehouse: Warehouse):
    features = opportunity_features(warehouse)
    seed = _materialize(scored_opportunities, warehouse)
    assert (seed["weights_version"], seed["weights_source"]) == (0, "strategy weights version 0")

    version = record_version(warehouse, status="deployed", weights=LEARNED, velocity={}, reason="r")
    # What the discovery job's config mapping passes when its run config sets no weight.
    mapped = scoring_weights.config_fn(scoring_weights.config_schema.config_type.post_process({}))
    unset = mapped["ops"]["scored_opportunities"]["config"]
    assert set(unset.values()) == {None}
    learned = _materialize(scored_opportunities, warehouse, unset)
    assert learned["weights_version"] == version and learned["weights"] == vars(LEARNED)
    scored = warehouse.read("core.scored_opportunities").set_index("opportunity_id")
    assert scored["factor_capability"].to_dict() == pytest.approx(
        (features.set_index("opportunity_id")["capability_match"] * LEARNED.capability).to_dict()
    )
    assert scored["rank"].idxmin() == "opp-fit"  # the learned weights favour the fit over the revenue

    explicit = _materialize(
        scored_opportunities,
        warehouse,
        {"revenue_weight": 1.0, "confidence_weight": 0, "time_to_revenue_weight": 0, "capability_weight": 0,
         "timing_weight": 0},
    )  # fmt: skip
    assert explicit["weights_source"] == "run config" and "weights_version" not in explicit
    assert warehouse.read("core.scored_opportunities").sort_values("rank")["opportunity_id"].iloc[0] == "opp-rich"


def test_the_asset_learns_records_a_deployed_version_with_its_backtest(warehouse: Warehouse):
    finished_history(warehouse, 120)
    meta = _materialize(strategy_weights, warehouse)
    assert meta["decision"] == "deployed" and meta["version"] == 1 and meta["parent_version"] == 0
    assert meta["metrics"]["backtest_top_k_net_minor_new"] > meta["metrics"]["backtest_top_k_net_minor_old"]
    assert "| capability " in meta["weights"] and "realized net of the top 10" in meta["backtest"]
    weights, version = deployed_weights(warehouse)
    assert version == 1 and weights.capability > Weights().capability
    (row,) = versions(warehouse).itertuples()
    assert (row.status, row.trained_on, row.held_out, row.backtest_k) == ("deployed", 84, 36, 10)
    assert row.backtest_new == meta["metrics"]["backtest_top_k_net_minor_new"]
    assert MLFLOW.registry().run(row.mlflow_run_id)["tags"]["decision"] == "deployed"  # the run that logged it

    # The next run starts from version 1; an impossible margin rejects and version 1 stays deployed.
    again = _materialize(strategy_weights, warehouse, {"margin": 1.0})
    assert again["decision"] == "rejected" and again["parent_version"] == 1 and again["deployed_version"] == 1
    assert deployed_weights(warehouse) == (weights, 1)
    assert versions(warehouse)["status"].tolist() == ["deployed", "rejected"]


def test_the_asset_records_nothing_with_too_few_finished_experiments(warehouse: Warehouse):
    with pytest.raises(Exception, match=r"momentum must be in \[0, 1\)"):
        _materialize(strategy_weights, warehouse, {"momentum": 1.5})
    without = _materialize(strategy_weights, warehouse)
    assert without["decision"] == "skipped" and "0 finished experiment(s)" in without["reason"]

    finished_history(warehouse, 40, finished=12)
    meta = _materialize(strategy_weights, warehouse)
    assert meta["decision"] == "skipped" and meta["finished_experiments"] == 12
    assert "12 finished experiment(s)" in meta["reason"] and "min_experiments=30" in meta["reason"]
    assert versions(warehouse).empty and deployed_weights(warehouse) == (Weights(), 0)
