"""The generic CSV of revenue, refund and cost events from anywhere that is not Stripe.

Spec (docs/imports.md, "Generic CSV"): UTF-8, a header row, one event per row. Columns:

    event_id          required  unique per event across every generic file; key "csv:<event_id>"
    occurred_at       required  ISO 8601 with a UTC offset (2026-11-02T12:00:00Z, ...+01:00)
    kind              required  revenue | refund | cost
    amount            required  positive decimal in major units (29.00); kind gives the direction
    currency          required  upper-case ISO 4217 code (USD, EUR, JPY, KWD)
    experiment_id     optional  the experiment the money belongs to
    account           optional  revenue/refund: a revenue:* account (default revenue:experiment:<id>
                                or revenue:unattributed); cost: an expenses:* account (default
                                expenses:uncategorized)
    cash_account      optional  where the money moved: assets:* or liabilities:* (default
                                assets:cash:bank:<currency>)
    counterparty      optional  the customer or vendor
    description       optional  free text
    customer_country  optional  ISO 3166-1 alpha-2 (DE, US); revenue and refund only: the tax hook
                                moves the tax share to liabilities:tax:<country>

Validation is strict: an unknown or missing column rejects the whole file (a typo would otherwise
silently drop a field); a bad value rejects its row.
"""

import re
from collections.abc import Mapping
from datetime import datetime

from core.ledger.imports.detect import BadRow, currency_code, decimal_minor, payment_time
from core.ledger.validation import LedgerError, Posting, TransactionRequest, account_type

SOURCE = "csv"
REQUIRED = ("event_id", "occurred_at", "kind", "amount", "currency")
OPTIONAL = ("experiment_id", "account", "cash_account", "counterparty", "description", "customer_country")
KINDS = ("revenue", "refund", "cost")
DEFAULT_COST_ACCOUNT = "expenses:uncategorized"
_ID = re.compile(r"^\S{1,200}$")
_EXPERIMENT = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def check_header(header: list[str]) -> None:
    """Raise BadRow naming every missing, unknown or repeated column."""
    problems = []
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        problems.append(f"repeated columns {repeated}")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        problems.append(f"missing required columns {missing}")
    unknown = [c for c in header if c not in REQUIRED and c not in OPTIONAL]
    if unknown:
        problems.append(f"unknown columns {unknown}")
    if problems:
        raise BadRow(
            f"generic CSV header: {'; '.join(problems)}. Columns are {list(REQUIRED)} (required) and "
            f"{list(OPTIONAL)} (optional), in lower case; see docs/imports.md"
        )


def _account(value: str, name: str, roots: tuple[str, ...]) -> str:
    try:
        kind = account_type(value)
    except LedgerError as error:
        raise BadRow(f"{name}: {error}") from None
    if not value.startswith(tuple(f"{root}:" for root in roots)):
        raise BadRow(f"{name} {value!r} is a {kind} account; here it must be under {' or '.join(roots)}")
    return value


def to_request(row: Mapping[str, str]) -> TransactionRequest:
    cell = {name: (row.get(name) or "").strip() for name in (*REQUIRED, *OPTIONAL)}
    event_id = cell["event_id"]
    if not _ID.match(event_id):
        raise BadRow(f"event_id is {event_id!r}: every event needs an id without spaces (the idempotency key)")
    kind = cell["kind"]
    if kind not in KINDS:
        raise BadRow(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    if not cell["occurred_at"]:
        raise BadRow("occurred_at is empty: give an ISO 8601 time with offset, e.g. 2026-11-02T12:00:00Z")
    try:
        occurred = datetime.fromisoformat(cell["occurred_at"])
    except ValueError:
        raise BadRow(f"occurred_at {cell['occurred_at']!r} is not ISO 8601 (e.g. 2026-11-02T12:00:00Z)") from None
    if occurred.tzinfo is None:
        raise BadRow(
            f"occurred_at {cell['occurred_at']!r} has no UTC offset: add Z or +hh:mm, a local time is ambiguous"
        )
    occurred = payment_time(occurred, "occurred_at", repr(cell["occurred_at"]))
    currency = currency_code(cell["currency"], upper=False)
    amount = decimal_minor(cell["amount"], currency, "amount")
    if amount <= 0:
        raise BadRow(f"amount {cell['amount']!r} must be positive: the kind ({kind}) says which way money moved")
    experiment = cell["experiment_id"] or None
    if experiment and not _EXPERIMENT.match(experiment):
        raise BadRow(f"experiment_id {experiment!r} may only hold letters, digits, '_', '.' and '-'")
    country = cell["customer_country"] or None
    if country and not _COUNTRY.match(country):
        raise BadRow(f"customer_country {country!r} is not an upper-case ISO 3166-1 alpha-2 code such as DE")
    if country and kind == "cost":
        raise BadRow("customer_country is for revenue and refund rows (the tax hook), not costs")
    if kind == "cost":
        booked = _account(cell["account"], "account", ("expenses",)) if cell["account"] else DEFAULT_COST_ACCOUNT
    elif cell["account"]:
        booked = _account(cell["account"], "account", ("revenue",))
    else:
        booked = f"revenue:experiment:{experiment}" if experiment else "revenue:unattributed"
    cash = (
        _account(cell["cash_account"], "cash_account", ("assets", "liabilities"))
        if cell["cash_account"]
        else f"assets:cash:bank:{currency.lower()}"
    )
    # revenue: money in (debit cash, credit revenue); refund: the reverse; cost: debit the expense.
    signed = {"revenue": -amount, "refund": amount, "cost": amount}[kind]
    metadata = {"counterparty": cell["counterparty"]} if cell["counterparty"] else {}
    return TransactionRequest(
        idempotency_key=f"csv:{event_id}",
        kind=kind,
        description=cell["description"] or f"{kind} {event_id}",
        occurred_at=occurred,
        postings=[Posting(cash, currency, -signed), Posting(booked, currency, signed)],
        experiment_id=experiment,
        source=SOURCE,
        external_ref=event_id,
        metadata=metadata,
        customer_country=country,
    )
