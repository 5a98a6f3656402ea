"""`ventureloop`: the operator's shell commands. Each one works on the same warehouse and Dagster
instance as the UI (WAREHOUSE_URL, DAGSTER_HOME), so what it does shows up there too."""

import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from core.platform.warehouse import PROJECT_ROOT, Warehouse, WarehouseError, default_home, default_warehouse_url

if TYPE_CHECKING:
    from core.ledger.audit import PublishedHead

# Shown by `ventureloop --help`; every variable, with its default, is in .env.example.
ENVIRONMENT_HELP = """Configuration is environment variables, applied first from ./.env (or, if the current \
directory has none, the repository's .env); .env.example lists every one. The main ones:

VENTURELOOP_HOME      project home; default .ventureloop in the repository
WAREHOUSE_URL         duckdb:///path or postgresql://...;
                      default $VENTURELOOP_HOME/warehouse.duckdb
DAGSTER_HOME          Dagster instance; default $VENTURELOOP_HOME/dagster
DAGSTER_POSTGRES_URL  Dagster runs in PostgreSQL; default SQLite
DAGSTER_POOL_LIMIT    warehouse writers at once; default 1 on DuckDB,
                      4 on a PostgreSQL warehouse
DAGSTER_MAX_CONCURRENT_RUNS  queued runs at once; default 4
DAGSTER_EXECUTOR      in_process (default), multiprocess, or on a
                      PostgreSQL warehouse celery or k8s
VENTURELOOP_INBOX     files the inbox sensor imports;
                      default $VENTURELOOP_HOME/inbox
DISCOVERY_MODE        snapshot (default, offline) or live
MLFLOW_TRACKING_URI   MLflow tracking server; default the SQLite
                      store under $VENTURELOOP_HOME/mlflow

Relative paths are made absolute against the .env that sets them, else the current directory. \
The home never follows the current directory, and a command that reads the warehouse never \
creates one: it names the path it looked at and how to create it (`make demo`)."""

