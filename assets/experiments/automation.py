"""When the experiment assets run outside the demo, which runs them in order itself:

- proposals, their features and allocations after each successful discovery run (the scores they read just
  changed), after each approval from the UI, and hourly (an approval from the shell launches no
  run; allocation is what the launch sensor waits for);
- outcomes after each experiment run that ends, successful or not (a failed or rolled-back
  experiment has an outcome too)."""

import dagster as dg

from assets.discovery import discovery_job
from assets.experiments.allocations import experiment_allocations
from assets.experiments.execution import experiment_run
from assets.experiments.lifecycle_jobs import approve_experiment
from assets.experiments.outcomes import experiment_outcomes
from assets.experiments.proposals import experiment_proposals

experiment_planning_job = dg.define_asset_job(
    "experiment_planning_job",
    selection=dg.AssetSelection.assets(experiment_proposals, experiment_allocations)
    | dg.AssetSelection.keys("experiment_features"),
    description="Propose experiments from the newest scores, build their proposal-time features, then "
    "allocate budget to the approved ones (LinUCB ranks them on those features).",
)
experiment_outcomes_job = dg.define_asset_job(
    "experiment_outcomes_job",
    selection=dg.AssetSelection.assets(experiment_outcomes),
    description="Record the outcome of every finished experiment (experiments.outcomes).",
)

hourly_experiment_planning = dg.ScheduleDefinition(
    name="hourly_experiment_planning",
    job=experiment_planning_job,
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.run_status_sensor(
    name="plan_experiments_after_discovery_or_approval",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[discovery_job, approve_experiment],
    request_job=experiment_planning_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Proposes and allocates after a discovery run or a UI approval succeeds.",
)
def plan_experiments_after_discovery_or_approval(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"plan-after:{context.dagster_run.run_id}")


def _outcomes_after(status: dg.DagsterRunStatus) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        name=f"record_outcomes_after_experiment_{status.value.lower()}",
        run_status=status,
        monitored_jobs=[experiment_run],
        request_job=experiment_outcomes_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Records experiments' outcomes after an experiment_run ends in {status.value}.",
    )
    def record_outcomes(context: dg.RunStatusSensorContext) -> dg.RunRequest:
        return dg.RunRequest(run_key=f"outcomes-after:{context.dagster_run.run_id}")

    return record_outcomes


AUTOMATION_SENSORS = [
    plan_experiments_after_discovery_or_approval,
    _outcomes_after(dg.DagsterRunStatus.SUCCESS),
    _outcomes_after(dg.DagsterRunStatus.FAILURE),
]
