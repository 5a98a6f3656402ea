"""Fraud review: the people-facing side of the holds the imports create (core.ledger.fraud, kind fraud_review).

    list_holds(warehouse)                   what waits for review (and, on request, what was decided)
    release(warehouse, hold_id, by, note)   book the held transaction exactly as proposed (post_hold)
    reject(warehouse, hold_id, by, note)    never book it (void_hold)

Both decisions go through core.ledger, which records them in ledger.hold_decisions (a hold is
decided once) and appends a ledger.hold_decided audit event with who, when and the note, in the same
database transaction. A hold past its expiry is shown as expired; releasing it records the expiry
and raises core.ledger.HoldExpired, so a stale review can never book money.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd

from core.ledger.audit import Clock, utc_now
from core.ledger.fraud import HOLD_KIND
from core.ledger.holds import HoldDecision, post_hold, void_hold
from core.ledger.money import format_minor
from core.ledger.validation import HoldError
from core.platform.warehouse import Warehouse

Status = Literal["pending", "expired", "released", "rejected"]
_DECISION_STATUS = {"posted": "released", "voided": "rejected", "expired": "expired"}


class ReviewError(HoldError):
    pass


@dataclass(frozen=True)
class HoldView:
    hold_id: str
    idempotency_key: str
    status: Status
    reason: str
    created_at: datetime
    expires_at: datetime
    kind: str
    description: str
    experiment_id: str | None
    source: str
    occurred_at: str
    amounts: str  # "29.00 USD" (the largest posting per currency)
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None
    transaction_id: str | None = None

    @property
    def pending(self) -> bool:
        return self.status == "pending"


def _when(value: Any) -> datetime | None:
    if value is None or (not isinstance(value, datetime) and pd.isna(value)):
        return None
    return pd.Timestamp(value).tz_convert(UTC).to_pydatetime()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _amounts(postings: list[list[Any]]) -> str:
    gross: dict[str, int] = {}
    for _account, currency, amount in postings:
        gross[currency] = max(gross.get(currency, 0), abs(int(amount)))
    return ", ".join(format_minor(amount, currency) for currency, amount in sorted(gross.items()))


def list_holds(
    warehouse: Warehouse, *, include_decided: bool = False, now: datetime | None = None, kind: str = HOLD_KIND
) -> list[HoldView]:
    """Holds of `kind`, soonest expiry first. Undecided holds past their expiry are 'expired' (the
    ledger records the expiry when someone tries to decide them or runs expire_holds)."""
    now = now or utc_now()
    frame = warehouse.query(
        "SELECT h.hold_id, h.idempotency_key, h.kind, h.reason, h.proposed, h.created_at, h.expires_at, "
        "d.decision, d.decided_by, d.decided_at, d.note, d.transaction_id "
        "FROM ledger.holds h LEFT JOIN ledger.hold_decisions d ON d.hold_id = h.hold_id "
        "WHERE h.kind = %s ORDER BY h.expires_at, h.hold_id",
        [kind],
    )
    views = []
    for row in frame.to_dict("records"):
        decision = _text(row["decision"])
        expires = _when(row["expires_at"])
        if decision:
            status: Status = _DECISION_STATUS.get(decision, "expired")  # type: ignore[assignment]
        else:
            status = "expired" if expires is not None and expires <= now else "pending"
        if decision and not include_decided:
            continue
        content = json.loads(row["proposed"])["content"]
        views.append(
            HoldView(
                hold_id=row["hold_id"],
                idempotency_key=row["idempotency_key"],
                status=status,
                reason=row["reason"],
                created_at=_when(row["created_at"]),
                expires_at=expires,
                kind=content["kind"],  # type: ignore[arg-type]
                description=content["description"],
                experiment_id=content["experiment_id"],
                source=content["source"],
                occurred_at=content["occurred_at"],
                amounts=_amounts(content["postings"]),
                decided_by=_text(row["decided_by"]),
                decided_at=_when(row["decided_at"]),
                note=_text(row["note"]),
                transaction_id=_text(row["transaction_id"]),
            )
        )
    return views


def _check(warehouse: Warehouse, hold_id: str, by: str, note: str, action: str) -> None:
    if not isinstance(by, str) or not by.strip():
        raise ReviewError(f"{action} of hold {hold_id}: say who decides (by='alice@example.com')")
    if not isinstance(note, str) or not note.strip():
        raise ReviewError(f"{action} of hold {hold_id}: a review decision needs a note saying why")
    kind = warehouse.scalar("SELECT kind FROM ledger.holds WHERE hold_id = %s", [hold_id])
    if kind is None:
        raise ReviewError(f"hold {hold_id} does not exist; list_holds() shows the holds waiting for review")
    if kind != HOLD_KIND:
        raise ReviewError(f"hold {hold_id} is a {kind!r} hold, not a fraud review; decide it where it was made")


def release(
    warehouse: Warehouse, hold_id: str, by: str, note: str, *, at: datetime | None = None, clock: Clock = utc_now
) -> HoldDecision:
    """Book the held transaction as proposed. Raises HoldExpired past its expiry, HoldError if decided.
    `at` is the decision time (default: the clock's now), as for core.ledger.holds.post_hold."""
    _check(warehouse, hold_id, by, note, "release")
    return post_hold(warehouse, hold_id, decided_by=by.strip(), note=note.strip(), at=at, clock=clock)


def reject(
    warehouse: Warehouse, hold_id: str, by: str, note: str, *, at: datetime | None = None, clock: Clock = utc_now
) -> HoldDecision:
    """Never book the held transaction; re-importing its record later is a duplicate, not a booking.
    Past its expiry the decision recorded is 'expired'."""
    _check(warehouse, hold_id, by, note, "reject")
    return void_hold(warehouse, hold_id, decided_by=by.strip(), note=note.strip(), at=at, clock=clock)
