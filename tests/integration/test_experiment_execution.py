"""The executor on DuckDB and PostgreSQL: a playbook runs to completed through parks and reruns,
leaving one checkpoint per step, its history and an intact audit chain; reruns and resumed runs
repeat nothing (no spend booked twice, even when a checkpoint is lost or the run process is
SIGKILLed mid-step); budget refusals pause or fail (rolled back, the spends reversed); manual
gates, cancels, the lock, the limits and the launches behave as the sensor relies on."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest

from core.experiments.checkpoints import load_checkpoints, open_gate, runs
from core.experiments.executor import (
    ExecutionLimits,
    ExperimentBusy,
    LiveEnvironment,
    RetryableStepError,
    execute_experiment,
    fail_experiment,
)
from core.experiments.launches import Launch, due_launches, exhausted, queue_launch
from core.experiments.lifecycle import get_experiment, history, transition
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import fixed_clock
from core.ledger.booking import book
from core.ledger.budgets import set_budget
from core.ledger.validation import Posting, TransactionRequest
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
LIMITS = ExecutionLimits()
PYTHON = sys.executable


class Clock:
    """The environment's clock, moved by the test."""

    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def ok_transport(seen: list[httpx.Request] | None = None, statuses: list[int] | None = None) -> httpx.MockTransport:
    """Answers each request with the next of `statuses` (then 200), recording it in `seen`."""
    queue = list(statuses or [])

    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(queue.pop(0) if queue else 200, json={"ok": True})

    return httpx.MockTransport(handle)


def live(clock: Clock, transport: httpx.BaseTransport | None = None) -> LiveEnvironment:
    return LiveEnvironment(clock=clock, transport=transport or ok_transport())


def new_experiment(
    warehouse: Warehouse, playbook: list[dict], *, allocated: int | None = 10_000, state: str = "queued"
) -> str:
    """A proposed experiment (through core.experiments.proposals) given `playbook`, moved to `state`."""
    scored = pd.DataFrame(
        [
            {
                "opportunity_id": f"opp-{uuid.uuid4().hex[:10]}",
                "score": 0.7,
                "opportunity_type": "saas",
                "title": "Invoice API",
                "est_monthly_revenue_cents": 300_000,
                "cluster_id": "cluster",
                "is_cluster_lead": True,
            }
        ]
    )
    (experiment_id,) = propose_from_scored(warehouse, scored, 1, NEVER, fixed_clock(T0)).created
    warehouse.execute(
        "UPDATE experiments.experiments SET playbook = %s, allocated_budget_minor = %s WHERE experiment_id = %s",
        [json.dumps(playbook), allocated, experiment_id],
    )
    for step in {"approved": ["approved"], "queued": ["approved", "queued"]}[state]:
        transition(warehouse, experiment_id, step, actor="test", reason=f"to {step}", clock=fixed_clock(T0))
    return experiment_id


def http(step_id: str = "launch", after: list[str] | None = None) -> dict:
    return {
        "id": step_id,
        "type": "http",
        "params": {"url": "https://hooks.example.test/launch", "method": "POST", "body": {"x": 1}},
        **({"after": after} if after else {}),
    }


def spend(step_id: str, amount: int, after: list[str] | None = None, on_refusal: str = "pause") -> dict:
    return {
        "id": step_id,
        "type": "spend",
        "params": {"account": "expenses:ads", "amount_minor": amount, "currency": "USD", "on_refusal": on_refusal},
        **({"after": after} if after else {}),
    }


def command(step_id: str, argv: list[str], after: list[str] | None = None) -> dict:
    return {"id": step_id, "type": "command", "params": {"argv": argv}, **({"after": after} if after else {})}


def spends(warehouse: Warehouse, experiment_id: str) -> pd.DataFrame:
    """The experiment's spend-step transactions and their reversals, with the expense amount."""
    return warehouse.query(
        "SELECT t.idempotency_key, t.kind, p.amount_minor FROM ledger.transactions t "
        "JOIN ledger.postings p ON p.transaction_id = t.transaction_id "
        "WHERE p.experiment_id = %s AND split_part(p.account_id, ':', 1) = 'expenses' ORDER BY t.recorded_at, 1",
        [experiment_id],
    )


