import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.ledger import booking
from core.ledger.balances import balance, balances
from core.ledger.booking import book, book_many, reverse
from core.ledger.fx import RateTable, bundled_rates, store_rates
from core.ledger.holds import expire_holds, hold, pending_holds, post_hold, void_hold
from core.ledger.validation import HoldError, HoldExpired, IdempotencyConflict, LedgerError, Posting, TransactionRequest
from core.ledger.verify import verify
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

AT = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LEDGER_CODE = Path(__file__).resolve().parents[2] / "core" / "ledger"


def sale(key: str, amount: int = 1_000, currency: str = "USD", **changes) -> TransactionRequest:
    fields = dict(
        idempotency_key=key,
        kind="revenue",
        description="stripe charge",
        occurred_at=AT,
        postings=[
            Posting(f"assets:cash:stripe:{currency.lower()}", currency, amount),
            Posting("revenue:experiment:exp-1", currency, -amount),
        ],
        experiment_id="exp-1",
        source="stripe",
        external_ref=key.split(":")[-1],
    )
    fields.update(changes)
    return TransactionRequest(**fields)


def test_book_is_idempotent_and_balances_follow(warehouse: Warehouse):
    first = book(warehouse, sale("stripe:txn_1"))
    again = book(warehouse, sale("stripe:txn_1"))
    assert first.status == "booked" and again.status == "duplicate"
    assert again.transaction_id == first.transaction_id
    assert warehouse.count("ledger.transactions") == 1 and warehouse.count("ledger.postings") == 2
    assert balance(warehouse, "assets:cash:stripe:usd", "USD") == 1_000
    frame = balances(warehouse).set_index("account_id")
    assert frame.loc["revenue:experiment:exp-1", "balance_minor"] == -1_000
    assert frame.loc["revenue:experiment:exp-1", "account_type"] == "revenue"
    assert list(balances(warehouse, prefix="assets").account_id) == ["assets:cash:stripe:usd"]
    assert balance(warehouse, "assets:cash:stripe:usd", "USD", as_of=AT) == 0
    stored = warehouse.read("ledger.postings", "ORDER BY line")
    assert list(stored.experiment_id) == ["exp-1", "exp-1"]
    assert verify(warehouse).ok


def test_same_key_with_other_content_names_the_differing_field(warehouse: Warehouse):
    book(warehouse, sale("stripe:txn_123"))
    with pytest.raises(
        IdempotencyConflict, match="idempotency key stripe:txn_123 was used for amount 1000 USD, now 1200 USD"
    ) as caught:
        book(warehouse, sale("stripe:txn_123", 1_200))
    assert caught.value.field == "amount"
    cases = {
        "description": dict(description="other"),
        "occurred_at": dict(occurred_at=AT + timedelta(seconds=1)),
        "currency": dict(
            postings=[
                Posting("assets:cash:stripe:usd", "EUR", 1_000),
                Posting("revenue:experiment:exp-1", "EUR", -1_000),
            ]
        ),
        "accounts": dict(
            postings=[Posting("assets:cash:bank:usd", "USD", 1_000), Posting("revenue:experiment:exp-1", "USD", -1_000)]
        ),
        "metadata.campaign": dict(metadata={"campaign": "b"}),
    }
    for field, change in cases.items():
        with pytest.raises(IdempotencyConflict, match=re.escape(field)) as caught:
            book(warehouse, sale("stripe:txn_123", **change))
        assert caught.value.field == field
    assert warehouse.count("ledger.transactions") == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(occurred_at=datetime(2026, 11, 2, 12)), "timezone-aware"),
        (
            dict(
                postings=[
                    Posting("assets:cash:stripe:usd", "USD", 10.0),
                    Posting("revenue:experiment:exp-1", "USD", -10.0),
                ]
            ),
            "integer minor units",
        ),
        (
            dict(postings=[Posting("assets:cash:stripe:usd", "USD", 0), Posting("revenue:experiment:exp-1", "USD", 0)]),
            "zero",
        ),
        (
            dict(
                postings=[
                    Posting("assets:cash:stripe:usd", "USD", 1_000),
                    Posting("revenue:experiment:exp-1", "USD", -999),
                ]
            ),
            "does not balance: USD sums to 1",
        ),
        (
            dict(
                postings=[
                    Posting("assets:cash:stripe:usd", "USD", 1_000),
                    Posting("revenue:experiment:exp-1", "EUR", -1_000),
                ]
            ),
            "does not balance",
        ),
        (
            dict(postings=[Posting("income:sales", "USD", -1_000), Posting("assets:cash:stripe:usd", "USD", 1_000)]),
            "unknown root 'income'",
        ),
        (dict(postings=[Posting("assets:cash", "XYZ", 1), Posting("equity:capital", "XYZ", -1)]), "unknown currency"),
        (dict(postings=[Posting("assets:cash:stripe:usd", "USD", 1_000)]), "at least a debit and a credit"),
        (
            dict(
                postings=[
                    Posting("assets:cash:stripe:usd", "USD", 1_000),
                    Posting("revenue:experiment:exp-2", "USD", -1_000),
                ]
            ),
            "belongs to experiment exp-2",
        ),
        (dict(idempotency_key=""), "idempotency key"),
        (dict(metadata={"when": datetime(2026, 1, 1)}), "metadata"),
    ],
)
def test_invalid_requests_are_refused_with_the_reason(warehouse: Warehouse, change, message):
    with pytest.raises(LedgerError, match=message):
        book(warehouse, sale("bad:1", **change))
    assert warehouse.count("ledger.transactions") == 0 and warehouse.count("audit.events") == 0


