"""Stripe balance transactions -> ledger transactions, from the API, saved API responses or the
Dashboard's CSV export. All three become one `StripeTxn` first, so the same balance transaction
books the same content whichever way it arrives (re-importing it in another format is a duplicate).

The mapping (docs/imports.md, "Stripe"): every balance transaction moves `net` through the Stripe
balance and `fee` to Stripe's fees, and its `amount` to a counter account chosen by its type:

    debit  assets:cash:stripe:<cur>   net
    debit  expenses:fees:stripe       fee
    credit <counter account>          amount          (net = amount - fee, so it balances)

Signs come from Stripe: a refund has a negative amount, so its "credit" of -amount debits revenue.
Postings of zero are left out. Idempotency key: "stripe:" + the balance transaction id.
"""

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from core.ledger.imports.detect import BadRow, RawRecord, currency_code, decimal_minor, payment_time
from core.ledger.validation import Posting, TransactionRequest
from core.platform.http import RateLimit, SourceClient

SOURCE = "stripe"
API_URL = "https://api.stripe.com/v1/balance_transactions"
CASH = "assets:cash:stripe:{currency}"
BANK = "assets:cash:bank:{currency}"
FEES = "expenses:fees:stripe"
ADJUSTMENT_EXPENSE = "expenses:adjustments:stripe"
ADJUSTMENT_REVENUE = "revenue:adjustments:stripe"
UNATTRIBUTED = "revenue:unattributed"

# type -> (family, ledger kind). Families pick the counter account of `amount`:
#   revenue  revenue:experiment:<metadata.experiment_id> or revenue:unattributed (tax hook applies)
#   bank     assets:cash:bank:<cur> (money between the Stripe balance and the bank)
#   fee      expenses:fees:stripe (fees Stripe charges outside a charge: Radar, Billing, FX)
#   adjust   expenses:adjustments:stripe when amount < 0, revenue:adjustments:stripe when > 0;
#            an adjustment whose reporting_category is dispute/dispute_reversal is a chargeback
#            and goes to the revenue account like a refund (kind "dispute").
TYPES: dict[str, tuple[str, str]] = {
    "charge": ("revenue", "revenue"),
    "payment": ("revenue", "revenue"),
    "application_fee": ("revenue", "revenue"),
    "refund": ("revenue", "refund"),
    "payment_refund": ("revenue", "refund"),
    "refund_failure": ("revenue", "refund"),
    "payment_failure_refund": ("revenue", "refund"),
    "payment_reversal": ("revenue", "refund"),
    "application_fee_refund": ("revenue", "refund"),
    "payout": ("bank", "payout"),
    "payout_cancel": ("bank", "payout"),
    "payout_failure": ("bank", "payout"),
    "topup": ("bank", "topup"),
    "topup_reversal": ("bank", "topup"),
    "stripe_fee": ("fee", "fee"),
    "stripe_fx_fee": ("fee", "fee"),
    "tax_fee": ("fee", "fee"),
    "adjustment": ("adjust", "adjustment"),
}
DISPUTE_CATEGORIES = frozenset({"dispute", "dispute_reversal"})
_ID = re.compile(r"^\S{1,200}$")
_METADATA_COLUMN = re.compile(r"^(.+?)\s*\(metadata\)$", re.IGNORECASE)
_CREATED_COLUMN = re.compile(r"^created(?:\s*\((.+)\))?$", re.IGNORECASE)


@dataclass(frozen=True)
class StripeTxn:
    id: str
    type: str
    amount: int
    fee: int
    net: int
    currency: str  # upper case
    created: datetime
    description: str | None = None
    source: str | None = None
    reporting_category: str | None = None
    experiment_id: str | None = None
    customer_country: str | None = None
    customer_id: str | None = None


# -- API objects ------------------------------------------------------------------------------------


def _int(obj: Mapping[str, Any], name: str) -> int:
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "missing" if value is None else f"{value!r} ({type(value).__name__})"
        raise BadRow(f"{name} is {kind}: the API sends integer minor units (2900 for 29.00 USD)")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("id"), str):  # an expanded object
        return value["id"]
    if not isinstance(value, str):
        raise BadRow(f"{name} {value!r} is not text")
    return value.strip() or None


def _metadata_value(metadata: Mapping[str, Any], name: str) -> str | None:
    value = metadata.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRow(f"metadata.{name} {value!r} is not text (Stripe metadata values are strings)")
    return value.strip() or None


def _check_balanced(txn_id: str, amount: int, fee: int, net: int) -> None:
    if amount - fee != net:
        raise BadRow(
            f"unbalanced: amount {amount} - fee {fee} = {amount - fee}, but net is {net} "
            f"(minor units); Stripe's net is always amount - fee, so the record of {txn_id} is damaged"
        )


