"""The executor: one run of one experiment's playbook, step by step, from its checkpoints.

`execute_experiment` takes the experiment's lock (core.experiments.lock), moves it queued|running
-> running, records the run in experiments.runs and runs the validated playbook in order,
skipping every step that has a checkpoint. Each step's handler (core.experiments.steps) either
completes (checkpointed), parks the experiment until a time (wake_at; the launch sensor starts the
next run then), pauses it for a person, raises RetryableStepError (the Dagster op retries the run)
or fails it: StepFailed, or a limit exceeded, runs `fail_experiment`, which undoes the experiment's
spends in reverse step order and leaves it rolled_back. Before each step the state is read again,
so a cancel or pause between steps stops the run cleanly.

Transitions and checkpoints use the environment's clock (simulated time in the simulator); the
rows of experiments.runs use the wall clock, since they describe processes.
"""

import contextlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from core.experiments.checkpoints import (
    finish_run,
    load_checkpoints,
    set_wake_at,
    start_run,
    write_checkpoint,
)
from core.experiments.environment import Clock, Environment
from core.experiments.lifecycle import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PAUSED,
    QUEUED,
    ROLLED_BACK,
    RUNNING,
    LifecycleError,
    get_experiment,
    transition,
)
from core.experiments.lock import ExperimentBusy, experiment_lock
from core.experiments.playbook import validate_playbook
from core.experiments.steps import (
    HANDLERS,
    Parked,
    Paused,
    RetryableStepError,
    StepContext,
    StepFailed,
    spend_keys,
)
from core.ledger.audit import utc_now, write_transaction
from core.ledger.booking import booked_keys
from core.ledger.budgets import reverse_spend
from core.platform.warehouse import Warehouse

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ExecutionLimits",
    "ExecutionResult",
    "ExperimentBusy",
    "LiveEnvironment",
    "RetryableStepError",
    "StepFailed",
    "execute_experiment",
    "fail_experiment",
    "load_limits",
]

DEFAULT_LIMITS_FILE = Path(__file__).parent / "config" / "execution.yaml"
# Steps that run with the DuckDB file held open (Warehouse.held): they connect many times (a
# simulated wait books each day's payments and costs), each ~10x cheaper so. Not http and command:
# they wait on the outside world, and while held no other process (a cancel from the shell or the
# UI) could open the file.
HELD_STEP_TYPES = frozenset({"wait_until", "manual_gate", "spend", "collect_outcome"})


@dataclass(frozen=True)
class ExecutionLimits:
    max_wall_seconds: int = 3600  # wall time of one run, checked between steps
    max_attempts: int = 3  # failed runs before the experiment is failed and rolled back
    max_cost_minor: int | None = None  # None: the allocated budget


def load_limits(path: Path | None = None) -> ExecutionLimits:
    path = path or DEFAULT_LIMITS_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    limits = data.get("limits", {})
    if not isinstance(limits, dict):
        raise ValueError(f"{path}: limits must be a mapping of max_wall_seconds, max_attempts, max_cost_minor")
    unknown = sorted(set(limits) - {"max_wall_seconds", "max_attempts", "max_cost_minor"})
    if unknown:
        raise ValueError(
            f"{path}: unknown limits {unknown}; the limits are max_wall_seconds, max_attempts, max_cost_minor"
        )
    values: dict[str, Any] = {}
    for name in ("max_wall_seconds", "max_attempts", "max_cost_minor"):
        if name not in limits or (name == "max_cost_minor" and limits[name] is None):
            continue
        value = limits[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "max_cost_minor" else 1):
            raise ValueError(f"{path}: limits.{name} must be a positive integer, got {value!r}")
        values[name] = value
    return ExecutionLimits(**values)


@dataclass(frozen=True)
class ExecutionResult:
    experiment_id: str
    state: str  # the experiment's state when the run ends
    completed_steps: list[str]  # completed in this run
    skipped_steps: list[str]  # completed by an earlier run (checkpoints), not repeated
    parked_until: datetime | None  # a live wait not yet due: the sensor relaunches then
    message: str


class LiveEnvironment:
    """The real world: wall-clock time (a wait not yet due parks the experiment) and real HTTP."""

    name = "live"

    def __init__(
        self, *, timeout: float = 10.0, clock: Clock = utc_now, transport: "httpx.BaseTransport | None" = None
    ):
        self.timeout = timeout
        self.clock = clock
        self.transport = transport

    def clock_for(self, experiment: Any, resume_at: datetime | None) -> Clock:
        return self.clock

    def wait_until(self, experiment: Any, clock: Clock, at: datetime) -> bool:
        return clock() >= at

    def http_client(self) -> "httpx.Client":
        import httpx

        return httpx.Client(timeout=self.timeout, transport=self.transport, follow_redirects=False)


