"""A run SIGKILLed mid-step, at the Dagster level: the experiment_run job runs as a separate
process (`dagster job execute`) on a PostgreSQL warehouse and Dagster instance, calls a real
local webhook, books a spend, and is killed (its whole process group, the command step's child
too) while its command step runs. The launcher sensor then sees the run is dead (its experiment
lock is free while experiments.runs says running), fails it in experiments.runs and in Dagster,
and launches attempt 2, which continues from the checkpoints: the webhook is called once per
idempotency key, the ledger holds one spend, the experiment completes, and its history and the
audit chain verify. The reaper itself (core.experiments.launches.reap_dead_runs) is checked on
both backends: a run whose lock is held is alive and left alone."""

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest
import yaml

from assets.experiments.execution import experiment_launcher, experiment_run
from assets.resources import ExperimentEnvironmentResource, WarehouseResource
from core.experiments.checkpoints import load_checkpoints, runs
from core.experiments.launches import DEAD_RUN_MESSAGE
from core.experiments.lifecycle import history
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from tests.integration.test_experiment_runs import LIFE, approved_experiment, state_of

REPO = Path(__file__).resolve().parents[2]
SPEND_MINOR = 1_200
# The command step: records its pid, then sleeps for as long as the `slow` file beside it says
# (attempt 1: a minute, killed long before; attempt 2: the file is gone and it ends at once).
WORK = textwrap.dedent(
    """
    import pathlib, sys, time
    here = pathlib.Path(sys.argv[1])
    (here / "pid").write_text(str(__import__("os").getpid()))
    slow = here / "slow"
    time.sleep(float(slow.read_text()) if slow.exists() else 0)
    """
)


