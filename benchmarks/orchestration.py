"""Orchestration overhead: experiment runs through the sensor, the run queue and the real daemon,
against the same playbook executed as a plain Python function on the same warehouse.

    python benchmarks/orchestration.py [--experiments 100] [--quick] [--threaded-dequeue]

Targets (the experiments issue): a fixed cost under 5 s a run (process start, code location
import, Dagster's run set-up and teardown); 100 experiments through the queue at 4 concurrent runs
within 2x of their serial in-process time.

Set-up: temporary PostgreSQL databases for the warehouse and the Dagster instance (on
BENCH_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres, trust auth; dropped
after), the instance rendered by orchestration/instance.py with DAGSTER_EXPERIMENT_RUN_LIMIT=4
and DAGSTER_MAX_CONCURRENT_RUNS=4 (otherwise as a user gets it: the queued run coordinator as
dagster.yaml configures it), `dagster-daemon run` on a workspace of orchestration.definitions,
and a webhook receiver on 127.0.0.1 in this process. Every experiment's playbook has the same five
steps, none of which waits: http, spend, command (`true`), a manual gate opened beforehand, http.

1. in-process: execute_experiment of each of N experiments, one after another (the baseline),
   measured before and after the daemon phases; the faster of the two serial totals is used.
2. one run: one approved experiment, launched by the sensor's first tick and run alone; its
   Dagster events split the run into queue, process start + code location import, set-up, the
   step, and teardown. Its fixed cost is everything but the step.
3. N runs: N experiments approved at once; the sensor's next tick launches them, the queue runs 4
   at a time. Wall time from the first run's enqueue to the last run's end, against the
   baseline's serial total; and the same per-run breakdown, as medians.
No timed assertion anywhere: the numbers are printed, with the machine's load average.

--threaded-dequeue sets the queued run coordinator's dequeue to 4 threads every second (a launch
waits until its run's process has loaded the code location, so a serial dequeue runs short runs
one at a time); without it the instance is the repository's (dagster.yaml).
"""

import argparse
import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _common import REPO, machine

# This script's name is the project's orchestration package's: the repository must come first.
sys.path.insert(0, str(REPO))

FIXED_COST_TARGET_S = 5.0
QUEUE_RATIO_TARGET = 2.0
CONCURRENT = 4
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class Receiver(BaseHTTPRequestHandler):
    calls: collections.Counter = collections.Counter()  # noqa: RUF012 - one receiver per process

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls[self.headers["Idempotency-Key"]] += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


def playbook(hook: str) -> list[dict]:
    return [
        {"id": "launch", "type": "http", "params": {"url": hook, "method": "POST", "body": {"n": 1}}},
        {
            "id": "ads",
            "type": "spend",
            "params": {"account": "expenses:ads", "amount_minor": 500, "currency": "USD"},
            "after": ["launch"],
        },
        {"id": "work", "type": "command", "params": {"argv": ["true"]}, "after": ["ads"]},
        {"id": "review", "type": "manual_gate", "params": {"prompt": "go?"}, "after": ["work"]},
        {"id": "announce", "type": "http", "params": {"url": hook, "method": "POST"}, "after": ["review"]},
    ]


def admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


def database_url(name: str) -> str:
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def approved(warehouse, count: int, hook: str, *, state: str = "approved") -> list[str]:
    """`count` experiments with the five-step playbook and an allocation, approved (or queued)."""
    import pandas as pd

    from core.experiments.checkpoints import open_gate
    from core.experiments.lifecycle import transition
    from core.experiments.proposals import ApprovalPolicy, propose_from_scored
    from core.ledger.audit import canonical_json

    tag = uuid.uuid4().hex[:8]
    scored = pd.DataFrame(
        [
            {
                "opportunity_id": f"bench-{tag}-{n}",
                "score": 0.7,
                "opportunity_type": "saas",
                "title": f"Benchmark opportunity {tag} {n}",
                "est_monthly_revenue_cents": 300_000,
                "cluster_id": f"bench-{tag}-{n}",
                "is_cluster_lead": True,
            }
            for n in range(count)
        ]
    )
    never = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
    created = list(propose_from_scored(warehouse, scored, count, never).created)
    assert len(created) == count, f"proposed {len(created)} of {count} experiments"
    for experiment_id in created:
        warehouse.execute(
            "UPDATE experiments.experiments SET playbook = %s, allocated_budget_minor = 5000 WHERE experiment_id = %s",
            [canonical_json(playbook(hook)), experiment_id],
        )
        open_gate(warehouse, experiment_id, "review", actor="benchmark", reason="opened beforehand")
        for to_state in ["approved", "queued"] if state == "queued" else ["approved"]:
            transition(warehouse, experiment_id, to_state, actor="benchmark", reason="benchmark")
    return created


