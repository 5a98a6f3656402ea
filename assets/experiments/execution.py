"""Experiment execution: one Dagster run per experiment launch, started by the experiment_launcher
sensor. The run executes the experiment's playbook with core.experiments.executor; this module
only decides what Dagster does with the outcome.

- A launch's run key is `experiment:<id>:attempt:<n>`, so Dagster never starts one launch twice.
- A transient step error (a webhook 5xx or timeout: RetryableStepError) is retried by the op's
  RetryPolicy, with exponential backoff and jitter; the retry skips the steps already checkpointed.
- A permanent one (StepFailed, an exceeded limit) has already failed and rolled back the
  experiment in core when the executor returns; the run fails without retrying, to show it.
- ExperimentBusy: another run holds the experiment's lock; this run ends and leaves it alone.
- Runs of experiments are tagged ventureloop/kind=experiment: the instance's tag concurrency limit
  (orchestration/instance.py) lets 10 run at once on PostgreSQL, 1 on DuckDB, where the op also
  takes the one-writer `duckdb` pool. On PostgreSQL no pool limits it: the per-experiment advisory
  lock keeps two runs off one experiment, and runs of different experiments do not conflict."""

import dataclasses

import dagster as dg

from assets.resources import ExperimentEnvironmentResource, WarehouseResource, warehouse_kind, warehouse_pool

KIND_TAG = "ventureloop/kind"  # orchestration/instance.py limits runs with this tag
KIND = "experiment"
EXPERIMENT_TAG = "ventureloop/experiment"
ATTEMPT_TAG = "ventureloop/attempt"
LAUNCH_TAG = "ventureloop/launch"
SENSOR_ACTOR = "sensor:experiment_launcher"
# Runs whose process may have the warehouse open.
HOLDING = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