app = typer.Typer(
    help="ventureloop: revenue experiments as a closed loop.", epilog=ENVIRONMENT_HELP, no_args_is_help=True
)
instance_app = typer.Typer(help="The Dagster instance under $DAGSTER_HOME.", no_args_is_help=True)
discovery_app = typer.Typer(help="Discovery sources and their recorded snapshots.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records that could not be used, and replaying them.", no_args_is_help=True)
app.add_typer(instance_app, name="instance")
app.add_typer(discovery_app, name="discovery")
ledger_app = typer.Typer(help="The double-entry ledger: imports, review, budgets, verification.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(ledger_app, name="ledger")
experiments_app = typer.Typer(
    help="Experiments: list, inspect, and move them through their lifecycle (audited).", no_args_is_help=True
)
app.add_typer(experiments_app, name="experiments")
simulator_app = typer.Typer(
    help="The market simulator experiments run on offline (docs/simulator.md).", no_args_is_help=True
)
app.add_typer(simulator_app, name="simulator")
mlflow_app = typer.Typer(
    help="MLflow: the learning runs, model versions and champions (docs/learning.md).", no_args_is_help=True
)
app.add_typer(mlflow_app, name="mlflow")
strategy_app = typer.Typer(
    help="The scoring weights the strategy optimizer learns (learning.strategy_weights): versions, rollback.",
    no_args_is_help=True,
)
app.add_typer(strategy_app, name="strategy")
alerts_app = typer.Typer(
    help="Alerts (monitoring.alerts): list them with their deliveries, redeliver the undelivered (docs/monitoring.md).",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")


@app.callback()
def apply_env_file() -> None:
    """Every command first applies ./.env, as the Dagster CLI and `dagster dev` do."""
    load_env_file(Path.cwd())


# Paths Dagster or a sensor needs absolute (Dagster refuses a relative DAGSTER_HOME).
PATH_VARIABLES = ("VENTURELOOP_HOME", "DAGSTER_HOME", "VENTURELOOP_INBOX")


def load_env_file(directory: Path) -> dict[str, str]:
    """The variables of `directory`/.env (or, if it has none, the repository's .env), applied the
    way Dagster's own CLI applies them (the file's values win over the shell's), so `ventureloop`,
    `make demo`, `make dev` and `dagster` commands see one configuration: the same instance,
    warehouse and sources. Relative paths become absolute (against the file that set them, else
    the current directory), so child processes (dagster dev, dbt) agree on them too."""
    from dotenv import dotenv_values

    path = directory / ".env"
    if not path.is_file():
        path = PROJECT_ROOT / ".env"
    values = {k: v for k, v in dotenv_values(path).items() if v is not None} if path.is_file() else {}
    os.environ.update(values)
    for name in PATH_VARIABLES:
        value = os.environ.get(name)
        if value and not Path(value).is_absolute():
            os.environ[name] = str(((path.parent if name in values else Path.cwd()) / value).resolve())
    # duckdb:///w.duckdb is relative (duckdb:////srv/w.duckdb absolute, as in SQLAlchemy): the same
    # rule, so dbt, which runs in dbt_project/, opens the file this .env means.
    url = os.environ.get("WAREHOUSE_URL") or ""
    scheme, _, file = url.partition(":///")
    if scheme == "duckdb" and file and file != ":memory:" and not Path(file).is_absolute():
        base = path.parent if "WAREHOUSE_URL" in values else Path.cwd()
        os.environ["WAREHOUSE_URL"] = f"duckdb:///{(base / file).resolve()}"
    return values


def dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or default_home() / "dagster").resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _warehouse(create: bool = False) -> Warehouse:
    """This environment's warehouse, its tables created if missing, named on stderr. Only a command
    that writes new data (create=True) may start a new DuckDB file: one that reads or changes what
    is there refuses a missing file, so a wrong directory or home is an error, not an empty ledger."""
    from core.platform.schema import ensure_schema

    warehouse = Warehouse(default_warehouse_url())
    if not create and not warehouse.exists():
        origin = next(
            (f"from {name}" for name in ("WAREHOUSE_URL", "VENTURELOOP_HOME") if os.environ.get(name)),
            "the default: VENTURELOOP_HOME and WAREHOUSE_URL are unset",
        )
        typer.echo(
            f"no warehouse at {warehouse.duckdb_path} ({origin}): create it with `make demo` (or "
            "`ventureloop demo`, or `ventureloop ledger import FILE`), or point VENTURELOOP_HOME or "
            "WAREHOUSE_URL at an existing one",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(f"warehouse: {warehouse.describe()}", err=True)
    ensure_schema(warehouse)
    return warehouse


def _fraud_rules():
    from core.ledger.fraud import load_rules

    return load_rules(os.environ.get("VENTURELOOP_FRAUD_RULES_FILE") or None)


def _spend_window():
    from core.ledger.budget_config import load_spend_window

    configured = os.environ.get("VENTURELOOP_BUDGETS_FILE")
    return load_spend_window(Path(configured) if configured else None)


@instance_app.command("init")
def instance_init() -> None:
    """Write $DAGSTER_HOME/dagster.yaml from the repository's dagster.yaml and the environment."""
    from orchestration import instance

    home = dagster_home()
    before = instance.storage_of(instance.read(home))
    path = instance.write(home)
    config = instance.read(home)
    typer.echo(
        f"wrote {path}: runs in {instance.describe_storage(home, config)}, "
        f"pool limit {config['concurrency']['pools']['default_limit']}, "
        f"{instance.experiment_run_limit_of(config)} experiment runs at once"
    )
    if before == "postgres" and instance.storage_of(config) == "sqlite":
        typer.echo(
            "warning: this instance kept runs in PostgreSQL and now keeps them in SQLite, because "
            "DAGSTER_POSTGRES_URL is unset here: the runs in PostgreSQL no longer show in the UI. Set it "
            "(in .env, so every command sees it) and run `ventureloop instance init` again.",
            err=True,
        )


@app.command()
def dev(
    host: str = typer.Option("127.0.0.1", help="Address the webserver listens on."),
    port: int = typer.Option(3000, help="Port of the webserver."),
) -> None:
    """The Dagster webserver and daemon (`dagster dev`) on the instance and warehouse of `demo`."""
    instance_init()
    typer.echo(f"warehouse: {Warehouse(default_warehouse_url()).describe()}")
    dagster = Path(sys.executable).parent / "dagster"
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    os.execv(str(dagster), [str(dagster), "dev", "-w", str(workspace), "-h", host, "-p", str(port)])


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt(ctx: typer.Context) -> None:
    """dbt on this environment's warehouse, in dbt_project/: `ventureloop dbt build -s trial_balance`.
    The target and connection come from WAREHOUSE_URL, as for the marts assets."""
    import subprocess

    from core.platform.dbt_env import DBT_PROJECT_DIR, dbt_env_for, dbt_target_for, installed_dbt

    warehouse = _warehouse(create=True)  # dbt reads the ledger tables: create them if this warehouse is new
    try:
        dbt_target_for(warehouse.url, os.environ.get("DBT_TARGET"))
    except WarehouseError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from error
    env = {**os.environ, **dbt_env_for(warehouse.url)}
    done = subprocess.run(
        [installed_dbt(), *ctx.args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
        env=env,
    )
    raise typer.Exit(done.returncode)


@app.command()
def demo() -> None:
    """Materialize the whole asset graph on this machine and print what it found (orchestration/demo.py):
    one line per stage on the terminal, the full log in $VENTURELOOP_HOME/logs/."""
    from orchestration import demo as demo_run

    instance_init()
    if not demo_run.run(_warehouse(create=True)):
        raise typer.Exit(1)


@app.command()
def report(
    out: Path = typer.Option(
        None,
        "--out",
        help="Write the report to this file instead of $VENTURELOOP_HOME/reports/report-<UTC date>.html "
        "(and reports/latest.html).",
    ),
) -> None:
    """Write the HTML report (revenue and cost, the cash-flow forecast, the experiment funnel, ROI, the source
    bandit, anomalies, SLOs) from the warehouse, and print its path. One self-contained file: it opens offline.
    A section whose table is missing says which asset to materialize; what is missing is also listed on stderr."""
    from core.monitoring.report import write_report

    written = write_report(_warehouse(), out=out)
    typer.echo(f"{len(written.drawn)} of {len(written.sections)} sections drawn", err=True)
    for key, why in {**written.missing, **written.errors}.items():
        typer.echo(f"  {key}: {why}", err=True)
    typer.echo(str(written.path))


@discovery_app.command("list")
def discovery_list() -> None:
    """The configured sources, their families, and which credentials live mode would need."""
    from core.discovery.sources import all_sources

    for source in all_sources():
        missing = source.missing_credentials()
        need = f"live needs {', '.join(missing)}" if missing else "live ready"
        typer.echo(f"{source.name:24} {source.family:18} {need}")


@discovery_app.command("record")
def discovery_record(
    source: list[str] = typer.Option(None, "--source", "-s", help="Only these sources (default: all)."),
    replace: bool = typer.Option(True, help="Remove a source's old snapshots once the new ones are saved."),
) -> None:
    """Fetch from the live APIs and save the responses as the snapshots that demo and tests replay."""
    import tempfile

    # The scratch warehouse and staged responses hold what the live APIs returned: removed on the
    # way out, whatever happens, so no copy of a response (or a URL's key) stays in the temp dir.
    with tempfile.TemporaryDirectory(prefix="ventureloop-record-") as scratch:
        failed = _record_snapshots(Path(scratch), source, replace)
    if failed:
        raise typer.Exit(1)


def _record_snapshots(scratch: Path, only: list[str] | None, replace: bool) -> bool:
    """Record each chosen source's live responses into its snapshot directory; whether any failed."""
    import shutil

    from core.discovery.fetch import discover
    from core.discovery.sources import all_sources
    from core.platform.http import RecordingTransport
    from core.platform.schema import ensure_schema

    warehouse = Warehouse(f"duckdb:///{scratch}/record.duckdb")
    ensure_schema(warehouse)
    failed = False
    for item in all_sources():
        if only and item.name not in only:
            continue
        if missing := item.missing_credentials():
            typer.echo(f"{item.name}: skipped, set {', '.join(missing)}")
            continue
        staging = scratch / "staging" / item.name
        result = discover(item, warehouse, "live", transport=RecordingTransport(staging))
        if result.status != "ok":
            typer.echo(f"{item.name}: {result.status}: {result.message}; old snapshots kept", err=True)
            failed = True
            continue
        item.snapshot_dir.mkdir(parents=True, exist_ok=True)
        if replace:  # only recorded responses (named by their key); companions such as window.json stay
            for old in item.snapshot_dir.glob("*.json"):
                if re.fullmatch(r"[0-9a-f]{16}\.json", old.name):
                    old.unlink()
        for path in staging.glob("*.json"):
            shutil.move(path, item.snapshot_dir / path.name)
        typer.echo(f"{item.name}: recorded {result.responses} responses, {result.items} items")
    return failed


@quarantine_app.command("list")
def quarantine_list(
    source: str = typer.Option(None, help="Only this source."),
    limit: int = typer.Option(50, help="Show at most this many."),
) -> None:
    """Quarantined records not yet replayed: stage, source, origin and reason."""
    from tabulate import tabulate

    from core.platform.quarantine import pending

    frame = pending(_warehouse(), source)
    typer.echo(f"{len(frame)} pending")
    if not frame.empty:
        shown = frame.head(limit)[["quarantine_id", "stage", "source", "origin", "reason"]]
        typer.echo(tabulate(shown.values.tolist(), headers=list(shown.columns), maxcolwidths=[8, 9, 12, 50, 60]))


@quarantine_app.command("replay")
def quarantine_replay(
    source: str = typer.Option(None, help="Only this source."),
    at: datetime = typer.Option(
        None,
        formats=["%Y-%m-%dT%H:%M:%S%z"],
        help="Book ledger records as of this instant (ISO 8601 with offset; default now): a cost is "
        "checked against the spend window and budgets around it, e.g. a simulated cost at the "
        "simulated time it was refused (docs/simulator.md).",
    ),
) -> None:
    """Try quarantined records again (after a connector, mapping or data fix); what now passes is
    ingested or booked, and what still fails says why."""
    from core.discovery.replay import replay
    from core.discovery.sources import all_sources
    from core.ledger.imports.replay import replay_imports

    warehouse = _warehouse()
    reports = [
        ("discovery", replay(warehouse, all_sources(), source)),
        (
            "ledger imports",
            replay_imports(
                warehouse,
                [_inbox() / "archive"],
                source=source,
                rules=_fraud_rules(),
                spend_window=_spend_window(),
                now=at.astimezone(UTC) if at else None,
            ),
        ),
    ]
    for name, report in reports:
        typer.echo(
            f"{name}: replayed {report.replayed}, still failing {report.still_failing}, "
            f"not replayable {report.not_replayable}"
        )
        for line in report.reasons[:20]:
            typer.echo(f"  {line}")


def _inbox() -> Path:
    return Path(os.environ.get("VENTURELOOP_INBOX") or default_home() / "inbox")


@ledger_app.command("import")
def ledger_import(
    paths: list[Path] = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        readable=True,
        help="Stripe CSV export, Stripe API JSON/JSONL, or generic CSV.",
    ),
    show: int = typer.Option(20, help="Show at most this many per-row messages per file."),
) -> None:
    """Book payment files: prints what was booked, skipped as a duplicate, held, or quarantined."""
    from core.ledger.imports import import_file

    warehouse = _warehouse(create=True)
    failed = False
    rules, spend_window = _fraud_rules(), _spend_window()
    for path in paths:
        report = import_file(warehouse, path, rules=rules, spend_window=spend_window)
        typer.echo(report.summary())
        for status in ("held", "quarantined"):
            for message in report.messages(status)[:show]:
                typer.echo(f"  {message}")
        failed |= bool(report.error)
    if failed:
        raise typer.Exit(1)


@ledger_app.command("import-stripe")
def ledger_import_stripe(days: int = typer.Option(30, help="Balance transactions created in the last N days.")) -> None:
    """Book balance transactions from the Stripe API (STRIPE_API_KEY); re-running books nothing twice."""
    from datetime import UTC, datetime, timedelta

    from core.ledger.imports import import_stripe_api
    from core.ledger.imports.stripe import StripeAPIError

    since = int((datetime.now(UTC) - timedelta(days=days)).timestamp())
    try:
        report = import_stripe_api(
            _warehouse(create=True), os.environ.get("STRIPE_API_KEY"), created_gte=since, rules=_fraud_rules()
        )
    except StripeAPIError as error:
        if error.report is not None:
            typer.echo(error.report.summary())
        typer.echo(f"stopped: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(report.summary())
    for message in report.messages("held") + report.messages("quarantined"):
        typer.echo(f"  {message}")


@ledger_app.command("review")
def ledger_review(
    release: str = typer.Option(None, help="Book this held transaction."),
    reject: str = typer.Option(None, help="Void this held transaction."),
    by: str = typer.Option(os.environ.get("USER", ""), help="Who decides (audited)."),
    note: str = typer.Option("", help="Why (audited; required to release or reject)."),
    all_holds: bool = typer.Option(False, "--all", help="Also show decided holds."),
) -> None:
    """List holds for review, or release / reject one: explicit, audited decisions."""
    from tabulate import tabulate

    from core.ledger import review

    warehouse = _warehouse()
    if release and reject:
        raise typer.BadParameter("give --release or --reject, not both")
    if release or reject:
        try:
            decision = (review.release if release else review.reject)(warehouse, release or reject, by, note)
        except ValueError as error:
            typer.echo(f"refused: {error}", err=True)
            raise typer.Exit(1) from error
        typer.echo(
            f"{decision.hold_id}: {decision.decision} by {decision.decided_by}"
            + (f", booked as {decision.transaction_id}" if decision.transaction_id else "")
        )
        return
    holds = review.list_holds(warehouse, include_decided=all_holds)
    if not holds:
        typer.echo("no holds to review")
        return
    typer.echo(
        tabulate(
            [[h.hold_id, h.status, h.amounts, h.experiment_id, h.reason, h.expires_at] for h in holds],
            headers=["hold", "status", "amount", "experiment", "reason", "expires"],
            maxcolwidths=[36, 9, 14, 18, 60, 25],
        )
    )


@ledger_app.command("verify")
def ledger_verify(
    head: list[str] = typer.Option(
        [],
        help="A chain head published earlier (SEQ:HASH from `ledger head` or the "
        "ledger_entries run metadata) that must still be in the chain; repeatable.",
    ),
) -> None:
    """Check the audit hash chain and every ledger invariant; name the first broken record.

    Without --head it checks against the heads published earlier that it knows: those `ledger head`
    recorded and those the ledger_entries materializations of the Dagster instance carry."""
    from core.ledger.audit import PublishedHead, chain_id, parse_head
    from core.ledger.verify import verify

    try:
        heads = [parse_head(text) for text in head]
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--head") from None
    warehouse = _warehouse()
    published: list[tuple[int, str] | PublishedHead] = list(heads)
    if heads:
        typer.echo(f"checked against the given head(s): {', '.join(f'{s}:{h[:12]}...' for s, h in heads)}")
    else:
        published = list(_known_heads())
        chain = chain_id(warehouse)
        current = sorted({h.head for h in published if isinstance(h, PublishedHead) and h.chain_id == chain})
        if current:
            seq, digest = current[-1]
            typer.echo(f"checked against the last published head {seq}:{digest} ({len(current)} known)")
        elif published:
            typer.echo(f"no published head of this chain known ({len(published)} of other chains); verify tells why")
        else:
            typer.echo("no published head known; checked the chain only")
    report = verify(warehouse, published)
    typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)


def _heads_file() -> Path:
    """Where `ledger head` records the heads it prints: outside the warehouse, under VENTURELOOP_HOME."""
    return default_home() / "audit_heads.jsonl"


def _known_heads() -> "list[PublishedHead]":
    """The heads published earlier, with their chain and warehouse (verify picks this warehouse's):
    recorded by `ledger head`, and in the metadata of the newest ledger_entries materializations
    when $DAGSTER_HOME holds a Dagster instance."""
    from core.ledger.audit import recorded_heads

    try:
        heads = recorded_heads(_heads_file())
    except ValueError as error:
        typer.echo(f"cannot read the recorded heads: {error}", err=True)
        raise typer.Exit(2) from None
    home = dagster_home()
    if (home / "dagster.yaml").is_file() or (home / "storage").is_dir():
        import dagster as dg

        from assets.ledger.entries import PUBLISHED_HEADS_CHECKED, published_heads

        try:
            with dg.DagsterInstance.get() as instance:
                heads += published_heads(instance, limit=PUBLISHED_HEADS_CHECKED)
        except Exception as error:  # noqa: BLE001 - any storage failure: say so rather than check less
            typer.echo(
                f"cannot read the heads published in the Dagster instance at {home}: {error}; "
                f"fix it, or pass the heads you trust with --head",
                err=True,
            )
            raise typer.Exit(2) from None
    return heads


@ledger_app.command("fx-load")
def ledger_fx_load(
    paths: list[Path] = typer.Argument(
        ...,
        help="ECB-format rate files (.csv, .xml, .zip): the "
        "ECB's own, or rates for currencies it does not "
        "publish, per euro.",
    ),
) -> None:
    """Store FX rates from files; a (date, currency) already stored is kept, never overwritten."""
    from core.ledger.fx import FxError, load_extra_rates, store_rates
    from core.ledger.validation import LedgerError

    warehouse = _warehouse(create=True)
    for path in paths:
        try:
            frame = load_extra_rates(path)
        except (FxError, OSError) as error:
            typer.echo(f"{path}: not loaded: {error}", err=True)
            raise typer.Exit(1) from None
        try:
            stored = store_rates(warehouse, frame)
        except LedgerError as error:  # the stored table was edited: load nothing onto it
            typer.echo(f"{path}: not loaded: {error}", err=True)
            raise typer.Exit(1) from None
        currencies = ", ".join(sorted(set(frame["currency"])))
        typer.echo(f"{path}: {stored} new rates of {len(frame)} ({currencies})")


@ledger_app.command("head")
def ledger_head() -> None:
    """Print the audit chain's head as SEQ:HASH and record it for `ledger verify`; keep a copy elsewhere
    too (a ticket, a log) and pass it to `ledger verify --head`."""
    from core.ledger.audit import chain_head, chain_id, record_head

    warehouse = _warehouse()
    seq, digest = chain_head(warehouse)
    if seq:
        record_head(_heads_file(), chain_id(warehouse), (seq, digest), datetime.now(UTC), warehouse.describe())
    typer.echo(f"{seq}:{digest}")


@ledger_app.command("budgets")
def ledger_budgets(
    at: datetime = typer.Option(
        None,
        formats=["%Y-%m-%dT%H:%M:%S%z"],
        help="The instant whose windows to show (ISO 8601 with offset; default now), "
        "e.g. yesterday evening to see what a daily budget ended the day at.",
    ),
) -> None:
    """Every budget with its spend in the current window (or the one containing --at)."""
    from tabulate import tabulate

    from core.ledger.budgets import utilization

    table = utilization(_warehouse(), at.astimezone(UTC) if at else None)
    typer.echo(
        tabulate(
            table.drop(columns=["budget_id"]).values.tolist(), headers=[c for c in table.columns if c != "budget_id"]
        )
        if len(table)
        else "no budgets"
    )


@ledger_app.command("budget-set")
def ledger_budget_set(
    scope: str = typer.Option(..., help="global, category or experiment"),
    period: str = typer.Option(..., help="hour, day or month"),
    limit: str = typer.Option(..., help="The limit in the currency's major units, e.g. 250.00"),
    currency: str = typer.Option("USD"),
    key: str = typer.Option("*", help="The category (e.g. ads) or experiment id; * for global"),
    by: str = typer.Option(os.environ.get("USER", ""), help="Who changes it (audited)."),
    reason: str = typer.Option("", help="Why (audited)."),
) -> None:
    """Create a budget or change its limit; every change is versioned and audited."""
    from core.ledger.budgets import set_budget
    from core.ledger.money import format_minor, to_minor

    try:
        budget = set_budget(
            _warehouse(create=True),
            scope=scope,
            scope_key=key,
            period=period,
            currency=currency,
            limit_minor=to_minor(limit, currency),
            changed_by=by,
            reason=reason,
        )
    except ValueError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"{budget.label}: limit {format_minor(budget.limit_minor, budget.currency)} (version {budget.version})")


@ledger_app.command("spend")
def ledger_spend(
    account: str = typer.Argument(..., help="The expense account, e.g. expenses:ads:experiment:exp-1"),
    amount: str = typer.Argument(..., help="Major units, e.g. 12.50"),
    currency: str = typer.Option("USD"),
    key: str = typer.Option(..., help="Idempotency key: the same key never spends twice."),
    paid_from: str = typer.Option("assets:cash:bank:usd", help="The account the money leaves."),
    experiment: str = typer.Option(None, help="The experiment this spend belongs to."),
    description: str = typer.Option("manual spend"),
    at: datetime = typer.Option(
        None,
        formats=["%Y-%m-%dT%H:%M:%S%z"],
        help="When it was spent (ISO 8601 with offset; default now). A retry of the "
        "same key must repeat it: the key then books nothing twice.",
    ),
) -> None:
    """Spend through every applicable budget, atomically: booked, or refused with the budget and by how much."""
    from core.ledger.budgets import expense, spend
    from core.ledger.imports.detect import decimal_minor

    occurred = (at or datetime.now(UTC)).astimezone(UTC)
    try:
        request = expense(
            key,
            account,
            decimal_minor(amount, currency, "amount"),  # the imports' parser: no exponents, separators or symbols
            currency,
            occurred,
            paid_from=paid_from,
            description=description,
            experiment_id=experiment,
            source="cli",
        )
        result = spend(_warehouse(create=True), request, spend_window=_spend_window())
    except ValueError as error:  # LedgerError, IdempotencyConflict, MoneyError: all say what and why
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"{result.status}: {result.message}")
    if not result.ok:
        raise typer.Exit(1)


