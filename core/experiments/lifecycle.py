"""The experiment lifecycle: nine states, an explicit table of allowed transitions, and
`transition`, which validates a move and persists it with its history row and audit event in one
transaction.

The table, and why:
    proposed  -> approved | cancelled        cancelled from proposed is a rejection
    approved  -> queued | cancelled
    queued    -> running | cancelled
    running   -> paused | completed | failed | cancelled | rolled_back
    paused    -> running | cancelled | rolled_back
    failed    -> rolled_back                 a failure's side effects are undone by its compensation
    completed, cancelled, rolled_back        terminal: nothing leaves them

There is no way back to proposed or approved: a changed plan is a new experiment. A paused run
resumes to running (not queued): its checkpoints say where it continues. A completed experiment is
not rolled back: its outcome is part of what the loop learns from; a correction of its money is a
reversing ledger transaction, not a state change.

Concurrency: `transition` reads the current state inside write_transaction (which serializes
audited writers: an advisory lock on PostgreSQL, a process lock on DuckDB) and updates it with a
compare-and-set on (state, state_seq), so two transitions of one experiment from the same state
never both succeed; `expected_from` lets a caller say which state it decided from.

People move experiments with five actions (ACTIONS: approve, reject, cancel, pause, resume), from
the shell (`ventureloop experiments approve ...`) and from the Dagster UI (the `approve_experiment`
... jobs). Both call `act`, so the two can never disagree about what an action may move.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from core.ledger.audit import Clock, append_events, utc_now, write_transaction
from core.platform.warehouse import Warehouse, query_frame, run_sql

PROPOSED = "proposed"
APPROVED = "approved"
QUEUED = "queued"
RUNNING = "running"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
ROLLED_BACK = "rolled_back"

STATES: tuple[str, ...] = (PROPOSED, APPROVED, QUEUED, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED, ROLLED_BACK)

ALLOWED: Mapping[str, frozenset[str]] = {
    "proposed": frozenset({"approved", "cancelled"}),
    "approved": frozenset({"queued", "cancelled"}),
    "queued": frozenset({"running", "cancelled"}),
    "running": frozenset({"paused", "completed", "failed", "cancelled", "rolled_back"}),
    "paused": frozenset({"running", "cancelled", "rolled_back"}),
    "failed": frozenset({"rolled_back"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
    "rolled_back": frozenset(),
}
TERMINAL: frozenset[str] = frozenset(state for state, targets in ALLOWED.items() if not targets)

EXPERIMENT_PROPOSED = "experiment.proposed"
EXPERIMENT_TRANSITIONED = "experiment.transitioned"


class LifecycleError(ValueError):
    """A transition the table does not allow, of an unknown experiment, or from a stale state."""


class UnknownExperiment(LifecycleError):
    pass


class ActionNotAllowed(LifecycleError):
    """An action asked of an experiment in a state it does not apply to; nothing changed."""


@dataclass(frozen=True)
class Transition:
    experiment_id: str
    seq: int
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime


def allowed_targets(state: str) -> list[str]:
    """The states `state` may move to, in STATES order."""
    if state not in ALLOWED:
        raise LifecycleError(f"unknown experiment state {state!r}: the states are {', '.join(STATES)}")
    return [s for s in STATES if s in ALLOWED[state]]


def check_transition(from_state: str, to_state: str) -> None:
    """Raise LifecycleError unless the table allows from_state -> to_state."""
    targets = allowed_targets(from_state)
    if to_state not in ALLOWED:
        raise LifecycleError(f"unknown experiment state {to_state!r}: the states are {', '.join(STATES)}")
    if to_state not in targets:
        allowed = ", ".join(targets) if targets else f"none ({from_state} is terminal)"
        raise LifecycleError(f"transition {from_state} -> {to_state} is not allowed; from {from_state}: {allowed}")


def transition(
    warehouse: Warehouse,
    experiment_id: str,
    to_state: str,
    *,
    actor: str,
    reason: str,
    expected_from: str | None = None,
    clock: Clock = utc_now,
) -> Transition:
    """Move one experiment to `to_state`: the state, a row of experiments.transitions and an
    `experiment.transitioned` audit event, committed together or not at all."""
    if not actor or not actor.strip():
        raise LifecycleError(f"experiment {experiment_id}: a transition needs an actor (who moves it)")
    if not reason or not reason.strip():
        raise LifecycleError(f"experiment {experiment_id}: a transition to {to_state} needs a reason")
    at = clock()
    with write_transaction(warehouse) as conn:
        row = run_sql(
            conn,
            "SELECT state, state_seq FROM experiments.experiments WHERE experiment_id = %s",
            [experiment_id],
        ).fetchone()
        if row is None:
            raise UnknownExperiment(f"no experiment {experiment_id!r} in experiments.experiments")
        from_state, seq = row[0], int(row[1])
        if expected_from is not None and from_state != expected_from:
            raise LifecycleError(
                f"experiment {experiment_id} is {from_state}, not {expected_from} (the state this move to "
                f"{to_state} was decided from): nothing changed; read its state again"
            )
        try:
            check_transition(from_state, to_state)
        except LifecycleError as error:
            raise LifecycleError(f"experiment {experiment_id}: {error}") from None
        updated = run_sql(
            conn,
            "UPDATE experiments.experiments SET state = %s, state_seq = %s, updated_at = %s "
            "WHERE experiment_id = %s AND state = %s AND state_seq = %s RETURNING experiment_id",
            [to_state, seq + 1, at, experiment_id, from_state, seq],
        ).fetchall()
        if len(updated) != 1:  # the lock makes this unreachable; the compare-and-set is the final guard
            raise LifecycleError(f"experiment {experiment_id} moved from {from_state} while it was being updated")
        done = Transition(experiment_id, seq + 1, from_state, to_state, actor, reason, at)
        record_transition(conn, warehouse.backend, done)
    return done


def record_transition(conn: Any, backend: str, done: Transition) -> None:
    """The history row and the audit event of a transition (or of the creation, from_state None),
    inside the caller's write_transaction."""
    run_sql(
        conn,
        "INSERT INTO experiments.transitions "
        "(experiment_id, seq, from_state, to_state, actor, reason, transitioned_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [done.experiment_id, done.seq, done.from_state, done.to_state, done.actor, done.reason, done.at],
    )
    event = EXPERIMENT_PROPOSED if done.from_state is None else EXPERIMENT_TRANSITIONED
    payload = {
        "experiment_id": done.experiment_id,
        "seq": done.seq,
        "from_state": done.from_state,
        "to_state": done.to_state,
        "actor": done.actor,
        "reason": done.reason,
    }
    append_events(conn, backend, [(event, payload)], recorded_at=done.at)


