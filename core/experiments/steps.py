"""One handler per playbook step type (core.experiments.playbook): HANDLERS[type](context) -> result.

A handler returns its result (a JSON-able dict, stored as the step's checkpoint) when the step is
done; it raises Parked when it must wait for a time not yet reached, Paused when a person must act
(a manual gate, a budget refusal set to pause), RetryableStepError for a transient failure (the
Dagster op retries the run) and StepFailed for a permanent one (the experiment fails and is rolled
back). A handler whose step writes to the ledger writes the checkpoint in the same transaction
(context.write_checkpoint); the executor writes the others'.
"""

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.experiments.checkpoints import as_utc, gate_open, latest_checkpoint_at, write_checkpoint
from core.experiments.environment import Clock, Environment
from core.experiments.outcomes import Totals, experiment_totals
from core.ledger import budgets
from core.ledger.audit import write_transaction
from core.ledger.booking import booked_keys
from core.ledger.validation import LedgerError
from core.platform.warehouse import Warehouse, run_sql

# The simulator plays a metric wait a day at a time; live, it is checked again in an hour.
LIVE_METRIC_INTERVAL = timedelta(hours=1)
SIMULATED_METRIC_INTERVAL = timedelta(days=1)
DEFAULT_WINDOW_DAYS = 30  # a metric wait's window when the playbook has no collect_outcome
METRICS = ("revenue_minor", "cost_minor", "net_minor")
OUTPUT_TAIL = 2000  # characters of a command's output kept in its checkpoint


class RetryableStepError(Exception):
    """Transient (webhook 5xx, timeout, connection error): the Dagster op retries the run."""


class StepFailed(Exception):
    """Permanent: the experiment fails and is rolled back."""


class Parked(Exception):
    """Not due yet: the run ends with the experiment running and wake_at = until."""

    def __init__(self, until: datetime, why: str):
        super().__init__(why)
        self.until = until


class Paused(Exception):
    """A person must act first: running -> paused with this reason."""


@dataclass
class StepContext:
    warehouse: Warehouse
    experiment: Mapping[str, Any]
    step: Mapping[str, Any]
    environment: Environment
    clock: Clock
    run_id: str
    attempt: int
    playbook: list[dict[str, Any]] = field(default_factory=list)
    deadline: float | None = None  # time.monotonic() by which the run must end (max_wall_seconds)
    max_cost_minor: int | None = None  # ExecutionLimits.max_cost_minor
    checkpointed: bool = False  # the handler wrote its checkpoint itself

    @property
    def experiment_id(self) -> str:
        return str(self.experiment["experiment_id"])

    @property
    def params(self) -> Mapping[str, Any]:
        return self.step["params"]

    @property
    def key(self) -> str:
        """The step's idempotency key: the webhook's Idempotency-Key, the spend's ledger key."""
        return step_key(self.experiment_id, str(self.step["id"]))

    @property
    def where(self) -> str:
        return f"experiment {self.experiment_id} step {self.step['id']} ({self.step['type']})"

    def remaining_seconds(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def write_checkpoint(self, conn: Any, result: Mapping[str, Any]) -> None:
        write_checkpoint(
            conn,
            experiment_id=self.experiment_id,
            step=self.step,
            attempt=self.attempt,
            run_id=self.run_id,
            environment=self.environment.name,
            result=result,
            at=self.clock(),
        )
        self.checkpointed = True


def step_key(experiment_id: str, step_id: str) -> str:
    return f"experiment:{experiment_id}:step:{step_id}"


# -- http ------------------------------------------------------------------------------------------


def http_step(context: StepContext) -> dict[str, Any]:
    import httpx

    params = context.params
    client = context.environment.http_client()
    try:
        response = client.request(
            params["method"],
            params["url"],
            json=params.get("body"),
            headers={"Idempotency-Key": context.key},
        )
    except (httpx.TimeoutException, httpx.TransportError) as error:
        raise RetryableStepError(f"{context.where}: {params['method']} {params['url']} failed: {error!r}") from None
    finally:
        client.close()
    if response.status_code >= 500 or response.status_code == 429:
        raise RetryableStepError(
            f"{context.where}: {params['method']} {params['url']} answered {response.status_code} "
            f"(transient: the run retries it)"
        )
    if not 200 <= response.status_code < 300:  # a 4xx, or a redirect (never followed: it may drop the body)
        raise StepFailed(
            f"{context.where}: {params['method']} {params['url']} answered {response.status_code} "
            f"{response.text[:200]!r}: fix the playbook's url or the receiver, then propose it again"
        )
    return {"status_code": response.status_code, "idempotency_key": context.key}


# -- command ---------------------------------------------------------------------------------------


def command_step(context: StepContext) -> dict[str, Any]:
    argv = list(context.params["argv"])
    remaining = context.remaining_seconds()
    if remaining is not None and remaining <= 0:
        raise StepFailed(f"{context.where}: no wall time left for {argv[0]} (max_wall_seconds in execution.yaml)")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=remaining, check=False)
    except FileNotFoundError:
        raise StepFailed(f"{context.where}: command {argv[0]!r} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise StepFailed(
            f"{context.where}: {argv[0]} still running when the run's wall time ran out "
            f"(max_wall_seconds in core/experiments/config/execution.yaml)"
        ) from None
    if done.returncode != 0:
        raise StepFailed(f"{context.where}: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]!r}")
    return {"returncode": 0, "stdout": done.stdout[-OUTPUT_TAIL:]}


