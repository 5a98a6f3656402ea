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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import typer

from core.platform.warehouse import Warehouse, default_home
from core.simulator.history import PREFIX as HISTORY_PREFIX

# Dagster's step keys for the assets the user knows by key: raw/hackernews runs as raw__hackernews.
DBT_STEP = "ledger_dbt_assets"


def stage_name(step_key: str, checks: dict[str, str] | None = None) -> str:
    if step_key == DBT_STEP:
        return "dbt build of the ledger marts (models and their tests)"
    if checks and step_key in checks:
        return checks[step_key]
    return step_key.replace("__", "/")


def check_stages(check_keys, checks_defs=()) -> dict[str, str]:
    """A check runs as a step of its own, keyed `<asset as identifier>_<check>`: name it for a reader.
    A definition that checks several assets in one step (the freshness checks) is keyed by its
    generated node name: name it by its check and assets."""
    stages = {
        f"{key.asset_key.to_python_identifier()}_{key.name}": f"check {key.name} on {key.asset_key.to_user_string()}"
        for key in check_keys
    }
    for checks_def in checks_defs:
        keys = sorted(checks_def.check_keys, key=lambda k: k.asset_key.to_user_string())
        if len({key.asset_key for key in keys}) > 1:
            names = ", ".join(sorted({key.name for key in keys}))
            assets = ", ".join(key.asset_key.to_user_string() for key in keys)
            stages[checks_def.node_def.name] = f"check {names} on {assets}"
    return stages


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


# The parts of a demo run: learning from the simulated history, then everything up to the
# proposals and their features, then the experiments play, then the rest. Allocation waits for the
# demo's approvals (so that every approved experiment is ranked in one round), and the outcomes,
# the second learning pass and the marts are built over the ledger the experiments filled.
PLAY_ASSETS = ("experiment_allocations",)
# Learning runs twice: on the simulated history before discovery (so scoring, proposals and
# allocation use what it learned), and again on everything after the experiments played. The
# features are built in the first part too, after the proposals: allocation ranks on them.
LEARNING_ASSETS = ("source_bandit", "success_model", "revenue_model", "strategy_weights")
LATER_ASSETS = ("experiment_outcomes", *LEARNING_ASSETS)
LAST_GROUPS = ("ledger_marts", "forecasting", "monitoring")
# The back catalog a new warehouse starts with (core/simulator/history.py): enough finished
# experiments for the predictors' quality gates to judge a holdout.
HISTORY_EXPERIMENTS = 300
GATE_SUFFIX = "_meets_quality_gates"  # assets/learning/models.py's blocking checks
# A gated experiment takes two runs (one to its gate, one after the demo opens it); the rounds end
# early once the sensor has nothing left to launch.
PLAY_ROUNDS = 6
DEMO_ACTOR = "demo"