@ledger_app.command("balances")
def ledger_balances(
    prefix: str = typer.Option(None, help="Only this account and those under it, e.g. revenue or expenses:ads"),
) -> None:
    """Balance per account and currency, in minor units and formatted."""
    from tabulate import tabulate

    from core.ledger.balances import balances
    from core.ledger.money import format_minor

    table = balances(_warehouse(), prefix=prefix.rstrip(":") if prefix else None)
    rows = [
        [r.account_id, r.currency, r.balance_minor, format_minor(int(r.balance_minor), r.currency)]
        for r in table.itertuples()
    ]
    typer.echo(tabulate(rows, headers=["account", "currency", "minor units", "amount"]) if rows else "empty ledger")


def _by_option() -> str:
    # Read from $USER when the command runs (not when this module is imported).
    return typer.Option("", "--by", envvar="USER", show_envvar=False, help="Who moves it (audited; default $USER).")


@experiments_app.command("list")
def experiments_list(state: str = typer.Option(None, help="Only experiments in this state, e.g. proposed.")) -> None:
    """Experiments, newest first: id, state, category, score, requested budget, title."""
    from tabulate import tabulate

    from core.experiments.lifecycle import LifecycleError, list_experiments
    from core.ledger.money import format_minor

    try:
        frame = list_experiments(_warehouse(), state)
    except LifecycleError as error:
        raise typer.BadParameter(str(error), param_hint="--state") from None
    if frame.empty:
        typer.echo(f"no experiments{f' in state {state}' if state else ''}")
        return
    rows = [
        [
            r.experiment_id,
            r.state,
            r.category,
            r.score,
            format_minor(int(r.requested_budget_minor), r.currency),
            r.title,
        ]
        for r in frame.itertuples()
    ]
    typer.echo(
        tabulate(
            rows,
            headers=["experiment", "state", "category", "score", "budget", "title"],
            maxcolwidths=[None] * 5 + [50],
        )
    )


