"""Shared fixtures: a temporary warehouse on each backend, state built once per run, and the
Hypothesis profiles.

PostgreSQL tests create a fresh database per test on the real server and drop it after.
Under CI=true they are required; on a laptop without a server they skip with a hint.
What takes seconds to build (the demo's home, a materialized graph) is built once per test run
by `build_once` / `postgres_template` and copied by each test that needs it."""

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

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
settings.register_profile(
    "thorough",
    settings.get_profile("default"),
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or "ci"
try:
    settings.load_profile(HYPOTHESIS_PROFILE)
except InvalidArgument:
    raise pytest.UsageError(
        f"HYPOTHESIS_PROFILE={HYPOTHESIS_PROFILE!r} is not a Hypothesis profile here: use ci "
        "(make test) or thorough (make test-thorough)"
    ) from None


def pytest_report_header() -> str:
    active = settings()
    return (
        f"hypothesis profile: {settings.get_current_profile_name()} (max_examples={active.max_examples}, "
        f"derandomize={active.derandomize})"
    )


# -- built once per test run, shared by every xdist worker -------------------------------------

RUN_ID = pytest.StashKey[str]()
POSTGRES_TEMPLATES = pytest.StashKey[set[str]]()


def pytest_configure(config: pytest.Config) -> None:
    # One id for the whole run, the xdist workers' too: it names the run's template databases, so
    # that runs in parallel (other worktrees, the same server) never share or drop each other's.
    workerinput = getattr(config, "workerinput", None)
    config.stash[RUN_ID] = workerinput["ventureloop_run_id"] if workerinput else uuid.uuid4().hex[:10]
    config.stash[POSTGRES_TEMPLATES] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    node.workerinput["ventureloop_run_id"] = node.config.stash[RUN_ID]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    node.config.stash[POSTGRES_TEMPLATES].update(getattr(node, "workeroutput", {}).get("postgres_templates", ()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    # A template serves every worker, so it is dropped by the process that outlives them all: the
    # xdist controller (told by each worker what it created), or the one process of a run without -n.
    templates = session.config.stash.get(POSTGRES_TEMPLATES, set())
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["postgres_templates"] = sorted(templates)
        return
    for name in sorted(templates):
        _admin(PG_ADMIN_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def build_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable[[Path], None]], Path]:
    """`build_once(name, build)`: a directory that `build(directory)` fills once per test run rather than
    once per xdist worker: the first worker to ask builds it under a file lock, the others wait and reuse
    it. Treat it as read-only and copy what a test changes, so that every test starts from the same state."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # a worker's is inside the controller's

    def built(name: str, build: Callable[[Path], None]) -> Path:
        directory, done = shared / name, shared / f"{name}.built"
        with FileLock(shared / f"{name}.lock"):
            if not done.exists():  # a failed build leaves no mark: the next to ask builds again, and fails alike
                shutil.rmtree(directory, ignore_errors=True)
                directory.mkdir()
                build(directory)
                done.touch()
        return directory

    return built


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str, build_once, pytestconfig: pytest.Config) -> Callable[..., str]:
    """`postgres_template(name, build)`: the name of a database that `build(url)` filled once per test run,
    for `postgres_database(template)` to copy (CREATE DATABASE ... TEMPLATE, a file-level copy)."""

    def template(name: str, build: Callable[[str], None]) -> str:
        database = f"vl_template_{pytestconfig.stash[RUN_ID]}_{name}"

        def create(_directory: Path) -> None:
            _admin(postgres_admin_url, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            pytestconfig.stash[POSTGRES_TEMPLATES].add(database)
            _admin(postgres_admin_url, f"CREATE DATABASE {database}")
            build(_database_url(postgres_admin_url, database))
            # A copy fails while anyone is connected to its template: refuse connections from now on.
            _admin(postgres_admin_url, f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")

        build_once(f"postgres-{name}", create)
        return database

    return template


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


def _database_url(admin_url: str, name: str) -> str:
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def _admin(admin_url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def postgres_database(postgres_admin_url: str):
    """`postgres_database(template=None)`: the URL of a new database, a copy of `template` if given
    (see postgres_template), dropped after the test."""
    created = []

    def create(template: str | None = None) -> str:
        name = f"vl_test_{uuid.uuid4().hex[:12]}"
        _admin(postgres_admin_url, f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        created.append(name)
        return _database_url(postgres_admin_url, name)

    yield create
    for name in created:
        _admin(postgres_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_url(postgres_database) -> str:
    return postgres_database()


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
    from assets.resources import DiscoveryResource, LedgerInputsResource, MlflowResource, WarehouseResource

    return {
        "warehouse": WarehouseResource(url=warehouse.url),
        "discovery": DiscoveryResource(mode="snapshot"),
        "ledger_inputs": LedgerInputsResource(inbox_dir=str(tmp_path / "inbox")),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"),
    }


@pytest.fixture(autouse=True)
def closed_circuit_breakers():
    """Each source's circuit breaker lives as long as the process (core.platform.http): without
    this, one test's failed requests would open it for a later test's requests to that source."""
    from core.platform.http import reset_breakers

    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture(scope="module")
def shared_warehouse(request, tmp_path_factory):
    """One warehouse per backend (parametrize indirectly with "duckdb" / "postgres") for a whole
    module of table-driven cases, each of which works on its own rows: a database per case would
    cost more than the cases."""
    if request.param == "duckdb":
        warehouse = Warehouse(f"duckdb:///{tmp_path_factory.mktemp('shared')}/warehouse.duckdb")
        ensure_schema(warehouse)
        yield warehouse
        return
    import psycopg

    admin = request.getfixturevalue("postgres_admin_url")
    name = f"vl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    warehouse = Warehouse(f"{admin.rsplit('/', 1)[0]}/{name}")
    ensure_schema(warehouse)
    yield warehouse
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
