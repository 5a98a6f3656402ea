"""Warehouse tables owned by ventureloop. Portable DDL: the same text runs on DuckDB and PostgreSQL.

Other domains (the ledger) register their own DDL with `register`; `ensure_schema` creates all
of it idempotently, so every entry point (assets, CLI, tests) can call it first.
"""

from collections.abc import Sequence

from core.warehouse import Warehouse

SCHEMAS = ("raw", "core", "quarantine")

DISCOVERY_DDL: list[str] = [
    # One row per HTTP response (or snapshot replay): normalization can be replayed from these.
    """CREATE TABLE IF NOT EXISTS raw.responses (
        response_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        mode TEXT NOT NULL,
        request_url TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        content_type TEXT,
        body_bytes BIGINT NOT NULL,
        fetched_at TIMESTAMPTZ NOT NULL,
        run_id TEXT
    )""",
    # One row per item found in a response, verbatim as the API returned it (JSON text).
    """CREATE TABLE IF NOT EXISTS raw.records (
        record_id TEXT PRIMARY KEY,
        response_id TEXT NOT NULL,
        source TEXT NOT NULL,
        external_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        fetched_at TIMESTAMPTZ NOT NULL
    )""",
    # Which responses the opportunities asset has already normalized.
    """CREATE TABLE IF NOT EXISTS core.normalized_responses (
        response_id TEXT PRIMARY KEY,
        normalized_at TIMESTAMPTZ NOT NULL
    )""",
    # Anything that could not be used, with where it came from and why; replayable.
    """CREATE TABLE IF NOT EXISTS quarantine.records (
        quarantine_id TEXT PRIMARY KEY,
        stage TEXT NOT NULL,
        source TEXT NOT NULL,
        origin TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL,
        payload_encoding TEXT NOT NULL,
        quarantined_at TIMESTAMPTZ NOT NULL,
        replayed_at TIMESTAMPTZ,
        run_id TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS core.opportunities (
        fingerprint TEXT PRIMARY KEY,
        opportunity_id TEXT NOT NULL,
        source TEXT NOT NULL,
        family TEXT NOT NULL,
        external_id TEXT NOT NULL,
        url TEXT NOT NULL,
        canonical_url TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        author TEXT,
        points BIGINT NOT NULL,
        comments BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        fetched_at TIMESTAMPTZ NOT NULL,
        cluster_id TEXT NOT NULL,
        record_id TEXT NOT NULL
    )""",
    # Every time an opportunity is seen again: engagement over time gives velocity.
    """CREATE TABLE IF NOT EXISTS core.opportunity_sightings (
        fingerprint TEXT NOT NULL,
        source TEXT NOT NULL,
        points BIGINT NOT NULL,
        comments BIGINT NOT NULL,
        seen_at TIMESTAMPTZ NOT NULL,
        record_id TEXT NOT NULL
    )""",
    # The persisted near-duplicate index: one row per (band, bucket) an opportunity hashes to.
    """CREATE TABLE IF NOT EXISTS core.lsh_buckets (
        band INTEGER NOT NULL,
        bucket TEXT NOT NULL,
        opportunity_id TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS lsh_buckets_lookup ON core.lsh_buckets (band, bucket)",
    """CREATE TABLE IF NOT EXISTS core.lsh_signatures (
        opportunity_id TEXT PRIMARY KEY,
        cluster_id TEXT NOT NULL,
        signature TEXT NOT NULL
    )""",
]

_REGISTERED: list[str] = list(DISCOVERY_DDL)


def register(statements: Sequence[str]) -> None:
    for statement in statements:
        if statement not in _REGISTERED:
            _REGISTERED.append(statement)


def ensure_schema(warehouse: Warehouse) -> None:
    statements = [f"CREATE SCHEMA IF NOT EXISTS {schema}" for schema in SCHEMAS] + _REGISTERED
    warehouse.execute_script(statements)