@experiments_app.command("show")
def experiments_show(experiment_id: str = typer.Argument(..., help="The experiment's id.")) -> None:
    """One experiment: its plan (hypothesis, budget, success criteria, playbook) and its history."""
    import json

    from tabulate import tabulate

    from core.experiments.lifecycle import actions_for, allowed_targets, history
    from core.ledger.money import format_minor

    warehouse = _warehouse()
    experiment = _experiment_or_exit(warehouse, experiment_id)
    currency = experiment["currency"]
    typer.echo(f"experiment  {experiment['experiment_id']}")
    typer.echo(f"state       {experiment['state']} (next: {', '.join(allowed_targets(experiment['state'])) or 'none'})")
    # The same actions are the UI's <action>_experiment jobs.
    typer.echo(f"actions     {', '.join(actions_for(experiment['state'])) or 'none'}")
    typer.echo(f"opportunity {experiment['opportunity_id']}: {experiment['title']}")
    typer.echo(f"category    {experiment['category']}, score {experiment['score']:.3f}")
    typer.echo(f"budget      {format_minor(int(experiment['requested_budget_minor']), currency)} requested")
    typer.echo(f"hypothesis  {experiment['hypothesis']}")
    typer.echo(f"success     {experiment['success_criteria']}")
    times = [(name, experiment.get(name)) for name in ("started_at", "wake_at", "finished_at")]
    if any(value is not None and not pd_isna(value) for _name, value in times):
        shown = ", ".join(f"{name.removesuffix('_at')} {value}" for name, value in times if not pd_isna(value))
        typer.echo(f"execution   {shown} (`ventureloop experiments runs {experiment_id}`)")
    if isinstance(experiment.get("outcome"), str):
        typer.echo(f"outcome     {experiment['outcome']}")
    typer.echo("playbook")
    for step in json.loads(experiment["playbook"]):
        after = f" after {', '.join(step['after'])}" if step.get("after") else ""
        typer.echo(f"  {step['id']}: {step['type']} {json.dumps(step['params'], sort_keys=True)}{after}")
    steps = history(warehouse, experiment_id)
    typer.echo("history")
    typer.echo(
        tabulate(
            [[r.seq, r.from_state or "", r.to_state, r.actor, r.reason, r.transitioned_at] for r in steps.itertuples()],
            headers=["seq", "from", "to", "by", "reason", "at"],
        )
    )


