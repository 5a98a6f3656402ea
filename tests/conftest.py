"""Shared fixtures: a temporary warehouse on each backend.

PostgreSQL tests create a fresh database per test on the real server and drop it after.
Under CI=true they are required; on a laptop without a server they skip with a hint."""

import os
import uuid

import pytest

from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as error:  # noqa: BLE001 - any failure means "no server here"
        return str(error).splitlines()[0]


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    problem = _postgres_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but {PG_ADMIN_URL} is unreachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({problem}); start it or set TEST_POSTGRES_URL")
    return PG_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_admin_url: str):
    import psycopg

    name = f"vl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = postgres_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def duckdb_url(tmp_path) -> str:
    return f"duckdb:///{tmp_path}/warehouse.duckdb"


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request) -> str:
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def warehouse(warehouse_url: str) -> Warehouse:
    warehouse = Warehouse(warehouse_url)
    ensure_schema(warehouse)
    return warehouse


@pytest.fixture
def asset_resources(warehouse: Warehouse, tmp_path):
    """Every resource the assets take, on the test's warehouse, with the embedded defaults."""
    from assets.resources import DiscoveryResource, LedgerInputsResource, WarehouseResource

    return {"warehouse": WarehouseResource(url=warehouse.url), "discovery": DiscoveryResource(mode="snapshot"),
            "ledger_inputs": LedgerInputsResource(inbox_dir=str(tmp_path / "inbox"))}


@pytest.fixture(autouse=True)
def closed_circuit_breakers():
    """Each source's circuit breaker lives as long as the process (core.platform.http): without
    this, one test's failed requests would open it for a later test's requests to that source."""
    from core.platform.http import reset_breakers

    reset_breakers()
    yield
    reset_breakers()
