"""DAGSTER_EXECUTOR=celery for real: a `dagster-celery worker` process on the real Redis, a
PostgreSQL Dagster instance and a PostgreSQL warehouse, against the same job run in-process."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from core.platform.warehouse import Warehouse
from orchestration import instance as instance_file
from orchestration.wiring import DEFAULT_CELERY_BROKER_URL

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("celery_probe.py")
WORKER_START = ["dagster-celery", "worker", "start", "-A", "orchestration.celery_app"]  # as docs/deploy.md says
RUN_TIMEOUT = 60  # seconds: a job the worker never picks up must fail the test, not hang it
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
    try:
        deadline = time.monotonic() + 30
        while "ready." not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the celery worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
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


def _execute(recon_job, instance: dg.DagsterInstance, run_config: dict) -> Any:
    """dg.execute_job, but failing after RUN_TIMEOUT: the celery loop waits for ever on a task
    no worker takes."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = dg.execute_job(recon_job, instance=instance, run_config=run_config)
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(RUN_TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"the run did not finish in {RUN_TIMEOUT} s: no worker took its steps?")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_a_job_runs_its_steps_in_the_celery_worker(celery_env, worker):
    repository = ReconstructableRepository.for_file(str(PROBE), "defs", working_directory=str(ROOT))
    recon_job = repository.get_reconstructable_job("celery_probe")
    job = recon_job.get_definition()
    assert job.executor_def.name == "celery"  # chosen by DAGSTER_EXECUTOR alone

    config = {"ops": {"write_probe": {"config": {"label": "celery"}}}}
    with dg.DagsterInstance.from_config(celery_env["DAGSTER_HOME"]) as instance:
        result = _execute(recon_job, instance, config)
        assert result.success
        in_process = job.execute_in_process(
            run_config={"ops": {"write_probe": {"config": {"label": "in_process"}}}}, instance=instance
        )
        assert in_process.success
        messages = [event.message or "" for event in instance.all_logs(result.run_id)]

    rows = Warehouse(celery_env["WAREHOUSE_URL"]).query("SELECT * FROM public.celery_probe ORDER BY label")
    assert rows["label"].tolist() == ["celery", "in_process"]
    by_label = rows.set_index("label")
    assert by_label.loc["in_process", "pid"] == os.getpid()
    assert by_label.loc["celery", "pid"] != os.getpid()  # the worker's process, not this one
    assert by_label.loc["celery", "run_id"] == result.run_id
    queue = celery_env["DAGSTER_CELERY_QUEUE"]
    for step in ("write_probe", "count_probes"):
        assert f'Submitting celery task for step "{step}" to queue "{queue}".' in messages
        assert f"[CeleryExecutor] Executing steps {step} in celery worker" in messages
    assert "Task execute_plan[" in worker.read_text()  # the worker's own log shows it took the tasks