def states(warehouse: Warehouse, experiment_id: str) -> list[str]:
    return history(warehouse, experiment_id)["to_state"].tolist()


FULL = [
    http("launch"),
    spend("ads", 2_500, after=["launch"]),
    {"id": "wait", "type": "wait_until", "params": {"after_hours": 2}, "after": ["ads"]},
    command("report", [PYTHON, "-c", "print('reported')"], after=["wait"]),
    {"id": "outcome", "type": "collect_outcome", "params": {"window_days": 1}, "after": ["report"]},
]


def test_a_playbook_runs_to_completed_through_parks_and_a_retried_webhook(warehouse):
    experiment_id = new_experiment(warehouse, FULL)
    clock, seen = Clock(), []
    transport = ok_transport(seen, statuses=[500])
    # The webhook answers 500: retryable, nothing is checkpointed, the run is recorded failed.
    with pytest.raises(RetryableStepError, match="answered 500"):
        execute_experiment(warehouse, experiment_id, live(clock, transport), run_id="r1", attempt=1)
    assert load_checkpoints(warehouse, experiment_id) == {}
    assert runs(warehouse, experiment_id)[["status", "message"]].values.tolist() == [
        [
            "failed",
            f"RetryableStepError: experiment {experiment_id} step launch (http): POST "
            "https://hooks.example.test/launch answered 500 (transient: the run retries it)",
        ]
    ]
    # The op's retry (same attempt): 200, the spend is booked, the wait parks until T0 + 2 h.
    first = execute_experiment(warehouse, experiment_id, live(clock, transport), run_id="r1", attempt=1)
    assert (first.state, first.completed_steps, first.parked_until) == (
        "running",
        ["launch", "ads"],
        T0 + timedelta(hours=2),
    )
    assert [r.headers["Idempotency-Key"] for r in seen] == [f"experiment:{experiment_id}:step:launch"] * 2
    assert pd.Timestamp(get_experiment(warehouse, experiment_id)["wake_at"]) == pd.Timestamp(T0 + timedelta(hours=2))
    clock.advance(hours=3)
    second = execute_experiment(warehouse, experiment_id, live(clock, transport), run_id="r2", attempt=2)
    assert (second.state, second.completed_steps, second.skipped_steps) == (
        "running",
        ["wait", "report"],
        ["launch", "ads"],
    )
    assert second.parked_until == T0 + timedelta(days=1)
    clock.advance(days=1)
    third = execute_experiment(warehouse, experiment_id, live(clock, transport), run_id="r3", attempt=3)
    assert (third.state, third.completed_steps) == ("completed", ["outcome"])

    checkpoints = load_checkpoints(warehouse, experiment_id)
    assert set(checkpoints) == {"launch", "ads", "wait", "report", "outcome"}
    assert checkpoints["report"]["result"]["stdout"] == "reported\n"
    assert checkpoints["outcome"]["completed_at"] == T0 + timedelta(days=1, hours=3)
    assert {c["environment"] for c in checkpoints.values()} == {"live"}
    row = get_experiment(warehouse, experiment_id)
    assert json.loads(row["outcome"]) == checkpoints["outcome"]["result"]
    assert json.loads(row["outcome"])["cost_minor"] == 2_500
    assert pd.Timestamp(row["started_at"]) == pd.Timestamp(T0)
    assert pd.Timestamp(row["finished_at"]) == pd.Timestamp(clock.now)
    assert states(warehouse, experiment_id) == ["proposed", "approved", "queued", "running", "completed"]
    assert history(warehouse, experiment_id)["actor"].tolist()[-2:] == ["run:r1", "run:r3"]
    assert runs(warehouse, experiment_id)["status"].tolist() == ["finished", "finished", "finished"]
    assert spends(warehouse, experiment_id)["amount_minor"].tolist() == [2_500]
    report = verify(warehouse)
    assert report.ok, report.summary()

    # A rerun after completion repeats nothing: no request, no booking, no transition, no run row.
    events = warehouse.count("audit.events")
    again = execute_experiment(warehouse, experiment_id, live(clock, transport), run_id="r4", attempt=4)
    assert (again.state, again.completed_steps, sorted(again.skipped_steps)) == (
        "completed",
        [],
        sorted(checkpoints),
    )
    assert len(seen) == 2 and warehouse.count("audit.events") == events
    assert len(runs(warehouse, experiment_id)) == 3


