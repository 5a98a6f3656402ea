"""The experiment lifecycle on DuckDB and PostgreSQL: every pair of the 9x9 table either moves and
leaves its history row and audit event, or is refused naming both states; two racing transitions
from one state let exactly one win; proposals are idempotent and the policy approves exactly
those under its thresholds."""

import threading
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from core.experiments import lifecycle
from core.experiments.lifecycle import LifecycleError, UnknownExperiment, history, transition
from core.experiments.proposals import ApprovalPolicy, load_policy, propose_from_scored
from core.ledger.audit import fixed_clock, read_events
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
STATES = ["proposed", "approved", "queued", "running", "paused", "completed", "failed", "cancelled", "rolled_back"]

# Written out here, not read from the code: the table the lifecycle promises.
EXPECTED_ALLOWED = {
    ("proposed", "approved"),
    ("proposed", "cancelled"),
    ("approved", "queued"),
    ("approved", "cancelled"),
    ("queued", "running"),
    ("queued", "cancelled"),
    ("running", "paused"),
    ("running", "completed"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("running", "rolled_back"),
    ("paused", "running"),
    ("paused", "cancelled"),
    ("paused", "rolled_back"),
    ("failed", "rolled_back"),
}
# How a new experiment reaches each state.
PATH = {
    "proposed": [],
    "approved": ["approved"],
    "queued": ["approved", "queued"],
    "running": ["approved", "queued", "running"],
    "paused": ["approved", "queued", "running", "paused"],
    "completed": ["approved", "queued", "running", "completed"],
    "failed": ["approved", "queued", "running", "failed"],
    "cancelled": ["cancelled"],
    "rolled_back": ["approved", "queued", "running", "rolled_back"],
}


def scored(*rows: tuple[str, float, str, int], cluster_leads: bool = True) -> pd.DataFrame:
    """A frame with the columns of core.scored_opportunities that proposals read."""
    return pd.DataFrame(
        [
            {
                "opportunity_id": opportunity_id,
                "score": score,
                "opportunity_type": kind,
                "title": f"Opportunity {opportunity_id}",
                "est_monthly_revenue_cents": revenue,
                "cluster_id": f"cluster-{opportunity_id}",
                "is_cluster_lead": cluster_leads,
            }
            for opportunity_id, score, kind, revenue in rows
        ]
    )


def new_experiment(warehouse: Warehouse, state: str = "proposed") -> str:
    report = propose_from_scored(
        warehouse, scored((f"opp-{uuid.uuid4().hex[:10]}", 0.7, "saas", 300_000)), 1, NEVER, fixed_clock(T0)
    )
    (experiment_id,) = report.created
    for step in PATH[state]:
        transition(warehouse, experiment_id, step, actor="test", reason=f"to {step}", clock=fixed_clock(T0))
    return experiment_id


def test_the_code_table_is_the_promised_one():
    assert list(lifecycle.STATES) == STATES
    assert {(a, b) for a, targets in lifecycle.ALLOWED.items() for b in targets} == EXPECTED_ALLOWED
    assert {"completed", "cancelled", "rolled_back"} == lifecycle.TERMINAL


# Every pair on DuckDB; on PostgreSQL the allowed ones, which are what write (a refusal is decided
# before any SQL runs, the same on both backends).
PAIRS = [
    *[pytest.param("duckdb", a, b, id=f"duckdb-{a}-{b}") for a in STATES for b in STATES],
    *[
        pytest.param("postgres", a, b, id=f"postgres-{a}-{b}", marks=pytest.mark.postgres)
        for a in STATES
        for b in STATES
        if (a, b) in EXPECTED_ALLOWED
    ],
]


@pytest.mark.parametrize(("shared_warehouse", "from_state", "to_state"), PAIRS, indirect=["shared_warehouse"])
def test_every_pair_of_states(shared_warehouse, from_state, to_state):
    warehouse = shared_warehouse
    experiment_id = new_experiment(warehouse, from_state)
    before = history(warehouse, experiment_id)
    at = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    if (from_state, to_state) in EXPECTED_ALLOWED:
        done = transition(warehouse, experiment_id, to_state, actor="alice", reason="because", clock=fixed_clock(at))
        assert (done.from_state, done.to_state, done.seq) == (from_state, to_state, len(before))
        row = warehouse.query(
            "SELECT state, state_seq, updated_at FROM experiments.experiments WHERE experiment_id = %s",
            [experiment_id],
        ).iloc[0]
        assert (row["state"], int(row["state_seq"])) == (to_state, len(before))
        assert pd.Timestamp(row["updated_at"]) == pd.Timestamp(at)
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
        assert event_type == "experiment.transitioned"
        assert f'"experiment_id":"{experiment_id}"' in payload and f'"to_state":"{to_state}"' in payload
        assert verify(warehouse).ok, verify(warehouse).summary()
    else:
        with pytest.raises(LifecycleError) as refused:
            transition(warehouse, experiment_id, to_state, actor="alice", reason="because", clock=fixed_clock(at))
        assert f"{from_state} -> {to_state} is not allowed" in str(refused.value)
        assert experiment_id in str(refused.value)
        assert (
            warehouse.scalar("SELECT state FROM experiments.experiments WHERE experiment_id = %s", [experiment_id])
            == from_state
        )
        assert len(history(warehouse, experiment_id)) == len(before)


def test_a_refusal_lists_the_allowed_targets(warehouse):
    experiment_id = new_experiment(warehouse, "paused")
    with pytest.raises(
        LifecycleError, match="paused -> completed is not allowed; from paused: running, cancelled, rolled_back"
    ):
        transition(warehouse, experiment_id, "completed", actor="alice", reason="done")
    finished = new_experiment(warehouse, "completed")
    with pytest.raises(LifecycleError, match=r"from completed: none \(completed is terminal\)"):
        transition(warehouse, finished, "running", actor="alice", reason="again")
    with pytest.raises(LifecycleError, match="unknown experiment state 'done'"):
        transition(warehouse, finished, "done", actor="alice", reason="typo")


def test_unknown_experiment_missing_actor_or_reason(warehouse):
    with pytest.raises(UnknownExperiment, match="no experiment 'nope' in experiments.experiments"):
        transition(warehouse, "nope", "approved", actor="alice", reason="why")
    experiment_id = new_experiment(warehouse)
    with pytest.raises(LifecycleError, match="needs an actor"):
        transition(warehouse, experiment_id, "approved", actor=" ", reason="why")
    with pytest.raises(LifecycleError, match="to approved needs a reason"):
        transition(warehouse, experiment_id, "approved", actor="alice", reason="")


def test_the_full_history_and_audit_chain_of_one_experiment(warehouse):
    experiment_id = new_experiment(warehouse, "paused")
    transition(warehouse, experiment_id, "running", actor="bob", reason="resume")
    transition(warehouse, experiment_id, "failed", actor="executor", reason="step spend failed")
    transition(warehouse, experiment_id, "rolled_back", actor="executor", reason="compensated")
    steps = history(warehouse, experiment_id)
    assert list(steps["seq"]) == list(range(8))
    assert [None if pd.isna(s) else s for s in steps["from_state"]] == [
        None,
        "proposed",
        "approved",
        "queued",
        "running",
        "paused",
        "running",
        "failed",
    ]
    assert list(steps["to_state"]) == [
        "proposed",
        "approved",
        "queued",
        "running",
        "paused",
        "running",
        "failed",
        "rolled_back",
    ]
    with warehouse.connect() as conn:
        events = [row[2] for row in read_events(conn)]
    assert events == ["experiment.proposed"] + ["experiment.transitioned"] * 7
    assert verify(warehouse).ok


@pytest.mark.parametrize("targets", [("paused", "cancelled"), ("completed", "completed")])
def test_two_racing_transitions_from_one_state_let_exactly_one_win(warehouse, targets):
    experiment_id = new_experiment(warehouse, "running")
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def move(index: int, to_state: str) -> None:
        barrier.wait()
        try:
            outcomes[index] = transition(
                warehouse, experiment_id, to_state, actor=f"t{index}", reason="race", expected_from="running"
            )
        except LifecycleError as error:
            outcomes[index] = error

    threads = [threading.Thread(target=move, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    won = [o for o in outcomes if isinstance(o, lifecycle.Transition)]
    lost = [o for o in outcomes if isinstance(o, LifecycleError)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert "not running" in str(lost[0]) or "is not allowed" in str(lost[0])
    steps = history(warehouse, experiment_id)
    assert list(steps["from_state"].iloc[-1:]) == ["running"] and len(steps) == 4 + 1
    assert (
        warehouse.scalar("SELECT state FROM experiments.experiments WHERE experiment_id = %s", [experiment_id])
        == won[0].to_state
    )
    assert verify(warehouse).ok


def test_proposals_are_idempotent_and_the_policy_approves_exactly_those_under_its_thresholds(warehouse):
    policy = ApprovalPolicy(max_budget_minor=20_000, min_score=0.6)
    frame = scored(
        ("cheap-good", 0.90, "saas", 100_000),  # budget 10,000 <= 20,000, score 0.90: approved
        ("at-limits", 0.60, "api", 200_000),  # budget 20,000 == limit, score == threshold: approved
        ("too-dear", 0.95, "content", 500_000),  # budget 50,000 > limit: a person decides
        ("weak", 0.59, "affiliate", 50_000),  # score below the threshold: a person decides
        ("not-top", 0.10, "saas", 10_000),  # beyond top_n
        ("odd-type", 0.80, "crypto", 10_000),  # not a category: skipped, named, takes its top_n place
    )
    frame = pd.concat([frame, scored(("duplicate", 0.99, "saas", 10_000), cluster_leads=False)], ignore_index=True)
    first = propose_from_scored(warehouse, frame, 5, policy, fixed_clock(T0))
    assert len(first.created) == 4 and not first.unchanged and not first.conflicts
    assert first.skipped == [
        "opportunity 'odd-type': opportunity_type 'crypto' is not a category (affiliate, api, content, "
        "freelance_gig, marketplace, open_source_tool, other, saas)"
    ]
    table = warehouse.query(
        "SELECT opportunity_id, state, requested_budget_minor, category, currency, success_criteria, playbook "
        "FROM experiments.experiments ORDER BY opportunity_id"
    ).set_index("opportunity_id")
    assert sorted(table.index) == ["at-limits", "cheap-good", "too-dear", "weak"]
    assert dict(table["state"]) == {
        "at-limits": "approved",
        "cheap-good": "approved",
        "too-dear": "proposed",
        "weak": "proposed",
    }
    assert dict(table["requested_budget_minor"]) == {
        "at-limits": 20_000,
        "cheap-good": 10_000,
        "too-dear": 50_000,
        "weak": 5_000,
    }
    assert table.loc["too-dear", "category"] == "content" and set(table["currency"]) == {"USD"}
    assert '"metric":"revenue_minor"' in table.loc["cheap-good", "success_criteria"]
    assert '"at_least":20000' in table.loc["cheap-good", "success_criteria"]
    assert '"type":"spend"' in table.loc["cheap-good", "playbook"]
    approvals = warehouse.query(
        "SELECT actor, reason FROM experiments.transitions WHERE to_state = 'approved' ORDER BY reason"
    )
    assert set(approvals["actor"]) == {"policy"} and len(approvals) == 2
    assert all("budget" in r and "score" in r and "<= 20000" in r for r in approvals["reason"])
    assert len(first.approved) == 2 and len(first.waiting) == 2

    # Rematerialized, rescored: nothing new, nothing moved, nothing audited twice.
    events_before = warehouse.count("audit.events")
    rescored = frame.assign(score=frame["score"] - 0.001)
    again = propose_from_scored(warehouse, rescored, 5, policy, fixed_clock(T0))
    assert not again.created and len(again.unchanged) == 4 and not again.conflicts and not again.approved
    assert warehouse.count("experiments.experiments") == 4
    assert warehouse.count("audit.events") == events_before

    # Same key, different content: the first is kept and the report says so.
    changed = frame.assign(est_monthly_revenue_cents=frame["est_monthly_revenue_cents"] * 3)
    conflicting = propose_from_scored(warehouse, changed, 5, policy, fixed_clock(T0))
    assert not conflicting.created and len(conflicting.conflicts) == 4
    assert "the first proposal is kept" in conflicting.conflicts[0]
    assert (
        int(
            warehouse.scalar(
                "SELECT requested_budget_minor FROM experiments.experiments WHERE opportunity_id = 'cheap-good'"
            )
        )
        == 10_000
    )
    assert verify(warehouse).ok


def test_the_policy_file_loads_and_refuses_bad_values(tmp_path):
    policy = load_policy()
    assert isinstance(policy.max_budget_minor, int) and 0 <= policy.min_score <= 1
    bad = tmp_path / "approval.yaml"
    bad.write_text("auto_approve:\n  max_budget_minor: 250.0\n  min_score: 0.5\n")
    with pytest.raises(ValueError, match="max_budget_minor must be a non-negative integer of minor units, got 250.0"):
        load_policy(bad)
    bad.write_text("auto_approve:\n  max_budget_minor: 100\n")
    with pytest.raises(ValueError, match=r"auto_approve lacks \['min_score'\]"):
        load_policy(bad)
