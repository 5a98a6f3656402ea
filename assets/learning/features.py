"""experiment_features: every proposed experiment's features as of its proposal (ml/features.py).

It reads three things from the warehouse, each only up to what a proposal may see (ml.features
enforces the times):
- experiments.proposal_features: the opportunity's features snapshotted when it was proposed. An
  experiment proposed before that table existed has no snapshot: it is skipped and counted, never
  given invented features.
- the finished experiments: experiments.outcomes joined to experiments.experiments. finished_at is
  the executor's finished_at, else its transition into its final state (as core.experiments.outcomes
  finished_experiments), else the outcome's evaluated_at (a later time, so never a leak). Source and
  type come from its snapshot, else from its opportunity (core.opportunities.source never changes)
  and its category, so experiments without a snapshot still count as history.
- the discovery timeline: core.opportunities (fetched_at, the first fetch: a fingerprint is inserted
  once) with its type from core.opportunity_features (classified from the opportunity's own text).
  An opportunity not classified yet is left out of the timeline and counted.
"""

import dagster as dg

from assets.discovery.opportunities import opportunity_features
from assets.experiments.outcomes import experiment_outcomes
from assets.experiments.proposals import experiment_proposals
from assets.resources import WarehouseResource, warehouse_kind, warehouse_pool

TABLE = "learning.experiment_features"
SHOWN = ["experiment_id", "proposed_at", "source", "opportunity_type", "source_success_rate", "similar_experiments"]
SHOWN_ROWS = 10

# The columns of learning.experiment_features, for the asset page (ml.features documents each).
COLUMNS = {
    "experiment_id": ("string", "the experiment"),
    "opportunity_id": ("string", "the opportunity it was proposed from"),
    "proposed_at": ("timestamp", "when it was proposed (UTC): every feature is as of this instant"),
    "source": ("string", "discovery source of the opportunity"),
    "opportunity_type": ("string", "its category (saas, api, ...)"),
    "age_days": ("float", "the opportunity's age at the scoring the proposal used"),
    "confidence": ("float", "confidence in its revenue estimate, [0, 1]"),
    "est_monthly_revenue_cents": ("float", "estimated monthly revenue, USD cents"),
    "capability_match": ("float", "share of its required capabilities we have"),
    "days_to_revenue": ("float", "expected days to its first dollar"),
    "cluster_size": ("float", "near-duplicates in its cluster"),
    "market_trend": ("float", "same-type opportunities first seen in the last 7 days over the 7 before, smoothed"),
    "competition": ("float", "log1p of same-type opportunities first seen in the last 30 days"),
    "dow_sin": ("float", "weekday of proposed_at on the unit circle (sine)"),
    "dow_cos": ("float", "weekday of proposed_at on the unit circle (cosine)"),
    "month_sin": ("float", "month of proposed_at on the unit circle (sine)"),
    "month_cos": ("float", "month of proposed_at on the unit circle (cosine)"),
    "source_success_rate": ("float", "Beta(1, 1)-smoothed success rate of the source's experiments finished before"),
    "source_experiments": ("float", "how many of the source's experiments finished before"),
    "similar_experiments": ("float", "how many same-type experiments finished before"),
    "similar_avg_roi": ("float", "their mean ROI (0 when none)"),
    "budget_minor": ("float", "requested budget, USD cents"),
    "est_duration_days": ("float", "the success criteria's longest window, days"),
}

FINISHED_SQL = """
SELECT o.experiment_id,
       coalesce(p.source, (SELECT min(c.source) FROM core.opportunities c
                           WHERE c.opportunity_id = e.opportunity_id)) AS source,
       coalesce(p.opportunity_type, e.category) AS opportunity_type,
       coalesce(e.finished_at,
                (SELECT max(t.transitioned_at) FROM experiments.transitions t
                 WHERE t.experiment_id = e.experiment_id AND t.to_state = e.state),
                o.evaluated_at) AS finished_at,
       o.succeeded, o.roi
FROM experiments.outcomes o
JOIN experiments.experiments e ON e.experiment_id = o.experiment_id
LEFT JOIN experiments.proposal_features p ON p.experiment_id = o.experiment_id
ORDER BY o.experiment_id
"""
WITHOUT_SNAPSHOT_SQL = (
    "SELECT count(*) FROM experiments.experiments e WHERE NOT EXISTS "
    "(SELECT 1 FROM experiments.proposal_features p WHERE p.experiment_id = e.experiment_id)"
)


