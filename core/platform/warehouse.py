"""The warehouse: one interface, two backends (DuckDB file or PostgreSQL), chosen by URL.

Framework-free so that the CLI, the benchmarks and the tests use exactly what the assets use.
Connections are short-lived: a DuckDB file allows one writer process, so holding a connection
open across a whole Dagster step would lock every other process out for no benefit.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # pandas costs most of a second to import; the code location loads without it
    import pandas as pd

# DuckDB files held open by Warehouse.held(), with how many blocks hold each.
_HELD: dict[str, tuple[Any, int]] = {}
_HELD_LOCK = threading.Lock()
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


class WarehouseError(RuntimeError):
    pass


class WarehouseLocked(WarehouseError):
    """Another process holds the DuckDB file's lock; the message names the file and what to do."""


# The checkout this package runs from (installed editable, as `make` does); the project home is
# found from it, never from the current directory, so every folder sees the same warehouse.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_home() -> Path:
    """$VENTURELOOP_HOME, else .ventureloop in the repository (~/.ventureloop if installed without one)."""
    if configured := os.environ.get("VENTURELOOP_HOME"):
        return Path(configured).resolve()
    root = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else Path.home()
    return root / ".ventureloop"


def default_warehouse_url() -> str:
    return os.environ.get("WAREHOUSE_URL") or f"duckdb:///{default_home() / 'warehouse.duckdb'}"


def _checked(table: str) -> str:
    if not _IDENTIFIER.match(table):
        raise WarehouseError(f"invalid table name {table!r}: use schema.table in lower case")
    return table


# How long opening a DuckDB file waits for another process to let go of it before WarehouseLocked:
# longer than a brief reader holds it (`ventureloop metrics serve` opens it read-only for tens of
# milliseconds per scrape, docs/metrics.md), so such a read never fails a pipeline step, and short
# enough that a file another run holds is still reported at once.
LOCK_WAIT_SECONDS = 0.5


def _open_duckdb(path: str) -> Any:
    import duckdb

    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.01
    while True:
        try:
            return duckdb.connect(path)
        except duckdb.IOException as error:
            if "Could not set lock" not in str(error):
                raise
            if time.monotonic() + pause >= deadline:
                raise _locked(path, error) from None
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _locked(path: str, error: Exception) -> WarehouseLocked:
    # DuckDB's own text names the file but reads like a crash; say who holds it and what to do.
    holder = re.search(r"Conflicting lock is held in (.*?)(?:\. See also|$)", str(error))
    return WarehouseLocked(
        f"the DuckDB warehouse {path} is locked by another process"
        f"{f' ({holder.group(1)})' if holder else ''}: a DuckDB file has one writer at a time. "
        f"Stop the other one (`make dev`, `dagster dev`, or a `ventureloop` or `dagster` command still "
        f"running) and try again, or set WAREHOUSE_URL to PostgreSQL to share the warehouse"
    )


