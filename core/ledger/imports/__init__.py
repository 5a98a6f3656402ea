"""Payment imports: Stripe balance transactions (API, saved responses, CSV export) and the generic
CSV of revenue/refund/cost events, booked into the ledger with quarantine and fraud review.

    import_file(warehouse, path)              detect the format from the content, book the file
    import_bytes(warehouse, data, name=...)   the same for bytes in hand (a sensor, an upload)
    import_objects(warehouse, objects)        Stripe balance_transaction dicts (simulator, tests)
    import_stripe_api(warehouse, api_key)     page through GET /v1/balance_transactions

Each returns an ImportReport: counts of booked, duplicates, held and quarantined records with one
message per record. See docs/imports.md for the formats, the Stripe mapping and the review flow.
"""

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from core.ledger.budgets import SpendWindow
from core.ledger.fraud import FraudRules
from core.ledger.imports import generic_csv, stripe
from core.ledger.imports.booking import Candidate, ImportReport, RowOutcome, book_candidates
from core.ledger.imports.detect import (
    BadRow,
    RawRecord,
    decode,
    detect_format,
    iter_csv,
    iter_json,
    iter_jsonl,
    not_utf8,
)
from core.ledger.tax import TaxCalculator
from core.ledger.validation import TransactionRequest
from core.platform.http import SourceHTTPError
from core.platform.warehouse import Warehouse

__all__ = [
    "ImportReport",
    "RowOutcome",
    "detect_format",
    "import_bytes",
    "import_file",
    "import_objects",
    "import_stripe_api",
]


def _candidate(record: RawRecord, convert: Any) -> Candidate:
    """A record through `convert` (value -> TransactionRequest); any BadRow becomes its reason."""
    reason = record.error or not_utf8(record.raw)
    if reason:
        return Candidate(record.origin, record.payload, error=reason)
    try:
        request: TransactionRequest = convert(record.value)
    except BadRow as error:
        return Candidate(record.origin, record.payload, error=str(error))
    return Candidate(record.origin, record.payload, request)


def _whole_file(name: str, data: bytes, reason: str) -> list[Candidate]:
    return [Candidate(f"{name}:1", data, error=reason)]


def import_bytes(
    warehouse: Warehouse,
    data: bytes,
    *,
    name: str,
    run_id: str | None = None,
    tax: TaxCalculator | None = None,
    rules: FraudRules | None = None,
    now: datetime | None = None,
    spend_window: SpendWindow | None = None,
) -> ImportReport:
    """Import one file's content; `name` is used in origins ("<name>:<line>"). Cost rows go through
    the budgets, dated within `spend_window` of `now` (default: budgets.SpendWindow())."""
    source, kind, candidates = candidates_from_bytes(data, name)
    report = ImportReport(source, name, kind, run_id)
    return book_candidates(
        warehouse, source, candidates, report, tax=tax, rules=rules, now=now, spend_window=spend_window
    )


def candidates_from_bytes(data: bytes, name: str) -> tuple[str, str, list[Candidate]]:
    """(source, format, one Candidate per record) of a file's content, nothing booked yet."""
    kind, why = detect_format(data)
    text = decode(data)
    if kind == "unknown":  # an empty file too: a drop that held nothing is worth a look
        return "unknown", kind, _whole_file(name, data, why)
    if kind in ("generic_csv", "stripe_csv"):
        source = generic_csv.SOURCE if kind == "generic_csv" else stripe.SOURCE
        header, records = iter_csv(text, name)
        try:
            if kind == "generic_csv":
                generic_csv.check_header(header)
                convert = generic_csv.to_request
            else:
                convert = _stripe_csv_row(stripe.CsvColumns.from_header(header))
            return source, kind, [_candidate(record, convert) for record in records]
        except BadRow as error:
            return source, kind, _whole_file(name, data, str(error))
    records = iter_json(text, name) if kind == "stripe_json" else iter_jsonl(text, name)
    return stripe.SOURCE, kind, [_candidate(record, stripe.request_from_object) for record in records]


def _stripe_csv_row(columns: "stripe.CsvColumns") -> Any:
    """A row converter bound to one export's columns (their names vary between exports)."""
    return lambda row: stripe.to_request(stripe.from_csv_row(row, columns))


def object_candidate(origin: str, obj: Mapping[str, Any]) -> Candidate:
    """A Stripe balance_transaction object as one import record."""
    raw = json.dumps(obj, ensure_ascii=False, default=str)
    return _candidate(RawRecord(origin, 0, raw, obj), stripe.request_from_object)


def import_file(
    warehouse: Warehouse,
    path: str | Path,
    *,
    run_id: str | None = None,
    tax: TaxCalculator | None = None,
    rules: FraudRules | None = None,
    now: datetime | None = None,
    spend_window: SpendWindow | None = None,
) -> ImportReport:
    """Import a Stripe CSV export, a saved Stripe list response, Stripe JSON lines or a generic CSV;
    the format is detected from the content, not the extension."""
    path = Path(path)
    return import_bytes(
        warehouse,
        path.read_bytes(),
        name=str(path),
        run_id=run_id,
        tax=tax,
        rules=rules,
        now=now,
        spend_window=spend_window,
    )


def import_objects(
    warehouse: Warehouse,
    objects: Iterable[Mapping[str, Any]],
    *,
    origin: str = "objects",
    run_id: str | None = None,
    tax: TaxCalculator | None = None,
    rules: FraudRules | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Book Stripe balance_transaction objects already in memory (the simulator, an API page)."""
    candidates = [object_candidate(f"{origin}#{index}", obj) for index, obj in enumerate(objects)]
    report = ImportReport(stripe.SOURCE, origin, "stripe_objects", run_id)
    return book_candidates(warehouse, stripe.SOURCE, candidates, report, tax=tax, rules=rules, now=now)


def import_stripe_api(
    warehouse: Warehouse,
    api_key: str | None = None,
    transport: httpx.BaseTransport | None = None,
    *,
    created_gte: int | None = None,
    limit: int = 100,
    max_pages: int | None = None,
    run_id: str | None = None,
    tax: TaxCalculator | None = None,
    rules: FraudRules | None = None,
    now: datetime | None = None,
    url: str = stripe.API_URL,
) -> ImportReport:
    """Page through the balance transactions the key can see and book them like a file.

    The caller passes the key (the assets from their resource, the CLI from STRIPE_API_KEY). If the
    API becomes unreachable mid-way, the pages already read are still booked and StripeAPIError
    (with .report) is raised."""
    if not api_key:
        raise stripe.StripeAPIError(
            "no Stripe API key: set STRIPE_API_KEY (a restricted key with read access "
            "to balance transactions is enough) or pass api_key"
        )
    report = ImportReport(stripe.SOURCE, "stripe-api", "stripe_api", run_id)
    candidates: list[Candidate] = []
    failure: SourceHTTPError | None = None
    try:
        for record in stripe.fetch_records(
            api_key, transport, limit=limit, created_gte=created_gte, max_pages=max_pages, url=url
        ):
            candidates.append(_candidate(record, stripe.request_from_object))
            if record.error:
                report.error = f"{record.origin}: {record.error}"
    except SourceHTTPError as error:
        failure = error
        report.error = str(error)
    book_candidates(warehouse, stripe.SOURCE, candidates, report, tax=tax, rules=rules, now=now)
    if failure is not None:
        raise stripe.StripeAPIError(
            f"the Stripe API failed after {len(candidates)} records ({failure}); those "
            f"were imported, run the import again to continue",
            report,
        ) from failure
    return report
