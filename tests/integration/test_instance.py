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


def test_the_default_pool_limit_follows_the_warehouse_backend():
    def limit(env: dict[str, str]) -> int:
        return instance.render(env)["concurrency"]["pools"]["default_limit"]

    assert limit({}) == 1  # a DuckDB file allows one writer process
    assert limit({"WAREHOUSE_URL": "duckdb:///tmp/w.duckdb"}) == 1
    assert limit({"WAREHOUSE_URL": "postgresql://u@h/db"}) == instance.POSTGRES_POOL_LIMIT > 1
    assert limit({"WAREHOUSE_URL": "postgresql://u@h/db", "DAGSTER_POOL_LIMIT": "2"}) == 2


def test_experiment_runs_at_once_follow_the_instance_and_warehouse(tmp_path):
    def runs(env: dict[str, str]) -> tuple[int, int | None, list]:
        config = instance.render(env)
        limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
        return config["concurrency"]["runs"]["max_concurrent_runs"], instance.experiment_run_limit_of(config), limits

    both = {"DAGSTER_POSTGRES_URL": "postgresql://u@h/dagster", "WAREHOUSE_URL": "postgresql://u@h/warehouse"}
    assert runs({})[:2] == (4, 1)  # SQLite and DuckDB: one experiment run at a time
    assert runs({"WAREHOUSE_URL": "postgresql://u@h/warehouse"})[:2] == (4, 1)  # SQLite run storage
    assert runs({"DAGSTER_POSTGRES_URL": "postgresql://u@h/dagster"})[:2] == (12, 1)  # a DuckDB warehouse
    assert runs(both) == (12, 10, [{"key": "ventureloop/kind", "value": "experiment", "limit": 10}])
    assert runs({**both, "DAGSTER_EXPERIMENT_RUN_LIMIT": "3", "DAGSTER_MAX_CONCURRENT_RUNS": "20"})[:2] == (20, 3)
    assert runs({"DAGSTER_EXPERIMENT_RUN_LIMIT": "2"})[:2] == (4, 2)
    with pytest.raises(ValueError, match="DAGSTER_EXPERIMENT_RUN_LIMIT must be a positive integer, got '0'"):
        instance.render({"DAGSTER_EXPERIMENT_RUN_LIMIT": "0"})
    # The shipped file already limits experiment runs, and Dagster accepts what render writes.
    assert instance.experiment_run_limit_of(yaml.safe_load(instance.TEMPLATE.read_text())) == 1
    instance.write(tmp_path, env={"DAGSTER_EXPERIMENT_RUN_LIMIT": "10", "DAGSTER_MAX_CONCURRENT_RUNS": "12"})
    with dg.DagsterInstance.from_config(str(tmp_path)) as inst:
        queue = inst.get_concurrency_config().run_queue_config
        assert inst.run_coordinator.dequeue_use_threads  # a launch waits for its process to load the code
    assert queue.max_concurrent_runs == 12
    assert queue.tag_concurrency_limits == [{"key": "ventureloop/kind", "value": "experiment", "limit": 10}]


def test_an_instance_that_disagrees_with_the_environment_is_refused(tmp_path):
    postgres = {"DAGSTER_POSTGRES_URL": "postgresql://u:secret@h/db"}
    home = {"DAGSTER_HOME": str(tmp_path)}
    instance.require_matching_storage({})  # no instance, no PostgreSQL asked: Dagster's own default
    instance.require_matching_storage(home)  # no dagster.yaml yet: SQLite, as asked
    with pytest.raises(instance.InstanceMismatch, match="DAGSTER_HOME is not"):
        instance.require_matching_storage(postgres)
    with pytest.raises(instance.InstanceMismatch, match="keeps runs in SQLite.*ventureloop instance init"):
        instance.require_matching_storage({**home, **postgres})
    instance.write(tmp_path, env={})
    with pytest.raises(instance.InstanceMismatch, match="keeps runs in SQLite"):
        instance.require_matching_storage({**home, **postgres})
    instance.write(tmp_path, env=postgres)
    instance.require_matching_storage({**home, **postgres})
    with pytest.raises(instance.InstanceMismatch, match="DAGSTER_POSTGRES_URL is unset"):
        instance.require_matching_storage(home)
    config = instance.read(tmp_path)
    assert instance.describe_storage(tmp_path, config, postgres) == "PostgreSQL postgresql://u:***@h/db"
    assert instance.describe_storage(tmp_path, None, {}) == f"SQLite under {tmp_path}"


