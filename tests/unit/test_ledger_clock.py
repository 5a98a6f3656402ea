"""The ledger, budgets and imports read the time from an injected clock, so a test can stand at any
instant: exactly at a hold's expiry, or in the last microsecond of a budget's day."""

from datetime import UTC, date, datetime, timedelta

import pytest

from core.ledger.audit import fixed_clock, utc_iso
from core.ledger.booking import book, reverse
from core.ledger.budgets import expense, set_budget, spend, utilization
from core.ledger.fraud import FraudRules
from core.ledger.holds import hold, post_hold
from core.ledger.imports import import_objects
from core.ledger.validation import HoldExpired, Posting, TransactionRequest
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from core.simulator.ground_truth import truth
from core.simulator.market import Experiment, simulate_experiment_day

MIDNIGHT = datetime(2026, 11, 3, tzinfo=UTC)
LAST_OF_DAY = MIDNIGHT - timedelta(microseconds=1)  # 2026-11-02T23:59:59.999999Z
SALE_AT = datetime(2026, 11, 2, 12, tzinfo=UTC)


@pytest.fixture
def ledger(duckdb_url: str) -> Warehouse:
    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    return warehouse


def sale(key: str) -> TransactionRequest:
    return TransactionRequest(
        key,
        "revenue",
        "stripe charge",
        SALE_AT,
        [Posting("assets:cash:stripe:usd", "USD", 1_000), Posting("revenue:experiment:exp-1", "USD", -1_000)],
    )


def stamps(warehouse: Warehouse, table: str, key: str, *columns: str) -> dict[str, tuple[str, ...]]:
    rows = warehouse.read(table).to_dict("records")
    return {row[key]: tuple(utc_iso(row[column]) for column in columns) for row in rows}


def test_a_hold_expires_exactly_at_the_injected_instant(ledger: Warehouse):
    proposed_at = fixed_clock(MIDNIGHT - timedelta(hours=1))
    in_time = hold(ledger, sale("stripe:in-time"), reason="review", expires_at=MIDNIGHT, clock=proposed_at)
    too_late = hold(ledger, sale("stripe:too-late"), reason="review", expires_at=MIDNIGHT, clock=proposed_at)

    posted = post_hold(ledger, in_time.hold_id, decided_by="alice", clock=fixed_clock(LAST_OF_DAY))
    assert (posted.decision, posted.decided_at) == ("posted", LAST_OF_DAY)
    with pytest.raises(HoldExpired, match="expired at 2026-11-03T00:00:00.000000"):
        post_hold(ledger, too_late.hold_id, decided_by="alice", clock=fixed_clock(MIDNIGHT))

    assert stamps(ledger, "ledger.holds", "hold_id", "created_at") == {
        in_time.hold_id: ("2026-11-02T23:00:00.000000+00:00",),
        too_late.hold_id: ("2026-11-02T23:00:00.000000+00:00",),
    }
    decided = ledger.read("ledger.hold_decisions").set_index("hold_id")
    assert decided.decision.to_dict() == {in_time.hold_id: "posted", too_late.hold_id: "expired"}
    assert utc_iso(decided.decided_at[too_late.hold_id]) == "2026-11-03T00:00:00.000000+00:00"
    assert stamps(ledger, "ledger.transactions", "idempotency_key", "recorded_at") == {
        "stripe:in-time": ("2026-11-02T23:59:59.999999+00:00",)
    }
    assert verify(ledger).ok


def test_bookings_and_reversals_are_stamped_by_the_injected_clock(ledger: Warehouse):
    booked = book(ledger, sale("stripe:1"), clock=fixed_clock(LAST_OF_DAY))
    reverse(ledger, booked.transaction_id, "stripe:1:refund", "refunded", clock=fixed_clock(MIDNIGHT))
    # Without occurred_at a reversal happens at the clock's now: here the first instant of Nov 3.
    assert stamps(ledger, "ledger.transactions", "idempotency_key", "occurred_at", "recorded_at") == {
        "stripe:1": ("2026-11-02T12:00:00.000000+00:00", "2026-11-02T23:59:59.999999+00:00"),
        "stripe:1:refund": ("2026-11-03T00:00:00.000000+00:00", "2026-11-03T00:00:00.000000+00:00"),
    }


def test_a_spend_lands_in_the_window_of_the_injected_instant(ledger: Warehouse):
    set_budget(
        ledger,
        scope="category",
        scope_key="ads",
        period="day",
        currency="USD",
        limit_minor=5_000,
        changed_by="ops",
        at=LAST_OF_DAY,
    )
    request = expense(
        "ads:1",
        "expenses:ads:google",
        3_000,
        "USD",
        LAST_OF_DAY,
        paid_from="liabilities:card:amex",
        description="ad spend",
    )
    assert spend(ledger, request, clock=fixed_clock(LAST_OF_DAY)).status == "booked"
    assert stamps(ledger, "ledger.transactions", "idempotency_key", "recorded_at") == {
        "ads:1": ("2026-11-02T23:59:59.999999+00:00",)
    }
    today, tomorrow = utilization(ledger, LAST_OF_DAY).iloc[0], utilization(ledger, MIDNIGHT).iloc[0]
    assert (today.spent_minor, today.window_start) == (3_000, datetime(2026, 11, 2, tzinfo=UTC))
    assert (tomorrow.spent_minor, tomorrow.window_start) == (0, MIDNIGHT)
    assert utc_iso(ledger.read("ledger.budget_limits").changed_at.item()) == "2026-11-02T23:59:59.999999+00:00"


def test_an_import_at_a_given_now_stamps_what_it_books_with_it(ledger: Warehouse):
    opportunity = {"opportunity_id": "opp-1", "opportunity_type": "saas", "est_monthly_revenue_cents": 2_000_000}
    experiment = Experiment("exp-1", "opp-1", date(2026, 10, 1))
    objects = simulate_experiment_day(7, experiment, truth(7, opportunity), date(2026, 11, 2)).objects
    report = import_objects(ledger, objects, rules=FraudRules.disabled(), now=LAST_OF_DAY)
    assert report.booked == len(objects) > 0
    recorded = stamps(ledger, "ledger.transactions", "idempotency_key", "recorded_at")
    assert set(recorded.values()) == {("2026-11-02T23:59:59.999999+00:00",)}


def test_a_fixed_clock_refuses_a_naive_instant():
    with pytest.raises(ValueError, match="timezone-aware"):
        fixed_clock(datetime(2026, 11, 2, 12))
