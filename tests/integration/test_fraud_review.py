"""Fraud rules during imports and the review flow (list, release, reject, expiry) on both backends."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from core.ledger.audit import fixed_clock
from core.ledger.booking import get_transaction
from core.ledger.holds import HOLD_CREATED, HOLD_DECIDED, hold
from core.ledger.imports import import_bytes, import_objects
from core.ledger.review import ReviewError, list_holds, reject, release
from core.ledger.validation import HoldError, HoldExpired, Posting, TransactionRequest
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse

# The tests run at a fixed instant: imports get it as `now`, decisions and holds as their clock, so
# that no expiry, window or fraud history depends on when they run.
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
CLOCK = fixed_clock(NOW)


def charge(
    txn_id: str,
    amount: int,
    *,
    days_ago: float = 0,
    currency: str = "usd",
    experiment: str = "exp-1",
    customer: str | None = None,
    kind: str = "charge",
) -> dict:
    fee = (amount * 29 + 500) // 1000 + 30 if kind == "charge" else 0
    created = int((NOW - timedelta(days=days_ago)).timestamp())
    metadata = {"experiment_id": experiment, "customer_country": "US"}
    if customer:
        metadata["customer_id"] = customer
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created,
        "created": created,
        "currency": currency,
        "description": None,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": [],
        "net": amount - fee,
        "reporting_category": kind,
        "source": f"ch_{txn_id}",
        "status": "available",
        "type": kind,
        "metadata": metadata,
    }


def history(warehouse: Warehouse, n: int = 6, amount: int = 2_900, prefix: str = "h", **kwargs) -> None:
    report = import_objects(
        warehouse, [charge(f"txn_{prefix}{i}", amount, days_ago=10 + i, **kwargs) for i in range(n)], now=NOW
    )
    assert report.booked == n


def booked_keys(warehouse: Warehouse) -> set[str]:
    return set(warehouse.read("ledger.transactions")["idempotency_key"])


def test_an_outlier_is_held_listed_released_and_then_booked(warehouse: Warehouse):
    history(warehouse)
    report = import_objects(warehouse, [charge("txn_big", 500_000, days_ago=1), charge("txn_ok", 3_900)], now=NOW)
    assert (report.booked, report.held) == (1, 1)
    assert "stripe:txn_big" not in booked_keys(warehouse)
    [view] = list_holds(warehouse, now=NOW)
    assert (view.status, view.idempotency_key, view.amounts, view.experiment_id, view.kind, view.source) == (
        "pending",
        "stripe:txn_big",
        "5000.00 USD",
        "exp-1",
        "revenue",
        "stripe",
    )
    assert view.reason == (
        "amount_outlier: 5000.00 USD is 172.4x the median 29.00 USD of 6 previous stripe revenue "
        "amounts in USD (limit 10x)"
    )
    assert view.expires_at == NOW + timedelta(days=14)  # hold_days after the import
    assert report.messages("held") == [f"objects#0: held: held for review as hold {view.hold_id}: {view.reason}"]

    decision = release(
        warehouse, view.hold_id, "alice@example.com", "enterprise licence, confirmed by phone", clock=CLOCK
    )
    assert decision.decision == "posted" and decision.transaction_id
    stored = get_transaction(warehouse, decision.transaction_id)
    assert stored["idempotency_key"] == "stripe:txn_big"
    assert stored["postings"][-1] == ["revenue:experiment:exp-1", "USD", -500_000]
    assert list_holds(warehouse, now=NOW) == []
    [decided] = list_holds(warehouse, include_decided=True, now=NOW)
    assert (decided.status, decided.decided_by, decided.note, decided.transaction_id) == (
        "released",
        "alice@example.com",
        "enterprise licence, confirmed by phone",
        decision.transaction_id,
    )

    # The decision is audited in the same chain the ledger verifies.
    events = warehouse.query("SELECT event_type, payload FROM audit.events ORDER BY seq")
    decided_events = [
        json.loads(p) for t, p in zip(events.event_type, events.payload, strict=False) if t == HOLD_DECIDED
    ]
    assert [(e["hold_id"], e["decision"], e["decided_by"], e["note"], e["transaction_id"]) for e in decided_events] == [
        (view.hold_id, "posted", "alice@example.com", "enterprise licence, confirmed by phone", decision.transaction_id)
    ]
    assert HOLD_CREATED in set(events.event_type)
    assert verify(warehouse).ok

    # Re-importing the record after release is a duplicate of the booked transaction.
    again = import_objects(warehouse, [charge("txn_big", 500_000, days_ago=1)], now=NOW)
    assert (again.booked, again.duplicates, again.held) == (0, 1, 0)
    with pytest.raises(HoldError, match="already posted by alice@example.com"):
        reject(warehouse, view.hold_id, "bob", "too late", clock=CLOCK)


def test_a_rejected_hold_is_never_booked_not_even_by_reimporting(warehouse: Warehouse):
    history(warehouse)
    import_objects(warehouse, [charge("txn_big", 500_000)], now=NOW)
    [view] = list_holds(warehouse, now=NOW)
    decision = reject(warehouse, view.hold_id, "bob@example.com", "card testing pattern", clock=CLOCK)
    assert decision.decision == "voided" and decision.transaction_id is None
    again = import_objects(warehouse, [charge("txn_big", 500_000)], now=NOW)
    assert (again.booked, again.duplicates, again.held) == (0, 1, 0)
    assert again.rows[0].message == f"stripe:txn_big is already held as hold {view.hold_id} (voided)"
    changed = import_objects(warehouse, [charge("txn_big", 400_000)], now=NOW)
    assert changed.quarantined == 1 and "amount 500000 USD, now 400000 USD" in changed.rows[0].message
    assert "stripe:txn_big" not in booked_keys(warehouse)
    [decided] = list_holds(warehouse, include_decided=True, now=NOW)
    assert (decided.status, decided.decided_by, decided.note) == ("rejected", "bob@example.com", "card testing pattern")
    assert verify(warehouse).ok


def test_expired_holds_are_shown_as_expired_and_cannot_be_released(warehouse: Warehouse):
    history(warehouse)
    import_objects(warehouse, [charge("txn_big", 500_000, days_ago=9)], now=NOW)  # expires 14 days from NOW
    later = NOW + timedelta(days=15)
    [view] = list_holds(warehouse, now=later)
    assert view.status == "expired" and view.expires_at < later
    assert [v.status for v in list_holds(warehouse, now=NOW)] == ["pending"]
    with pytest.raises(HoldExpired, match="was not posted"):
        release(warehouse, view.hold_id, "alice", "looks fine", clock=fixed_clock(later))
    [decided] = list_holds(warehouse, include_decided=True, now=NOW)
    assert (decided.status, decided.transaction_id) == ("expired", None)
    assert list_holds(warehouse, now=NOW) == []
    assert "stripe:txn_big" not in booked_keys(warehouse)


def test_a_velocity_burst_from_one_customer_is_held(warehouse: Warehouse):
    base = NOW - timedelta(hours=1)
    rows = ["event_id,occurred_at,kind,amount,currency,experiment_id,counterparty"] + [
        f"shop-{i},{(base + timedelta(minutes=i)).isoformat()},revenue,9.00,USD,exp-shop,mallory@example.com"
        for i in range(5)
    ]
    report = import_bytes(warehouse, ("\n".join(rows) + "\n").encode(), name="burst.csv", now=NOW)
    assert [row.status for row in report.rows] == ["booked"] * 3 + ["held"] * 2
    assert {v.reason for v in list_holds(warehouse, now=NOW)} == {
        "velocity: 4 revenue events for customer mallory@example.com within 10 minutes (limit 3)",
        "velocity: 5 revenue events for customer mallory@example.com within 10 minutes (limit 3)",
    }


def test_currency_mismatch_and_refund_ratio_hold_new_revenue(warehouse: Warehouse):
    history(warehouse, 4)
    report = import_objects(warehouse, [charge("txn_eur", 2_900, currency="eur"), charge("txn_usd", 2_900)], now=NOW)
    assert [row.status for row in report.rows] == ["held", "booked"]
    assert (
        list_holds(warehouse, now=NOW)[0].reason
        == "currency_mismatch: exp-1 has received only USD in 4 previous revenue events, never EUR"
    )

    history(warehouse, 10, 1_000, prefix="r-h", experiment="exp-r")
    refunds = [charge(f"txn_r{i}", -1_000, days_ago=0.5, experiment="exp-r", kind="refund") for i in range(4)]
    report = import_objects(warehouse, [*refunds, charge("txn_after", 1_000, experiment="exp-r")], now=NOW)
    assert [row.status for row in report.rows] == ["booked"] * 4 + ["held"]
    held = [v for v in list_holds(warehouse, now=NOW) if v.idempotency_key == "stripe:txn_after"]
    assert held[0].reason.startswith("refund_ratio: refunds are 40% of charges for exp-r in USD")


def test_review_decisions_must_be_explicit(warehouse: Warehouse):
    history(warehouse)
    import_objects(warehouse, [charge("txn_big", 500_000)], now=NOW)
    [view] = list_holds(warehouse, now=NOW)
    with pytest.raises(ReviewError, match="needs a note"):
        release(warehouse, view.hold_id, "alice", "  ")
    with pytest.raises(ReviewError, match="say who decides"):
        reject(warehouse, view.hold_id, "", "no")
    with pytest.raises(ReviewError, match="does not exist"):
        release(warehouse, "no-such-hold", "alice", "ok")
    reservation = hold(
        warehouse,
        TransactionRequest(
            "budget:reserve-1",
            "spend",
            "ad reservation",
            NOW,
            [Posting("expenses:ads:google", "USD", 100), Posting("assets:cash:bank:usd", "USD", -100)],
        ),
        reason="reserve",
        expires_at=NOW + timedelta(days=1),
        kind="reservation",
        clock=CLOCK,
    )
    with pytest.raises(ReviewError, match="is a 'reservation' hold, not a fraud review"):
        reject(warehouse, reservation.hold_id, "alice", "not mine")
    assert [v.hold_id for v in list_holds(warehouse, now=NOW)] == [view.hold_id]
    assert warehouse.count("ledger.hold_decisions") == 0


def test_a_new_sources_first_revenue_above_the_ceiling_is_held(warehouse: Warehouse):
    data = (
        b"event_id,occurred_at,kind,amount,currency\n"
        b"first-1,2026-11-02T08:00:00Z,revenue,10000000000000.00,USD\n"
        b"first-2,2026-11-02T09:00:00Z,revenue,29.00,USD\n"
    )
    report = import_bytes(warehouse, data, name="new-source.csv", now=NOW)
    assert [row.status for row in report.rows] == ["held", "booked"], report.messages()
    [view] = list_holds(warehouse, now=NOW)
    assert (view.idempotency_key, view.amounts) == ("csv:first-1", "10000000000000.00 USD")
    assert view.reason == (
        "amount_outlier: 10000000000000.00 USD is above the new-source ceiling 10000.00 USD "
        "(csv has 0 previous revenue amounts in USD, fewer than 5)"
    )
    assert booked_keys(warehouse) == {"csv:first-2"}
