"""Render $DAGSTER_HOME/dagster.yaml from the repository's dagster.yaml and the environment, and
check that an instance file still agrees with the environment.

Dagster's instance file cannot choose a storage backend from an environment variable, so the
choice is made here, once, before the webserver or daemon start; every code location then checks
it (`require_matching_storage`), so a `dagster` command whose environment asks for PostgreSQL
storage refuses to run on an instance that would keep the run in SQLite."""

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from core.platform.warehouse import Warehouse

TEMPLATE = Path(__file__).resolve().parent.parent / "dagster.yaml"
# Pool limit on a PostgreSQL warehouse unless DAGSTER_POOL_LIMIT says otherwise: the server takes
# concurrent writers, and with limit 1 the multiprocess executor ran the demo graph in 6.5 minutes
# (one step at a time, each paying a process start) where in-process took 49 s. A DuckDB file
# allows one writer process, so its pool stays at 1.
POSTGRES_POOL_LIMIT = 4
# Experiment runs (tag ventureloop/kind=experiment, assets/experiments/execution.py) at once, unless
# DAGSTER_EXPERIMENT_RUN_LIMIT says otherwise: 10 when both the instance and the warehouse are
# PostgreSQL (each run holds its experiment's advisory lock; runs of different experiments never
# block each other), 1 otherwise: a DuckDB warehouse has one writer, so a second experiment run
# would only hold a process while it waits for the pool, and SQLite run storage serializes writes.
EXPERIMENT_KIND_TAG = "ventureloop/kind"
EXPERIMENT_KIND = "experiment"
POSTGRES_EXPERIMENT_RUN_LIMIT = 10
# Runs at once on a PostgreSQL instance: the experiment runs plus room for the scheduled graph's.
POSTGRES_MAX_CONCURRENT_RUNS = 12


class InstanceMismatch(RuntimeError):
    """$DAGSTER_HOME/dagster.yaml stores runs elsewhere than the environment asks."""


def _check_postgres_url(url: str) -> None:
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, with which dagster-postgres 0.29 fails on
    # every run (NOTIFY ... $1); the lock pins SQLAlchemy < 2.1, and +psycopg (3) is refused here.
    scheme = url.split("://", 1)[0]
    if scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        raise ValueError(
            f"DAGSTER_POSTGRES_URL must start with postgresql:// or postgresql+psycopg2://, got {scheme}://"
        )


def _warehouse_is_duckdb(env: Mapping[str, str]) -> bool:
    return Warehouse(env.get("WAREHOUSE_URL") or "duckdb:///default").backend == "duckdb"


def default_pool_limit(env: Mapping[str, str]) -> int:
    return 1 if _warehouse_is_duckdb(env) else POSTGRES_POOL_LIMIT


def default_experiment_run_limit(env: Mapping[str, str]) -> int:
    both_postgres = bool(env.get("DAGSTER_POSTGRES_URL")) and not _warehouse_is_duckdb(env)
    return POSTGRES_EXPERIMENT_RUN_LIMIT if both_postgres else 1


def experiment_run_limit_of(config: Mapping[str, Any] | None) -> int | None:
    """The instance's limit on experiment runs at once, or None if the file sets none."""
    runs = (((config or {}).get("concurrency") or {}).get("runs")) or {}
    for limit in runs.get("tag_concurrency_limits") or []:
        if limit.get("key") == EXPERIMENT_KIND_TAG and limit.get("value") == EXPERIMENT_KIND:
            return limit.get("limit")
    return None


