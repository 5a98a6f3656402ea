"""allocate() on DuckDB and PostgreSQL: in UCB order (the score when no priority is given), each
claim up to its cap within the monthly global, category and experiment headroom of its currency
(spend so far and earlier allocations not yet spent count against it), integer amounts, nothing
for a non-positive UCB, audited with the UCB, and never twice for one experiment."""

import json
import threading
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from core.experiments.allocation import EXPERIMENT_ALLOCATED, NO_FEATURES, NO_PRIORITY, Priority, allocate
from core.experiments.lifecycle import transition
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import fixed_clock, read_events
from core.ledger.budgets import expense, set_budget, spend
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
CLOCK = fixed_clock(T0)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)


def approved(warehouse: Warehouse, score: float, revenue_cents: int = 300_000, kind: str = "saas") -> str:
    """An approved experiment; it requests 10% of revenue_cents (30_000 by default), clamped."""
    opportunity = f"opp-{uuid.uuid4().hex[:10]}"
    frame = pd.DataFrame(
        [
            {
                "opportunity_id": opportunity,
                "score": score,
                "opportunity_type": kind,
                "title": f"Opportunity {opportunity}",
                "est_monthly_revenue_cents": revenue_cents,
            }
        ]
    )
    (experiment_id,) = propose_from_scored(warehouse, frame, 1, NEVER, CLOCK).created
    transition(warehouse, experiment_id, "approved", actor="alice", reason="go", clock=CLOCK)
    return experiment_id


def monthly(warehouse: Warehouse, limit: int, scope: str = "global", key: str = "*") -> None:
    set_budget(
        warehouse, scope=scope, scope_key=key, period="month", currency="USD", limit_minor=limit, changed_by="t", at=T0
    )


def allocated(warehouse: Warehouse) -> dict[str, int | None]:
    frame = warehouse.query("SELECT experiment_id, allocated_budget_minor FROM experiments.experiments")
    return {
        row.experiment_id: None if pd.isna(row.allocated_budget_minor) else int(row.allocated_budget_minor)
        for row in frame.itertuples()
    }


def allocation_events(warehouse: Warehouse) -> list[dict]:
    with warehouse.connect() as conn:
        return [json.loads(e[3]) for e in read_events(conn) if e[2] == EXPERIMENT_ALLOCATED]


def ucb(value: float, mean: float | None = None, width: float = 0.1) -> Priority:
    return Priority(value, value - width if mean is None else mean, width)


def test_the_highest_ucb_is_funded_first_within_the_global_headroom_left_by_this_months_spend(
    warehouse: Warehouse,
):
    a, b, c = approved(warehouse, 0.6), approved(warehouse, 0.3), approved(warehouse, 0.1)
    monthly(warehouse, 50_000)
    booked = spend(
        warehouse,
        expense("ads-1", "expenses:ads:google", 5_000, "USD", T0, paid_from="liabilities:card", description="ads"),
        clock=CLOCK,
    )
    assert booked.ok
    # LinUCB disagrees with the score: c first, then a, then b.
    priorities = {a: ucb(0.4, 0.3, 0.1), b: ucb(0.2, 0.15, 0.05), c: ucb(1.2, 0.2, 1.0)}
    result = allocate(warehouse, actor="alice", clock=CLOCK, priorities=priorities).set_index("experiment_id")
    # 45_000 free: c its whole 30_000, a the 15_000 left, b nothing (it waits for headroom).
    assert allocated(warehouse) == {a: 15_000, b: None, c: 30_000}
    assert result.loc[[c, a, b], "rank"].tolist() == [1, 2, 3]
    assert result.loc[[c, a, b], "status"].tolist() == ["allocated", "allocated", "waiting"]
    assert result.loc[c, "limited_by"] == "its requested budget; UCB rank 1 of 3"
    assert (
        result.loc[a, "limited_by"]
        == "the monthly global budget (45000 left, 30000 to higher UCB ranks); UCB rank 2 of 3"
    )
    assert result.loc[b, "limited_by"].startswith("no headroom: the monthly global budget (45000 left, 45000 to")
    assert (result.loc[c, "ucb"], result.loc[c, "mean"], result.loc[c, "width"]) == (1.2, 0.2, 1.0)
    assert set(result["basis"]) == {"linucb"}
    events = {e["experiment_id"]: e for e in allocation_events(warehouse)}
    assert set(events) == {a, c}
    assert (events[c]["allocated_budget_minor"], events[c]["actor"], events[c]["rank"]) == (30_000, "alice", 1)
    assert (events[c]["ucb"], events[c]["mean"], events[c]["width"], events[c]["basis"]) == (1.2, 0.2, 1.0, "linucb")
    assert verify(warehouse).ok, verify(warehouse).summary()