def crash(request: httpx.Request) -> httpx.Response:
    raise RuntimeError("the run process died here")


def test_a_resumed_run_skips_checkpointed_steps_and_books_no_spend_twice(warehouse):
    experiment_id = new_experiment(warehouse, [spend("ads", 1_000), http("launch", after=["ads"])])
    clock = Clock()
    with pytest.raises(RuntimeError, match="died here"):
        execute_experiment(warehouse, experiment_id, live(clock, httpx.MockTransport(crash)), run_id="a", attempt=1)
    assert list(load_checkpoints(warehouse, experiment_id)) == ["ads"]
    # A lost checkpoint (deleted by hand) is no licence to spend again: the ledger key is the step's.
    warehouse.execute("DELETE FROM experiments.checkpoints WHERE experiment_id = %s", [experiment_id])
    clock.advance(minutes=5)
    resumed = execute_experiment(warehouse, experiment_id, live(clock), run_id="b", attempt=2)
    assert (resumed.state, resumed.completed_steps) == ("completed", ["ads", "launch"])
    assert load_checkpoints(warehouse, experiment_id)["ads"]["result"]["status"] == "duplicate"
    assert spends(warehouse, experiment_id)["amount_minor"].tolist() == [1_000]
    assert runs(warehouse, experiment_id)["status"].tolist() == ["failed", "finished"]
    assert verify(warehouse).ok


def test_a_budget_refusal_pauses_or_fails_and_rolls_back(warehouse):
    paused_id = new_experiment(warehouse, [spend("ads", 4_000)])
    set_budget(
        warehouse,
        scope="experiment",
        scope_key=paused_id,
        period="month",
        currency="USD",
        limit_minor=3_000,
        changed_by="test",
        at=T0,
    )
    result = execute_experiment(warehouse, paused_id, live(Clock()), run_id="p", attempt=1)
    assert result.state == "paused"
    reason = history(warehouse, paused_id)["reason"].iloc[-1]
    assert "Experiment budget exceeded (4000 > 3000)" in reason and f"experiments resume {paused_id}" in reason
    assert spends(warehouse, paused_id).empty and load_checkpoints(warehouse, paused_id) == {}

    failing_id = new_experiment(
        warehouse, [spend("first", 1_000), spend("second", 5_000, after=["first"], on_refusal="fail")]
    )
    set_budget(
        warehouse,
        scope="experiment",
        scope_key=failing_id,
        period="month",
        currency="USD",
        limit_minor=3_000,
        changed_by="test",
        at=T0,
    )
    failed = execute_experiment(warehouse, failing_id, live(Clock()), run_id="f", attempt=1)
    assert failed.state == "rolled_back" and "refused" in failed.message
    assert states(warehouse, failing_id)[-3:] == ["running", "failed", "rolled_back"]
    ledger = spends(warehouse, failing_id)
    assert ledger["kind"].tolist() == ["spend", "reversal"] and ledger["amount_minor"].sum() == 0
    assert runs(warehouse, failing_id)["status"].tolist() == ["failed"]
    # Failing it again reverses nothing twice.
    assert fail_experiment(warehouse, failing_id, "again", actor="test", clock=Clock()) == "rolled_back"
    assert len(spends(warehouse, failing_id)) == 2
    report = verify(warehouse)
    assert report.ok, report.summary()


