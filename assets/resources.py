"""The resources the assets use, one per concern. They are Dagster classes, so they live here,
beside the assets; orchestration/resources.py chooses their values for each environment.

Secrets are `dg.EnvVar`s there, so the UI's resource config shows the variable's name, never its
value. Every setting an asset needs arrives through one of these (or its run config), never
through os.environ inside an asset body."""

from pathlib import Path

import dagster as dg
import pydantic

from core.discovery.sources.settings import SOURCE_SECRETS
from core.platform.warehouse import Warehouse, default_warehouse_url

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
        return _one_of("OUTCOMES_SOURCE", value, OUTCOMES_SOURCES,
                       "seeded simulated payments, the Stripe API, or inbox files only")

    @pydantic.field_validator("fx_rates_source")
    @classmethod
    def _known_fx(cls, value: str) -> str:
        return _one_of("FX_RATES_SOURCE", value, FX_RATES_SOURCES, "the offline snapshot or today's ECB rates")

    @property
    def inbox(self) -> Path:
        return Path(self.inbox_dir)


def warehouse_pool() -> str:
    # A DuckDB file allows one writer process: every asset that writes it shares a pool of 1.
    return "duckdb" if Warehouse(default_warehouse_url()).backend == "duckdb" else "warehouse"