# -- waits -----------------------------------------------------------------------------------------


def started_at(context: StepContext) -> datetime:
    started = as_utc(context.experiment.get("started_at"))
    if started is None:  # the executor sets it on the first run; a handler called alone starts now
        started = context.clock()
    return started


def _wait_for(context: StepContext, due: datetime, why: str) -> None:
    if not context.environment.wait_until(context.experiment, context.clock, due):
        raise Parked(due, why)


def wait_until_step(context: StepContext) -> dict[str, Any]:
    params = context.params
    if "after_hours" in params:
        base = latest_checkpoint_at(context.warehouse, context.experiment_id) or started_at(context)
        due = base + timedelta(hours=int(params["after_hours"]))
        _wait_for(context, due, f"{context.where}: waiting until {due.isoformat()}")
        return {"due_at": due.isoformat()}
    metric, target = params["metric"], params["at_least"]
    if metric not in METRICS:
        raise StepFailed(f"{context.where}: unknown metric {metric!r}; the metrics are {', '.join(METRICS)}")
    window_end = started_at(context) + timedelta(days=_window_days(context.playbook))
    live = context.environment.name == "live"
    interval = LIVE_METRIC_INTERVAL if live else SIMULATED_METRIC_INTERVAL
    while True:
        value = getattr(_totals(context), metric)
        now = context.clock()
        if value >= target:
            return {"metric": metric, "at_least": target, "value": value, "reached": True}
        if now >= window_end:  # the window closed unmet: the outcome says so, nothing is undone
            return {"metric": metric, "at_least": target, "value": value, "reached": False}
        _wait_for(context, min(now + interval, window_end), f"{context.where}: {metric} {value} < {target}")


def _window_days(playbook: list[dict[str, Any]]) -> int:
    days = [int(s["params"]["window_days"]) for s in playbook if s["type"] == "collect_outcome"]
    return days[0] if days else DEFAULT_WINDOW_DAYS


# -- manual gate -----------------------------------------------------------------------------------


def manual_gate_step(context: StepContext) -> dict[str, Any]:
    opened = gate_open(context.warehouse, context.experiment_id, str(context.step["id"]))
    if opened is None:
        raise Paused(
            f"waiting at manual gate {context.step['id']}: "
            f"`ventureloop experiments open-gate {context.experiment_id} {context.step['id']}` "
            f"({context.params['prompt']})"
        )
    return opened


# -- spend -----------------------------------------------------------------------------------------


def spend_keys(playbook: list[dict[str, Any]], experiment_id: str) -> list[str]:
    """The ledger keys of the playbook's spend steps, in playbook order."""
    return [step_key(experiment_id, s["id"]) for s in playbook if s["type"] == "spend"]


def spent_by_steps(warehouse: Warehouse, experiment_id: str, currency: str) -> int:
    """What the experiment's spend steps booked in `currency`, net of their reversals."""
    prefix = step_key(experiment_id, "")
    return int(
        warehouse.scalar(
            "SELECT CAST(coalesce(sum(p.amount_minor), 0) AS BIGINT) FROM ledger.postings p "
            "JOIN ledger.transactions t ON t.transaction_id = p.transaction_id "
            "LEFT JOIN ledger.transactions o ON o.transaction_id = t.reverses_transaction_id "
            "WHERE split_part(p.account_id, ':', 1) = 'expenses' AND p.currency = %s "
            "AND (starts_with(t.idempotency_key, %s) OR starts_with(o.idempotency_key, %s))",
            [currency, prefix, prefix],
        )
    )


