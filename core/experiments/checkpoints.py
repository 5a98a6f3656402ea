"""What an experiment's runs have done: checkpoints of completed steps, opened manual gates, and
one row per run.

A checkpoint is written after a step completes, in the same transaction as the step's own ledger
write where there is one (a spend), so a step is either done and recorded or neither: a rerun
skips every checkpointed step and never repeats its side effects.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core.experiments.lifecycle import PAUSED, LifecycleError, get_experiment, transition
from core.experiments.playbook import validate_playbook
from core.ledger.audit import Clock, append_events, utc_now, write_transaction
from core.platform.warehouse import Warehouse, run_sql

GATE_OPENED = "experiment.gate_opened"
RETRYING = "retrying: "  # the message of a run whose op retries a transient step failure


def as_utc(value: Any) -> datetime | None:
    """A timestamp from either backend (datetime, pandas Timestamp, NaT, None) as an aware UTC datetime."""
    if value is None or (not isinstance(value, datetime) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()


def load_checkpoints(warehouse: Warehouse, experiment_id: str) -> dict[str, dict[str, Any]]:
    """step_id -> its checkpoint (result decoded from JSON, completed_at in UTC)."""
    frame = warehouse.query(
        "SELECT step_id, step_type, attempt, run_id, environment, result, completed_at "
        "FROM experiments.checkpoints WHERE experiment_id = %s ORDER BY completed_at, step_id",
        [experiment_id],
    )
    checkpoints = {}
    for row in frame.to_dict("records"):
        row["result"] = json.loads(row["result"])
        row["completed_at"] = as_utc(row["completed_at"])
        row["attempt"] = int(row["attempt"])
        checkpoints[row["step_id"]] = row
    return checkpoints


def latest_checkpoint_at(warehouse: Warehouse, experiment_id: str) -> datetime | None:
    return as_utc(
        warehouse.scalar(
            "SELECT max(completed_at) FROM experiments.checkpoints WHERE experiment_id = %s", [experiment_id]
        )
    )


def write_checkpoint(
    conn: Any,
    *,
    experiment_id: str,
    step: Mapping[str, Any],
    attempt: int,
    run_id: str,
    environment: str,
    result: Mapping[str, Any],
    at: datetime,
) -> None:
    """Inside the caller's transaction. A second checkpoint of one step violates the primary key:
    the experiment lock makes that unreachable, the key is the final guard."""
    run_sql(
        conn,
        "INSERT INTO experiments.checkpoints "
        "(experiment_id, step_id, step_type, attempt, run_id, environment, result, completed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [
            experiment_id,
            step["id"],
            step["type"],
            attempt,
            run_id,
            environment,
            json.dumps(result, sort_keys=True, default=str),
            at,
        ],
    )


def gate_open(warehouse: Warehouse, experiment_id: str, step_id: str) -> dict[str, Any] | None:
    frame = warehouse.query(
        "SELECT opened_by, reason, opened_at FROM experiments.gates WHERE experiment_id = %s AND step_id = %s",
        [experiment_id, step_id],
    )
    if frame.empty:
        return None
    row = frame.iloc[0].to_dict()
    return {"opened_by": row["opened_by"], "reason": row["reason"], "opened_at": as_utc(row["opened_at"]).isoformat()}


def open_gate(
    warehouse: Warehouse, experiment_id: str, step_id: str, *, actor: str, reason: str, clock: Clock = utc_now
) -> str:
    """Open the manual gate `step_id` (recorded once, audited); a paused experiment resumes to
    running with wake_at = now, so the launch sensor starts its next run. Returns its state."""
    if not actor or not actor.strip():
        raise LifecycleError(f"experiment {experiment_id}: opening gate {step_id} needs an actor")
    if not reason or not reason.strip():
        raise LifecycleError(f"experiment {experiment_id}: opening gate {step_id} needs a reason")
    experiment = get_experiment(warehouse, experiment_id)
    gates = [s["id"] for s in validate_playbook(json.loads(experiment["playbook"])) if s["type"] == "manual_gate"]
    if step_id not in gates:
        raise LifecycleError(
            f"experiment {experiment_id} has no manual gate {step_id!r}: its gates are "
            f"{', '.join(gates) if gates else 'none'} (`ventureloop experiments show {experiment_id}`)"
        )
    now = clock()
    with write_transaction(warehouse) as conn:
        known = run_sql(
            conn,
            "SELECT 1 FROM experiments.gates WHERE experiment_id = %s AND step_id = %s",
            [experiment_id, step_id],
        ).fetchone()
        if known is None:
            run_sql(
                conn,
                "INSERT INTO experiments.gates (experiment_id, step_id, opened_by, reason, opened_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                [experiment_id, step_id, actor, reason, now],
            )
            payload = {"experiment_id": experiment_id, "step_id": step_id, "opened_by": actor, "reason": reason}
            append_events(conn, warehouse.backend, [(GATE_OPENED, payload)], recorded_at=now)
    state = get_experiment(warehouse, experiment_id)["state"]
    if state == PAUSED:
        transition(
            warehouse,
            experiment_id,
            "running",
            actor=actor,
            reason=f"manual gate {step_id} opened: {reason}",
            expected_from=PAUSED,
            clock=lambda: now,
        )
        set_wake_at(warehouse, experiment_id, now)
        state = "running"
    return state


def set_wake_at(warehouse: Warehouse, experiment_id: str, at: datetime | None) -> None:
    warehouse.execute("UPDATE experiments.experiments SET wake_at = %s WHERE experiment_id = %s", [at, experiment_id])


def start_run(warehouse: Warehouse, experiment_id: str, attempt: int, run_id: str, at: datetime) -> datetime:
    """Record the run (running) and return when its attempt started; a Dagster op retry of the same
    attempt starts it again and keeps that time.

    Runs still marked running belong to processes that died (this run holds the lock): failed."""
    with warehouse.connect() as conn:
        run_sql(
            conn,
            "UPDATE experiments.runs SET status = 'failed', finished_at = %s, "
            "message = 'the run ended without finishing (its process was killed or lost)' "
            "WHERE experiment_id = %s AND status = 'running' AND attempt <> %s",
            [at, experiment_id, attempt],
        )
        updated = run_sql(
            conn,
            "UPDATE experiments.runs SET status = 'running', run_id = %s, finished_at = NULL, message = NULL "
            "WHERE experiment_id = %s AND attempt = %s RETURNING started_at",
            [run_id, experiment_id, attempt],
        ).fetchall()
        if updated:
            return as_utc(updated[0][0])
        run_sql(
            conn,
            "INSERT INTO experiments.runs (experiment_id, attempt, run_id, status, started_at) "
            "VALUES (%s, %s, %s, 'running', %s)",
            [experiment_id, attempt, run_id, at],
        )
        return at


def finish_run(
    warehouse: Warehouse, experiment_id: str, attempt: int, status: str, message: str, at: datetime | None
) -> None:
    """Set the run's status (running|finished|failed) and message; `at` None: not finished."""
    warehouse.execute(
        "UPDATE experiments.runs SET status = %s, finished_at = %s, message = %s "
        "WHERE experiment_id = %s AND attempt = %s",
        [status, at, message, experiment_id, attempt],
    )


def runs(warehouse: Warehouse, experiment_id: str) -> pd.DataFrame:
    """The experiment's runs, first attempt first."""
    return warehouse.query(
        "SELECT attempt, run_id, status, started_at, finished_at, message FROM experiments.runs "
        "WHERE experiment_id = %s ORDER BY attempt",
        [experiment_id],
    )