def execute_experiment(
    warehouse: Warehouse,
    experiment_id: str,
    environment: Environment,
    *,
    run_id: str,
    attempt: int,
    limits: ExecutionLimits | None = None,
    actor: str | None = None,
) -> ExecutionResult:
    """Run the experiment's playbook from its checkpoints until it completes, parks, pauses, stops
    or fails. Raises ExperimentBusy if another run holds its lock, RetryableStepError for a
    transient step failure (the run is recorded failed; a retry of the same attempt continues it)."""
    limits = limits or load_limits()
    actor = actor or f"run:{run_id}"
    with experiment_lock(warehouse, experiment_id):
        experiment = get_experiment(warehouse, experiment_id)
        state = experiment["state"]
        if state not in (QUEUED, RUNNING):
            done = list(load_checkpoints(warehouse, experiment_id))
            hint = {
                PAUSED: f": `ventureloop experiments resume {experiment_id}` (or open its gate) first",
                "approved": ": the launch sensor queues it first",
                "proposed": ": it needs approval first",
            }.get(state, "")
            return ExecutionResult(experiment_id, state, [], done, None, f"experiment {experiment_id} is {state}{hint}")
        started = start_run(warehouse, experiment_id, attempt, run_id, utc_now())
        # From the attempt's first start: a Dagster op retry of it does not get a new max_wall_seconds.
        deadline = time.monotonic() + limits.max_wall_seconds - max((utc_now() - started).total_seconds(), 0)
        try:
            result = _run(warehouse, experiment, environment, run_id, attempt, limits, actor, deadline)
        except BaseException as error:  # RetryableStepError too: the op's retry reuses this attempt's row
            finish_run(warehouse, experiment_id, attempt, "failed", f"{type(error).__name__}: {error}", utc_now())
            raise
        status = "failed" if result.state in (FAILED, ROLLED_BACK) else "finished"
        finish_run(warehouse, experiment_id, attempt, status, result.message, utc_now())
        return result


def _run(
    warehouse: Warehouse,
    experiment: dict[str, Any],
    environment: Environment,
    run_id: str,
    attempt: int,
    limits: ExecutionLimits,
    actor: str,
    deadline: float,
) -> ExecutionResult:
    experiment_id = str(experiment["experiment_id"])
    checkpoints = load_checkpoints(warehouse, experiment_id)
    resume_at = max((c["completed_at"] for c in checkpoints.values()), default=None)
    clock = environment.clock_for(experiment, resume_at)
    playbook = validate_playbook(json.loads(experiment["playbook"]))
    if experiment["state"] == QUEUED:
        transition(
            warehouse,
            experiment_id,
            RUNNING,
            actor=actor,
            reason=f"run {run_id} (attempt {attempt}) started",
            expected_from=QUEUED,
            clock=clock,
        )
    warehouse.execute(
        "UPDATE experiments.experiments SET started_at = coalesce(started_at, %s), wake_at = NULL "
        "WHERE experiment_id = %s",
        [clock(), experiment_id],
    )
    completed: list[str] = []
    skipped: list[str] = []

    def result(state: str, message: str, parked_until: datetime | None = None) -> ExecutionResult:
        return ExecutionResult(experiment_id, state, completed, skipped, parked_until, message)

    for step in playbook:
        step_id = str(step["id"])
        if step_id in checkpoints:
            skipped.append(step_id)
            continue
        experiment = get_experiment(warehouse, experiment_id)
        if experiment["state"] != RUNNING:  # cancelled or paused between steps: stop here
            return result(experiment["state"], f"stopped before step {step_id}: experiment is {experiment['state']}")
        if time.monotonic() > deadline:
            reason = (
                f"run {run_id} exceeded max_wall_seconds {limits.max_wall_seconds} before step {step_id} "
                f"(core/experiments/config/execution.yaml)"
            )
            return result(_fail(warehouse, experiment_id, reason, actor, clock), reason)
        context = StepContext(
            warehouse=warehouse,
            experiment=experiment,
            step=step,
            environment=environment,
            clock=clock,
            run_id=run_id,
            attempt=attempt,
            playbook=playbook,
            deadline=deadline,
            max_cost_minor=limits.max_cost_minor,
        )
        try:
            with warehouse.held() if step["type"] in HELD_STEP_TYPES else contextlib.nullcontext():
                outcome = HANDLERS[step["type"]](context)
        except Parked as parked:
            set_wake_at(warehouse, experiment_id, parked.until)
            # Its state, not RUNNING: a person may have paused or cancelled it during the step.
            state = str(get_experiment(warehouse, experiment_id)["state"])
            return result(state, f"parked at step {step_id} until {parked.until.isoformat()}", parked.until)
        except Paused as paused:
            return result(_move(warehouse, experiment_id, PAUSED, actor, str(paused), clock), str(paused))
        except StepFailed as failed:
            return result(_fail(warehouse, experiment_id, str(failed), actor, clock), str(failed))
        if not context.checkpointed:
            with write_transaction(warehouse) as conn:
                write_checkpoint(
                    conn,
                    experiment_id=experiment_id,
                    step=step,
                    attempt=attempt,
                    run_id=run_id,
                    environment=environment.name,
                    result=outcome,
                    at=clock(),
                )
        completed.append(step_id)
    finished = clock()
    state = _move(warehouse, experiment_id, COMPLETED, actor, f"playbook completed by run {run_id}", clock)
    if state == COMPLETED:
        warehouse.execute(
            "UPDATE experiments.experiments SET finished_at = %s WHERE experiment_id = %s", [finished, experiment_id]
        )
    return result(state, f"experiment {experiment_id} is {state}: {len(completed)} steps run, {len(skipped)} skipped")


