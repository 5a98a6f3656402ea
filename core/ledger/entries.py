"""The double-entry ledger: accounts, balanced transactions, reversals, pending holds, verify.

Rules (TigerBeetle and Formance style), each enforced here and re-checked by `verify`:
- a transaction balances per currency; amounts are non-zero integer minor units, debit > 0, credit < 0;
- every write carries an idempotency key: the same key with the same content returns the original
  transaction, the same key with other content is an error naming the field that differs;
- append-only: no UPDATE or DELETE of booked rows anywhere; a correction is a reversing
  transaction (reverses_transaction_id is UNIQUE, so an original is reversed at most once);
- a hold is posted, voided or expired exactly once (ledger.hold_decisions primary key);
- every write appends its audit record (core.audit) in the same database transaction.
See docs/ledger.md for the chart of accounts and the conventions.
"""

import contextlib
import gc
import hashlib
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import pandas as pd

from core.ledger.audit import (Problem, append_events, canonical_json, check_heads, decoded_events, read_events,
                        utc_iso, verify_chain, write_transaction)
from core.ledger.money import MoneyError, check_minor, format_minor
from core.ledger.tax import TaxCalculator, TaxError, check_country, tax_postings
from core.platform.warehouse import (Warehouse, run_sql, append_frame, append_rows, finish_pending, insert_new_rows,
                            query_frame)

