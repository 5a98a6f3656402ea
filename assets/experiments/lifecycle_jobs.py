"""The lifecycle actions as Dagster jobs, so a person can approve, reject, cancel, pause or resume
an experiment, or open its manual gate, from the UI's launchpad: pick the job, fill in the
experiment id (and a reason), launch.

Each job is one op that calls what `ventureloop experiments ...` calls (lifecycle.act, and
checkpoints.open_gate), so the shell and the UI can never disagree about what a move may do. The
actor recorded in experiments.transitions and the audit chain is the run's `dagster/user` tag
(Dagster+ sets it to the launching user; in open-source Dagster a person adds it in the launchpad),
else `ui:<run_id>`, so the run that did it is one click away.

They must not wait behind experiment runs, or a pause would land after what it meant to stop:
- no pool: on DuckDB the `duckdb` pool (limit 1) is held by whatever op writes the warehouse, the
  experiment run's `execute_experiment_run` included, for as long as that op runs; one action is a
  few short transactions, so it takes its own turn at the file instead;
- no `ventureloop/kind=experiment` tag, whose run limit (1 on DuckDB) queues experiment runs, and
  `dagster/priority` above the default so the run queue starts them first;
- on DuckDB, a file another process holds is retried for LOCK_WAIT_SECONDS (writers open it for
  one transaction at a time, so the next gap comes soon), then the run fails saying who holds it.
"""

import time
from collections.abc import Callable
from typing import Any

import dagster as dg
import pydantic

from assets.resources import WarehouseResource

USER_TAG = "dagster/user"
JOB_TAGS = {"ventureloop/kind": "lifecycle", "dagster/priority": "10"}
LOCK_WAIT_SECONDS = 60.0

_EXPERIMENT_ID = pydantic.Field(
    description="The experiment's id (`ventureloop experiments list` or the experiments.experiments table)."
)
_REASON = "Why (recorded with the move in experiments.transitions and the audit chain)."


class _ExperimentActionConfig(dg.Config):
    experiment_id: str = _EXPERIMENT_ID

    @pydantic.field_validator("experiment_id", "step_id", mode="before", check_fields=False)
    @classmethod
    def _pasted(cls, value: object) -> object:
        # An id copied from a table or a log often carries a space or a newline.
        return value.strip() if isinstance(value, str) else value

    @pydantic.field_validator("reason", mode="before", check_fields=False)
    @classmethod
    def _cleared_is_default(cls, value: object) -> object:
        # The launchpad offers `reason:` as optional; a line left as `reason:` is YAML null.
        return cls.model_fields["reason"].default if value is None else value


class ApproveExperimentConfig(_ExperimentActionConfig):
    reason: str = pydantic.Field(default="approved in the Dagster UI", description=_REASON)


class RejectExperimentConfig(_ExperimentActionConfig):
    reason: str = pydantic.Field(default="rejected in the Dagster UI", description=_REASON)


class CancelExperimentConfig(_ExperimentActionConfig):
    reason: str = pydantic.Field(default="cancelled in the Dagster UI", description=_REASON)


class PauseExperimentConfig(_ExperimentActionConfig):
    reason: str = pydantic.Field(default="paused in the Dagster UI", description=_REASON)


class ResumeExperimentConfig(_ExperimentActionConfig):
    reason: str = pydantic.Field(default="resumed in the Dagster UI", description=_REASON)


class OpenExperimentGateConfig(_ExperimentActionConfig):
    step_id: str = pydantic.Field(description="The manual_gate step to open (its id in the playbook).")
    reason: str = pydantic.Field(default="gate opened in the Dagster UI", description=_REASON)


def actor_of(context: dg.OpExecutionContext) -> str:
    """Who moves it: the launching user when Dagster knows one, else this run."""
    return (context.run.tags.get(USER_TAG) or "").strip() or f"ui:{context.run_id}"