def _move(warehouse: Warehouse, experiment_id: str, to_state: str, actor: str, reason: str, clock: Clock) -> str:
    """running -> to_state; if a person moved it meanwhile (cancel, pause), their state stands."""
    try:
        transition(warehouse, experiment_id, to_state, actor=actor, reason=reason, expected_from=RUNNING, clock=clock)
    except LifecycleError:
        return str(get_experiment(warehouse, experiment_id)["state"])
    return to_state


def _fail(warehouse: Warehouse, experiment_id: str, reason: str, actor: str, clock: Clock) -> str:
    """fail_experiment, unless a person cancelled it during the step: then it stays cancelled."""
    try:
        return fail_experiment(warehouse, experiment_id, reason, actor=actor, clock=clock)
    except LifecycleError:
        state = str(get_experiment(warehouse, experiment_id)["state"])
        if state != CANCELLED:
            raise
        return state


def fail_experiment(
    warehouse: Warehouse, experiment_id: str, reason: str, *, actor: str, clock: Clock = utc_now
) -> str:
    """running|paused -> failed -> rolled_back (a paused one goes straight to rolled_back, as the
    lifecycle allows): its spend steps' bookings are reversed in reverse step order, each at most
    once (a repeated call, or one resuming an interrupted rollback, reverses nothing twice)."""
    experiment = get_experiment(warehouse, experiment_id)
    state = experiment["state"]
    if state == ROLLED_BACK:
        return state
    if state not in (RUNNING, PAUSED, FAILED):
        raise LifecycleError(
            f"experiment {experiment_id} is {state}: only a running, paused or failed experiment is failed "
            f"and rolled back"
            + (
                f" (cancel it instead: `ventureloop experiments cancel {experiment_id}`)"
                if state != CANCELLED and state != COMPLETED
                else ""
            )
        )
    if state == RUNNING:
        transition(warehouse, experiment_id, FAILED, actor=actor, reason=reason, expected_from=RUNNING, clock=clock)
        state = FAILED
    playbook = validate_playbook(json.loads(experiment["playbook"]))
    keys = list(reversed(spend_keys(playbook, experiment_id)))
    with warehouse.connect() as conn:
        booked = booked_keys(conn, warehouse.backend, keys)
    reversed_count = 0
    for key in keys:
        if key not in booked:
            continue
        reverse_spend(
            warehouse,
            booked[key][0],
            f"{key}:compensation",
            f"rollback of experiment {experiment_id}: {reason}",
            clock=clock,
        )
        reversed_count += 1
    transition(
        warehouse,
        experiment_id,
        ROLLED_BACK,
        actor=actor,
        reason=f"rolled back ({reversed_count} spends reversed): {reason}",
        expected_from=state,
        clock=clock,
    )
    # Its outcome's duration ends here (experiments.outcomes), on the clock the caller ran it on.
    warehouse.execute(
        "UPDATE experiments.experiments SET finished_at = coalesce(finished_at, %s) WHERE experiment_id = %s",
        [clock(), experiment_id],
    )
    return ROLLED_BACK
