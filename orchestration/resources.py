"""Resources per environment, chosen by environment variables only (see .env.example)."""

import os

import dagster as dg
import pydantic

from core.platform.warehouse import Warehouse, default_warehouse_url


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse and ledger: a DuckDB file by default, PostgreSQL when WAREHOUSE_URL says so."""

    url: str

    def client(self) -> Warehouse:
        return Warehouse(self.url)


class DiscoveryResource(dg.ConfigurableResource):
    """`snapshot` replays the recorded responses bundled in the repository; `live` calls the APIs
    with credentials from the environment (a source without them is skipped, not failed)."""

    mode: str = "snapshot"

    @pydantic.field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in ("snapshot", "live"):
            raise ValueError(f"DISCOVERY_MODE={mode!r}: use snapshot (recorded responses) or live (the APIs)")
        return mode


def warehouse_url() -> str:
    return default_warehouse_url()


def warehouse_pool() -> str:
    # A DuckDB file allows one writer process: every asset that writes it shares a pool of 1.
    return "duckdb" if Warehouse(warehouse_url()).backend == "duckdb" else "warehouse"


def resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "warehouse": WarehouseResource(url=warehouse_url()),
        "discovery": DiscoveryResource(mode=os.environ.get("DISCOVERY_MODE") or "snapshot"),
    }
