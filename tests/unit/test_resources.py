"""The environment decides the resources (orchestration/resources.py), and secrets stay secret."""

import dagster as dg
import pytest

from assets.resources import DiscoveryResource, ExperimentEnvironmentResource, LedgerInputsResource
from orchestration.resources import resources


def test_the_embedded_default_needs_no_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("VENTURELOOP_HOME", str(tmp_path))
    built = resources({})
    assert built["warehouse"].url == f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    assert built["discovery"].mode == "snapshot" and built["discovery"].source_env() == {"DISCOVERY_MODE": "snapshot"}
    inputs = built["ledger_inputs"]
    assert (inputs.outcomes_source, inputs.fx_rates_source, inputs.stripe_api_key) == ("simulator", "bundled", None)
    assert inputs.inbox == tmp_path / "inbox"


def test_secrets_are_environment_references_not_values():
    env = {
        "WAREHOUSE_URL": "postgresql://app:hunter2@db:5432/ventureloop",
        "STRIPE_API_KEY": "rk_live_abc",
        "GITHUB_TOKEN": "ghx_abc",
        "REDDIT_LIMIT": "20",
    }
    built = resources(env)
    # What the UI shows of a resource's config is these fields: a reference, never the value.
    assert built["warehouse"].url == dg.EnvVar("WAREHOUSE_URL")
    assert built["ledger_inputs"].stripe_api_key == dg.EnvVar("STRIPE_API_KEY")
    assert built["discovery"].github_token == dg.EnvVar("GITHUB_TOKEN")
    assert built["discovery"].reddit_client_id is None  # unset: the source is skipped, the run still starts
    assert built["discovery"].source_settings == {"REDDIT_LIMIT": "20"}
    assert "hunter2" not in repr(built) and "rk_live_abc" not in repr(built)


def test_a_resolved_secret_reaches_the_connectors_under_its_variable_name():
    discovery = DiscoveryResource(mode="live", github_token="ghx_abc", source_settings={"GITHUB_MAX_PAGES": "1"})
    assert discovery.source_env() == {"GITHUB_TOKEN": "ghx_abc", "GITHUB_MAX_PAGES": "1", "DISCOVERY_MODE": "live"}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DiscoveryResource(mode="replay"), "DISCOVERY_MODE='replay': use snapshot or live"),
        (lambda: LedgerInputsResource(inbox_dir="x", outcomes_source="paypal"), "OUTCOMES_SOURCE='paypal'"),
        (lambda: LedgerInputsResource(inbox_dir="x", fx_rates_source="yahoo"), "FX_RATES_SOURCE='yahoo'"),
        (lambda: ExperimentEnvironmentResource(outcomes_source="paypal"), "OUTCOMES_SOURCE='paypal'"),
        (lambda: ExperimentEnvironmentResource(simulator_start="5 Jan"), "SIMULATOR_START='5 Jan': use an ISO date"),
        (lambda: resources({"SIMULATOR_SEED": "seven"}), "SIMULATOR_SEED='seven': use an integer"),
    ],
)
def test_an_unknown_choice_is_refused_with_the_variable_named(make, message):
    with pytest.raises(Exception, match=message):
        make()


def test_experiment_runs_act_live_unless_the_outcomes_come_from_the_simulator(tmp_path):
    from core.experiments.executor import LiveEnvironment
    from core.platform.warehouse import Warehouse

    built = resources({"OUTCOMES_SOURCE": "stripe", "SIMULATOR_SEED": "11", "SIMULATOR_START": "2026-01-05"})
    environment = built["experiment_environment"]
    assert (environment.simulator_seed, environment.simulator_start) == (11, "2026-01-05")
    assert isinstance(environment.build(Warehouse(f"duckdb:///{tmp_path}/w.duckdb")), LiveEnvironment)
    assert resources({})["experiment_environment"].outcomes_source == "simulator"


def test_the_simulator_starts_where_simulator_start_says(tmp_path):
    from datetime import UTC, datetime

    pytest.importorskip("core.simulator.environment", reason="the market simulator (branch sim) is not merged yet")
    from core.platform.schema import ensure_schema
    from core.platform.warehouse import Warehouse

    warehouse = Warehouse(f"duckdb:///{tmp_path}/w.duckdb")
    ensure_schema(warehouse)
    market = ExperimentEnvironmentResource(simulator_seed=3, simulator_start="2026-01-05").build(warehouse)
    assert (market.name, market.seed, market.start) == ("simulator", 3, datetime(2026, 1, 5, tzinfo=UTC))
