"""The lifecycle actions as the UI launches them (assets/experiments/lifecycle_jobs.py), on DuckDB
and PostgreSQL: each job moves the experiment with the run's user (or the run) as actor and the
config's reason, in experiments.transitions and the audit chain; a move the lifecycle refuses, or
an unknown id, fails the run with the lifecycle's message; the launchpad shows each job's config
fields and defaults; a DuckDB file held by another process is waited for, not failed on."""

import json
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from assets.experiments import lifecycle_jobs
from assets.experiments.lifecycle_jobs import (
    LIFECYCLE_JOBS,
    approve_experiment,
    cancel_experiment,
    open_experiment_gate,
    pause_experiment,
    reject_experiment,
    resume_experiment,
)
from assets.resources import WarehouseResource
from core.experiments.lifecycle import history, transition
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import fixed_clock, read_events
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)


def new_experiment(warehouse: Warehouse, *path: str) -> str:
    """A proposed experiment, moved along `path` by the executor's part of the lifecycle."""
    opportunity = f"opp-{uuid.uuid4().hex[:10]}"
    frame = pd.DataFrame(
        [
            {
                "opportunity_id": opportunity,
                "score": 0.7,
                "opportunity_type": "saas",
                "title": f"Opportunity {opportunity}",
                "est_monthly_revenue_cents": 300_000,
                "is_cluster_lead": True,
            }
        ]
    )
    (experiment_id,) = propose_from_scored(warehouse, frame, 1, NEVER, fixed_clock(T0)).created
    for state in path:
        transition(warehouse, experiment_id, state, actor="executor", reason=f"to {state}", clock=fixed_clock(T0))
    return experiment_id


def launch(
    job: dg.JobDefinition,
    warehouse: Warehouse,
    user: str | None = None,
    instance: dg.DagsterInstance | None = None,
    **config: str,
) -> dg.ExecuteInProcessResult:
    """The job as the launchpad starts it: op config, the warehouse resource, the user's tag."""
    (op,) = job.graph.node_defs
    return job.execute_in_process(
        run_config={"ops": {op.name: {"config": config}}},
        resources={"warehouse": WarehouseResource(url=warehouse.url)},
        tags={"dagster/user": user} if user else None,
        raise_on_error=False,
        instance=instance,
    )