def read_inputs(client) -> dict:
    """The three frames build_features takes, and the counts of what was left out (module docstring)."""
    from ml.features import OPPORTUNITY_COLUMNS, PROPOSAL_COLUMNS

    proposals = client.query(
        f"SELECT {', '.join(PROPOSAL_COLUMNS)} FROM experiments.proposal_features ORDER BY experiment_id"
    )
    finished = client.query(FINISHED_SQL)
    if client.table_exists("core.opportunity_features"):
        timeline = client.query(
            "SELECT f.opportunity_type, o.fetched_at AS first_seen_at FROM core.opportunities o "
            "LEFT JOIN (SELECT opportunity_id, min(opportunity_type) AS opportunity_type "
            "           FROM core.opportunity_features GROUP BY opportunity_id) f "
            "ON f.opportunity_id = o.opportunity_id"
        )
    else:  # discovery has not run its features yet: no opportunity has a type
        timeline = client.query("SELECT NULL AS opportunity_type, fetched_at AS first_seen_at FROM core.opportunities")
    unclassified = timeline["opportunity_type"].isna()
    return {
        "proposals": proposals,
        "finished": finished,
        "opportunities": timeline.loc[~unclassified, OPPORTUNITY_COLUMNS].reset_index(drop=True),
        "skipped_without_snapshot": int(client.scalar(WITHOUT_SNAPSHOT_SQL)),
        "opportunities_without_type": int(unclassified.sum()),
    }


@dg.asset(
    group_name="learning",
    owners=["team:learning"],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[experiment_proposals, experiment_outcomes, opportunity_features],
    metadata={
        "dagster/table_name": TABLE,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, kind, description=text) for name, (kind, text) in COLUMNS.items()]
        ),
    },
    description="One row per proposed experiment with its features as of its proposal time only (no later "
    "outcome or opportunity reaches it): the opportunity's snapshot, market trend and competition, seasonality, "
    "its source's and type's track record, budget and duration. Experiments proposed before snapshots existed are "
    "skipped and counted.",
)
def experiment_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from core.platform.schema import ensure_schema
    from ml.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES, build_features

    client = warehouse.client()
    ensure_schema(client)
    inputs = read_inputs(client)
    features = build_features(inputs["proposals"], inputs["finished"], inputs["opportunities"])
    client.replace(TABLE, features[FEATURE_COLUMNS])
    skipped = inputs["skipped_without_snapshot"]
    if skipped:
        context.log.warning(
            f"{skipped} experiment(s) were proposed before experiments.proposal_features existed: they have no "
            "proposal-time features and are left out of learning.experiment_features (their outcomes still count "
            "as history)"
        )
    with_history = int(((features["source_experiments"] > 0) | (features["similar_experiments"] > 0)).sum())
    newest = features.sort_values("proposed_at", ascending=False).head(SHOWN_ROWS)[SHOWN]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(features),
            "rows": len(features),
            "with_history": with_history,
            "without_history": len(features) - with_history,
            "skipped_without_snapshot": skipped,
            "finished_experiments": len(inputs["finished"]),
            "opportunities_in_timeline": len(inputs["opportunities"]),
            "opportunities_without_type": inputs["opportunities_without_type"],
            "features": dg.MetadataValue.json({"categorical": CATEGORICAL_FEATURES, "numeric": NUMERIC_FEATURES}),
            "newest": dg.MetadataValue.md(newest.to_markdown(index=False) if len(newest) else "no proposal yet"),
        }
    )
