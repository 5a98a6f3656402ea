"""`ventureloop demo`: the whole asset graph in one run on this machine, told in a few lines.

The terminal gets one line per finished stage (a Dagster step) with the time since the start, and
then a summary; everything else (Dagster's event log at DEBUG, dbt's own output, warnings) goes to
$VENTURELOOP_HOME/logs/demo-<UTC time>.log, which the last line names."""

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import typer

from core.platform.warehouse import Warehouse, default_home

# Dagster's step keys for the assets the user knows by key: raw/hackernews runs as raw__hackernews.
DBT_STEP = "ledger_dbt_assets"


def stage_name(step_key: str, checks: dict[str, str] | None = None) -> str:
    if step_key == DBT_STEP:
        return "dbt build of the ledger marts (models and their tests)"
    if checks and step_key in checks:
        return checks[step_key]
    return step_key.replace("__", "/")


def check_stages(check_keys) -> dict[str, str]:
    """A check runs as a step of its own, keyed `<asset as identifier>_<check>`: name it for a reader."""
    return {
        f"{key.asset_key.to_python_identifier()}_{key.name}": f"check {key.name} on {key.asset_key.to_user_string()}"
        for key in check_keys
    }


def money(cents: int) -> str:
    """US cents for a reader: `123456` -> `$1,234.56 (123456 cents)`; a loss keeps its sign."""
    cents = int(cents)
    # Integer arithmetic: a float division rounds amounts above 2**53 cents.
    dollars, rest = divmod(abs(cents), 100)
    sign = "-" if cents < 0 else ""
    return f"{sign}${dollars:,}.{rest:02d} ({cents} cents)"


class StageProgress(logging.Handler):
    """Receives the run's Dagster events (through a logger of the demo's job) and prints one line
    per finished step to the terminal."""

    def __init__(self, terminal: TextIO, started: float, checks: dict[str, str] | None = None) -> None:
        super().__init__(level=logging.DEBUG)
        self.terminal, self.started, self.checks = terminal, started, checks or {}
        self.failed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None or event.step_key is None:
            return
        kind = event.event_type_value
        if kind not in ("STEP_SUCCESS", "STEP_FAILURE"):
            return
        status = "done" if kind == "STEP_SUCCESS" else "FAILED (the log has why)"
        stage = stage_name(event.step_key, self.checks)
        if kind == "STEP_FAILURE":
            self.failed.append(stage)
        self.terminal.write(f"  {time.monotonic() - self.started:6.1f} s  {stage}: {status}\n")
        self.terminal.flush()


def progress_logger(handler: logging.Handler):
    import dagster as dg

    @dg.logger(description="One line per finished step on the demo's terminal.")
    def stage_progress(_context: dg.InitLoggerContext) -> logging.Logger:
        log = logging.getLogger("ventureloop.demo.stages")
        log.setLevel(logging.DEBUG)
        log.handlers = [handler]
        log.propagate = False
        return log

    return stage_progress


