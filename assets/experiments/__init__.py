"""Experiments: proposals from the scored opportunities, and one run per experiment launched by
the experiment_launcher sensor (the lifecycle and its CLI are in core/experiments and
`ventureloop experiments`)."""

import dagster as dg

from assets import with_code_references
from assets.experiments.execution import experiment_launcher, experiment_run
from assets.experiments.proposals import experiment_proposals

defs = dg.Definitions(
    assets=with_code_references(
        [
            experiment_proposals,
        ]
    ),
    jobs=[
        experiment_run,
    ],
    sensors=[
        experiment_launcher,
    ],
)
