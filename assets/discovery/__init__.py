"""Discovery: one raw asset per source, then opportunities, features and scores, with their
quality checks, the discovery job and its hourly schedule."""

import dagster as dg

from assets import with_code_references
from assets.discovery.checks import (
    every_source_has_opportunities,
    opportunities_pass_quality_suite,
    scores_within_unit_interval,
)
from assets.discovery.opportunities import ScoringConfig, opportunities, opportunity_features, scored_opportunities
from assets.discovery.raw import raw_assets


@dg.config_mapping
def scoring_weights(config: ScoringConfig) -> dict:
    """The job's config is the scoring weights. A mapping runs when the run is launched, so weights
    that do not sum to 1 are refused then, not after every source has been fetched."""
    return {"ops": {scored_opportunities.op.name: {"config": config.model_dump()}}}


discovery_job = dg.define_asset_job(
    "discovery_job",
    selection=dg.AssetSelection.groups("discovery", "opportunities"),
    config=scoring_weights,
    description="Fetch every enabled source, then normalize, deduplicate, featurize and score.",
)


def hourly_discovery(live: bool) -> dg.ScheduleDefinition:
    # Replaying the same snapshots every hour adds nothing: the schedule starts on only in live mode.
    return dg.ScheduleDefinition(
        name="hourly_discovery",
        job=discovery_job,
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if live else dg.DefaultScheduleStatus.STOPPED,
    )


def definitions(live: bool) -> dg.Definitions:
    return dg.Definitions(
        # The UI links each asset to the file and line of its definition.
        assets=with_code_references([*raw_assets, opportunities, opportunity_features, scored_opportunities]),
        asset_checks=[opportunities_pass_quality_suite, every_source_has_opportunities, scores_within_unit_interval],
        jobs=[discovery_job],
        schedules=[hourly_discovery(live)],
    )
