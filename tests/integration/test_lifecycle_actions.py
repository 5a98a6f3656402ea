"""The five lifecycle actions a person takes (lifecycle.ACTIONS, behind both `ventureloop experiments
...` and the UI's jobs) on DuckDB and PostgreSQL: each action moves exactly the states it promises
and refuses every other one naming both states and what the experiment does take."""

import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from core.experiments import lifecycle
from core.experiments.lifecycle import ActionNotAllowed, LifecycleError, UnknownExperiment, act, history, transition
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import fixed_clock, read_events
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse
from tests.integration.test_experiment_lifecycle import PATH  # how a new experiment reaches each state

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
STATES = ["proposed", "approved", "queued", "running", "paused", "completed", "failed", "cancelled", "rolled_back"]
# Written out here, not read from the code: action -> (target state, the states it moves from).
EXPECTED_ACTIONS = {
    "approve": ("approved", {"proposed"}),
    "reject": ("cancelled", {"proposed"}),
    "cancel": ("cancelled", {"proposed", "approved", "queued", "running", "paused"}),
    "pause": ("paused", {"running"}),
    "resume": ("running", {"paused"}),
}


def new_experiment(warehouse: Warehouse, state: str = "proposed") -> str:
    frame = pd.DataFrame(
        [
            {
                "opportunity_id": (opportunity := f"opp-{uuid.uuid4().hex[:10]}"),
                "score": 0.7,
                "opportunity_type": "saas",
                "title": f"Opportunity {opportunity}",
                "est_monthly_revenue_cents": 300_000,
                "is_cluster_lead": True,
            }
        ]
    )
    (experiment_id,) = propose_from_scored(warehouse, frame, 1, NEVER, fixed_clock(T0)).created
    for step in PATH[state]:
        transition(warehouse, experiment_id, step, actor="test", reason=f"to {step}", clock=fixed_clock(T0))
    return experiment_id


def test_the_code_table_is_the_promised_one():
    assert {
        name: (action.to_state, set(action.from_states)) for name, action in lifecycle.ACTIONS.items()
    } == EXPECTED_ACTIONS
    # Every action is a move the state table allows: an action can never get around it.
    for action in lifecycle.ACTIONS.values():
        assert all(action.to_state in lifecycle.ALLOWED[state] for state in action.from_states), action.name
    assert lifecycle.actions_for("running") == ["cancel", "pause"]
    assert lifecycle.actions_for("completed") == []


MOVES = [(a, s) for a, (_to, sources) in EXPECTED_ACTIONS.items() for s in STATES if s in sources]
BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("shared_warehouse", BACKENDS, indirect=True)
@pytest.mark.parametrize(("action", "from_state"), MOVES)
def test_each_action_moves_the_states_it_promises(shared_warehouse, action, from_state):
    warehouse = shared_warehouse
    experiment_id = new_experiment(warehouse, from_state)
    before = len(history(warehouse, experiment_id))
    to_state = EXPECTED_ACTIONS[action][0]
    at = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    done = act(warehouse, action, experiment_id, actor="alice", reason="because", clock=fixed_clock(at))
    assert (done.from_state, done.to_state, done.seq, done.actor, done.reason) == (
        from_state,
        to_state,
        before,
        "alice",
        "because",
    )
    last = history(warehouse, experiment_id).iloc[-1]
    assert (last["from_state"], last["to_state"], last["actor"], last["reason"]) == (
        from_state,
        to_state,
        "alice",
        "because",
    )
    assert pd.Timestamp(last["transitioned_at"]) == pd.Timestamp(at)
    with warehouse.connect() as conn:
        _seq, _id, event_type, payload, *_rest = read_events(conn)[-1]
    assert event_type == "experiment.transitioned" and f'"experiment_id":"{experiment_id}"' in payload
    assert '"actor":"alice"' in payload and f'"to_state":"{to_state}"' in payload
    assert verify(warehouse).ok, verify(warehouse).summary()


