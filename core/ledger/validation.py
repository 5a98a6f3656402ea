"""What a ledger write is, and when it is acceptable: accounts, postings, requests, content hashes.

`prepare` turns a TransactionRequest into a Prepared transaction or raises LedgerError saying what
is wrong: the transaction balances per currency; amounts are non-zero integer minor units, debit > 0,
credit < 0; accounts are root:segment names; times are timezone-aware; metadata is plain JSON. It
applies the tax hook and fixes the content its hash covers (the same key with other content is an
IdempotencyConflict, core.ledger.booking). Nothing here reads or writes the warehouse.
"""

import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from core.ledger.audit import canonical_json, utc_iso
from core.ledger.money import MoneyError, check_minor, format_minor
from core.ledger.tax import TaxCalculator, TaxError, check_country, tax_postings

ACCOUNT_TYPES = {
    "assets": "asset",
    "liabilities": "liability",
    "equity": "equity",
    "revenue": "revenue",
    "expenses": "expense",
}
# One segment of an account name; budgets use it for their category and experiment keys too.
ACCOUNT_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")
MAX_KEY_LENGTH = 255


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
        raise LedgerError(
            f"account {account!r} has the unknown root {segments[0]!r}: use one of {', '.join(ACCOUNT_TYPES)}"
        )
    if len(segments) < 2 or not all(ACCOUNT_SEGMENT.match(s) for s in segments):
        raise LedgerError(
            f"account {account!r} must be root:segment[:segment...] with segments of letters, "
            f"digits, '_', '.' or '-' (e.g. expenses:ads:experiment:exp-1)"
        )
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
        raise LedgerError(
            f"transaction {key!r}: {name} must be a{'' if optional else ' non-empty'} string, got {value!r}"
        )


def _check_request(request: TransactionRequest) -> None:
    key = request.idempotency_key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise LedgerError(
            f"idempotency key {key!r} must be a non-empty string of at most {MAX_KEY_LENGTH} "
            f"characters (e.g. stripe:txn_123)"
        )
    for name in ("kind", "description", "source"):
        _text(getattr(request, name), name, key)
    for name in ("experiment_id", "external_ref", "reverses_transaction_id"):
        _text(getattr(request, name), name, key, optional=True)
    if not isinstance(request.occurred_at, datetime) or request.occurred_at.tzinfo is None:
        raise LedgerError(
            f"transaction {key!r}: occurred_at {request.occurred_at!r} must be a timezone-aware "
            f"datetime (use datetime(..., tzinfo=UTC)); naive times are ambiguous"
        )
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
        raise LedgerError(
            f"transaction {key!r} has {len(request.postings)} posting(s): a balanced transaction "
            f"needs at least a debit and a credit"
        )
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
            raise LedgerError(
                f"transaction {key!r} line {line}: account {posting.account} belongs to experiment "
                f"{named} but the transaction is for experiment {request.experiment_id}"
            )
        sums[posting.currency] += posting.amount_minor
    unbalanced = {currency: total for currency, total in sums.items() if total != 0}
    if unbalanced:
        detail = ", ".join(
            f"{currency} sums to {total} ({format_minor(total, currency)})"
            for currency, total in sorted(unbalanced.items())
        )
        raise LedgerError(
            f"transaction {key!r} does not balance: {detail}; debits (> 0) and credits (< 0) must "
            f"sum to zero in each currency"
        )


def _with_tax(request: TransactionRequest, tax: TaxCalculator | None) -> TransactionRequest:
    key = request.idempotency_key
    try:
        country = check_country(request.customer_country or "")
        extra = [
            line
            for p in request.postings
            if account_type(p.account) == "revenue"
            for line in tax_postings(p.account, p.currency, p.amount_minor, country, tax)
        ]
    except TaxError as error:
        raise LedgerError(f"transaction {key!r}: {error}") from None
    recorded = request.metadata.get("customer_country", country)
    if recorded != country:
        raise LedgerError(
            f"transaction {key!r}: customer_country {country} disagrees with metadata customer_country {recorded}"
        )
    return replace(
        request,
        postings=(*request.postings, *(Posting(*line) for line in extra)),
        metadata={**request.metadata, "customer_country": country},
        customer_country=None,
    )


# -- content hashing -------------------------------------------------------------------------------


def _content(request: TransactionRequest) -> dict[str, Any]:
    """Everything the content hash covers: the request as stored (after tax), minus nothing."""
    return {
        "idempotency_key": request.idempotency_key,
        "kind": request.kind,
        "description": request.description,
        "occurred_at": utc_iso(request.occurred_at),
        "experiment_id": request.experiment_id,
        "source": request.source,
        "external_ref": request.external_ref,
        "reverses_transaction_id": request.reverses_transaction_id,
        "metadata": dict(request.metadata),
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


# -- stored content, back into a request -----------------------------------------------------------


def _request_from_content(content: Mapping[str, Any]) -> TransactionRequest:
    return TransactionRequest(
        idempotency_key=content["idempotency_key"],
        kind=content["kind"],
        description=content["description"],
        occurred_at=datetime.fromisoformat(content["occurred_at"]),
        postings=[Posting(a, c, int(m)) for a, c, m in content["postings"]],
        experiment_id=content["experiment_id"],
        source=content["source"],
        external_ref=content["external_ref"],
        metadata=content["metadata"],
        reverses_transaction_id=content["reverses_transaction_id"],
    )


def prepared_from_content(content: Mapping[str, Any]) -> Prepared:
    """A stored content (a held transaction's) as a Prepared with a new id; the hash is recomputed
    so that the caller can compare it with the one stored beside the content."""
    return Prepared(_request_from_content(content), str(uuid.uuid4()), dict(content), content_hash(content))