def test_a_manual_gate_pauses_until_opened(warehouse):
    gate = {"id": "review", "type": "manual_gate", "params": {"prompt": "Look at it"}}
    experiment_id = new_experiment(warehouse, [gate, command("after", ["true"], after=["review"])])
    clock = Clock()
    paused = execute_experiment(warehouse, experiment_id, live(clock), run_id="g1", attempt=1)
    assert paused.state == "paused"
    assert f"`ventureloop experiments open-gate {experiment_id} review`" in paused.message
    assert due_launches(warehouse, clock.now, LIMITS) == []
    clock.advance(hours=1)
    assert open_gate(warehouse, experiment_id, "review", actor="alice", reason="looks fine", clock=clock) == "running"
    assert due_launches(warehouse, clock.now, LIMITS) == [Launch(experiment_id, 2, "resumed")]
    done = execute_experiment(warehouse, experiment_id, live(clock), run_id="g2", attempt=2)
    assert (done.state, done.completed_steps) == ("completed", ["review", "after"])
    assert load_checkpoints(warehouse, experiment_id)["review"]["result"]["opened_by"] == "alice"
    assert verify(warehouse).ok


def test_cancel_between_runs_and_between_steps_stops_cleanly(warehouse):
    wait = {"id": "wait", "type": "wait_until", "params": {"after_hours": 1}}
    parked_id = new_experiment(warehouse, [wait, spend("ads", 500, after=["wait"])])
    clock = Clock()
    assert execute_experiment(warehouse, parked_id, live(clock), run_id="c1", attempt=1).state == "running"
    transition(warehouse, parked_id, "cancelled", actor="bob", reason="changed my mind", clock=clock)
    clock.advance(hours=2)
    assert due_launches(warehouse, clock.now, LIMITS) == []
    stopped = execute_experiment(warehouse, parked_id, live(clock), run_id="c2", attempt=2)
    assert (stopped.state, stopped.completed_steps) == ("cancelled", [])
    assert spends(warehouse, parked_id).empty

    # Cancelled while its webhook step runs: the next step never starts.
    midway_id = new_experiment(warehouse, [http("launch"), spend("ads", 500, after=["launch"])])

    def cancel_meanwhile(request: httpx.Request) -> httpx.Response:
        transition(warehouse, midway_id, "cancelled", actor="bob", reason="stop now", clock=clock)
        return httpx.Response(200)

    ended = execute_experiment(
        warehouse, midway_id, live(clock, httpx.MockTransport(cancel_meanwhile)), run_id="m", attempt=1
    )
    assert (ended.state, ended.completed_steps) == ("cancelled", ["launch"])
    assert "stopped before step ads" in ended.message and spends(warehouse, midway_id).empty
    assert verify(warehouse).ok


def test_two_runs_of_one_experiment_never_execute_at_once(warehouse):
    experiment_id = new_experiment(warehouse, [command("slow", [PYTHON, "-c", "import time; time.sleep(1.5)"])])
    results: list = []
    first = threading.Thread(
        target=lambda: results.append(
            execute_experiment(warehouse, experiment_id, live(Clock()), run_id="one", attempt=1)
        )
    )
    first.start()
    deadline = time.monotonic() + 10
    while runs(warehouse, experiment_id).empty and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ExperimentBusy, match=f"experiment {experiment_id} is being executed by another run"):
        execute_experiment(warehouse, experiment_id, live(Clock()), run_id="two", attempt=2)
    assert due_launches(warehouse, T0, LIMITS) == []  # its run is alive: it holds the lock
    first.join()
    assert results[0].state == "completed"
    assert runs(warehouse, experiment_id)["run_id"].tolist() == ["one"]


def test_a_spend_in_another_currency_than_the_budget_fails_rather_than_escape_the_cap(warehouse):
    euros = {**spend("eu", 100), "params": {**spend("eu", 100)["params"], "currency": "EUR"}}
    experiment_id = new_experiment(warehouse, [spend("a", 100), {**euros, "after": ["a"]}])
    done = execute_experiment(warehouse, experiment_id, live(Clock()), run_id="eur", attempt=1)
    assert done.state == "rolled_back"
    assert "spends EUR, but the experiment's budget and cost cap are in USD" in done.message
    assert spends(warehouse, experiment_id)["amount_minor"].sum() == 0  # the USD spend was reversed