@pytest.mark.parametrize("shared_warehouse", BACKENDS, indirect=True)
def test_every_other_action_and_state_is_refused(shared_warehouse):
    # A refusal changes nothing, so one experiment per state serves every action's refusal of it.
    warehouse = shared_warehouse
    experiments = {state: new_experiment(warehouse, state) for state in STATES}
    refused = 0
    for action, (to_state, sources) in EXPECTED_ACTIONS.items():
        for state in (s for s in STATES if s not in sources):
            experiment_id = experiments[state]
            with pytest.raises(ActionNotAllowed) as refusal:
                act(warehouse, action, experiment_id, actor="alice", reason="because")
            message = str(refusal.value)
            assert f"experiment {experiment_id} is {state}, not " in message, message
            assert f"cannot {action} it" in message and f"to {to_state})" in message, message
            # What to do instead: the actions this state takes, or why there are none.
            if open_actions := [a for a, (_t, s) in EXPECTED_ACTIONS.items() if state in s]:
                assert f"the actions open to it now: {', '.join(open_actions)}" in message, message
            elif state == "failed":
                assert "no action applies to a failed experiment: the executor moves it on (to rolled_back)" in message
            else:
                assert f"{state} is final" in message, message
            refused += 1
    assert refused == len(EXPECTED_ACTIONS) * len(STATES) - len(MOVES)
    states = warehouse.query("SELECT experiment_id, state FROM experiments.experiments")
    assert {experiments[s]: s for s in STATES}.items() <= dict(
        zip(states.experiment_id, states.state, strict=True)
    ).items()
    assert all(len(history(warehouse, experiments[s])) == len(PATH[s]) + 1 for s in STATES)


def test_refusals_say_what_the_action_does(warehouse):
    cancelled = new_experiment(warehouse, "cancelled")
    with pytest.raises(ActionNotAllowed) as refused:
        act(warehouse, "approve", cancelled, actor="alice", reason="again")
    assert str(refused.value) == (
        f"experiment {cancelled} is cancelled, not proposed: cannot approve it (approve moves a proposed "
        "experiment to approved); transition cancelled -> approved is not allowed; from cancelled: none "
        "(cancelled is terminal). Nothing changed: cancelled is final, and a changed plan is a new experiment"
    )
    approved = new_experiment(warehouse, "approved")
    # The table allows approved -> cancelled, but a rejection is for proposals: it says to cancel.
    with pytest.raises(ActionNotAllowed) as refused:
        act(warehouse, "reject", approved, actor="alice", reason="no")
    assert str(refused.value) == (
        f"experiment {approved} is approved, not proposed: cannot reject it (reject moves a proposed "
        "experiment to cancelled). Nothing changed; the actions open to it now: cancel"
    )
    failed = new_experiment(warehouse, "failed")
    with pytest.raises(ActionNotAllowed, match="is failed, not proposed, approved, queued, running or paused"):
        act(warehouse, "cancel", failed, actor="alice", reason="stop")


def test_unknown_experiment_action_actor_or_reason(warehouse):
    with pytest.raises(UnknownExperiment, match="no experiment 'nope' in experiments.experiments"):
        act(warehouse, "pause", "nope", actor="alice", reason="why")
    experiment_id = new_experiment(warehouse)
    with pytest.raises(LifecycleError, match="unknown experiment action 'launch': the actions are approve, reject"):
        act(warehouse, "launch", experiment_id, actor="alice", reason="why")
    with pytest.raises(LifecycleError, match="needs an actor"):
        act(warehouse, "approve", experiment_id, actor="", reason="why")
    with pytest.raises(LifecycleError, match="to approved needs a reason"):
        act(warehouse, "approve", experiment_id, actor="alice", reason=" ")
    assert warehouse.scalar("SELECT state FROM experiments.experiments WHERE experiment_id = %s", [experiment_id]) == (
        "proposed"
    )


def test_an_action_decided_from_a_stale_state_changes_nothing(warehouse, monkeypatch):
    # act reads the state, then moves with expected_from: a writer that moves the experiment in
    # between (simulated by a read that answers the old state) makes the move refuse, not misapply.
    experiment_id = new_experiment(warehouse, "paused")
    real = lifecycle.get_experiment
    monkeypatch.setattr(lifecycle, "get_experiment", lambda w, i: {**real(w, i), "state": "running"})
    with pytest.raises(LifecycleError, match=f"experiment {experiment_id} is paused, not running"):
        act(warehouse, "pause", experiment_id, actor="alice", reason="hold")
    assert len(history(warehouse, experiment_id)) == len(PATH["paused"]) + 1