def pd_isna(value: object) -> bool:
    """None, NaN or NaT (a NULL timestamp reads as either, depending on the backend)."""
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _act(action: str, experiment_id: str, by: str, reason: str) -> None:
    """One lifecycle action from the shell (lifecycle.act, as the UI's jobs): prints the move, or
    says why not and exits 1."""
    from core.experiments.lifecycle import LifecycleError, act

    try:
        done = act(_warehouse(), action, experiment_id, actor=by, reason=reason)
    except LifecycleError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"{done.experiment_id}: {done.from_state} -> {done.to_state} by {done.actor} ({done.reason})")


@experiments_app.command("approve")
def experiments_approve(
    experiment_id: str = typer.Argument(..., help="A proposed experiment's id."),
    by: str = _by_option(),
    reason: str = typer.Option(..., help="Why (audited; required)."),
) -> None:
    """Approve a proposed experiment."""
    _act("approve", experiment_id, by, reason)


@experiments_app.command("reject")
def experiments_reject(
    experiment_id: str = typer.Argument(..., help="A proposed experiment's id."),
    by: str = _by_option(),
    reason: str = typer.Option(..., help="Why (audited; required)."),
) -> None:
    """Reject a proposed experiment (it is cancelled); any other state is refused: use cancel."""
    _act("reject", experiment_id, by, reason)