ACCOUNT_TYPES = {"assets": "asset", "liabilities": "liability", "equity": "equity", "revenue": "revenue",
                 "expenses": "expense"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")
MAX_KEY_LENGTH = 255


TRANSACTION_BOOKED = "ledger.transaction_booked"
HOLD_CREATED = "ledger.hold_created"
HOLD_DECIDED = "ledger.hold_decided"


class LedgerError(ValueError):
    """A write the ledger refuses; the message says what, where and what to do."""


class IdempotencyConflict(LedgerError):
    def __init__(self, key: str, field_name: str, message: str):
        super().__init__(message)
        self.key, self.field = key, field_name


class HoldError(LedgerError):
    pass


class HoldExpired(HoldError):
    pass


@lru_cache(maxsize=65536)
def account_type(account: str) -> str:
    """The type of a colon-separated account name, from its first segment; validates the name."""
    if not isinstance(account, str) or not account:
        raise LedgerError(f"account {account!r} is not a name like assets:cash:stripe:usd")
    segments = account.split(":")
    if segments[0] not in ACCOUNT_TYPES:
        raise LedgerError(f"account {account!r} has the unknown root {segments[0]!r}: use one of "
                          f"{', '.join(ACCOUNT_TYPES)}")
    if len(segments) < 2 or not all(_SEGMENT.match(s) for s in segments):
        raise LedgerError(f"account {account!r} must be root:segment[:segment...] with segments of letters, "
                          f"digits, '_', '.' or '-' (e.g. expenses:ads:experiment:exp-1)")
    return ACCOUNT_TYPES[segments[0]]


@lru_cache(maxsize=65536)
def account_experiment(account: str) -> str | None:
    """The experiment an account belongs to (revenue:experiment:<id>, expenses:ads:experiment:<id>)."""
    segments = account.split(":")
    for position, segment in enumerate(segments[:-1]):
        if segment == "experiment":
            return segments[position + 1]
    return None


@dataclass(frozen=True)
class Posting:
    account: str
    currency: str
    amount_minor: int  # debit > 0, credit < 0, in the currency's minor units


@dataclass(frozen=True)
class TransactionRequest:
    idempotency_key: str
    kind: str
    description: str
    occurred_at: datetime  # timezone-aware; stored in UTC
    postings: Sequence[Posting]
    experiment_id: str | None = None
    source: str = "manual"
    external_ref: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Revenue booked with a customer country gets its tax share moved to liabilities:tax:<country>;
    # the country is then recorded as metadata.customer_country.
    customer_country: str | None = None
    reverses_transaction_id: str | None = None  # set by reverse(); the postings must mirror the original

    def __post_init__(self) -> None:
        object.__setattr__(self, "postings", tuple(self.postings))


@dataclass(frozen=True)
class BookingResult:
    transaction_id: str
    status: Literal["booked", "duplicate"]
    idempotency_key: str


@dataclass(frozen=True)
class Prepared:
    """A validated request (tax already applied) with its id and the content its hash covers."""

    request: TransactionRequest
    transaction_id: str
    content: dict[str, Any]
    content_hash: str

    @property
    def key(self) -> str:
        return self.request.idempotency_key


# -- validation ------------------------------------------------------------------------------------

def _text(value: Any, name: str, key: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or (name != "description" and not value.strip()):
        raise LedgerError(f"transaction {key!r}: {name} must be a{'' if optional else ' non-empty'} string, "
                          f"got {value!r}")


def _check_request(request: TransactionRequest) -> None:
    key = request.idempotency_key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise LedgerError(f"idempotency key {key!r} must be a non-empty string of at most {MAX_KEY_LENGTH} "
                          f"characters (e.g. stripe:txn_123)")
    for name in ("kind", "description", "source"):
        _text(getattr(request, name), name, key)
    for name in ("experiment_id", "external_ref", "reverses_transaction_id"):
        _text(getattr(request, name), name, key, optional=True)
    if not isinstance(request.occurred_at, datetime) or request.occurred_at.tzinfo is None:
        raise LedgerError(f"transaction {key!r}: occurred_at {request.occurred_at!r} must be a timezone-aware "
                          f"datetime (use datetime(..., tzinfo=UTC)); naive times are ambiguous")
    if not isinstance(request.metadata, Mapping) or not all(isinstance(k, str) for k in request.metadata):
        raise LedgerError(f"transaction {key!r}: metadata must be a mapping with string keys")
    try:
        if request.metadata and not _flat_plain(request.metadata):
            canonical_json(dict(request.metadata))
    except ValueError as error:
        raise LedgerError(f"transaction {key!r}: metadata {error}") from None
    _check_postings(request)


_PLAIN_TYPES = (str, int, bool, type(None))


def _flat_plain(metadata: Mapping[str, Any]) -> bool:
    """True when every value is a str, int, bool or None: such metadata is always valid JSON, so
    the encoding that would prove it can be skipped (the usual case: ids, types, countries)."""
    return all(type(value) in _PLAIN_TYPES for value in metadata.values())


def _check_postings(request: TransactionRequest) -> None:
    key = request.idempotency_key
    if len(request.postings) < 2:
        raise LedgerError(f"transaction {key!r} has {len(request.postings)} posting(s): a balanced transaction "
                          f"needs at least a debit and a credit")
    sums: dict[str, int] = defaultdict(int)
    for line, posting in enumerate(request.postings, start=1):
        if not isinstance(posting, Posting):
            raise LedgerError(f"transaction {key!r} line {line}: {posting!r} is not a Posting")
        try:
            account_type(posting.account)
            check_minor(posting.amount_minor, posting.currency)
        except (LedgerError, MoneyError) as error:
            raise LedgerError(f"transaction {key!r} line {line}: {error}") from None
        named = account_experiment(posting.account)
        if named and request.experiment_id and named != request.experiment_id:
            raise LedgerError(f"transaction {key!r} line {line}: account {posting.account} belongs to experiment "
                              f"{named} but the transaction is for experiment {request.experiment_id}")
        sums[posting.currency] += posting.amount_minor
    unbalanced = {currency: total for currency, total in sums.items() if total != 0}
    if unbalanced:
        detail = ", ".join(f"{currency} sums to {total} ({format_minor(total, currency)})"
                           for currency, total in sorted(unbalanced.items()))
        raise LedgerError(f"transaction {key!r} does not balance: {detail}; debits (> 0) and credits (< 0) must "
                          f"sum to zero in each currency")


def _with_tax(request: TransactionRequest, tax: TaxCalculator | None) -> TransactionRequest:
    key = request.idempotency_key
    try:
        country = check_country(request.customer_country or "")
        extra = [line for p in request.postings if account_type(p.account) == "revenue"
                 for line in tax_postings(p.account, p.currency, p.amount_minor, country, tax)]
    except TaxError as error:
        raise LedgerError(f"transaction {key!r}: {error}") from None
    recorded = request.metadata.get("customer_country", country)
    if recorded != country:
        raise LedgerError(f"transaction {key!r}: customer_country {country} disagrees with metadata "
                          f"customer_country {recorded}")
    return replace(request, postings=(*request.postings, *(Posting(*line) for line in extra)),
                   metadata={**request.metadata, "customer_country": country}, customer_country=None)


def _content(request: TransactionRequest) -> dict[str, Any]:
    """Everything the content hash covers: the request as stored (after tax), minus nothing."""
    return {
        "idempotency_key": request.idempotency_key, "kind": request.kind, "description": request.description,
        "occurred_at": utc_iso(request.occurred_at), "experiment_id": request.experiment_id,
        "source": request.source, "external_ref": request.external_ref,
        "reverses_transaction_id": request.reverses_transaction_id, "metadata": dict(request.metadata),
        "postings": [[p.account, p.currency, p.amount_minor] for p in request.postings],
    }


def content_hash(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def prepare(request: TransactionRequest, tax: TaxCalculator | None = None) -> Prepared:
    """Validate a request and apply the tax hook; raises LedgerError saying what is wrong.

    Importers call this per record to quarantine bad input before booking a batch."""
    _check_request(request)
    if request.customer_country is not None:
        request = _with_tax(request, tax)
        _check_postings(request)
    content = _content(request)
    return Prepared(request, str(uuid.uuid4()), content, content_hash(content))


def _request_from_content(content: Mapping[str, Any]) -> TransactionRequest:
    return TransactionRequest(
        idempotency_key=content["idempotency_key"], kind=content["kind"], description=content["description"],
        occurred_at=datetime.fromisoformat(content["occurred_at"]),
        postings=[Posting(a, c, int(m)) for a, c, m in content["postings"]],
        experiment_id=content["experiment_id"], source=content["source"], external_ref=content["external_ref"],
        metadata=content["metadata"], reverses_transaction_id=content["reverses_transaction_id"])


def _prepared_from_content(content: Mapping[str, Any]) -> Prepared:
    return Prepared(_request_from_content(content), str(uuid.uuid4()), dict(content), content_hash(content))


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
    for name in ("kind", "description", "occurred_at", "experiment_id", "source", "external_ref",
                 "reverses_transaction_id"):
        if old[name] != new[name]:
            return name, f"{name} {old[name]!r}, now {new[name]!r}"
    for name in sorted(set(old["metadata"]) | set(new["metadata"])):
        if old["metadata"].get(name) != new["metadata"].get(name):
            return f"metadata.{name}", (f"metadata.{name} {old['metadata'].get(name)!r}, "
                                        f"now {new['metadata'].get(name)!r}")
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


def _conflict(key: str, old: Mapping[str, Any], new: Mapping[str, Any], what: str = "") -> IdempotencyConflict:
    name, detail = _difference(old, new)
    return IdempotencyConflict(key, name, f"idempotency key {key} was used {what}for {detail}; a retry must "
                                          f"send the same content, a different transaction needs a new key")


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


def _retrying_unique(action: Callable[[], Any], attempts: int = 3) -> Any:
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


_TX_COLUMNS = ("transaction_id, idempotency_key, content_hash, kind, description, experiment_id, source, "
               "external_ref, occurred_at, recorded_at, reverses_transaction_id, metadata")


def _content_from_row(row: Mapping[str, Any], postings: Iterable[Sequence[Any]]) -> dict[str, Any]:
    return {
        "idempotency_key": row["idempotency_key"], "kind": row["kind"], "description": row["description"],
        "occurred_at": utc_iso(row["occurred_at"]), "experiment_id": row["experiment_id"],
        "source": row["source"], "external_ref": row["external_ref"],
        "reverses_transaction_id": row["reverses_transaction_id"], "metadata": json.loads(row["metadata"]),
        "postings": [[account, currency, int(amount)] for account, currency, amount in postings],
    }


def _load_contents(conn: Any, backend: str, transaction_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    names = [c.strip() for c in _TX_COLUMNS.split(",")]
    rows = [dict(zip(names, row)) for row in _select_in(
        conn, backend, f"SELECT {_TX_COLUMNS} FROM ledger.transactions WHERE {{match}}", "transaction_id",
        transaction_ids)]
    lines: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for tid, account, currency, amount in _select_in(
            conn, backend, "SELECT transaction_id, account_id, currency, amount_minor FROM ledger.postings "
                           "WHERE {match} ORDER BY transaction_id, line", "transaction_id", transaction_ids):
        lines[tid].append((account, currency, amount))
    return {row["transaction_id"]: _content_from_row(row, lines[row["transaction_id"]]) for row in rows}


def get_transaction(warehouse: Warehouse, transaction_id: str) -> dict[str, Any] | None:
    """A booked transaction as its content (fields and postings), or None."""
    with warehouse.connect() as conn:
        return _load_contents(conn, warehouse.backend, [transaction_id]).get(transaction_id)


def _existing_keys(conn: Any, backend: str, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
    rows = _select_in(conn, backend, "SELECT idempotency_key, transaction_id, content_hash FROM "
                                     "ledger.transactions WHERE {match}", "idempotency_key", keys)
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
    done = {orig: (tid, key) for orig, tid, key in _select_in(
        conn, backend, "SELECT reverses_transaction_id, transaction_id, idempotency_key FROM ledger.transactions "
                       "WHERE {match}", "reverses_transaction_id", targets)}
    for prepared, target in zip(reversals, targets):
        original = originals.get(target)
        if original is None:
            raise LedgerError(f"cannot reverse {target}: no such transaction in ledger.transactions")
        if original["reverses_transaction_id"]:
            raise LedgerError(f"cannot reverse {target}: it is itself a reversal; book a new transaction instead")
        if target in done:
            raise LedgerError(f"cannot reverse {target}: it was already reversed by transaction {done[target][0]} "
                              f"(key {done[target][1]}); an original is reversed at most once")
        if sorted(prepared.content["postings"]) != sorted([a, c, -m] for a, c, m in original["postings"]):
            raise LedgerError(f"reversal {prepared.key!r} of {target}: its postings must mirror the original's "
                              f"(same accounts and currencies, negated amounts); use reverse()")


_TX_INSERT = ("transaction_id", "idempotency_key", "content_hash", "kind", "description", "experiment_id", "source",
              "external_ref", "occurred_at", "recorded_at", "reverses_transaction_id", "metadata")
_POSTING_INSERT = ("posting_id", "transaction_id", "line", "account_id", "currency", "amount_minor", "experiment_id",
                   "occurred_at", "recorded_at")


def _open_accounts(conn: Any, backend: str, accounts: Mapping[str, str], opened_at: datetime) -> None:
    """Open the accounts not in ledger.accounts yet. Only the missing ones are sent, and
    ON CONFLICT DO NOTHING (insert_new_rows) stays the guard against a concurrent opener."""
    known = {row[0] for row in _select_in(conn, backend, "SELECT account_id FROM ledger.accounts WHERE {match}",
                                          "account_id", list(accounts))}
    missing = [account for account in accounts if account not in known]
    if missing:
        insert_new_rows(conn, backend, "ledger.accounts", pd.DataFrame(
            {"account_id": missing, "account_type": [accounts[a] for a in missing],
             "opened_at": pd.Timestamp(opened_at).tz_convert(UTC)}), ["account_id"])


def _insert(conn: Any, backend: str, new: list[Prepared], recorded_at: datetime) -> None:
    if not new:
        return
    recorded_at = recorded_at.astimezone(UTC)
    transactions, postings, accounts = [], [], {}
    for p in new:
        r, tid = p.request, p.transaction_id
        occurred = r.occurred_at.astimezone(UTC)
        experiment = r.experiment_id
        transactions.append((tid, r.idempotency_key, p.content_hash, r.kind, r.description, experiment,
                             r.source, r.external_ref, occurred, recorded_at, r.reverses_transaction_id,
                             canonical_json(p.content["metadata"]) if r.metadata else "{}"))
        for line, posting in enumerate(r.postings, start=1):
            account = posting.account
            if account not in accounts:
                accounts[account] = account_type(account)
            postings.append((f"{tid}/{line}", tid, line, account, posting.currency, posting.amount_minor,
                             experiment or account_experiment(account), occurred, recorded_at))
    _open_accounts(conn, backend, accounts, recorded_at)
    append_rows(conn, backend, "ledger.transactions", _TX_INSERT, transactions)
    append_rows(conn, backend, "ledger.postings", _POSTING_INSERT, postings)
    append_events(conn, backend, [(TRANSACTION_BOOKED, {
        "transaction_id": p.transaction_id, "idempotency_key": p.key, "content_hash": p.content_hash,
        "reverses_transaction_id": p.request.reverses_transaction_id}) for p in new], recorded_at)


def _check_holds(conn: Any, backend: str, new: list[Prepared], posting_hold: str | None) -> None:
    """A key that has a hold is booked only by posting that hold: booking it directly would skip
    the review (pending), overrule it (voided) or revive it (expired)."""
    rows = _select_in(conn, backend, "SELECT h.idempotency_key, h.hold_id, d.decision, d.decided_by FROM ledger.holds h "
                                     "LEFT JOIN ledger.hold_decisions d ON d.hold_id = h.hold_id WHERE {match}",
                      "h.idempotency_key", [p.key for p in new])
    for key, hold_id, decision, decided_by in rows:
        if hold_id == posting_hold:
            continue
        if decision is None:
            raise HoldError(f"idempotency key {key} is held for review as hold {hold_id}: book it by releasing the "
                            f"hold (`ventureloop ledger review --release {hold_id}`), not directly")
        raise HoldError(f"idempotency key {key} belongs to hold {hold_id}, {decision} by {decided_by}: a decided "
                        f"hold is final, so the key cannot be booked")


def _book_prepared(conn: Any, backend: str, prepared: Sequence[Prepared],
                   before_insert: BeforeInsert | None = None, posting_hold: str | None = None) -> list[BookingResult]:
    """Book inside the caller's write_transaction: idempotency in bulk, then one insert per table.
    `posting_hold` is the hold whose transaction this is, when a review posts it."""
    first: dict[str, Prepared] = {}
    for p in prepared:
        seen = first.setdefault(p.key, p)
        if seen.content_hash != p.content_hash:
            raise _conflict(p.key, seen.content, p.content, "earlier in this batch ")
    existing = _existing_keys(conn, backend, list(first))
    for key, (tid, digest) in existing.items():
        if digest != first[key].content_hash:
            stored = _load_contents(conn, backend, [tid])[tid]
            raise _conflict(key, stored, first[key].content)
    new = [p for key, p in first.items() if key not in existing]
    _check_holds(conn, backend, new, posting_hold)
    _check_reversals(conn, backend, new)
    if before_insert:
        before_insert(conn, backend, new)
    _insert(conn, backend, new, datetime.now(UTC))
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


def book_prepared(warehouse: Warehouse, prepared: list[Prepared], before_insert: BeforeInsert | None = None
                  ) -> list[BookingResult]:
    """Book prepared transactions in one write transaction. `before_insert(conn, backend, new)` runs
    inside it, after the idempotency check and before anything is written, with the transactions
    that are really new (the budget check); raising there rolls everything back."""
    def attempt() -> list[BookingResult]:
        with write_transaction(warehouse) as conn:
            return _book_prepared(conn, warehouse.backend, prepared, before_insert)

    with _gc_paused(len(prepared)):
        return _retrying_unique(attempt)


def book(warehouse: Warehouse, request: TransactionRequest, *, tax: TaxCalculator | None = None) -> BookingResult:
    """Book one transaction (or return the original for a repeated key with the same content)."""
    return book_prepared(warehouse, [prepare(request, tax)])[0]


def book_many(warehouse: Warehouse, requests: Iterable[TransactionRequest], *,
              tax: TaxCalculator | None = None) -> list[BookingResult]:
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
        return book_prepared(warehouse, prepared)


def reverse(warehouse: Warehouse, transaction_id: str, idempotency_key: str, reason: str, *,
            occurred_at: datetime | None = None) -> BookingResult:
    """Book the mirror image of a transaction, linked to it; an original is reversed at most once.

    Without occurred_at the reversal happens now; a retry with the same key returns the first reversal."""
    with warehouse.connect() as conn:
        original = _load_contents(conn, warehouse.backend, [transaction_id]).get(transaction_id)
        prior = _existing_keys(conn, warehouse.backend, [idempotency_key]).get(idempotency_key)
        earlier = _load_contents(conn, warehouse.backend, [prior[0]])[prior[0]] if prior else None
    if original is None:
        raise LedgerError(f"cannot reverse {transaction_id}: no such transaction in ledger.transactions")
    request = TransactionRequest(
        idempotency_key=idempotency_key, kind="reversal", description=f"reversal of {transaction_id}: {reason}",
        occurred_at=occurred_at or (datetime.fromisoformat(earlier["occurred_at"]) if earlier else datetime.now(UTC)),
        postings=[Posting(a, c, -int(m)) for a, c, m in original["postings"]],
        experiment_id=original["experiment_id"], source=original["source"], external_ref=original["external_ref"],
        metadata={"reason": reason}, reverses_transaction_id=transaction_id)
    return book(warehouse, request)


# -- holds -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HoldResult:
    hold_id: str
    status: Literal["held", "duplicate"]
    idempotency_key: str


@dataclass(frozen=True)
class HoldDecision:
    hold_id: str
    decision: Literal["posted", "voided", "expired"]
    decided_by: str
    decided_at: datetime
    transaction_id: str | None = None
    note: str | None = None


def hold(warehouse: Warehouse, request: TransactionRequest, *, reason: str, expires_at: datetime,
         kind: str = "review", tax: TaxCalculator | None = None) -> HoldResult:
    """Propose a transaction without booking it (fraud review, reservation) until it is decided.

    The hold shares the transaction's idempotency key: posting it books exactly that transaction."""
    prepared = prepare(request, tax)
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
        raise HoldError(f"hold {prepared.key!r}: expires_at must be a timezone-aware datetime")
    proposed = {"content": prepared.content, "content_hash": prepared.content_hash}
    with write_transaction(warehouse) as conn:
        backend = warehouse.backend
        booked = _existing_keys(conn, backend, [prepared.key]).get(prepared.key)
        if booked:
            raise HoldError(f"idempotency key {prepared.key} is already booked as transaction {booked[0]}: "
                            f"there is nothing left to hold")
        row = run_sql(conn, "SELECT hold_id, kind, reason, proposed, expires_at FROM ledger.holds "
                         "WHERE idempotency_key = %s", [prepared.key]).fetchone()
        if row:
            _same_hold(prepared, row, kind, reason, expires_at)
            return HoldResult(row[0], "duplicate", prepared.key)
        hold_id, now = str(uuid.uuid4()), datetime.now(UTC)
        append_frame(conn, backend, "ledger.holds", pd.DataFrame([{
            "hold_id": hold_id, "idempotency_key": prepared.key, "kind": kind, "reason": reason,
            "proposed": canonical_json(proposed), "created_at": now, "expires_at": expires_at.astimezone(UTC)}]))
        append_events(conn, backend, [(HOLD_CREATED, {
            "hold_id": hold_id, "idempotency_key": prepared.key, "content_hash": prepared.content_hash,
            "kind": kind, "reason": reason, "expires_at": utc_iso(expires_at)})], now)
    return HoldResult(hold_id, "held", prepared.key)


def _same_hold(prepared: Prepared, row: Sequence[Any], kind: str, reason: str, expires_at: datetime) -> None:
    stored = json.loads(row[3])
    if stored["content_hash"] != prepared.content_hash:
        raise _conflict(prepared.key, stored["content"], prepared.content, "for a hold ")
    for name, old, new in (("kind", row[1], kind), ("reason", row[2], reason),
                           ("expires_at", utc_iso(row[4]), utc_iso(expires_at))):
        if old != new:
            raise IdempotencyConflict(prepared.key, name, f"idempotency key {prepared.key} was used for a hold with "
                                                          f"{name} {old!r}, now {new!r}")


def _held_transaction(hold_id: str, proposed: Mapping[str, Any]) -> Prepared:
    prepared = _prepared_from_content(proposed["content"])
    if prepared.content_hash != proposed["content_hash"]:
        raise HoldError(f"hold {hold_id}: the proposed transaction no longer matches its content hash (the row "
                        f"was edited); run `ventureloop ledger verify` and do not post it")
    return prepared


def _load_hold(conn: Any, hold_id: str) -> tuple[dict[str, Any], datetime, tuple[Any, ...] | None]:
    row = run_sql(conn, "SELECT proposed, expires_at FROM ledger.holds WHERE hold_id = %s", [hold_id]).fetchone()
    if row is None:
        raise HoldError(f"hold {hold_id} does not exist in ledger.holds")
    decided = run_sql(conn, "SELECT decision, decided_by, decided_at, transaction_id FROM ledger.hold_decisions "
                         "WHERE hold_id = %s", [hold_id]).fetchone()
    return json.loads(row[0]), pd.Timestamp(row[1]).to_pydatetime(), decided


def _record_decisions(conn: Any, backend: str, decisions: Sequence[HoldDecision]) -> None:
    append_frame(conn, backend, "ledger.hold_decisions", pd.DataFrame([{
        "hold_id": d.hold_id, "decision": d.decision, "decided_by": d.decided_by,
        "decided_at": pd.Timestamp(d.decided_at).tz_convert(UTC), "transaction_id": d.transaction_id,
        "note": d.note} for d in decisions]))
    append_events(conn, backend, [(HOLD_DECIDED, {
        "hold_id": d.hold_id, "decision": d.decision, "decided_by": d.decided_by,
        "decided_at": utc_iso(d.decided_at), "transaction_id": d.transaction_id, "note": d.note})
        for d in decisions])


def _decide(warehouse: Warehouse, hold_id: str, decision: Literal["posted", "voided"], decided_by: str,
            note: str | None, at: datetime | None) -> HoldDecision:
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        raise HoldError(f"hold {hold_id}: the decision time must be timezone-aware")

    def attempt() -> HoldDecision:
        with write_transaction(warehouse) as conn:
            proposed, expires_at, decided = _load_hold(conn, hold_id)
            if decided:
                raise HoldError(f"hold {hold_id} was already {decided[0]} by {decided[1]} at {utc_iso(decided[2])}"
                                + (f" (transaction {decided[3]})" if decided[3] else "")
                                + f"; a hold is decided exactly once, it cannot now be {decision}")
            if at >= expires_at:
                outcome = HoldDecision(hold_id, "expired", decided_by, at, None, f"expired at {utc_iso(expires_at)}")
            else:
                tid = None
                if decision == "posted":
                    tid = _book_prepared(conn, warehouse.backend, [_held_transaction(hold_id, proposed)],
                                         posting_hold=hold_id)[0].transaction_id
                outcome = HoldDecision(hold_id, decision, decided_by, at, tid, note)
            _record_decisions(conn, warehouse.backend, [outcome])
            return outcome

    return _retrying_unique(attempt)


def post_hold(warehouse: Warehouse, hold_id: str, *, decided_by: str, note: str | None = None,
              at: datetime | None = None) -> HoldDecision:
    """Book the held transaction; raises HoldExpired (after recording the expiry) if it is too late."""
    outcome = _decide(warehouse, hold_id, "posted", decided_by, note, at)
    if outcome.decision == "expired":
        raise HoldExpired(f"hold {hold_id} {outcome.note} and was not posted; propose it again as a new hold "
                          f"under a new idempotency key")
    return outcome


def void_hold(warehouse: Warehouse, hold_id: str, *, decided_by: str, note: str | None = None,
              at: datetime | None = None) -> HoldDecision:
    """Drop the held transaction; nothing is booked. Past its expiry the decision recorded is 'expired'."""
    return _decide(warehouse, hold_id, "voided", decided_by, note, at)


def expire_holds(warehouse: Warehouse, now: datetime) -> list[HoldDecision]:
    """Record 'expired' for every undecided hold whose expires_at <= now (expiry is observed, not timed)."""
    if now.tzinfo is None:
        raise HoldError("expire_holds needs a timezone-aware now")
    with write_transaction(warehouse) as conn:
        rows = run_sql(conn, "SELECT h.hold_id, h.expires_at FROM ledger.holds h LEFT JOIN ledger.hold_decisions d "
                          "ON d.hold_id = h.hold_id WHERE d.hold_id IS NULL AND h.expires_at <= %s "
                          "ORDER BY h.expires_at, h.hold_id", [now]).fetchall()
        decisions = [HoldDecision(hold_id, "expired", "system:expiry", now, None, f"expired at {utc_iso(expires)}")
                     for hold_id, expires in rows]
        if decisions:
            _record_decisions(conn, warehouse.backend, decisions)
    return decisions


def pending_holds(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.query(
        "SELECT h.hold_id, h.idempotency_key, h.kind, h.reason, h.created_at, h.expires_at, h.proposed "
        "FROM ledger.holds h LEFT JOIN ledger.hold_decisions d ON d.hold_id = h.hold_id "
        "WHERE d.hold_id IS NULL ORDER BY h.expires_at, h.hold_id")


# -- balances --------------------------------------------------------------------------------------

def balances(warehouse: Warehouse, *, as_of: datetime | None = None, prefix: str | None = None) -> pd.DataFrame:
    """Balance per account and currency (signed minor units: debit-normal accounts are positive)."""
    where, params = ["1 = 1"], []
    if as_of is not None:
        where.append("p.occurred_at < %s")
        params.append(as_of)
    if prefix is not None:
        where.append("(p.account_id = %s OR starts_with(p.account_id, %s))")
        params += [prefix, prefix + ":"]
    return warehouse.query(
        "SELECT p.account_id, a.account_type, p.currency, CAST(sum(p.amount_minor) AS BIGINT) AS balance_minor "
        "FROM ledger.postings p JOIN ledger.accounts a ON a.account_id = p.account_id "
        f"WHERE {' AND '.join(where)} GROUP BY p.account_id, a.account_type, p.currency "
        "ORDER BY p.account_id, p.currency", params)


def balance(warehouse: Warehouse, account: str, currency: str, *, as_of: datetime | None = None) -> int:
    sql = ("SELECT CAST(coalesce(sum(amount_minor), 0) AS BIGINT) FROM ledger.postings "
           "WHERE account_id = %s AND currency = %s")
    params: list[Any] = [account, currency]
    if as_of is not None:
        sql += " AND occurred_at < %s"
        params.append(as_of)
    return int(warehouse.scalar(sql, params))


# -- verify ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyReport:
    events: int
    transactions: int
    postings: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def summary(self) -> str:
        counted = f"{self.events} audit events, {self.transactions} transactions, {self.postings} postings"
        if self.ok:
            return f"ledger verified: {counted}; the audit chain is intact and every invariant holds"
        return f"ledger BROKEN ({counted}); first problem: {self.first}" + "".join(
            f"\n  - {problem}" for problem in self.problems)


def verify(warehouse: Warehouse, published_heads: Sequence[tuple[int, str]] = ()) -> VerifyReport:
    """Check the audit chain and the ledger invariants; report the first broken record of each kind.

    Read-only, in one snapshot. The checks: the chain (seq gap-free, prev_hash links, hashes);
    each transaction balances per currency, has no zero posting, valid accounts and currencies,
    content matching its content_hash and its audit record; reversals mirror their original;
    postings reference existing transactions; hold decisions reference holds and bookings; every
    chain head published earlier (`published_heads`, from audit.chain_head) is still in the chain."""
    with warehouse.connect() as conn:
        if warehouse.backend == "postgres":
            run_sql(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", None)
        events = read_events(conn)
        transactions = query_frame(conn, f"SELECT {_TX_COLUMNS} FROM ledger.transactions "
                                         "ORDER BY recorded_at, transaction_id")
        postings = run_sql(conn, "SELECT transaction_id, account_id, currency, amount_minor FROM ledger.postings "
                              "ORDER BY transaction_id, line", None).fetchall()
        accounts = dict(run_sql(conn, "SELECT account_id, account_type FROM ledger.accounts", None).fetchall())
        holds = dict(run_sql(conn, "SELECT hold_id, proposed FROM ledger.holds ORDER BY created_at, hold_id",
                          None).fetchall())
        decisions = run_sql(conn, "SELECT hold_id, decision, transaction_id FROM ledger.hold_decisions "
                               "ORDER BY decided_at, hold_id", None).fetchall()
    by_tx: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for tid, account, currency, amount in postings:
        by_tx[tid].append((account, currency, int(amount)))
    problems = [verify_chain(events), check_heads(events, published_heads)]
    problems += _ledger_problems(transactions, by_tx, events)
    problems += _reference_problems(transactions, by_tx, accounts, set(holds), decisions)
    problems.append(_hold_problem(holds, events))
    return VerifyReport(len(events), len(transactions), len(postings), tuple(p for p in problems if p))


def _transaction_issues(row: Mapping[str, Any], lines: list[tuple[str, str, int]],
                        audited: Mapping[str, tuple[int, str]], contents: Mapping[str, dict[str, Any]]) -> list[str]:
    issues = []
    if not lines:
        issues.append("it has no postings")
    sums: dict[str, int] = defaultdict(int)
    for line, (account, currency, amount) in enumerate(lines, start=1):
        try:
            account_type(account)
            check_minor(amount, currency)
        except (LedgerError, MoneyError) as error:
            issues.append(f"posting line {line}: {error}")
        sums[currency] += amount
    issues += [f"{currency} postings sum to {total}, not 0" for currency, total in sorted(sums.items()) if total]
    content = contents[row["transaction_id"]]
    if content_hash(content) != row["content_hash"]:
        issues.append("its fields or postings no longer match its content_hash: a row was edited")
    seq_hash = audited.get(row["transaction_id"])
    if seq_hash is None:
        issues.append("no audit event records its booking")
    elif seq_hash[1] != row["content_hash"]:
        issues.append(f"audit seq {seq_hash[0]} recorded content hash {seq_hash[1][:12]}..., the row has "
                      f"{row['content_hash'][:12]}...")
    original_id = row["reverses_transaction_id"]
    if original_id:
        original = contents.get(original_id)
        if original is None:
            issues.append(f"it reverses {original_id}, which does not exist")
        elif sorted(content["postings"]) != sorted([a, c, -m] for a, c, m in original["postings"]):
            issues.append(f"its postings do not mirror those of the original {original_id}")
    return issues


def _ledger_problems(transactions: pd.DataFrame, by_tx: Mapping[str, list[tuple[str, str, int]]],
                     events: Sequence[Sequence[Any]]) -> list[Problem | None]:
    audited = {payload.get("transaction_id"): (seq, payload.get("content_hash"))
               for seq, event_type, payload in decoded_events(events)
               if event_type == TRANSACTION_BOOKED and isinstance(payload, dict)}
    rows = transactions.to_dict("records")
    for row in rows:  # pandas gives NaN for SQL NULL in text columns; content needs None
        for name in ("experiment_id", "external_ref", "reverses_transaction_id"):
            row[name] = row[name] if isinstance(row[name], str) else None
    contents = {row["transaction_id"]: _content_from_row(row, by_tx.get(row["transaction_id"], [])) for row in rows}
    first: Problem | None = None
    for row in rows:
        issues = _transaction_issues(row, by_tx.get(row["transaction_id"], []), audited, contents)
        if issues:
            first = Problem("ledger.transaction", f"ledger.transactions {row['transaction_id']} "
                                                  f"(key {row['idempotency_key']})", "; ".join(issues))
            break
    missing = next(((seq, tid) for tid, (seq, _h) in sorted(audited.items(), key=lambda item: item[1][0])
                    if tid not in contents), None)
    lost = missing and Problem("audit.ledger", f"audit.events seq {missing[0]}",
                               f"records the booking of transaction {missing[1]}, which is not in "
                               f"ledger.transactions: it was deleted")
    return [first, lost]


def _reference_problems(transactions: pd.DataFrame, by_tx: Mapping[str, Any], accounts: Mapping[str, str],
                        holds: set[str], decisions: Sequence[Sequence[Any]]) -> list[Problem | None]:
    known = set(transactions["transaction_id"])
    orphan = next((tid for tid in sorted(by_tx) if tid not in known), None)
    problems: list[Problem | None] = [orphan and Problem(
        "ledger.postings", f"ledger.postings of transaction {orphan}",
        f"{len(by_tx[orphan])} posting(s) reference transaction {orphan}, which does not exist")]
    used = sorted({account for lines in by_tx.values() for account, _c, _m in lines})
    for account in used:
        try:
            expected = account_type(account)
        except LedgerError:
            continue  # already reported on its transaction
        if accounts.get(account) != expected:
            problems.append(Problem("ledger.accounts", f"ledger.accounts {account}",
                                    f"account type is {accounts.get(account)!r}, expected {expected!r}"
                                    if account in accounts else "postings use it but it is not in ledger.accounts"))
            break
    for hold_id, decision, tid in decisions:
        if hold_id not in holds or (decision == "posted" and tid not in known):
            problems.append(Problem("ledger.holds", f"ledger.hold_decisions {hold_id}",
                                    f"decision {decision!r} refers to a missing hold" if hold_id not in holds else
                                    f"posted as transaction {tid}, which does not exist"))
            break
    return problems


def _hold_problem(holds: Mapping[str, str], events: Sequence[Sequence[Any]]) -> Problem | None:
    """A held transaction must still hash to what its hold_created audit record says."""
    audited = {payload.get("hold_id"): payload.get("content_hash") for _seq, event_type, payload
               in decoded_events(events) if event_type == HOLD_CREATED and isinstance(payload, dict)}
    for hold_id, proposed_text in holds.items():
        try:
            proposed = json.loads(proposed_text)
            intact = content_hash(proposed["content"]) == proposed["content_hash"] == audited.get(hold_id)
        except (TypeError, ValueError, KeyError):
            intact = False
        if not intact:
            return Problem("ledger.holds", f"ledger.holds {hold_id}",
                           "the proposed transaction does not match its content hash or its audit record")
    return None
