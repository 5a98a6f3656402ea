"""Bad input never loses a row or crashes an import, on both backends: NUL bytes, bytes that are
not UTF-8 in an unknown header, times UTC cannot hold, JSON nested past the parser's limit and empty
files each end as quarantined records with a reason and their exact bytes; the good rows book."""

import json
from datetime import UTC, datetime

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


def test_nul_bytes_quarantine_their_row_only_with_its_exact_bytes(warehouse: Warehouse):
    # In a row that is bad anyway: quarantined, its payload the exact bytes (base64 in the table).
    bad = b"bad-1,2026-11-02T12:00:00Z,sale\x00,1.00,USD,x\n"
    report = import_bytes(warehouse, HEADER + bad + GOOD, name="bad.csv", now=NOW)
    assert (report.booked, report.quarantined) == (1, 1)
    # In a row that would book: refused on both backends, naming the field.
    nul = b"nul-1,2026-11-02T12:00:00Z,revenue,1.00,USD,a\x00b\n"
    report = import_bytes(warehouse, HEADER + nul + GOOD, name="good.csv", now=NOW)
    assert (report.booked, report.duplicates, report.quarantined) == (0, 1, 1)
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
    kept = stored(warehouse)
    assert kept["bad.csv:2"][1] == bad and kept["bad.csv:2"][0].startswith("kind 'sale\\x00' is not one of")
    assert kept["good.csv:2"] == (
        "description holds a NUL byte (0x00), which a PostgreSQL text column cannot store: "
        "remove it from the source and replay",
        nul,
    )
    assert kept["nul.jsonl:1"][0].startswith("metadata.customer_id holds a NUL byte")
    assert booked(warehouse) == ["csv:good-1"]


def test_unknown_non_utf8_and_empty_files_are_one_record_each_once(warehouse: Warehouse):
    latin1 = b"caf\xe9,na\xefve\n1,2\n"
    for _again in range(2):
        assert import_bytes(warehouse, latin1, name="latin1.csv", now=NOW).quarantined == 1
        assert import_bytes(warehouse, b"", name="empty.csv", now=NOW).quarantined == 1
        assert import_bytes(warehouse, b"\n  \n", name="blank.csv", now=NOW).quarantined == 1
    kept = stored(warehouse)
    assert set(kept) == {"latin1.csv:1", "empty.csv:1", "blank.csv:1"}
    reason, payload = kept["latin1.csv:1"]
    assert payload == latin1
    assert reason.startswith("not a known import format, and its first line is not UTF-8: byte 0xE9 at column 4")
    assert kept["empty.csv:1"] == ("the file is empty", b"")
    assert kept["blank.csv:1"] == ("the file is empty", b"\n  \n")


def test_times_utc_cannot_hold_or_before_1970_quarantine_their_row(warehouse: Warehouse):
    rows = [
        b"far-1,0001-01-01T00:00:00+01:00,revenue,1.00,USD,x\n",
        b"far-2,9999-12-31T23:59:59-01:00,revenue,1.00,USD,x\n",
        b"far-3,0001-01-01T00:00:00-01:00,revenue,1.00,USD,x\n",
    ]
    report = import_bytes(warehouse, HEADER + b"".join(rows) + GOOD, name="far.csv", now=NOW)
    assert (report.booked, report.quarantined) == (1, 3)
    header = b"id,Type,Amount,Fee,Net,Currency,Created (UTC)\n"
    export = b"txn_old,charge,1.00,0.00,1.00,usd,0001-01-01 00:00:00\n"
    assert import_bytes(warehouse, header + export, name="export.csv", now=NOW).quarantined == 1
    reasons = {origin: reason for origin, (reason, _payload) in stored(warehouse).items()}
    assert "outside the years 1-9999 once converted to UTC" in reasons["far.csv:2"]
    assert "outside the years 1-9999 once converted to UTC" in reasons["far.csv:3"]
    assert "is before 1970-01-01 (UTC)" in reasons["far.csv:4"]
    assert "Created (UTC) '0001-01-01 00:00:00' is before 1970-01-01" in reasons["export.csv:2"]


DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_LINE = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
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


def test_json_nested_past_the_parser_limit_is_quarantined(warehouse: Warehouse):
    files = [  # name, content, origin and payload of the quarantined record
        ("deep.json", DEEP, "deep.json:1", DEEP[1:]),  # the items after the opening bracket
        ("deep_list.json", b"[" + CHARGE + b",\n" + DEEP + b"]", "deep_list.json:2", DEEP + b"]"),
        ("deep.jsonl", CHARGE + b"\n" + DEEP_LINE + b"\n", "deep.jsonl:2", DEEP_LINE),
    ]
    for name, data, _origin, _payload in files:
        assert import_bytes(warehouse, data, name=name, now=NOW).quarantined == 1
    kept = stored(warehouse)
    for _name, _data, origin, payload in files:
        reason, stored_payload = kept[origin]
        assert "nested too deeply" in reason and stored_payload == payload
    assert booked(warehouse) == ["stripe:txn_ok"]
