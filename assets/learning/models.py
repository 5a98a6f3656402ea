"""The success and revenue predictors as assets: each materialization trains a candidate on the
finished experiments (learning.experiment_features joined to experiments.outcomes), registers it
as a new MLflow version, scores the current champion on the candidate's own holdout, and moves the
`champion` alias only when the candidate passes its quality gates AND beats the champion there.

The quality gates are the asset's blocking check (`<model>_meets_quality_gates`). They are
evaluated once, and that one evaluation both decides promotion and is what the check reports:
`should_promote` refuses any candidate whose gates failed, so a model below its minimum metric or
predicting constants is registered (its version tagged `gates=failed`, for inspection) but never
becomes champion; the check then fails with ERROR severity, which fails the step after its
materialization is recorded and keeps every downstream asset from running on it.

Too few finished experiments (or only one outcome) is the normal state of a young loop, not a
failure: the asset materializes with `trained: false` and the reason, registers nothing, and the
check passes with "no candidate to judge". Scoring then keeps the seed's formula.

Heavy imports (xgboost, sklearn, mlflow) happen inside the assets."""

import math

import dagster as dg

from assets.experiments.outcomes import experiment_outcomes
from assets.learning.features import TABLE as FEATURES_TABLE
from assets.learning.features import experiment_features
from assets.resources import MlflowResource, WarehouseResource, warehouse_kind, warehouse_pool

OWNER = "team:learning"
SUCCESS_MODEL = "success_model"
REVENUE_MODEL = "revenue_model"


class ModelTrainingConfig(dg.Config):
    """How a predictor is trained and judged (ml.predictors)."""

    holdout_fraction: float = 0.25  # the latest proposals by proposed_at; never shuffled
    min_experiments: int = 40  # finished experiments needed before a model is trained
    min_auc: float = 0.55  # the success model's gate; the revenue model must beat the constant
    seed: int = 0


def _check_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        f"{asset}_meets_quality_gates",
        asset=asset,
        blocking=True,
        description="The candidate passes its minimum metric on the time-ordered holdout and does not predict "
        "a constant; a failing candidate is registered but never promoted.",
    )


def train_and_promote(kind: str, name: str, config: ModelTrainingConfig, warehouse, mlflow) -> dg.MaterializeResult:
    """Train, register, compare with the champion on the same holdout, promote if better; the
    materialization's metadata and the gates check say what happened and why."""
    from core.experiments.outcomes import read_outcomes
    from core.platform.schema import ensure_schema
    from ml import predictors
    from ml.features import training_frame

    client = warehouse.client()
    ensure_schema(client)  # a warehouse the features asset has not reached yet has no tables to read
    check = f"{name}_meets_quality_gates"
    frame = training_frame(client.read(FEATURES_TABLE), read_outcomes(client))
    train = predictors.train_success if kind == predictors.SUCCESS else predictors.train_revenue
    options = {"holdout_fraction": config.holdout_fraction, "min_experiments": config.min_experiments}
    if kind == predictors.SUCCESS:
        options["min_auc"] = config.min_auc
    try:
        candidate = train(frame, seed=config.seed, **options)
    except predictors.TrainingDataError as error:
        return dg.MaterializeResult(
            metadata={"trained": False, "reason": str(error), "finished_experiments": len(frame), "champion": False},
            check_results=[
                dg.AssetCheckResult(
                    check_name=check,
                    passed=True,
                    description=f"no candidate to judge: {error}",
                    metadata={"trained": False},
                )
            ],
        )

    registry = mlflow.registry()
    metric, higher_is_better = predictors.PRIMARY[kind]
    champion = registry.champion(name)
    champion_metric, champion_label = None, "the champion"
    if champion is not None:
        champion_label = f"champion v{champion.version}"
        champion_metric = _champion_on(kind, registry, name, champion.version, candidate)
    promote, why = predictors.should_promote(
        candidate.metrics[metric],
        champion_metric,
        higher_is_better=higher_is_better,
        gates_passed=candidate.passed,
        champion=champion_label,
    )
    logged_metrics = {k: v for k, v in candidate.metrics.items() if not math.isnan(v)}
    if champion_metric is not None and not math.isnan(champion_metric):
        logged_metrics[f"champion_{metric}_on_holdout"] = champion_metric
    version = registry.log_model(
        name,
        candidate.model,
        flavor="xgboost",
        params={**candidate.params, "features": list(candidate.model.get_booster().feature_names)},
        metrics=logged_metrics,
        tables=candidate.tables,
        tags={
            "kind": kind,
            "gates": "passed" if candidate.passed else "failed",
            "gate_reasons": "; ".join(candidate.reasons),
            "holdout_from": candidate.split.cutoff.isoformat(),
            "decision": why,
        },
    )
    reasons_md = "\n".join(f"- {reason}" for reason in candidate.reasons)
    # The check is built first and promotion keys off it: the alias moves only behind a passed gate.
    gates = dg.AssetCheckResult(
        check_name=check,
        passed=candidate.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"v{version.version} passes its gates"
            if candidate.passed
            else f"v{version.version} fails its gates and is not promoted"
        ),
        metadata={"model_version": version.version, "gates": dg.MetadataValue.md(reasons_md)},
    )
    promote = promote and gates.passed
    if promote:
        registry.promote(name, version.version, reason=why)
    current = version.version if promote else (champion.version if champion else None)
    verdict = (
        f"v{version.version} became champion: {why}" if promote else f"v{version.version} stays a candidate: {why}"
    )
    metadata = {
        "trained": True,
        **mlflow.metadata(version, logged_metrics),  # run id, model version and uri, each metric
        "champion": promote,
        "champion_reason": verdict,
        "champion_version": current if current is not None else "none",
        "compared_with": champion_label if champion else "none",
        "gates": dg.MetadataValue.md(reasons_md),
        "holdout_from": candidate.split.cutoff.isoformat(),
        "train_rows": len(candidate.split.train),
        "holdout_rows": len(candidate.split.holdout),
    }
    if "calibration" in candidate.tables:
        metadata["calibration"] = dg.MetadataValue.md(calibration_markdown(candidate.tables["calibration"]))
    return dg.MaterializeResult(metadata=metadata, check_results=[gates])


