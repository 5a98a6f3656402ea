"""Experiment runs through Dagster: the experiment_launcher sensor launches one run per due
experiment under a run key that cannot repeat, the experiment_run job executes it to completed on
DuckDB and PostgreSQL, a webhook's 500 is retried by the op's RetryPolicy, and on PostgreSQL the
real daemon and run queue run 10 experiments at once with their history and audit chain intact."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import httpx
import pytest

from assets.experiments.execution import (
    STEP_RETRY_POLICY,
    experiment_launcher,
    experiment_run,
)
from assets.resources import ExperimentEnvironmentResource, WarehouseResource
from core.experiments.checkpoints import runs
from core.experiments.lifecycle import history, transition
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import canonical_json, fixed_clock
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
HOOK = "https://hooks.ventureloop.test/launch"
LIFE = ["proposed", "approved", "queued", "running", "completed"]
HTTP_PLAYBOOK = [{"id": "launch", "type": "http", "params": {"url": HOOK, "method": "POST", "body": {"n": 1}}}]


def approved_experiment(warehouse: Warehouse, playbook: list[dict], *, allocated_minor: int | None = 5_000) -> str:
    """A proposed experiment with `playbook` and an allocation, approved as a person would."""
    import pandas as pd

    opportunity = f"opp-{uuid.uuid4().hex[:10]}"
    scored = pd.DataFrame(
        [
            {
                "opportunity_id": opportunity,
                "score": 0.7,
                "opportunity_type": "saas",
                "title": f"Opportunity {opportunity}",
                "est_monthly_revenue_cents": 300_000,
                "cluster_id": f"cluster-{opportunity}",
                "is_cluster_lead": True,
            }
        ]
    )
    (experiment_id,) = propose_from_scored(warehouse, scored, 1, NEVER, fixed_clock(T0)).created
    warehouse.execute(
        "UPDATE experiments.experiments SET playbook = %s, allocated_budget_minor = %s WHERE experiment_id = %s",
        [canonical_json(playbook), allocated_minor, experiment_id],
    )
    transition(warehouse, experiment_id, "approved", actor="alice", reason="test", clock=fixed_clock(T0))
    return experiment_id


def state_of(warehouse: Warehouse, experiment_id: str) -> str:
    return warehouse.scalar("SELECT state FROM experiments.experiments WHERE experiment_id = %s", [experiment_id])


class Webhook:
    """A webhook receiver the test controls: answers `statuses` in turn, then 200."""

    def __init__(self, *statuses: int):
        self.statuses = list(statuses)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200, json={"ok": True})


class LiveWithWebhook(ExperimentEnvironmentResource):
    """The live environment, its webhooks answered in-process by a Webhook."""

    def build(self, warehouse: Warehouse):
        from core.experiments.executor import LiveEnvironment

        return LiveEnvironment(transport=httpx.MockTransport(WEBHOOK))


WEBHOOK = Webhook()


@pytest.fixture
def webhook():
    global WEBHOOK
    WEBHOOK = Webhook()
    yield WEBHOOK


def launch_requests(warehouse: Warehouse, instance: dg.DagsterInstance) -> tuple[list[dg.RunRequest], str | None]:
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=warehouse.url)})
    result = experiment_launcher(context)
    return list(result.run_requests or []), result.skip_reason.skip_message if result.skip_reason else None


def run_launch(warehouse: Warehouse, instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return experiment_run.execute_in_process(
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        resources={
            "warehouse": WarehouseResource(url=warehouse.url),
            "experiment_environment": LiveWithWebhook(outcomes_source="none"),
        },
        raise_on_error=False,
    )


def test_the_sensor_launches_each_due_experiment_once_under_its_run_key(warehouse):
    due = [approved_experiment(warehouse, HTTP_PLAYBOOK) for _ in range(3)]
    unallocated = approved_experiment(warehouse, HTTP_PLAYBOOK, allocated_minor=None)
    with dg.DagsterInstance.ephemeral() as instance:
        requests, skipped = launch_requests(warehouse, instance)
        assert skipped is None
        assert sorted(r.run_key for r in requests) == sorted(f"experiment:{e}:attempt:1" for e in due)
        for request in requests:
            experiment_id = request.tags["ventureloop/experiment"]
            assert request.tags["ventureloop/kind"] == "experiment"
            assert request.run_config["ops"]["execute_experiment_run"]["config"] == {
                "experiment_id": experiment_id,
                "attempt": 1,
            }
            assert state_of(warehouse, experiment_id) == "queued"
        assert state_of(warehouse, unallocated) == "approved"
        # Dagster would drop a repeated run key; until their runs end, the sensor does not even ask.
        for request in requests:
            instance.create_run_for_job(experiment_run, run_config=request.run_config, tags=request.tags)
        again, skipped = launch_requests(warehouse, instance)
        assert again == []
        assert "3 with a run not yet ended" in skipped
        assert "1 approved without an allocated budget (materialize experiment_allocations)" in skipped
        # A run that ended before it executed the experiment (its launch failed) used up its key:
        # the experiment is launched again as the next attempt.
        lost = instance.get_runs(filters=dg.RunsFilter(tags={"ventureloop/experiment": due[0]}))[0]
        instance.report_run_failed(lost)
        (relaunch,), _ = launch_requests(warehouse, instance)
        assert relaunch.run_key == f"experiment:{due[0]}:attempt:2"
        assert relaunch.run_config["ops"]["execute_experiment_run"]["config"]["attempt"] == 2


def test_the_sensor_retries_a_failed_run_and_fails_an_experiment_out_of_attempts(warehouse):
    from core.experiments.checkpoints import finish_run, start_run

    def running_with_failed_runs(count: int) -> str:
        experiment_id = approved_experiment(warehouse, HTTP_PLAYBOOK)
        for state in ("queued", "running"):
            transition(warehouse, experiment_id, state, actor="test", reason="launched", clock=fixed_clock(T0))
        for attempt in range(1, count + 1):
            start_run(warehouse, experiment_id, attempt, f"run-{attempt}", T0)
            finish_run(warehouse, experiment_id, attempt, "failed", "webhook 503", T0)
        return experiment_id

    retried, out_of_attempts = running_with_failed_runs(1), running_with_failed_runs(3)  # max_attempts: 3
    with dg.DagsterInstance.ephemeral() as instance:
        (request,), _ = launch_requests(warehouse, instance)
    assert request.run_key == f"experiment:{retried}:attempt:2"
    assert request.tags["ventureloop/launch"] == "retry after failed run"
    assert state_of(warehouse, out_of_attempts) == "rolled_back"
    last = history(warehouse, out_of_attempts).iloc[-2]
    assert (last["to_state"], last["actor"]) == ("failed", "sensor:experiment_launcher")
    assert "3 runs failed" in last["reason"]
    assert verify(warehouse).ok


def test_the_sensor_never_creates_a_warehouse(tmp_path):
    missing = Warehouse(f"duckdb:///{tmp_path}/none.duckdb")
    with dg.DagsterInstance.ephemeral() as instance:
        requests, skipped = launch_requests(missing, instance)
        assert requests == [] and skipped.startswith(f"no warehouse at {missing.describe()} yet")
        empty = Warehouse(f"duckdb:///{tmp_path}/empty.duckdb")
        empty.execute("SELECT 1")  # a file, without the experiments tables
        requests, skipped = launch_requests(empty, instance)
        assert requests == [] and "materialize experiment_proposals" in skipped
    assert not (tmp_path / "none.duckdb").exists()


@dg.op
def write_warehouse() -> None:
    pass


@dg.job
def warehouse_writer() -> None:
    write_warehouse()


def test_on_duckdb_the_sensor_waits_while_a_run_may_be_writing_the_warehouse(duckdb_url):
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    experiment_id = approved_experiment(warehouse, HTTP_PLAYBOOK)
    with dg.DagsterInstance.ephemeral() as instance:
        writer = instance.create_run_for_job(warehouse_writer, status=dg.DagsterRunStatus.STARTED)
        requests, skipped = launch_requests(warehouse, instance)
        assert requests == [] and f"run {writer.run_id} may be writing it" in skipped
        assert state_of(warehouse, experiment_id) == "approved"  # untouched
        instance.report_run_failed(writer)
        (request,), _ = launch_requests(warehouse, instance)
        assert request.run_key == f"experiment:{experiment_id}:attempt:1"


def test_the_job_runs_a_launched_experiment_to_completed(warehouse, webhook):
    experiment_id = approved_experiment(warehouse, HTTP_PLAYBOOK)
    with dg.DagsterInstance.ephemeral() as instance:
        (request,), _ = launch_requests(warehouse, instance)
        result = run_launch(warehouse, instance, request)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run.tags["ventureloop/kind"] == "experiment" and run.tags["ventureloop/experiment"] == experiment_id
    assert state_of(warehouse, experiment_id) == "completed"
    assert list(history(warehouse, experiment_id)["to_state"]) == LIFE
    assert len(webhook.calls) == 1
    assert webhook.calls[0].headers["Idempotency-Key"] == f"experiment:{experiment_id}:step:launch"
    assert verify(warehouse).ok, verify(warehouse).summary()


def test_a_webhook_500_is_retried_by_the_retry_policy_then_completes(warehouse, webhook):
    webhook.statuses = [500]
    experiment_id = approved_experiment(warehouse, HTTP_PLAYBOOK)
    with dg.DagsterInstance.ephemeral() as instance:
        (request,), _ = launch_requests(warehouse, instance)
        result = run_launch(warehouse, instance, request)
        assert result.success
        retried = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
        assert len(retried) == 1
    assert [c.headers["Idempotency-Key"] for c in webhook.calls] == [f"experiment:{experiment_id}:step:launch"] * 2
    assert state_of(warehouse, experiment_id) == "completed"
    assert STEP_RETRY_POLICY.backoff == dg.Backoff.EXPONENTIAL and STEP_RETRY_POLICY.jitter is not None


def test_a_permanent_webhook_failure_fails_the_run_without_retrying_and_rolls_back(warehouse, webhook):
    webhook.statuses = [404]
    experiment_id = approved_experiment(warehouse, HTTP_PLAYBOOK)
    with dg.DagsterInstance.ephemeral() as instance:
        (request,), _ = launch_requests(warehouse, instance)
        result = run_launch(warehouse, instance, request)
        assert not result.success
        assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(webhook.calls) == 1
    assert state_of(warehouse, experiment_id) == "rolled_back"


def test_a_busy_experiment_is_left_alone(warehouse, webhook):
    from core.experiments.lock import experiment_lock

    experiment_id = approved_experiment(warehouse, HTTP_PLAYBOOK)
    with dg.DagsterInstance.ephemeral() as instance:
        (request,), _ = launch_requests(warehouse, instance)
        with experiment_lock(warehouse, experiment_id):  # another run holds it
            result = run_launch(warehouse, instance, request)
        assert result.success
        (output,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
        assert output.event_specific_data.metadata["state"].value == "busy"
    assert state_of(warehouse, experiment_id) == "queued" and webhook.calls == []


# -- the done-when: 10 experiments at once through the real daemon and run queue ---------------

LIMIT = 10  # the instance's experiment run limit when both it and the warehouse are PostgreSQL
# Each experiment's one step waits until LIMIT experiments have reached it and the test has seen
# the one more it launched held back in the queue; so the runs can only finish if LIMIT ran at
# once. A barrier gives up (and its experiment fails) after BARRIER_SECONDS.
BARRIER_SECONDS = 240
BARRIER = textwrap.dedent(
    """
    import pathlib, sys, time
    here, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    here.mkdir(exist_ok=True); (here / sys.argv[3]).touch()
    deadline = time.monotonic() + float(sys.argv[5])
    while len(list(here.iterdir())) < int(sys.argv[4]) or not release.exists():
        if time.monotonic() > deadline:
            sys.exit(f"only {len(list(here.iterdir()))} of {sys.argv[4]} experiments ran at once")
        time.sleep(0.2)
    """
)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    # An end sorts before a start at the same instant: touching runs did not overlap.
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def started_group(argv: list, env: dict[str, str], log) -> subprocess.Popen:
    # Its own process group, so that what it starts (run processes, their commands) stops with it.
    return subprocess.Popen(
        [str(a) for a in argv], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_group(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # children outlive their parent: leave none behind
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for_server(socket: Path, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    from dagster._grpc.client import DagsterGrpcClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the code server exited: {log.read_text()[-3000:]}"
        if socket.exists():
            with contextlib.suppress(Exception):  # not serving yet
                DagsterGrpcClient(socket=str(socket)).ping("ready")
                return
        time.sleep(0.5)
    raise AssertionError(f"the code server did not start in {timeout} s: {log.read_text()[-3000:]}")


def experiment_runs(dagster: dg.DagsterInstance) -> list:
    return dagster.get_run_records(filters=dg.RunsFilter(tags={"ventureloop/kind": "experiment"}))


def wait_for(what: str, ready, processes: list[subprocess.Popen], log: Path, timeout: float):
    """ready()'s first truthy answer, polled while the daemon and code server live."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := ready():
            return answer
        assert all(p.poll() is None for p in processes), f"the daemon or server exited: {log.read_text()[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"{what}: not after {timeout} s: {log.read_text()[-3000:]}")


