"""Great-expectations suites on the opportunity tables, run as Dagster asset checks."""

import dagster as dg

from assets.discovery.opportunities import opportunities, scored_opportunities
from assets.discovery.raw import SOURCES
from assets.resources import WarehouseResource


def _check_result(suite: str, frame) -> dg.AssetCheckResult:
    from core.discovery.quality import validate

    outcomes = validate(suite, frame)
    failed = [o for o in outcomes if not o.success]
    return dg.AssetCheckResult(
        passed=not failed,
        metadata={
            "rows": len(frame),
            "expectations": len(outcomes),
            "failed": len(failed),
            "details": dg.MetadataValue.md("\n".join(f"- {o.describe()}" for o in outcomes)),
        },
        description="; ".join(o.describe() for o in failed) or None,
    )


@dg.asset_check(
    asset=opportunities,
    blocking=True,
    description="Non-null keys, unique fingerprints and ids, valid URLs, non-negative engagement.",
)
def opportunities_pass_quality_suite(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _check_result("opportunities", warehouse.client().read("core.opportunities"))


@dg.asset_check(asset=opportunities, description="Every enabled source has contributed at least one opportunity.")
def every_source_has_opportunities(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from core.discovery.quality import rows_per_source

    counts = rows_per_source(warehouse.client().read("core.opportunities"), [s.name for s in SOURCES])
    empty = [name for name, n in counts.items() if n == 0]
    return dg.AssetCheckResult(
        passed=not empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"rows_per_source": dg.MetadataValue.json(counts)},
        description=f"no opportunities yet from {', '.join(empty)}" if empty else None,
    )


@dg.asset_check(
    asset=scored_opportunities,
    blocking=True,
    description="Scores and every weighted factor within [0, 1]; one row per opportunity.",
)
def scores_within_unit_interval(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return _check_result("scored_opportunities", warehouse.client().read("core.scored_opportunities"))
