"""DAGSTER_EXECUTOR and its settings (orchestration/wiring.py): each choice, what each refuses, and
that the configuration a choice produces is valid for Dagster's own executor schema."""

import re

import dagster as dg
import pytest
import yaml

from orchestration.wiring import (
    DEFAULT_CELERY_BACKEND_URL,
    DEFAULT_CELERY_BROKER_URL,
    ExecutorChoiceError,
    celery_executor_config,
    celery_settings,
    executor,
    k8s_executor_config,
)

SERVER = {"WAREHOUSE_URL": "postgresql://u:secret@db/warehouse", "DAGSTER_POSTGRES_URL": "postgresql://u@db/dagster"}


@dg.op
def noop() -> None:
    pass


def _valid_for_dagster(executor_def: dg.ExecutorDefinition) -> None:
    """The configured values pass the executor's own config schema, as they would when a run starts."""
    job = dg.GraphDefinition(name="one_op", node_defs=[noop]).to_job(executor_def=executor_def)
    dg.validate_run_config(job, {})


def test_in_process_is_the_default_and_multiprocess_is_dagsters_own():
    assert executor({}) is dg.in_process_executor
    assert executor({"DAGSTER_EXECUTOR": ""}) is dg.in_process_executor
    assert executor({"DAGSTER_EXECUTOR": "in_process"}) is dg.in_process_executor
    # On DuckDB too: one machine, and the warehouse pool keeps its writers to one.
    assert executor({"DAGSTER_EXECUTOR": "multiprocess"}) is dg.multiprocess_executor


def test_celery_defaults_to_the_local_redis_and_the_dagster_queue():
    chosen = executor({**SERVER, "DAGSTER_EXECUTOR": "celery"})
    assert chosen.name == "celery"
    _valid_for_dagster(chosen)
    assert celery_executor_config(SERVER) == {
        "broker": "redis://127.0.0.1:6379/0",
        "backend": "redis://127.0.0.1:6379/1",
        "config_source": {"task_default_queue": "dagster"},
    }
    assert (DEFAULT_CELERY_BROKER_URL, DEFAULT_CELERY_BACKEND_URL) == (
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/1",
    )


def test_celery_urls_set_in_the_environment_are_passed_by_reference():
    env = {
        **SERVER,
        "DAGSTER_CELERY_BROKER_URL": "redis://:hunter2@redis.internal:6379/3",
        "DAGSTER_CELERY_BACKEND_URL": "redis://:hunter2@redis.internal:6379/4",
        "DAGSTER_CELERY_QUEUE": "experiments",
    }
    config = celery_executor_config(env)
    # The password never lands in the run's config (the UI shows it); the worker reads the same values.
    assert config == {
        "broker": {"env": "DAGSTER_CELERY_BROKER_URL"},
        "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"},
        "config_source": {"task_default_queue": "experiments"},
    }
    settings = celery_settings(env)
    assert (settings.broker_url, settings.backend_url, settings.queue) == (
        "redis://:hunter2@redis.internal:6379/3",
        "redis://:hunter2@redis.internal:6379/4",
        "experiments",
    )


def test_k8s_takes_namespace_image_secrets_and_a_step_limit_from_the_environment():
    assert k8s_executor_config({}) == {}  # the run launcher's namespace, the code location's image
    env = {
        **SERVER,
        "DAGSTER_EXECUTOR": "k8s",
        "DAGSTER_K8S_NAMESPACE": "ventureloop",
        "DAGSTER_K8S_IMAGE": "registry.example.com/ventureloop:abc123",
        "DAGSTER_K8S_ENV_SECRETS": "ventureloop-env, stripe",
        "DAGSTER_K8S_MAX_CONCURRENT": "8",
    }
    assert k8s_executor_config(env) == {
        "job_namespace": "ventureloop",
        "job_image": "registry.example.com/ventureloop:abc123",
        "env_secrets": ["ventureloop-env", "stripe"],
        "max_concurrent": 8,
    }
    chosen = executor(env)
    assert chosen.name == "k8s"
    _valid_for_dagster(chosen)
    # The Helm chart writes the instance itself: k8s does not ask for DAGSTER_POSTGRES_URL.
    assert executor({"DAGSTER_EXECUTOR": "k8s", "WAREHOUSE_URL": SERVER["WAREHOUSE_URL"]}).name == "k8s"


