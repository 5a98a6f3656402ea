"""One lock per experiment: two runs never execute the same experiment at once.

PostgreSQL: a session-level pg_try_advisory_lock on a connection of its own, held for the whole
run (the run's writes use other, short-lived connections). The two-key form keeps it apart from
the audit chain's one-key transaction lock. The server frees it when the holder's connection
ends, so a killed run never leaves it behind.

DuckDB: an exclusive fcntl lock on a file beside the warehouse file. The kernel frees it when the
process dies; flock locks are per open file, so two threads of one process also exclude each other.
"""

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.platform.warehouse import Warehouse

# The first key of the two-key advisory lock: "experiment run" (an arbitrary constant, namespaces it).
LOCK_NAMESPACE = 0x7E_C5_01


class ExperimentBusy(RuntimeError):
    """Another run holds the experiment's lock."""


def _key(experiment_id: str) -> int:
    # A stable signed 32-bit key (Python's hash() differs between processes).
    return int.from_bytes(hashlib.sha256(experiment_id.encode()).digest()[:4], "big", signed=True)


def lock_file(warehouse: Warehouse, experiment_id: str) -> Path:
    path = warehouse.duckdb_path
    base = Path(tempfile.gettempdir()) / "ventureloop-memory" if path == ":memory:" else Path(path).parent
    digest = hashlib.sha256(experiment_id.encode()).hexdigest()[:16]
    name = Path(path).name if path != ":memory:" else "memory"
    return base / f".{name}.locks" / f"experiment-{digest}.lock"


def _busy(experiment_id: str) -> ExperimentBusy:
    return ExperimentBusy(
        f"experiment {experiment_id} is being executed by another run (its lock is held): this run does "
        f"nothing; the other run continues from the experiment's checkpoints"
    )


@contextlib.contextmanager
def experiment_lock(warehouse: Warehouse, experiment_id: str) -> Iterator[None]:
    """Hold the experiment's lock for the block, or raise ExperimentBusy at once (no waiting)."""
    if warehouse.backend == "postgres":
        import psycopg

        with psycopg.connect(warehouse.postgres_dsn, autocommit=True) as conn:
            key = _key(experiment_id)
            if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, key]).fetchone()[0]:
                raise _busy(experiment_id)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # a broken connection frees it anyway
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, key])
        return
    path = lock_file(warehouse, experiment_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(experiment_id) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
