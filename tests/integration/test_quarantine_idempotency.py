"""Quarantine is idempotent by origin, reason and payload, on both backends and under concurrent
writers: every fetch of a snapshot, every re-import stores a bad record once; a record replayed and
then failing again is pending again."""

import threading
from datetime import UTC, datetime

import pytest

from core.discovery.fetch import discover
from core.discovery.opportunities import ingest
from core.discovery.sources.hackernews import HackerNews
from core.platform import quarantine
from core.platform.quarantine import Problem
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

NOW = datetime(2026, 11, 6, 12, 0, tzinfo=UTC)
BAD = Problem("import", "orders.csv:7", "kind 'sale' is not one of revenue, refund, cost", b"7,sale,\xe9\n")


def rows(warehouse: Warehouse) -> list[tuple[str, str, bool]]:
    frame = warehouse.query("SELECT origin, reason, replayed_at IS NULL AS pending FROM quarantine.records")
    return sorted((r.origin, r.reason, bool(r.pending)) for r in frame.itertuples(index=False))


def test_the_same_record_is_stored_once_and_a_new_reason_is_a_new_record(warehouse: Warehouse):
    assert quarantine.quarantine(warehouse, "csv", [BAD, BAD]) == 1
    assert quarantine.quarantine(warehouse, "csv", [BAD]) == 1
    assert rows(warehouse) == [(BAD.origin, BAD.reason, True)]
    other = Problem(BAD.stage, BAD.origin, "amount 'abc' is not a decimal number", BAD.payload)
    quarantine.quarantine(warehouse, "csv", [other])
    quarantine.quarantine(warehouse, "stripe", [BAD])  # another source's record
    assert len(rows(warehouse)) == 3


def test_a_replayed_record_that_fails_again_is_pending_again(warehouse: Warehouse):
    quarantine.quarantine(warehouse, "csv", [BAD])
    [first] = quarantine.pending(warehouse)["quarantine_id"]
    with warehouse.connect() as conn:
        assert quarantine.mark_replayed(conn, warehouse.backend, [first], NOW) == 1
    quarantine.quarantine(warehouse, "csv", [BAD])
    quarantine.quarantine(warehouse, "csv", [BAD])
    assert rows(warehouse) == [(BAD.origin, BAD.reason, False), (BAD.origin, BAD.reason, True)]


@pytest.mark.postgres
def test_concurrent_writers_store_a_record_once(postgres_url: str):
    warehouse = Warehouse(postgres_url)
    ensure_schema(warehouse)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def write() -> None:
        start.wait()
        try:
            quarantine.quarantine(warehouse, "csv", [BAD])
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and rows(warehouse) == [(BAD.origin, BAD.reason, True)]


def test_every_fetch_of_a_snapshot_quarantines_its_bad_item_once(warehouse: Warehouse):
    source = HackerNews()
    for _ in range(2):
        discover(source, warehouse, "snapshot")
        assert ingest(warehouse, [source])["hackernews"].quarantined == 1  # counted in every run
    [(origin, reason, pending)] = rows(warehouse)
    assert pending and origin.startswith("raw.records/")
    # Replayed (as if a connector fix had normalized it), then the next fetch brings it back unfixed.
    with warehouse.connect() as conn:
        quarantine.mark_replayed(conn, warehouse.backend, quarantine.pending(warehouse)["quarantine_id"], NOW)
    discover(source, warehouse, "snapshot")
    ingest(warehouse, [source])
    assert sorted((r, p) for _o, r, p in rows(warehouse)) == [(reason, False), (reason, True)]


def test_a_warehouse_from_before_the_key_gets_it(duckdb_url: str):
    warehouse = Warehouse(duckdb_url)
    warehouse.execute_script(
        [
            "CREATE SCHEMA quarantine",
            "CREATE TABLE quarantine.records (quarantine_id TEXT PRIMARY KEY, stage TEXT NOT NULL, "
            "source TEXT NOT NULL, origin TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT NOT NULL, "
            "payload_encoding TEXT NOT NULL, quarantined_at TIMESTAMPTZ NOT NULL, replayed_at TIMESTAMPTZ, "
            "run_id TEXT)",
        ]
    )
    ensure_schema(warehouse)
    ensure_schema(warehouse)
    quarantine.quarantine(warehouse, "csv", [BAD])
    quarantine.quarantine(warehouse, "csv", [BAD])
    assert rows(warehouse) == [(BAD.origin, BAD.reason, True)]
