"""Quarantined import rows replay through the importer after a fix, on both backends; what cannot
be replayed says exactly what to do instead."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.discovery.replay import replay
from core.ledger.imports import generic_csv, import_file, import_objects, stripe
from core.ledger.imports.replay import replay_imports
from core.platform.warehouse import Warehouse

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "imports"
NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
SALE_ROW = "gumroad-2007"  # generic_events_bad.csv: kind "sale", which the importer does not know


def transfer(txn_id: str) -> dict:
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": 5000,
        "available_on": 1_762_300_000,
        "created": 1_762_100_000,
        "currency": "usd",
        "description": "to the reserve",
        "exchange_rate": None,
        "fee": 0,
        "fee_details": [],
        "net": 5000,
        "reporting_category": "transfer",
        "source": None,
        "status": "available",
        "type": "transfer",
        "metadata": {},
    }


def pending_imports(warehouse: Warehouse) -> list[str]:
    rows = warehouse.query(
        "SELECT origin FROM quarantine.records WHERE stage = 'import' AND replayed_at IS NULL ORDER BY origin"
    )
    return rows["origin"].tolist()


@pytest.fixture
def ship_the_fix(monkeypatch):
    """Call it to ship the fix a user would: the generic CSV accepts `sale` for `revenue`."""
    original = generic_csv.to_request

    def to_request(cell):
        return original({**cell, "kind": "revenue"} if cell.get("kind") == "sale" else cell)

    return lambda: monkeypatch.setattr(generic_csv, "to_request", to_request)


def test_a_stripe_object_books_once_its_type_is_mapped(warehouse: Warehouse, monkeypatch):
    import_objects(warehouse, [transfer("txn_transfer_1")], origin="api", now=NOW)
    assert pending_imports(warehouse) == ["api#0"]
    before = replay_imports(warehouse, now=NOW)
    assert (before.replayed, before.still_failing) == (0, 1)
    assert "no ledger mapping" in before.reasons[0]
    assert pending_imports(warehouse) == ["api#0"]  # still pending, and not quarantined a second time
    assert warehouse.count("quarantine.records") == 1

    monkeypatch.setitem(stripe.TYPES, "transfer", stripe.TYPES["payout"])
    after = replay_imports(warehouse, now=NOW)
    assert (after.replayed, after.still_failing, after.not_replayable) == (1, 0, 0)
    assert pending_imports(warehouse) == []
    assert (
        warehouse.scalar(
            "SELECT count(*) FROM ledger.transactions WHERE idempotency_key = %s", ["stripe:txn_transfer_1"]
        )
        == 1
    )
    assert replay_imports(warehouse, now=NOW).replayed == 0  # nothing left to replay


def test_a_csv_row_replays_with_the_header_of_its_file(warehouse: Warehouse, tmp_path, ship_the_fix):
    path = tmp_path / "events.csv"
    shutil.copy(FIXTURES / "generic_events_bad.csv", path)
    import_file(warehouse, path, now=NOW)
    sale_origin = f"{path}:8"
    assert sale_origin in pending_imports(warehouse)
    before = set(pending_imports(warehouse))
    ship_the_fix()

    report = replay_imports(warehouse, now=NOW)
    assert report.replayed == 1 and report.not_replayable == 0
    # The others are still bad and pending once each: a row failing for its old reason is not stored
    # again; the in-file conflict (line 11) now conflicts with the booked line 2, a new reason, so it
    # is stored with it and its old row is marked replayed.
    assert sorted(pending_imports(warehouse)) == sorted(before - {sale_origin})
    assert report.still_failing == len(before) - 1
    assert warehouse.count("quarantine.records") == len(before) + 1
    [superseded] = warehouse.query(
        "SELECT reason FROM quarantine.records WHERE origin = %s AND replayed_at IS NOT NULL", [f"{path}:11"]
    )["reason"]
    assert "appears twice with different content" in superseded
    booked = warehouse.query("SELECT kind FROM ledger.transactions WHERE idempotency_key = %s", [f"csv:{SALE_ROW}"])
    assert booked["kind"].tolist() == ["revenue"]


def test_a_csv_row_is_found_in_the_inbox_archive(warehouse: Warehouse, tmp_path, ship_the_fix):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    dropped = inbox / "events.csv"
    shutil.copy(FIXTURES / "generic_events_bad.csv", dropped)
    import_file(warehouse, dropped, now=NOW)
    archived = inbox / "archive" / "2026-11-06" / "0123456789ab-events.csv"
    archived.parent.mkdir(parents=True)
    dropped.replace(archived)  # as the inbox sensor leaves it
    ship_the_fix()

    report = replay_imports(warehouse, [inbox / "archive"], now=NOW)
    assert report.replayed == 1
    assert f"{dropped}:8" not in pending_imports(warehouse)


def test_a_row_whose_file_is_gone_or_changed_says_what_to_do(warehouse: Warehouse, tmp_path, ship_the_fix):
    path = tmp_path / "events.csv"
    shutil.copy(FIXTURES / "generic_events_bad.csv", path)
    import_file(warehouse, path, now=NOW)
    ship_the_fix()
    path.write_text(path.read_text().replace("Unknown kind", "edited since"))  # line 8 is another row now

    report = replay_imports(warehouse, [tmp_path / "archive"], now=NOW)
    sale = next(reason for reason in report.reasons if reason.startswith(f"{path}:8: "))
    assert "no file holding this row at line 8" in sale
    assert "run `ventureloop ledger import FILE`" in sale and "archive/*/*-events.csv" in sale
    assert f"{path}:8" in pending_imports(warehouse)


def test_a_whole_rejected_file_is_imported_again_as_a_file(warehouse: Warehouse, tmp_path):
    path = tmp_path / "orders.csv"
    shutil.copy(FIXTURES / "unknown_orders.csv", path)
    first = import_file(warehouse, path, now=NOW)
    assert first.quarantined == 1 and pending_imports(warehouse) == [f"{path}:1"]
    report = replay_imports(warehouse, now=NOW)
    assert (report.replayed, report.still_failing) == (0, 1)
    assert warehouse.count("quarantine.records") == 1


def test_discovery_replay_leaves_import_rows_to_the_importer(warehouse: Warehouse):
    import_objects(warehouse, [transfer("txn_transfer_2")], origin="api", now=NOW)
    report = replay(warehouse, [])
    assert report.not_replayable == 0 and not any("rematerialize" in reason for reason in report.reasons)


def test_a_row_of_a_file_with_a_name_at_the_limit_is_found_in_the_archive(duckdb_url, tmp_path, ship_the_fix):
    from core.ledger.imports.archive import NAME_MAX, archived_name
    from core.platform.schema import ensure_schema

    warehouse = Warehouse(duckdb_url)  # names and files: the same on either backend
    ensure_schema(warehouse)

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    dropped = inbox / ("e" * 246 + ".csv")  # a legal 250-byte name
    shutil.copy(FIXTURES / "generic_events_bad.csv", dropped)
    import_file(warehouse, dropped, now=NOW)
    archived = inbox / "archive" / "2026-11-06" / archived_name(dropped.name, "0123456789abcdef")
    assert len(archived.name.encode()) == NAME_MAX and archived.name.endswith(".csv")
    archived.parent.mkdir(parents=True)
    dropped.replace(archived)
    ship_the_fix()
    assert replay_imports(warehouse, [inbox / "archive"], now=NOW).replayed == 1