def test_multi_currency_transaction_balances_per_currency(warehouse: Warehouse):
    fx_trade = TransactionRequest(
        "bank:fx-1",
        "fx",
        "sell USD for EUR",
        AT,
        [
            Posting("assets:cash:bank:usd", "USD", -11_500),
            Posting("equity:fx-clearing", "USD", 11_500),
            Posting("assets:cash:bank:eur", "EUR", 10_000),
            Posting("equity:fx-clearing", "EUR", -10_000),
        ],
    )
    book(warehouse, fx_trade)
    assert balance(warehouse, "equity:fx-clearing", "EUR") == -10_000
    assert verify(warehouse).ok


def test_book_many_is_one_transaction_with_bulk_idempotency(warehouse: Warehouse):
    book(warehouse, sale("stripe:txn_0"))
    batch = [sale(f"stripe:txn_{n}", 100 + n) if n else sale("stripe:txn_0") for n in range(300)]
    batch.append(sale("stripe:txn_5", 105))  # repeated inside the batch with the same content
    results = book_many(warehouse, batch)
    assert [r.status for r in results].count("booked") == 299
    assert results[0].status == "duplicate" and results[-1].status == "duplicate"
    assert results[-1].transaction_id == results[5].transaction_id
    assert warehouse.count("ledger.postings") == 600
    assert warehouse.count("audit.events") == 300  # one record per booked transaction
    with pytest.raises(IdempotencyConflict, match="stripe:txn_7 was used for amount 107 USD, now 1 USD"):
        book_many(warehouse, [sale("stripe:new_1"), sale("stripe:txn_7", 1)])
    with pytest.raises(IdempotencyConflict, match="earlier in this batch"):
        book_many(warehouse, [sale("stripe:new_2"), sale("stripe:new_2", 2)])
    with pytest.raises(LedgerError, match="batch item 1: .*zero"):
        book_many(warehouse, [sale("stripe:new_3"), sale("stripe:new_4", 0)])
    assert warehouse.count("ledger.transactions") == 300  # failed batches left nothing behind
    assert verify(warehouse).ok


def test_reversal_mirrors_the_original_once(warehouse: Warehouse):
    original = book(warehouse, sale("stripe:txn_9", 2_500))
    first = reverse(warehouse, original.transaction_id, "refund:re_9", "customer refund")
    assert first.status == "booked"
    assert reverse(warehouse, original.transaction_id, "refund:re_9", "customer refund").status == "duplicate"
    with pytest.raises(LedgerError, match="already reversed by transaction"):
        reverse(warehouse, original.transaction_id, "refund:re_10", "again")
    with pytest.raises(LedgerError, match="itself a reversal"):
        reverse(warehouse, first.transaction_id, "refund:re_11", "undo the undo")
    with pytest.raises(LedgerError, match="no such transaction"):
        reverse(warehouse, "missing", "refund:re_12", "nothing")
    with pytest.raises(IdempotencyConflict, match="description"):
        reverse(warehouse, original.transaction_id, "refund:re_9", "another reason")
    assert balance(warehouse, "assets:cash:stripe:usd", "USD") == 0
    row = warehouse.read("ledger.transactions", "WHERE transaction_id = %s", [first.transaction_id])
    assert row.reverses_transaction_id.item() == original.transaction_id
    forged = sale("refund:forged", 2_500, reverses_transaction_id=original.transaction_id)
    with pytest.raises(LedgerError, match="already reversed|mirror"):
        book(warehouse, forged)
    assert verify(warehouse).ok


def test_revenue_with_a_customer_country_books_its_tax(warehouse: Warehouse):
    book(warehouse, sale("stripe:txn_de", 11_900, "EUR", customer_country="DE"))
    assert balance(warehouse, "liabilities:tax:de", "EUR") == -1_900
    assert balance(warehouse, "revenue:experiment:exp-1", "EUR") == -10_000
    assert book(warehouse, sale("stripe:txn_de", 11_900, "EUR", customer_country="DE")).status == "duplicate"
    with pytest.raises(IdempotencyConflict, match="metadata.customer_country 'DE', now 'FR'"):
        book(warehouse, sale("stripe:txn_de", 11_900, "EUR", customer_country="FR"))
    assert verify(warehouse).ok