def render(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    config = yaml.safe_load(TEMPLATE.read_text())
    if url := env.get("DAGSTER_POSTGRES_URL"):
        _check_postgres_url(url)
        # By reference, so the password stays in the environment and out of the file.
        config["storage"] = {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}
    runs_config = config["concurrency"]["runs"]
    if runs := env.get("DAGSTER_MAX_CONCURRENT_RUNS"):
        runs_config["max_concurrent_runs"] = _positive_int("DAGSTER_MAX_CONCURRENT_RUNS", runs)
    elif url:
        runs_config["max_concurrent_runs"] = max(runs_config["max_concurrent_runs"], POSTGRES_MAX_CONCURRENT_RUNS)
    experiments = env.get("DAGSTER_EXPERIMENT_RUN_LIMIT")
    experiment_limit = (
        _positive_int("DAGSTER_EXPERIMENT_RUN_LIMIT", experiments) if experiments else default_experiment_run_limit(env)
    )
    others = [
        limit
        for limit in runs_config.get("tag_concurrency_limits") or []
        if (limit.get("key"), limit.get("value")) != (EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    ]
    experiment_entry = {"key": EXPERIMENT_KIND_TAG, "value": EXPERIMENT_KIND, "limit": experiment_limit}
    runs_config["tag_concurrency_limits"] = [experiment_entry, *others]
    limit = env.get("DAGSTER_POOL_LIMIT")
    pools = config["concurrency"]["pools"]
    pools["default_limit"] = _positive_int("DAGSTER_POOL_LIMIT", limit) if limit else default_pool_limit(env)
    return config


def _positive_int(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def write(dagster_home: Path, env: Mapping[str, str] | None = None) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    header = "# Written by `ventureloop instance init` from the repository's dagster.yaml; edit that instead.\n"
    text = header + yaml.safe_dump(render(env), sort_keys=False)
    # compose.yaml runs `instance init` in several services at once on one volume, while code
    # servers read the file: write a temporary file beside it and rename it over, so a reader sees
    # the old file or the new one, never half of one.
    handle, temporary = tempfile.mkstemp(dir=dagster_home, prefix=".dagster.yaml.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; the file holds no secret (URLs by reference)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read(dagster_home: Path) -> dict[str, Any] | None:
    """The instance file under `dagster_home`, or None if there is none (Dagster then uses SQLite)."""
    path = dagster_home / "dagster.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else None


# `storage:` is what `instance init` writes; Dagster's Helm chart writes the three separate blocks,
# each `module: dagster_postgres.<...>` / `class: Postgres...Storage`.
STORAGE_BLOCKS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


def _is_postgres(block: Any) -> bool:
    if not isinstance(block, Mapping):
        return False
    return (
        "postgres" in block
        or str(block.get("module") or "").startswith("dagster_postgres")
        or str(block.get("class") or "").startswith("Postgres")
    )


def storage_of(config: Mapping[str, Any] | None) -> str:
    config = config or {}
    return "postgres" if any(_is_postgres(config.get(name)) for name in STORAGE_BLOCKS) else "sqlite"


def pool_limit_of(config: Mapping[str, Any] | None) -> int | None:
    """The instance's default pool limit, or None if the file sets none."""
    pools = (((config or {}).get("concurrency") or {}).get("pools")) or {}
    limit = pools.get("default_limit")
    return limit if isinstance(limit, int) else None


def describe_storage(dagster_home: Path, config: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> str:
    """Where this instance keeps runs and events, the password hidden: for the operator to read."""
    env = os.environ if env is None else env
    if storage_of(config) == "postgres":
        url = env.get("DAGSTER_POSTGRES_URL")
        return f"PostgreSQL {Warehouse(url).describe()}" if url else "PostgreSQL (DAGSTER_POSTGRES_URL unset)"
    return f"SQLite under {dagster_home}"


def require_matching_storage(env: Mapping[str, str] | None = None) -> None:
    """Raise InstanceMismatch if $DAGSTER_HOME/dagster.yaml does not store runs where the
    environment asks (DAGSTER_POSTGRES_URL set or not), or lets several writers at a DuckDB
    warehouse (pool limit above 1). One small yaml read: every code location
    calls it on load, so `dagster asset materialize`, `dagster dev` and the daemon refuse loudly
    instead of running on storage the UI of the other configuration never shows."""
    env = os.environ if env is None else env
    wants_postgres = bool(env.get("DAGSTER_POSTGRES_URL"))
    fix = "run `ventureloop instance init` with this environment (make dev and make demo do it)"
    home = env.get("DAGSTER_HOME")
    if not home:
        if wants_postgres:
            raise InstanceMismatch(
                "DAGSTER_POSTGRES_URL is set but DAGSTER_HOME is not, so Dagster would keep this run in a "
                f"temporary SQLite instance: export DAGSTER_HOME (an absolute path) and {fix}"
            )
        return
    config = read(Path(home))
    has = storage_of(config)
    if wants_postgres and has == "sqlite":
        raise InstanceMismatch(
            f"DAGSTER_POSTGRES_URL is set but {home}/dagster.yaml keeps runs in SQLite under {home}: {fix}"
        )
    if not wants_postgres and has == "postgres":
        raise InstanceMismatch(
            f"{home}/dagster.yaml keeps runs in PostgreSQL (DAGSTER_POSTGRES_URL) but DAGSTER_POSTGRES_URL is "
            f"unset: set it, or {fix} to switch this instance to SQLite"
        )
    limit = pool_limit_of(config)
    if limit is not None and limit > 1 and default_pool_limit(env) == 1:
        # Rendered for a PostgreSQL warehouse, then WAREHOUSE_URL switched to DuckDB: the duckdb
        # pool would run several writer processes on a file that allows one.
        raise InstanceMismatch(
            f"{home}/dagster.yaml sets pool limit {limit} but the warehouse is DuckDB, which allows one "
            f"writer process: {fix}, with DAGSTER_POOL_LIMIT unset or 1"
        )
