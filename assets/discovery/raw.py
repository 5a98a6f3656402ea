"""One asset per discovery source: fetch (live or snapshot), keep raw items, quarantine bad ones.

A source that fails or lacks credentials still materializes (so the rest of the graph runs);
its failure shows in the metadata and in its `fetch_succeeded` check."""

import dagster as dg

from assets.resources import DiscoveryResource, WarehouseResource, warehouse_kind, warehouse_pool
from core.discovery.sources import Source, all_sources

OWNER = "team:discovery"


def discovery_asset(source: Source) -> dg.AssetsDefinition:
    key = dg.AssetKey(["raw", source.name])

    @dg.asset(
        key=key,
        group_name="discovery",
        owners=[OWNER],
        kinds={"python", warehouse_kind()},
        pool=warehouse_pool(),
        description=f"Raw items from {source.name} ({source.family}). {source.description}".strip(),
        tags={"family": source.family},
        metadata={"dagster/table_name": "raw.records"},
        check_specs=[
            dg.AssetCheckSpec("fetch_succeeded", asset=key, description="The source answered and its responses parsed.")
        ],
    )
    def _discover(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, discovery: DiscoveryResource
    ) -> dg.MaterializeResult:
        from core.discovery.fetch import discover
        from core.platform.schema import ensure_schema

        client = warehouse.client()
        ensure_schema(client)
        result = discover(source.with_env(discovery.source_env()), client, discovery.mode, run_id=context.run.run_id)
        log = context.log.warning if result.status != "ok" else context.log.info
        log(f"{source.name}: {result.status}: {result.message}")
        severity = dg.AssetCheckSeverity.WARN if result.status == "skipped" else dg.AssetCheckSeverity.ERROR
        return dg.MaterializeResult(
            metadata={
                **result.as_metadata(),
                "warehouse": client.describe(),
                # This source's share of raw.records, every run so far.
                "dagster/row_count": int(
                    client.scalar("SELECT count(*) FROM raw.records WHERE source = %s", [source.name])
                ),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="fetch_succeeded",
                    passed=result.status == "ok",
                    severity=severity,
                    metadata={"message": result.message},
                )
            ],
        )

    return _discover


SOURCES = all_sources()
raw_assets = [discovery_asset(source) for source in SOURCES]
