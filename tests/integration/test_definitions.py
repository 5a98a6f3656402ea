"""The shipped code locations, as a snapshot: every asset key, check, job (with its assets),
schedule and sensor. A wiring regression (a domain left out of a location, a job that lost its
selection, a renamed check) fails here. After an intended change, write the new snapshot with
`.venv/bin/python tests/integration/test_definitions.py` and review its diff."""

import importlib
import json
import sys
from pathlib import Path

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "definitions_snapshot.json"
LOCATIONS = {"ventureloop": "orchestration.definitions", "ventureloop_marts": "orchestration.marts_definitions"}


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    jobs = {}
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        selected = job.asset_layer.executable_asset_keys if job.asset_layer else set()
        jobs[job.name] = sorted(key.to_user_string() for key in selected)
    return {
        "assets": sorted(key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).is_executable),
        "checks": sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys),
        "jobs": jobs,
        "schedules": sorted(f"{s.name} {s.cron_schedule} -> {s.job_name}" for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "resources": sorted(defs.resources or {}),
        "presentation": {
            key.to_user_string(): presentation(graph.get(key))
            for key in graph.get_all_asset_keys()
            if graph.get(key).is_executable
        },
    }


def presentation(node) -> dict:
    """What the UI shows of an asset beside its key: owners, kinds (the warehouse's kind, which follows
    WAREHOUSE_URL, as `warehouse`), a link to its code, its table and how many columns are documented."""
    from assets.resources import warehouse_kind

    metadata = node.metadata
    table = metadata.get("dagster/table_name")
    schema = metadata.get("dagster/column_schema")
    return {
        "owners": sorted(node.owners),
        "kinds": sorted("warehouse" if kind == warehouse_kind() else kind for kind in node.kinds),
        "code_reference": "dagster/code_references" in metadata,
        # schema.table: dbt prefixes the database, whose name depends on the warehouse.
        "table": ".".join(str(getattr(table, "value", table)).split(".")[-2:]),
        "columns": len(schema.columns) if schema else 0,
    }


def snapshot() -> dict:
    return {name: describe(importlib.import_module(module).defs) for name, module in LOCATIONS.items()}


@pytest.mark.parametrize("location", sorted(LOCATIONS))
def test_definitions_match_the_snapshot(location: str):
    defs = importlib.import_module(LOCATIONS[location]).defs
    dg.Definitions.validate_loadable(defs)
    expected = json.loads(SNAPSHOT.read_text())[location]
    actual = describe(defs)
    for part in expected:
        assert actual[part] == expected[part], (
            f"{location} {part} changed; if intended, rewrite the snapshot (see this module's docstring)"
        )


def test_the_marts_hang_off_the_ledger_writers_across_locations():
    marts = importlib.import_module(LOCATIONS["ventureloop_marts"]).defs.resolve_asset_graph()
    main = importlib.import_module(LOCATIONS["ventureloop"]).defs.resolve_asset_graph()
    writers = {key for key in main.get_all_asset_keys() if main.get(key).is_executable}
    # Each ledger source of the dbt project is an asset the main location materializes.
    external = {key for key in marts.get_all_asset_keys() if not marts.get(key).is_executable}
    assert external and external <= writers
    assert {"ledger_entries", "fx_rates", "budgets"} == {key.to_user_string() for key in external}


# Imported only where they are used: dagster_dbt (and dbt-core under it) doubles a code location's
# import time, so only the marts location pays it (orchestration/marts_definitions.py); the scale-out
# executors only when DAGSTER_EXECUTOR chooses them (orchestration/wiring.py); redis (0.3 s) never
# by pybreaker (core/platform/http.py).
HEAVY_IMPORTS = (
    "dagster_dbt",
    "dbt",
    "dagster_celery",
    "celery",
    "kombu",
    "redis",
    "dagster_k8s",
    "kubernetes",
    "mlflow",
    "xgboost",
    "sklearn",
    "pandas",
)


def test_the_main_location_loads_without_dagster_dbt_or_the_scale_out_executors():
    import subprocess

    probe = (
        "import sys, orchestration.definitions; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{HEAVY_IMPORTS!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.stdout.strip() == "[]"


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(snapshot(), indent=2, sort_keys=True) + "\n")
    sys.stdout.write(f"wrote {SNAPSHOT}\n")
