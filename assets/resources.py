"""The resources the assets use, one per concern. They are Dagster classes, so they live here,
beside the assets; orchestration/resources.py chooses their values for each environment.

Secrets are `dg.EnvVar`s there, so the UI's resource config shows the variable's name, never its
value. Every setting an asset needs arrives through one of these (or its run config), never
through os.environ inside an asset body."""

import datetime
import functools
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pydantic

from core.discovery.sources.settings import SOURCE_SECRETS
from core.monitoring.alerts import DEFAULT_UI_URL
from core.platform.dbt_env import DBT_PROJECT_DIR, dbt_environment, dbt_target_for, installed_dbt
from core.platform.warehouse import Warehouse, WarehouseError, default_home, default_warehouse_url
from ml.registry import ModelVersion, Registry, embedded_artifact_root, embedded_tracking_uri, redacted, sqlite_path

if TYPE_CHECKING:  # dagster_dbt costs seconds to import: only the step that runs dbt imports it
    from dagster_dbt import DbtCliInvocation, DbtCliResource

    from core.experiments.environment import Environment

DISCOVERY_MODES = ("snapshot", "live")
OUTCOMES_SOURCES = ("simulator", "stripe", "none")
FX_RATES_SOURCES = ("bundled", "ecb")


def _one_of(name: str, value: str, allowed: tuple[str, ...], meaning: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: use {' or '.join(allowed)} ({meaning})")
    return value


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse and ledger: a DuckDB file by default, PostgreSQL when WAREHOUSE_URL says so."""

    url: str

    def client(self) -> Warehouse:
        return Warehouse(self.url)


class DiscoveryResource(dg.ConfigurableResource):
    """How discovery fetches and how opportunities are scored.

    `snapshot` replays the recorded responses bundled in the repository; `live` calls the APIs.
    `source_settings` are the connectors' variables by name (credentials, paging, queries: see
    .env.example); a source without its credentials is skipped, not failed."""

    mode: str = "snapshot"
    source_settings: dict[str, str] = {}
    github_token: str | None = None
    reddit_client_id: str | None = None
    reddit_client_secret: str | None = None
    product_hunt_token: str | None = None
    x_bearer_token: str | None = None
    brave_search_api_key: str | None = None
    capabilities_file: str | None = None
    scoring_file: str | None = None

    @pydantic.field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        return _one_of("DISCOVERY_MODE", mode, DISCOVERY_MODES, "recorded responses or the APIs")

    def source_env(self) -> dict[str, str]:
        """What the connectors read (core.discovery.sources take a mapping, not os.environ)."""
        secrets = {name: getattr(self, name.lower()) for name in SOURCE_SECRETS}
        return {**self.source_settings, **{k: v for k, v in secrets.items() if v}, "DISCOVERY_MODE": self.mode}


class LedgerInputsResource(dg.ConfigurableResource):
    """Where the ledger's money and reference data come from."""

    outcomes_source: str = "simulator"
    stripe_api_key: str | None = None
    fx_rates_source: str = "bundled"
    fx_extra_rates_file: str | None = None
    inbox_dir: str
    budgets_file: str | None = None
    fraud_rules_file: str | None = None

    @pydantic.field_validator("outcomes_source")
    @classmethod
    def _known_outcomes(cls, value: str) -> str:
        return _one_of(
            "OUTCOMES_SOURCE", value, OUTCOMES_SOURCES, "the market simulator, the Stripe API, or inbox files only"
        )

    @pydantic.field_validator("fx_rates_source")
    @classmethod
    def _known_fx(cls, value: str) -> str:
        return _one_of("FX_RATES_SOURCE", value, FX_RATES_SOURCES, "the offline snapshot or today's ECB rates")

    @property
    def inbox(self) -> Path:
        return Path(self.inbox_dir)