def failure_of(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    (op,) = result.job_def.graph.node_defs
    failure = result.failure_data_for_node(op.name)
    assert failure.user_failure_data is not None, failure.error.to_string()  # a dg.Failure, not a crash
    return failure.user_failure_data.description


def last_move(warehouse: Warehouse, experiment_id: str) -> tuple:
    last = history(warehouse, experiment_id).iloc[-1]
    return last["from_state"], last["to_state"], last["actor"], last["reason"]


def test_each_job_moves_the_experiment_with_its_actor_and_reason(warehouse):
    proposed, running = new_experiment(warehouse), new_experiment(warehouse, "approved", "queued", "running")
    rejected = new_experiment(warehouse)

    done = launch(approve_experiment, warehouse, "alice@example.com", experiment_id=proposed, reason="worth a try")
    assert done.success and done.output_for_node("approve") == "approved"
    assert last_move(warehouse, proposed) == ("proposed", "approved", "alice@example.com", "worth a try")

    # No user tag (open-source Dagster sets none): the run is the actor; the reason is the default.
    paused = launch(pause_experiment, warehouse, experiment_id=f" {running}\n")
    assert paused.success
    assert last_move(warehouse, running) == ("running", "paused", f"ui:{paused.run_id}", "paused in the Dagster UI")
    done = launch(resume_experiment, warehouse, "bob", experiment_id=running, reason="fixed")
    assert done.success and last_move(warehouse, running) == ("paused", "running", "bob", "fixed")
    done = launch(cancel_experiment, warehouse, "bob", experiment_id=running)
    assert last_move(warehouse, running) == ("running", "cancelled", "bob", "cancelled in the Dagster UI")
    done = launch(reject_experiment, warehouse, "carol", experiment_id=rejected, reason="needs a person we lack")
    assert last_move(warehouse, rejected) == ("proposed", "cancelled", "carol", "needs a person we lack")

    # Each move is in the audit chain with who and why, and the chain verifies.
    with warehouse.connect() as conn:
        events = [payload for _seq, _id, kind, payload, *_ in read_events(conn) if kind == "experiment.transitioned"]
    moves = [e for e in events if running in e]
    assert len(moves) == 6  # approved, queued, running by the executor; then pause, resume, cancel here
    assert f'"actor":"ui:{paused.run_id}"' in moves[3] and '"to_state":"paused"' in moves[3]
    assert '"actor":"bob"' in moves[5] and '"reason":"cancelled in the Dagster UI"' in moves[5]
    assert any('"actor":"alice@example.com"' in e and '"reason":"worth a try"' in e for e in events)
    assert verify(warehouse).ok, verify(warehouse).summary()


def test_a_move_the_lifecycle_refuses_fails_the_run_and_changes_nothing(warehouse):
    proposed = new_experiment(warehouse)
    before = len(history(warehouse, proposed))
    message = failure_of(launch(resume_experiment, warehouse, "alice", experiment_id=proposed))
    assert message == (
        f"experiment {proposed} is proposed, not paused: cannot resume it (resume moves a paused experiment "
        "to running); transition proposed -> running is not allowed; from proposed: approved, cancelled. "
        "Nothing changed; the actions open to it now: approve, reject, cancel"
    )
    approved = new_experiment(warehouse, "approved")
    message = failure_of(launch(reject_experiment, warehouse, "alice", experiment_id=approved))
    assert f"experiment {approved} is approved, not proposed: cannot reject it" in message
    assert message.endswith("the actions open to it now: cancel")
    finished = new_experiment(warehouse, "approved", "queued", "running", "completed")
    message = failure_of(launch(cancel_experiment, warehouse, "alice", experiment_id=finished))
    assert "is completed, not proposed, approved, queued, running or paused: cannot cancel it" in message
    assert "completed is final" in message
    # An empty reason is refused by the lifecycle, not recorded.
    message = failure_of(launch(approve_experiment, warehouse, "alice", experiment_id=proposed, reason="  "))
    assert message == f"experiment {proposed}: a transition to approved needs a reason"
    assert len(history(warehouse, proposed)) == before
    assert verify(warehouse).ok


def test_an_unknown_experiment_fails_the_run_clearly(warehouse):
    for job in (approve_experiment, pause_experiment):
        message = failure_of(launch(job, warehouse, "alice", experiment_id="no-such-id"))
        assert message == (
            "no experiment 'no-such-id' in experiments.experiments: check the id (`ventureloop experiments "
            "list` lists them, newest first); nothing changed"
        )


GATE = {"id": "review", "type": "manual_gate", "params": {"prompt": "Look at the first results"}}


def test_open_experiment_gate_resumes_the_experiment_waiting_at_it(warehouse):
    from core.experiments.executor import LiveEnvironment, execute_experiment

    experiment_id = new_experiment(warehouse, "approved", "queued")
    warehouse.execute(
        "UPDATE experiments.experiments SET playbook = %s WHERE experiment_id = %s", [json.dumps([GATE]), experiment_id]
    )
    waiting = execute_experiment(warehouse, experiment_id, LiveEnvironment(clock=lambda: T0), run_id="r1", attempt=1)
    assert waiting.state == "paused"

    message = failure_of(launch(open_experiment_gate, warehouse, "alice", experiment_id=experiment_id, step_id="qa"))
    assert message == (
        f"experiment {experiment_id} has no manual gate 'qa': its gates are review "
        f"(`ventureloop experiments show {experiment_id}`)"
    )
    message = failure_of(launch(open_experiment_gate, warehouse, "alice", experiment_id="nope", step_id="review"))
    assert message.startswith("no experiment 'nope' in experiments.experiments: check the id")

    done = launch(open_experiment_gate, warehouse, "alice", experiment_id=experiment_id, step_id="review")
    assert done.success and done.output_for_node("open_gate") == "running"
    gate = warehouse.query("SELECT opened_by, reason FROM experiments.gates WHERE experiment_id = %s", [experiment_id])
    assert gate.to_dict("records") == [{"opened_by": "alice", "reason": "gate opened in the Dagster UI"}]
    assert last_move(warehouse, experiment_id) == (
        "paused",
        "running",
        "alice",
        "manual gate review opened: gate opened in the Dagster UI",
    )
    with warehouse.connect() as conn:
        kinds = [kind for _seq, _id, kind, payload, *_ in read_events(conn) if experiment_id in payload]
    assert kinds[-2:] == ["experiment.gate_opened", "experiment.transitioned"]
    assert verify(warehouse).ok, verify(warehouse).summary()


def test_a_missing_duckdb_warehouse_is_refused_not_created(tmp_path):
    missing = Warehouse(f"duckdb:///{tmp_path}/nowhere/warehouse.duckdb")
    message = failure_of(launch(approve_experiment, missing, "alice", experiment_id="x"))
    assert message.startswith(f"no warehouse at {tmp_path}/nowhere/warehouse.duckdb: ")
    assert "make demo" in message
    assert not (tmp_path / "nowhere").exists()


# Holds the DuckDB file (as a writer in another process does) until told to let go on stdin.
HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    conn = duckdb.connect(sys.argv[1])
    print("held", flush=True)
    sys.stdin.readline()
    """
)


def test_a_duckdb_file_held_by_another_process_is_waited_for(duckdb_url, monkeypatch):
    from core.platform.schema import ensure_schema

    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    waited, refused = new_experiment(warehouse), new_experiment(warehouse)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, warehouse.duckdb_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        # Held longer than the wait: the run fails saying so, and nothing moved.
        monkeypatch.setattr(lifecycle_jobs, "LOCK_WAIT_SECONDS", 0.3)
        message = failure_of(launch(approve_experiment, warehouse, "alice", experiment_id=refused))
        assert "is locked by another process" in message
        assert message.endswith("(waited 0.3 s); nothing changed: launch this run again")
        # Let go a second into the next run: it waits for the file and moves the experiment.
        monkeypatch.setattr(lifecycle_jobs, "LOCK_WAIT_SECONDS", 60.0)
        threading.Timer(1.0, holder.communicate, kwargs={"input": "\n"}).start()
        instance = dg.DagsterInstance.ephemeral()
        done = launch(approve_experiment, warehouse, "alice", instance=instance, experiment_id=waited)
        assert done.success
        logged = [entry.user_message for entry in instance.all_logs(done.run_id)]
        assert any("is held by another process; trying again in" in line for line in logged), logged
    finally:
        holder.kill()
        holder.wait()
    assert last_move(warehouse, waited) == ("proposed", "approved", "alice", "approved in the Dagster UI")
    assert len(history(warehouse, refused)) == 1


# The launchpad's view of a job, by the webserver's own GraphQL: the op's config fields with their
# required flag, default and description, and the YAML it starts the editor with.
LAUNCHPAD_QUERY = """
query($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema {
      rootDefaultYaml
      allConfigTypes {
        key
        ... on CompositeConfigType { fields { name isRequired defaultValueAsJson description } }
      }
    }
  }
}
"""
EXPECTED_LAUNCHPAD = {
    "approve_experiment": ("approve", {"reason": "approved in the Dagster UI"}),
    "reject_experiment": ("reject", {"reason": "rejected in the Dagster UI"}),
    "cancel_experiment": ("cancel", {"reason": "cancelled in the Dagster UI"}),
    "pause_experiment": ("pause", {"reason": "paused in the Dagster UI"}),
    "resume_experiment": ("resume", {"reason": "resumed in the Dagster UI"}),
    "open_experiment_gate": ("open_gate", {"step_id": None, "reason": "gate opened in the Dagster UI"}),
}


def test_the_launchpad_shows_each_jobs_config_fields_and_defaults():
    import yaml
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    assert sorted(job.name for job in LIFECYCLE_JOBS) == sorted(EXPECTED_LAUNCHPAD)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="orchestration.definitions", attribute="defs"), location_name="ventureloop"
    )
    with (
        dg.instance_for_test() as instance,
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as workspace,
    ):
        context = workspace.create_request_context()
        assert context.get_code_location_error("ventureloop") is None
        for job_name, (op, defaults) in EXPECTED_LAUNCHPAD.items():
            selector = {
                "repositoryLocationName": "ventureloop",
                "repositoryName": "__repository__",
                "pipelineName": job_name,
            }
            schema = execute_dagster_graphql(context, LAUNCHPAD_QUERY, {"selector": selector}).data
            schema = schema["runConfigSchemaOrError"]
            assert schema["__typename"] == "RunConfigSchema", schema
            # The editor starts with every default filled in; experiment_id (and step_id) are the
            # "missing config" the launchpad asks for.
            started = yaml.safe_load(schema["rootDefaultYaml"])
            assert started["ops"] == {op: {"config": {k: v for k, v in defaults.items() if v is not None}}}
            (fields,) = [
                t["fields"]
                for t in schema["allConfigTypes"]
                if t.get("fields") and {f["name"] for f in t["fields"]} == {"experiment_id", *defaults}
            ]
            shown = {f["name"]: f for f in fields}
            assert shown["experiment_id"]["isRequired"] and shown["experiment_id"]["defaultValueAsJson"] is None
            assert "ventureloop experiments list" in shown["experiment_id"]["description"]
            for name, default in defaults.items():
                assert shown[name]["isRequired"] is (default is None), (job_name, name)
                assert (json.loads(shown[name]["defaultValueAsJson"]) if default else None) == default
                assert shown[name]["description"], (job_name, name)


def test_the_jobs_do_not_queue_behind_experiment_runs():
    # No pool (the duckdb pool is held for as long as its op writes), not the experiment runs'
    # concurrency tag, and a priority above the run queue's default of 0.
    for job in LIFECYCLE_JOBS:
        assert job.tags["ventureloop/kind"] == "lifecycle" and int(job.tags["dagster/priority"]) > 0, job.name
        (op,) = job.graph.node_defs
        assert op.pool is None and "dagster/concurrency_key" not in op.tags, job.name


def test_the_launchpads_yaml_runs_as_is(warehouse):
    # What a person types into the launchpad, with the editor's defaults left in place.
    experiment_id = new_experiment(warehouse)
    config = yaml_config(f"ops:\n  approve:\n    config:\n      experiment_id: {experiment_id}\n      reason:\n")
    done = approve_experiment.execute_in_process(
        run_config=config, resources={"warehouse": WarehouseResource(url=warehouse.url)}
    )
    assert done.success
    assert last_move(warehouse, experiment_id)[1:] == ("approved", f"ui:{done.run_id}", "approved in the Dagster UI")


def yaml_config(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)