def in_process(warehouse, ids: list[str]) -> list[float]:
    """Seconds of execute_experiment for each, one after another."""
    from core.experiments.executor import LiveEnvironment, execute_experiment

    seconds = []
    for experiment_id in ids:
        started = time.perf_counter()
        result = execute_experiment(
            warehouse, experiment_id, LiveEnvironment(), run_id=f"plain-{experiment_id}", attempt=1
        )
        seconds.append(time.perf_counter() - started)
        assert result.state == "completed", result
    return seconds


def breakdown(instance, run_id: str) -> dict[str, float]:
    """The run's phases from its Dagster events, in seconds."""
    import dagster as dg

    T = dg.DagsterEventType
    wanted = {T.RUN_ENQUEUED, T.RUN_STARTING, T.RUN_START, T.STEP_START, T.STEP_SUCCESS, T.RUN_SUCCESS}
    at = {}
    for entry in instance.all_logs(run_id, of_type=wanted):
        at.setdefault(entry.dagster_event.event_type, entry.timestamp)  # the first of each (no retries here)
    missing = wanted - set(at)
    assert not missing, f"run {run_id} has no {sorted(t.value for t in missing)} event"
    step = at[T.STEP_SUCCESS] - at[T.STEP_START]
    return {
        "queued": at[T.RUN_STARTING] - at[T.RUN_ENQUEUED],
        "process start + import": at[T.RUN_START] - at[T.RUN_STARTING],
        "set-up": at[T.STEP_START] - at[T.RUN_START],
        "step (the playbook)": step,
        "teardown": at[T.RUN_SUCCESS] - at[T.STEP_SUCCESS],
        "fixed cost": at[T.RUN_SUCCESS] - at[T.RUN_STARTING] - step,
        "enqueued": at[T.RUN_ENQUEUED],
        "ended": at[T.RUN_SUCCESS],
    }


def wait_for(instance, daemon: subprocess.Popen, log: Path, ids: list[str], timeout: float) -> list:
    import dagster as dg

    deadline = time.monotonic() + timeout
    wanted = set(ids)
    while True:
        records = [
            r
            for r in instance.get_run_records(filters=dg.RunsFilter(tags={"ventureloop/kind": "experiment"}))
            if r.dagster_run.tags.get("ventureloop/experiment") in wanted
        ]
        if len(records) >= len(ids) and all(r.dagster_run.is_finished for r in records):
            failed = [r.dagster_run.run_id for r in records if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS]
            assert not failed, f"runs {failed} did not succeed: {log.read_text()[-3000:]}"
            return records
        assert daemon.poll() is None, f"the daemon exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, (
            f"{sum(r.dagster_run.is_finished for r in records)} of {len(ids)} runs ended in {timeout:.0f} s"
        )
        time.sleep(0.5)


THREADED_DEQUEUE = {"dequeue_use_threads": True, "dequeue_num_workers": CONCURRENT, "dequeue_interval_seconds": 1}
LAZY_IMPORT = "import time; t = time.perf_counter(); import core.experiments.executor; print(time.perf_counter() - t)"


def lazy_import_seconds(repeat: int = 3) -> float:
    """What the op pays inside its step before it runs a step: the executor's imports (pandas,
    httpx), which the code location defers. Best of `repeat` fresh interpreters."""
    times = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", LAZY_IMPORT], cwd=REPO, check=True, capture_output=True, text=True)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return min(times)