@contextmanager
def output_to(log: TextIO) -> Iterator[TextIO]:
    """Send this process's stdout and stderr, and those of its subprocesses (dbt), to `log`;
    yield a stream on the terminal they pointed at before."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    python_streams = sys.stdout, sys.stderr
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    try:
        yield terminal
    finally:
        log.flush()
        sys.stdout, sys.stderr = python_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        terminal.flush()
        terminal.close()


def log_path(now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return default_home() / "logs" / f"demo-{stamp}.log"


def run(warehouse: Warehouse) -> bool:
    """Materialize every asset of both code locations in one run; print progress and the summary."""
    started = time.monotonic()
    typer.echo("loading the code locations (discovery, experiments, ledger, dbt marts)...")
    import dagster as dg

    from assets import discovery, experiments, ledger, ledger_marts
    from core.platform.dbt_env import dbt_target_for
    from orchestration.wiring import discovery_is_live, location

    live = discovery_is_live()
    # Both code locations' assets in one run, as `make dev` shows them in one graph.
    defs = location(discovery.definitions(live=live), experiments.defs, ledger.defs, ledger_marts.defs)
    graph = defs.resolve_asset_graph()
    targets = sorted(
        (key for key in graph.get_all_asset_keys() if graph.get(key).is_executable), key=lambda k: k.to_user_string()
    )
    dbt_target = dbt_target_for(warehouse.url, os.environ.get("DBT_TARGET"))
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(
        f"warehouse: {warehouse.describe()} (dbt target {dbt_target})\n"
        f"Dagster instance: {os.environ['DAGSTER_HOME']}\n"
        f"full log: {path}\n"
        f"materializing {len(targets)} assets; one line per finished stage:"
    )
    progress = None
    with path.open("a", encoding="utf-8") as log, output_to(log) as terminal:
        progress = StageProgress(terminal, started, check_stages(graph.asset_check_keys))
        job = defs.resolve_implicit_global_asset_job_def().with_logger_defs(
            {"console": dg.colored_console_logger, "stages": progress_logger(progress)}
        )
        with dg.DagsterInstance.get() as instance:
            result = job.execute_in_process(
                # A logger runs only when the run config names it; the file gets every event (DEBUG).
                run_config={"loggers": {"console": {"config": {"log_level": "DEBUG"}}, "stages": {}}},
                instance=instance,
                raise_on_error=False,
                # The run's target in the UI: every asset by key, not an anonymous job.
                asset_selection=targets,
                tags={"ventureloop/command": "demo", "warehouse": warehouse.backend, "dbt/target": dbt_target},
            )
    metadata = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata[materialization.asset_key.to_user_string()] = {k: v.value for k, v in materialization.metadata.items()}
    print_summary(warehouse, metadata, live=live)
    typer.echo(
        f"\nrun {result.run_id} {'succeeded' if result.success else 'FAILED'} in "
        f"{time.monotonic() - started:.1f} s"
        + (f" (failed: {', '.join(progress.failed)})" if progress.failed else "")
        + f"\nfull log (Dagster events, dbt output): {path}"
        "\ninspect the run and the assets with `make dev` (http://127.0.0.1:3000)"
    )
    return result.success


def print_summary(warehouse: Warehouse, metadata: dict[str, dict], live: bool = False) -> None:
    from tabulate import tabulate

    per_source = metadata.get("opportunities", {}).get("per_source_json", {})
    rows = []
    for key, values in sorted(metadata.items()):
        if not key.startswith("raw/"):
            continue
        name = key.removeprefix("raw/")
        ingested = per_source.get(name, {})
        rows.append(
            [
                name,
                values.get("family"),
                values.get("status"),
                values.get("items", 0),
                ingested.get("new", 0),
                ingested.get("duplicates", 0),
                ingested.get("near_duplicates", 0),
                values.get("quarantined", 0) + ingested.get("quarantined", 0),
            ]
        )
    typer.echo("\nDiscovery")
    typer.echo(
        tabulate(
            rows, headers=["source", "family", "status", "fetched", "new", "duplicates", "near-dup", "quarantined"]
        )
    )
    quarantined = sum(row[-1] for row in rows)
    origin = "the live APIs' responses" if live else "the recorded snapshots"
    typer.echo(
        f"quarantined: {quarantined} records from {origin} that failed validation (malformed, missing or "
        "mistyped fields). None is dropped: each is kept in quarantine.records with its source, origin and "
        "reason. List them with `ventureloop quarantine list`; after a fix, `ventureloop quarantine replay` "
        "ingests what now passes."
    )
    if warehouse.table_exists("core.scored_opportunities"):
        total = warehouse.query("SELECT count(*) AS n FROM core.scored_opportunities")["n"].iloc[0]
        top = warehouse.query(
            "SELECT rank, score, source, cluster_size AS seen_in, opportunity_type AS type, "
            "title, why FROM core.scored_opportunities WHERE is_cluster_lead "
            "ORDER BY rank LIMIT 10"
        )
        top["title"] = top["title"].str.slice(0, 60)
        typer.echo(
            f"\nTop 10 opportunities. rank: position by score among all {total} scored opportunities "
            "(1 = best). Only the best of each near-duplicate cluster is shown, so ranks can skip; "
            "seen_in: how many sources carried it."
        )
        typer.echo(tabulate(top.values.tolist(), headers=list(top.columns), floatfmt=".3f"))
    proposals = metadata.get("experiment_proposals")
    if proposals:
        typer.echo(
            f"\nExperiments: {proposals['created']} proposed from the top leads ({proposals['unchanged']} already "
            f"were), {proposals['auto_approved']} auto-approved, {proposals['waiting_for_approval']} waiting for "
            "`ventureloop experiments approve`"
        )
    summary = None
    if warehouse.table_exists("analytics.revenue_summary"):
        summary = warehouse.query(
            "SELECT experiment_id, total_revenue_cents, total_cost_cents, net_profit_cents, "
            "event_count FROM analytics.revenue_summary ORDER BY net_profit_cents DESC"
        )
    entries = metadata.get("ledger_entries")
    if entries:
        typer.echo(
            f"\nLedger: {entries['booked']} transactions booked, {entries['duplicates']} duplicates, "
            f"{entries['held']} held for review, {entries['quarantined']} quarantined"
        )
        if summary is not None and len(summary):
            typer.echo(
                f"  revenue {money(summary.total_revenue_cents.sum())}, cost {money(summary.total_cost_cents.sum())}, "
                f"net {money(summary.net_profit_cents.sum())} (all experiments, USD)"
            )
    if summary is not None:
        rows = [
            [
                r.experiment_id,
                money(r.total_revenue_cents),
                money(r.total_cost_cents),
                money(r.net_profit_cents),
                r.event_count,
            ]
            for r in summary.itertuples()
        ]
        typer.echo("\nRevenue summary (dbt mart analytics.revenue_summary, USD; best net profit first)")
        typer.echo(
            tabulate(
                rows,
                headers=["experiment", "revenue", "cost", "net profit", "events"],
                colalign=("left", "right", "right", "right", "right"),
            )
        )
