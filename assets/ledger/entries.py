"""The ledger's writers: FX rates, budgets, and ledger entries (payment imports). Every write goes
through core/ and is audited there; these assets only choose what to write and describe it. The
simulated market's outcomes are booked by the experiments that earn them, as they run
(core.simulator.environment), not here."""

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from assets.resources import LedgerInputsResource, WarehouseResource, warehouse_kind, warehouse_pool

if TYPE_CHECKING:
    from core.ledger.audit import PublishedHead

HEAD_KEY, CHAIN_KEY, WAREHOUSE_KEY = "audit_chain_head", "audit_chain_id", "audit_warehouse"
PUBLISHED_HEADS_CHECKED = 5
OWNER = "team:ledger"


@dg.asset(
    group_name="ledger",
    owners=[OWNER],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    metadata={"dagster/table_name": "ledger.fx_rates"},
    description="ECB euro reference rates: the bundled snapshot, or today's rates from the ECB when "
    "FX_RATES_SOURCE=ecb; plus FX_EXTRA_RATES_FILE for currencies the ECB does not publish. "
    "A (date, currency) once stored is never overwritten.",
)
def fx_rates(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, ledger_inputs: LedgerInputsResource
) -> dg.MaterializeResult:
    import pandas as pd

    from core.ledger import fx
    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    source = ledger_inputs.fx_rates_source
    frame = fx.bundled_rates() if source == "bundled" else fx.fetch_ecb_daily()
    extra = ledger_inputs.fx_extra_rates_file
    if extra:  # currencies the ECB does not publish; the same file again stores nothing new
        frame = pd.concat([frame, fx.load_extra_rates(extra)], ignore_index=True)
    stored = fx.store_rates(client, frame)
    context.log.info(f"{stored} new rates from {source}" + (f" and {extra}" if extra else ""))
    return dg.MaterializeResult(
        metadata={
            "source": source,
            "extra_rates_file": extra or "none",
            "new_rates": stored,
            "rates_in_file": len(frame),
            "currencies": dg.MetadataValue.json(sorted(frame["currency"].unique().tolist())),
            "last_rate_date": str(max(frame["rate_date"])) if len(frame) else "none",
            "dagster/row_count": client.count("ledger.fx_rates"),
        }
    )


@dg.asset(
    group_name="ledger",
    owners=[OWNER],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    metadata={"dagster/table_name": "ledger.budgets"},
    description="Spend limits from core/ledger/config/budgets.yaml (VENTURELOOP_BUDGETS_FILE): global, category "
    "and experiment budgets per hour, day and month; each change is versioned and audited.",
)
def budgets(warehouse: WarehouseResource, ledger_inputs: LedgerInputsResource) -> dg.MaterializeResult:
    from core.ledger import budget_config
    from core.ledger.budgets import utilization
    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    path = Path(ledger_inputs.budgets_file) if ledger_inputs.budgets_file else budget_config.DEFAULT_FILE
    applied = budget_config.apply(client, path)
    table = utilization(client)
    return dg.MaterializeResult(
        metadata={
            "file": str(path),
            "budgets": len(applied),
            "dagster/row_count": client.count("ledger.budgets"),
            "utilization": dg.MetadataValue.md(table.drop(columns=["budget_id"]).to_markdown(index=False)),
        }
    )


class LedgerEntriesConfig(dg.Config):
    """What to book in this run. The inbox sensor sets `inbox_files`. Left unset, pull_stripe_api
    follows the ledger_inputs resource's outcomes_source (OUTCOMES_SOURCE): `stripe` pulls the
    Stripe API with STRIPE_API_KEY; `simulator` and `none` book inbox files only (under `simulator`
    the market simulator books each experiment's outcomes while the experiment runs)."""

    inbox_files: list[str] = []
    pull_stripe_api: bool | None = None