@dataclass(frozen=True)
class Action:
    """What a person may do to an experiment: the state it moves to, and the states it moves from
    (a subset of those the table allows into `to_state`; `allowed_from` says it in words)."""

    name: str
    to_state: str
    from_states: frozenset[str]
    allowed_from: str

    def applies_to(self, state: str) -> bool:
        return state in self.from_states


def _into(to_state: str) -> frozenset[str]:
    return frozenset(state for state, targets in ALLOWED.items() if to_state in targets)


ACTIONS: Mapping[str, Action] = {
    "approve": Action("approve", APPROVED, frozenset({PROPOSED}), "a proposed experiment"),
    # A rejection is a cancel that only a proposal takes: rejecting what already runs would hide a
    # cancel of spent money behind a word that means "never started".
    "reject": Action("reject", CANCELLED, frozenset({PROPOSED}), "a proposed experiment"),
    "cancel": Action("cancel", CANCELLED, _into(CANCELLED), "an experiment that has not finished (proposed to paused)"),
    "pause": Action("pause", PAUSED, frozenset({RUNNING}), "a running experiment"),
    # Only from paused: running -> running is not a move, and queued -> running is the executor's.
    "resume": Action("resume", RUNNING, frozenset({PAUSED}), "a paused experiment"),
}


def actions_for(state: str) -> list[str]:
    """The actions open to an experiment in `state`, in ACTIONS order."""
    allowed_targets(state)  # names the states on a typo
    return [name for name, action in ACTIONS.items() if action.applies_to(state)]


