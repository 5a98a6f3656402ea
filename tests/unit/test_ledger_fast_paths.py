"""The write path's shortcuts (benchmarks/LEDGER.md) give exactly what the plain code gives."""

import gc
import os
import uuid
from datetime import UTC, datetime

import pytest

import core.ledger.audit as audit
from core.ledger.audit import append_events, read_events, record_hash, verify_chain
from core.ledger.booking import _gc_paused
from core.ledger.validation import _flat_plain
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse


def test_uuid4_strings_are_what_uuid4_makes_of_the_same_bytes(monkeypatch):
    raw = os.urandom(16 * 50)
    monkeypatch.setattr(audit.os, "urandom", lambda n: raw[:n])
    made = audit._uuid4_strings(50)
    assert made == [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * 50, 16)]
    assert all(uuid.UUID(u).version == 4 for u in made)


def test_appended_events_hash_as_record_hash_says(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path}/w.duckdb")
    ensure_schema(warehouse)
    at = datetime(2026, 11, 2, 12, 30, 1, 123456, tzinfo=UTC)
    payloads = [
        {
            "transaction_id": "t1",
            "idempotency_key": 'stripe:"quoted" é ünïcode \u2028',
            "n": 1,
            "reverses_transaction_id": None,
        },
        {"nested": {"b": [1, 2, {"z": None}], "a": True}, "empty": {}, "float": 1.5},
    ]
    with warehouse.connect() as conn:
        seqs = append_events(conn, "duckdb", [("ledger.x", payloads[0]), ("other.type", payloads[1])], at)
        seqs += append_events(conn, "duckdb", [("ledger.x", {"k": "v"})], at)
        rows = read_events(conn)
    assert seqs == [1, 2, 3]
    assert verify_chain(rows) is None
    prev = audit.GENESIS_HASH
    for seq, event_id, event_type, _payload, prev_hash, stored, _at in rows:
        payload = payloads[seq - 1] if seq <= 2 else {"k": "v"}
        assert prev_hash == prev
        assert stored == record_hash(prev, seq, event_id, event_type, payload, "2026-11-02T12:30:01.123456+00:00")
        prev = stored


def test_a_naive_recorded_at_is_still_refused(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path}/w.duckdb")
    ensure_schema(warehouse)
    with warehouse.connect() as conn, pytest.raises(ValueError, match="no time zone"):
        append_events(conn, "duckdb", [("ledger.x", {})], datetime(2026, 11, 2))


def test_flat_plain_metadata_is_exactly_what_needs_no_encoding_check():
    assert _flat_plain({"a": "x", "b": 1, "c": True, "d": None})
    assert not _flat_plain({"a": 1.5})
    assert not _flat_plain({"a": [1]})
    assert not _flat_plain({"a": object()})


def test_gc_pause_restores_the_collector_state():
    assert gc.isenabled()
    with pytest.raises(RuntimeError), _gc_paused(10_000):
        assert not gc.isenabled()
        raise RuntimeError("a failed batch")
    assert gc.isenabled()
    with _gc_paused(10):  # a small batch leaves the collector alone
        assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused(10_000):
            pass
        assert not gc.isenabled()  # a caller's choice to keep it off is kept
    finally:
        gc.enable()