def test_limits_cap_cost_wall_time_and_attempts(warehouse):
    capped_id = new_experiment(
        warehouse, [spend("a", 300), spend("b", 300, after=["a"]), spend("c", 300, after=["b"])], allocated=None
    )
    limits = ExecutionLimits(max_cost_minor=500)
    done = execute_experiment(warehouse, capped_id, live(Clock()), run_id="cap", attempt=1, limits=limits)
    assert done.state == "completed"
    assert spends(warehouse, capped_id)["amount_minor"].tolist() == [300, 200]
    assert load_checkpoints(warehouse, capped_id)["c"]["result"]["status"] == "capped"
    # Without max_cost_minor the allocation caps it.
    allocated_id = new_experiment(warehouse, [spend("a", 900)], allocated=400)
    execute_experiment(warehouse, allocated_id, live(Clock()), run_id="alloc", attempt=1)
    assert spends(warehouse, allocated_id)["amount_minor"].tolist() == [400]

    slow_id = new_experiment(
        warehouse, [spend("a", 100), command("slow", [PYTHON, "-c", "import time; time.sleep(5)"], after=["a"])]
    )
    out_of_time = execute_experiment(
        warehouse, slow_id, live(Clock()), run_id="slow", attempt=1, limits=ExecutionLimits(max_wall_seconds=1)
    )
    assert out_of_time.state == "rolled_back" and "max_wall_seconds" in out_of_time.message
    assert spends(warehouse, slow_id)["amount_minor"].sum() == 0

    # An op retry of an attempt continues its wall time, not a new one: this attempt began an hour ago.
    from core.experiments.checkpoints import finish_run, start_run

    retried_id = new_experiment(warehouse, [spend("a", 100)], state="queued")
    start_run(warehouse, retried_id, 1, "first-try", datetime.now(UTC) - timedelta(seconds=3601))
    finish_run(warehouse, retried_id, 1, "failed", "RetryableStepError: the webhook said 503", datetime.now(UTC))
    retried = execute_experiment(warehouse, retried_id, live(Clock()), run_id="retry", attempt=1)
    assert retried.state == "rolled_back" and "max_wall_seconds 3600" in retried.message

    # Runs that crash (a bug, a lost database: not a step's verdict) count towards max_attempts.
    flaky_id = new_experiment(warehouse, [http("launch")])
    limits = ExecutionLimits(max_attempts=2)
    clock = Clock()
    for attempt in (1, 2):
        with pytest.raises(RuntimeError, match="died"):
            execute_experiment(
                warehouse,
                flaky_id,
                live(clock, httpx.MockTransport(crash)),
                run_id=f"x{attempt}",
                attempt=attempt,
                limits=limits,
            )
        launches = [launch for launch in due_launches(warehouse, clock.now, limits) if launch.experiment_id == flaky_id]
        assert launches == ([Launch(flaky_id, 2, "retry after failed run")] if attempt == 1 else [])
    assert exhausted(warehouse, limits) == [flaky_id]
    assert fail_experiment(warehouse, flaky_id, "2 failed runs", actor="sensor", clock=clock) == "rolled_back"
    assert exhausted(warehouse, limits) == []
    # A rollback interrupted right after running -> failed: the sensor's next call finishes it.
    interrupted_id = new_experiment(
        warehouse, [spend("a", 100), {"id": "w", "type": "wait_until", "params": {"after_hours": 1}, "after": ["a"]}]
    )
    assert execute_experiment(warehouse, interrupted_id, live(clock), run_id="i", attempt=1).state == "running"
    transition(warehouse, interrupted_id, "failed", actor="sensor", reason="2 failed runs", clock=clock)
    assert exhausted(warehouse, limits) == [interrupted_id]
    assert fail_experiment(warehouse, interrupted_id, "2 failed runs", actor="sensor", clock=clock) == "rolled_back"
    assert spends(warehouse, interrupted_id)["kind"].tolist() == ["spend", "reversal"]
    assert verify(warehouse).ok


