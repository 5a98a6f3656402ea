"""Bad input never loses a row or crashes an import, on both backends: NUL bytes, bytes that are
not UTF-8 in an unknown header, times UTC cannot hold, JSON nested past the parser's limit and empty
files each end as quarantined records with a reason and their exact bytes; the good rows book."""

import json
from datetime import UTC, datetime

import pytest

from core.ledger.imports import import_bytes
from core.platform.quarantine import decode_payload
from core.platform.warehouse import Warehouse

NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
HEADER = b"event_id,occurred_at,kind,amount,currency,description\n"
GOOD = b"good-1,2026-11-02T12:00:00Z,revenue,1.00,USD,fine\n"


def stored(warehouse: Warehouse) -> dict[str, tuple[str, bytes]]:
    """origin -> (reason, the payload's exact bytes) of every quarantine record."""
    frame = warehouse.read("quarantine.records")
    return {
        row.origin: (row.reason, decode_payload(row.payload, row.payload_encoding))
        for row in frame.itertuples(index=False)
    }


def booked(warehouse: Warehouse) -> list[str]:
    return sorted(warehouse.read("ledger.transactions")["idempotency_key"])


def test_a_nul_byte_in_a_bad_row_is_quarantined_with_its_exact_bytes(warehouse: Warehouse):
    bad = b"bad-1,2026-11-02T12:00:00Z,sale\x00,1.00,USD,x\n"
    report = import_bytes(warehouse, HEADER + bad + GOOD, name="nul.csv", now=NOW)
    assert (report.booked, report.quarantined) == (1, 1)
    reason, payload = stored(warehouse)["nul.csv:2"]
    assert payload == bad and reason.startswith("kind 'sale\\x00' is not one of")
    assert booked(warehouse) == ["csv:good-1"]


def test_a_nul_byte_in_a_good_row_quarantines_that_row_only(warehouse: Warehouse):
    nul = b"nul-1,2026-11-02T12:00:00Z,revenue,1.00,USD,a\x00b\n"
    report = import_bytes(warehouse, HEADER + nul + GOOD, name="nul.csv", now=NOW)
    assert (report.booked, report.quarantined) == (1, 1)
    reason, payload = stored(warehouse)["nul.csv:2"]
    assert payload == nul
    assert reason == (
        "description holds a NUL byte (0x00), which a PostgreSQL text column cannot store: "
        "remove it from the source and replay"
    )
    assert booked(warehouse) == ["csv:good-1"]


def test_a_nul_byte_in_json_metadata_is_named_by_its_field(warehouse: Warehouse):
    line = {
        "id": "txn_nul",
        "object": "balance_transaction",
        "amount": 100,
        "fee": 0,
        "net": 100,
        "currency": "usd",
        "created": 1_793_610_902,
        "type": "charge",
        "metadata": {"customer_id": "cus\u0000x"},
    }
    report = import_bytes(warehouse, json.dumps(line).encode() + b"\n", name="nul.jsonl", now=NOW)
    assert report.quarantined == 1
    assert report.rows[0].message.startswith("metadata.customer_id holds a NUL byte")


def test_an_unknown_format_whose_first_line_is_not_utf8_is_one_record(warehouse: Warehouse):
    data = b"caf\xe9,na\xefve\n1,2\n"
    report = import_bytes(warehouse, data, name="latin1.csv", now=NOW)
    assert (report.format, report.quarantined) == ("unknown", 1)
    reason, payload = stored(warehouse)["latin1.csv:1"]
    assert payload == data
    assert reason.startswith("not a known import format, and its first line is not UTF-8: byte 0xE9 at column 4")


@pytest.mark.parametrize(
    ("occurred_at", "why"),
    [
        ("0001-01-01T00:00:00+01:00", "outside the years 1-9999 once converted to UTC"),
        ("9999-12-31T23:59:59-01:00", "outside the years 1-9999 once converted to UTC"),
        ("0001-01-01T00:00:00-01:00", "is before 1970-01-01 (UTC)"),
    ],
)
def test_a_time_utc_cannot_hold_quarantines_its_row(warehouse: Warehouse, occurred_at: str, why: str):
    row = f"far-1,{occurred_at},revenue,1.00,USD,x\n".encode()
    report = import_bytes(warehouse, HEADER + row + GOOD, name="far.csv", now=NOW)
    assert (report.booked, report.quarantined) == (1, 1)
    assert why in stored(warehouse)["far.csv:2"][0]


def test_a_stripe_export_time_before_1970_quarantines_its_row(warehouse: Warehouse):
    header = b"id,Type,Amount,Fee,Net,Currency,Created (UTC)\n"
    rows = (
        b"txn_old,charge,1.00,0.00,1.00,usd,0001-01-01 00:00:00\n"
        b"txn_new,charge,1.00,0.00,1.00,usd,2026-11-02 09:00:00\n"
    )
    report = import_bytes(warehouse, header + rows, name="export.csv", now=NOW)
    assert (report.booked, report.quarantined) == (1, 1)
    assert "Created (UTC) '0001-01-01 00:00:00' is before 1970-01-01" in stored(warehouse)["export.csv:2"][0]


DEEP = b"[" * 100_000 + b"]" * 100_000
CHARGE = json.dumps(
    {
        "id": "txn_ok",
        "object": "balance_transaction",
        "amount": 100,
        "fee": 0,
        "net": 100,
        "currency": "usd",
        "created": 1_793_610_902,
        "type": "charge",
    }
).encode()


DEEP_LINE = b'{"a":' * 100_000 + b"1" + b"}" * 100_000


@pytest.mark.parametrize(
    ("name", "data", "origin", "payload"),
    [
        ("deep.json", DEEP, "deep.json:1", DEEP[1:]),  # the items after the opening bracket
        ("deep_list.json", b"[" + CHARGE + b",\n" + DEEP + b"]", "deep_list.json:2", DEEP + b"]"),
        ("deep.jsonl", CHARGE + b"\n" + DEEP_LINE + b"\n", "deep.jsonl:2", DEEP_LINE),
    ],
)
def test_json_nested_past_the_parser_limit_is_quarantined(
    warehouse: Warehouse, name: str, data: bytes, origin: str, payload: bytes
):
    report = import_bytes(warehouse, data, name=name, now=NOW)
    assert report.quarantined == 1
    reason, kept = stored(warehouse)[origin]
    assert "nested more than about 1,000 levels deep" in reason and kept == payload
    assert report.booked == (0 if name == "deep.json" else 1)


@pytest.mark.parametrize("data", [b"", b"\n  \n"])
def test_an_empty_file_is_one_quarantined_record_once(warehouse: Warehouse, data: bytes):
    first = import_bytes(warehouse, data, name="empty.csv", now=NOW)
    again = import_bytes(warehouse, data, name="empty.csv", now=NOW)
    assert (first.format, first.quarantined, again.quarantined) == ("unknown", 1, 1)
    assert stored(warehouse) == {"empty.csv:1": ("the file is empty", data)}
