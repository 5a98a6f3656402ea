"""The dbt models of the ledger (dbt_project/) as Dagster assets; their dbt tests are asset checks.

`dbt build` runs through dagster-dbt's DbtCliResource, on the warehouse of the `warehouse`
resource: its URL becomes the variables dbt_project/profiles.yml reads (core/platform/dbt_env.py), so dbt
never writes a different warehouse than the other assets read.

Why the asset specs are read from manifest.json here instead of with `@dbt_assets`: importing
dagster_dbt imports dbt-core, which costs 2-4 s on this class of machine, and every process that
loads the code location (webserver, daemon, each multiprocess step) would pay it. So the graph is
built from the manifest with plain JSON, with the same keys and check names dagster-dbt gives,
and dagster_dbt is imported only inside the step that runs dbt.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg

from core.platform.dbt_env import dbt_env_for
from core.platform.warehouse import default_warehouse_url
from assets.resources import WarehouseResource, warehouse_pool

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"
GROUP = "ledger_marts"
REFABLE = ("model", "seed", "snapshot")
_PROJECT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests")
_VENV_BIN = Path(sys.executable).parent


def dbt_executable() -> str:
    """The dbt installed beside this interpreter: `dagster` may run without the venv on PATH."""
    beside = _VENV_BIN / "dbt"
    return str(beside) if beside.exists() else "dbt"


@contextlib.contextmanager
def dbt_environment(warehouse_url: str) -> Iterator[None]:
    """os.environ carrying the warehouse's dbt variables while a dbt process is started.

    DbtCliResource hands dbt a copy of os.environ and offers no other way to set variables; the
    copy is taken when the process starts, so the variables need to be set only that long."""
    overrides = {**dbt_env_for(warehouse_url), "PATH": os.pathsep.join([str(_VENV_BIN), os.environ.get("PATH", "")])}
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def manifest_is_stale() -> bool:
    if not MANIFEST_PATH.exists():
        return True
    built = MANIFEST_PATH.stat().st_mtime
    for name in _PROJECT_SOURCES:
        source = DBT_PROJECT_DIR / name
        files = [source] if source.is_file() else source.rglob("*")
        if any(path.stat().st_mtime > built for path in files if path.is_file()):
            return True
    return False


@cache
def manifest() -> dict[str, Any]:
    """The parsed project. `dbt parse` runs only when the manifest is missing or older than a
    project file (`make env` runs it once), so a deployed code location starts without dbt."""
    if manifest_is_stale():
        env = {**os.environ, **dbt_env_for(default_warehouse_url())}
        done = subprocess.run([dbt_executable(), "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
                               str(DBT_PROJECT_DIR), "--quiet"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`dbt parse` of {DBT_PROJECT_DIR} failed; run it by hand to see why:\n"
                               f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))


def asset_key_for(props: Mapping[str, Any]) -> dg.AssetKey:
    """Models and seeds by their table's name, like every other asset; sources by the writer
    named in their meta.dagster.asset_key (models/staging/_sources.yml)."""
    if props["resource_type"] == "source":
        meta = props.get("meta") or props.get("config", {}).get("meta") or {}
        key = meta.get("dagster", {}).get("asset_key")
        return dg.AssetKey(key) if key else dg.AssetKey([props["source_name"], props["name"]])
    return dg.AssetKey(props["name"])


def tested_node(project: Mapping[str, Any], test: Mapping[str, Any]) -> str | None:
    """The node a dbt test checks, by dagster-dbt's rule: its only upstream, else its attached node."""
    upstream = set(test["depends_on"]["nodes"])
    return next(iter(upstream)) if len(upstream) == 1 else test.get("attached_node")