class Receiver(BaseHTTPRequestHandler):
    """The webhook: counts each Idempotency-Key it is called with."""

    calls: ClassVar[collections.Counter] = collections.Counter()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls[self.headers["Idempotency-Key"]] += 1
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def webhook_url():
    Receiver.calls = collections.Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def sensor_tick(warehouse: Warehouse, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": WarehouseResource(url=warehouse.url)})
    return list(experiment_launcher(context).run_requests or [])


def wait_for(condition, what: str, child: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert child.poll() is None, (
            f"the run process exited ({child.returncode}) before {what}: {log.read_text()[-3000:]}"
        )
        assert time.monotonic() < deadline, f"no {what} after {timeout} s: {log.read_text()[-3000:]}"
        time.sleep(0.1)


def gone(pid: int) -> bool:
    """The process is dead: no longer there, or a zombie nobody has reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.postgres
def test_a_run_killed_mid_step_resumes_from_its_checkpoint_without_repeating_side_effects(
    tmp_path, postgres_database, monkeypatch, webhook_url
):
    from orchestration import instance as vl_instance

    warehouse = Warehouse(postgres_database())
    ensure_schema(warehouse)
    work = tmp_path / "work"
    work.mkdir()
    (work / "slow").write_text("60")
    playbook = [
        {"id": "launch", "type": "http", "params": {"url": webhook_url, "method": "POST", "body": {"n": 1}}},
        {
            "id": "ads",
            "type": "spend",
            "params": {"account": "expenses:ads", "amount_minor": SPEND_MINOR, "currency": "USD"},
            "after": ["launch"],
        },
        {
            "id": "work",
            "type": "command",
            "params": {"argv": [sys.executable, "-c", WORK, str(work)]},
            "after": ["ads"],
        },
        {"id": "announce", "type": "http", "params": {"url": webhook_url, "method": "POST"}, "after": ["work"]},
    ]
    experiment_id = approved_experiment(warehouse, playbook)

    home = tmp_path / "dagster"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_POSTGRES_URL": (dagster_url := postgres_database()),
        "WAREHOUSE_URL": warehouse.url,
        "VENTURELOOP_HOME": str(tmp_path),
        "OUTCOMES_SOURCE": "none",  # the live environment: real HTTP to the receiver above
        "DAGSTER_EXECUTOR": "in_process",
    }
    vl_instance.write(home, env)
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", dagster_url)  # the instance file names the variable
    with dg.DagsterInstance.from_config(str(home)) as dagster:
        (first,) = sensor_tick(warehouse, dagster)
        assert first.run_key == f"experiment:{experiment_id}:attempt:1"
        config = tmp_path / "run.yaml"
        config.write_text(yaml.safe_dump(first.run_config))
        log = tmp_path / "run.log"
        dagster_cli = str(Path(sys.executable).parent / "dagster")
        argv = [dagster_cli, "job", "execute", "-m", "orchestration.definitions", "-j", "experiment_run"]
        with log.open("w") as out:
            child = subprocess.Popen(
                [*argv, "-c", str(config), "--tags", json.dumps(first.tags)],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the kill below takes the command's child too
            )
        try:
            wait_for(
                lambda: (
                    set(load_checkpoints(warehouse, experiment_id)) == {"launch", "ads"} and (work / "pid").exists()
                ),
                "spend checkpointed and the command running",
                child,
                log,
            )
            # Alive and holding the experiment's lock: the sensor leaves it alone and launches nothing.
            assert sensor_tick(warehouse, dagster) == []
            assert runs(warehouse, experiment_id)["status"].tolist() == ["running"]
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        command_pid = int((work / "pid").read_text())
        deadline = time.monotonic() + 5
        while not gone(command_pid):
            assert time.monotonic() < deadline, f"the command step's process {command_pid} survived the kill"
            time.sleep(0.05)
        (work / "slow").unlink()

        before = load_checkpoints(warehouse, experiment_id)
        (killed,) = dagster.get_runs(filters=dg.RunsFilter(tags={"ventureloop/experiment": experiment_id}))
        # Nobody told Dagster or experiments.runs that the run died.
        assert killed.status == dg.DagsterRunStatus.STARTED
        assert runs(warehouse, experiment_id)["status"].tolist() == ["running"]
        assert state_of(warehouse, experiment_id) == "running"

        # The sensor's next tick: the run's lock is free, so its process is gone; it is failed in
        # both places and the experiment relaunched as attempt 2.
        (second,) = sensor_tick(warehouse, dagster)
        assert second.run_key == f"experiment:{experiment_id}:attempt:2"
        assert second.tags["ventureloop/launch"] == "retry after failed run"
        assert dagster.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        (attempt_1,) = runs(warehouse, experiment_id).to_dict("records")
        assert (attempt_1["status"], attempt_1["run_id"], attempt_1["message"]) == (
            "failed",
            killed.run_id,
            DEAD_RUN_MESSAGE,
        )

        resumed = experiment_run.execute_in_process(
            run_config=second.run_config,
            tags=second.tags,
            instance=dagster,
            resources={
                "warehouse": WarehouseResource(url=warehouse.url),
                "experiment_environment": ExperimentEnvironmentResource(outcomes_source="none"),
            },
        )
        assert resumed.success
        (output,) = [e for e in resumed.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
        metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
        assert (metadata["skipped_steps"], metadata["completed_steps"]) == ("launch, ads", "work, announce")

    assert resumed.run_id != killed.run_id
    after = load_checkpoints(warehouse, experiment_id)
    assert {s: after[s] for s in ("launch", "ads")} == {s: before[s] for s in ("launch", "ads")}  # untouched
    assert {s: (c["attempt"], c["run_id"]) for s, c in after.items()} == {
        "launch": (1, killed.run_id),
        "ads": (1, killed.run_id),
        "work": (2, resumed.run_id),
        "announce": (2, resumed.run_id),
    }
    assert Receiver.calls == {f"experiment:{experiment_id}:step:{s}": 1 for s in ("launch", "announce")}
    spends = warehouse.query(
        "SELECT t.idempotency_key, p.amount_minor FROM ledger.transactions t "
        "JOIN ledger.postings p ON p.transaction_id = t.transaction_id "
        "WHERE p.experiment_id = %s AND split_part(p.account_id, ':', 1) = 'expenses'",
        [experiment_id],
    )
    assert spends.to_dict("records") == [
        {"idempotency_key": f"experiment:{experiment_id}:step:ads", "amount_minor": SPEND_MINOR}
    ]
    assert state_of(warehouse, experiment_id) == "completed"
    assert list(history(warehouse, experiment_id)["to_state"]) == LIFE  # running once: the kill left it running
    assert runs(warehouse, experiment_id)["status"].tolist() == ["failed", "finished"]
    report = verify(warehouse)
    assert report.ok, report.summary()


def test_only_runs_whose_lock_is_free_are_reaped(warehouse):
    """core.experiments.launches.reap_dead_runs on both backends: a run marked running whose lock
    another holder has is alive and left alone; once the lock is free it is failed, once."""
    from datetime import UTC, datetime

    from core.experiments.checkpoints import start_run
    from core.experiments.launches import DeadRun, reap_dead_runs
    from core.experiments.lock import experiment_lock

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    alive, dead = (
        approved_experiment(warehouse, [{"id": "x", "type": "command", "params": {"argv": ["true"]}}]) for _ in range(2)
    )
    start_run(warehouse, alive, 1, "run-alive", now)
    start_run(warehouse, dead, 1, "run-dead", now)
    with experiment_lock(warehouse, alive):  # as its run process would
        assert reap_dead_runs(warehouse, now) == [DeadRun(dead, 1, "run-dead")]
    assert runs(warehouse, alive)["status"].tolist() == ["running"]
    assert runs(warehouse, dead)[["status", "message"]].values.tolist() == [["failed", DEAD_RUN_MESSAGE]]
    assert reap_dead_runs(warehouse, now) == [DeadRun(alive, 1, "run-alive")]
    assert reap_dead_runs(warehouse, now) == []
