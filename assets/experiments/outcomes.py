"""Experiment outcomes: each completed, failed or rolled-back experiment's revenue, cost, ROI and
duration from the ledger, and whether it met its success criteria (core/experiments/outcomes.py)."""

import dagster as dg

from assets.ledger.entries import ledger_entries
from assets.resources import WarehouseResource, warehouse_kind, warehouse_pool

SHOWN = ["experiment_id", "state", "succeeded", "revenue_minor", "cost_minor", "roi", "duration_days"]
SHOWN_ROWS = 20


@dg.asset(
    group_name="experiments",
    owners=["team:experiments"],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    # Not on experiment_allocations: the money comes from the ledger, and allocation reads the
    # features that are built from these outcomes (experiment_features), which would be a cycle.
    deps=[ledger_entries],
    metadata={"dagster/table_name": "experiments.outcomes"},
    description="One row per completed, failed or rolled-back experiment (upserted as money arrives): revenue "
    "and cost in USD minor units as the experiment_pnl mart counts them, ROI, duration, and whether it met its "
    "success criteria within their window, with the reason.",
)
def experiment_outcomes(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from core.experiments.outcomes import OutcomeError, read_outcomes, record_outcomes
    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    problems = ""
    try:
        recorded = record_outcomes(client)
    except OutcomeError as error:  # the others are recorded; completed_experiments_have_outcomes names the rest
        problems = str(error)
        context.log.warning(problems)
        recorded = error.recorded
    outcomes = read_outcomes(client)
    succeeded = outcomes[outcomes["succeeded"].astype(bool)]
    return dg.MaterializeResult(
        metadata={
            "evaluated": len(recorded),
            "succeeded": len(succeeded),
            "did_not_succeed": len(outcomes) - len(succeeded),
            "revenue_minor": int(outcomes["revenue_minor"].sum()),
            "cost_minor": int(outcomes["cost_minor"].sum()),
            "problems": dg.MetadataValue.md(problems or "none"),
            "outcomes": dg.MetadataValue.md(
                outcomes.sort_values("evaluated_at", ascending=False).head(SHOWN_ROWS)[SHOWN].to_markdown(index=False)
                if len(outcomes)
                else "no finished experiment yet"
            ),
            "dagster/row_count": len(outcomes),
        }
    )


@dg.asset_check(
    asset=experiment_outcomes,
    blocking=True,
    description="Every completed, failed and rolled-back experiment has an outcome row for the state it is in.",
)
def completed_experiments_have_outcomes(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from core.experiments.outcomes import missing_outcomes

    missing = missing_outcomes(warehouse.client())
    return dg.AssetCheckResult(
        passed=missing.empty,
        description="every finished experiment has its outcome"
        if missing.empty
        else f"{len(missing)} finished experiment(s) without an outcome for their state",
        metadata={
            "missing": len(missing),
            "experiments": dg.MetadataValue.md(missing.to_markdown(index=False) if len(missing) else "none"),
        },
    )