PHASES = ("queued", "process start + import", "set-up", "step (the playbook)", "teardown", "fixed cost")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100, help="experiments through the queue (default 100)")
    parser.add_argument("--quick", action="store_true", help="8 experiments: a smoke run")
    parser.add_argument(
        "--threaded-dequeue",
        action="store_true",
        help="the queued run coordinator launches runs from 4 threads, every second (otherwise as "
        "the repository's dagster.yaml says)",
    )
    args = parser.parse_args()
    count = 8 if args.quick else args.experiments

    import dagster as dg
    import yaml

    from core.platform.schema import ensure_schema
    from core.platform.warehouse import Warehouse
    from orchestration import instance as vl_instance

    dequeue = "threaded dequeue (4 threads, 1 s)" if args.threaded_dequeue else "the repository's dagster.yaml dequeue"
    print(
        f"orchestration: {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{os.getloadavg()[0]:.1f}; {count} experiments, {dequeue}"
    )
    names = [f"vl_bench_{uuid.uuid4().hex[:10]}" for _ in ("warehouse", "dagster")]
    for name in names:
        admin(f"CREATE DATABASE {name}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    tmp = Path(tempfile.mkdtemp(prefix="ventureloop-bench-orchestration-"))
    daemon = None
    try:
        warehouse = Warehouse(database_url(names[0]))
        ensure_schema(warehouse)

        serial_before = in_process(warehouse, approved(warehouse, count, hook, state="queued"))
        print(f"  in-process, before: {count} experiments serially in {sum(serial_before):.1f} s", file=sys.stderr)

        home = tmp / "dagster"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")},
            "DAGSTER_HOME": str(home),
            "DAGSTER_POSTGRES_URL": database_url(names[1]),
            "WAREHOUSE_URL": warehouse.url,
            "VENTURELOOP_HOME": str(tmp),
            "OUTCOMES_SOURCE": "none",
            "DAGSTER_EXECUTOR": "in_process",
            "DAGSTER_EXPERIMENT_RUN_LIMIT": str(CONCURRENT),
            "DAGSTER_MAX_CONCURRENT_RUNS": str(CONCURRENT),
        }
        vl_instance.write(home, env)
        if args.threaded_dequeue:
            rendered = yaml.safe_load((home / "dagster.yaml").read_text())
            rendered["run_coordinator"]["config"] = {
                **rendered["run_coordinator"].get("config", {}),
                **THREADED_DEQUEUE,
            }
            (home / "dagster.yaml").write_text(yaml.safe_dump(rendered, sort_keys=False))
        workspace = tmp / "workspace.yaml"
        workspace.write_text(
            f"load_from:\n  - python_module:\n      module_name: orchestration.definitions\n"
            f"      working_directory: {REPO}\n      location_name: ventureloop\n"
        )
        os.environ["DAGSTER_POSTGRES_URL"] = env["DAGSTER_POSTGRES_URL"]  # the instance file names it
        log = tmp / "daemon.log"
        (single,) = approved(warehouse, 1, hook)
        with log.open("w") as out, dg.DagsterInstance.from_config(str(home)) as instance:
            daemon_started = time.time()
            daemon = subprocess.Popen(
                [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            (one,) = wait_for(instance, daemon, log, [single], timeout=300)
            alone = breakdown(instance, one.dagster_run.run_id)
            first_tick = alone["enqueued"] - daemon_started
            print(f"  one run: {alone['ended'] - alone['enqueued']:.1f} s", file=sys.stderr)

            many = approved(warehouse, count, hook)  # the sensor's next tick (30 s interval) launches them
            records = wait_for(instance, daemon, log, many, timeout=120 + 30 * count)
            phases = [breakdown(instance, r.dagster_run.run_id) for r in records]
            queue_wall = max(p["ended"] for p in phases) - min(p["enqueued"] for p in phases)
            peak = max_overlap([(r.start_time, r.end_time) for r in records])
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        daemon = None

        serial_after = in_process(warehouse, approved(warehouse, count, hook, state="queued"))
        lazy = lazy_import_seconds()
        load = os.getloadavg()
        assert set(Receiver.calls.values()) == {1}, "a webhook was called twice with one idempotency key"
        assert len(Receiver.calls) == 2 * (3 * count + 1)
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        server.shutdown()
        for name in names:
            admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    serial = min(sum(serial_before), sum(serial_after))
    per_experiment = serial / count
    print(f"\n  baseline: execute_experiment serially, {count} experiments of 5 steps on a PostgreSQL warehouse")
    print(f"    before the daemon phases {sum(serial_before):7.2f} s, after {sum(serial_after):7.2f} s; ")
    print(f"    using {serial:.2f} s = {per_experiment * 1000:.0f} ms an experiment")
    print(f"\n  {'phase of a Dagster run (s)':28} {'one run alone':>14} {f'median of {count} at {CONCURRENT}':>18}")
    for phase in PHASES:
        print(f"  {phase:28} {alone[phase]:14.2f} {statistics.median(p[phase] for p in phases):18.2f}")
    one_run = alone["ended"] - alone["enqueued"]
    print(
        f"\n  one run, enqueue to end: {one_run:.2f} s = {one_run / per_experiment:.1f}x the plain function "
        f"({per_experiment:.2f} s); the sensor's first tick came {first_tick:.1f} s after the daemon started"
    )
    fixed = alone["fixed cost"] + lazy
    print(
        f"  fixed cost of a run (everything but the step, plus the step's deferred imports, "
        f"`import core.experiments.executor` {lazy:.2f} s best of 3): {fixed:.2f} s alone, "
        f"{statistics.median(p['fixed cost'] for p in phases) + lazy:.2f} s median at {CONCURRENT} concurrent; "
        f"target < {FIXED_COST_TARGET_S:.0f} s: {'met' if fixed < FIXED_COST_TARGET_S else 'NOT met'}"
    )
    ratio = queue_wall / serial
    print(
        f"  {count} experiments through the queue at {CONCURRENT} concurrent (peak {peak} at once): {queue_wall:.1f} s "
        f"from the first enqueue to the last end = {ratio:.1f}x their serial in-process time ({serial:.1f} s); "
        f"target < {QUEUE_RATIO_TARGET:.0f}x: {'met' if ratio < QUEUE_RATIO_TARGET else 'NOT met'}"
    )
    print(f"  load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    return 0


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


if __name__ == "__main__":
    sys.exit(main())
