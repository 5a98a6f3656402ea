"""Experiments: proposals from the scored opportunities, their budget allocations and outcomes, one
run per experiment launched by the experiment_launcher sensor, and the lifecycle actions as jobs for
the UI's launchpad (the lifecycle itself and its CLI are in core/experiments and `ventureloop
experiments`)."""

import dagster as dg

from assets import with_code_references
from assets.experiments.allocations import experiment_allocations
from assets.experiments.automation import (
    AUTOMATION_SENSORS,
    experiment_outcomes_job,
    experiment_planning_job,
    hourly_experiment_planning,
)
from assets.experiments.execution import experiment_launcher, experiment_run
from assets.experiments.lifecycle_jobs import LIFECYCLE_JOBS
from assets.experiments.outcomes import completed_experiments_have_outcomes, experiment_outcomes
from assets.experiments.proposals import experiment_proposals

defs = dg.Definitions(
    assets=with_code_references([experiment_proposals, experiment_allocations, experiment_outcomes]),
    asset_checks=[completed_experiments_have_outcomes],
    jobs=[experiment_run, experiment_planning_job, experiment_outcomes_job, *LIFECYCLE_JOBS],
    schedules=[hourly_experiment_planning],
    sensors=[experiment_launcher, *AUTOMATION_SENSORS],
)
