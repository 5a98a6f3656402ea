"""DAGSTER_EXECUTOR=celery for real: an experiment run through a `dagster-celery worker` process on
the real Redis, with a PostgreSQL Dagster instance and warehouse, leaves the same checkpoints, ledger
rows, state history and audit events as an identical experiment run in-process, and the ledger and
its audit chain verify."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from core.platform.warehouse import Warehouse
from orchestration import instance as instance_file
from orchestration.wiring import DEFAULT_CELERY_BROKER_URL

ROOT = Path(__file__).resolve().parents[2]
# As docs/deploy.md says; -i imports the code location once per worker rather than per first task.
WORKER_START = [
    "dagster-celery",
    "worker",
    "start",
    "-A",
    "orchestration.celery_app",
    "-i",
    "orchestration.definitions",
]
MODULE = "orchestration.definitions"
RUN_TIMEOUT = 90  # seconds: a run whose step no worker takes must fail the test, not hang it
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(DEFAULT_CELERY_BROKER_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        message = f"Redis is not answering at {DEFAULT_CELERY_BROKER_URL} ({error}): start it (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return DEFAULT_CELERY_BROKER_URL


@pytest.fixture
def celery_env(tmp_path, postgres_database, redis_url, monkeypatch) -> dict[str, str]:
    """The environment of the daemon and the worker alike: Dagster's storage and the warehouse in
    PostgreSQL, the executor chosen by DAGSTER_EXECUTOR, a queue of this test's own (tests of
    other runs share the Redis server)."""
    env = {
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "DAGSTER_POSTGRES_URL": postgres_database(),
        "WAREHOUSE_URL": postgres_database(),
        "DAGSTER_EXECUTOR": "celery",
        "DAGSTER_CELERY_QUEUE": f"vl-test-{uuid.uuid4().hex[:10]}",
        "VENTURELOOP_HOME": str(tmp_path / "home"),
        "OUTCOMES_SOURCE": "none",  # the live environment: its steps here need no network
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    instance_file.write(Path(env["DAGSTER_HOME"]))
    return env


@pytest.fixture
def worker(celery_env, tmp_path) -> Iterator[Path]:
    """`dagster-celery worker start -A orchestration.celery_app`, as documented, until the test ends."""
    log = tmp_path / "worker.log"
    bin_dir = Path(sys.executable).parent  # dagster-celery starts `celery` from PATH
    with log.open("w") as out:
        process = subprocess.Popen(
            [*WORKER_START, "-q", celery_env["DAGSTER_CELERY_QUEUE"], "--", "--concurrency=1"],
            cwd=ROOT,
            env={**os.environ, **celery_env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the celery process it starts goes with it
        )
    # Not waited for: a task waits in Redis until the worker takes it, so the worker's start
    # overlaps the test's own setup and its in-process run.
    try:
        yield log
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)  # celery's warm shutdown
        try:
            process.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # the group's children, if any outlived it
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
LIFE = ["proposed", "approved", "queued", "running", "completed"]
# Steps with side effects in the worker's process: a command, and two spends booked in the ledger.
PLAYBOOK = [
    {"id": "launch", "type": "command", "params": {"argv": [sys.executable, "-c", "print('launched')"]}},
    {
        "id": "ads",
        "type": "spend",
        "params": {"account": "expenses:ads", "amount_minor": 1_200, "currency": "USD"},
        "after": ["launch"],
    },
    {
        "id": "boost",
        "type": "spend",
        "params": {"account": "expenses:ads", "amount_minor": 300, "currency": "USD"},
        "after": ["ads"],
    },
]


def queued_experiment(warehouse: Warehouse) -> dg.RunRequest:
    """An experiment with PLAYBOOK, approved with a budget and queued as the experiment_launcher
    sensor queues it; the run request the sensor would make for it."""
    from assets.experiments.execution import SENSOR_ACTOR, run_request
    from core.experiments.launches import Launch, queue_launch
    from core.experiments.lifecycle import transition
    from core.experiments.proposals import ApprovalPolicy, propose_from_scored
    from core.ledger.audit import canonical_json, fixed_clock

    opportunity = f"opp-{uuid.uuid4().hex[:10]}"
    scored = pd.DataFrame(
        [
            {
                "opportunity_id": opportunity,
                "score": 0.7,
                "opportunity_type": "saas",
                "title": "Invoice API",
                "est_monthly_revenue_cents": 300_000,
                "cluster_id": f"cluster-{opportunity}",
                "is_cluster_lead": True,
            }
        ]
    )
    never = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
    (experiment_id,) = propose_from_scored(warehouse, scored, 1, never, fixed_clock(T0)).created
    warehouse.execute(
        "UPDATE experiments.experiments SET playbook = %s, allocated_budget_minor = %s WHERE experiment_id = %s",
        [canonical_json(PLAYBOOK), 5_000, experiment_id],
    )
    transition(warehouse, experiment_id, "approved", actor="alice", reason="test", clock=fixed_clock(T0))
    launch = Launch(experiment_id, 1, "approved")
    queue_launch(warehouse, launch, actor=SENSOR_ACTOR)
    return run_request(launch)


# Packages whose modules read the environment when imported (an asset's pool and kinds follow
# WAREHOUSE_URL, the executor DAGSTER_EXECUTOR).
READ_ON_IMPORT = ("assets", "orchestration")


@pytest.fixture
def code_location_of_this_environment(celery_env) -> Iterator[None]:
    """The code location imported afresh in this test, so that its executor and assets are this
    environment's (celery, PostgreSQL) whatever an earlier test in this process imported; the
    earlier modules are put back after, so that no later test sees this environment's."""

    def ours(name: str) -> bool:
        return name.split(".")[0] in READ_ON_IMPORT

    earlier = {name: module for name, module in sys.modules.items() if ours(name)}
    for name in earlier:
        del sys.modules[name]
    try:
        yield
    finally:
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(earlier)


