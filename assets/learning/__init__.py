"""Learning: the features of every proposed experiment as of its proposal, the source bandit that
steers discovery, the success and revenue predictors (versioned in MLflow, promoted only when
better), the LinUCB budget allocator and the strategy optimizer that re-weights the score.
The algorithms are in ml/; these assets read the warehouse, call them and record what they did.

When they run outside the demo: `learning_job` after each experiment_outcomes_job that succeeds
(new outcomes are what they learn from), and daily, so a quiet week still refreshes them."""

import dagster as dg

from assets import with_code_references
from assets.experiments.automation import experiment_outcomes_job
from assets.learning.bandit import source_bandit
from assets.learning.features import experiment_features
from assets.learning.models import revenue_model, success_model
from assets.learning.strategy import strategy_weights

LEARNING_ASSETS: list = [experiment_features, source_bandit, success_model, revenue_model, strategy_weights]
LEARNING_CHECKS: list = []

learning_job = dg.define_asset_job(
    "learning_job",
    selection=dg.AssetSelection.groups("learning"),
    description="Rebuild the experiment features, the source bandit's posterior, the predictors (promoted in "
    "MLflow only when better) and the strategy weights from every finished experiment.",
)
daily_learning = dg.ScheduleDefinition(
    name="daily_learning",
    job=learning_job,
    cron_schedule="15 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


@dg.run_status_sensor(
    name="learn_after_outcomes",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[experiment_outcomes_job],
    request_job=learning_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Relearns after experiment outcomes were recorded.",
)
def learn_after_outcomes(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"learn-after:{context.dagster_run.run_id}")


defs = dg.Definitions(
    assets=with_code_references(LEARNING_ASSETS),
    asset_checks=LEARNING_CHECKS,
    jobs=[learning_job],
    schedules=[daily_learning],
    sensors=[learn_after_outcomes],
)