def from_api_object(obj: Any) -> StripeTxn:
    """A balance_transaction object as the API returns it; BadRow says what is wrong with it."""
    if not isinstance(obj, Mapping):
        raise BadRow(f"expected a balance_transaction object, got {type(obj).__name__}")
    if obj.get("object") != "balance_transaction":
        raise BadRow(f"object is {obj.get('object')!r}, expected 'balance_transaction'")
    txn_id = obj.get("id")
    if not isinstance(txn_id, str) or not _ID.match(txn_id):
        raise BadRow(f"id is {txn_id!r}: every balance transaction needs its id (txn_...), the idempotency key")
    currency = currency_code(obj.get("currency"))
    amount, fee, net = _int(obj, "amount"), _int(obj, "fee"), _int(obj, "net")
    _check_balanced(txn_id, amount, fee, net)
    details = obj.get("fee_details")
    if details:
        if not isinstance(details, list) or not all(isinstance(d, Mapping) for d in details):
            raise BadRow("fee_details must be a list of {amount, currency, description, type} objects")
        total = sum(_int(detail, "amount") for detail in details)
        if total != fee:
            raise BadRow(f"unbalanced: fee_details sum to {total} but fee is {fee} (minor units)")
    created = obj.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        raise BadRow(f"created is {created!r}: the API sends a Unix timestamp in seconds")
    try:
        occurred = datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadRow(f"created {created} is not a valid Unix timestamp") from None
    occurred = payment_time(occurred, "created", str(created))
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadRow(f"type is {kind!r}: expected charge, refund, payout, adjustment, stripe_fee, ...")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise BadRow(f"metadata {metadata!r} is not an object")
    country = _metadata_value(metadata, "customer_country")
    return StripeTxn(
        id=txn_id,
        type=kind,
        amount=amount,
        fee=fee,
        net=net,
        currency=currency,
        created=occurred,
        description=_optional_text(obj.get("description"), "description"),
        source=_optional_text(obj.get("source"), "source"),
        reporting_category=_optional_text(obj.get("reporting_category"), "reporting_category"),
        experiment_id=_metadata_value(metadata, "experiment_id"),
        customer_country=country.upper() if country else None,
        customer_id=_metadata_value(metadata, "customer_id"),
    )


# -- the Dashboard CSV export -----------------------------------------------------------------------


@dataclass(frozen=True)
class CsvColumns:
    """Where each field is in a Stripe CSV header (matched case-insensitively)."""

    by_name: dict[str, str]
    created: str
    created_zone: Any
    metadata: dict[str, str]

    @classmethod
    def from_header(cls, header: list[str]) -> "CsvColumns":
        by_name: dict[str, str] = {}
        created, zone, metadata = None, UTC, {}
        for column in header:
            lowered = column.lower()
            by_name.setdefault(lowered, column)
            match = _CREATED_COLUMN.match(column)
            if match and created is None:
                created = column
                label = (match.group(1) or "UTC").strip()
                if label.upper() != "UTC":
                    try:
                        zone = ZoneInfo(label)
                    except (ZoneInfoNotFoundError, ValueError):
                        raise BadRow(
                            f"column {column!r} names the time zone {label!r}, which is unknown: "
                            f"export with times in UTC"
                        ) from None
            found = _METADATA_COLUMN.match(column)
            if found:
                metadata[found.group(1).strip().lower()] = column
        missing = [name for name in ("id", "type", "amount", "fee", "net", "currency") if name not in by_name]
        if created is None:
            missing.append("Created (UTC)")
        if missing:
            raise BadRow(f"the Stripe CSV header lacks {missing}: export balance transactions with the default columns")
        return cls(by_name, created, zone, metadata)

    def get(self, row: Mapping[str, str], name: str) -> str:
        column = self.by_name.get(name)
        return (row.get(column) or "").strip() if column else ""


def _csv_time(text: str, column: str, zone: Any) -> datetime:
    if not text:
        raise BadRow(f"{column} is empty")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadRow(f"{column} {text!r} is not a date and time like 2026-11-02 12:00:00") from None
    return payment_time(value.replace(tzinfo=zone) if value.tzinfo is None else value, column, repr(text))


def from_csv_row(row: Mapping[str, str], columns: CsvColumns) -> StripeTxn:
    """One row of the Dashboard export (decimal major units, lower-case currency, UTC times)."""
    txn_id = columns.get(row, "id")
    if not _ID.match(txn_id):
        raise BadRow(f"id is {txn_id!r}: every balance transaction needs its id (txn_...), the idempotency key")
    currency = currency_code(columns.get(row, "currency"), "Currency")
    amount = decimal_minor(columns.get(row, "amount"), currency, "Amount")
    fee = decimal_minor(columns.get(row, "fee"), currency, "Fee")
    net = decimal_minor(columns.get(row, "net"), currency, "Net")
    _check_balanced(txn_id, amount, fee, net)
    kind = columns.get(row, "type").lower()
    if not kind:
        raise BadRow("Type is empty: expected charge, refund, payout, adjustment, stripe_fee, ...")
    metadata = {key: (row.get(column) or "").strip() for key, column in columns.metadata.items()}
    country = metadata.get("customer_country") or None
    return StripeTxn(
        id=txn_id,
        type=kind,
        amount=amount,
        fee=fee,
        net=net,
        currency=currency,
        created=_csv_time(row.get(columns.created, "").strip(), columns.created, columns.created_zone),
        description=columns.get(row, "description") or None,
        source=columns.get(row, "source") or None,
        reporting_category=(columns.get(row, "reporting category") or columns.get(row, "reporting_category") or None),
        experiment_id=metadata.get("experiment_id") or None,
        customer_country=country.upper() if country else None,
        customer_id=metadata.get("customer_id") or columns.get(row, "customer id") or None,
    )


