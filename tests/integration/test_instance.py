"""The Dagster instance: the embedded default as shipped, and PostgreSQL storage switched on by
environment variables, run for real against the PostgreSQL server."""

import dagster as dg
import pytest
import yaml

from orchestration import instance


@dg.asset(pool="duckdb")
def tiny_asset() -> int:
    return 1


def test_embedded_default_has_queued_runs_and_a_pool_of_one(tmp_path):
    path = instance.write(tmp_path, env={})
    config = yaml.safe_load(path.read_text())
    assert "storage" not in config  # SQLite under DAGSTER_HOME
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        assert dg.materialize([tiny_asset], instance=inst).success
        assert inst.get_runs_count() == 1


def test_environment_switches_and_their_errors(tmp_path):
    config = instance.render(
        {"DAGSTER_MAX_CONCURRENT_RUNS": "7", "DAGSTER_POOL_LIMIT": "2", "DAGSTER_POSTGRES_URL": "postgresql://u@h/db"}
    )
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 7
    assert config["concurrency"]["pools"]["default_limit"] == 2
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_POSTGRES_URL"}  # no secret in the file
    with pytest.raises(ValueError, match="DAGSTER_POOL_LIMIT must be a positive integer"):
        instance.render({"DAGSTER_POOL_LIMIT": "zero"})
    with pytest.raises(ValueError, match="postgresql://"):
        instance.render({"DAGSTER_POSTGRES_URL": "postgresql+psycopg://u@h/db"})


@pytest.mark.postgres
def test_postgres_instance_storage_runs_a_job(tmp_path, postgres_url, monkeypatch):
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", postgres_url)
    instance.write(tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        assert type(inst.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([tiny_asset], instance=inst)
        assert result.success
        assert inst.get_run_by_id(result.run_id).is_success
        # The events landed in PostgreSQL: a second instance on the same database sees the run.
    with dg.DagsterInstance.from_config(str(tmp_path)) as again:
        assert again.get_runs_count() == 1
        assert again.get_latest_materialization_event(tiny_asset.key) is not None