@pytest.mark.postgres
def test_ten_experiments_run_at_once_through_the_daemon_and_run_queue(tmp_path, postgres_database, monkeypatch):
    from orchestration import instance as vl_instance

    started = time.monotonic()
    warehouse = Warehouse(postgres_database())
    ensure_schema(warehouse)
    barrier = tmp_path / "barrier"
    experiments = []
    release = tmp_path / "release"
    for n in range(LIMIT + 1):
        argv = [sys.executable, "-c", BARRIER, str(barrier), str(release), f"e{n}", str(LIMIT), str(BARRIER_SECONDS)]
        step = {"id": "together", "type": "command", "params": {"argv": argv}}
        experiments.append(approved_experiment(warehouse, [step]))
    home, dagster_url = tmp_path / "dagster", postgres_database()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "VENTURELOOP_", "WAREHOUSE_"))},
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": dagster_url,
        "WAREHOUSE_URL": warehouse.url,
        "VENTURELOOP_HOME": str(tmp_path),  # an empty inbox: the inbox sensor launches nothing
        "OUTCOMES_SOURCE": "none",
        # Eleven run processes load the code location at once on a machine shared with other work.
        "DAGSTER_GRPC_TIMEOUT_SECONDS": "300",
    }
    vl_instance.write(home, env)  # what `ventureloop instance init` writes for this environment
    assert vl_instance.experiment_run_limit_of(vl_instance.read(home)) == LIMIT
    # The code location in its own server, as compose.yaml runs it: a server the daemon starts must
    # hear from it every 20 s, and on a busy machine it shut down under the runs it was launching.
    socket = Path(tempfile.mkdtemp(prefix="vl-", dir="/tmp")) / "code.sock"  # a socket path has at most 107 bytes
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - grpc_server:\n      socket: {socket}\n      location_name: ventureloop\n")
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_url)  # the instance file names the variable
    log_path = tmp_path / "dagster.log"
    bin_dir = Path(sys.executable).parent
    with log_path.open("w") as log, dg.DagsterInstance.from_config(str(home)) as dagster:
        processes = []
        try:
            processes.append(
                started_group(
                    [
                        bin_dir / "dagster",
                        "api",
                        "grpc",
                        "-s",
                        socket,
                        "-m",
                        "orchestration.definitions",
                        "-d",
                        REPO,
                        "--location-name",
                        "ventureloop",
                    ],
                    env,
                    log,
                )
            )
            wait_for_server(socket, processes[0], log_path)
            processes.append(started_group([bin_dir / "dagster-daemon", "run", "-w", workspace], env, log))

            def held_back():
                records = experiment_runs(dagster)
                started_runs = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.STARTED]
                arrived = len(list(barrier.iterdir())) if barrier.exists() else 0
                return records if len(records) == LIMIT + 1 and len(started_runs) >= LIMIT <= arrived else None

            records = wait_for(f"{LIMIT} experiment runs at once", held_back, processes, log_path, BARRIER_SECONDS)
            # The one more waits in the queue while LIMIT run: the tag concurrency limit holds it back.
            (queued,) = [r.dagster_run for r in records if r.dagster_run.status != dg.DagsterRunStatus.STARTED]
            assert queued.status == dg.DagsterRunStatus.QUEUED
            extra = queued.tags["ventureloop/experiment"]
            transition(warehouse, extra, "cancelled", actor="test", reason="held back by the run limit, as it should")
            dagster.run_coordinator.cancel_run(queued.run_id)
            release.touch()

            def ended():
                records = experiment_runs(dagster)
                return records if all(r.dagster_run.is_finished for r in records) else None

            records = wait_for("the experiment runs to end", ended, processes, log_path, 120)
        finally:
            for process in reversed(processes):
                stop_group(process)
            shutil.rmtree(socket.parent, ignore_errors=True)
    wall = time.monotonic() - started
    ran = [r for r in records if r.dagster_run.tags["ventureloop/experiment"] != extra]
    states = {e: state_of(warehouse, e) for e in experiments if e != extra}
    assert set(states.values()) == {"completed"}, (states, log_path.read_text()[-3000:])
    assert state_of(warehouse, extra) == "cancelled"
    # One run each, launched by the sensor under its run key, however many times it ticked.
    assert sorted(r.dagster_run.tags["dagster/run_key"] for r in records) == sorted(
        f"experiment:{e}:attempt:1" for e in experiments
    )
    assert {r.dagster_run.status for r in ran} == {dg.DagsterRunStatus.SUCCESS}
    # Dagster's own record of the runs: all LIMIT were in progress at one moment.
    assert max_overlap([(r.start_time, r.end_time) for r in ran]) == LIMIT
    for experiment_id in states:
        assert list(history(warehouse, experiment_id)["to_state"]) == LIFE
        assert list(runs(warehouse, experiment_id)["status"]) == ["finished"]
    report = verify(warehouse)
    assert report.ok, report.summary()
    print(f"\n{LIMIT} experiment runs at once through the daemon and run queue: {wall:.1f} s")
