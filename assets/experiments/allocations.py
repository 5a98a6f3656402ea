"""Budget allocation: approved experiments without an allocation get one, proportional to score
within the ledger's monthly budgets (core/experiments/allocation.py)."""

import dagster as dg

from assets.experiments.proposals import experiment_proposals
from assets.ledger.entries import budgets
from assets.resources import WarehouseResource, warehouse_kind, warehouse_pool

SHOWN = [
    "experiment_id",
    "category",
    "score",
    "requested_budget_minor",
    "allocated_budget_minor",
    "status",
    "limited_by",
]


@dg.asset(
    group_name="experiments",
    owners=["team:experiments"],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[experiment_proposals, budgets],
    metadata={"dagster/table_name": "experiments.experiments"},
    description="allocated_budget_minor for each approved experiment that has none: proportional to score, "
    "never above its request, within the monthly global, category and experiment budgets' headroom (this "
    "month's spend and earlier unspent allocations count against it); audited; never allocated twice.",
)
def experiment_allocations(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from core.experiments.allocation import allocate
    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    result = allocate(client, actor=f"run:{context.run.run_id}")
    allocated = result[result["status"] == "allocated"]
    waiting = result[result["status"] == "waiting"]
    context.log.info(
        f"{len(allocated)} allocated ({int(allocated['allocated_budget_minor'].sum())} minor units), "
        f"{len(waiting)} waiting for headroom"
    )
    return dg.MaterializeResult(
        metadata={
            "allocated": len(allocated),
            "allocated_minor": int(allocated["allocated_budget_minor"].sum()),
            "waiting_for_headroom": len(waiting),
            "allocations": dg.MetadataValue.md(
                result[SHOWN].to_markdown(index=False) if len(result) else "no approved experiment without one"
            ),
            "dagster/row_count": client.count("experiments.experiments"),
        }
    )
