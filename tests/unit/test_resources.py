"""The environment decides the resources (orchestration/resources.py), and secrets stay secret."""

import dagster as dg
import pytest

from assets.resources import DiscoveryResource, LedgerInputsResource
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
    ],
)
def test_an_unknown_choice_is_refused_with_the_variable_named(make, message):
    with pytest.raises(Exception, match=message):
        make()