@pytest.mark.parametrize("module", ["orchestration.definitions", "orchestration.marts_definitions"])
def test_each_code_location_refuses_to_load_on_the_wrong_storage(tmp_path, monkeypatch, module):
    """What `dagster asset materialize` with DAGSTER_POSTGRES_URL exported but no `instance init` hits."""
    import runpy

    instance.write(tmp_path, env={})
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql://u@h/db")
    with pytest.raises(instance.InstanceMismatch, match="ventureloop instance init"):
        runpy.run_module(module)


def test_instance_init_says_where_runs_go_and_warns_when_postgres_is_dropped(tmp_path, monkeypatch):
    """`make dev` in a shell without DAGSTER_POSTGRES_URL used to switch the instance to SQLite silently."""
    from typer.testing import CliRunner

    from orchestration.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", "postgresql://u:secret@h/db")
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://u:secret@h/warehouse")
    first = CliRunner().invoke(app, ["instance", "init"])
    assert first.exit_code == 0, first.output
    assert "runs in PostgreSQL postgresql://u:***@h/db, pool limit 4" in first.stdout and "secret" not in first.output
    monkeypatch.delenv("DAGSTER_POSTGRES_URL")
    monkeypatch.delenv("WAREHOUSE_URL")
    second = CliRunner().invoke(app, ["instance", "init"])
    assert second.exit_code == 0, second.output
    assert f"runs in SQLite under {tmp_path / 'dagster'}, pool limit 1" in second.stdout
    assert "kept runs in PostgreSQL and now keeps them in SQLite" in second.stderr


def test_write_replaces_the_file_whole_so_a_reader_never_sees_half_of_one(tmp_path):
    """compose.yaml runs `instance init` in several services on one volume while code servers read."""
    path = instance.write(tmp_path, env={})
    before = yaml.safe_load(path.read_text())
    with path.open() as held:  # a reader that opened the file before the rewrite
        instance.write(tmp_path, env={"DAGSTER_POSTGRES_URL": "postgresql://u@h/db"})
        assert yaml.safe_load(held.read()) == before  # a new file was renamed over, not truncated
    assert instance.storage_of(yaml.safe_load(path.read_text())) == "postgres"
    assert [p.name for p in tmp_path.iterdir()] == ["dagster.yaml"]  # no temporary file left


def test_a_helm_shaped_instance_counts_as_postgres_storage(tmp_path):
    """Dagster's Helm chart writes run_storage / event_log_storage / schedule_storage, not storage."""
    postgres_config = {"postgres_db": {"username": "u", "password": {"env": "P"}, "hostname": "h", "db_name": "d"}}
    helm = {
        name: {"module": f"dagster_postgres.{module}", "class": cls, "config": postgres_config}
        for name, module, cls in (
            ("run_storage", "run_storage", "PostgresRunStorage"),
            ("event_log_storage", "event_log", "PostgresEventLogStorage"),
            ("schedule_storage", "schedule_storage", "PostgresScheduleStorage"),
        )
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(helm))
    home = {"DAGSTER_HOME": str(tmp_path)}
    assert instance.storage_of(instance.read(tmp_path)) == "postgres"
    assert instance.storage_of({"event_log_storage": {"postgres": {"postgres_url": "x"}}}) == "postgres"
    instance.require_matching_storage({**home, "DAGSTER_POSTGRES_URL": "postgresql://u@h/db"})
    with pytest.raises(instance.InstanceMismatch, match="DAGSTER_POSTGRES_URL is unset"):
        instance.require_matching_storage(home)


def test_a_pool_limit_rendered_for_postgres_is_refused_on_a_duckdb_warehouse(tmp_path):
    """init with a PostgreSQL WAREHOUSE_URL, then a switch to DuckDB without re-running it."""
    home = {"DAGSTER_HOME": str(tmp_path)}
    instance.write(tmp_path, env={"WAREHOUSE_URL": "postgresql://u@h/db"})
    instance.require_matching_storage({**home, "WAREHOUSE_URL": "postgresql://u@h/db"})
    for duckdb in ({}, {"WAREHOUSE_URL": "duckdb:///w.duckdb"}):
        with pytest.raises(instance.InstanceMismatch, match="pool limit 4 .*DuckDB.*ventureloop instance init"):
            instance.require_matching_storage({**home, **duckdb})
    instance.write(tmp_path, env={})
    instance.require_matching_storage(home)
