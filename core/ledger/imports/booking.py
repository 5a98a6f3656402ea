"""From parsed records to the ledger: validate, deduplicate, review, hold or book, quarantine.

One pass per import, in this order:
1. every record is prepared (core.ledger.validation.prepare validates it and applies the tax hook); a record
   that cannot be is quarantined with its reason, origin and raw text;
2. records are grouped by idempotency key: a repeat with the same content is a duplicate, a repeat
   with other content is a quarantined conflict naming the differing field and the first line;
3. keys already booked (ledger.transactions) or already held (ledger.holds, whatever the decision)
   are duplicates, or conflicts when their content differs: a rejected hold is never re-booked by
   re-importing its file;
4. the fraud rules (core.ledger.fraud) look at the new revenue against the booked history; what they flag
   becomes a hold of kind fraud_review, the rest is booked in bulk through core.ledger.book_prepared,
   except what counts against budgets (generic CSV costs): each goes through the budget check
   (core.ledger.budgets.spend_prepared) and a refused one is quarantined with the refusal.
Nothing is dropped: every record ends as booked, duplicate, held or quarantined, with a message.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from core.ledger import budgets, fraud
from core.ledger.audit import Clock, fixed_clock, utc_now
from core.ledger.booking import book_prepared, get_transaction
from core.ledger.holds import HoldProposal, hold_many
from core.ledger.tax import TaxCalculator
from core.ledger.validation import IdempotencyConflict, LedgerError, Prepared, TransactionRequest, prepare
from core.platform.quarantine import Problem, quarantine
from core.platform.warehouse import Warehouse, query_frame, stage_frame

STAGE = "import"
BATCH_SIZE = 5_000
Status = Literal["booked", "duplicate", "held", "quarantined"]


@dataclass(frozen=True)
class Candidate:
    """One record of an import: its request, or why there is none."""

    origin: str
    payload: bytes | str
    request: TransactionRequest | None = None
    error: str | None = None


@dataclass(frozen=True)
class RowOutcome:
    origin: str
    status: Status
    message: str
    key: str | None = None


@dataclass
class ImportReport:
    source: str  # "stripe" | "csv" | "unknown"
    origin: str  # the file name, "stripe-api" or the caller's label
    format: str
    run_id: str | None = None
    rows: list[RowOutcome] = field(default_factory=list)
    error: str | None = None  # set when the import stopped early (the API became unreachable)

    def _count(self, status: Status) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def booked(self) -> int:
        return self._count("booked")

    @property
    def duplicates(self) -> int:
        return self._count("duplicate")

    @property
    def held(self) -> int:
        return self._count("held")

    @property
    def quarantined(self) -> int:
        return self._count("quarantined")

    def messages(self, status: Status | None = None) -> list[str]:
        return [
            f"{row.origin}: {row.status}: {row.message}" for row in self.rows if status is None or row.status == status
        ]

    def summary(self) -> str:
        text = (
            f"{self.origin} ({self.format}): {self.booked} booked, {self.duplicates} duplicates, "
            f"{self.held} held for review, {self.quarantined} quarantined"
        )
        return text + (f"; stopped early: {self.error}" if self.error else "")

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster materialization metadata."""
        return {
            "origin": self.origin,
            "format": self.format,
            "booked": self.booked,
            "duplicates": self.duplicates,
            "held": self.held,
            "quarantined": self.quarantined,
            "problems": self.messages("quarantined")[:50] + self.messages("held")[:50],
            **({"error": self.error} if self.error else {}),
        }


# -- differences, for conflict messages -----------------------------------------------------------


def _gross(content: Mapping[str, Any]) -> dict[str, int]:
    gross: dict[str, int] = {}
    for _account, currency, amount in content["postings"]:
        gross[currency] = max(gross.get(currency, 0), abs(int(amount)))
    return gross


def _shown(gross: Mapping[str, int]) -> str:
    return ", ".join(f"{amount} {currency}" for currency, amount in sorted(gross.items()))


def difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The first field in which two ledger contents differ: 'amount 2900 USD, now 3100 USD'."""
    for name in ("kind", "occurred_at", "experiment_id", "external_ref", "description", "source"):
        if old.get(name) != new.get(name):
            return f"{name} {old.get(name)!r}, now {new.get(name)!r}"
    old_gross, new_gross = _gross(old), _gross(new)
    if set(old_gross) != set(new_gross):
        return f"currency {', '.join(sorted(old_gross))}, now {', '.join(sorted(new_gross))}"
    if old_gross != new_gross:
        return f"amount {_shown(old_gross)}, now {_shown(new_gross)} (minor units)"
    if old["postings"] != new["postings"]:
        return f"postings {old['postings']}, now {new['postings']}"
    for name in sorted(set(old.get("metadata") or {}) | set(new.get("metadata") or {})):
        before, after = (old.get("metadata") or {}).get(name), (new.get("metadata") or {}).get(name)
        if before != after:
            return f"metadata.{name} {before!r}, now {after!r}"
    return "other content"


def nul_field(value: Any, path: str = "") -> str | None:
    """The first field of a transaction's content whose text holds a NUL byte, or None. The same
    record is refused on both backends, so a DuckDB ledger stays loadable into PostgreSQL."""
    if isinstance(value, str):
        return (path or "text") if "\x00" in value else None
    if isinstance(value, Mapping):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for name, item in items:
        found = nul_field(item, name) or (nul_field(name) and name)
        if found:
            return found
    return None


# -- warehouse look-ups ---------------------------------------------------------------------------


def _existing(warehouse: Warehouse, keys: Sequence[str]) -> tuple[dict[str, tuple[str, str]], dict[str, dict]]:
    """Booked keys -> (transaction_id, content_hash); held keys -> hold facts."""
    if not keys:
        return {}, {}
    with warehouse.connect() as conn:
        stage_frame(conn, warehouse.backend, "_vl_import_keys", pd.DataFrame({"k": list(keys)}))
        booked = query_frame(
            conn,
            "SELECT t.idempotency_key, t.transaction_id, t.content_hash "
            "FROM ledger.transactions t JOIN _vl_import_keys s ON s.k = t.idempotency_key",
        )
        held = query_frame(
            conn,
            "SELECT h.idempotency_key, h.hold_id, h.proposed, h.expires_at, d.decision "
            "FROM ledger.holds h JOIN _vl_import_keys s ON s.k = h.idempotency_key "
            "LEFT JOIN ledger.hold_decisions d ON d.hold_id = h.hold_id",
        )
        if warehouse.backend == "duckdb":
            conn.unregister("_vl_import_keys")
    holds = {}
    for row in held.itertuples(index=False):
        proposed = json.loads(row.proposed)
        holds[row.idempotency_key] = {
            "hold_id": row.hold_id,
            "content": proposed["content"],
            "content_hash": proposed["content_hash"],
            "decision": row.decision if isinstance(row.decision, str) else None,
        }
    return {r.idempotency_key: (r.transaction_id, r.content_hash) for r in booked.itertuples(index=False)}, holds


def _quarantine(warehouse: Warehouse, source: str, problems: list[Problem], run_id: str | None) -> None:
    # Idempotent by origin, reason and payload (core.platform.quarantine): a re-import, or another
    # process importing the same file at the same time, stores a bad record once.
    quarantine(warehouse, source, problems, run_id)


# -- the pass -------------------------------------------------------------------------------------


def book_candidates(
    warehouse: Warehouse,
    source: str,
    candidates: Sequence[Candidate],
    report: ImportReport,
    *,
    tax: TaxCalculator | None = None,
    rules: fraud.FraudRules | None = None,
    now: datetime | None = None,
    spend_window: budgets.SpendWindow | None = None,
) -> ImportReport:
    """Book, hold or quarantine every candidate; appends one RowOutcome per candidate to `report`.

    `now` is when the import runs (default: the wall clock): the fraud history counts from it (a
    hold's expiry from its payment's time), and costs must lie within `spend_window` of it. Given, it
    also stamps what the import writes, so a test's import is reproducible."""
    clock = utc_now if now is None else fixed_clock(now)
    now = clock()
    rules = rules or fraud.default_rules()
    outcomes: list[RowOutcome | None] = [None] * len(candidates)
    problems: list[Problem] = []

    def reject(index: int, reason: str, key: str | None = None) -> None:
        candidate = candidates[index]
        outcomes[index] = RowOutcome(candidate.origin, "quarantined", reason, key)
        problems.append(Problem(STAGE, candidate.origin, reason, candidate.payload))

    # 1. validate
    prepared: dict[int, Prepared] = {}
    for index, candidate in enumerate(candidates):
        if candidate.request is None:
            reject(index, candidate.error or "unreadable record")
            continue
        try:
            prepared[index] = prepare(candidate.request, tax)
        except LedgerError as error:
            reject(index, str(error), candidate.request.idempotency_key)
            continue
        field_name = nul_field(prepared[index].content)
        if field_name:
            del prepared[index]
            reject(
                index,
                f"{field_name} holds a NUL byte (0x00), which a PostgreSQL text column cannot store: "
                f"remove it from the source and replay",
                candidate.request.idempotency_key,
            )

    # 2. repeats inside this import
    primary: dict[str, int] = {}
    for index, p in prepared.items():
        first = primary.setdefault(p.key, index)
        if first == index:
            continue
        earlier = prepared[first]
        where = candidates[first].origin
        if earlier.content_hash == p.content_hash:
            outcomes[index] = RowOutcome(candidates[index].origin, "duplicate", f"{p.key} repeats {where}", p.key)
        else:
            reject(
                index,
                f"conflict: {p.key} appears twice with different content; {where} has "
                f"{difference(earlier.content, p.content)}; fix the source and replay",
                p.key,
            )

    # 3. keys the ledger already knows
    booked, held = _existing(warehouse, list(primary))
    new: list[int] = []
    for key, index in primary.items():
        p, origin = prepared[index], candidates[index].origin
        if key in booked:
            tid, digest = booked[key]
            if digest == p.content_hash:
                outcomes[index] = RowOutcome(origin, "duplicate", f"{key} is already booked as transaction {tid}", key)
            else:
                stored = get_transaction(warehouse, tid) or {}
                reject(
                    index,
                    f"conflict: {key} is booked as transaction {tid} with "
                    f"{difference(stored, p.content) if stored else 'other content'}; a correction "
                    f"needs a reversal and a new id, not an edited record",
                    key,
                )
        elif key in held:
            facts = held[key]
            state = facts["decision"] or "pending review"
            if facts["content_hash"] == p.content_hash:
                outcomes[index] = RowOutcome(
                    origin, "duplicate", f"{key} is already held as hold {facts['hold_id']} ({state})", key
                )
            else:
                reject(
                    index,
                    f"conflict: {key} is held as hold {facts['hold_id']} ({state}) with "
                    f"{difference(facts['content'], p.content)}",
                    key,
                )
        else:
            new.append(index)

    # 4. fraud review, then holds and bookings
    events = {index: fraud.event_from_content(prepared[index].content) for index in new}
    incoming = [(index, event) for index, event in events.items() if event is not None]
    verdicts: dict[int, tuple[str, ...]] = {}
    if any(event.kind in fraud.REVENUE_KINDS for _i, event in incoming):
        earliest = min(event.occurred_at for _i, event in incoming)
        history = fraud.load_history(warehouse, min(earliest, now) - timedelta(days=rules.history_days))
        found = fraud.evaluate(history, [event for _i, event in incoming], rules)
        verdicts = {index: reasons for (index, _e), reasons in zip(incoming, found, strict=False) if reasons}
    # The expiry counts from the import (the clock), so a payment imported long after it occurred
    # is still reviewable; concurrent imports may propose different expiries, and hold_many treats
    # those as the same hold (the first stored expiry stands).
    proposals = [
        (index, HoldProposal(p, "; ".join(reasons), _hold_expiry(now, rules), fraud.HOLD_KIND))
        for index, reasons in verdicts.items()
        for p in [prepared[index]]
    ]
    for start in range(0, len(proposals), BATCH_SIZE):
        batch = proposals[start : start + BATCH_SIZE]
        results = hold_many(warehouse, [proposal for _i, proposal in batch], clock=clock)
        for (index, proposal), result in zip(batch, results, strict=True):
            key = proposal.prepared.key
            if isinstance(result, LedgerError):
                reject(index, f"could not be held for review: {result}", key)
            elif result.status == "duplicate":
                message = f"{key} was held meanwhile as hold {result.hold_id}"
                outcomes[index] = RowOutcome(candidates[index].origin, "duplicate", message, key)
            else:
                message = f"held for review as hold {result.hold_id}: {proposal.reason}"
                outcomes[index] = RowOutcome(candidates[index].origin, "held", message, key)
    to_book = [index for index in new if index not in verdicts]
    budgeted = {index for index in to_book if budgets.counts_against_budgets(prepared[index])}
    _book_budgeted(warehouse, sorted(budgeted), prepared, candidates, outcomes, reject, clock, spend_window)
    to_book = [index for index in to_book if index not in budgeted]
    for start in range(0, len(to_book), BATCH_SIZE):
        _book_batch(
            warehouse,
            [(i, prepared[i]) for i in to_book[start : start + BATCH_SIZE]],
            candidates,
            outcomes,
            reject,
            clock,
        )

    _quarantine(warehouse, source, problems, report.run_id)
    report.rows.extend(outcome for outcome in outcomes if outcome is not None)
    return report


