"""Budget allocation: approved experiments without an allocation get one, in the order of LinUCB's
upper confidence bound on their reward (ml/linucb.py), each up to its request within the ledger's
monthly budgets (core/experiments/allocation.py).

LinUCB learns from every finished experiment that has features (learning.experiment_features
joined to experiments.outcomes, as the previous rounds left them: experiment_outcomes depends on
this asset, so this one reads those tables rather than depending on their assets). A candidate
without features, or every candidate while nothing has been learned, ranks by its score, and
its limited_by says so. The exploration parameter alpha is this asset's config; its default is
VENTURELOOP_LINUCB_ALPHA (1.0 when unset), read when the code location loads."""

import os
from collections.abc import Mapping

import dagster as dg
import pydantic

from assets.experiments.proposals import experiment_proposals
from assets.ledger.entries import budgets
from assets.resources import MlflowResource, WarehouseResource, warehouse_kind, warehouse_pool

SHOWN = [
    "rank",
    "experiment_id",
    "category",
    "score",
    "ucb",
    "mean",
    "width",
    "requested_budget_minor",
    "allocated_budget_minor",
    "status",
    "limited_by",
]
FEATURES_TABLE = "learning.experiment_features"


def linucb_alpha(env: Mapping[str, str] | None = None) -> float:
    """VENTURELOOP_LINUCB_ALPHA, LinUCB's exploration parameter (1.0 when unset)."""
    env = os.environ if env is None else env
    value = env.get("VENTURELOOP_LINUCB_ALPHA") or ""
    if not value.strip():
        return 1.0
    try:
        alpha = float(value)
    except ValueError:
        alpha = float("nan")
    if not alpha >= 0 or alpha == float("inf"):
        raise ValueError(
            f"VENTURELOOP_LINUCB_ALPHA={value!r}: use a number >= 0 (LinUCB's exploration: 0 funds the best mean "
            "first, larger values favour experiments unlike those seen so far; 1.0 when unset)"
        )
    return alpha


class AllocationConfig(dg.Config):
    alpha: float = pydantic.Field(
        default=linucb_alpha(),
        ge=0,
        description="LinUCB's exploration parameter: UCB = mean + alpha * width (0: greedy on the mean). "
        "Default: VENTURELOOP_LINUCB_ALPHA, else 1.0.",
    )
    ridge: float = pydantic.Field(
        default=1.0,
        gt=0,
        description="LinUCB's ridge (A = ridge * I + sum x x^T): how strongly the prior pulls the model to 0.",
    )


@dg.asset(
    group_name="experiments",
    owners=["team:experiments"],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    # The candidates' features: built after the proposals, from what was known when each was proposed.
    deps=[experiment_proposals, budgets, dg.AssetKey("experiment_features")],
    metadata={"dagster/table_name": "experiments.experiments"},
    description="allocated_budget_minor for each approved experiment that has none: ranked by LinUCB's upper "
    "confidence bound on its reward per budget (learned from finished experiments' features and outcomes; "
    "its score when it has no features), each funded in turn up to its request within the monthly global, "
    "category and experiment budgets' headroom (this month's spend and earlier unspent allocations count "
    "against it); nothing for a non-positive UCB; audited; never allocated twice.",
)
def experiment_allocations(
    context: dg.AssetExecutionContext, config: AllocationConfig, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from core.experiments.allocation import Priority, allocate
    from core.experiments.lifecycle import APPROVED
    from core.platform.schema import ensure_schema
    from ml.linucb import allocation_round

    client = warehouse.client()
    ensure_schema(client)
    # Read before allocate's transaction: one approved meanwhile has no priority and ranks by its score.
    candidates = client.query(
        "SELECT experiment_id, score FROM experiments.experiments WHERE state = %s AND allocated_budget_minor IS NULL",
        [APPROVED],
    )
    features = client.read(FEATURES_TABLE)
    outcomes = client.query("SELECT experiment_id, net_minor FROM experiments.outcomes")
    learned = allocation_round(
        features, outcomes, list(candidates["experiment_id"]), alpha=config.alpha, ridge=config.ridge
    )
    scores = dict(zip(candidates["experiment_id"], candidates["score"].astype(float), strict=True))
    priorities = {
        row.experiment_id: Priority(float(row.ucb), float(row.mean), float(row.width))
        for row in learned.priorities.itertuples()
    }
    priorities |= {key: Priority(scores[key], scores[key], 0.0, why) for key, why in learned.fallbacks.items()}

    result = allocate(client, actor=f"run:{context.run.run_id}", priorities=priorities)
    allocated = result[result["status"] == "allocated"]
    waiting = result[result["status"] == "waiting"]
    declined = result[result["status"] == "declined"]
    metrics = {
        **learned.metrics(),
        "allocated": float(len(allocated)),
        "allocated_minor": float(allocated["allocated_budget_minor"].sum()),
        "declined": float(len(declined)),
    }
    context.log.info(
        f"LinUCB (alpha {config.alpha}) learned from {learned.learned_from} finished experiments; "
        f"{len(allocated)} allocated ({int(allocated['allocated_budget_minor'].sum())} minor units), "
        f"{len(waiting)} waiting for headroom, {len(declined)} declined (UCB not positive), "
        f"{len(learned.fallbacks)} ranked by score"
    )
    shown = result.sort_values(["currency", "rank"])[SHOWN] if len(result) else result
    metadata = {
        "allocated": len(allocated),
        "allocated_minor": int(allocated["allocated_budget_minor"].sum()),
        "waiting_for_headroom": len(waiting),
        "declined": len(declined),
        "alpha": config.alpha,
        "learned_from": learned.learned_from,
        "ranked_by_score": len(learned.fallbacks),
        "allocations": dg.MetadataValue.md(
            shown.to_markdown(index=False, floatfmt=".4g") if len(result) else "no approved experiment without one"
        ),
        "linucb_metrics": dg.MetadataValue.json(metrics),
        "dagster/row_count": client.count("experiments.experiments"),
    }
    if learned.skipped:
        metadata["skipped_history"] = dg.MetadataValue.json(learned.skipped)
    if learned.model is not None and len(result):
        run_id = mlflow.registry().log_run(
            "linucb_allocation",
            params={"alpha": config.alpha, "ridge": config.ridge, "features": learned.model.encoding.dimension},
            metrics=metrics,
            tables={"allocations": shown, "theta": learned.model.coefficients().rename_axis("feature").reset_index()},
            tags={"dagster_run_id": context.run.run_id},
        )
        metadata |= mlflow.metadata(run_id)
    if learned.model is not None:
        coefficients = learned.model.coefficients()
        metadata["theta"] = dg.MetadataValue.md(
            coefficients.reindex(coefficients.abs().sort_values(ascending=False).index)
            .to_frame()
            .to_markdown(floatfmt=".4g")
        )
    return dg.MaterializeResult(metadata=metadata)
