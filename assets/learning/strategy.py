"""The strategy optimizer as an asset: re-estimates the scoring weights from the finished
experiments (ml/strategy.py), backtests them on the latest proposals and records the version,
deployed or rejected, in learning.strategy_weights (core/discovery/strategy_versions.py).
scored_opportunities scores with the deployed version unless its run config sets weights.

No dependency edge to scored_opportunities: the weights come from outcomes, which come from
experiments proposed from the scores, so an edge would close a cycle. The scoring asset reads the
deployed version when it runs."""

import dagster as dg
import pydantic

from assets.experiments.outcomes import experiment_outcomes
from assets.resources import MlflowResource, WarehouseResource, warehouse_kind, warehouse_pool

OWNER = "team:learning"


class StrategyConfig(dg.Config):
    """ml.strategy.StrategySettings: the momentum update, the backtest and the deployment margin."""

    learning_rate: float = 0.02
    momentum: float = 0.9
    steps: int = 20
    holdout_fraction: float = 0.3
    top_k: int = 10
    top_fraction: float = 0.1
    margin: float = 0.05
    min_experiments: int = 30
    shrinkage: float = 1.0

    @pydantic.model_validator(mode="after")
    def _valid_settings(self) -> "StrategyConfig":
        self.settings()  # raises, naming the setting, before the asset reads anything
        return self

    def settings(self):
        from ml.strategy import StrategySettings

        return StrategySettings(**self.model_dump())


def strategy_metrics(result) -> dict[str, float]:
    """What the integrator logs to MLflow for one optimizer run (an ml.strategy.StrategyResult):
    the backtest on both weight vectors, whether it deployed, and each factor's old and new weight."""
    backtest = result.backtest
    metrics = {
        f"backtest_{backtest.metric}_old": float(backtest.old),
        f"backtest_{backtest.metric}_new": float(backtest.new),
        "backtest_gain_minor": float(backtest.new - backtest.old),
        "backtest_correlation_old": backtest.old_correlation,
        "backtest_correlation_new": backtest.new_correlation,
        "backtest_k": float(backtest.k),
        "held_out": float(backtest.holdout),
        "trained_on": float(result.trained_on),
        "deployed": 1.0 if result.deploy else 0.0,
    }
    for name, value in vars(result.old).items():
        metrics[f"weight_{name}_old"] = value
    for name, value in vars(result.new).items():
        metrics[f"weight_{name}_new"] = value
    return metrics


@dg.asset(
    group_name="learning",
    owners=[OWNER],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[experiment_outcomes],
    metadata={"dagster/table_name": "learning.strategy_weights"},
    description="The scoring weights re-estimated from realized outcomes (momentum on a ranking objective), "
    "backtested on the latest finished proposals against the deployed weights and deployed only if they rank "
    "better by a margin; every run appends a version (deployed or rejected). Roll back with "
    "`ventureloop strategy rollback VERSION --reason ...`.",
)
def strategy_weights(
    context: dg.AssetExecutionContext, config: StrategyConfig, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from core.discovery.strategy_versions import (
        DEPLOYED,
        PROPOSALS_TABLE,
        REJECTED,
        deployed,
        learning_history,
        record_version,
    )
    from core.platform.schema import ensure_schema
    from ml.strategy import history

    settings = config.settings()
    client = warehouse.client()
    ensure_schema(client)
    current = deployed(client)
    loaded = learning_history(client)
    finished = None if loaded is None else history(*loaded)
    if finished is None or len(finished) < settings.min_experiments:
        why = (
            f"no proposal-time snapshot ({PROPOSALS_TABLE}) to learn from"
            if finished is None
            else f"{len(finished)} finished experiment(s) with proposal-time features, "
            f"fewer than min_experiments={settings.min_experiments}"
        )
        context.log.info(f"strategy weights unchanged: {why}; version {current.version} stays deployed")
        return dg.MaterializeResult(
            metadata={
                "decision": "skipped",
                "reason": f"{why}: nothing recorded; version {current.version} stays deployed",
                "deployed_version": current.version,
                "finished_experiments": 0 if finished is None else len(finished),
            }
        )

    from ml.strategy import optimize

    result = optimize(finished, current.weights, current.velocity, settings)
    backtest = result.backtest
    # Logged first, so the version row can name its run (a row is never updated afterwards).
    run_id = mlflow.registry().log_run(
        "strategy_weights",
        params={f"weight_{k}": v for k, v in vars(result.new).items()} | {"parent_version": current.version},
        metrics=strategy_metrics(result),
        tables={"weights": result.weights_table()},
        tags={"dagster_run_id": context.run.run_id, "decision": DEPLOYED if result.deploy else REJECTED},
    )
    version = record_version(
        client,
        status=DEPLOYED if result.deploy else REJECTED,
        weights=result.new,
        velocity=result.velocity,
        reason=result.reason,
        parent_version=current.version,
        backtest={
            "metric": backtest.metric,
            "old": backtest.old,
            "new": backtest.new,
            "k": backtest.k,
            "trained_on": result.trained_on,
            "held_out": backtest.holdout,
        },
        mlflow_run_id=run_id,
    )
    context.log.info(f"strategy weights version {version}: {result.reason}")
    return dg.MaterializeResult(
        metadata={
            **mlflow.metadata(run_id),
            "decision": DEPLOYED if result.deploy else REJECTED,
            "reason": result.reason,
            "version": version,
            "parent_version": current.version,
            "deployed_version": version if result.deploy else current.version,
            "weights": dg.MetadataValue.md(result.weights_table().to_markdown(index=False)),
            "backtest": dg.MetadataValue.md(
                f"| weights | realized net of the top {backtest.k} (USD minor) | correlation of score and net |\n"
                "|---|---:|---:|\n"
                f"| old (version {current.version}) | {backtest.old} | {backtest.old_correlation:.4f} |\n"
                f"| new | {backtest.new} | {backtest.new_correlation:.4f} |"
            ),
            "holdout": f"{backtest.holdout} proposals from {backtest.holdout_from} to {backtest.holdout_to}, "
            f"k={backtest.k}",
            "metrics": dg.MetadataValue.json(strategy_metrics(result)),
            "finished_experiments": len(finished),
            "trained_on": result.trained_on,
        }
    )
