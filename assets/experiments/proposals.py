"""Experiment proposals: the top scored opportunities become proposed experiments, and the
approval policy (core/experiments/config/approval.yaml) approves those it may."""

import dagster as dg

from assets.discovery.opportunities import scored_opportunities
from assets.resources import WarehouseResource, warehouse_kind, warehouse_pool


class ExperimentProposalsConfig(dg.Config):
    """How many cluster leads, best score first, to propose in this run."""

    top_n: int = 10


@dg.asset(
    group_name="experiments",
    owners=["team:experiments"],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[scored_opportunities],
    metadata={"dagster/table_name": "experiments.experiments"},
    description="One proposed experiment per top-scored opportunity (idempotent: a rerun creates none "
    "twice), with its hypothesis, budget, success criteria and playbook; auto-approved by the policy "
    "when cheap and promising enough, otherwise waiting for `ventureloop experiments approve`.",
)
def experiment_proposals(
    context: dg.AssetExecutionContext, config: ExperimentProposalsConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    from core.experiments.proposals import load_policy, propose_from_scored
    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    policy = load_policy()
    report = propose_from_scored(
        client, client.read("core.scored_opportunities"), config.top_n, policy, actor=f"run:{context.run.run_id}"
    )
    context.log.info(report.summary())
    for message in report.conflicts + report.skipped:
        context.log.warning(message)
    return dg.MaterializeResult(
        metadata={
            "created": len(report.created),
            "unchanged": len(report.unchanged),
            "auto_approved": len(report.approved),
            "waiting_for_approval": len(report.waiting),
            "conflicts": dg.MetadataValue.md("\n".join(f"- {m}" for m in report.conflicts) or "none"),
            "skipped": dg.MetadataValue.md("\n".join(f"- {m}" for m in report.skipped) or "none"),
            "policy": f"auto-approve at most {policy.max_budget_minor} {policy.currency} minor units "
            f"and a score of at least {policy.min_score}",
            "experiments_total": (experiments := client.count("experiments.experiments")),
            "dagster/row_count": experiments,
        }
    )
