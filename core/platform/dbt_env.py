"""The environment the dbt project (dbt_project/profiles.yml) reads, derived from WAREHOUSE_URL.

dbt picks its target and connection from environment variables only, so one function maps the
warehouse URL every other component uses onto them: dbt then always writes the same warehouse.
"""

from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.platform.warehouse import Warehouse, WarehouseError


def dbt_env_for(warehouse_url: str) -> dict[str, str]:
    """`duckdb:///path` -> DBT_TARGET=duckdb and VENTURELOOP_WAREHOUSE_PATH;
    `postgresql[+driver]://user:password@host:port/db` -> DBT_TARGET=postgres and PG* variables."""
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