# Webhook outages are short: the retries wait about 1, 3, 7 and 15 s (each +/- 1 s of jitter, so
# experiments that failed together do not all call back at once), 26 s in all, then the run fails
# and the sensor relaunches it as the next attempt, up to ExecutionLimits.max_attempts.
STEP_RETRY_POLICY = dg.RetryPolicy(max_retries=4, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class ExperimentRunConfig(dg.Config):
    """Which experiment this run executes, and which of its launches it is (1 for the first)."""

    experiment_id: str
    attempt: int


def _pool() -> str | None:
    return warehouse_pool() if warehouse_kind() == "duckdb" else None


@dg.op(
    retry_policy=STEP_RETRY_POLICY,
    pool=_pool(),
    out=dg.Out(dg.Nothing),
    description="Runs the experiment's playbook from its last checkpoint: each completed step is "
    "checkpointed, a wait not yet due parks it until the sensor relaunches it, a manual gate pauses it.",
)
def execute_experiment_run(
    context: dg.OpExecutionContext,
    config: ExperimentRunConfig,
    warehouse: WarehouseResource,
    experiment_environment: ExperimentEnvironmentResource,
) -> dg.Output:
    # Imported here: the executor pulls in pandas and httpx, which the code location must not pay
    # for on every load.
    from core.experiments.executor import ExperimentBusy, RetryableStepError, execute_experiment, load_limits

    client = warehouse.client()
    environment = experiment_environment.build(client)
    try:
        result = execute_experiment(
            client,
            config.experiment_id,
            environment,
            run_id=context.run_id,
            attempt=config.attempt,
            limits=load_limits(),
            actor=f"run:{context.run_id}",
        )
    except ExperimentBusy as busy:
        context.log.warning(f"experiment {config.experiment_id} is left alone by this run: {busy}")
        return dg.Output(None, metadata={"experiment_id": config.experiment_id, "state": "busy", "message": str(busy)})
    except RetryableStepError as error:
        tries = f"retry {context.retry_number + 1} of {STEP_RETRY_POLICY.max_retries}"
        if context.retry_number >= STEP_RETRY_POLICY.max_retries:
            tries = "no retries left: the sensor relaunches it as the next attempt"
        context.log.warning(f"experiment {config.experiment_id}: transient step error ({tries}): {error}")
        raise  # the RetryPolicy retries any exception it sees
    metadata = {
        "experiment_id": result.experiment_id,
        "environment": environment.name,
        "state": result.state,
        "completed_steps": ", ".join(result.completed_steps) or "none",
        "skipped_steps": ", ".join(result.skipped_steps) or "none",
        "parked_until": result.parked_until.isoformat() if result.parked_until else "not parked",
        "message": result.message,
    }
    if result.state in ("failed", "rolled_back"):
        # The executor has already failed it and run its compensation: retrying would change nothing.
        raise dg.Failure(
            description=f"experiment {result.experiment_id} ended {result.state}: {result.message}",
            metadata=metadata,
            allow_retries=False,
        )
    context.log.info(f"experiment {result.experiment_id}: {result.state}; {result.message}")
    return dg.Output(None, metadata=metadata)


@dg.job(
    tags={KIND_TAG: KIND},
    description="Executes one experiment (config: experiment_id, attempt). Launched by the "
    "experiment_launcher sensor; launching it by hand with the next attempt number is safe too "
    "(the experiment's lock keeps a second run off it).",
)
def experiment_run() -> None:
    execute_experiment_run()


def run_request(launch) -> dg.RunRequest:
    """The run of one core.experiments.launches.Launch."""
    return dg.RunRequest(
        run_key=launch.run_key,
        run_config={
            "ops": {
                "execute_experiment_run": {"config": {"experiment_id": launch.experiment_id, "attempt": launch.attempt}}
            }
        },
        tags={
            KIND_TAG: KIND,
            EXPERIMENT_TAG: launch.experiment_id,
            ATTEMPT_TAG: str(launch.attempt),
            LAUNCH_TAG: launch.reason,
        },
    )


@dg.sensor(
    name="experiment_launcher",
    job=experiment_run,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches one experiment_run per due experiment: approved with a budget, parked "
    "and now due, or resumed or retried after a failed run; fails those out of attempts.",
)
def experiment_launcher(context: dg.SensorEvaluationContext, warehouse: WarehouseResource) -> dg.SensorResult:
    from core.platform.warehouse import WarehouseLocked

    client = warehouse.client()
    if not client.exists():  # never create an empty warehouse just to find nothing in it
        return dg.SensorResult(skip_reason=f"no warehouse at {client.describe()} yet: nothing to launch")
    if client.backend == "duckdb" and (busy := _runs_holding_duckdb(context.instance)):
        # A DuckDB file has one writer process: opening it now could fail that run's step.
        return dg.SensorResult(
            skip_reason=f"the DuckDB warehouse has one writer and run {busy} may be writing it: next tick"
        )
    try:
        return _launch(context, client)
    except WarehouseLocked as locked:
        return dg.SensorResult(skip_reason=f"{locked}; trying again next tick")


def _runs_holding_duckdb(instance: dg.DagsterInstance) -> str | None:
    started = instance.get_runs(filters=dg.RunsFilter(statuses=HOLDING), limit=1)
    return started[0].run_id if started else None


def _launch(context: dg.SensorEvaluationContext, client) -> dg.SensorResult:
    from core.experiments.executor import fail_experiment, load_limits
    from core.experiments.launches import due_launches, exhausted, queue_launch
    from core.ledger.audit import utc_now

    # Not ensure_schema on every tick: its ALTER TABLEs would queue for exclusive locks behind the
    # running experiments' transactions. experiment_proposals creates the tables.
    if not client.table_exists("experiments.runs"):
        return dg.SensorResult(skip_reason="no experiments.runs table yet: materialize experiment_proposals")
    limits = load_limits()
    _fail_dead_runs(context, client)
    for experiment_id in exhausted(client, limits):
        reason = f"{limits.max_attempts} runs failed (max_attempts in core/experiments/config/execution.yaml)"
        try:
            state = fail_experiment(client, experiment_id, reason, actor=SENSOR_ACTOR)
        except Exception as error:  # noqa: BLE001 - one experiment's trouble never stops the others' launches
            context.log.error(f"experiment {experiment_id}: could not be failed after {reason}: {error}")
            continue
        context.log.warning(f"experiment {experiment_id}: {reason}; now {state}")
    # An experiment whose Dagster run has not ended gets no other: between two op retries its
    # experiments.runs row says failed, and a queued run has no row yet.
    in_flight = {
        run.tags.get(EXPERIMENT_TAG)
        for run in context.instance.get_runs(filters=dg.RunsFilter(tags={KIND_TAG: KIND}, statuses=IN_FLIGHT))
    }
    requests = []
    now = utc_now()
    for launch in due_launches(client, now, limits):
        if launch.experiment_id in in_flight:
            continue
        spent = _ended_unrecorded(context.instance, launch)
        if len(spent) >= limits.max_attempts:
            context.log.error(
                f"experiment {launch.experiment_id}: not launched again: its runs {', '.join(spent.values())} "
                f"ended without executing it (see their logs: the code location failed to load, say); fix that, "
                f"then launch experiment_run with attempt {max(spent) + 1} from the launchpad"
            )
            continue
        if spent:
            # Their run keys are used up: Dagster would skip this launch under the same key forever.
            context.log.warning(
                f"experiment {launch.experiment_id}: runs {', '.join(spent.values())} ended without executing it; "
                f"launching attempt {max(spent) + 1}"
            )
            launch = dataclasses.replace(launch, attempt=max(spent) + 1)
        if launch.reason == "approved":
            try:
                queue_launch(client, launch, actor=SENSOR_ACTOR)
            except Exception as error:  # noqa: BLE001 - cancelled meanwhile, say: skip this one only
                context.log.warning(f"experiment {launch.experiment_id}: not launched: {error}")
                continue
        requests.append(run_request(launch))
        context.log.info(f"launching {launch.run_key} ({launch.reason})")
    if not requests:
        return dg.SensorResult(skip_reason=_nothing_due(client, now, len(in_flight - {None})))
    return dg.SensorResult(run_requests=requests)


def _ended_unrecorded(instance: dg.DagsterInstance, launch) -> dict[int, str]:
    """attempt -> run id of this experiment's ended Dagster runs at or after the launch's attempt:
    runs the executor never recorded (due_launches counts attempts from experiments.runs), because
    they failed before the op ran (a launch error, a lost code server) or found the experiment busy."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={EXPERIMENT_TAG: launch.experiment_id}), limit=100)
    attempts = {int(run.tags[ATTEMPT_TAG]): run.run_id for run in runs if run.tags.get(ATTEMPT_TAG, "").isdigit()}
    return {attempt: run_id for attempt, run_id in attempts.items() if attempt >= launch.attempt}


def _fail_dead_runs(context: dg.SensorEvaluationContext, client) -> None:
    """Runs whose process died mid-step (SIGKILL, a lost machine) are failed in experiments.runs
    and, if Dagster still thinks them alive, in Dagster too: the default run launcher cannot check
    a run worker's health, so a killed run would stay STARTED and block its experiment for good.
    The sensor then relaunches the experiment as its next attempt, from its checkpoints."""
    from core.experiments.launches import DEAD_RUN_MESSAGE, reap_dead_runs
    from core.ledger.audit import utc_now

    for dead in reap_dead_runs(client, utc_now()):
        context.log.warning(f"experiment {dead.experiment_id}: run {dead.run_id} (attempt {dead.attempt}) died")
        run = context.instance.get_run_by_id(dead.run_id)
        if run is not None and not run.is_finished:
            context.instance.report_run_failed(run, f"experiment {dead.experiment_id}: {DEAD_RUN_MESSAGE}")


def _nothing_due(client, now, in_flight: int) -> str:
    """Why no experiment is due, in terms an operator can act on."""
    waiting = client.scalar(
        "SELECT count(*) FROM experiments.experiments WHERE state = 'approved' "
        "AND (allocated_budget_minor IS NULL OR allocated_budget_minor <= 0)"
    )
    next_wake = client.scalar("SELECT min(wake_at) FROM experiments.experiments WHERE state = 'running'")
    parts = [f"no experiment due at {now.isoformat(timespec='seconds')}"]
    if in_flight:
        parts.append(f"{in_flight} with a run not yet ended")
    if waiting:
        parts.append(f"{waiting} approved without an allocated budget (materialize experiment_allocations)")
    if next_wake is not None:
        parts.append(f"the next parked one wakes at {next_wake}")
    return "; ".join(parts)
