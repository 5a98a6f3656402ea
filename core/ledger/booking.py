"""Booking: idempotent, append-only writes of prepared transactions, reversals, and reading them back.

- The same idempotency key with the same content returns the original transaction; with other
  content it is an IdempotencyConflict naming the field that differs. A UNIQUE race lost to a
  concurrent writer is answered the same way, by re-reading (retry_on_unique_race).
- Nothing booked is updated or deleted: a correction is a reversing transaction
  (reverses_transaction_id is UNIQUE, so an original is reversed at most once).
- A key that has a hold (core.ledger.holds) is booked only by posting that hold.
- Every booking appends its audit record (core.ledger.audit) in the same database transaction.
See docs/ledger.md for the chart of accounts and the conventions.
"""

import contextlib
import gc
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from core.ledger.audit import Clock, append_events, canonical_json, utc_iso, utc_now, write_transaction
from core.ledger.money import LEDGER_MAX_GROSS_MINOR
from core.ledger.tax import TaxCalculator
from core.ledger.validation import (
    BookingResult,
    HoldError,
    IdempotencyConflict,
    LedgerError,
    Posting,
    Prepared,
    TransactionRequest,
    account_experiment,
    account_type,
    prepare,
)
from core.platform.warehouse import Warehouse, append_rows, finish_pending, insert_new_rows, run_sql

TRANSACTION_BOOKED = "ledger.transaction_booked"


# -- idempotency -----------------------------------------------------------------------------------


def _gross(content: Mapping[str, Any]) -> dict[str, int]:
    """The largest posting per currency: what a person calls "the amount" of a transaction."""
    gross: dict[str, int] = {}
    for _account, currency, amount in content["postings"]:
        gross[currency] = max(gross.get(currency, 0), abs(int(amount)))
    return gross


def _amounts(gross: Mapping[str, int]) -> str:
    return ", ".join(f"{amount} {currency}" for currency, amount in sorted(gross.items()))


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[str, str]:
    """The first field in which two contents differ, and how, for the conflict message."""
    for name in (
        "kind",
        "description",
        "occurred_at",
        "experiment_id",
        "source",
        "external_ref",
        "reverses_transaction_id",
    ):
        if old[name] != new[name]:
            return name, f"{name} {old[name]!r}, now {new[name]!r}"
    for name in sorted(set(old["metadata"]) | set(new["metadata"])):
        if old["metadata"].get(name) != new["metadata"].get(name):
            return f"metadata.{name}", (
                f"metadata.{name} {old['metadata'].get(name)!r}, now {new['metadata'].get(name)!r}"
            )
    old_gross, new_gross = _gross(old), _gross(new)
    if set(old_gross) != set(new_gross):
        return "currency", f"currency {', '.join(sorted(old_gross))}, now {', '.join(sorted(new_gross))}"
    if old_gross != new_gross:
        return "amount", f"amount {_amounts(old_gross)}, now {_amounts(new_gross)} (minor units)"
    old_accounts = [p[0] for p in old["postings"]]
    new_accounts = [p[0] for p in new["postings"]]
    if old_accounts != new_accounts:
        return "accounts", f"accounts {old_accounts}, now {new_accounts}"
    if old["postings"] != new["postings"]:
        return "postings", f"postings {old['postings']}, now {new['postings']}"
    return "content", "different content"


def idempotency_conflict(
    key: str, old: Mapping[str, Any], new: Mapping[str, Any], what: str = ""
) -> IdempotencyConflict:
    """The error for `key` reused with other content (old as stored, new as sent), naming what differs."""
    name, detail = _difference(old, new)
    return IdempotencyConflict(
        key,
        name,
        f"idempotency key {key} was used {what}for {detail}; a retry must "
        f"send the same content, a different transaction needs a new key",
    )


