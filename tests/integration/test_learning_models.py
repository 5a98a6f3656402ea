"""success_model and revenue_model materialized on a temporary warehouse and a temporary MLflow
store: the first good model becomes champion; a retrain that is not better stays a candidate; a
model failing its gate is registered, not promoted, and its blocking check fails the run; too few
outcomes materialize without a model; scoring takes the champion's probability as confidence."""

from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.discovery.opportunities import scored_opportunities
from assets.learning.models import REVENUE_MODEL, SUCCESS_MODEL, revenue_model, success_model
from assets.resources import MlflowResource, WarehouseResource
from core.experiments.outcomes import OUTCOME_COLUMNS
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from core.simulator.population import population, realize
from ml.features import FINISHED_COLUMNS, build_features
from ml.registry import embedded_tracking_uri

START = datetime(2026, 9, 7, tzinfo=UTC)


def simulated_history(warehouse, n: int, seed: int = 5) -> pd.DataFrame:
    """n finished simulated experiments: their features in learning.experiment_features (as the
    features asset writes them) and their outcomes in experiments.outcomes. Returns the proposals."""
    proposals = population(seed, n, START)
    outcomes = realize(seed, proposals)
    finished = proposals[["experiment_id", "source", "opportunity_type"]].merge(outcomes, on="experiment_id")
    timeline = pd.DataFrame(
        {"opportunity_type": proposals["opportunity_type"], "first_seen_at": proposals["proposed_at"]}
    )
    features = build_features(proposals, finished[FINISHED_COLUMNS], timeline)
    warehouse.replace("learning.experiment_features", features)
    rows = outcomes.assign(
        state="completed",
        evaluated_at=outcomes["finished_at"],
        duration_days=30.0,
        currency="USD",
        criteria="[]",
        reason="simulated",
    )
    warehouse.append("experiments.outcomes", rows[OUTCOME_COLUMNS])
    return proposals


def _resources(warehouse, tmp_path) -> dict:
    return {
        "warehouse": WarehouseResource(url=warehouse.url),
        "mlflow": MlflowResource(tracking_uri=embedded_tracking_uri(tmp_path / "home")),
    }


@pytest.fixture
def resources(warehouse, tmp_path):
    return _resources(warehouse, tmp_path)


@pytest.fixture
def duckdb_warehouse(duckdb_url) -> Warehouse:
    """The promotion flow trains and logs five models: on DuckDB only, to keep CI short; the
    reading of features and outcomes runs on both backends (the too-few test)."""
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    return warehouse


def _run(resources, config=None, assets=(success_model, revenue_model)):
    ops = {a.key.path[-1]: {"config": config} for a in assets} if config else {}
    return dg.materialize(list(assets), resources=resources, run_config={"ops": ops}, raise_on_error=False)


def _metadata(result, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {k: getattr(v, "value", v) for k, v in event.metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_too_few_outcomes_materialize_without_a_model(warehouse, resources):
    simulated_history(warehouse, 25)
    result = _run(resources, assets=[success_model])
    assert result.success
    meta = _metadata(result, "success_model")
    assert meta["trained"] is False and "25 finished experiment(s); a model needs at least 40" in meta["reason"]
    assert _checks(result)["success_model_meets_quality_gates"] is True
    assert resources["mlflow"].registry().champion(SUCCESS_MODEL) is None


def _opportunity_features(proposals: pd.DataFrame) -> pd.DataFrame:
    """core.opportunity_features rows for the population's last opportunities (the columns score reads)."""
    rows = proposals.tail(30).reset_index(drop=True)
    columns = ["opportunity_id", "source", "opportunity_type", "age_days", "confidence", "est_monthly_revenue_cents"]
    return rows[[*columns, "capability_match", "days_to_revenue", "cluster_size"]].assign(
        cluster_id=rows["opportunity_id"], revenue_signal="stated_revenue", title="an opportunity", url="https://x.test"
    )


def test_champion_only_when_better_never_when_a_gate_fails_and_scoring_uses_it(duckdb_warehouse, tmp_path):
    warehouse, resources = duckdb_warehouse, _resources(duckdb_warehouse, tmp_path)
    proposals = simulated_history(warehouse, 800)
    warehouse.replace("core.opportunity_features", _opportunity_features(proposals))
    scoring = {"warehouse": resources["warehouse"], "mlflow": resources["mlflow"]}
    registry = resources["mlflow"].registry()

    before = dg.materialize([scored_opportunities], resources=scoring)
    assert _metadata(before, "scored_opportunities")["confidence_source"] == "formula"
    formula = warehouse.read("core.scored_opportunities").set_index("opportunity_id")

    first = _run(resources)
    assert first.success
    for asset, name in ((success_model, SUCCESS_MODEL), (revenue_model, REVENUE_MODEL)):
        meta = _metadata(first, asset.key.path[-1])
        assert meta["trained"] and meta["mlflow_model_version"] == 1 and meta["champion"] is True
        assert meta["champion_reason"] == "v1 became champion: no champion to beat"
        assert meta["mlflow_run_id"] and registry.champion(name).version == 1
    success = _metadata(first, "success_model")
    assert success["auc"] > 0.55 and success["holdout_rows"] == 200
    assert success["calibration"].startswith("| bin | count | predicted mean | observed rate |")
    assert len(success["calibration"].splitlines()) == 2 + 10
    assert _checks(first) == {"success_model_meets_quality_gates": True, "revenue_model_meets_quality_gates": True}

    # Scoring: the champion's probability is the confidence factor (the seed's weight 0.20).
    after = dg.materialize([scored_opportunities], resources=scoring)
    assert _metadata(after, "scored_opportunities")["confidence_source"] == "champion v1"
    learned = warehouse.read("core.scored_opportunities").set_index("opportunity_id")
    assert np.allclose(formula["factor_confidence"], 0.20 * formula["confidence"].clip(0, 1))
    probability = learned["factor_confidence"] / 0.20
    assert probability.between(0, 1).all() and probability.std() > 0
    assert not np.allclose(probability, learned["confidence"])

    # One run, two verdicts. Success: a gate no model can pass: registered as v2 for inspection,
    # never promoted, its blocking check fails the run. Revenue: the same data and seed train the
    # same model, which does not beat its champion on the same holdout: v2 stays a candidate.
    second = dg.materialize(
        [success_model, revenue_model],
        resources=resources,
        run_config={"ops": {"success_model": {"config": {"min_auc": 0.99}}}},
        raise_on_error=False,
    )
    assert not second.success
    meta = _metadata(second, "success_model")
    assert meta["mlflow_model_version"] == 2 and meta["champion"] is False and meta["champion_version"] == 1
    assert meta["champion_reason"] == "v2 stays a candidate: its quality gates failed"
    assert registry.versions(SUCCESS_MODEL)[-1].tags["gates"] == "failed"
    revenue = _metadata(second, "revenue_model")
    assert revenue["mlflow_model_version"] == 2 and revenue["champion"] is False
    assert "v2 stays a candidate: does not beat champion v1" in revenue["champion_reason"]
    assert _checks(second) == {"success_model_meets_quality_gates": False, "revenue_model_meets_quality_gates": True}
    assert registry.champion(SUCCESS_MODEL).version == 1 and registry.champion(REVENUE_MODEL).version == 1
