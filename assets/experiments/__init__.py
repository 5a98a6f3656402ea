"""Experiments: proposals from the scored opportunities (the lifecycle and its CLI are in
core/experiments and `ventureloop experiments`)."""

import dagster as dg

from assets import with_code_references
from assets.experiments.allocations import experiment_allocations
from assets.experiments.outcomes import completed_experiments_have_outcomes, experiment_outcomes
from assets.experiments.proposals import experiment_proposals

defs = dg.Definitions(
    assets=with_code_references(
        [
            experiment_proposals,
            experiment_allocations,
            experiment_outcomes,
        ]
    ),
    asset_checks=[completed_experiments_have_outcomes],
)