def test_due_launches_and_run_keys(warehouse):
    clock = Clock()
    waiting = new_experiment(warehouse, [spend("a", 100)], allocated=None, state="approved")
    ready = new_experiment(
        warehouse, [{"id": "w", "type": "wait_until", "params": {"after_hours": 3}}], state="approved"
    )
    assert due_launches(warehouse, clock.now, LIMITS) == [Launch(ready, 1, "approved")]
    launch = due_launches(warehouse, clock.now, LIMITS)[0]
    assert launch.run_key == f"experiment:{ready}:attempt:1"
    queue_launch(warehouse, launch, actor="sensor")
    queue_launch(warehouse, launch, actor="sensor")  # a repeat changes nothing
    assert states(warehouse, ready) == ["proposed", "approved", "queued"]
    assert due_launches(warehouse, clock.now, LIMITS) == [Launch(ready, 1, "approved")]  # queued, never started
    parked = execute_experiment(warehouse, ready, live(clock), run_id="r", attempt=1)
    assert parked.parked_until == T0 + timedelta(hours=3)
    assert due_launches(warehouse, clock.now + timedelta(hours=2), LIMITS) == []
    assert due_launches(warehouse, clock.now + timedelta(hours=3), LIMITS) == [Launch(ready, 2, "woke")]
    assert waiting not in [launch.experiment_id for launch in due_launches(warehouse, clock.now, LIMITS)]


def test_a_queued_experiment_whose_first_run_died_before_it_started_is_launched_again(warehouse):
    from core.experiments.checkpoints import finish_run, start_run

    clock = Clock()
    experiment_id = new_experiment(warehouse, [spend("a", 100)], state="approved")
    queue_launch(warehouse, due_launches(warehouse, clock.now, LIMITS)[0], actor="sensor")
    # The run recorded itself, then died before moving the experiment from queued to running.
    start_run(warehouse, experiment_id, 1, "died", clock.now)
    finish_run(warehouse, experiment_id, 1, "failed", "killed", clock.now)
    assert states(warehouse, experiment_id)[-1] == "queued"
    assert due_launches(warehouse, clock.now, LIMITS) == [Launch(experiment_id, 2, "retry after failed run")]


CHILD = """
import sys
from datetime import UTC, datetime
from core.experiments.executor import LiveEnvironment, execute_experiment
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
clock = lambda: datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
execute_experiment(Warehouse(sys.argv[1]), sys.argv[2], LiveEnvironment(clock=clock), run_id="killed", attempt=1)
"""
# Sleeps the first time (the run is killed there), returns at once when the resumed run calls it.
SLEEP_ONCE = (
    "import os, sys, time; first = not os.path.exists(sys.argv[1]); "
    "open(sys.argv[1], 'a').close(); time.sleep(60 if first else 0)"
)


