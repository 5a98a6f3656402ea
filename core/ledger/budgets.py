"""Budgets: the seed's BudgetEnforcer, made atomic.

A budget limits expense spend in one currency, at global, category or experiment scope, per UTC
hour, day or month. `spend` checks EVERY applicable budget and books the spend in ONE
database transaction, so two spenders can never both see the same headroom:
- on PostgreSQL the transaction holds the audit-chain advisory lock and SELECT ... FOR UPDATE on the
  applicable budget rows until it commits;
- on DuckDB (one writer process) a process-level lock spans the whole transaction.

Spend in a window = the expense postings in the budget's currency whose occurred_at falls in the
UTC hour/day/month containing the spend's occurred_at, counted as below; the category of an expense is the
second segment of its account (expenses:ads:... -> ads); its experiment is the transaction's
experiment_id (or the account's experiment:<id> segment).

Usage can never go below what was truly spent in a window: only debits to expenses count, at their
own occurred_at, and the one credit that frees budget is a reversal of a spend (reverse_spend: the
exact mirror of the original, at most once), counted in the ORIGINAL spend's window. A spend with
a negative expense posting is refused, and so is one dated outside the SpendWindow around the
clock's now, so a backdated or future-dated spend cannot borrow another window's headroom.
Transactions imported from Stripe (fees, adjustments) neither count nor are checked: Stripe took
them from money already received (docs/imports.md, "Budgets").
Limits are never updated in place: a change appends a version to ledger.budget_limits and an audit record.
"""

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from core.ledger.audit import Clock, append_events, utc_iso, utc_now, write_transaction
from core.ledger.booking import book_prepared, get_transaction, retry_on_unique_race, reverse
from core.ledger.money import check_currency, check_minor, format_minor
from core.ledger.tax import TaxCalculator
from core.ledger.validation import (
    ACCOUNT_SEGMENT,
    BookingResult,
    LedgerError,
    Posting,
    Prepared,
    TransactionRequest,
    account_experiment,
    account_type,
    prepare,
)
from core.platform.warehouse import Warehouse, append_frame, run_sql

SCOPES = ("global", "category", "experiment")
PERIODS = ("hour", "day", "month")
GLOBAL_KEY = "*"
_ADJECTIVE = {"hour": "hourly", "day": "daily", "month": "monthly"}
BUDGET_CREATED = "budget.created"
BUDGET_CHANGED = "budget.changed"
# Sources whose expense postings neither count against budgets nor are checked (see the docstring).
UNBUDGETED_SOURCES = ("stripe",)


class BudgetError(ValueError):
    pass


@dataclass(frozen=True)
class Budget:
    budget_id: str
    scope: Literal["global", "category", "experiment"]
    scope_key: str
    period: Literal["hour", "day", "month"]
    currency: str
    limit_minor: int
    version: int = 1

    @property
    def label(self) -> str:
        return f"{_ADJECTIVE[self.period]} {self.currency} budget {self.scope}:{self.scope_key} [{self.budget_id}]"


@dataclass(frozen=True)
class Refusal:
    budget: Budget
    spent_minor: int  # already spent in the window
    requested_minor: int

    @property
    def over_by(self) -> int:
        return self.spent_minor + self.requested_minor - self.budget.limit_minor

    @property
    def message(self) -> str:
        # The seed's wording: "Experiment budget exceeded (1200 > 1000)", plus which budget and by how much.
        total, limit = self.spent_minor + self.requested_minor, self.budget.limit_minor
        return (
            f"{self.budget.scope.capitalize()} budget exceeded ({total} > {limit}): {self.budget.label} "
            f"would be over by {self.over_by} ({format_minor(self.over_by, self.budget.currency)}); "
            f"{self.spent_minor} already spent, {self.requested_minor} requested"
        )

    @property
    def reason(self) -> str:
        """The refusal without the running total: what a quarantined row stores (it is part of the
        quarantine's pending key, so each re-import of a refused row finds the one already stored)."""
        return (
            f"{self.budget.scope.capitalize()} budget exceeded: {self.budget.label} has no room for "
            f"{self.requested_minor} ({format_minor(self.requested_minor, self.budget.currency)}) in its window"
        )


