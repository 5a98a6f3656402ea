"""The source bandit: each discovery source's posterior on experiment success (Beta) and on
normalized ROI (normal-inverse-gamma), from the outcomes of the experiments its opportunities
became (ml/bandit.py). The discovery schedule (assets/discovery/__init__.py) samples from it."""

import dagster as dg

from assets.discovery.raw import SOURCES
from assets.resources import MlflowResource, WarehouseResource, warehouse_kind, warehouse_pool

POSTERIOR_TABLE = "learning.source_posterior"
UNATTRIBUTED_SHOWN = 10
COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("source", "string", description="The discovery source (raw/<source> asset)."),
        dg.TableColumn("experiments", "int", description="Finished experiments from its opportunities."),
        dg.TableColumn("successes", "int", description="Of those, how many met their success criteria."),
        dg.TableColumn("failures", "int", description="Of those, how many did not (failed and rolled back included)."),
        dg.TableColumn("alpha", "float", description="Beta posterior on P(success): 1 + successes."),
        dg.TableColumn("beta", "float", description="Beta posterior on P(success): 1 + failures."),
        dg.TableColumn("mean", "float", description="Posterior mean P(success), alpha / (alpha + beta)."),
        dg.TableColumn("roi_experiments", "int", description="Experiments with an ROI (a cost was booked)."),
        dg.TableColumn("roi_mu", "float", description="Posterior mean of asinh(ROI) (normal-inverse-gamma)."),
        dg.TableColumn("roi_kappa", "float", description="NIG: pseudo-observations behind roi_mu."),
        dg.TableColumn("roi_shape", "float", description="NIG: inverse-gamma shape of the ROI variance."),
        dg.TableColumn("roi_rate", "float", description="NIG: inverse-gamma rate of the ROI variance."),
        dg.TableColumn("roi_mean_sd", "float", description="Posterior standard deviation of roi_mu (Student-t)."),
        dg.TableColumn("computed_at", "timestamp", description="When source_bandit computed it (UTC)."),
    ]
)

# Every finished experiment (completed, failed, rolled back) with the source of its opportunity; a
# failed or rolled-back one did not succeed. The LEFT JOINs keep an outcome whose source is known
# nowhere, so that it is counted as unattributed rather than silently lost.
OUTCOMES_BY_SOURCE = """
SELECT o.experiment_id, e.opportunity_id, {source} AS source, o.state, o.succeeded, o.roi, o.evaluated_at
FROM experiments.outcomes o
JOIN experiments.experiments e ON e.experiment_id = o.experiment_id
LEFT JOIN core.opportunities p ON p.opportunity_id = e.opportunity_id
{snapshot_join}
ORDER BY o.experiment_id
"""
# The proposal-time snapshot (core/experiments/proposals.py, one row per experiment proposed since
# it exists) names the source too: the simulated history's opportunities (core/simulator/history.py)
# are in it but not in core.opportunities, and an experiment proposed before the snapshot existed
# is only in core.opportunities. Read only when the table is there.
SNAPSHOT_TABLE = "experiments.proposal_features"


def source_outcomes(client):
    """(attributed outcomes, unattributed outcomes): experiments.outcomes with each experiment's
    source, from its opportunity in core.opportunities or else its proposal-time snapshot."""
    if client.table_exists(SNAPSHOT_TABLE):
        sql = OUTCOMES_BY_SOURCE.format(
            source="COALESCE(p.source, f.source)",
            snapshot_join=f"LEFT JOIN {SNAPSHOT_TABLE} f ON f.experiment_id = o.experiment_id",
        )
    else:
        sql = OUTCOMES_BY_SOURCE.format(source="p.source", snapshot_join="")
    frame = client.query(sql)
    unattributed = frame["source"].isna()
    return frame[~unattributed].reset_index(drop=True), frame[unattributed].reset_index(drop=True)


def read_posterior(client):
    """learning.source_posterior, or None when the warehouse or the table is not there yet (the
    schedule then queries every source). Never creates a warehouse."""
    if not client.exists() or not client.table_exists(POSTERIOR_TABLE):
        return None
    return client.read(POSTERIOR_TABLE)


def posterior_metrics(posterior) -> dict[str, float]:
    """The numbers to log to an experiment tracker for one materialization (ml.bandit.posterior_metrics)."""
    from ml.bandit import posterior_metrics as metrics

    return metrics(posterior)


def posterior_markdown(posterior) -> str:
    """The posterior as a table short enough for the asset page to show in place (below ~1,000
    characters, see assets/discovery/opportunities.py): best posterior mean first."""
    if posterior.empty:
        return "no source yet"
    rows = [
        f"| {r.source} | {r.experiments} | {r.successes} | {r.mean:.3f} | {r.roi_mu:+.2f} ± {r.roi_mean_sd:.2f} |"
        for r in posterior.itertuples()
    ]
    return "| source | experiments | succeeded | P(success) | asinh ROI |\n|---|---:|---:|---:|---:|\n" + "\n".join(
        rows
    )


@dg.asset(
    group_name="learning",
    owners=["team:learning"],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[dg.AssetKey("experiment_outcomes"), dg.AssetKey("opportunities")],
    metadata={"dagster/table_name": POSTERIOR_TABLE, "dagster/column_schema": COLUMNS},
    description="Per discovery source: Beta posterior on experiment success and normal-inverse-gamma posterior "
    "on asinh(ROI), from every finished experiment's outcome; the discovery schedule Thompson-samples it to "
    "choose which sources to query, with an exploration floor per source.",
)
def source_bandit(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from datetime import UTC, datetime

    from core.platform.schema import ensure_schema
    from ml.bandit import favoured, posterior

    client = warehouse.client()
    ensure_schema(client)
    outcomes, unattributed = source_outcomes(client)
    if len(unattributed):
        context.log.warning(
            f"{len(unattributed)} outcome(s) have no opportunity in core.opportunities and are not counted: "
            f"{', '.join(unattributed['experiment_id'].head(UNATTRIBUTED_SHOWN))}"
        )
    table = posterior(outcomes, sources=[s.name for s in SOURCES])
    client.replace(POSTERIOR_TABLE, table.assign(computed_at=datetime.now(UTC)))
    best = favoured(table)
    metrics = posterior_metrics(table)
    run_id = mlflow.registry().log_run(
        "source_bandit",
        params={"prior": "Beta(1, 1); NIG(0, 1, 2, 1) on asinh(roi)", "sources": len(table)},
        metrics=metrics,
        tables={"posterior": table},
        tags={"dagster_run_id": context.run.run_id, "favoured_source": best[0] if best else "none yet"},
    )
    return dg.MaterializeResult(
        metadata={
            **mlflow.metadata(run_id),
            "posterior": dg.MetadataValue.md(posterior_markdown(table)),
            "favoured_source": best[0] if best else "none yet",
            "why": best[1] if best else "no experiment has finished yet: every source is queried",
            "experiments": len(outcomes),
            "unattributed": len(unattributed),
            "unattributed_ids": dg.MetadataValue.json(unattributed["experiment_id"].head(UNATTRIBUTED_SHOWN).tolist()),
            "metrics": dg.MetadataValue.json(metrics),
            "dagster/row_count": len(table),
        }
    )