def dbt_specs(project: Mapping[str, Any]) -> tuple[list[dg.AssetSpec], list[dg.AssetCheckSpec]]:
    nodes, sources = project["nodes"], project["sources"]
    known = {**nodes, **sources}
    specs = []
    for unique_id, node in sorted(nodes.items()):
        if node["resource_type"] not in REFABLE:
            continue
        upstream = {asset_key_for(known[u]) for u in node.get("depends_on", {}).get("nodes", []) if u in known}
        specs.append(dg.AssetSpec(
            asset_key_for(node), deps=sorted(upstream, key=str), group_name=GROUP, skippable=True,
            description=node.get("description") or None, kinds={"dbt", "sql"},
            metadata={"dbt/unique_id": unique_id, "table": f"{node['schema']}.{node.get('alias') or node['name']}",
                      "materialized": node["config"].get("materialized", "")},
        ))
    checks = []
    for node in nodes.values():
        tested = tested_node(project, node) if node["resource_type"] == "test" else None
        if tested in nodes and nodes[tested]["resource_type"] in REFABLE:
            checks.append(dg.AssetCheckSpec(node["name"], asset=asset_key_for(nodes[tested]),
                                            description=node.get("description") or f"dbt test {node['name']}"))
    return specs, sorted(checks, key=lambda c: (str(c.asset_key), c.name))


_SPECS, _CHECKS = dbt_specs(manifest())


@dg.multi_asset(
    specs=_SPECS,
    check_specs=_CHECKS,
    name="ledger_dbt_assets",
    # dbt writes the warehouse: on DuckDB it queues with the other writers of the file.
    pool=warehouse_pool(),
    description="`dbt build` of dbt_project/: staging and marts of the ledger, with their tests.",
)
def ledger_dbt_assets(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator[Any]:
    from dagster_dbt import DagsterDbtTranslator, DbtCliResource

    class Translator(DagsterDbtTranslator):
        def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
            return asset_key_for(dbt_resource_props)

    target = dbt_env_for(warehouse.url)["DBT_TARGET"]
    if os.environ.get("DBT_TARGET") not in (None, "", target):
        raise dg.Failure(f"DBT_TARGET={os.environ['DBT_TARGET']} but the warehouse is {warehouse.client().describe()} "
                         f"(dbt target {target}): unset DBT_TARGET or make it agree with WAREHOUSE_URL")
    dbt = DbtCliResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                         dbt_executable=dbt_executable(), target=target)
    ours = {(c.asset_key, c.name) for c in _CHECKS}
    # Left to itself, dagster-dbt gives each invocation a new dbt_project/target/<id>/ (run_results,
    # compiled SQL, dbt.log) and never removes it: one folder per run, forever. What a user needs
    # of it is in the run already: dbt's log lines in the step's stdout, each model's and test's
    # result in its event, and the summary logged below. So each invocation gets a temporary
    # target directory, removed when the step ends, passed or failed.
    with tempfile.TemporaryDirectory(prefix="ventureloop-dbt-") as target_path:
        with dbt_environment(warehouse.url):
            invocation = dbt.cli(["build"], manifest=manifest(), dagster_dbt_translator=Translator(),
                                 target_path=Path(target_path))
        try:
            for event in invocation.stream():
                yield from _as_asset_events(event, ours, context)
        finally:
            _log_run_results(Path(target_path) / "run_results.json", context)


def _log_run_results(path: Path, context: dg.AssetExecutionContext) -> None:
    """One line of run_results.json before its directory goes: dbt's time and its nodes by status."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # dbt stopped before writing it (a parse or connection error)
        return
    statuses: dict[str, int] = {}
    for result in results.get("results", []):
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    context.log.info(f"dbt build: {results.get('elapsed_time', 0):.1f} s, "
                     + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))


def _as_asset_events(event: Any, checks: set[tuple[dg.AssetKey, str]], context: dg.AssetExecutionContext
                     ) -> Iterator[Any]:
    """dagster-dbt streams op-style events when it is not given the assets definition; turn them
    into this multi-asset's results. Tests on sources belong to other assets: observations."""
    if isinstance(event, dg.AssetMaterialization):
        yield dg.MaterializeResult(asset_key=event.asset_key, metadata=event.metadata)
    elif isinstance(event, dg.AssetCheckEvaluation):
        if (event.asset_key, event.check_name) in checks:
            yield dg.AssetCheckResult(asset_key=event.asset_key, check_name=event.check_name, passed=event.passed,
                                      severity=event.severity, metadata=event.metadata, description=event.description)
        else:
            context.log.info(f"dbt test {event.check_name} on {event.asset_key.to_user_string()}: "
                             f"{'passed' if event.passed else 'FAILED'}")
            yield dg.AssetObservation(asset_key=event.asset_key, metadata={"dbt_test": event.check_name,
                                                                           "passed": event.passed})
    elif isinstance(event, dg.AssetObservation):
        yield event