def run_through_celery(request: dg.RunRequest, instance: dg.DagsterInstance, worker_log: Path) -> str:
    """The run as its run process executes it (dg.execute_job, what `dagster api execute_run` calls),
    on the code location orchestration.definitions: its one step goes to the worker, which loads
    the same code location itself. Fails after RUN_TIMEOUT: the celery executor waits for ever on
    a task no worker takes."""
    outcome: dict = {}

    def execute() -> None:
        try:
            repository = ReconstructableRepository.for_module(MODULE, "defs", working_directory=str(ROOT))
            job = repository.get_reconstructable_job("experiment_run")
            outcome["result"] = dg.execute_job(job, instance=instance, run_config=request.run_config, tags=request.tags)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=execute, daemon=True)
    thread.start()
    thread.join(RUN_TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"the run did not end in {RUN_TIMEOUT} s; the worker's log:\n{worker_log.read_text()[-3000:]}")
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    assert result.success, worker_log.read_text()[-3000:]
    assert result.job_def.executor_def.name == "celery"  # chosen by DAGSTER_EXECUTOR alone
    return result.run_id


def run_in_process(env: dict[str, str], request: dg.RunRequest, instance: dg.DagsterInstance) -> str:
    from assets.experiments.execution import experiment_run
    from orchestration.resources import resources

    chosen = resources(env)
    result = experiment_run.execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        resources={"warehouse": chosen["warehouse"], "experiment_environment": chosen["experiment_environment"]},
    )
    assert result.success
    return result.run_id


def what_it_left(warehouse: Warehouse, experiment_id: str, run_id: str) -> dict:
    """The experiment's checkpoints, ledger rows, state history and audit events, its own id and its
    run's id replaced by `<experiment>` and `<run>`, so that what two experiments left can be compared."""
    from core.experiments.checkpoints import load_checkpoints
    from core.experiments.lifecycle import history

    def same(value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        return text.replace(experiment_id, "<experiment>").replace(run_id, "<run>")

    checkpoints = load_checkpoints(warehouse, experiment_id)
    results = {step: dict(row["result"]) for step, row in checkpoints.items()}
    for result in results.values():
        result.pop("transaction_id", None)  # a new uuid per booking
    postings = warehouse.query(
        "SELECT p.account_id, p.amount_minor, p.currency, t.idempotency_key FROM ledger.postings p "
        "JOIN ledger.transactions t ON t.transaction_id = p.transaction_id WHERE p.experiment_id = %s "
        "ORDER BY t.idempotency_key, p.line",
        [experiment_id],
    )
    transitions = history(warehouse, experiment_id)
    audit = warehouse.query(
        "SELECT event_type FROM audit.events WHERE payload LIKE %s ORDER BY seq", [f"%{experiment_id}%"]
    )
    return {
        "checkpoints": {
            step: (row["step_type"], int(row["attempt"]), same(row["run_id"]), row["environment"], same(results[step]))
            for step, row in sorted(checkpoints.items())
        },
        "postings": [same(list(row)) for row in postings.itertuples(index=False)],
        "history": [(row.to_state, same(row.actor)) for row in transitions.itertuples()],
        "audit": list(audit["event_type"]),
    }


def test_an_experiment_runs_through_a_celery_worker_as_it_runs_in_process(
    celery_env, worker, code_location_of_this_environment
):
    from core.experiments.checkpoints import runs
    from core.ledger.verify import verify
    from core.platform.schema import ensure_schema

    warehouse = Warehouse(celery_env["WAREHOUSE_URL"])
    ensure_schema(warehouse)
    through_celery, in_process = queued_experiment(warehouse), queued_experiment(warehouse)

    with dg.DagsterInstance.from_config(celery_env["DAGSTER_HOME"]) as instance:
        in_process_run = run_in_process(celery_env, in_process, instance)
        started = time.monotonic()
        celery_run = run_through_celery(through_celery, instance, worker)
        celery_seconds = time.monotonic() - started
        messages = [event.message or "" for event in instance.all_logs(celery_run)]
    queue = celery_env["DAGSTER_CELERY_QUEUE"]
    assert f'Submitting celery task for step "execute_experiment_run" to queue "{queue}".' in messages
    assert "[CeleryExecutor] Executing steps execute_experiment_run in celery worker" in messages
    assert "Task execute_plan[" in worker.read_text()  # the worker's own log shows it took the task

    ids = {
        "celery": (through_celery.tags["ventureloop/experiment"], celery_run),
        "in_process": (in_process.tags["ventureloop/experiment"], in_process_run),
    }
    left = {how: what_it_left(warehouse, experiment_id, run_id) for how, (experiment_id, run_id) in ids.items()}
    assert left["celery"] == left["in_process"]
    # And what they both left is the whole playbook, once: not two equally empty results.
    assert list(left["celery"]["checkpoints"]) == ["ads", "boost", "launch"]
    assert left["celery"]["checkpoints"]["launch"][4] == json.dumps({"returncode": 0, "stdout": "launched\n"})
    assert [row[1] for row in map(json.loads, left["celery"]["postings"])] == [1_200, -1_200, 300, -300]
    assert [state for state, _ in left["celery"]["history"]] == [
        "proposed",
        "approved",
        "queued",
        "running",
        "completed",
    ]
    assert ("running", "run:<run>") in left["celery"]["history"]
    for experiment_id, _ in ids.values():
        assert list(runs(warehouse, experiment_id)["status"]) == ["finished"]
    report = verify(warehouse)
    assert report.ok, report.summary()
    print(f"\nexperiment run through the celery worker: {celery_seconds:.1f} s")