def test_a_hold_is_posted_exactly_once(warehouse: Warehouse):
    held = hold(warehouse, sale("stripe:txn_h1"), reason="fraud review", expires_at=AT + timedelta(days=2))
    assert held.status == "held"
    assert (
        hold(warehouse, sale("stripe:txn_h1"), reason="fraud review", expires_at=AT + timedelta(days=2)).status
        == "duplicate"
    )
    with pytest.raises(IdempotencyConflict, match="amount"):
        hold(warehouse, sale("stripe:txn_h1", 5), reason="fraud review", expires_at=AT + timedelta(days=2))
    assert warehouse.count("ledger.transactions") == 0
    decision = post_hold(warehouse, held.hold_id, decided_by="alice", at=AT + timedelta(hours=1))
    assert decision.decision == "posted" and decision.transaction_id
    assert balance(warehouse, "assets:cash:stripe:usd", "USD") == 1_000
    with pytest.raises(HoldError, match="already posted by alice"):
        post_hold(warehouse, held.hold_id, decided_by="bob", at=AT + timedelta(hours=2))
    with pytest.raises(HoldError, match="already posted"):
        void_hold(warehouse, held.hold_id, decided_by="bob", at=AT + timedelta(hours=2))
    with pytest.raises(HoldError, match="already booked"):
        hold(warehouse, sale("stripe:txn_h1"), reason="again", expires_at=AT + timedelta(days=2))
    assert warehouse.count("ledger.transactions") == 1
    assert verify(warehouse).ok


def test_voided_and_expired_holds_book_nothing(warehouse: Warehouse):
    voided = hold(warehouse, sale("stripe:txn_v"), reason="fraud review", expires_at=AT + timedelta(days=1))
    late = hold(warehouse, sale("stripe:txn_l"), reason="fraud review", expires_at=AT + timedelta(hours=1))
    lapsed = hold(warehouse, sale("stripe:txn_x"), reason="reservation", expires_at=AT + timedelta(hours=1))
    assert void_hold(warehouse, voided.hold_id, decided_by="alice", at=AT).decision == "voided"
    with pytest.raises(HoldExpired, match="expired at 2026-11-02T13:00:00"):
        post_hold(warehouse, late.hold_id, decided_by="alice", at=AT + timedelta(hours=1))
    expired = expire_holds(warehouse, AT + timedelta(hours=3))
    assert [d.hold_id for d in expired] == [lapsed.hold_id]  # the late one's expiry was already recorded
    assert expire_holds(warehouse, AT + timedelta(days=5)) == []
    decisions = warehouse.read("ledger.hold_decisions").set_index("hold_id").decision.to_dict()
    assert decisions == {voided.hold_id: "voided", late.hold_id: "expired", lapsed.hold_id: "expired"}
    assert warehouse.count("ledger.transactions") == 0
    assert pending_holds(warehouse).empty
    assert verify(warehouse).ok


def test_a_held_key_is_booked_only_by_posting_its_hold(warehouse: Warehouse):
    pending = hold(warehouse, sale("stripe:txn_p"), reason="fraud review", expires_at=AT + timedelta(days=1))
    rejected = hold(warehouse, sale("stripe:txn_r"), reason="fraud review", expires_at=AT + timedelta(days=1))
    void_hold(warehouse, rejected.hold_id, decided_by="alice", at=AT)
    with pytest.raises(HoldError, match=f"stripe:txn_p is held for review as hold {pending.hold_id}.*--release"):
        book(warehouse, sale("stripe:txn_p"))
    with pytest.raises(HoldError, match=f"hold {rejected.hold_id}, voided by alice: a decided hold is final"):
        book(warehouse, sale("stripe:txn_r"))
    # In a batch the whole batch is refused, so nothing of it is booked.
    with pytest.raises(HoldError, match="stripe:txn_p"):
        book_many(warehouse, [sale("stripe:txn_ok"), sale("stripe:txn_p")])
    assert warehouse.count("ledger.transactions") == 0
    posted = post_hold(warehouse, pending.hold_id, decided_by="bob", at=AT + timedelta(hours=1))
    assert book(warehouse, sale("stripe:txn_p")).transaction_id == posted.transaction_id
    assert warehouse.count("ledger.transactions") == 1
    assert verify(warehouse).ok