def _is_unique_violation(error: BaseException | None) -> bool:
    # DuckDB's error can surface as the __context__ of a later "transaction is aborted" error
    # (raised while cleaning up after the failed INSERT), so follow the chain.
    while error is not None:
        if getattr(error, "sqlstate", None) == "23505":  # psycopg UniqueViolation
            return True
        if type(error).__name__ == "ConstraintException" and "Duplicate key" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def retry_on_unique_race(action: Callable[[], Any], attempts: int = 3) -> Any:
    """Run a write; if a concurrent writer won a UNIQUE race, run it again: the re-read then sees
    the winner's row and answers duplicate (same content) or conflict (different content)."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:
            if attempt == attempts or not _is_unique_violation(error):
                raise
    raise AssertionError("unreachable")


# -- reading back ----------------------------------------------------------------------------------


def _select_in(conn: Any, backend: str, sql: str, column: str, values: Sequence[str]) -> list[tuple[Any, ...]]:
    """Run `sql` (which contains `{match}`) with `column` restricted to `values`, in bulk."""
    if not values:
        return []
    if backend == "postgres":
        return run_sql(conn, sql.format(match=f"{column} = ANY(%s)"), [list(values)]).fetchall()
    finish_pending(conn)
    conn.register("_vl_values", pd.DataFrame({"v": list(values)}))
    try:
        return run_sql(conn, sql.format(match=f"{column} IN (SELECT v FROM _vl_values)"), None).fetchall()
    finally:
        conn.unregister("_vl_values")


# The columns content_from_row reads, in the order TRANSACTION_COLUMNS.split(",") names them.
TRANSACTION_COLUMNS = (
    "transaction_id, idempotency_key, content_hash, kind, description, experiment_id, source, "
    "external_ref, occurred_at, recorded_at, reverses_transaction_id, metadata"
)


def content_from_row(row: Mapping[str, Any], postings: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """A stored transaction row and its postings as the content its content_hash covers."""
    return {
        "idempotency_key": row["idempotency_key"],
        "kind": row["kind"],
        "description": row["description"],
        "occurred_at": utc_iso(row["occurred_at"]),
        "experiment_id": row["experiment_id"],
        "source": row["source"],
        "external_ref": row["external_ref"],
        "reverses_transaction_id": row["reverses_transaction_id"],
        "metadata": json.loads(row["metadata"]),
        "postings": [[account, currency, int(amount)] for account, currency, amount in postings],
    }


def _load_contents(conn: Any, backend: str, transaction_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    names = [c.strip() for c in TRANSACTION_COLUMNS.split(",")]
    rows = [
        dict(zip(names, row, strict=False))
        for row in _select_in(
            conn,
            backend,
            f"SELECT {TRANSACTION_COLUMNS} FROM ledger.transactions WHERE {{match}}",
            "transaction_id",
            transaction_ids,
        )
    ]
    lines: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for tid, account, currency, amount in _select_in(
        conn,
        backend,
        "SELECT transaction_id, account_id, currency, amount_minor FROM ledger.postings "
        "WHERE {match} ORDER BY transaction_id, line",
        "transaction_id",
        transaction_ids,
    ):
        lines[tid].append((account, currency, amount))
    return {row["transaction_id"]: content_from_row(row, lines[row["transaction_id"]]) for row in rows}


def get_transaction(warehouse: Warehouse, transaction_id: str) -> dict[str, Any] | None:
    """A booked transaction as its content (fields and postings), or None."""
    with warehouse.connect() as conn:
        return _load_contents(conn, warehouse.backend, [transaction_id]).get(transaction_id)


def booked_keys(conn: Any, backend: str, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Which of `keys` are booked already: key -> (transaction_id, content_hash)."""
    rows = _select_in(
        conn,
        backend,
        "SELECT idempotency_key, transaction_id, content_hash FROM ledger.transactions WHERE {match}",
        "idempotency_key",
        keys,
    )
    return {key: (tid, digest) for key, tid, digest in rows}


# -- booking ---------------------------------------------------------------------------------------

BeforeInsert = Callable[[Any, str, list[Prepared]], None]


