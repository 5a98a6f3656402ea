"""The audit chain and verify(). Tests tamper with raw SQL on purpose; the product code never does."""

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from core.ledger import booking
from core.ledger.audit import GENESIS_HASH, canonical_json, chain_head, parse_head, record_hash, utc_iso
from core.ledger.booking import book, book_many, reverse
from core.ledger.budgets import set_budget
from core.ledger.holds import hold, void_hold
from core.ledger.validation import Posting, TransactionRequest
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse

AT = datetime(2026, 11, 2, 12, tzinfo=UTC)


def sale(key: str, amount: int = 1_000) -> TransactionRequest:
    return TransactionRequest(
        key,
        "revenue",
        "stripe charge",
        AT,
        [Posting("assets:cash:stripe:usd", "USD", amount), Posting("revenue:experiment:exp-1", "USD", -amount)],
        experiment_id="exp-1",
        source="stripe",
    )


@pytest.fixture
def booked(warehouse: Warehouse) -> list[str]:
    """Five audited writes of four kinds: bookings, a reversal, a hold and its decision, a budget."""
    ids = [book(warehouse, sale(f"stripe:txn_{n}", 1_000 + n)).transaction_id for n in range(3)]
    reverse(warehouse, ids[0], "refund:1", "refund", occurred_at=AT)
    held = hold(warehouse, sale("stripe:held"), reason="review", expires_at=AT + timedelta(days=1))
    void_hold(warehouse, held.hold_id, decided_by="alice", at=AT)
    set_budget(warehouse, scope="global", period="day", currency="USD", limit_minor=100, changed_by="alice")
    report = verify(warehouse)
    assert report.ok, report.summary()
    assert report.events == 7 and report.transactions == 4 and report.postings == 8
    return ids


def test_records_chain_by_sha256_over_prev_hash_and_canonical_json(warehouse: Warehouse, booked):
    events = warehouse.read("audit.events", "ORDER BY seq")
    assert list(events.seq) == list(range(1, 8))
    assert list(events.event_type[:5]) == ["ledger.transaction_booked"] * 4 + ["ledger.hold_created"]
    first = events.iloc[0]
    envelope = {
        "seq": 1,
        "event_id": first.event_id,
        "event_type": first.event_type,
        "payload": json.loads(first.payload),
        "recorded_at": first.recorded_at.tz_convert(UTC).isoformat(timespec="microseconds"),
    }
    text = json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert first.prev_hash == GENESIS_HASH
    assert first.hash == hashlib.sha256((GENESIS_HASH + text).encode("utf-8")).hexdigest()
    assert list(events.prev_hash[1:]) == list(events.hash[:-1])
    assert chain_head(warehouse) == (7, events.hash.iloc[-1])
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_an_edited_record_is_reported(warehouse: Warehouse, booked):
    warehouse.execute(
        "UPDATE audit.events SET payload = replace(payload, 'stripe:txn_1', 'stripe:txn_X') WHERE seq = 2"
    )
    first = verify(warehouse).first
    assert first.record == "audit.events seq 2" and "edited" in first.message


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(warehouse: Warehouse, booked):
    row = warehouse.read("audit.events", "WHERE seq = 3").iloc[0]
    forged = json.loads(row.payload) | {"idempotency_key": "stripe:forged"}
    digest = record_hash(row.prev_hash, 3, row.event_id, row.event_type, forged, utc_iso(row.recorded_at))
    warehouse.execute("UPDATE audit.events SET payload = %s, hash = %s WHERE seq = 3", [canonical_json(forged), digest])
    first = verify(warehouse).first
    assert first.record == "audit.events seq 4" and "prev_hash" in first.message


def test_a_deleted_record_is_reported(warehouse: Warehouse, booked):
    warehouse.execute("DELETE FROM audit.events WHERE seq = 4")
    first = verify(warehouse).first
    assert first.record == "audit.events seq 4" and "missing" in first.message


def test_a_reordered_record_is_reported(warehouse: Warehouse, booked):
    for statement in (
        "UPDATE audit.events SET seq = 100 WHERE seq = 2",
        "UPDATE audit.events SET seq = 2 WHERE seq = 3",
        "UPDATE audit.events SET seq = 3 WHERE seq = 100",
    ):
        warehouse.execute(statement)
    first = verify(warehouse).first
    assert first.record == "audit.events seq 2" and "reordered" in first.message


def test_deleting_the_newest_record_is_caught_by_the_ledger_cross_check(warehouse: Warehouse):
    tid = book(warehouse, sale("stripe:only")).transaction_id
    warehouse.execute("DELETE FROM audit.events WHERE seq = 1")
    first = verify(warehouse).first
    assert first.record == f"ledger.transactions {tid} (key stripe:only)"
    assert "no audit event records its booking" in first.message


def test_cutting_off_the_newest_writes_is_caught_against_a_published_head(warehouse: Warehouse, booked):
    published = chain_head(warehouse)
    assert published[0] == 7 and verify(warehouse, [published]).ok
    # The newest write (a budget change) removed together with its audit record: the chain and the
    # ledger are self-consistent again, so only the head published earlier can tell.
    warehouse.execute("DELETE FROM audit.events WHERE seq = 7")
    warehouse.execute("DELETE FROM ledger.budget_limits")
    warehouse.execute("DELETE FROM ledger.budgets")
    assert verify(warehouse).ok
    problem = verify(warehouse, [published]).first
    assert problem.record == "audit.events seq 7"
    assert "chain ends at seq 6: the newest records were removed" in problem.message
    # Writing on afterwards reuses seq 7 with another hash: still caught.
    book(warehouse, sale("stripe:after"))
    problem = verify(warehouse, [published]).first
    assert problem.record == "audit.events seq 7" and "cut and rewritten after it was published" in problem.message