def _on_warehouse(context: dg.OpExecutionContext, warehouse: WarehouseResource, work: Callable[[Any], Any]) -> Any:
    """`work(client)` on the warehouse, its schema current (as the CLI does); a DuckDB file held by
    another process is waited for, a missing one refused (an action never creates a warehouse)."""
    from core.platform.schema import ensure_schema
    from core.platform.warehouse import WarehouseLocked

    client = warehouse.client()
    if not client.exists():
        raise dg.Failure(
            f"no warehouse at {client.duckdb_path}: the experiment cannot exist yet. Create it with `make demo` "
            "(or materialize experiment_proposals), or point WAREHOUSE_URL at the warehouse you meant"
        )
    deadline, pause = time.monotonic() + LOCK_WAIT_SECONDS, 0.1
    while True:
        try:
            ensure_schema(client)
            return work(client)
        except WarehouseLocked as error:
            if time.monotonic() + pause > deadline:
                raise dg.Failure(
                    f"{error} (waited {LOCK_WAIT_SECONDS:g} s); nothing changed: launch this run again"
                ) from None
            context.log.info(f"{client.describe()} is held by another process; trying again in {pause:.1f} s")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _failure(error: Exception, experiment_id: str, what: str) -> dg.Failure:
    from core.experiments.lifecycle import UnknownExperiment

    message = str(error)
    if isinstance(error, UnknownExperiment):
        message += ": check the id (`ventureloop experiments list` lists them, newest first); nothing changed"
    return dg.Failure(description=message, metadata={"experiment_id": experiment_id, "action": what})


def _action_job(action: str, config_class: type[dg.Config], description: str) -> dg.JobDefinition:
    @dg.op(name=action, description=description, tags={"ventureloop/action": action})
    def act_on_experiment(
        context: dg.OpExecutionContext, config: config_class, warehouse: WarehouseResource
    ) -> dg.Output[str]:
        from core.experiments.lifecycle import LifecycleError, act

        actor = actor_of(context)
        try:
            done = _on_warehouse(
                context,
                warehouse,
                lambda client: act(client, action, config.experiment_id, actor=actor, reason=config.reason),
            )
        except LifecycleError as error:
            raise _failure(error, config.experiment_id, action) from None
        context.log.info(f"{done.experiment_id}: {done.from_state} -> {done.to_state} by {done.actor} ({done.reason})")
        return dg.Output(
            done.to_state,
            metadata={
                "experiment_id": done.experiment_id,
                "from_state": done.from_state,
                "to_state": done.to_state,
                "actor": done.actor,
                "reason": done.reason,
                "seq": done.seq,
            },
        )

    @dg.job(name=f"{action}_experiment", description=description, tags={**JOB_TAGS, "ventureloop/action": action})
    def action_job() -> None:
        act_on_experiment()

    return action_job


approve_experiment = _action_job(
    "approve", ApproveExperimentConfig, "Approve a proposed experiment (`ventureloop experiments approve`)."
)
reject_experiment = _action_job(
    "reject",
    RejectExperimentConfig,
    "Reject a proposed experiment: it is cancelled (`ventureloop experiments reject`). Anything else: cancel.",
)
cancel_experiment = _action_job(
    "cancel",
    CancelExperimentConfig,
    "Cancel an experiment that has not finished; a running one stops before its next step "
    "(`ventureloop experiments cancel`).",
)
pause_experiment = _action_job(
    "pause",
    PauseExperimentConfig,
    "Pause a running experiment before its next step (`ventureloop experiments pause`).",
)
resume_experiment = _action_job(
    "resume",
    ResumeExperimentConfig,
    "Resume a paused experiment: it continues from its checkpoints (`ventureloop experiments resume`).",
)


@dg.op(tags={"ventureloop/action": "open_gate"})
def open_gate(context: dg.OpExecutionContext, config: OpenExperimentGateConfig, warehouse: WarehouseResource) -> str:
    """Open a manual gate: recorded in experiments.gates; a paused experiment waiting at it resumes."""
    from core.experiments.checkpoints import open_gate as open_the_gate
    from core.experiments.lifecycle import LifecycleError

    def work(client: Any) -> str:
        return open_the_gate(client, config.experiment_id, config.step_id, actor=actor, reason=config.reason)

    actor = actor_of(context)
    try:
        state = _on_warehouse(context, warehouse, work)
    except LifecycleError as error:
        raise _failure(error, config.experiment_id, "open_gate") from None
    context.log.info(f"{config.experiment_id}: gate {config.step_id} opened by {actor} ({config.reason}); now {state}")
    return state


@dg.job(
    description="Open an experiment's manual gate (`ventureloop experiments open-gate`): a paused "
    "experiment waiting at it resumes.",
    tags={**JOB_TAGS, "ventureloop/action": "open_gate"},
)
def open_experiment_gate() -> None:
    open_gate()


LIFECYCLE_JOBS = [
    approve_experiment,
    reject_experiment,
    cancel_experiment,
    pause_experiment,
    resume_experiment,
    open_experiment_gate,
]
