"""Which experiments need a run now: what the launch sensor asks every tick.

A launch's run key is the experiment and attempt, so the sensor can never start the same attempt
twice; the attempt is one more than the experiment's last recorded run.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.experiments.checkpoints import as_utc
from core.experiments.executor import ExecutionLimits
from core.experiments.lifecycle import APPROVED, QUEUED, get_experiment, transition
from core.experiments.lock import ExperimentBusy, experiment_lock
from core.platform.warehouse import Warehouse, run_sql

APPROVED_REASON = "approved"
WOKE = "woke"
RESUMED = "resumed"
RETRY = "retry after failed run"


@dataclass(frozen=True)
class Launch:
    experiment_id: str
    attempt: int
    reason: str  # "approved", "woke", "resumed", "retry after failed run"

    @property
    def run_key(self) -> str:
        return f"experiment:{self.experiment_id}:attempt:{self.attempt}"


def _runs_by_experiment(warehouse: Warehouse, now: datetime, limits: ExecutionLimits) -> dict[str, list[dict]]:
    """Each experiment's runs, first attempt first. A run still marked running that started more
    than max_wall_seconds ago counts as failed (its executor would have stopped it by now); one whose
    process died is marked failed by reap_dead_runs before this reads."""
    frame = warehouse.query(
        "SELECT experiment_id, attempt, status, started_at FROM experiments.runs ORDER BY experiment_id, attempt"
    )
    stale = now - timedelta(seconds=limits.max_wall_seconds)
    runs: dict[str, list[dict]] = {}
    for row in frame.to_dict("records"):
        status = row["status"]
        if status == "running" and as_utc(row["started_at"]) < stale:
            status = "failed"
        runs.setdefault(row["experiment_id"], []).append({"attempt": int(row["attempt"]), "status": status})
    return runs


def due_launches(warehouse: Warehouse, now: datetime, limits: ExecutionLimits) -> list[Launch]:
    """Approved experiments with a budget allocated (the sensor queues them on launch), queued ones
    whose first run never started, running ones whose wake_at has come (or that were resumed) with
    no run in progress, and running ones whose last run failed with attempts left. Runs whose
    process died (SIGKILL, a lost machine) are marked failed first (reap_dead_runs)."""
    reap_dead_runs(warehouse, now)
    runs = _runs_by_experiment(warehouse, now, limits)
    frame = warehouse.query(
        "SELECT e.experiment_id, e.state, e.allocated_budget_minor, e.wake_at, "
        "(SELECT t.from_state FROM experiments.transitions t WHERE t.experiment_id = e.experiment_id "
        " ORDER BY t.seq DESC LIMIT 1) AS last_from "
        "FROM experiments.experiments e WHERE e.state IN ('approved', 'queued', 'running') "
        "ORDER BY e.created_at, e.experiment_id"
    )
    launches = []
    for row in frame.to_dict("records"):
        experiment_id, state = row["experiment_id"], row["state"]
        history = runs.get(experiment_id, [])
        attempt = (history[-1]["attempt"] if history else 0) + 1
        if state == APPROVED or (state == QUEUED and not history):
            allocated = row["allocated_budget_minor"]
            if state == QUEUED:
                launches.append(Launch(experiment_id, 1, APPROVED_REASON))
            elif allocated is not None and allocated == allocated and int(allocated) > 0:
                launches.append(Launch(experiment_id, attempt, APPROVED_REASON))
            continue
        # From here running, or queued with a run that died before moving it to running: the same
        # rules bring either back.
        if any(r["status"] == "running" for r in history):
            continue
        if history and history[-1]["status"] == "failed":
            if sum(r["status"] == "failed" for r in history) < limits.max_attempts:
                launches.append(Launch(experiment_id, attempt, RETRY))
            continue
        wake_at = as_utc(row["wake_at"])
        if wake_at is None or wake_at <= now:
            launches.append(Launch(experiment_id, attempt, RESUMED if row["last_from"] == "paused" else WOKE))
    return launches


@dataclass(frozen=True)
class DeadRun:
    experiment_id: str
    attempt: int
    run_id: str


DEAD_RUN_MESSAGE = (
    "the run's process died without finishing (killed or lost): its experiment lock was free while the "
    "run was marked running; the next attempt continues from the checkpoints"
)


def reap_dead_runs(warehouse: Warehouse, now: datetime) -> list[DeadRun]:
    """Mark failed every run marked running whose process is gone, and return them.

    A live run holds its experiment's lock from before it records itself running until after it
    records its end (core.experiments.executor), and the lock dies with the process (a PostgreSQL
    session lock, a DuckDB flock). So a run marked running whose lock we can take is dead; it is
    marked failed while we hold the lock, so no new run can start between the check and the write.
    Without this a SIGKILLed run would block its experiment until max_wall_seconds had passed."""
    frame = warehouse.query(
        "SELECT experiment_id, attempt, run_id FROM experiments.runs WHERE status = 'running' "
        "ORDER BY experiment_id, attempt"
    )
    dead = []
    for row in frame.to_dict("records"):
        run = DeadRun(str(row["experiment_id"]), int(row["attempt"]), str(row["run_id"]))
        try:
            with experiment_lock(warehouse, run.experiment_id), warehouse.connect() as conn:
                updated = run_sql(
                    conn,
                    "UPDATE experiments.runs SET status = 'failed', finished_at = %s, message = %s "
                    "WHERE experiment_id = %s AND attempt = %s AND run_id = %s AND status = 'running' "
                    "RETURNING attempt",
                    [now, DEAD_RUN_MESSAGE, run.experiment_id, run.attempt, run.run_id],
                ).fetchall()
        except ExperimentBusy:
            continue  # its run is alive
        if updated:
            dead.append(run)
    return dead


def exhausted(warehouse: Warehouse, limits: ExecutionLimits) -> list[str]:
    """Running experiments with max_attempts failed runs, and failed ones whose rollback was
    interrupted: the sensor calls fail_experiment on each (it finishes what is left)."""
    frame = warehouse.query(
        "SELECT r.experiment_id FROM experiments.runs r "
        "JOIN experiments.experiments e ON e.experiment_id = r.experiment_id "
        "WHERE e.state = 'running' AND r.status = 'failed' "
        "GROUP BY r.experiment_id HAVING count(*) >= %s "
        "UNION SELECT experiment_id FROM experiments.experiments WHERE state = 'failed' ORDER BY 1",
        [limits.max_attempts],
    )
    return frame["experiment_id"].tolist()


def queue_launch(warehouse: Warehouse, launch: Launch, *, actor: str) -> None:
    """approved -> queued on the first launch; a later launch (or a repeat of the first) changes nothing."""
    if get_experiment(warehouse, launch.experiment_id)["state"] != APPROVED:
        return
    transition(
        warehouse,
        launch.experiment_id,
        QUEUED,
        actor=actor,
        reason=f"launched as {launch.run_key} ({launch.reason})",
        expected_from=APPROVED,
    )