def act(
    warehouse: Warehouse,
    action: str,
    experiment_id: str,
    *,
    actor: str,
    reason: str,
    clock: Clock = utc_now,
) -> Transition:
    """Do one of ACTIONS to an experiment: the transition (history row and audit event) if the
    action applies to its current state; otherwise ActionNotAllowed naming both states and the
    actions that do apply, or UnknownExperiment. The CLI and the Dagster jobs both call this."""
    if action not in ACTIONS:
        raise LifecycleError(f"unknown experiment action {action!r}: the actions are {', '.join(ACTIONS)}")
    spec = ACTIONS[action]
    state = get_experiment(warehouse, experiment_id)["state"]
    if not spec.applies_to(state):
        raise ActionNotAllowed(_refusal(experiment_id, spec, state))
    # Decided from `state`: if another writer moves it first, transition refuses (stale) instead of
    # applying this action to a state it was not meant for.
    return transition(
        warehouse, experiment_id, spec.to_state, actor=actor, reason=reason, expected_from=state, clock=clock
    )


def _refusal(experiment_id: str, spec: Action, state: str) -> str:
    message = (
        f"experiment {experiment_id} is {state}, not {_in_words(spec.from_states)}: cannot {spec.name} it "
        f"({spec.name} moves {spec.allowed_from} to {spec.to_state})"
    )
    try:
        check_transition(state, spec.to_state)
    except LifecycleError as error:
        message += f"; {error}"
    if open_actions := actions_for(state):
        return f"{message}. Nothing changed; the actions open to it now: {', '.join(open_actions)}"
    if state in TERMINAL:
        return f"{message}. Nothing changed: {state} is final, and a changed plan is a new experiment"
    return (
        f"{message}. Nothing changed; no action applies to a {state} experiment: the executor moves it on "
        f"(to {', '.join(allowed_targets(state))})"
    )


def _in_words(states: frozenset[str]) -> str:
    ordered = [s for s in STATES if s in states]
    return ordered[0] if len(ordered) == 1 else f"{', '.join(ordered[:-1])} or {ordered[-1]}"


def get_experiment(warehouse: Warehouse, experiment_id: str) -> dict[str, Any]:
    """One experiment's row as a dict; UnknownExperiment if there is none."""
    frame = warehouse.query("SELECT * FROM experiments.experiments WHERE experiment_id = %s", [experiment_id])
    if frame.empty:
        raise UnknownExperiment(f"no experiment {experiment_id!r} in experiments.experiments")
    return frame.iloc[0].to_dict()


def list_experiments(warehouse: Warehouse, state: str | None = None) -> pd.DataFrame:
    """Experiments (all, or those in `state`), newest first."""
    if state is not None:
        allowed_targets(state)  # names the states on a typo
    with warehouse.connect() as conn:
        where, params = ("WHERE state = %s", [state]) if state else ("", [])
        return query_frame(
            conn,
            "SELECT experiment_id, state, category, score, requested_budget_minor, currency, title "
            f"FROM experiments.experiments {where} ORDER BY created_at DESC, experiment_id",
            params,
        )


def history(warehouse: Warehouse, experiment_id: str) -> pd.DataFrame:
    """The experiment's transitions in order, its creation (from_state NULL) first."""
    return warehouse.query(
        "SELECT seq, from_state, to_state, actor, reason, transitioned_at FROM experiments.transitions "
        "WHERE experiment_id = %s ORDER BY seq",
        [experiment_id],
    )


def new_experiment_id(idempotency_key: str) -> str:
    """A UUID derived from the idempotency key: the same proposal gets the same id on every run."""
    return str(uuid.uuid5(_NAMESPACE, idempotency_key))


_NAMESPACE = uuid.UUID("6f1c1f4e-5e0a-4d43-9f43-76656e747572")
