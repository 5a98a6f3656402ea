"""How a code location is put together: the domains' Definitions, merged, plus the resources and
executor of this environment (chosen by environment variables only, see .env.example)."""

import os

import dagster as dg

from orchestration.resources import resources


def executor() -> dg.ExecutorDefinition:
    # In-process by default: each multiprocess step re-imports the code location, and a DuckDB
    # file has one writer anyway. DAGSTER_EXECUTOR=multiprocess for a server warehouse.
    choice = os.environ.get("DAGSTER_EXECUTOR") or "in_process"
    if choice not in ("in_process", "multiprocess"):
        raise ValueError(f"DAGSTER_EXECUTOR={choice!r}: use in_process or multiprocess")
    return dg.multiprocess_executor if choice == "multiprocess" else dg.in_process_executor


def discovery_is_live() -> bool:
    return os.environ.get("DISCOVERY_MODE") == "live"


def location(*domains: dg.Definitions) -> dg.Definitions:
    return dg.Definitions.merge(*domains, dg.Definitions(resources=resources(), executor=executor()))
