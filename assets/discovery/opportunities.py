"""Opportunities: normalized and deduplicated, then features, then the seed's score.

Heavy modules (pandas and the domain code on top of it) are imported inside the assets, so that
loading the code location stays fast."""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pydantic

from assets.discovery.raw import OWNER, SOURCES, raw_assets
from assets.resources import DiscoveryResource, MlflowResource, WarehouseResource, warehouse_kind, warehouse_pool
from core.discovery.weights import Weights

DEFAULT_WEIGHTS = Weights()

# The asset page renders a markdown value in place only below this many characters (dagster-webserver
# 1.13, MetadataEntry's expandSmallValues); longer, it is a "[Show Markdown]" link to click.
INLINE_MARKDOWN_LIMIT = 1000


def top_ten_markdown(scored, limit: int = INLINE_MARKDOWN_LIMIT) -> str:
    """The ten best cluster leads as a markdown table short enough to show on the asset page without
    a click: rank, score, source and the title, shortened until the table fits."""
    leads = scored[scored["is_cluster_lead"]] if "is_cluster_lead" in scored else scored
    top = leads.nsmallest(10, "rank")
    for width in (60, 48, 40, 32, 24, 16):
        rows = [f"| {r.rank} | {r.score:.3f} | {r.source} | {_cell(r.title, width)} |" for r in top.itertuples()]
        text = "| rank | score | source | title |\n|---:|---:|---|---|\n" + "\n".join(rows)
        if len(text) < limit:
            return text
    return text


def _cell(text: str, width: int) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= width else text[: width - 1] + "…"


@dg.asset(
    group_name="opportunities",
    owners=[OWNER],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[a.key for a in raw_assets],
    metadata={"dagster/table_name": "core.opportunities"},
    description="Every source normalized into one table; exact duplicates share a fingerprint "
    "(unique key), near-duplicates share a cluster_id (MinHash LSH).",
)
def opportunities(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    from core.discovery.opportunities import ingest
    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    stats = ingest(client, SOURCES, run_id=context.run.run_id)
    per_source = {name: vars(s) for name, s in stats.items()}
    table = "\n".join(
        f"| {s['source']} | {s['fetched']} | {s['new']} | {s['duplicates']} | "
        f"{s['near_duplicates']} | {s['quarantined']} |"
        for s in per_source.values()
    )
    return dg.MaterializeResult(
        metadata={
            "new": sum(s.new for s in stats.values()),
            "duplicates": sum(s.duplicates for s in stats.values()),
            "near_duplicates": sum(s.near_duplicates for s in stats.values()),
            "quarantined": sum(s.quarantined for s in stats.values()),
            "total_rows": (total := client.count("core.opportunities")),
            "dagster/row_count": total,
            "per_source": dg.MetadataValue.md(
                "| source | fetched | new | duplicates | near-duplicates | quarantined |\n|---|---|---|---|---|---|\n"
                + table
            ),
            "per_source_json": dg.MetadataValue.json(per_source),
        }
    )


@dg.asset(
    group_name="opportunities",
    owners=[OWNER],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[opportunities],
    metadata={"dagster/table_name": "core.opportunity_features"},
    description="Type, capability match, revenue signals, engagement velocity and age per opportunity.",
)
def opportunity_features(warehouse: WarehouseResource, discovery: DiscoveryResource) -> dg.MaterializeResult:
    from core.discovery.features import CapabilityProfile, ScoringAssumptions, build_features

    client = warehouse.client()
    table = client.read("core.opportunities")
    sizes = table.groupby("cluster_id").size()
    capabilities = CapabilityProfile.load(Path(discovery.capabilities_file) if discovery.capabilities_file else None)
    assumptions = ScoringAssumptions.load(Path(discovery.scoring_file) if discovery.scoring_file else None)
    features = build_features(table, datetime.now(UTC), capabilities, assumptions, sizes)
    client.replace("core.opportunity_features", features)
    return dg.MaterializeResult(
        metadata={
            "rows": len(features),
            "dagster/row_count": len(features),
            "types": dg.MetadataValue.json(features["opportunity_type"].value_counts().to_dict()),
            "revenue_signals": dg.MetadataValue.json(features["revenue_signal"].value_counts().to_dict()),
        }
    )


class ScoringConfig(dg.Config):
    """The scoring weights (core.discovery.weights). Leave all five unset to score with the deployed
    strategy weights (learning.strategy_weights; the seed's until the optimizer deploys a version).
    Set any to score with these instead: the unset ones keep the seed's values, and all five must be
    non-negative and sum to 1 (checked when the run is launched)."""

    revenue_weight: float | None = None
    confidence_weight: float | None = None
    time_to_revenue_weight: float | None = None
    capability_weight: float | None = None
    timing_weight: float | None = None

    @pydantic.model_validator(mode="after")
    def _valid_weights(self) -> "ScoringConfig":
        self.weights()  # raises, naming the weights, before the asset reads anything
        return self

    def weights(self) -> Weights | None:
        """The run config's weights, or None when it sets none (score with the deployed version)."""
        given = (
            self.revenue_weight,
            self.confidence_weight,
            self.time_to_revenue_weight,
            self.capability_weight,
            self.timing_weight,
        )
        if all(value is None for value in given):
            return None
        seed = vars(DEFAULT_WEIGHTS).values()
        return Weights(*(default if value is None else value for value, default in zip(given, seed, strict=True)))


@dg.asset(
    group_name="opportunities",
    owners=[OWNER],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[opportunity_features],
    metadata={"dagster/table_name": "core.scored_opportunities"},
    description="The seed's formula over every opportunity, with one column per weighted factor and why; the "
    "confidence factor is the champion success model's probability when there is one.",
)
def scored_opportunities(
    config: ScoringConfig, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    from assets.learning.models import champion_confidence
    from core.discovery.scoring import score

    client = warehouse.client()
    weights, version = config.weights(), None
    if weights is None:
        from core.discovery.strategy_versions import deployed_weights

        weights, version = deployed_weights(client)
    features = client.read("core.opportunity_features")
    probability, confidence_source = champion_confidence(client, mlflow.registry(), features, datetime.now(UTC))
    scored = score(features, weights, probability)
    client.replace("core.scored_opportunities", scored)
    return dg.MaterializeResult(
        metadata={
            "rows": len(scored),
            "dagster/row_count": len(scored),
            "weights": dg.MetadataValue.json(vars(weights)),
            # The learning.strategy_weights version that scored (0: the seed's), or the run config's.
            "weights_source": "run config" if version is None else f"strategy weights version {version}",
            **({} if version is None else {"weights_version": version}),
            "confidence_source": confidence_source,  # "champion vN" (success model) or "formula"
            "top_10": dg.MetadataValue.md(top_ten_markdown(scored)),
        }
    )