# -- mapping ----------------------------------------------------------------------------------------


def revenue_account(experiment_id: str | None) -> str:
    return f"revenue:experiment:{experiment_id}" if experiment_id else UNATTRIBUTED


def to_request(txn: StripeTxn) -> TransactionRequest:
    """The ledger transaction for one balance transaction (see the module docstring)."""
    try:
        family, kind = TYPES[txn.type]
    except KeyError:
        raise BadRow(
            f"type {txn.type!r} has no ledger mapping: add it to TYPES in core/ledger/imports/stripe.py and "
            f"the table in docs/imports.md, then replay this record"
        ) from None
    if family == "adjust" and (txn.reporting_category or "").lower() in DISPUTE_CATEGORIES:
        family, kind = "revenue", "dispute"
    cur = txn.currency.lower()
    if family == "revenue":
        counter = revenue_account(txn.experiment_id)
    elif family == "bank":
        counter = BANK.format(currency=cur)
    elif family == "fee":
        counter = FEES
    else:
        counter = ADJUSTMENT_EXPENSE if txn.amount < 0 else ADJUSTMENT_REVENUE
    lines = [(CASH.format(currency=cur), txn.net), (FEES, txn.fee), (counter, -txn.amount)]
    postings = [Posting(account, txn.currency, amount) for account, amount in lines if amount]
    if not postings:
        raise BadRow(f"amount, fee and net are all zero: balance transaction {txn.id} moves no money")
    metadata: dict[str, Any] = {"stripe_type": txn.type}
    if txn.customer_id:
        metadata["customer_id"] = txn.customer_id
    description = f"stripe {txn.type} {txn.id}" + (f": {txn.description}" if txn.description else "")
    return TransactionRequest(
        idempotency_key=f"stripe:{txn.id}",
        kind=kind,
        description=description,
        occurred_at=txn.created,
        postings=postings,
        experiment_id=txn.experiment_id,
        source=SOURCE,
        external_ref=txn.source,
        metadata=metadata,
        customer_country=txn.customer_country if family == "revenue" else None,
    )


def request_from_object(obj: Any) -> TransactionRequest:
    return to_request(from_api_object(obj))


# -- the API ----------------------------------------------------------------------------------------


class StripeAPIError(RuntimeError):
    """The API could not be read to the end; `report` says what was booked from the pages before."""

    def __init__(self, message: str, report: Any = None):
        super().__init__(message)
        self.report = report


def fetch_records(
    api_key: str,
    transport: httpx.BaseTransport | None = None,
    *,
    limit: int = 100,
    created_gte: int | None = None,
    max_pages: int | None = None,
    url: str = API_URL,
    client: SourceClient | None = None,
) -> Iterator[RawRecord]:
    """Every balance transaction the key can see, newest first, one page of `limit` at a time
    (starting_after / has_more). A page that is not a list object yields one broken record and ends
    the listing; an unreachable API raises core.platform.http.SourceHTTPError."""
    if not 1 <= limit <= 100:
        raise ValueError(f"limit {limit} is outside Stripe's 1..100")
    # Stripe allows 100 read requests a second in live mode; stay far below it.
    own = client is None
    client = client or SourceClient(
        SOURCE,
        transport,
        rate_limit=RateLimit(rate_per_minute=600, burst=20),
        user_agent="ventureloop/0.1 (+payments import)",
    )
    headers = {"authorization": f"Bearer {api_key}", "stripe-version": "2024-06-20"}
    try:
        params: dict[str, Any] = {"limit": limit}
        if created_gte is not None:
            params["created[gte]"] = created_gte
        pages = 0
        while True:
            fetched = client.get(url, params=params, headers=headers)
            pages += 1
            try:
                body = fetched.json()
                items = body["data"] if isinstance(body, dict) and body.get("object") == "list" else None
            except (ValueError, KeyError, RecursionError):
                items = None
            if not isinstance(items, list):
                text = fetched.body.decode("utf-8", "surrogateescape")
                yield RawRecord(
                    fetched.url,
                    0,
                    text,
                    None,
                    'the response is not a Stripe list object ({"object": "list", "data": [...]}); '
                    "the listing stopped here",
                )
                return
            for index, item in enumerate(items):
                yield RawRecord(f"{fetched.url}#data[{index}]", index, json.dumps(item, ensure_ascii=False), item)
            if not body.get("has_more") or not items or (max_pages is not None and pages >= max_pages):
                return
            last = items[-1].get("id") if isinstance(items[-1], dict) else None
            if not isinstance(last, str):
                return
            params["starting_after"] = last
    finally:
        if own:
            client.close()