@experiments_app.command("cancel")
def experiments_cancel(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    by: str = _by_option(),
    reason: str = typer.Option(..., help="Why (audited; required)."),
) -> None:
    """Cancel an experiment that has not finished."""
    _act("cancel", experiment_id, by, reason)


@experiments_app.command("pause")
def experiments_pause(
    experiment_id: str = typer.Argument(..., help="A running experiment's id."),
    by: str = _by_option(),
    reason: str = typer.Option("paused from the shell", help="Why (audited)."),
) -> None:
    """Pause a running experiment."""
    _act("pause", experiment_id, by, reason)


@experiments_app.command("resume")
def experiments_resume(
    experiment_id: str = typer.Argument(..., help="A paused experiment's id."),
    by: str = _by_option(),
    reason: str = typer.Option("resumed from the shell", help="Why (audited)."),
) -> None:
    """Resume a paused experiment (it runs again from its checkpoints)."""
    _act("resume", experiment_id, by, reason)


@experiments_app.command("open-gate")
def experiments_open_gate(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    step: str = typer.Argument(..., help="The id of its manual_gate step."),
    by: str = _by_option(),
    reason: str = typer.Option("opened from the shell", help="Why (audited)."),
) -> None:
    """Open a manual gate: a run waiting at it (paused) resumes, the launch sensor starts the next run."""
    from core.experiments.checkpoints import open_gate
    from core.experiments.lifecycle import LifecycleError

    try:
        state = open_gate(_warehouse(), experiment_id, step, actor=by, reason=reason)
    except LifecycleError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"{experiment_id}: gate {step} opened by {by} ({reason}); the experiment is {state}")


@experiments_app.command("runs")
def experiments_runs(experiment_id: str = typer.Argument(..., help="The experiment's id.")) -> None:
    """An experiment's runs (attempt, status, times, message) and its completed steps (checkpoints)."""
    from tabulate import tabulate

    from core.experiments.checkpoints import load_checkpoints, runs

    warehouse = _warehouse()
    experiment = _experiment_or_exit(warehouse, experiment_id)
    typer.echo(f"experiment {experiment_id}: {experiment['state']}")
    frame = runs(warehouse, experiment_id)
    if frame.empty:
        typer.echo("no runs yet")
    else:
        typer.echo(
            tabulate(
                [
                    [
                        r.attempt,
                        r.run_id,
                        r.status,
                        r.started_at,
                        "" if pd_isna(r.finished_at) else r.finished_at,
                        r.message,
                    ]
                    for r in frame.itertuples()
                ],
                headers=["attempt", "run", "status", "started", "finished", "message"],
                maxcolwidths=[None] * 5 + [60],
            )
        )
    checkpoints = load_checkpoints(warehouse, experiment_id)
    typer.echo("completed steps" if checkpoints else "no completed steps")
    if checkpoints:
        typer.echo(
            tabulate(
                [
                    [c["step_id"], c["step_type"], c["attempt"], c["environment"], c["completed_at"]]
                    for c in checkpoints.values()
                ],
                headers=["step", "type", "attempt", "environment", "completed"],
            )
        )


@simulator_app.command("oracle")
def simulator_oracle(
    out: Path = typer.Option(None, "--out", help="Write the CSV here instead of printing it."),
) -> None:
    """The hidden ground truth of every experiment that ran on the simulated market (whether it was
    meant to succeed, its revenue and ad-spend draws, its fraud bursts), for evaluating what the loop
    learned. Uses SIMULATOR_SEED as the runs did."""
    from orchestration.resources import resources

    warehouse = _warehouse()
    environment = resources()["experiment_environment"]
    if environment.outcomes_source != "simulator":
        typer.echo(f"OUTCOMES_SOURCE={environment.outcomes_source}: experiments run live, there is no oracle", err=True)
        raise typer.Exit(2)
    frame = environment.build(warehouse).warehouse_oracle()
    if frame.empty:
        typer.echo("no experiment has run on the simulated market yet (`make demo` runs ten)", err=True)
        raise typer.Exit(1)
    if out:
        frame.to_csv(out, index=False)
        typer.echo(f"wrote {len(frame)} experiments to {out}")
    else:
        typer.echo(frame.to_csv(index=False), nl=False)