def test_a_published_head_must_be_well_formed():
    assert parse_head(f"12:{'a' * 64}") == (12, "a" * 64)
    for bad in ("12", "x:" + "a" * 64, "12:" + "A" * 64, "12:abc"):
        with pytest.raises(ValueError, match="should be SEQ:HASH"):
            parse_head(bad)


def test_a_tampered_posting_is_reported(warehouse: Warehouse, booked):
    warehouse.execute(
        "UPDATE ledger.postings SET amount_minor = 5000 WHERE transaction_id = %s AND line = 1", [booked[1]]
    )
    report = verify(warehouse)
    assert report.first.record == f"ledger.transactions {booked[1]} (key stripe:txn_1)"
    assert "USD postings sum to 3999, not 0" in report.first.message
    assert "content_hash" in report.first.message
    assert report.summary().startswith("ledger BROKEN")


def test_a_balanced_forgery_still_breaks_the_content_hash(warehouse: Warehouse, booked):
    for line, amount in ((1, 9_000), (2, -9_000)):
        warehouse.execute(
            "UPDATE ledger.postings SET amount_minor = %s WHERE transaction_id = %s AND line = %s",
            [amount, booked[2], line],
        )
    first = verify(warehouse).first
    assert booked[2] in first.record and "no longer match its content_hash" in first.message


def test_a_zero_posting_is_reported(warehouse: Warehouse, booked):
    warehouse.execute("UPDATE ledger.postings SET amount_minor = 0 WHERE transaction_id = %s AND line = 1", [booked[1]])
    first = verify(warehouse).first
    assert booked[1] in first.record and "posting line 1: amount is zero" in first.message


def test_an_orphan_posting_and_a_deleted_transaction_are_reported(warehouse: Warehouse, booked):
    warehouse.execute(
        "INSERT INTO ledger.postings VALUES ('p', 'ghost', 1, 'assets:cash:x', 'USD', 5, NULL, %s, %s)", [AT, AT]
    )
    assert "reference transaction ghost, which does not exist" in verify(warehouse).first.message
    warehouse.execute("DELETE FROM ledger.postings WHERE transaction_id = 'ghost'")
    warehouse.execute("DELETE FROM ledger.transactions WHERE transaction_id = %s", [booked[2]])
    problems = {p.check: p for p in verify(warehouse).problems}
    assert f"transaction {booked[2]}, which is not in ledger.transactions" in problems["audit.ledger"].message
    assert booked[2] in problems["ledger.postings"].message  # its postings are orphans now


def test_a_reversal_that_no_longer_mirrors_is_reported(warehouse: Warehouse, booked):
    reversal = warehouse.scalar(
        "SELECT transaction_id FROM ledger.transactions WHERE reverses_transaction_id = %s", [booked[0]]
    )
    warehouse.execute(
        "UPDATE ledger.postings SET account_id = 'assets:cash:bank:usd' WHERE transaction_id = %s AND line = 1",
        [reversal],
    )
    first = verify(warehouse).first
    assert reversal in first.record and "do not mirror" in first.message


def test_the_audit_record_commits_with_the_write_or_not_at_all(warehouse: Warehouse, monkeypatch):
    def failing(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(booking, "append_events", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        book(warehouse, sale("stripe:lost"))
    assert warehouse.count("ledger.transactions") == 0 and warehouse.count("ledger.postings") == 0
    assert warehouse.count("ledger.accounts") == 0 and warehouse.count("audit.events") == 0


def test_concurrent_writers_get_a_gap_free_chain(warehouse: Warehouse):
    start = threading.Barrier(24)
    errors = []

    def writer(number: int) -> None:
        start.wait()
        try:
            for batch in range(3):
                book_many(warehouse, [sale(f"w{number}:{batch}:{n}") for n in range(2)])
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = list(warehouse.read("audit.events", "ORDER BY seq").seq)
    assert seqs == list(range(1, 24 * 3 * 2 + 1))
    report = verify(warehouse)
    assert report.ok, report.summary()


def test_a_tampered_hold_is_reported_and_cannot_be_posted(warehouse: Warehouse):
    from core.ledger.holds import post_hold
    from core.ledger.validation import HoldError

    held = hold(warehouse, sale("stripe:held", 1_000), reason="review", expires_at=AT + timedelta(days=1))
    warehouse.execute(
        "UPDATE ledger.holds SET proposed = replace(proposed, '-1000', '-9000') WHERE hold_id = %s", [held.hold_id]
    )
    warehouse.execute(
        "UPDATE ledger.holds SET proposed = replace(proposed, '1000]', '9000]') WHERE hold_id = %s", [held.hold_id]
    )
    first = verify(warehouse).first
    assert first.record == f"ledger.holds {held.hold_id}"
    with pytest.raises(HoldError, match="was edited"):
        post_hold(warehouse, held.hold_id, decided_by="alice", at=AT)
    assert warehouse.count("ledger.transactions") == 0
