from datetime import UTC, datetime

import pandas as pd
import pytest

from core.platform.warehouse import Warehouse, WarehouseError


def _rows(*fingerprints: str) -> pd.DataFrame:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return pd.DataFrame(
        [
            {
                "response_id": f,
                "source": "hackernews",
                "mode": "snapshot",
                "request_url": "https://x",
                "status_code": 200,
                "content_type": None,
                "body_bytes": 3,
                "fetched_at": now,
                "run_id": None,
            }
            for f in fingerprints
        ]
    )


def test_insert_new_skips_existing_keys_and_returns_only_inserted(warehouse: Warehouse):
    assert len(warehouse.insert_new("raw.responses", _rows("a", "b"), ["response_id"])) == 2
    inserted = warehouse.insert_new("raw.responses", _rows("b", "c", "c"), ["response_id"])
    assert list(inserted["response_id"]) == ["c"]
    stored = warehouse.read("raw.responses", "ORDER BY response_id")
    assert list(stored["response_id"]) == ["a", "b", "c"]
    assert stored["content_type"].isna().all()  # NULL survives the bulk path
    assert pd.Timestamp(stored["fetched_at"].iloc[0]).tz is not None


def test_insert_new_returns_the_inserted_rows_with_their_values_and_dtypes(warehouse: Warehouse):
    everything = warehouse.insert_new("raw.responses", _rows("b", "a").set_axis([7, 3]), ["response_id"])
    pd.testing.assert_frame_equal(everything, _rows("b", "a"))
    some = warehouse.insert_new("raw.responses", _rows("a", "c", "d").set_axis([5, 6, 2]), ["response_id"])
    pd.testing.assert_frame_equal(some, _rows("c", "d"))


def test_failed_transaction_leaves_nothing(warehouse: Warehouse):
    with pytest.raises(RuntimeError, match="boom"), warehouse.connect() as conn:
        from core.platform.warehouse import append_frame

        append_frame(conn, warehouse.backend, "raw.responses", _rows("x"))
        raise RuntimeError("boom")
    assert warehouse.count("raw.responses") == 0


def test_unknown_column_and_bad_names_are_clear_errors(warehouse: Warehouse):
    with pytest.raises(WarehouseError, match="not in raw.responses"):
        warehouse.append("raw.responses", _rows("a").assign(surprise=1))
    with pytest.raises(WarehouseError, match="invalid table name"):
        warehouse.read("raw.responses; DROP TABLE x")


def test_url_scheme_is_validated():
    with pytest.raises(WarehouseError, match="use duckdb:///path or postgresql"):
        _ = Warehouse("mysql://x").backend
    assert Warehouse("postgresql://u:secret@h/db").describe() == "postgresql://u:***@h/db"


def test_a_duckdb_file_locked_by_another_process_is_a_message_naming_it_and_what_to_do(tmp_path, monkeypatch, capsys):
    import subprocess
    import sys

    from core.platform.warehouse import WarehouseLocked
    from orchestration.cli import main

    path = tmp_path / "warehouse.duckdb"
    hold = f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ready', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseLocked) as locked, Warehouse(f"duckdb:///{path}").connect():
            pass
        message = str(locked.value)
        assert str(path) in message and f"PID {holder.pid}" in message and "make dev" in message

        # The shell prints that message, not a traceback, and exits 1.
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{path}")
        monkeypatch.setattr(sys, "argv", ["ventureloop", "quarantine", "list"])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 1
        err = capsys.readouterr().err
        # The command names its warehouse first (on stderr), then says it is locked.
        assert f"\nthe DuckDB warehouse {path} is locked" in err and "Traceback" not in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_held_duckdb_file_stays_open_for_the_block_and_is_released_after(tmp_path):
    import subprocess
    import sys

    from core.platform import warehouse as module

    path = tmp_path / "held.duckdb"
    warehouse = Warehouse(f"duckdb:///{path}")
    warehouse.execute("CREATE TABLE t (a INTEGER)")
    probe = f"import duckdb; duckdb.connect({str(path)!r}).close()"

    def another_process_opens() -> bool:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0

    with warehouse.held():
        with Warehouse(warehouse.url).held():  # nested, by another Warehouse of the same file
            warehouse.execute("INSERT INTO t VALUES (1)")
        # Still held by the outer block: the writes of both are there, and no other process gets in.
        assert str(path) in module._HELD and warehouse.scalar("SELECT count(*) FROM t") == 1
        assert not another_process_opens()
        with pytest.raises(RuntimeError), warehouse.connect() as conn:  # a failed transaction still rolls back
            conn.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("boom")
        assert warehouse.scalar("SELECT count(*) FROM t") == 1
    assert str(path) not in module._HELD and another_process_opens()
    # PostgreSQL and in-memory warehouses hold nothing.
    with Warehouse("duckdb:///:memory:").held(), Warehouse("postgresql://u@h/db").held():
        assert not module._HELD