@dg.asset(
    group_name="ledger",
    owners=[OWNER],
    kinds={"python", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[fx_rates, budgets],
    metadata={"dagster/table_name": "ledger.transactions"},
    description="Transactions and postings: inbox files (Stripe exports and API dumps, the generic CSV) "
    "and the Stripe API when OUTCOMES_SOURCE=stripe, through fraud review; bad rows are quarantined.",
)
def ledger_entries(
    context: dg.AssetExecutionContext,
    config: LedgerEntriesConfig,
    warehouse: WarehouseResource,
    ledger_inputs: LedgerInputsResource,
) -> dg.MaterializeResult:
    from datetime import UTC, datetime, timedelta

    from core.ledger import budget_config
    from core.ledger.audit import chain_head, chain_id
    from core.ledger.fraud import load_rules
    from core.ledger.holds import expire_holds
    from core.ledger.imports import import_file
    from core.platform.schema import ensure_schema

    client = warehouse.client()
    ensure_schema(client)
    now = datetime.now(UTC)
    expired = expire_holds(client, now)
    rules = load_rules(ledger_inputs.fraud_rules_file)
    spend_window = budget_config.load_spend_window(
        Path(ledger_inputs.budgets_file) if ledger_inputs.budgets_file else None
    )
    pull_stripe = (
        config.pull_stripe_api if config.pull_stripe_api is not None else ledger_inputs.outcomes_source == "stripe"
    )
    reports, not_archived = [], []
    for name in config.inbox_files:
        path = Path(name)
        report = import_file(client, path, run_id=context.run.run_id, rules=rules, spend_window=spend_window)
        context.log.info(f"{path.name}: {report.summary()}")
        reports.append(report)
        try:
            archive(path)
        except OSError as error:  # booked already: the next file must still be imported
            not_archived.append(f"{path}: {error}")
            context.log.warning(f"{path} was imported but could not be archived ({error}); move it out of the inbox")
    if pull_stripe:
        from core.ledger.imports import import_stripe_api

        if not ledger_inputs.stripe_api_key:
            raise dg.Failure(
                "pulling the Stripe API needs STRIPE_API_KEY (a restricted key with read access to "
                "balance transactions); set it, or OUTCOMES_SOURCE=none for inbox files only"
            )
        # Only the last week: older balance transactions are already booked (idempotency keys).
        since = int((now - timedelta(days=7)).timestamp())
        reports.append(
            import_stripe_api(
                client, ledger_inputs.stripe_api_key, created_gte=since, run_id=context.run.run_id, rules=rules
            )
        )
    totals = {
        field: sum(getattr(r, field) for r in reports) for field in ("booked", "duplicates", "held", "quarantined")
    }
    return dg.MaterializeResult(
        metadata={
            **totals,
            "expired_holds": len(expired),
            "files": len(config.inbox_files),
            "not_archived": dg.MetadataValue.json(not_archived),
            "reports": dg.MetadataValue.md("\n".join(f"- {r.summary()}" for r in reports) or "nothing to book"),
            "transactions_total": (transactions := client.count("ledger.transactions")),
            "dagster/row_count": transactions,
            # Published outside the warehouse, so a later check can tell if the newest records were cut off.
            HEAD_KEY: "{}:{}".format(*chain_head(client)),
            CHAIN_KEY: chain_id(client) or "",
            WAREHOUSE_KEY: client.describe(),
        }
    )


@dg.asset_check(
    asset=ledger_entries,
    blocking=True,
    description="core.ledger.verify: the audit hash chain is intact and holds the heads recent materializations "
    "published; every transaction balances and matches its hash; hold decisions, budget limits and FX rates "
    "match their audit records.",
)
def ledger_verifies(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from core.ledger.verify import verify

    client = warehouse.client()
    heads = published_heads(context.instance, limit=PUBLISHED_HEADS_CHECKED)
    report = verify(client, heads)
    return dg.AssetCheckResult(
        passed=report.ok,
        description=report.summary(),
        metadata={
            "audit_events": report.events,
            "transactions": report.transactions,
            "postings": report.postings,
            "problems": len(report.problems),
            "published_heads_checked": len(heads),
        },
    )


def published_heads(instance: dg.DagsterInstance, limit: int) -> "list[PublishedHead]":
    """The audit chain heads that the newest ledger_entries materializations recorded in Dagster's
    own storage, with their chain and warehouse (verify checks those of its chain). Each implies
    every record before it, so a few cover the whole chain."""
    from core.ledger.audit import PublishedHead, parse_head

    heads = []
    for record in instance.fetch_materializations(ledger_entries.key, limit=limit).records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        if HEAD_KEY in metadata and CHAIN_KEY in metadata:
            warehouse = metadata[WAREHOUSE_KEY].value if WAREHOUSE_KEY in metadata else None
            heads.append(PublishedHead(parse_head(metadata[HEAD_KEY].value), metadata[CHAIN_KEY].value, warehouse))
    return heads


def archive(path: Path) -> Path:
    """Move an imported file to inbox/archive/<UTC day>/ under a name that cannot collide (and fits
    the file system: core.ledger.imports.archive)."""
    import hashlib
    from datetime import UTC, datetime

    from core.ledger.imports.archive import archived_name

    if not path.exists():
        return path
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    target = path.parent / "archive" / datetime.now(UTC).strftime("%Y-%m-%d") / archived_name(path.name, digest)
    target.parent.mkdir(parents=True, exist_ok=True)
    path.replace(target)
    return target