# The server's job runner (GenAI jobs: prompt optimization, scorers) starts seven more processes
# and doubles the start-up time; browsing runs and the registry needs none of it.
MLFLOW_UI_DEFAULTS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_ui_command(home: Path, host: str, port: int) -> list[str]:
    """The real `mlflow server` over the embedded store of `home`: its SQLite database, and the
    artifacts directory, proxied (--serve-artifacts), so experiments created from the UI or a
    client of this server keep their artifacts there too."""
    from ml.registry import embedded_artifact_root, embedded_tracking_uri

    return [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        embedded_tracking_uri(home),
        "--serve-artifacts",
        "--artifacts-destination",
        embedded_artifact_root(home).as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        # One laptop, one SQLite file: one worker (the default is 4 processes).
        "--workers",
        "1",
    ]


@mlflow_app.command("ui")
def mlflow_ui(
    host: str = typer.Option("127.0.0.1", help="Address the MLflow UI listens on."),
    port: int = typer.Option(5000, help="Port of the MLflow UI."),
) -> None:
    """The MLflow UI (runs, registered models, champion aliases) on the embedded store under
    $VENTURELOOP_HOME/mlflow; with MLFLOW_TRACKING_URI set, where that server's UI is."""
    from ml.registry import MLFLOW_DEFAULTS, embedded_tracking_uri, redacted, sqlite_path

    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        typer.echo(
            f"MLFLOW_TRACKING_URI is set: the runs and the registry are at {redacted(configured)}; open "
            "that server's UI in a browser (unset MLFLOW_TRACKING_URI to browse the embedded store)"
        )
        return
    home = default_home()
    database = sqlite_path(embedded_tracking_uri(home))
    if not database.exists():
        # Created here, under the registry's lock, not by the server: an asset that trains while
        # the server starts would otherwise create the same tables at the same time.
        from ml.registry import Registry

        typer.echo(f"creating the MLflow store {database} (once; takes a few seconds)")
        Registry(
            embedded_tracking_uri(home), experiment=os.environ.get("MLFLOW_EXPERIMENT_NAME") or "ventureloop"
        ).experiment_id()
    command = mlflow_ui_command(home, host, port)
    typer.echo(f"MLflow UI: http://{host}:{port} (store {database}); Ctrl-C stops it")
    env = {**MLFLOW_DEFAULTS, **MLFLOW_UI_DEFAULTS, **os.environ}
    sys.stdout.flush()  # exec replaces the process: what is still buffered would be lost
    os.execve(command[0], command, env)


@strategy_app.command("versions")
def strategy_versions() -> None:
    """Every version of the scoring weights, oldest first, the deployed one marked *: its status, weights,
    backtest (the realized net of the top k of the latest finished proposals, ranked by the old and by
    the new weights) and reason."""
    import json

    from tabulate import tabulate

    from core.discovery.strategy_versions import DEFAULT_VERSION, deployed, versions
    from core.discovery.weights import FACTORS, Weights

    warehouse = _warehouse()
    frame, live = versions(warehouse), deployed(warehouse).version
    seed = vars(Weights())
    rows = [
        [
            DEFAULT_VERSION,
            "defaults",
            "*" if live == DEFAULT_VERSION else "",
            *seed.values(),
            "",
            "",
            "",
            "",
            "the seed's weights",
        ]
    ]
    for r in frame.itertuples():
        weights = json.loads(r.weights)
        backtest = "" if pd_isna(r.backtest_old) else _backtest_cell(r.metric, r.backtest_old, r.backtest_new)
        origin = (
            f"restores {int(r.restores_version)}" if not pd_isna(r.restores_version) else f"from {r.parent_version}"
        )
        rows.append(
            [
                r.version,
                r.status,
                "*" if r.version == live else "",
                *(weights[f] for f in FACTORS),
                backtest,
                origin,
                r.actor,
                str(r.created_at)[:19],
                r.reason,
            ]
        )
    headers = ["version", "status", "live", *FACTORS, "backtest", "origin", "by", "at", "reason"]
    typer.echo(tabulate(rows, headers=headers, maxcolwidths=[None] * (len(headers) - 1) + [60]))


def _backtest_cell(metric: str, old: float, new: float) -> str:
    if str(metric).endswith("_minor"):  # money: USD minor units
        from core.ledger.money import format_minor

        return f"{format_minor(int(old), 'USD')} -> {format_minor(int(new), 'USD')}"
    return f"{old:.4f} -> {new:.4f}"


@strategy_app.command("rollback")
def strategy_rollback(
    version: int = typer.Argument(..., help="The version to deploy again (0: the seed's defaults)."),
    by: str = _by_option(),
    reason: str = typer.Option(..., help="Why (recorded with the new version; required)."),
) -> None:
    """Deploy an earlier version's weights again: a new rolled_back version, nothing is overwritten."""
    from core.discovery.strategy_versions import StrategyVersionError, deployed, rollback

    warehouse = _warehouse()
    try:
        new = rollback(warehouse, version, actor=by, reason=reason)
    except StrategyVersionError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from error
    weights = ", ".join(f"{name} {value}" for name, value in vars(deployed(warehouse).weights).items())
    typer.echo(
        f"version {new} (restores {version}) deployed by {by}: {weights}; scored_opportunities scores with it next"
    )


def _experiment_or_exit(warehouse: Warehouse, experiment_id: str) -> dict:
    """The experiment's row, or `refused: no experiment ...` on stderr and exit 1."""
    from core.experiments.lifecycle import UnknownExperiment, get_experiment

    try:
        return get_experiment(warehouse, experiment_id)
    except UnknownExperiment as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(1) from error


# -- alerts (docs/monitoring.md) ------------------------------------------------------------------