@dataclass(frozen=True)
class SpendWindow:
    """How far a spend's occurred_at may lie before or after the clock's now (budgets.yaml,
    spend_window). Outside it the spend is refused: dated into another hour, day or month, it would
    be checked against that window's headroom instead of the one the money leaves in."""

    past: timedelta = timedelta(days=7)
    future: timedelta = timedelta(minutes=5)

    def problem(self, occurred_at: datetime, now: datetime) -> str | None:
        """Why occurred_at is outside the window around now, or None. The text never names now: it
        is what a quarantined row stores, and each re-import must store the same reason."""
        if occurred_at < now - self.past:
            return (
                f"occurred_at {occurred_at.isoformat()} is more than {self.past} before now: "
                f"a spend is booked when it happens; to book an older cost, widen spend_window.past_days "
                f"in the budgets file and replay it"
            )
        if occurred_at > now + self.future:
            return (
                f"occurred_at {occurred_at.isoformat()} is more than {self.future} after now: "
                f"a spend cannot be booked ahead of time into a later budget window"
            )
        return None


@dataclass(frozen=True)
class SpendResult:
    status: Literal["booked", "duplicate", "refused"]
    idempotency_key: str
    transaction_id: str | None
    refusals: tuple[Refusal, ...] = ()
    problem: str | None = None  # refused for its date (SpendWindow), not by a budget
    checked_at: datetime | None = None  # the clock's now when it was refused

    @property
    def ok(self) -> bool:
        return self.status != "refused"

    @property
    def message(self) -> str:
        """For people: with the running totals, and the time a date was checked against."""
        if self.ok:
            return "Within budget"
        if self.problem:
            return self.problem + (f" (now was {self.checked_at.isoformat()})" if self.checked_at else "")
        return "; ".join(r.message for r in self.refusals)

    @property
    def reason(self) -> str:
        """For a quarantined row: the same for every attempt at the same spend (no clock, no totals)."""
        if self.ok:
            return "Within budget"
        return self.problem or "; ".join(r.reason for r in self.refusals)


class _Refused(Exception):
    def __init__(self, refusals: list[Refusal], problem: str | None = None):
        super().__init__("refused")
        self.refusals = refusals
        self.problem = problem


def window(period: str, at: datetime) -> tuple[datetime, datetime]:
    """The UTC [start, end) of the budget period containing `at`."""
    at = at.astimezone(UTC)
    if period == "hour":
        start = at.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    if period == "day":
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if period == "month":
        start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return start, (start + timedelta(days=32)).replace(day=1)
    raise BudgetError(f"unknown budget period {period!r}: use one of {', '.join(PERIODS)}")


# -- budget definitions ----------------------------------------------------------------------------


def _check_definition(scope: str, scope_key: str, period: str, currency: str, limit_minor: int, at: datetime) -> None:
    if scope not in SCOPES:
        raise BudgetError(f"unknown budget scope {scope!r}: use one of {', '.join(SCOPES)}")
    if scope == "global" and scope_key != GLOBAL_KEY:
        raise BudgetError(f"a global budget has scope_key {GLOBAL_KEY!r}, got {scope_key!r}")
    if scope != "global" and (not isinstance(scope_key, str) or not ACCOUNT_SEGMENT.match(scope_key)):
        raise BudgetError(f"{scope} budget key {scope_key!r} must be an account segment (e.g. ads, exp-1)")
    window(period, at)  # refuses an unknown period
    check_currency(currency)
    if check_minor(limit_minor, currency, allow_zero=True) < 0:
        raise BudgetError(f"budget limit {limit_minor} {currency} is negative; use 0 to stop all spend")


def _current(conn: Any, budget_row: tuple[Any, ...]) -> Budget:
    budget_id, scope, scope_key, period, currency = budget_row
    version, limit = run_sql(
        conn,
        "SELECT version, limit_minor FROM ledger.budget_limits WHERE budget_id = %s ORDER BY version DESC LIMIT 1",
        [budget_id],
    ).fetchone()
    return Budget(budget_id, scope, scope_key, period, currency, int(limit), int(version))


