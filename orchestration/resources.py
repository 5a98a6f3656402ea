"""The resources of each environment, chosen by environment variables only (see .env.example).

Secrets become dg.EnvVar (read when a run starts, shown by name in the UI); an unset one is
None, so a source without credentials is skipped instead of failing to start."""

import os
from collections.abc import Mapping

import dagster as dg

from assets.forecasting.forecast import ForecastResource
from assets.resources import (
    AlertsResource,
    DbtResource,
    DiscoveryResource,
    ExperimentEnvironmentResource,
    LedgerInputsResource,
    MlflowResource,
    WarehouseResource,
)
from core.discovery.sources.settings import SOURCE_SECRETS, SOURCE_SETTINGS
from core.monitoring.alerts import DEFAULT_UI_URL
from core.platform.warehouse import default_home, default_warehouse_url


def _secret(env: Mapping[str, str], name: str) -> dg.EnvVar | None:
    return dg.EnvVar(name) if env.get(name) else None


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name) or None


def resources(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    env = os.environ if env is None else env
    # By reference when set: the URL's password then never reaches the UI's resource config.
    warehouse_url = dg.EnvVar("WAREHOUSE_URL") if env.get("WAREHOUSE_URL") else default_warehouse_url()
    warehouse = WarehouseResource(url=warehouse_url)
    return {
        "warehouse": warehouse,
        # dbt writes the warehouse above (its profile's variables come from its URL); DBT_TARGET,
        # if set, must agree with it.
        "dbt": DbtResource(warehouse=warehouse, target=_text(env, "DBT_TARGET")),
        "discovery": DiscoveryResource(
            mode=env.get("DISCOVERY_MODE") or "snapshot",
            source_settings={name: env[name] for name in SOURCE_SETTINGS if env.get(name)},
            **{name.lower(): _secret(env, name) for name in SOURCE_SECRETS},
            capabilities_file=_text(env, "VENTURELOOP_CAPABILITIES_FILE"),
            scoring_file=_text(env, "VENTURELOOP_SCORING_FILE"),
        ),
        "ledger_inputs": LedgerInputsResource(
            outcomes_source=env.get("OUTCOMES_SOURCE") or "simulator",
            stripe_api_key=_secret(env, "STRIPE_API_KEY"),
            fx_rates_source=env.get("FX_RATES_SOURCE") or "bundled",
            fx_extra_rates_file=_text(env, "FX_EXTRA_RATES_FILE"),
            inbox_dir=env.get("VENTURELOOP_INBOX") or str(default_home() / "inbox"),
            budgets_file=_text(env, "VENTURELOOP_BUDGETS_FILE"),
            fraud_rules_file=_text(env, "VENTURELOOP_FRAUD_RULES_FILE"),
        ),
        "experiment_environment": ExperimentEnvironmentResource(
            outcomes_source=env.get("OUTCOMES_SOURCE") or "simulator",
            simulator_seed=_integer(env, "SIMULATOR_SEED", 7),
            simulator_start=_text(env, "SIMULATOR_START"),
        ),
        # Unset: the embedded SQLite store under $VENTURELOOP_HOME/mlflow. Set: a tracking server,
        # by reference (a URL may carry credentials).
        "mlflow": MlflowResource(
            tracking_uri=_secret(env, "MLFLOW_TRACKING_URI"),
            registry_uri=_secret(env, "MLFLOW_REGISTRY_URI"),
            experiment=env.get("MLFLOW_EXPERIMENT_NAME") or "ventureloop",
        ),
        # The cash-flow forecast (assets/forecasting/forecast.py): horizon, holidays, backtest folds.
        "forecast": ForecastResource(
            horizon_days=_integer(env, "FORECAST_HORIZON_DAYS", 30),
            holiday_country=env.get("FORECAST_HOLIDAY_COUNTRY", "US") or None,
            backtest_folds=_integer(env, "FORECAST_BACKTEST_FOLDS", 3),
        ),
        # Alerts (docs/monitoring.md): the log sink always; the webhook and SMTP when set. The webhook
        # URL carries its token and the SMTP password is a secret: both by reference.
        "alerts": AlertsResource(
            warehouse=warehouse,
            webhook_url=_secret(env, "ALERT_WEBHOOK_URL"),
            smtp_host=_text(env, "ALERT_SMTP_HOST"),
            smtp_port=_integer(env, "ALERT_SMTP_PORT", 587),
            smtp_user=_text(env, "ALERT_SMTP_USER"),
            smtp_password=_secret(env, "ALERT_SMTP_PASSWORD"),
            smtp_starttls=(env.get("ALERT_SMTP_STARTTLS") or "true").lower() not in ("false", "0", "no"),
            email_from=_text(env, "ALERT_EMAIL_FROM"),
            email_to=_text(env, "ALERT_EMAIL_TO"),
            dedup_minutes=_integer(env, "ALERT_DEDUP_MINUTES", 60),
            retry_attempts=_integer(env, "ALERT_RETRY_ATTEMPTS", 3),
            ui_url=env.get("DAGSTER_UI_URL") or DEFAULT_UI_URL,
        ),
    }


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: use an integer") from None
