"""Discovery: one raw asset per source, then opportunities, features and scores, with their
quality checks, the discovery job and its hourly schedule."""

import os
from collections.abc import Mapping

import dagster as dg

from assets import with_code_references
from assets.discovery.checks import (
    every_source_has_opportunities,
    opportunities_pass_quality_suite,
    scores_within_unit_interval,
)
from assets.discovery.opportunities import ScoringConfig, opportunities, opportunity_features, scored_opportunities
from assets.discovery.raw import SOURCES, raw_assets
from assets.resources import WarehouseResource


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


DEFAULT_EXPLORATION_FLOOR = 0.2
# The downstream half of every discovery run, whichever sources the bandit chose.
DOWNSTREAM = (opportunities.key, opportunity_features.key, scored_opportunities.key)
SOURCES_TAG = "ventureloop/bandit_sources"
REASON_TAG = "ventureloop/bandit_reason"
FLOOR_TAG = "ventureloop/bandit_exploration_floor"


def exploration_floor(env: Mapping[str, str] | None = None) -> float:
    """VENTURELOOP_BANDIT_EXPLORATION_FLOOR: the least probability with which each source is queried
    every cycle, however poor its posterior (default 0.2)."""
    env = os.environ if env is None else env
    text = env.get("VENTURELOOP_BANDIT_EXPLORATION_FLOOR") or str(DEFAULT_EXPLORATION_FLOOR)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise ValueError(
            f"VENTURELOOP_BANDIT_EXPLORATION_FLOOR={text!r}: use a probability between 0 and 1 "
            f"(default {DEFAULT_EXPLORATION_FLOOR}; 1 queries every source every hour), see .env.example"
        )
    return value


def discovery_request(
    posterior, source_names: list[str], floor: float, rng, why_all: str | None = None, run_key: str | None = None
) -> dg.RunRequest:
    """A run of discovery_job on the sources Thompson sampling chooses from `posterior` (every source
    when it is None or empty: `why_all` says why), then the opportunities group."""
    from ml.bandit import choose_sources

    if posterior is None or posterior.empty:
        chosen, reason = list(source_names), why_all or "no source posterior yet: every source"
    else:
        choice = choose_sources(posterior, source_names, exploration_floor=floor, rng=rng)
        chosen, reason = list(choice.sources), choice.summary()
    return dg.RunRequest(
        run_key=run_key,
        asset_selection=[*(dg.AssetKey(["raw", name]) for name in chosen), *DOWNSTREAM],
        tags={SOURCES_TAG: ",".join(chosen), REASON_TAG: reason, FLOOR_TAG: f"{floor:g}"},
    )


def hourly_discovery(live: bool) -> dg.ScheduleDefinition:
    # Replaying the same snapshots every hour adds nothing: the schedule starts on only in live mode.
    @dg.schedule(
        name="hourly_discovery",
        job=discovery_job,
        cron_schedule="0 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if live else dg.DefaultScheduleStatus.STOPPED,
        description="Hourly discovery of the sources the source bandit samples (learning.source_posterior): "
        "Thompson draws rank the sources, a source without outcomes is always queried, and every source "
        "keeps VENTURELOOP_BANDIT_EXPLORATION_FLOOR probability; with no posterior, every source.",
    )
    def _hourly_discovery(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource) -> dg.RunRequest:
        import numpy as np

        from assets.learning.bandit import read_posterior
        from ml.bandit import BanditError

        floor = exploration_floor()
        names = [source.name for source in SOURCES]
        when = context.scheduled_execution_time
        # Seeded by the tick: a tick evaluated again (after a daemon restart) chooses the same sources.
        rng = np.random.default_rng(int(when.timestamp()) if when else None)
        try:
            posterior, why_all = read_posterior(warehouse.client()), None
        except Exception as error:  # noqa: BLE001 - a locked or unreachable warehouse must not stop discovery
            context.log.warning(f"source posterior unreadable, querying every source: {error}")
            posterior, why_all = None, f"source posterior unreadable ({error}): every source"
        run_key = f"hourly_discovery:{when.isoformat()}" if when else None
        try:
            request = discovery_request(posterior, names, floor, rng, why_all, run_key)
        except BanditError as error:  # a damaged table: say so every hour, but keep discovering
            context.log.error(f"learning.source_posterior is unusable, querying every source: {error}")
            request = discovery_request(
                None, names, floor, rng, f"source posterior unusable ({error}): every source", run_key
            )
        context.log.info(f"discovery of {request.tags[SOURCES_TAG]}: {request.tags[REASON_TAG]}")
        return request

    return _hourly_discovery


def definitions(live: bool) -> dg.Definitions:
    return dg.Definitions(
        # The UI links each asset to the file and line of its definition.
        assets=with_code_references([*raw_assets, opportunities, opportunity_features, scored_opportunities]),
        asset_checks=[opportunities_pass_quality_suite, every_source_has_opportunities, scores_within_unit_interval],
        jobs=[discovery_job],
        schedules=[hourly_discovery(live)],
    )
