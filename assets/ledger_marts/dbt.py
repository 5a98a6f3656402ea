"""The dbt models of the ledger (dbt_project/) as Dagster assets; their dbt tests are asset checks.

`@dbt_assets` over the manifest of `ledger_dbt_project` (assets/ledger_marts/project.py), with the
translator below: one asset per model and seed, keyed by layer (`staging/stg_postings`,
`marts/revenue_summary`, `seeds/currencies`) so that later domains cannot collide with a name
here; the dbt sources are the ledger writers of the main code location (`ledger_entries`,
`fx_rates`, `budgets`, named by meta.dagster.asset_key in models/staging/_sources.yml), so the
UI shows one graph across the two locations.

The multi-asset can be subset: materializing one mart (from the UI, or `dagster asset
materialize --select marts/revenue_summary -m orchestration.marts_definitions`) runs `dbt build`
on that model and its tests only. Every model and seed is eager: when a ledger writer in the
other location materializes, the automation sensor of this location (assets/ledger_marts/__init__.py)
requests what lies below it, once, in one run.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliInvocation, dbt_assets

from assets.ledger_marts.project import ledger_dbt_project, prepare_if_stale
from assets.resources import DbtResource, warehouse_pool
from core.platform.warehouse import Warehouse

GROUP = "ledger_marts"
OWNER = "team:ledger"
# A layer per resource type; models take the folder under models/ (staging, marts).
LAYERS = {"seed": "seeds", "snapshot": "snapshots"}


def layer_of(props: Mapping[str, Any]) -> str:
    if props["resource_type"] in LAYERS:
        return LAYERS[props["resource_type"]]
    fqn = props.get("fqn") or []  # [project, folder..., name]
    return fqn[1] if len(fqn) > 2 else "models"


class LedgerDbtTranslator(DagsterDbtTranslator):
    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        meta = dbt_resource_props.get("config", {}).get("meta") or dbt_resource_props.get("meta") or {}
        if dbt_resource_props["resource_type"] == "source" or meta.get("dagster", {}).get("asset_key"):
            return super().get_asset_key(dbt_resource_props)  # meta.dagster.asset_key: the writer
        return dg.AssetKey([layer_of(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return GROUP

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return [OWNER]

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        # eager: requested when a dependency (a ledger writer, or a model that is itself being
        # requested) updates, never while one is missing or running, and once per update.
        return None if dbt_resource_props["resource_type"] == "source" else dg.AutomationCondition.eager()


# Three sources (accounts, transactions, postings) are all written by `ledger_entries`. Code
# references link each model to its .sql file. The column schema shown for each model is dagster-dbt's
# default from the manifest: the columns and descriptions of models/*/_*.yml.
TRANSLATOR = LedgerDbtTranslator(
    DagsterDbtTranslatorSettings(enable_duplicate_source_asset_keys=True, enable_code_references=True)
)

prepare_if_stale()


@dbt_assets(
    manifest=ledger_dbt_project.manifest_path,
    project=ledger_dbt_project,
    dagster_dbt_translator=TRANSLATOR,
    name="ledger_dbt_assets",
    # dbt writes the warehouse: on DuckDB it queues with the other writers of the file.
    pool=warehouse_pool(),
)
def ledger_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtResource) -> Iterator[Any]:
    """`dbt build` of the selected models and seeds of dbt_project/, with their tests."""
    invocation = dbt.cli(["build"], context=context)
    try:
        yield from with_row_counts(invocation.stream(), context, dbt.warehouse.client())
    finally:
        log_run_results(invocation, context)


# Tables are counted; a view is not (counting it runs its query), nor is an ephemeral model.
COUNTED = ("table", "incremental", "seed", "snapshot")


def with_row_counts(events: Iterator[Any], context: dg.AssetExecutionContext, warehouse: Warehouse) -> Iterator[Any]:
    """dbt's events, each model's output with `dagster/row_count`, counted once dbt has exited.

    Not dagster-dbt's `fetch_row_counts`: it counts through a dbt adapter that stays connected to
    the DuckDB file with another configuration, and every later step of an in-process run (the
    demo) then fails to connect. If dbt fails, what it built is still reported, without counts."""
    built = []
    try:
        built.extend(events)
    except Exception:
        yield from built
        raise
    for event in built:
        if isinstance(event, dg.Output):
            spec = context.assets_def.specs_by_key[context.asset_key_for_output(event.output_name)]
            count = row_count(spec, warehouse)
            if count is not None:
                event = event.with_metadata({**event.metadata, "dagster/row_count": count})
        yield event


def row_count(spec: dg.AssetSpec, warehouse: Warehouse) -> int | None:
    kind = spec.metadata.get("dagster-dbt/materialization_type")
    table = spec.metadata.get("dagster/table_name")
    if str(getattr(kind, "value", kind)) not in COUNTED or table is None:
        return None
    # database.schema.table: the warehouse client is connected to the database already.
    return warehouse.count(".".join(str(getattr(table, "value", table)).split(".")[-2:]))


def log_run_results(invocation: DbtCliInvocation, context: dg.AssetExecutionContext) -> None:
    """One line of run_results.json before its directory goes: dbt's time and its nodes by status."""
    try:
        results = invocation.get_artifact("run_results.json")
    except (OSError, ValueError):  # dbt stopped before writing it (a parse or connection error)
        return
    statuses: dict[str, int] = {}
    for result in results.get("results", []):
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    context.log.info(
        f"dbt build: {results.get('elapsed_time', 0):.1f} s, "
        + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    )