def test_category_and_experiment_budgets_cap_their_claims_and_the_rest_goes_down_the_ranks(warehouse: Warehouse):
    ads_high, ads_low = approved(warehouse, 0.8), approved(warehouse, 0.2)  # saas spends on expenses:ads
    gig = approved(warehouse, 0.5, kind="freelance_gig")  # spends on expenses:outreach
    capped = approved(warehouse, 0.9, kind="content")  # expenses:content, own budget below its request
    monthly(warehouse, 100_000)
    monthly(warehouse, 20_000, "category", "ads")
    monthly(warehouse, 8_000, "experiment", capped)
    # ads already spent 5_000 this month, not by any of these experiments.
    spent = spend(
        warehouse,
        expense("ads-1", "expenses:ads:meta", 5_000, "USD", T0, paid_from="liabilities:card", description="ads"),
        clock=CLOCK,
    )
    assert spent.ok
    result = allocate(warehouse, actor="alice", clock=CLOCK).set_index("experiment_id")
    # No priorities: the score ranks. ads has 15_000 left, all to ads_high; ads_low finds none;
    # capped gets its 8_000; gig its whole 30_000 request.
    assert allocated(warehouse) == {ads_high: 15_000, ads_low: None, gig: 30_000, capped: 8_000}
    assert result.loc[ads_high, "category"] == "ads" and result.loc[gig, "category"] == "outreach"
    assert "the monthly ads category budget (15000 left, 0 to higher UCB ranks)" in result.loc[ads_high, "limited_by"]
    assert result.loc[ads_low, "limited_by"].startswith(
        "no headroom: the monthly ads category budget (15000 left, 15000 to higher UCB ranks)"
    )
    assert "monthly experiment budget (8000 left); UCB rank 1 of 4" in result.loc[capped, "limited_by"]
    assert result.loc[gig, "limited_by"] == f"its requested budget; UCB rank 3 of 4 ({NO_PRIORITY})"
    assert (result.loc[gig, "ucb"], result.loc[gig, "mean"], result.loc[gig, "width"]) == (0.5, 0.5, 0.0)
    # The limits held: global, category, experiment.
    assert sum(v or 0 for v in allocated(warehouse).values()) <= 100_000


def test_only_budgets_in_the_experiments_currency_count(warehouse: Warehouse):
    usd, eur = approved(warehouse, 0.5), approved(warehouse, 0.9)
    warehouse.execute("UPDATE experiments.experiments SET currency = 'EUR' WHERE experiment_id = %s", [eur])
    monthly(warehouse, 12_000)  # USD
    set_budget(
        warehouse,
        scope="global",
        scope_key="*",
        period="month",
        currency="EUR",
        limit_minor=7_000,
        changed_by="t",
        at=T0,
    )
    result = allocate(warehouse, actor="alice", clock=CLOCK).set_index("experiment_id")
    assert allocated(warehouse) == {usd: 12_000, eur: 7_000}
    assert result.loc[eur, "currency"] == "EUR"
    # Each currency is its own pool, ranked on its own.
    assert result.loc[[usd, eur], "rank"].tolist() == [1, 1]


def test_amounts_are_whole_minor_units_that_use_up_the_headroom_exactly(warehouse: Warehouse):
    ids = [approved(warehouse, s) for s in (0.5, 0.3, 0.2)]
    monthly(warehouse, 70_001)
    allocate(warehouse, actor="alice", clock=CLOCK)
    assert [allocated(warehouse)[i] for i in ids] == [30_000, 30_000, 10_001]


def test_a_non_positive_ucb_gets_nothing_and_is_ranked_again_next_time(warehouse: Warehouse):
    loser, winner = approved(warehouse, 0.9), approved(warehouse, 0.1)
    monthly(warehouse, 1_000_000)
    result = allocate(
        warehouse, actor="alice", clock=CLOCK, priorities={loser: ucb(-0.05, -0.3, 0.25), winner: ucb(0.4)}
    ).set_index("experiment_id")
    assert allocated(warehouse) == {loser: None, winner: 30_000}
    assert result.loc[loser, "status"] == "declined" and result.loc[loser, "allocated_budget_minor"] == 0
    assert result.loc[loser, "limited_by"] == (
        "its UCB -0.05 is not positive: expected to lose money even optimistically; UCB rank 2 of 2"
    )
    assert [e["experiment_id"] for e in allocation_events(warehouse)] == [winner]
    # More was learned: its UCB is now positive and the budget it did not get is still there.
    again = allocate(warehouse, actor="alice", clock=CLOCK, priorities={loser: ucb(0.1)})
    assert again["status"].tolist() == ["allocated"] and allocated(warehouse)[loser] == 30_000


