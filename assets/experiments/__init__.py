"""Experiments: proposals from the scored opportunities, and the lifecycle actions as jobs for the
UI's launchpad (the lifecycle itself and its CLI are in core/experiments and `ventureloop
experiments`)."""

import dagster as dg

from assets import with_code_references
from assets.experiments.lifecycle_jobs import LIFECYCLE_JOBS
from assets.experiments.proposals import experiment_proposals

defs = dg.Definitions(
    assets=with_code_references(
        [
            experiment_proposals,
        ]
    ),
    jobs=[
        *LIFECYCLE_JOBS,
    ],
)