def run(warehouse: Warehouse) -> bool:
    """Materialize every asset of both code locations, play the experiments the loop proposed on the
    simulated market (one Dagster run each, as the launch sensor would start them), then build their
    outcomes and the dbt marts; print progress and the summary."""
    started = time.monotonic()
    typer.echo("loading the code locations (discovery, experiments, ledger, learning, dbt marts)...")
    import dagster as dg

    from assets import discovery, experiments, forecasting, learning, ledger, ledger_marts, monitoring
    from core.platform.dbt_env import dbt_target_for
    from core.simulator.history import book_history
    from orchestration.wiring import discovery_is_live, location

    live = discovery_is_live()
    # Both code locations' assets in one graph, as `make dev` shows them.
    defs = location(
        discovery.definitions(live=live),
        experiments.defs,
        ledger.defs,
        learning.defs,
        forecasting.defs,
        monitoring.defs,
        ledger_marts.defs,
    )
    graph = defs.resolve_asset_graph()
    executable = sorted(
        (key for key in graph.get_all_asset_keys() if graph.get(key).is_executable), key=lambda k: k.to_user_string()
    )
    # The marts, and what reads them (the forecast, the anomalies, the SLOs and the report), come last.
    marts = {key for key in executable if graph.get(key).group_name in LAST_GROUPS}
    later = marts | {dg.AssetKey(name) for name in LATER_ASSETS}
    playing = {dg.AssetKey(name) for name in PLAY_ASSETS}
    dbt_target = dbt_target_for(warehouse.url, os.environ.get("DBT_TARGET"))
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    typer.echo(
        f"warehouse: {warehouse.describe()} (dbt target {dbt_target})\n"
        f"Dagster instance: {os.environ['DAGSTER_HOME']}\n"
        f"full log: {path}\n"
        f"materializing {len(executable)} assets and playing the experiments; one line per finished stage:"
    )
    tags = {"ventureloop/command": "demo", "warehouse": warehouse.backend, "dbt/target": dbt_target}
    metadata: dict[str, dict] = {}
    not_promoted: set[str] = set()
    progress = None
    with path.open("a", encoding="utf-8") as log, output_to(log) as terminal:
        progress = StageProgress(terminal, started, check_stages(graph.asset_check_keys, defs.asset_checks or ()))
        loggers = {"console": dg.colored_console_logger, "stages": progress_logger(progress)}
        # A logger runs only when the run config names it; the file gets every event (DEBUG).
        run_loggers = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}, "stages": {}}}
        job = defs.resolve_implicit_global_asset_job_def().with_logger_defs(loggers)
        with dg.DagsterInstance.get() as instance:

            def materialize(selection: list) -> bool:
                result = job.execute_in_process(
                    run_config=run_loggers,
                    instance=instance,
                    raise_on_error=False,
                    # The run's target in the UI: its assets by key, not an anonymous job.
                    asset_selection=selection,
                    tags=tags,
                )
                for event in result.get_asset_materialization_events():
                    materialization = event.step_materialization_data.materialization
                    metadata[materialization.asset_key.to_user_string()] = {
                        k: v.value for k, v in materialization.metadata.items()
                    }
                # A model candidate that fails its blocking quality gates stops its step and is never
                # promoted: that is the gate working, reported in the learning summary, not a failed demo.
                gated = {
                    check.asset_key.to_user_string()
                    for check in result.get_asset_check_evaluations()
                    if not check.passed and check.check_name.endswith(GATE_SUFFIX)
                }
                failed = {e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
                not_promoted.update(gated & failed)
                return result.success or failed <= gated

            history = book_history(
                warehouse,
                defs.resources["experiment_environment"].simulator_seed,
                HISTORY_EXPERIMENTS,
                defs.resources["experiment_environment"].simulated_start() - timedelta(days=1),
            )
            terminal.write(f"  {time.monotonic() - started:6.1f} s  {history.summary()}\n")
            learned = {dg.AssetKey(name) for name in ("experiment_outcomes", "experiment_features", *LEARNING_ASSETS)}
            ok = materialize([key for key in executable if key in learned])
            ok = materialize([key for key in executable if key not in later | playing]) and ok
            played = play_experiments(defs, instance, warehouse, terminal, started, tags, metadata)
            ok = materialize([key for key in executable if key in later]) and ok and played
    print_summary(warehouse, metadata, live=live)
    print_experiments(warehouse)
    with dg.build_resources({"mlflow": defs.resources["mlflow"]}) as built:  # resolves MLFLOW_TRACKING_URI
        print_learning(metadata, built.mlflow, not_promoted)
    report = report_path(warehouse, metadata)
    typer.echo(
        f"\ndemo {'succeeded' if ok else 'FAILED'} in {time.monotonic() - started:.1f} s"
        + (
            f" (failed: {', '.join(failed)})"
            if (failed := [s for s in progress.failed if s not in not_promoted])
            else ""
        )
        + f"\nfull log (Dagster events, dbt output): {path}"
        + "\ninspect the runs and the assets with `make dev` (http://127.0.0.1:3000)"
        f"\nreport (open it in a browser; it works offline): {report}"
    )
    return ok


def report_path(warehouse: Warehouse, metadata: dict[str, dict]) -> Path:
    """The HTML report the weekly_report asset wrote in the demo's last part (its path is in the
    materialization's metadata); written here, from the same warehouse, if that asset did not run."""
    written = metadata.get("weekly_report", {}).get("path")
    if written and Path(written).is_file():
        return Path(written)
    from core.monitoring.report import write_report

    return write_report(warehouse).path


def play_experiments(
    defs, instance, warehouse: Warehouse, terminal: TextIO, started: float, tags: dict, metadata: dict[str, dict]
) -> bool:
    """What the daemon does in production, here in this process: the launch sensor's run requests,
    each executed as a run of `experiment_run` on the simulated market. Between rounds the demo does
    what a person would: it approves the proposals that wait for one, and opens manual gates."""
    import dagster as dg

    from core.experiments.checkpoints import open_gate
    from core.experiments.lifecycle import PROPOSED, act, list_experiments

    def say(line: str) -> None:
        terminal.write(f"  {time.monotonic() - started:6.1f} s  {line}\n")
        terminal.flush()

    waiting = list_experiments(warehouse, PROPOSED)
    for experiment_id in waiting["experiment_id"]:
        act(
            warehouse,
            "approve",
            experiment_id,
            actor=DEMO_ACTOR,
            reason="approved by `ventureloop demo` for a person (`ventureloop experiments approve ID`)",
        )
    if len(waiting):
        say(f"{len(waiting)} proposals waited for a person: the demo approved them as {DEMO_ACTOR!r}")
    allocations = defs.resolve_implicit_global_asset_job_def()
    allocated = allocations.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("experiment_allocations")], tags=tags, raise_on_error=False
    )
    for event in allocated.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata[materialization.asset_key.to_user_string()] = {k: v.value for k, v in materialization.metadata.items()}
    say(f"experiment_allocations: {'done' if allocated.success else 'FAILED (the log has why)'}")
    sensor = defs.get_sensor_def("experiment_launcher")
    job = defs.get_job_def("experiment_run")
    ok = allocated.success
    for _round in range(PLAY_ROUNDS):
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            requests = sensor.evaluate_tick(context).run_requests or []
        if not requests:
            break
        for request in requests:
            result = job.execute_in_process(
                run_config=request.run_config,
                instance=instance,
                tags={**tags, **request.tags, "dagster/run_key": request.run_key},
                raise_on_error=False,
            )
            ok = ok and result.success
            experiment = request.tags.get("ventureloop/experiment", "?")
            state = warehouse.query(
                "SELECT state, title FROM experiments.experiments WHERE experiment_id = %s", [experiment]
            )
            title = str(state["title"].iloc[0])[:48] if len(state) else experiment
            attempt = request.tags.get("ventureloop/attempt", "?")
            say(f"experiment {title!r} (attempt {attempt}): {state['state'].iloc[0] if len(state) else 'unknown'}")
        for gate in waiting_gates(warehouse):
            open_gate(
                warehouse,
                gate["experiment_id"],
                gate["step_id"],
                actor=DEMO_ACTOR,
                reason="opened by `ventureloop demo` for a person (`ventureloop experiments open-gate ID STEP`)",
            )
            say(f"manual gate {gate['step_id']!r} of {str(gate['title'])[:48]!r}: opened as {DEMO_ACTOR!r}")
    return ok