class ExperimentEnvironmentResource(dg.ConfigurableResource):
    """Where experiment runs act: the seeded market simulator when OUTCOMES_SOURCE=simulator
    (simulated time from SIMULATOR_START, seed SIMULATOR_SEED), otherwise the live world (wall-clock
    time, real webhooks). core/experiments/environment.py explains the difference."""

    outcomes_source: str = "simulator"
    simulator_seed: int = 7
    simulator_start: str | None = None  # ISO date; None: core.simulator.environment.default_start(today)
    webhook_timeout_seconds: float = 10.0

    @pydantic.field_validator("outcomes_source")
    @classmethod
    def _known_outcomes(cls, value: str) -> str:
        return _one_of("OUTCOMES_SOURCE", value, OUTCOMES_SOURCES, "the simulated market, or the live world")

    @pydantic.field_validator("simulator_start")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"SIMULATOR_START={value!r}: use an ISO date such as 2026-01-05") from None
        return value

    def simulated_start(self) -> datetime.datetime:
        """Where the simulated market's time starts: SIMULATOR_START, else default_start(today)."""
        from core.simulator.environment import default_start

        if self.simulator_start:
            day = datetime.date.fromisoformat(self.simulator_start)
            return datetime.datetime.combine(day, datetime.time(), datetime.UTC)
        return default_start(datetime.datetime.now(datetime.UTC))

    def build(self, warehouse: Warehouse) -> "Environment":
        # Imported here: the simulator and httpx are for the run that executes an experiment only.
        if self.outcomes_source == "simulator":
            from core.simulator.environment import SimulatedMarket

            return SimulatedMarket(warehouse, self.simulator_seed, self.simulated_start())
        from core.experiments.executor import LiveEnvironment

        return LiveEnvironment(timeout=self.webhook_timeout_seconds)


class DbtResource(dg.ConfigurableResource):
    """dbt_project/ run by dagster-dbt's `DbtCliResource`, always on the warehouse of `warehouse`.

    dbt_project/profiles.yml reads its target and connection from environment variables; each
    invocation gets them from the warehouse's URL (core/platform/dbt_env.py), so dbt never writes
    another warehouse than the one the other assets read. `target` is DBT_TARGET when the
    environment sets it, and must agree with the warehouse.

    Each invocation's target directory (run_results.json, compiled SQL, dbt.log) is temporary
    and removed when the step's resources are torn down, passed or failed: dagster-dbt's default,
    a new dbt_project/target/<op>-<run>-<id>/ per invocation, is never removed. What a user needs
    of it is in the run: dbt's log lines in the step's stdout, every model and test in its event.

    This class imports dagster_dbt only when it runs dbt, so the main code location, which loads
    this module but runs no dbt, does not pay for it."""

    warehouse: WarehouseResource
    project_dir: str = str(DBT_PROJECT_DIR)
    target: str | None = None
    dbt_executable: str = installed_dbt()
    _scratch: str | None = pydantic.PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._scratch = tempfile.mkdtemp(prefix="ventureloop-dbt-")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def dbt_target(self) -> str:
        """The profile target for the warehouse; a DBT_TARGET that disagrees fails the step."""
        try:
            return dbt_target_for(self.warehouse.url, self.target)
        except WarehouseError as error:
            raise dg.Failure(str(error)) from None

    def cli(
        self,
        args: Sequence[str],
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None,
        raise_on_error: bool = True,
    ) -> "DbtCliInvocation":
        """`DbtCliResource.cli`: inside `@dbt_assets`, pass the context, and dagster-dbt runs
        just the selected models and tests and reports them as the assets' events."""
        target = self.dbt_target()
        # Outside a run (no set-up) the directory is the caller's to remove.
        target_path = Path(tempfile.mkdtemp(prefix="invocation-", dir=self._scratch))
        with dbt_environment(self.warehouse.url):  # dbt's process and dagster-dbt's adapter read it now
            dbt = _dbt_cli_resource(self.project_dir, target, self.dbt_executable)
            return dbt.cli(args, context=context, raise_on_error=raise_on_error, target_path=target_path)


@functools.cache
def _dbt_cli_resource(project_dir: str, target: str, executable: str) -> "DbtCliResource":
    # One per configuration and process: each DbtCliResource runs `dbt --version` (~3 s here)
    # the first time it invokes dbt, and keeps the answer.
    from dagster_dbt import DbtCliResource

    return DbtCliResource(project_dir=project_dir, profiles_dir=project_dir, target=target, dbt_executable=executable)


def warehouse_kind() -> str:
    """The storage kind the UI shows on every asset that writes the warehouse: `duckdb` or
    `postgres`, from WAREHOUSE_URL (or the embedded default) when the code location loads."""
    return Warehouse(default_warehouse_url()).backend


def warehouse_pool() -> str:
    # A DuckDB file allows one writer process: every asset that writes it shares a pool of 1.
    return "duckdb" if Warehouse(default_warehouse_url()).backend == "duckdb" else "warehouse"