def _alerter():
    """The Alerter the sensors use: the `alerts` resource of this environment (ALERT_* variables),
    its secrets resolved, on this environment's warehouse."""
    import dagster as dg

    from orchestration.resources import resources

    with dg.build_resources({"alerts": resources()["alerts"]}) as built:
        return built.alerts.alerter()


@alerts_app.command("list")
def alerts_list(limit: int = typer.Option(50, help="Show at most this many, latest first.")) -> None:
    """The latest alerts: kind, severity, title, how often seen, and each sink's latest delivery."""
    from tabulate import tabulate

    from core.monitoring.alerts import AlertStore

    alerts, deliveries = AlertStore(_warehouse()).listing(limit)
    typer.echo(f"{len(alerts)} alert(s)")
    if alerts.empty:
        return
    by_alert: dict[str, list[str]] = {}
    for d in deliveries.itertuples():
        by_alert.setdefault(d.alert_id, []).append(
            f"{d.sink}: {d.status}" + ("" if d.status == "delivered" else f" ({d.attempts} tries)")
        )
    rows = [
        [
            a.alert_id[:8],
            str(a.last_seen_at)[:19],
            a.kind,
            a.severity,
            a.title,
            a.occurrences,
            "\n".join(by_alert.get(a.alert_id, [])),  # one line per sink
            "" if pd_isna(a.link) else a.link,
        ]
        for a in alerts.itertuples()
    ]
    headers = ["alert", "last seen (UTC)", "kind", "severity", "title", "seen", "deliveries", "link"]
    typer.echo(tabulate(rows, headers=headers, maxcolwidths=[8, 19, 13, 8, 50, 5, None, 60]))


@alerts_app.command("redeliver")
def alerts_redeliver() -> None:
    """Send every alert whose latest delivery to a sink failed to that sink again (if it is still
    configured), and record how it went. Exits 1 if any is still undelivered."""
    from core.monitoring.alerts import AlertStore

    pending = AlertStore(_warehouse()).undelivered()  # _warehouse refuses a missing warehouse
    if not pending:
        typer.echo("nothing to redeliver")
        return
    alerter = _alerter()
    configured = {sink.name for sink in alerter.sinks}
    if missing := sorted({sink for _, _, sink, _ in pending} - configured):
        typer.echo(
            f"{sum(sink in missing for _, _, sink, _ in pending)} undelivered to sinks not configured here "
            f"({', '.join(missing)}): set their ALERT_* variables (.env.example) to redeliver them",
            err=False,
        )
    done = alerter.redeliver()
    if not done:
        raise typer.Exit(1)
    still = 0
    for alert_id, delivery in done:
        still += delivery.status != "delivered"
        typer.echo(
            f"{alert_id[:8]} -> {delivery.sink}: {delivery.status} after {delivery.attempts} attempt(s)"
            + (f" ({delivery.error})" if delivery.error else "")
        )
    typer.echo(f"{len(done) - still} redelivered, {still} still undelivered")
    if still:
        raise typer.Exit(1)


# --- metrics (issue 9): `ventureloop metrics serve` --------------------------------------------------
metrics_app = typer.Typer(
    help="Prometheus metrics read from the warehouse on each scrape (docs/metrics.md).", no_args_is_help=True
)
app.add_typer(metrics_app, name="metrics")


@metrics_app.command("serve")
def metrics_serve(
    port: int = typer.Option(
        None, help="Port to listen on; default $VENTURELOOP_METRICS_PORT, else 9108. 0 takes a free port."
    ),
    host: str = typer.Option(None, help="Address to listen on; default $VENTURELOOP_METRICS_HOST, else 127.0.0.1."),
    cache_seconds: float = typer.Option(
        None,
        help="Answer scrapes from the last read, read again in the background once it is older than this; "
        "default $VENTURELOOP_METRICS_CACHE_SECONDS, else 5. 0: every scrape reads and waits for it.",
    ),
) -> None:
    """Serve /metrics for Prometheus: money, experiments, budgets and fetch errors, read from the
    warehouse (WAREHOUSE_URL) when scraped. A missing or locked warehouse is ventureloop_warehouse_up
    0 with the reason logged, never an error; the file is opened read-only and only for the read."""
    import logging
    import signal

    from core.monitoring.metrics import DEFAULT_PORT, serve

    def from_env(value, variable: str, default, kind):
        if value is not None:
            return value
        raw = os.environ.get(variable)
        try:
            return kind(raw) if raw else default
        except ValueError:
            typer.echo(f"{variable}={raw!r} is not a number: set it to one, or unset it", err=True)
            raise typer.Exit(2) from None

    port = from_env(port, "VENTURELOOP_METRICS_PORT", DEFAULT_PORT, int)
    host = from_env(host, "VENTURELOOP_METRICS_HOST", "127.0.0.1", str)
    cache_seconds = from_env(cache_seconds, "VENTURELOOP_METRICS_CACHE_SECONDS", 5.0, float)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    warehouse = Warehouse(default_warehouse_url())  # never created or set up here: a reader only
    try:
        server, thread = serve(warehouse, host=host, port=port, cache_seconds=cache_seconds)
    except OSError as error:
        typer.echo(
            f"cannot listen on {host}:{port}: {error.strerror or error}; choose another with --port or "
            "VENTURELOOP_METRICS_PORT",
            err=True,
        )
        raise typer.Exit(2) from error
    typer.echo(
        f"metrics: http://{host}:{server.server_port}/metrics from {warehouse.describe()}"
        f" (cache {cache_seconds:g} s); Ctrl-C stops it"
    )
    sys.stdout.flush()

    def stop(_signum, _frame):  # SIGTERM (docker stop, a supervisor) shuts down as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while thread.is_alive():
            thread.join(timeout=1)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    from core.platform.warehouse import WarehouseLocked

    try:
        app(sys.argv[1:])
    except WarehouseLocked as error:  # another process has the DuckDB file: say so, not a traceback
        typer.echo(str(error), err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":  # pragma: no cover
    main()
