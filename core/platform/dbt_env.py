"""The environment the dbt project (dbt_project/profiles.yml) reads, derived from WAREHOUSE_URL.

dbt picks its target and connection from environment variables only, so one function maps the
warehouse URL every other component uses onto them: dbt then always writes the same warehouse.
"""

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.platform.warehouse import Warehouse, WarehouseError

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
_VENV_BIN = Path(sys.executable).parent


# dbt sends anonymous usage events (and writes a .user.yml cookie) unless told not to. Off in
# dbt_project.yml's flags, and here too, since an inherited DBT_SEND_ANONYMOUS_USAGE_STATS=true
# would override the project: every dbt this code starts (dagster-dbt, its preparer,
# `ventureloop dbt`) gets its environment from dbt_env_for.
NO_USAGE_STATS = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def dbt_env_for(warehouse_url: str) -> dict[str, str]:
    """`duckdb:///path` -> DBT_TARGET=duckdb and VENTURELOOP_WAREHOUSE_PATH;
    `postgresql[+driver]://user:password@host:port/db` -> DBT_TARGET=postgres and PG* variables;
    both with dbt's anonymous usage statistics off (NO_USAGE_STATS)."""
    return {**_connection_env(warehouse_url), **NO_USAGE_STATS}


def _connection_env(warehouse_url: str) -> dict[str, str]:
    warehouse = Warehouse(warehouse_url)
    if warehouse.backend == "duckdb":
        if warehouse.duckdb_path == ":memory:":
            raise WarehouseError(
                f"WAREHOUSE_URL {warehouse_url!r} is an in-memory DuckDB: dbt runs in its own process "
                "and needs a file both can open, e.g. duckdb:///path/warehouse.duckdb"
            )
        # dbt runs inside dbt_project/: a relative path must mean what it means to the caller.
        return {"DBT_TARGET": "duckdb", "VENTURELOOP_WAREHOUSE_PATH": str(Path(warehouse.duckdb_path).resolve())}
    parts = urlsplit(warehouse.postgres_dsn)
    return {
        "DBT_TARGET": "postgres",
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or "postgres"),
        "PGPASSWORD": unquote(parts.password or ""),
        "PGDATABASE": unquote(parts.path.lstrip("/")) or "postgres",
    }


def dbt_target_for(warehouse_url: str, declared: str | None = None) -> str:
    """The profile target that writes this warehouse. `declared` is a DBT_TARGET set by hand: it
    must agree, or dbt would write another warehouse than the one every other component reads."""
    target = dbt_env_for(warehouse_url)["DBT_TARGET"]
    if declared not in (None, "", target):
        raise WarehouseError(
            f"DBT_TARGET={declared} but the warehouse is {Warehouse(warehouse_url).describe()} "
            f"(dbt target {target}): unset DBT_TARGET or make it agree with WAREHOUSE_URL"
        )
    return target


def installed_dbt() -> str:
    """The dbt installed beside this interpreter: `dagster` may run without the venv on PATH."""
    beside = _VENV_BIN / "dbt"
    return str(beside) if beside.exists() else "dbt"


@contextlib.contextmanager
def dbt_environment(warehouse_url: str) -> Iterator[dict[str, str]]:
    """os.environ carrying the warehouse's dbt variables (and this interpreter's bin/ on PATH)
    while a dbt process is started; yields the variables.

    dagster-dbt hands dbt a copy of os.environ and offers no other way to set variables (its
    DbtCliResource and its project preparer alike); the copy is taken when the process starts,
    so the variables need to be set only that long."""
    variables = dbt_env_for(warehouse_url)
    overrides = {**variables, "PATH": os.pathsep.join([str(_VENV_BIN), os.environ.get("PATH", "")])}
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield variables
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