def test_fx_rates_load_once_and_are_audited(warehouse: Warehouse):
    rates = bundled_rates()
    assert store_rates(warehouse, rates) == len(rates)
    assert store_rates(warehouse, rates) == 0
    assert warehouse.count("audit.events") == 1
    table = RateTable.from_warehouse(warehouse)
    assert table.convert(10_000, "EUR", "USD", AT) == RateTable.from_frame(rates).convert(10_000, "EUR", "USD", AT)
    assert verify(warehouse).ok


def test_same_key_written_concurrently_is_booked_once(warehouse: Warehouse):
    results, errors = [], []

    def write():
        try:
            results.append(book(warehouse, sale("stripe:race")))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.status for r in results) == ["booked"] + ["duplicate"] * 15
    assert len({r.transaction_id for r in results}) == 1
    assert warehouse.count("ledger.transactions") == 1 and verify(warehouse).ok


def test_a_lost_unique_race_is_answered_by_re_reading(warehouse: Warehouse, monkeypatch):
    """Simulate a writer that checked before the winner committed: the UNIQUE constraint stops it,
    and the retry re-reads and compares."""
    winner = book(warehouse, sale("stripe:late"))
    real, calls = booking.booked_keys, []

    def blind_first_time(conn, backend, keys):
        calls.append(keys)
        return {} if len(calls) == 1 else real(conn, backend, keys)

    monkeypatch.setattr(booking, "booked_keys", blind_first_time)
    again = book(warehouse, sale("stripe:late"))
    assert again.status == "duplicate" and again.transaction_id == winner.transaction_id and len(calls) == 2
    calls.clear()
    with pytest.raises(IdempotencyConflict, match="amount"):
        book(warehouse, sale("stripe:late", 7))
    assert warehouse.count("ledger.transactions") == 1 and verify(warehouse).ok


def test_no_update_or_delete_of_booked_rows_in_the_code():
    statement = re.compile(r"\bUPDATE\s+\w+(\.\w+)?\s+SET\b|\bDELETE\s+FROM\b|\bTRUNCATE\b", re.IGNORECASE)
    sources = sorted(LEDGER_CODE.rglob("*.py"))
    assert len(sources) > 10
    for path in sources:
        assert not statement.search(path.read_text()), path


amounts = st.integers(min_value=1, max_value=10**9)
legs = st.lists(
    st.tuples(
        st.sampled_from(["USD", "EUR", "JPY", "KWD"]),
        amounts,
        st.sampled_from(["assets:cash:a", "expenses:ads:x", "revenue:y", "liabilities:z"]),
        st.sampled_from(["assets:cash:b", "equity:capital", "expenses:fees:stripe"]),
    ),
    min_size=1,
    max_size=4,
)


# A third of the profile's budget: every example books into the real database.
@settings(
    max_examples=settings().max_examples // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(legs, min_size=1, max_size=5))
def test_any_balanced_batch_keeps_every_currency_at_zero(warehouse: Warehouse, batch):
    requests = [
        TransactionRequest(
            f"prop:{uuid.uuid4()}",
            "test",
            "property",
            AT,
            [
                p
                for currency, amount, debit, credit in request
                for p in (Posting(debit, currency, amount), Posting(credit, currency, -amount))
            ],
        )
        for request in batch
    ]
    book_many(warehouse, requests)
    totals = balances(warehouse).groupby("currency").balance_minor.sum()
    assert (totals == 0).all()
    report = verify(warehouse)
    assert report.ok, report.summary()


def test_ensure_schema_is_repeatable(warehouse: Warehouse):
    ensure_schema(warehouse)
    assert warehouse.table_exists("ledger.budget_limits")


def test_a_booking_that_would_take_the_ledger_past_its_gross_bound_is_refused(warehouse: Warehouse):
    # 9,224 postings of the per-posting maximum (10**15) to one account would overflow BIGINT in every
    # SUM(...)::BIGINT (balances, trial balance, cash flow); the ledger's gross bound stops far before.
    from core.ledger.money import LEDGER_MAX_GROSS_MINOR, MAX_ABS_MINOR

    up_to_the_bound = LEDGER_MAX_GROSS_MINOR // (2 * MAX_ABS_MINOR)  # each sale posts 2 x 10**15
    book_many(warehouse, [sale(f"stripe:big_{n}", MAX_ABS_MINOR) for n in range(up_to_the_bound)])
    assert balance(warehouse, "assets:cash:stripe:usd", "USD") == LEDGER_MAX_GROSS_MINOR // 2

    with pytest.raises(LedgerError, match=r"'stripe:one_more'.*past 1000000000000000000.*overflow 64-bit"):
        book(warehouse, sale("stripe:one_more", 1, currency="EUR"))  # the bound spans currencies
    assert warehouse.count("ledger.transactions") == up_to_the_bound
    assert balances(warehouse)["balance_minor"].abs().max() == LEDGER_MAX_GROSS_MINOR // 2
