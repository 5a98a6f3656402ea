"""Pending holds: a transaction proposed but not booked (fraud review, reservation) until it is decided.

A hold shares its transaction's idempotency key, so posting it books exactly that transaction. It is
posted, voided or expired exactly once (the ledger.hold_decisions primary key); a decision after
expires_at records the expiry instead. Expiry is observed, not timed: by the next decision or by
expire_holds. Every creation and decision appends its audit record in the same database transaction.
"""

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from core.ledger.audit import Clock, append_events, canonical_json, utc_iso, utc_now, write_transaction
from core.ledger.booking import _select_in as select_in  # the same package's bulk IN look-up
from core.ledger.booking import book_in_transaction, booked_keys, idempotency_conflict, retry_on_unique_race
from core.ledger.tax import TaxCalculator
from core.ledger.validation import (
    HoldError,
    HoldExpired,
    IdempotencyConflict,
    LedgerError,
    Prepared,
    TransactionRequest,
    prepare,
    prepared_from_content,
)
from core.platform.warehouse import Warehouse, append_frame, run_sql

HOLD_CREATED = "ledger.hold_created"
HOLD_DECIDED = "ledger.hold_decided"


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


@dataclass(frozen=True)
class HoldProposal:
    """One transaction to hold, validated already (core.ledger.validation.prepare)."""

    prepared: Prepared
    reason: str
    expires_at: datetime
    kind: str = "review"


def hold(
    warehouse: Warehouse,
    request: TransactionRequest,
    *,
    reason: str,
    expires_at: datetime,
    kind: str = "review",
    tax: TaxCalculator | None = None,
    clock: Clock = utc_now,
) -> HoldResult:
    """Propose a transaction without booking it (fraud review, reservation) until it is decided.

    The hold shares the transaction's idempotency key: posting it books exactly that transaction."""
    [outcome] = hold_many(warehouse, [HoldProposal(prepare(request, tax), reason, expires_at, kind)], clock=clock)
    if isinstance(outcome, LedgerError):
        raise outcome
    return outcome


def hold_many(
    warehouse: Warehouse, proposals: Sequence[HoldProposal], *, clock: Clock = utc_now
) -> list[HoldResult | LedgerError]:
    """Propose many holds in one write transaction (one insert per table, one audit append), as
    bookings are batched. Each proposal gets its own outcome, in order: its HoldResult, or the
    error that refuses it alone (HoldError: already booked; IdempotencyConflict: held with other
    content or kind), so one refused hold never fails the others. A re-proposal with the same
    content and kind is a duplicate whatever its reason and expiry: the first stored ones stand."""
    outcomes: list[HoldResult | LedgerError | None] = [None] * len(proposals)
    for index, proposal in enumerate(proposals):
        expires_at = proposal.expires_at
        if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
            outcomes[index] = HoldError(f"hold {proposal.prepared.key!r}: expires_at must be a timezone-aware datetime")
    keys = sorted({p.prepared.key for i, p in enumerate(proposals) if outcomes[i] is None})
    if not keys:
        return [o for o in outcomes if o is not None]
    with write_transaction(warehouse) as conn:
        backend = warehouse.backend
        booked = booked_keys(conn, backend, keys)
        stored = {
            row[0]: row[1:]
            for row in select_in(
                conn,
                backend,
                "SELECT idempotency_key, hold_id, kind, reason, proposed, expires_at FROM ledger.holds WHERE {match}",
                "idempotency_key",
                keys,
            )
        }
        now = clock()
        rows, events = [], []
        for index, proposal in enumerate(proposals):
            if outcomes[index] is not None:
                continue
            prepared = proposal.prepared
            key = prepared.key
            if key in booked:
                outcomes[index] = HoldError(
                    f"idempotency key {key} is already booked as transaction {booked[key][0]}: "
                    f"there is nothing left to hold"
                )
                continue
            if key in stored:  # held before, or earlier in this batch
                try:
                    _same_hold(prepared, stored[key], proposal.kind)
                except LedgerError as error:
                    outcomes[index] = error
                    continue
                outcomes[index] = HoldResult(stored[key][0], "duplicate", key)
                continue
            hold_id = str(uuid.uuid4())
            proposed = canonical_json({"content": prepared.content, "content_hash": prepared.content_hash})
            expires_at = proposal.expires_at.astimezone(UTC)
            stored[key] = (hold_id, proposal.kind, proposal.reason, proposed, expires_at)
            rows.append(
                {
                    "hold_id": hold_id,
                    "idempotency_key": key,
                    "kind": proposal.kind,
                    "reason": proposal.reason,
                    "proposed": proposed,
                    "created_at": now,
                    "expires_at": expires_at,
                }
            )
            events.append(
                (
                    HOLD_CREATED,
                    {
                        "hold_id": hold_id,
                        "idempotency_key": key,
                        "content_hash": prepared.content_hash,
                        "kind": proposal.kind,
                        "reason": proposal.reason,
                        "expires_at": utc_iso(expires_at),
                    },
                )
            )
            outcomes[index] = HoldResult(hold_id, "held", key)
        if rows:
            append_frame(conn, backend, "ledger.holds", pd.DataFrame(rows))
            append_events(conn, backend, events, now)
    return [o for o in outcomes if o is not None]