def test_a_sigkilled_run_resumes_from_its_checkpoint(warehouse, tmp_path):
    marker = tmp_path / "command-started"
    experiment_id = new_experiment(
        warehouse, [spend("ads", 700), command("slow", [PYTHON, "-c", SLEEP_ONCE, str(marker)], after=["ads"])]
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([PYTHON, "-c", CHILD, warehouse.url, experiment_id], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, f"the run ended before its command step (exit {child.returncode})"
            assert time.monotonic() < deadline, "the run never reached its command step"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # the run and its command, mid-step
        child.wait()
    assert list(load_checkpoints(warehouse, experiment_id)) == ["ads"]
    assert runs(warehouse, experiment_id)["status"].tolist() == ["running"]  # it never said it ended
    # Its lock died with it: the sensor sees a failed run and launches the next attempt.
    assert due_launches(warehouse, T0, LIMITS) == [Launch(experiment_id, 2, "retry after failed run")]

    resumed = execute_experiment(warehouse, experiment_id, live(Clock()), run_id="resumed", attempt=2)
    assert (resumed.state, resumed.skipped_steps, resumed.completed_steps) == ("completed", ["ads"], ["slow"])
    assert spends(warehouse, experiment_id)["amount_minor"].tolist() == [700]
    assert runs(warehouse, experiment_id)["status"].tolist() == ["failed", "finished"]
    assert verify(warehouse).ok


class SteppedMarket:
    """A simulated environment in miniature: its clock jumps to each wait's moment."""

    name = "simulator"

    def __init__(self):
        self.clock, self.waits = Clock(), []

    def clock_for(self, experiment, resume_at):
        return self.clock

    def wait_until(self, experiment, clock, at):
        self.waits.append(at)
        self.clock.now = max(self.clock.now, at)
        return True

    def http_client(self):
        raise AssertionError("no http step here")


def book_revenue(warehouse: Warehouse, experiment_id: str, amount: int, at: datetime) -> None:
    book(
        warehouse,
        TransactionRequest(
            idempotency_key=f"sale-{uuid.uuid4().hex}",
            kind="sale",
            description="a sale",
            occurred_at=at,
            postings=[
                Posting("assets:cash:usd", "USD", amount),
                Posting(f"revenue:experiment:{experiment_id}", "USD", -amount),
            ],
            experiment_id=experiment_id,
        ),
        clock=fixed_clock(at),
    )


def test_a_metric_wait_parks_live_and_steps_through_the_window_simulated(warehouse):
    metric = {"id": "sales", "type": "wait_until", "params": {"metric": "revenue_minor", "at_least": 5_000}}
    outcome = {"id": "outcome", "type": "collect_outcome", "params": {"window_days": 3}, "after": ["sales"]}
    live_id = new_experiment(warehouse, [metric, outcome])
    clock = Clock()
    parked = execute_experiment(warehouse, live_id, live(clock), run_id="l1", attempt=1)
    assert parked.parked_until == T0 + timedelta(hours=1)
    book_revenue(warehouse, live_id, 6_000, T0 + timedelta(minutes=30))
    clock.advance(hours=1)
    reached = execute_experiment(warehouse, live_id, live(clock), run_id="l2", attempt=2)
    assert reached.completed_steps == ["sales"] and reached.parked_until == T0 + timedelta(days=3)
    result = load_checkpoints(warehouse, live_id)["sales"]["result"]
    assert (result["value"], result["reached"]) == (6_000, True)

    # Never reached: the simulated clock goes a day at a time to the window's end, and the outcome
    # records what there was.
    market = SteppedMarket()
    simulated_id = new_experiment(warehouse, [metric, outcome])
    done = execute_experiment(warehouse, simulated_id, market, run_id="s1", attempt=1)
    assert done.state == "completed"
    assert market.waits == [T0 + timedelta(days=d) for d in (1, 2, 3, 3)]  # 3 days, then the outcome's wait
    checkpoints = load_checkpoints(warehouse, simulated_id)
    assert checkpoints["sales"]["result"]["reached"] is False
    assert checkpoints["outcome"]["result"]["revenue_minor"] == 0
    assert {c["environment"] for c in checkpoints.values()} == {"simulator"}
    assert verify(warehouse).ok


def test_a_warehouse_from_before_execution_upgrades(warehouse):
    experiment_id = new_experiment(warehouse, [command("x", ["true"])])
    for column in ("started_at", "wake_at", "finished_at", "outcome"):
        warehouse.execute(f"ALTER TABLE experiments.experiments DROP COLUMN {column}")
    ensure_schema(warehouse)  # what every asset and command runs first
    assert execute_experiment(warehouse, experiment_id, live(Clock()), run_id="u", attempt=1).state == "completed"
    assert pd.Timestamp(get_experiment(warehouse, experiment_id)["finished_at"]) == pd.Timestamp(T0)