def _check_reversals(conn: Any, backend: str, new: list[Prepared]) -> None:
    reversals = [p for p in new if p.request.reverses_transaction_id]
    if not reversals:
        return
    targets = [p.request.reverses_transaction_id or "" for p in reversals]
    if len(set(targets)) < len(targets):
        raise LedgerError(f"this batch reverses a transaction twice ({targets}): an original is reversed once")
    originals = _load_contents(conn, backend, targets)
    done = {
        orig: (tid, key)
        for orig, tid, key in _select_in(
            conn,
            backend,
            "SELECT reverses_transaction_id, transaction_id, idempotency_key FROM ledger.transactions WHERE {match}",
            "reverses_transaction_id",
            targets,
        )
    }
    for prepared, target in zip(reversals, targets, strict=False):
        original = originals.get(target)
        if original is None:
            raise LedgerError(f"cannot reverse {target}: no such transaction in ledger.transactions")
        if original["reverses_transaction_id"]:
            raise LedgerError(f"cannot reverse {target}: it is itself a reversal; book a new transaction instead")
        if target in done:
            raise LedgerError(
                f"cannot reverse {target}: it was already reversed by transaction {done[target][0]} "
                f"(key {done[target][1]}); an original is reversed at most once"
            )
        if sorted(prepared.content["postings"]) != sorted([a, c, -m] for a, c, m in original["postings"]):
            raise LedgerError(
                f"reversal {prepared.key!r} of {target}: its postings must mirror the original's "
                f"(same accounts and currencies, negated amounts); use reverse()"
            )


# The columns a booking writes, in order (benchmarks/ledger_write.py's bulk baseline writes the same).
TRANSACTION_INSERT_COLUMNS = (
    "transaction_id",
    "idempotency_key",
    "content_hash",
    "kind",
    "description",
    "experiment_id",
    "source",
    "external_ref",
    "occurred_at",
    "recorded_at",
    "reverses_transaction_id",
    "metadata",
)
POSTING_INSERT_COLUMNS = (
    "posting_id",
    "transaction_id",
    "line",
    "account_id",
    "currency",
    "amount_minor",
    "experiment_id",
    "occurred_at",
    "recorded_at",
)


def _open_accounts(conn: Any, backend: str, accounts: Mapping[str, str], opened_at: datetime) -> None:
    """Open the accounts not in ledger.accounts yet. Only the missing ones are sent, and
    ON CONFLICT DO NOTHING (insert_new_rows) stays the guard against a concurrent opener."""
    known = {
        row[0]
        for row in _select_in(
            conn, backend, "SELECT account_id FROM ledger.accounts WHERE {match}", "account_id", list(accounts)
        )
    }
    missing = [account for account in accounts if account not in known]
    if missing:
        insert_new_rows(
            conn,
            backend,
            "ledger.accounts",
            pd.DataFrame(
                {
                    "account_id": missing,
                    "account_type": [accounts[a] for a in missing],
                    "opened_at": pd.Timestamp(opened_at).tz_convert(UTC),
                }
            ),
            ["account_id"],
        )


def _insert(conn: Any, backend: str, new: list[Prepared], recorded_at: datetime) -> None:
    if not new:
        return
    recorded_at = recorded_at.astimezone(UTC)
    transactions, postings, accounts = [], [], {}
    for p in new:
        r, tid = p.request, p.transaction_id
        occurred = r.occurred_at.astimezone(UTC)
        experiment = r.experiment_id
        transactions.append(
            (
                tid,
                r.idempotency_key,
                p.content_hash,
                r.kind,
                r.description,
                experiment,
                r.source,
                r.external_ref,
                occurred,
                recorded_at,
                r.reverses_transaction_id,
                canonical_json(p.content["metadata"]) if r.metadata else "{}",
            )
        )
        for line, posting in enumerate(r.postings, start=1):
            account = posting.account
            if account not in accounts:
                accounts[account] = account_type(account)
            postings.append(
                (
                    f"{tid}/{line}",
                    tid,
                    line,
                    account,
                    posting.currency,
                    posting.amount_minor,
                    experiment or account_experiment(account),
                    occurred,
                    recorded_at,
                )
            )
    _open_accounts(conn, backend, accounts, recorded_at)
    append_rows(conn, backend, "ledger.transactions", TRANSACTION_INSERT_COLUMNS, transactions)
    append_rows(conn, backend, "ledger.postings", POSTING_INSERT_COLUMNS, postings)
    append_events(
        conn,
        backend,
        [
            (
                TRANSACTION_BOOKED,
                {
                    "transaction_id": p.transaction_id,
                    "idempotency_key": p.key,
                    "content_hash": p.content_hash,
                    "reverses_transaction_id": p.request.reverses_transaction_id,
                },
            )
            for p in new
        ],
        recorded_at,
    )