def _same_hold(prepared: Prepared, row: Sequence[Any], kind: str) -> None:
    """A re-proposal of the same content and kind is the same hold: the first stored expiry and
    reason stand. Both derive from the proposing process (its clock, the history it sees), so two
    processes importing one file at once may differ there without meaning different holds."""
    stored = json.loads(row[3])
    if stored["content_hash"] != prepared.content_hash:
        raise idempotency_conflict(prepared.key, stored["content"], prepared.content, "for a hold ")
    if row[1] != kind:
        raise IdempotencyConflict(
            prepared.key,
            "kind",
            f"idempotency key {prepared.key} was used for a hold with kind {row[1]!r}, now {kind!r}",
        )


def _held_transaction(hold_id: str, proposed: Mapping[str, Any]) -> Prepared:
    prepared = prepared_from_content(proposed["content"])
    if prepared.content_hash != proposed["content_hash"]:
        raise HoldError(
            f"hold {hold_id}: the proposed transaction no longer matches its content hash (the row "
            f"was edited); run `ventureloop ledger verify` and do not post it"
        )
    return prepared


def _load_hold(conn: Any, hold_id: str) -> tuple[dict[str, Any], datetime, tuple[Any, ...] | None]:
    row = run_sql(conn, "SELECT proposed, expires_at FROM ledger.holds WHERE hold_id = %s", [hold_id]).fetchone()
    if row is None:
        raise HoldError(f"hold {hold_id} does not exist in ledger.holds")
    decided = run_sql(
        conn,
        "SELECT decision, decided_by, decided_at, transaction_id FROM ledger.hold_decisions WHERE hold_id = %s",
        [hold_id],
    ).fetchone()
    return json.loads(row[0]), pd.Timestamp(row[1]).to_pydatetime(), decided


def audited_decisions(conn: Any, hold_id: str | None = None) -> dict[str, tuple[int, dict[str, Any]]]:
    """hold_id -> (seq, payload) of the first hold_decided audit record of each hold (of `hold_id`
    alone if given). The audit chain, not ledger.hold_decisions, is what says a hold was decided:
    a deleted decision row must not make a rejected hold decidable again."""
    sql, params = "SELECT seq, payload FROM audit.events WHERE event_type = %s", [HOLD_DECIDED]
    if hold_id is not None:  # canonical JSON: the exact text of the key; json.loads below confirms it
        sql, params = sql + " AND payload LIKE %s", [*params, f'%"hold_id":{canonical_json(hold_id)}%']
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    for seq, text in run_sql(conn, sql + " ORDER BY seq", params).fetchall():
        try:
            payload = json.loads(text)
        except ValueError:
            continue  # an edited record: verify reports it
        if isinstance(payload, dict) and (hold_id is None or payload.get("hold_id") == hold_id):
            found.setdefault(payload.get("hold_id"), (int(seq), payload))
    return found


def _record_decisions(conn: Any, backend: str, decisions: Sequence[HoldDecision]) -> None:
    append_frame(
        conn,
        backend,
        "ledger.hold_decisions",
        pd.DataFrame(
            [
                {
                    "hold_id": d.hold_id,
                    "decision": d.decision,
                    "decided_by": d.decided_by,
                    "decided_at": pd.Timestamp(d.decided_at).tz_convert(UTC),
                    "transaction_id": d.transaction_id,
                    "note": d.note,
                }
                for d in decisions
            ]
        ),
    )
    append_events(
        conn,
        backend,
        [
            (
                HOLD_DECIDED,
                {
                    "hold_id": d.hold_id,
                    "decision": d.decision,
                    "decided_by": d.decided_by,
                    "decided_at": utc_iso(d.decided_at),
                    "transaction_id": d.transaction_id,
                    "note": d.note,
                },
            )
            for d in decisions
        ],
    )