@dataclass(frozen=True)
class Warehouse:
    """`duckdb:///path/file.duckdb` (or `duckdb:///:memory:` for one-connection use) or
    `postgresql://user@host:port/db` (any `postgresql+driver://` prefix is accepted)."""

    url: str

    @property
    def backend(self) -> str:
        scheme = urlsplit(self.url).scheme.split("+")[0]
        if scheme in ("duckdb", "postgresql", "postgres"):
            return "postgres" if scheme.startswith("postgres") else "duckdb"
        raise WarehouseError(
            f"WAREHOUSE_URL {self.url!r} has scheme {scheme!r}: use duckdb:///path or postgresql://..."
        )

    @property
    def duckdb_path(self) -> str:
        return self.url.split(":///", 1)[1] if ":///" in self.url else ":memory:"

    @property
    def postgres_dsn(self) -> str:
        parts = urlsplit(self.url)
        return parts._replace(scheme="postgresql").geturl()

    def exists(self) -> bool:
        """False for a DuckDB file that is not there: a reader must not create an empty warehouse
        (connect() would). A PostgreSQL database is never created here, so it counts as there."""
        return self.backend != "duckdb" or self.duckdb_path == ":memory:" or Path(self.duckdb_path).is_file()

    def describe(self) -> str:
        """The URL without its password, safe for logs and metadata."""
        return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", self.url)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Keep a DuckDB file open in this process for the block, so that every connect() inside it
        attaches to the open database instead of opening the file again: about 40 ms a connect when
        the file was closed, 3 ms when held (measured here), and a run of an experiment connects
        hundreds of times. It works through DuckDB's per-process cache of open databases: while one
        connection (the anchor here) is open, duckdb.connect(path) attaches to that database instead
        of reading the file again. Other processes cannot open the file meanwhile, as while any writer
        has it. Nothing to do on PostgreSQL (a server) or in memory."""
        if self.backend != "duckdb" or self.duckdb_path == ":memory:":
            yield
            return
        path = self.duckdb_path
        with _HELD_LOCK:
            anchor, holders = _HELD.get(path, (None, 0))
            if anchor is None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                anchor = _open_duckdb(path)
            _HELD[path] = (anchor, holders + 1)
        try:
            yield
        finally:
            with _HELD_LOCK:
                anchor, holders = _HELD[path]
                if holders == 1:
                    del _HELD[path]
                    anchor.close()
                else:
                    _HELD[path] = (anchor, holders - 1)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection inside one transaction: committed on success, rolled back on error."""
        if self.backend == "duckdb":
            path = self.duckdb_path
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = _open_duckdb(path)
            try:
                conn.execute("BEGIN TRANSACTION")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()
        else:
            import psycopg

            with psycopg.connect(self.postgres_dsn) as conn:  # commits on clean exit
                yield conn

    # -- statements ---------------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self.connect() as conn:
            run_sql(conn, sql, params)

    def execute_script(self, statements: Sequence[str]) -> None:
        with self.connect() as conn:
            for statement in statements:
                run_sql(conn, statement, None)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self.connect() as conn:
            return query_frame(conn, sql, params)

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        with self.connect() as conn:
            row = run_sql(conn, sql, params).fetchone()
            return None if row is None else row[0]

    def read(self, table: str, where: str = "", params: Sequence[Any] | None = None) -> pd.DataFrame:
        return self.query(f"SELECT * FROM {_checked(table)} {where}", params)

    def table_exists(self, table: str) -> bool:
        schema, name = _checked(table).split(".")
        return bool(
            self.scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                [schema, name],
            )
        )

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {_checked(table)}"))

    # -- bulk writes ----------------------------------------------------------------------------

    def append(self, table: str, frame: pd.DataFrame) -> int:
        with self.connect() as conn:
            return append_frame(conn, self.backend, table, frame)

    def insert_new(self, table: str, frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
        """Insert the rows whose key is not in the table yet; return the rows that were inserted.

        The key must carry a unique constraint: it is the constraint, not this check, that makes
        concurrent writers safe (ON CONFLICT DO NOTHING on both backends)."""
        if frame.empty:
            return frame
        with self.connect() as conn:
            return insert_new_rows(conn, self.backend, table, frame, key)

    def replace(self, table: str, frame: pd.DataFrame) -> None:
        """Rebuild a derived table from `frame` in one transaction (readers never see it empty).
        Its columns follow the frame, so derived tables evolve with the code that computes them."""
        _checked(table)
        with self.connect() as conn:
            if self.backend == "duckdb":
                conn.register("_incoming", frame)
                try:
                    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _incoming")
                finally:
                    _unregister(conn, "_incoming")
            else:
                run_sql(conn, f"DROP TABLE IF EXISTS {table}", None)
                run_sql(conn, f"CREATE TABLE {table} ({_column_types(frame)})", None)
                if not frame.empty:
                    _copy_into(conn, table, frame)


def _unregister(conn: Any, name: str) -> None:
    # After a failed statement DuckDB refuses everything but ROLLBACK; the statement's own error
    # is the one worth raising, not "transaction is aborted" from this cleanup.
    with contextlib.suppress(Exception):
        conn.unregister(name)


def finish_pending(conn: Any) -> None:
    """Run a DuckDB result the caller left unread (after a fetchone) to its end: DuckDB 2 refuses
    register() on a connection that has one. No-op on PostgreSQL and on DuckDB without the call."""
    complete = getattr(conn, "complete", None) if _is_duckdb(conn) else None
    if complete is not None:
        complete()


def _is_duckdb(conn: Any) -> bool:
    return "duckdb" in type(conn).__module__


def run_sql(conn: Any, sql: str, params: Sequence[Any] | None) -> Any:
    """One statement on an open connection of either backend, written with %s placeholders."""
    # Both drivers are written against one placeholder style, psycopg's %s.
    if _is_duckdb(conn):
        sql = sql.replace("%s", "?")
        return conn.execute(sql, list(params) if params is not None else None)
    cur = conn.cursor()
    cur.execute(sql, params)
    return cur


def query_frame(conn: Any, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
    import pandas as pd

    cur = run_sql(conn, sql, params)
    if _is_duckdb(conn):
        return cur.df()
    columns = [c.name for c in cur.description] if cur.description else []
    return pd.DataFrame(cur.fetchall(), columns=columns)


def _columns(conn: Any, table: str) -> list[str]:
    schema, name = _checked(table).split(".")
    cur = run_sql(
        conn,
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
        " ORDER BY ordinal_position",
        [schema, name],
    )
    return [row[0] for row in cur.fetchall()]


def _aligned(conn: Any, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    columns = _columns(conn, table)
    if not columns:
        raise WarehouseError(f"table {table} does not exist: run the schema set-up (ensure_schema) first")
    unknown = [c for c in frame.columns if c not in columns]
    if unknown:
        raise WarehouseError(f"columns {unknown} are not in {table} (it has {columns})")
    return frame[[c for c in columns if c in frame.columns]]


def append_frame(conn: Any, backend: str, table: str, frame: pd.DataFrame) -> int:
    if frame.empty:
        return 0
    frame = _aligned(conn, table, frame)
    names = ", ".join(frame.columns)
    if backend == "duckdb":
        conn.register("_incoming", frame)
        try:
            conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _incoming")
        finally:
            _unregister(conn, "_incoming")
    else:
        _copy_into(conn, table, frame)
    return len(frame)


def append_rows(conn: Any, backend: str, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Append plain rows (tuples in `columns` order) to `table`: the bulk path for large batches of
    Python values, without a DataFrame in between.

    PostgreSQL: COPY, each value sent by psycopg's own adapters (NULL for None, escaping, a
    timezone-aware datetime as its instant). DuckDB: one Arrow table, built column by column and
    inserted with INSERT ... SELECT. Timestamps must be timezone-aware, ints fit BIGINT."""
    if not rows:
        return 0
    _checked(table)
    names = ", ".join(columns)
    if backend == "duckdb":
        import pyarrow as pa

        arrow = pa.table({name: [row[k] for row in rows] for k, name in enumerate(columns)})
        finish_pending(conn)
        conn.register("_incoming_rows", arrow)
        try:
            conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _incoming_rows")
        finally:
            _unregister(conn, "_incoming_rows")
    else:
        with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


def insert_new_rows(conn: Any, backend: str, table: str, frame: pd.DataFrame, key: Sequence[str]) -> pd.DataFrame:
    frame = _aligned(conn, table, frame)
    if frame.duplicated(subset=list(key)).any():  # drop_duplicates copies every row, even with none to drop
        frame = frame.drop_duplicates(subset=list(key))
    names = ", ".join(frame.columns)
    keys = ", ".join(key)
    if backend == "duckdb":
        conn.register("_incoming", frame)
        try:
            inserted = conn.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM _incoming ON CONFLICT DO NOTHING RETURNING {keys}"
            ).df()
        finally:
            _unregister(conn, "_incoming")
    else:
        staging = f"_incoming_{os.getpid()}"
        cur = conn.cursor()
        # A second insert_new_rows in the same transaction (quarantine, then opportunities) replaces it.
        cur.execute(f"DROP TABLE IF EXISTS {staging}")
        cur.execute(f"CREATE TEMP TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
        _copy_into(conn, staging, frame)
        cur.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} ON CONFLICT DO NOTHING RETURNING {keys}"
        )
        import pandas as pd

        inserted = pd.DataFrame(cur.fetchall(), columns=list(key))
    if len(inserted) == len(frame):
        # Every row went in (a first load, most runs): the frame itself, not a merged copy, which
        # at a million rows was the difference between 4.2 GB and a lower peak.
        return frame.reset_index(drop=True)
    return frame.merge(inserted, on=list(key), how="inner")


def stage_frame(conn: Any, backend: str, name: str, frame: pd.DataFrame) -> None:
    """Make `frame` readable as table `name` for the rest of this transaction."""
    if backend == "duckdb":
        conn.register(name, frame)
        return
    # Staged again in the same transaction (a replay over several sources): replace it.
    conn.cursor().execute(f"DROP TABLE IF EXISTS {name}")
    conn.cursor().execute(f"CREATE TEMP TABLE {name} ({_column_types(frame)}) ON COMMIT DROP")
    if not frame.empty:
        _copy_into(conn, name, frame)


def _column_types(frame: pd.DataFrame) -> str:
    types = {"i": "BIGINT", "u": "BIGINT", "f": "DOUBLE PRECISION", "b": "BOOLEAN", "M": "TIMESTAMPTZ"}
    return ", ".join(f"{c} {types.get(frame[c].dtype.kind, 'TEXT')}" for c in frame.columns)


def _copy_into(conn: Any, table: str, frame: pd.DataFrame) -> None:
    # COPY is the bulk path on PostgreSQL; CSV keeps NULLs distinct from empty strings via a marker.
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="\\N", date_format="%Y-%m-%d %H:%M:%S.%f%z")
    buffer.seek(0)
    names = ", ".join(frame.columns)
    with conn.cursor().copy(f"COPY {table} ({names}) FROM STDIN WITH (FORMAT csv, NULL '\\N')") as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)