def waiting_gates(warehouse: Warehouse) -> list[dict]:
    """Paused experiments whose next step is a manual gate nobody opened yet."""
    import json

    from core.experiments.checkpoints import load_checkpoints
    from core.experiments.lifecycle import PAUSED
    from core.experiments.playbook import validate_playbook

    gates = []
    for row in warehouse.query(
        "SELECT experiment_id, title, playbook FROM experiments.experiments WHERE state = %s ORDER BY experiment_id",
        [PAUSED],
    ).itertuples():
        done = load_checkpoints(warehouse, row.experiment_id)
        pending = [step for step in validate_playbook(json.loads(row.playbook)) if step["id"] not in done]
        if pending and pending[0]["type"] == "manual_gate":
            gates.append({"experiment_id": row.experiment_id, "step_id": pending[0]["id"], "title": row.title})
    return gates


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
            f"were), {proposals['auto_approved']} auto-approved by the policy, {proposals['waiting_for_approval']} "
            "waiting for a person (`ventureloop experiments approve ID`; here the demo approved them)"
        )
    summary = None
    if warehouse.table_exists("analytics.revenue_summary"):
        # The mart keys by experiment id; the title is what a reader recognizes.
        summary = warehouse.query(
            "SELECT coalesce(e.title, r.experiment_id) AS experiment, r.total_revenue_cents, r.total_cost_cents, "
            "r.net_profit_cents, r.event_count FROM analytics.revenue_summary r "
            "LEFT JOIN experiments.experiments e ON e.experiment_id = r.experiment_id "
            # The simulated history is in the mart too; the demo lists what it played.
            "WHERE e.opportunity_id IS NULL OR e.opportunity_id NOT LIKE %s "
            "ORDER BY r.net_profit_cents DESC, experiment",
            [f"{HISTORY_PREFIX}-%"],
        )
    if warehouse.table_exists("ledger.transactions"):
        ledger = warehouse.query(
            "SELECT (SELECT count(*) FROM ledger.transactions) AS booked, "
            "(SELECT count(*) FROM ledger.transactions WHERE source = 'stripe') AS payments, "
            "(SELECT count(*) FROM ledger.transactions WHERE kind = 'spend') AS spends, "
            "(SELECT count(*) FROM ledger.holds h WHERE NOT EXISTS (SELECT 1 FROM ledger.hold_decisions d "
            "WHERE d.hold_id = h.hold_id)) AS held, "
            "(SELECT count(*) FROM quarantine.records WHERE stage = 'import' AND replayed_at IS NULL) "
            "AS quarantined"
        ).iloc[0]
        typer.echo(
            f"\nLedger: {ledger.booked} transactions booked ({ledger.payments} Stripe balance transactions, "
            f"{ledger.spends} spends), {ledger.held} held for review, {ledger.quarantined} quarantined"
        )
        if summary is not None and len(summary):
            typer.echo(
                f"  revenue {money(summary.total_revenue_cents.sum())}, cost {money(summary.total_cost_cents.sum())}, "
                f"net {money(summary.net_profit_cents.sum())} (the experiments played here, USD)"
            )
    if summary is not None:
        rows = [
            [
                str(r.experiment)[:40],
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


def print_experiments(warehouse: Warehouse) -> None:
    """Every experiment the loop proposed: how it ran on the simulated market and what it earned."""
    import pandas as pd
    from tabulate import tabulate

    if not warehouse.table_exists("experiments.outcomes"):
        return
    frame = warehouse.query(
        "SELECT e.title, e.category, e.state, e.allocated_budget_minor, e.started_at, e.finished_at, "
        "o.revenue_minor, o.cost_minor, o.roi, o.succeeded FROM experiments.experiments e "
        "LEFT JOIN experiments.outcomes o ON o.experiment_id = e.experiment_id "
        "WHERE e.opportunity_id NOT LIKE %s ORDER BY o.revenue_minor DESC NULLS LAST, e.title",
        [f"{HISTORY_PREFIX}-%"],
    )
    history = warehouse.scalar(
        "SELECT count(*) FROM experiments.experiments WHERE opportunity_id LIKE %s", [f"{HISTORY_PREFIX}-%"]
    )
    if history:
        typer.echo(
            f"\n(the {history} experiments of the simulated history are not listed: `ventureloop experiments list`)"
        )
    if frame.empty:
        return
    ran = frame[frame["started_at"].notna()]
    typer.echo(f"\nExperiments on the simulated market: {len(ran)} of {len(frame)} ran")
    if len(ran):
        first, last = ran["started_at"].min(), ran["finished_at"].max()
        if not pd.isna(last):  # at least one finished
            days = (last - first).total_seconds() / 86_400
            typer.echo(
                f"  simulated time: {first:%Y-%m-%d} to {last:%Y-%m-%d}, {days:.0f} days ({days / 7:.1f} weeks), "
                "played in this run"
            )

    def cents(value) -> str:
        return "" if pd.isna(value) else money(value)

    rows = [
        [
            str(r.title)[:40],
            r.category,
            r.state,
            cents(r.allocated_budget_minor),
            cents(r.revenue_minor),
            cents(r.cost_minor),
            "" if pd.isna(r.roi) else f"{r.roi:.2f}",
            "" if pd.isna(r.succeeded) else ("yes" if r.succeeded else "no"),
        ]
        for r in frame.itertuples()
    ]
    typer.echo(
        tabulate(
            rows,
            headers=["experiment", "category", "state", "allocated", "revenue", "cost", "ROI", "succeeded"],
            colalign=("left", "left", "left", "right", "right", "right", "right", "left"),
        )
    )
    typer.echo(
        "  (experiments.outcomes, USD; success is judged against each experiment's criteria: "
        "`ventureloop experiments show ID`)"
    )


def print_learning(metadata: dict[str, dict], mlflow, not_promoted: set[str]) -> None:
    """The learning report: which source the bandit favours and why, the champion models and their
    metrics (from the MLflow registry), the strategy weights in force and this round's allocation."""
    from tabulate import tabulate

    typer.echo("\nlearning (the second pass, on the history and the experiments above):")
    for name in sorted(not_promoted):
        typer.echo(f"- {name}: this run's candidate failed its quality gates, so it was not promoted (blocking check)")
    bandit = metadata.get("source_bandit", {})
    typer.echo(f"- source bandit favours {bandit.get('favoured_source', '?')}: {bandit.get('why', 'not run')}")
    typer.echo(
        "  (hourly_discovery Thompson-samples this posterior to choose which sources to query; "
        "every source keeps its exploration floor)"
    )
    registry = mlflow.registry()
    rows = []
    shown_metrics = {"success_model": ("auc", "brier", "log_loss"), "revenue_model": ("rmsle", "baseline_rmsle")}
    for name, metrics in shown_metrics.items():
        champion = registry.champion(name)
        latest = metadata.get(name, {})
        shown = ", ".join(f"{m} {champion.metrics[m]:.3f}" for m in metrics if champion and m in champion.metrics)
        rows.append(
            [
                name,
                f"v{champion.version}" if champion else "none",
                shown or "-",
                len(registry.versions(name)) if champion else 0,
                str(latest.get("champion_reason", latest.get("reason", "not run")))[:70],
            ]
        )
    typer.echo(tabulate(rows, headers=["model", "champion", "its holdout metrics", "versions", "this run"]))
    strategy = metadata.get("strategy_weights", {})
    typer.echo(
        f"- strategy weights: {strategy.get('decision', 'not run')}, version {strategy.get('deployed_version', 0)} "
        f"deployed ({strategy.get('reason', '')})"
    )
    allocation = metadata.get("experiment_allocations", {})
    typer.echo(
        f"- this round's allocation (LinUCB, alpha {allocation.get('alpha', '?')}, learned from "
        f"{allocation.get('learned_from', 0)} finished experiments): {allocation.get('allocated', 0)} funded, "
        f"{allocation.get('waiting_for_headroom', 0)} waiting for headroom, {allocation.get('declined', 0)} declined"
    )
    typer.echo(f"- MLflow runs and registry: {metadata.get('source_bandit', {}).get('mlflow_tracking_uri', '?')}")
    typer.echo("  browse them with `ventureloop mlflow ui` (http://127.0.0.1:5000)")