def spend_step(context: StepContext) -> dict[str, Any]:
    params = context.params
    currency, account = params["currency"], f"{params['account']}:experiment:{context.experiment_id}"
    warehouse, key = context.warehouse, context.key
    with warehouse.connect() as conn:
        booked = booked_keys(conn, warehouse.backend, [key]).get(key)
    if booked is not None:
        # Booked by a run whose checkpoint was lost (killed between the two is impossible: they
        # commit together, but a checkpoint can be deleted): record it, book nothing.
        result = {"transaction_id": booked[0], "idempotency_key": key, "status": "duplicate", "account": account}
        with write_transaction(warehouse) as conn:
            context.write_checkpoint(conn, result)
        return result
    if currency != context.experiment["currency"]:
        # The cap (the allocation, or max_cost_minor) is counted in the experiment's currency: a
        # spend in another one could not be held to it.
        raise StepFailed(
            f"{context.where}: spends {currency}, but the experiment's budget and cost cap are in "
            f"{context.experiment['currency']}: write the step's amount in {context.experiment['currency']}"
        )
    amount = int(params["amount_minor"])
    capped = False
    remaining = _cost_cap(context) - spent_by_steps(warehouse, context.experiment_id, currency)
    if amount > remaining:
        amount, capped = max(remaining, 0), True
    if amount == 0:
        result = {"amount_minor": 0, "currency": currency, "account": account, "capped": True, "status": "capped"}
        with write_transaction(warehouse) as conn:
            context.write_checkpoint(conn, result)
        return result
    result = {
        "amount_minor": amount,
        "currency": currency,
        "account": account,
        "capped": capped,
        "idempotency_key": key,
        "status": "booked",
    }
    request = budgets.expense(
        key,
        account,
        amount,
        currency,
        context.clock(),
        paid_from=f"liabilities:card:{currency.lower()}",
        description=f"experiment {context.experiment_id} step {context.step['id']}: {params['account']}",
        experiment_id=context.experiment_id,
        source="experiment",
        metadata={"step_id": context.step["id"], "run_id": context.run_id, "attempt": context.attempt},
    )
    try:
        spent = budgets.spend(
            warehouse,
            request,
            clock=context.clock,
            in_transaction=lambda conn, _backend: context.write_checkpoint(conn, result),
        )
    except LedgerError as error:
        raise StepFailed(f"{context.where}: the ledger refused the spend: {error}") from None
    if not spent.ok:
        context.checkpointed = False  # rolled back with the refused booking
        message = f"{context.where}: spend of {amount} {currency} refused: {spent.message}"
        if params.get("on_refusal", "pause") == "fail":
            raise StepFailed(message)
        raise Paused(
            f"{message}. Raise the budget (`ventureloop ledger budget-set`; `ventureloop ledger budgets` "
            f"lists them) or wait for its window, then `ventureloop experiments resume {context.experiment_id}`"
        )
    return {**result, "transaction_id": spent.transaction_id}


def _cost_cap(context: StepContext) -> int:
    if context.max_cost_minor is not None:
        return context.max_cost_minor
    allocated = context.experiment.get("allocated_budget_minor")
    if allocated is None or (not isinstance(allocated, int) and allocated != allocated):  # NULL or NaN
        allocated = context.experiment["requested_budget_minor"]
    return int(allocated)


# -- collect outcome -------------------------------------------------------------------------------


def _totals(context: StepContext) -> Totals:
    """The experiment's revenue and cost so far on its clock, in USD minor units at the ledger's FX:
    the numbers of dbt's experiment_pnl and of experiments.outcomes."""
    return experiment_totals(context.warehouse, context.experiment_id, until=context.clock())


def collect_outcome_step(context: StepContext) -> dict[str, Any]:
    due = started_at(context) + timedelta(days=int(context.params["window_days"]))
    _wait_for(context, due, f"{context.where}: the outcome window ends {due.isoformat()}")
    totals = _totals(context)
    result = {
        "revenue_minor": totals.revenue_minor,
        "cost_minor": totals.cost_minor,
        "net_minor": totals.net_minor,
        "currency": totals.currency,
        "window_days": int(context.params["window_days"]),
        "window_end": due.isoformat(),
    }
    with write_transaction(context.warehouse) as conn:
        run_sql(
            conn,
            "UPDATE experiments.experiments SET outcome = %s WHERE experiment_id = %s",
            [json.dumps(result, sort_keys=True), context.experiment_id],
        )
        context.write_checkpoint(conn, result)
    return result


Handler = Callable[[StepContext], dict[str, Any]]
HANDLERS: Mapping[str, Handler] = {
    "http": http_step,
    "command": command_step,
    "wait_until": wait_until_step,
    "manual_gate": manual_gate_step,
    "spend": spend_step,
    "collect_outcome": collect_outcome_step,
}