def set_budget(
    warehouse: Warehouse,
    *,
    scope: str,
    period: str,
    currency: str,
    limit_minor: int,
    changed_by: str,
    scope_key: str = GLOBAL_KEY,
    reason: str = "",
    at: datetime | None = None,
) -> Budget:
    """Create a budget or change its limit (a new version) at `at` (default now); both are audited.
    Same limit: no-op."""
    at = at or utc_now()
    _check_definition(scope, scope_key, period, currency, limit_minor, at)
    if not changed_by:
        raise BudgetError("changed_by is required: budget changes are audited by who made them")

    def attempt() -> Budget:
        with write_transaction(warehouse) as conn:
            row = run_sql(
                conn,
                "SELECT budget_id, scope, scope_key, period, currency FROM ledger.budgets "
                "WHERE scope = %s AND scope_key = %s AND period = %s AND currency = %s",
                [scope, scope_key, period, currency],
            ).fetchone()
            if row is None:
                return _create(
                    conn, warehouse.backend, scope, scope_key, period, currency, limit_minor, changed_by, reason, at
                )
            if warehouse.backend == "postgres":
                run_sql(conn, "SELECT budget_id FROM ledger.budgets WHERE budget_id = %s FOR UPDATE", [row[0]])
            current = _current(conn, row)
            if current.limit_minor == limit_minor:
                return current
            changed = Budget(
                current.budget_id,
                current.scope,
                current.scope_key,
                current.period,
                current.currency,
                limit_minor,
                current.version + 1,
            )
            _append_limit(conn, warehouse.backend, changed, changed_by, reason, at)
            append_events(
                conn,
                warehouse.backend,
                [
                    (
                        BUDGET_CHANGED,
                        {**_payload(changed, changed_by, reason, at), "previous_limit_minor": current.limit_minor},
                    )
                ],
            )
            return changed

    return retry_on_unique_race(attempt)


def _payload(budget: Budget, changed_by: str, reason: str, at: datetime) -> dict[str, Any]:
    # changed_at is what budget_utilization picks the limit in force by: verify reconciles it.
    return {
        "budget_id": budget.budget_id,
        "scope": budget.scope,
        "scope_key": budget.scope_key,
        "period": budget.period,
        "currency": budget.currency,
        "limit_minor": budget.limit_minor,
        "version": budget.version,
        "changed_by": changed_by,
        "reason": reason,
        "changed_at": utc_iso(at),
    }


def _append_limit(conn: Any, backend: str, budget: Budget, changed_by: str, reason: str, at: datetime) -> None:
    append_frame(
        conn,
        backend,
        "ledger.budget_limits",
        pd.DataFrame(
            [
                {
                    "budget_id": budget.budget_id,
                    "version": budget.version,
                    "limit_minor": budget.limit_minor,
                    "changed_at": pd.Timestamp(at).tz_convert(UTC),
                    "changed_by": changed_by,
                    "reason": reason,
                }
            ]
        ),
    )


def _create(
    conn: Any,
    backend: str,
    scope: str,
    scope_key: str,
    period: str,
    currency: str,
    limit_minor: int,
    changed_by: str,
    reason: str,
    at: datetime,
) -> Budget:
    budget = Budget(str(uuid.uuid4()), scope, scope_key, period, currency, limit_minor, 1)  # type: ignore[arg-type]
    append_frame(
        conn,
        backend,
        "ledger.budgets",
        pd.DataFrame(
            [
                {
                    "budget_id": budget.budget_id,
                    "scope": scope,
                    "scope_key": scope_key,
                    "period": period,
                    "currency": currency,
                    "limit_minor": limit_minor,
                    "created_at": pd.Timestamp(at).tz_convert(UTC),
                }
            ]
        ),
    )
    _append_limit(conn, backend, budget, changed_by, reason, at)
    append_events(conn, backend, [(BUDGET_CREATED, _payload(budget, changed_by, reason, at))])
    return budget


def list_budgets(warehouse: Warehouse) -> list[Budget]:
    with warehouse.connect() as conn:
        rows = run_sql(
            conn,
            "SELECT budget_id, scope, scope_key, period, currency FROM ledger.budgets "
            "ORDER BY scope, scope_key, period, currency",
            None,
        ).fetchall()
        return [_current(conn, row) for row in rows]


# -- spending --------------------------------------------------------------------------------------