def _book_budgeted(
    warehouse: Warehouse,
    indexes: list[int],
    prepared: Mapping[int, Prepared],
    candidates: Sequence[Candidate],
    outcomes: list[RowOutcome | None],
    reject: Any,
    clock: Clock,
    spend_window: budgets.SpendWindow | None,
) -> None:
    """Costs one at a time through the budget check, as core.ledger.budgets.spend books them: a
    refused one is quarantined with why (replayed once the budget or its window allows it)."""
    for index in indexes:
        p = prepared[index]
        try:
            result = budgets.spend_prepared(warehouse, p, clock=clock, spend_window=spend_window)
        except LedgerError as error:
            reject(index, str(error), p.key)
            continue
        if not result.ok:
            reject(index, f"refused by the budgets: {result.reason}", p.key)  # stable: a quarantine key part
            continue
        message = (
            f"booked as transaction {result.transaction_id} (within budget)"
            if result.status == "booked"
            else f"{p.key} was booked meanwhile as transaction {result.transaction_id}"
        )
        status: Status = "booked" if result.status == "booked" else "duplicate"
        outcomes[index] = RowOutcome(candidates[index].origin, status, message, p.key)


def _hold_expiry(now: datetime, rules: fraud.FraudRules) -> datetime:
    """hold_days after the import (the latest time UTC holds, for a clock near year 9999)."""
    start = now.astimezone(UTC)
    latest = datetime.max.replace(tzinfo=UTC)
    days = timedelta(days=rules.hold_days)
    return latest if latest - start < days else start + days


def _book_batch(
    warehouse: Warehouse,
    batch: list[tuple[int, Prepared]],
    candidates: Sequence[Candidate],
    outcomes: list[RowOutcome | None],
    reject: Any,
    clock: Clock,
) -> None:
    """Book one batch in one transaction; a key another writer took meanwhile with other content is
    quarantined and the rest of the batch is booked without it."""
    while batch:
        try:
            results = book_prepared(warehouse, [p for _i, p in batch], clock=clock)
        except IdempotencyConflict as error:
            losers = [i for i, p in batch if p.key == error.key]
            if not losers:
                raise
            for index in losers:
                reject(index, f"conflict: {error}", error.key)
            batch = [(i, p) for i, p in batch if p.key != error.key]
            continue
        for (index, _p), result in zip(batch, results, strict=False):
            message = (
                f"booked as transaction {result.transaction_id}"
                if result.status == "booked"
                else f"{result.idempotency_key} was booked meanwhile as transaction {result.transaction_id}"
            )
            outcomes[index] = RowOutcome(
                candidates[index].origin,
                "booked" if result.status == "booked" else "duplicate",
                message,
                result.idempotency_key,
            )
        return
