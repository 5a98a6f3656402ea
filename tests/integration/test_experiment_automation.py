"""Outside the demo, the experiment assets follow the runs they depend on: a UI approval (or a
discovery run) plans, an experiment run that ends records outcomes."""

import dagster as dg

from assets.experiments import automation
from assets.experiments.lifecycle_jobs import approve_experiment
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from orchestration.definitions import defs
from tests.integration.test_lifecycle_jobs import launch, new_experiment


def _run_end_event(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterEvent:
    records = instance.get_records_for_run(run_id).records
    return next(
        r.event_log_entry.dagster_event
        for r in records
        if r.event_log_entry.is_dagster_event
        and r.event_log_entry.dagster_event.event_type_value in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE")
    )


def test_a_ui_approval_plans_and_experiment_runs_record_outcomes(duckdb_url: str):
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    experiment_id = new_experiment(warehouse)
    with dg.instance_for_test() as instance:
        approved = launch(approve_experiment, warehouse, instance=instance, experiment_id=experiment_id)
        assert approved.success
        context = dg.build_run_status_sensor_context(
            sensor_name=automation.plan_experiments_after_discovery_or_approval.name,
            dagster_instance=instance,
            dagster_run=approved.dagster_run,
            dagster_event=_run_end_event(instance, approved.run_id),
        )
        request = automation.plan_experiments_after_discovery_or_approval(context)
        assert request.run_key == f"plan-after:{approved.run_id}"
    # What the sensors watch and launch, in the code location a user loads.
    planning = defs.get_sensor_def("plan_experiments_after_discovery_or_approval")
    assert planning.job_name == "experiment_planning_job"
    for status in ("success", "failure"):
        outcomes = defs.get_sensor_def(f"record_outcomes_after_experiment_{status}")
        assert outcomes.job_name == "experiment_outcomes_job"
        assert outcomes.default_status == dg.DefaultSensorStatus.RUNNING
    planned = defs.resolve_job_def("experiment_planning_job")
    # The proposals' features are built between them: allocation ranks on them (LinUCB).
    assert {key.to_user_string() for key in planned.asset_layer.executable_asset_keys} == {
        "experiment_proposals",
        "experiment_features",
        "experiment_allocations",
    }
    learning = defs.get_sensor_def("learn_after_outcomes")
    assert learning.job_name == "learning_job" and learning.default_status == dg.DefaultSensorStatus.RUNNING
    learned = defs.resolve_job_def("learning_job")
    assert {key.to_user_string() for key in learned.asset_layer.executable_asset_keys} == {
        "experiment_features",
        "source_bandit",
        "success_model",
        "revenue_model",
        "strategy_weights",
    }