def expense(
    idempotency_key: str,
    account: str,
    amount_minor: int,
    currency: str,
    occurred_at: datetime,
    *,
    paid_from: str,
    description: str,
    experiment_id: str | None = None,
    source: str = "budget",
    external_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> TransactionRequest:
    """A plain spend: debit the expense account, credit the account that paid (cash, a card liability)."""
    return TransactionRequest(
        idempotency_key=idempotency_key,
        kind="spend",
        description=description,
        occurred_at=occurred_at,
        postings=[Posting(account, currency, amount_minor), Posting(paid_from, currency, -amount_minor)],
        experiment_id=experiment_id,
        source=source,
        external_ref=external_ref,
        metadata=metadata or {},
    )


def _deltas(prepared: Prepared) -> dict[tuple[str, str, str], int]:
    """How much this transaction adds to each (scope, key, currency)."""
    deltas: dict[tuple[str, str, str], int] = defaultdict(int)
    request = prepared.request
    for posting in request.postings:
        if account_type(posting.account) != "expense":
            continue
        experiment = request.experiment_id or account_experiment(posting.account)
        scopes = [("global", GLOBAL_KEY), ("category", posting.account.split(":")[1])]
        scopes += [("experiment", experiment)] if experiment else []
        for scope, key in scopes:
            deltas[(scope, key, posting.currency)] += posting.amount_minor
    return dict(deltas)


def _spent(conn: Any, budget: Budget, at: datetime) -> int:
    """Debits to expenses dated in the window, less reversals of spends dated in it (a reversal
    counts where its original does, so it never frees another window); other credits never count."""
    unbudgeted = ", ".join(["%s"] * len(UNBUDGETED_SOURCES))
    sql = (
        "SELECT CAST(coalesce(sum(p.amount_minor), 0) AS BIGINT) FROM ledger.postings p "
        "JOIN ledger.transactions t ON t.transaction_id = p.transaction_id "
        "LEFT JOIN ledger.transactions o ON o.transaction_id = t.reverses_transaction_id "
        f"WHERE p.currency = %s AND split_part(p.account_id, ':', 1) = 'expenses' AND t.source NOT IN ({unbudgeted})"
    )
    params: list[Any] = [budget.currency, *UNBUDGETED_SOURCES]
    if budget.scope == "category":
        sql += " AND split_part(p.account_id, ':', 2) = %s"
        params.append(budget.scope_key)
    elif budget.scope == "experiment":
        sql += " AND p.experiment_id = %s"
        params.append(budget.scope_key)
    sql += (
        " AND ((t.reverses_transaction_id IS NULL AND p.amount_minor > 0"
        " AND p.occurred_at >= %s AND p.occurred_at < %s)"
        " OR (t.reverses_transaction_id IS NOT NULL AND p.amount_minor < 0"
        " AND o.occurred_at >= %s AND o.occurred_at < %s))"
    )
    params += [*window(budget.period, at), *window(budget.period, at)]
    return int(run_sql(conn, sql, params).fetchone()[0])


def _refusals(conn: Any, backend: str, prepared: Prepared) -> list[Refusal]:
    deltas = _deltas(prepared)
    rows = [
        row
        for row in run_sql(
            conn, "SELECT budget_id, scope, scope_key, period, currency FROM ledger.budgets ORDER BY budget_id", None
        ).fetchall()
        if deltas.get((row[1], row[2], row[4]), 0) > 0
    ]
    if rows and backend == "postgres":
        # Row locks in budget_id order (no deadlocks); held until commit, with the chain lock.
        run_sql(
            conn,
            "SELECT budget_id FROM ledger.budgets WHERE budget_id = ANY(%s) ORDER BY budget_id FOR UPDATE",
            [[row[0] for row in rows]],
        )
    refusals = []
    for row in rows:
        budget = _current(conn, row)
        requested = deltas[(budget.scope, budget.scope_key, budget.currency)]
        spent = _spent(conn, budget, prepared.request.occurred_at)
        if spent + requested > budget.limit_minor:
            refusals.append(Refusal(budget, spent, requested))
    return sorted(refusals, key=lambda r: (SCOPES.index(r.budget.scope), PERIODS.index(r.budget.period)))


def counts_against_budgets(prepared: Prepared) -> bool:
    """Whether booking this transaction must go through the budget check (spend_prepared)."""
    return prepared.request.source not in UNBUDGETED_SOURCES and bool(_deltas(prepared))


def _check_spend(prepared: Prepared) -> None:
    request = prepared.request
    if request.source in UNBUDGETED_SOURCES:
        # _spent never counts these sources, so a spend tagged with one would pass every check.
        raise LedgerError(
            f"spend {prepared.key!r} has source {request.source!r}, which budgets never count "
            f"({', '.join(UNBUDGETED_SOURCES)}: the processor's own fees, booked by its import); "
            f"a spend needs another source"
        )
    if not _deltas(prepared):
        raise LedgerError(
            f"spend {prepared.key!r} has no expense posting (expenses:<category>:...): book it with ledger.book instead"
        )
    if request.reverses_transaction_id:
        raise LedgerError(
            f"spend {prepared.key!r} reverses {request.reverses_transaction_id}: undo a spend with reverse_spend()"
        )
    for posting in request.postings:
        if account_type(posting.account) == "expense" and posting.amount_minor < 0:
            raise LedgerError(
                f"spend {prepared.key!r} credits {posting.account} by "
                f"{format_minor(posting.amount_minor, posting.currency)}: "
                f"a spend is a positive amount; a spend that was undone is a reversal of it (reverse_spend), "
                f"which never frees more than the original"
            )


def spend_prepared(
    warehouse: Warehouse,
    prepared: Prepared,
    *,
    clock: Clock = utc_now,
    spend_window: SpendWindow | None = None,
    in_transaction: Callable[[Any, str], None] | None = None,
) -> SpendResult:
    """spend() for a transaction already prepared (the imports' cost rows)."""
    _check_spend(prepared)
    spend_window = spend_window or SpendWindow()

    checked: list[datetime] = []

    def check(conn: Any, backend: str, new: list[Prepared]) -> None:
        if not new:
            if in_transaction:
                in_transaction(conn, backend)
            return  # a repeated key: the original stands, however old it is now
        checked.append(clock())
        problem = spend_window.problem(new[0].request.occurred_at, checked[-1])
        if problem:
            raise _Refused([], problem)
        refusals = _refusals(conn, backend, new[0])
        if refusals:
            raise _Refused(refusals)
        if in_transaction:
            in_transaction(conn, backend)

    try:
        result = book_prepared(warehouse, [prepared], check, clock=clock)[0]
    except _Refused as refused:
        at = checked[-1] if checked else None
        return SpendResult("refused", prepared.key, None, tuple(refused.refusals), refused.problem, at)
    return SpendResult(result.status, prepared.key, result.transaction_id)


def spend(
    warehouse: Warehouse,
    request: TransactionRequest,
    *,
    tax: TaxCalculator | None = None,
    clock: Clock = utc_now,
    spend_window: SpendWindow | None = None,
    in_transaction: Callable[[Any, str], None] | None = None,
) -> SpendResult:
    """Book a spend if every applicable budget allows it, atomically; otherwise book nothing and say
    which budgets refused and by how much. A repeated key returns the original (no re-check).

    The windows are those containing the spend's occurred_at, which must lie within `spend_window`
    (default SpendWindow(); the budgets file's is budget_config.load_spend_window) of the clock's
    now; `clock` also stamps its recorded_at. Every expense posting must be positive.
    `in_transaction(conn, backend)` runs inside the booking's transaction once the spend is allowed
    (or is a repeat), so the caller's own record of it (the executor's checkpoint) commits with it."""
    return spend_prepared(
        warehouse, prepare(request, tax), clock=clock, spend_window=spend_window, in_transaction=in_transaction
    )


def reverse_spend(
    warehouse: Warehouse,
    transaction_id: str,
    idempotency_key: str,
    reason: str,
    *,
    occurred_at: datetime | None = None,
    clock: Clock = utc_now,
) -> BookingResult:
    """Undo a spend: its exact mirror, linked to it, at most once (core.ledger.booking.reverse). It
    frees the budget of the window the spend was counted in, never more than the spend."""
    original = get_transaction(warehouse, transaction_id)
    if original is None:
        raise LedgerError(f"cannot reverse spend {transaction_id}: no such transaction in ledger.transactions")
    debits = [p for p in original["postings"] if account_type(p[0]) == "expense" and int(p[2]) > 0]
    if original["source"] in UNBUDGETED_SOURCES or original["reverses_transaction_id"] or not debits:
        raise LedgerError(
            f"cannot reverse spend {transaction_id}: it is not a spend counted against budgets "
            f"(kind {original['kind']!r}, source {original['source']!r}); use core.ledger.booking.reverse"
        )
    return reverse(warehouse, transaction_id, idempotency_key, reason, occurred_at=occurred_at, clock=clock)


def utilization(warehouse: Warehouse, at: datetime | None = None) -> pd.DataFrame:
    """Every budget with its spend in the window containing `at` (now by default)."""
    at = at or utc_now()
    rows = []
    with warehouse.connect() as conn:
        for budget in [
            _current(conn, row)
            for row in run_sql(
                conn,
                "SELECT budget_id, scope, scope_key, period, currency FROM ledger.budgets "
                "ORDER BY scope, scope_key, period, currency",
                None,
            ).fetchall()
        ]:
            spent = _spent(conn, budget, at)
            start, end = window(budget.period, at)
            rows.append(
                {
                    "budget_id": budget.budget_id,
                    "scope": budget.scope,
                    "scope_key": budget.scope_key,
                    "period": budget.period,
                    "currency": budget.currency,
                    "limit_minor": budget.limit_minor,
                    "spent_minor": spent,
                    "remaining_minor": budget.limit_minor - spent,
                    "window_start": start,
                    "window_end": end,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "budget_id",
            "scope",
            "scope_key",
            "period",
            "currency",
            "limit_minor",
            "spent_minor",
            "remaining_minor",
            "window_start",
            "window_end",
        ],
    )