def test_a_candidate_without_features_ranks_by_its_score_and_says_so(warehouse: Warehouse):
    known, unknown = approved(warehouse, 0.2), approved(warehouse, 0.7)
    monthly(warehouse, 40_000)
    result = allocate(warehouse, actor="alice", clock=CLOCK, priorities={known: ucb(0.5)}).set_index("experiment_id")
    # unknown's score 0.7 stands in for its UCB: above known's 0.5, so it is funded first.
    assert allocated(warehouse) == {unknown: 30_000, known: 10_000}
    assert result.loc[unknown, "basis"] == NO_FEATURES
    assert result.loc[unknown, "limited_by"] == f"its requested budget; UCB rank 1 of 2 ({NO_FEATURES})"
    assert (result.loc[unknown, "ucb"], result.loc[unknown, "width"]) == (0.7, 0.0)
    events = {e["experiment_id"]: e for e in allocation_events(warehouse)}
    assert events[unknown]["basis"] == NO_FEATURES and events[known]["basis"] == "linucb"


def test_a_priority_that_is_not_a_number_is_refused_before_anything_is_written(warehouse: Warehouse):
    a = approved(warehouse, 0.5)
    monthly(warehouse, 40_000)
    for bad in (Priority(float("nan"), 0.1, 0.1), Priority(0.5, 0.4, -0.1)):
        with pytest.raises(ValueError, match=f"the priority of experiment {a} is"):
            allocate(warehouse, actor="alice", clock=CLOCK, priorities={a: bad})
    assert allocated(warehouse) == {a: None} and allocation_events(warehouse) == []


def test_an_allocation_is_never_redone_and_promised_budget_is_not_given_twice(warehouse: Warehouse):
    a = approved(warehouse, 0.5)
    monthly(warehouse, 40_000)
    allocate(warehouse, actor="alice", clock=CLOCK)
    assert allocated(warehouse) == {a: 30_000}  # its whole request
    assert allocate(warehouse, actor="alice", clock=CLOCK).empty  # nothing left without an allocation

    # a has not spent yet: 30_000 of the 40_000 is promised to it, 10_000 is free.
    b = approved(warehouse, 0.9)
    allocate(warehouse, actor="bob", clock=CLOCK)
    assert allocated(warehouse) == {a: 30_000, b: 10_000}

    # Nothing free: c waits, unallocated, and gets its share once the limit rises.
    c = approved(warehouse, 0.4)
    waiting = allocate(warehouse, actor="bob", clock=CLOCK)
    assert waiting[["experiment_id", "allocated_budget_minor", "status"]].values.tolist() == [[c, 0, "waiting"]]
    assert "no headroom" in waiting["limited_by"].item()
    assert allocated(warehouse)[c] is None
    monthly(warehouse, 60_000)
    allocate(warehouse, actor="bob", clock=CLOCK)
    assert allocated(warehouse) == {a: 30_000, b: 10_000, c: 20_000}
    assert len(allocation_events(warehouse)) == 3


def test_two_allocations_at_once_allocate_each_experiment_once(warehouse: Warehouse):
    ids = [approved(warehouse, s) for s in (0.7, 0.5, 0.3, 0.1)]
    monthly(warehouse, 120_000)  # room for all four requests of 30_000
    results, errors = [], []
    start = threading.Barrier(2)

    def run(actor: str) -> None:
        try:
            start.wait()
            results.append(allocate(warehouse, actor=actor, clock=CLOCK))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(f"worker-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    events = allocation_events(warehouse)
    assert sorted(e["experiment_id"] for e in events) == sorted(ids)  # one event per experiment, none twice
    assert sum(allocated(warehouse).values()) == 120_000
    assert sorted(len(r) for r in results) == [0, 4]  # the second found nothing left to allocate
    assert verify(warehouse).ok


def test_spend_of_an_allocation_moves_it_from_promised_to_spent_not_both(warehouse: Warehouse):
    a = approved(warehouse, 0.5)
    monthly(warehouse, 40_000)
    allocate(warehouse, actor="alice", clock=CLOCK)
    request = expense(
        "a-1", f"expenses:ads:experiment:{a}", 12_000, "USD", T0, paid_from="liabilities:card", description="ads"
    )
    assert spend(warehouse, request, clock=CLOCK).ok
    b = approved(warehouse, 0.9)
    allocate(warehouse, actor="bob", clock=CLOCK)
    # 40_000 - 12_000 spent by a - 18_000 still promised to a
    assert allocated(warehouse) == {a: 30_000, b: 10_000}