def calibration_markdown(table) -> str:
    """The calibration table (ml.predictors.calibration_table) as markdown: bin and count as integers."""
    lines = ["| bin | count | predicted mean | observed rate | low | high |", "|---:|---:|---:|---:|---:|---:|"]
    for row in table.itertuples(index=False):
        numbers = " | ".join(f"{v:.3f}" for v in (row.predicted_mean, row.observed_rate, row.low, row.high))
        lines.append(f"| {row.bin} | {row.count} | {numbers} |")
    return "\n".join(lines)


def _champion_on(kind: str, registry, name: str, version: int, candidate) -> float:
    """The champion's primary metric on the candidate's holdout; NaN when it cannot score it (its
    features are not the current ones): the candidate is then compared with nothing."""
    from xgboost.core import XGBoostError

    from ml import predictors

    metric, _ = predictors.PRIMARY[kind]
    model = registry.load(name, version)
    try:
        metrics, _, _ = predictors.evaluate(kind, model, candidate.split.holdout)
    except (ValueError, KeyError, XGBoostError):
        return float("nan")
    return metrics[metric]


@dg.asset(
    group_name="learning",
    owners=[OWNER],
    kinds={"xgboost", "mlflow", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[experiment_features, experiment_outcomes],
    check_specs=[_check_spec(SUCCESS_MODEL)],
    description="XGBoost classifier of experiment success on proposal-time features; a new MLflow version per "
    "materialization, champion only if it beats the current one on the same time-ordered holdout.",
)
def success_model(
    config: ModelTrainingConfig, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from ml.predictors import SUCCESS

    return train_and_promote(SUCCESS, SUCCESS_MODEL, config, warehouse, mlflow)


@dg.asset(
    group_name="learning",
    owners=[OWNER],
    kinds={"xgboost", "mlflow", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[experiment_features, experiment_outcomes],
    check_specs=[_check_spec(REVENUE_MODEL)],
    description="XGBoost regression of log1p(revenue) (pseudo-Huber loss) on proposal-time features; champion "
    "only if its RMSLE beats the current one's on the same holdout.",
)
def revenue_model(
    config: ModelTrainingConfig, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from ml.predictors import REVENUE

    return train_and_promote(REVENUE, REVENUE_MODEL, config, warehouse, mlflow)


def proposals_now(features, as_of):
    """core.opportunity_features rows as if each were proposed at `as_of` (the build_features
    proposals shape): the success model scores an opportunity as the proposal it would become."""
    import pandas as pd

    from core.experiments.proposals import WINDOW_DAYS, requested_budget_minor

    frame = pd.DataFrame(
        {
            "experiment_id": features["opportunity_id"].astype(str).to_numpy(),
            "opportunity_id": features["opportunity_id"].astype(str).to_numpy(),
            "proposed_at": pd.Timestamp(as_of),
        },
        index=features.index,
    )
    for column in ("source", "opportunity_type", "age_days", "confidence", "est_monthly_revenue_cents"):
        frame[column] = features[column].to_numpy()
    for column in ("capability_match", "days_to_revenue", "cluster_size"):
        frame[column] = features[column].to_numpy() if column in features else float("nan")
    frame["requested_budget_minor"] = [requested_budget_minor(int(v)) for v in features["est_monthly_revenue_cents"]]
    frame["window_days"] = WINDOW_DAYS
    return frame


def champion_confidence(client, registry, features, as_of):
    """(P(success) per row of `features` from the champion success model, "champion vN"), or
    (None, "formula ...") when there is no champion or it cannot score: scoring then keeps the
    seed's confidence. Never raises for a missing or unreachable registry: discovery goes on."""
    from ml.registry import RegistryError, sqlite_path

    database = sqlite_path(registry.tracking_uri)
    if database is not None and not database.exists():  # nothing ever trained: skip importing mlflow
        return None, "formula"
    try:
        champion = registry.champion(SUCCESS_MODEL)
        if champion is None:
            return None, "formula"
        model = registry.load(SUCCESS_MODEL, champion.version)
    except RegistryError as error:
        return None, f"formula (the registry could not be read: {error})"
    import pandas as pd
    from xgboost.core import XGBoostError

    from assets.learning.features import read_inputs
    from ml.features import build_features
    from ml.predictors import success_probability

    inputs = read_inputs(client)  # the features asset's own history: finished experiments, the timeline
    try:
        built = build_features(proposals_now(features, as_of), inputs["finished"], inputs["opportunities"])
        probability = success_probability(model, built)
    except (ValueError, KeyError, XGBoostError) as error:
        return None, f"formula (champion v{champion.version} could not score: {error})"
    by_id = pd.Series(probability, index=built["opportunity_id"].to_numpy())
    return pd.Series(features["opportunity_id"].astype(str).map(by_id).to_numpy(), index=features.index), (
        f"champion v{champion.version}"
    )