def _decide(
    warehouse: Warehouse,
    hold_id: str,
    decision: Literal["posted", "voided"],
    decided_by: str,
    note: str | None,
    at: datetime | None,
    clock: Clock,
) -> HoldDecision:
    at = at or clock()
    if at.tzinfo is None:
        raise HoldError(f"hold {hold_id}: the decision time must be timezone-aware")

    def attempt() -> HoldDecision:
        with write_transaction(warehouse) as conn:
            proposed, expires_at, decided = _load_hold(conn, hold_id)
            audited = None if decided else audited_decisions(conn, hold_id).get(hold_id)
            if audited:
                raise HoldError(
                    f"hold {hold_id} was already {audited[1].get('decision')} (audit seq {audited[0]}) but its "
                    f"ledger.hold_decisions row is missing: the table was tampered with; a hold is decided "
                    f"exactly once, so it cannot now be {decision}; run `ventureloop ledger verify`"
                )
            if decided:
                raise HoldError(
                    f"hold {hold_id} was already {decided[0]} by {decided[1]} at {utc_iso(decided[2])}"
                    + (f" (transaction {decided[3]})" if decided[3] else "")
                    + f"; a hold is decided exactly once, it cannot now be {decision}"
                )
            if at >= expires_at:
                outcome = HoldDecision(hold_id, "expired", decided_by, at, None, f"expired at {utc_iso(expires_at)}")
            else:
                tid = None
                if decision == "posted":
                    tid = book_in_transaction(
                        conn,
                        warehouse.backend,
                        [_held_transaction(hold_id, proposed)],
                        posting_hold=hold_id,
                        clock=clock,
                    )[0].transaction_id
                outcome = HoldDecision(hold_id, decision, decided_by, at, tid, note)
            _record_decisions(conn, warehouse.backend, [outcome])
            return outcome

    return retry_on_unique_race(attempt)


def post_hold(
    warehouse: Warehouse,
    hold_id: str,
    *,
    decided_by: str,
    note: str | None = None,
    at: datetime | None = None,
    clock: Clock = utc_now,
) -> HoldDecision:
    """Book the held transaction; raises HoldExpired (after recording the expiry) if it is too late.

    `at` is the decision time (default: the clock's now), compared with the hold's expires_at;
    `clock` also stamps the booked transaction's recorded_at."""
    outcome = _decide(warehouse, hold_id, "posted", decided_by, note, at, clock)
    if outcome.decision == "expired":
        raise HoldExpired(
            f"hold {hold_id} {outcome.note} and was not posted; propose it again as a new hold "
            f"under a new idempotency key"
        )
    return outcome


def void_hold(
    warehouse: Warehouse,
    hold_id: str,
    *,
    decided_by: str,
    note: str | None = None,
    at: datetime | None = None,
    clock: Clock = utc_now,
) -> HoldDecision:
    """Drop the held transaction; nothing is booked. Past its expiry the decision recorded is 'expired'."""
    return _decide(warehouse, hold_id, "voided", decided_by, note, at, clock)


def expire_holds(warehouse: Warehouse, now: datetime) -> list[HoldDecision]:
    """Record 'expired' for every undecided hold whose expires_at <= now (expiry is observed, not timed)."""
    if now.tzinfo is None:
        raise HoldError("expire_holds needs a timezone-aware now")
    with write_transaction(warehouse) as conn:
        rows = run_sql(
            conn,
            "SELECT h.hold_id, h.expires_at FROM ledger.holds h LEFT JOIN ledger.hold_decisions d "
            "ON d.hold_id = h.hold_id WHERE d.hold_id IS NULL AND h.expires_at <= %s "
            "ORDER BY h.expires_at, h.hold_id",
            [now],
        ).fetchall()
        audited = audited_decisions(conn) if rows else {}  # decided by the chain, row deleted: not again
        decisions = [
            HoldDecision(hold_id, "expired", "system:expiry", now, None, f"expired at {utc_iso(expires)}")
            for hold_id, expires in rows
            if hold_id not in audited
        ]
        if decisions:
            _record_decisions(conn, warehouse.backend, decisions)
    return decisions


def pending_holds(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.query(
        "SELECT h.hold_id, h.idempotency_key, h.kind, h.reason, h.created_at, h.expires_at, h.proposed "
        "FROM ledger.holds h LEFT JOIN ledger.hold_decisions d ON d.hold_id = h.hold_id "
        "WHERE d.hold_id IS NULL ORDER BY h.expires_at, h.hold_id"
    )
