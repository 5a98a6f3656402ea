"""Shared fixtures: a temporary warehouse on each backend, and the Hypothesis profiles.

PostgreSQL tests create a fresh database per test on the real server and drop it after.
Under CI=true they are required; on a laptop without a server they skip with a hint."""

import os
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (`ci` unless it says otherwise, so a plain
# `pytest` explores what CI explores). A property test does not hard-code max_examples: it omits
# it, or scales the profile's budget, `@settings(max_examples=10 * settings().max_examples)` for a
# cheap check, `settings().max_examples // 3` for one that writes a database per example.
# `ci` (make test) is derandomized: the same examples on every run and machine, so a CI failure
# fails again under `make test`, and it prints the @reproduce_failure blob of what it found.
# `thorough` (make test-thorough) is random, twenty times the examples, and keeps the local
# example database (.hypothesis/) so that what it finds is replayed first on the next run.
settings.register_profile("ci", settings.get_profile("ci"), max_examples=50)
settings.register_profile("thorough", settings.get_profile("default"), max_examples=1000, deadline=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow])
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or "ci"
try:
    settings.load_profile(HYPOTHESIS_PROFILE)
except InvalidArgument:
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE={HYPOTHESIS_PROFILE!r} is not a Hypothesis profile here: use ci "
                            "(make test) or thorough (make test-thorough)") from None


def pytest_report_header() -> str:
    active = settings()
    return (f"hypothesis profile: {settings.get_current_profile_name()} (max_examples={active.max_examples}, "
            f"derandomize={active.derandomize})")


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
