"""allocate() on DuckDB and PostgreSQL: proportional to score within the monthly global, category
and experiment headroom (spend so far and earlier allocations not yet spent count against it),
integer shares that sum to what was free, audited, and never twice for one experiment."""

import json
import threading
import uuid
from datetime import UTC, datetime

import pandas as pd

from core.experiments.allocation import EXPERIMENT_ALLOCATED, allocate
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


def test_shares_follow_score_within_the_global_headroom_left_by_this_months_spend(warehouse: Warehouse):
    a, b, c = approved(warehouse, 0.6), approved(warehouse, 0.3), approved(warehouse, 0.1)
    monthly(warehouse, 50_000)
    booked = spend(
        warehouse,
        expense("ads-1", "expenses:ads:google", 5_000, "USD", T0, paid_from="liabilities:card", description="ads"),
        clock=CLOCK,
    )
    assert booked.ok
    result = allocate(warehouse, actor="alice", clock=CLOCK)
    # 45_000 free, split 0.6 : 0.3 : 0.1; nobody reaches the 30_000 asked for.
    assert allocated(warehouse) == {a: 27_000, b: 13_500, c: 4_500}
    assert set(result["status"]) == {"allocated"}
    assert result["allocated_budget_minor"].sum() == 45_000
    assert all("global budget (45000 left)" in text for text in result["limited_by"])
    events = allocation_events(warehouse)
    assert sorted((e["experiment_id"], e["allocated_budget_minor"], e["actor"]) for e in events) == sorted(
        [(a, 27_000, "alice"), (b, 13_500, "alice"), (c, 4_500, "alice")]
    )
    assert verify(warehouse).ok, verify(warehouse).summary()


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


def test_category_and_experiment_budgets_cap_their_claims_and_the_rest_goes_to_others(warehouse: Warehouse):
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
    # ads has 15_000 left, split 0.8 : 0.2; capped gets its 8_000; gig its whole 30_000 request.
    assert allocated(warehouse) == {ads_high: 12_000, ads_low: 3_000, gig: 30_000, capped: 8_000}
    assert result.loc[ads_high, "category"] == "ads" and result.loc[gig, "category"] == "outreach"
    assert "monthly ads category budget (15000 left)" in result.loc[ads_low, "limited_by"]
    assert "monthly experiment budget (8000 left)" in result.loc[capped, "limited_by"]
    assert result.loc[gig, "limited_by"] == "its requested budget"


def test_odd_units_go_by_largest_remainder_and_sum_exactly(warehouse: Warehouse):
    ids = [approved(warehouse, s) for s in (0.5, 0.3, 0.2)]
    monthly(warehouse, 1_001)
    allocate(warehouse, actor="alice", clock=CLOCK)
    # exact 500.5, 300.3, 200.2: the one unit left goes to the .5
    assert [allocated(warehouse)[i] for i in ids] == [501, 300, 200]


def test_two_allocations_at_once_allocate_each_experiment_once(warehouse: Warehouse):
    ids = [approved(warehouse, s) for s in (0.7, 0.5, 0.3, 0.1)]
    monthly(warehouse, 50_000)
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
    assert sum(allocated(warehouse).values()) == 50_000
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