def _check_holds(conn: Any, backend: str, new: list[Prepared], posting_hold: str | None) -> None:
    """A key that has a hold is booked only by posting that hold: booking it directly would skip
    the review (pending), overrule it (voided) or revive it (expired)."""
    rows = _select_in(
        conn,
        backend,
        "SELECT h.idempotency_key, h.hold_id, d.decision, d.decided_by FROM ledger.holds h "
        "LEFT JOIN ledger.hold_decisions d ON d.hold_id = h.hold_id WHERE {match}",
        "h.idempotency_key",
        [p.key for p in new],
    )
    for key, hold_id, decision, decided_by in rows:
        if hold_id == posting_hold:
            continue
        if decision is None:
            raise HoldError(
                f"idempotency key {key} is held for review as hold {hold_id}: book it by releasing the "
                f"hold (`ventureloop ledger review --release {hold_id}`), not directly"
            )
        raise HoldError(
            f"idempotency key {key} belongs to hold {hold_id}, {decision} by {decided_by}: a decided "
            f"hold is final, so the key cannot be booked"
        )


def _check_ledger_bound(conn: Any, new: list[Prepared]) -> None:
    """Refuse a batch that would take the ledger's gross past LEDGER_MAX_GROSS_MINOR, past which the
    balances and the marts' BIGINT sums could overflow. SUM over BIGINT is HUGEINT on DuckDB and
    NUMERIC on PostgreSQL, so this sum itself cannot overflow."""
    adding = sum(abs(posting.amount_minor) for p in new for posting in p.request.postings)
    if not adding:
        return
    booked = int(run_sql(conn, "SELECT coalesce(sum(abs(amount_minor)), 0) FROM ledger.postings", None).fetchone()[0])
    if booked + adding > LEDGER_MAX_GROSS_MINOR:
        first = new[0].key
        raise LedgerError(
            f"transaction {first!r}: booking it would take the ledger's gross (the sum of |amount_minor| over "
            f"every posting) from {booked} to {booked + adding} minor units, past {LEDGER_MAX_GROSS_MINOR}: "
            f"beyond that balances and totals could overflow 64-bit integers. Check the amounts (minor units, "
            f"not major?)"
        )


def book_in_transaction(
    conn: Any,
    backend: str,
    prepared: Sequence[Prepared],
    before_insert: BeforeInsert | None = None,
    posting_hold: str | None = None,
    clock: Clock = utc_now,
) -> list[BookingResult]:
    """Book inside the caller's write_transaction: idempotency in bulk, then one insert per table.
    `posting_hold` is the hold whose transaction this is, when a review posts it; `clock` gives
    recorded_at, read once the checks have passed."""
    first: dict[str, Prepared] = {}
    for p in prepared:
        seen = first.setdefault(p.key, p)
        if seen.content_hash != p.content_hash:
            raise idempotency_conflict(p.key, seen.content, p.content, "earlier in this batch ")
    existing = booked_keys(conn, backend, list(first))
    for key, (tid, digest) in existing.items():
        if digest != first[key].content_hash:
            stored = _load_contents(conn, backend, [tid])[tid]
            raise idempotency_conflict(key, stored, first[key].content)
    new = [p for key, p in first.items() if key not in existing]
    _check_holds(conn, backend, new, posting_hold)
    _check_reversals(conn, backend, new)
    _check_ledger_bound(conn, new)
    if before_insert:
        before_insert(conn, backend, new)
    _insert(conn, backend, new, clock())
    results = []
    for p in prepared:
        if p.key in existing:
            results.append(BookingResult(existing[p.key][0], "duplicate", p.key))
        else:
            winner = first[p.key]
            results.append(BookingResult(winner.transaction_id, "booked" if winner is p else "duplicate", p.key))
    return results