# MLflow: where the learning runs, model versions and the champion alias live. Embedded default: a
# SQLite store and local artifacts under $VENTURELOOP_HOME/mlflow; production: a tracking server
# (MLFLOW_TRACKING_URI). `mlflow` itself is imported by ml.registry inside its methods.
class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry. tracking_uri None means the embedded SQLite store under the
    home; registry_uri None means the tracking store's own registry."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    experiment: str = "ventureloop"

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or embedded_tracking_uri(default_home())

    def artifact_root(self) -> Path | None:
        """Where a SQLite store keeps artifacts: beside its database file (the embedded default's is
        the home's mlflow/artifacts). None for a server: it decides."""
        if not self.tracking_uri:
            return embedded_artifact_root(default_home())
        if self.tracking_uri.startswith("sqlite:///"):
            return sqlite_path(self.tracking_uri).parent / "artifacts"
        return None

    def registry(self) -> Registry:
        root = self.artifact_root()
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        return Registry(
            self.resolved_tracking_uri(),
            registry_uri=self.registry_uri,
            experiment=self.experiment,
            artifact_location=root.as_uri() if root is not None else None,
        )

    def metadata(self, logged: ModelVersion | str, metrics: Mapping[str, float] | None = None) -> dict:
        """What a materialization records of its MLflow run: the run id, where it is, and for a
        model the version and its metrics (numbers, so the UI plots them across materializations).
        `logged` is log_model's ModelVersion or log_run's run id."""
        found: dict = {"mlflow_tracking_uri": redacted(self.resolved_tracking_uri())}
        if isinstance(logged, ModelVersion):
            found.update(
                mlflow_run_id=logged.run_id,
                mlflow_model=logged.name,
                mlflow_model_version=logged.version,
                mlflow_model_uri=logged.uri,
            )
            metrics = {**logged.metrics, **(metrics or {})}
        else:
            found["mlflow_run_id"] = logged
        found.update({key: float(value) for key, value in (metrics or {}).items()})
        return found


# -- alerts (issue 9): where alerts go. The log sink always; a Slack-compatible webhook and SMTP email
# when configured (ALERT_* in .env.example). core/monitoring/alerts.py does the work.
class AlertsResource(dg.ConfigurableResource):
    """The alert sinks, deduplication window, retries and the Dagster UI the links point at."""

    warehouse: WarehouseResource
    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    email_from: str | None = None
    email_to: str | None = None  # comma-separated addresses
    dedup_minutes: int = 60
    retry_attempts: int = 3
    retry_wait_seconds: float = 0.5
    timeout_seconds: float = 5.0
    ui_url: str = DEFAULT_UI_URL

    @pydantic.field_validator("dedup_minutes", "retry_attempts")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"{value}: ALERT_DEDUP_MINUTES and ALERT_RETRY_ATTEMPTS must be at least 1")
        return value

    @pydantic.model_validator(mode="after")
    def _email_complete(self) -> "AlertsResource":
        # Checked when the code location loads: a sensor finding it out later would lose the alert.
        if self.smtp_host and (not self.email_from or not self.recipients()):
            raise ValueError(
                f"ALERT_SMTP_HOST={self.smtp_host} is set but ALERT_EMAIL_FROM or ALERT_EMAIL_TO is not: set both "
                "(the sender, and comma-separated recipients), or unset ALERT_SMTP_HOST"
            )
        return self

    def recipients(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in (self.email_to or "").split(",") if a.strip())

    def sinks(self) -> list:
        from core.monitoring.alerts import EmailSink, LogSink, WebhookSink

        sinks: list = [LogSink()]
        if self.webhook_url:
            sinks.append(WebhookSink(self.webhook_url, timeout_seconds=self.timeout_seconds))
        if self.smtp_host:
            sinks.append(
                EmailSink(
                    host=self.smtp_host,
                    port=self.smtp_port,
                    sender=self.email_from,
                    recipients=self.recipients(),
                    user=self.smtp_user,
                    password=self.smtp_password,
                    starttls=self.smtp_starttls,
                    timeout_seconds=self.timeout_seconds,
                )
            )
        return sinks

    def alerter(self, record: bool = True):
        """The Alerter on this warehouse; record=False delivers without the store (no dedup), for a
        caller that must not open a DuckDB file another process is writing."""
        from datetime import timedelta

        from core.monitoring.alerts import Alerter, AlertStore, Retry

        client = self.warehouse.client()
        store = AlertStore(client) if record and client.exists() else None
        if store is not None:
            try:
                store.ensure_tables()
            except Exception:  # noqa: BLE001 - the alert still goes out (Alerter says it was not recorded)
                store = None
        return Alerter(
            store=store,
            sinks=self.sinks(),
            dedup_window=timedelta(minutes=self.dedup_minutes),
            retry=Retry(attempts=self.retry_attempts, first_wait_seconds=self.retry_wait_seconds),
        )

    def base_url(self) -> str:
        return self.ui_url.rstrip("/")
