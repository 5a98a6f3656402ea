"""Held rows of an import: written in one transaction like booked rows, expiring hold_days after the
import, and a re-proposal of the same hold (re-import, concurrent import) is a duplicate whatever its
expiry and reason."""

import threading
from datetime import UTC, datetime, timedelta

import pytest

import core.ledger.holds as holds_module
from core.ledger.booking import book
from core.ledger.holds import HOLD_CREATED, HoldProposal, hold_many
from core.ledger.imports import import_bytes
from core.ledger.review import list_holds, release
from core.ledger.validation import HoldError, IdempotencyConflict, Posting, TransactionRequest, prepare
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
HEADER = "event_id,occurred_at,kind,amount,currency,experiment_id,counterparty"


def burst(start: datetime, n: int, prefix: str = "burst") -> list[str]:
    """n revenue rows from one customer a second apart: velocity holds all but the first 3."""
    return [
        f"{prefix}-{i},{(start + timedelta(seconds=i)).isoformat()},revenue,9.00,USD,exp-shop,mallory@example.com"
        for i in range(n)
    ]


def csv(rows: list[str]) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def test_held_rows_are_written_in_one_transaction(warehouse: Warehouse, monkeypatch):
    opened = []
    real = holds_module.write_transaction

    def counted(warehouse):
        opened.append(1)
        return real(warehouse)

    monkeypatch.setattr(holds_module, "write_transaction", counted)
    report = import_bytes(warehouse, csv(burst(NOW - timedelta(hours=1), 60)), name="burst.csv", now=NOW)
    assert (report.booked, report.held) == (3, 57)
    assert len(opened) == 1
    assert warehouse.count("ledger.holds") == 57
    assert warehouse.scalar("SELECT count(*) FROM audit.events WHERE event_type = %s", [HOLD_CREATED]) == 57


def test_an_old_flagged_payment_is_held_pending_and_releasable(warehouse: Warehouse):
    start = NOW - timedelta(days=30)  # a backfill: the payments occurred longer ago than hold_days
    first = import_bytes(warehouse, csv(burst(start, 4)), name="burst.csv", now=NOW)
    assert (first.booked, first.held, first.quarantined) == (3, 1, 0)
    assert warehouse.scalar("SELECT expires_at FROM ledger.holds") == NOW + timedelta(days=14)
    [view] = list_holds(warehouse, now=NOW + timedelta(hours=1))
    assert view.status == "pending"
    decision = release(warehouse, view.hold_id, "alice@example.com", "checked", at=NOW + timedelta(hours=1))
    assert decision.decision == "posted" and decision.transaction_id is not None
    assert warehouse.count("ledger.transactions") == 4


def test_a_re_import_later_keeps_the_first_hold(warehouse: Warehouse):
    data = csv(burst(NOW - timedelta(hours=1), 4))
    first = import_bytes(warehouse, data, name="burst.csv", now=NOW)
    again = import_bytes(warehouse, data, name="burst.csv", now=NOW + timedelta(minutes=5))
    assert (first.held, again.duplicates, again.quarantined) == (1, 4, 0)
    assert warehouse.scalar("SELECT expires_at FROM ledger.holds") == NOW + timedelta(days=14)


def test_a_hold_proposed_again_with_another_expiry_and_reason_is_a_duplicate(warehouse: Warehouse):
    request = TransactionRequest(
        "csv:again",
        "revenue",
        "sale",
        NOW,
        [Posting("assets:cash:bank:usd", "USD", 100), Posting("revenue:unattributed", "USD", -100)],
    )
    [first] = hold_many(warehouse, [HoldProposal(prepare(request), "velocity", NOW + timedelta(days=14))])
    later = NOW + timedelta(minutes=3)
    proposal = HoldProposal(prepare(request), "velocity; new card", later + timedelta(days=14))
    [again] = hold_many(warehouse, [proposal], clock=lambda: later)
    assert (first.status, again.status, again.hold_id) == ("held", "duplicate", first.hold_id)
    stored = warehouse.query("SELECT reason, expires_at FROM ledger.holds").to_dict("records")
    assert [(r["reason"], r["expires_at"]) for r in stored] == [("velocity", NOW + timedelta(days=14))]
    other_kind = HoldProposal(prepare(request), "velocity", NOW + timedelta(days=14), "other_review")
    [conflict] = hold_many(warehouse, [other_kind])
    assert isinstance(conflict, IdempotencyConflict) and "kind" in str(conflict)


def test_one_refused_hold_does_not_refuse_the_others(warehouse: Warehouse):
    def sale(key: str) -> TransactionRequest:
        return TransactionRequest(
            key,
            "revenue",
            "sale",
            NOW,
            [Posting("assets:cash:bank:usd", "USD", 100), Posting("revenue:unattributed", "USD", -100)],
        )

    book(warehouse, sale("csv:booked"))
    keys = ("csv:a", "csv:booked", "csv:b")
    outcomes = hold_many(warehouse, [HoldProposal(prepare(sale(k)), "review", NOW + timedelta(days=1)) for k in keys])
    assert [getattr(o, "status", type(o).__name__) for o in outcomes] == ["held", "HoldError", "held"]
    assert isinstance(outcomes[1], HoldError) and "already booked" in str(outcomes[1])


@pytest.mark.postgres
def test_concurrent_imports_of_one_file_agree_on_holds_and_quarantine(postgres_url: str):
    warehouse = Warehouse(postgres_url)
    ensure_schema(warehouse)
    start = datetime.now(UTC) - timedelta(hours=1)  # the imports run on the wall clock, as in production
    data = csv([*burst(start, 6), "bad-1,2026-11-02T12:00:00Z,sale,9.00,USD,exp-shop,bob@example.com"])
    ready = threading.Barrier(3)
    reports, errors = [], []

    def run() -> None:
        ready.wait()
        try:
            reports.append(import_bytes(warehouse, data, name="burst.csv"))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for report in reports:  # only the bad row is quarantined: no false conflict with another's hold
        assert [row.origin for row in report.rows if row.status == "quarantined"] == ["burst.csv:8"]
    assert warehouse.count("quarantine.records") == 1
    assert (warehouse.count("ledger.holds"), warehouse.count("ledger.transactions")) == (3, 3)