# Below this many transactions a batch allocates too little for the collector to matter.
_GC_PAUSE_MIN_BATCH = 256


@contextlib.contextmanager
def _gc_paused(size: int) -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large batch is validated, hashed and written.

    A batch of 10,000 transactions allocates hundreds of thousands of small containers (requests,
    contents, rows, audit payloads) that all stay alive until it is written, so the collector runs
    again and again, each full pass scanning every live object of the process, and frees nothing:
    measured, about a quarter of book_many's time. Reference counting still frees everything as
    usual; only garbage cycles wait for the first collection after the batch. The previous state is
    restored, so nesting (book_many -> book_prepared) and a caller that keeps the collector off
    are respected."""
    if size < _GC_PAUSE_MIN_BATCH or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def book_prepared(
    warehouse: Warehouse, prepared: list[Prepared], before_insert: BeforeInsert | None = None, *, clock: Clock = utc_now
) -> list[BookingResult]:
    """Book prepared transactions in one write transaction. `before_insert(conn, backend, new)` runs
    inside it, after the idempotency check and before anything is written, with the transactions
    that are really new (the budget check); raising there rolls everything back."""

    def attempt() -> list[BookingResult]:
        with write_transaction(warehouse) as conn:
            return book_in_transaction(conn, warehouse.backend, prepared, before_insert, clock=clock)

    with _gc_paused(len(prepared)):
        return retry_on_unique_race(attempt)


def book(
    warehouse: Warehouse, request: TransactionRequest, *, tax: TaxCalculator | None = None, clock: Clock = utc_now
) -> BookingResult:
    """Book one transaction (or return the original for a repeated key with the same content)."""
    return book_prepared(warehouse, [prepare(request, tax)], clock=clock)[0]


def book_many(
    warehouse: Warehouse,
    requests: Iterable[TransactionRequest],
    *,
    tax: TaxCalculator | None = None,
    clock: Clock = utc_now,
) -> list[BookingResult]:
    """Book a batch in one database transaction: all or nothing, one bulk insert per table.

    Any invalid request fails the whole batch before anything is written (LedgerError names its
    position and key); use prepare() per record first to quarantine bad input instead."""
    requests = list(requests)
    prepared = []
    with _gc_paused(len(requests)):
        for position, request in enumerate(requests):
            try:
                prepared.append(prepare(request, tax))
            except LedgerError as error:
                raise LedgerError(f"batch item {position}: {error}") from None
        if not prepared:
            return []
        return book_prepared(warehouse, prepared, clock=clock)


def reverse(
    warehouse: Warehouse,
    transaction_id: str,
    idempotency_key: str,
    reason: str,
    *,
    occurred_at: datetime | None = None,
    clock: Clock = utc_now,
) -> BookingResult:
    """Book the mirror image of a transaction, linked to it; an original is reversed at most once.

    Without occurred_at the reversal happens now (by `clock`); a retry with the same key returns the
    first reversal."""
    with warehouse.connect() as conn:
        original = _load_contents(conn, warehouse.backend, [transaction_id]).get(transaction_id)
        prior = booked_keys(conn, warehouse.backend, [idempotency_key]).get(idempotency_key)
        earlier = _load_contents(conn, warehouse.backend, [prior[0]])[prior[0]] if prior else None
    if original is None:
        raise LedgerError(f"cannot reverse {transaction_id}: no such transaction in ledger.transactions")
    request = TransactionRequest(
        idempotency_key=idempotency_key,
        kind="reversal",
        description=f"reversal of {transaction_id}: {reason}",
        occurred_at=occurred_at or (datetime.fromisoformat(earlier["occurred_at"]) if earlier else clock()),
        postings=[Posting(a, c, -int(m)) for a, c, m in original["postings"]],
        experiment_id=original["experiment_id"],
        source=original["source"],
        external_ref=original["external_ref"],
        metadata={"reason": reason},
        reverses_transaction_id=transaction_id,
    )
    return book(warehouse, request, clock=clock)