@pytest.mark.parametrize("choice", ["celery", "k8s"])
@pytest.mark.parametrize("warehouse", [{}, {"WAREHOUSE_URL": "duckdb:////srv/ventureloop/warehouse.duckdb"}])
def test_distributed_executors_are_refused_on_a_duckdb_warehouse(choice, warehouse):
    env = {"DAGSTER_POSTGRES_URL": SERVER["DAGSTER_POSTGRES_URL"], "DAGSTER_EXECUTOR": choice, **warehouse}
    where = warehouse.get("WAREHOUSE_URL", "the default $VENTURELOOP_HOME/warehouse.duckdb")
    with pytest.raises(
        ExecutorChoiceError, match=rf"DAGSTER_EXECUTOR={choice} .*DuckDB \({re.escape(where)}\).*PostgreSQL"
    ):
        executor(env)


def test_celery_is_refused_when_runs_are_kept_in_sqlite():
    with pytest.raises(ExecutorChoiceError, match="DAGSTER_POSTGRES_URL.*ventureloop instance init"):
        executor({"DAGSTER_EXECUTOR": "celery", "WAREHOUSE_URL": SERVER["WAREHOUSE_URL"]})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DAGSTER_EXECUTOR": "celery_executor"}, r"DAGSTER_EXECUTOR='celery_executor': use one of in_process, multi"),
        ({"DAGSTER_EXECUTOR": "Celery"}, "use one of"),
        ({"DAGSTER_EXECUTOR": "celery", "DAGSTER_CELERY_QUEUE": "two words"}, "DAGSTER_CELERY_QUEUE='two words'"),
        (
            {"DAGSTER_EXECUTOR": "celery", "DAGSTER_CELERY_BROKER_URL": "127.0.0.1:6379"},
            r"DAGSTER_CELERY_BROKER_URL='127.0.0.1:6379' is not a URL: use redis://",
        ),
        (
            {"DAGSTER_EXECUTOR": "celery", "DAGSTER_CELERY_BACKEND_URL": "redis:/h"},
            "DAGSTER_CELERY_BACKEND_URL='redis:/h' is not a URL",
        ),
        (
            {"DAGSTER_EXECUTOR": "k8s", "DAGSTER_K8S_MAX_CONCURRENT": "0"},
            "DAGSTER_K8S_MAX_CONCURRENT must be a positive",
        ),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env, message):
    with pytest.raises(ExecutorChoiceError, match=message):
        executor({**SERVER, **env})


def test_a_bad_broker_url_is_named_without_its_password():
    with pytest.raises(ExecutorChoiceError) as raised:
        celery_settings({"DAGSTER_CELERY_BROKER_URL": "redis//:hunter2@h:6379"})
    assert "hunter2" not in str(raised.value)


def test_celery_accepts_a_postgres_instance_file_without_dagster_postgres_url(tmp_path):
    """Dagster's Helm chart writes run_storage blocks naming the server, and no DAGSTER_POSTGRES_URL."""
    postgres_db = {"postgres_db": {"username": "u", "password": {"env": "P"}, "hostname": "h", "db_name": "d"}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"run_storage": {"postgres": postgres_db}}))
    env = {"DAGSTER_EXECUTOR": "celery", "WAREHOUSE_URL": SERVER["WAREHOUSE_URL"], "DAGSTER_HOME": str(tmp_path)}
    assert executor(env).name == "celery"
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}}))  # SQLite
    with pytest.raises(ExecutorChoiceError, match="DAGSTER_POSTGRES_URL"):
        executor(env)


def test_the_worker_app_listens_where_the_executor_submits(monkeypatch):
    """orchestration/celery_app.py (`dagster-celery worker start -A orchestration.celery_app`) reads
    the executor's variables: a worker started without -q takes the configured queue's tasks."""
    import importlib
    import sys

    monkeypatch.setenv("DAGSTER_CELERY_BROKER_URL", "redis://:hunter2@redis.internal:6379/3")
    monkeypatch.setenv("DAGSTER_CELERY_BACKEND_URL", "redis://redis.internal:6379/4")
    monkeypatch.setenv("DAGSTER_CELERY_QUEUE", "experiments")
    monkeypatch.delitem(sys.modules, "orchestration.celery_app", raising=False)
    celery_app = importlib.import_module("orchestration.celery_app")
    try:
        conf = celery_app.app.conf
        assert conf.broker_url == "redis://:hunter2@redis.internal:6379/3"
        assert conf.result_backend == "redis://redis.internal:6379/4"
        assert conf.task_default_queue == "experiments"
        assert [queue.name for queue in conf.task_queues] == ["experiments"]
        assert {"execute_plan", "execute_job", "resume_job"} <= set(celery_app.app.tasks)
    finally:
        sys.modules.pop("orchestration.celery_app", None)
