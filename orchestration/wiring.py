"""How a code location is put together: the domains' Definitions, merged, plus the resources and
executor of this environment (chosen by environment variables only, see .env.example)."""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.resources import resources

EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
# Executors whose steps may run on other machines: they need a warehouse every machine can reach.
DISTRIBUTED = ("celery", "k8s")
DEFAULT_CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_CELERY_BACKEND_URL = "redis://127.0.0.1:6379/1"
# make_app's queue: a worker started without -q listens on it.
DEFAULT_CELERY_QUEUE = "dagster"
_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


class ExecutorChoiceError(ValueError):
    """DAGSTER_EXECUTOR (or one of its settings) cannot run on this environment."""


@dataclass(frozen=True)
class CelerySettings:
    broker_url: str
    backend_url: str
    queue: str


def celery_settings(env: Mapping[str, str] | None = None) -> CelerySettings:
    """The broker, result backend and queue that the executor submits to and a worker listens on:
    `orchestration/celery_app.py` reads the same variables, so the two cannot disagree."""
    env = os.environ if env is None else env
    broker = env.get("DAGSTER_CELERY_BROKER_URL") or DEFAULT_CELERY_BROKER_URL
    backend = env.get("DAGSTER_CELERY_BACKEND_URL") or DEFAULT_CELERY_BACKEND_URL
    queue = env.get("DAGSTER_CELERY_QUEUE") or DEFAULT_CELERY_QUEUE
    for name, url in (("DAGSTER_CELERY_BROKER_URL", broker), ("DAGSTER_CELERY_BACKEND_URL", backend)):
        if not _URL.match(url):
            raise ExecutorChoiceError(
                f"{name}={_hide_password(url)!r} is not a URL: use redis://host:6379/0 (see .env.example)"
            )
    if not _QUEUE.match(queue):
        raise ExecutorChoiceError(
            f"DAGSTER_CELERY_QUEUE={queue!r}: a queue name is letters, digits, '_', '.' and '-' (default dagster)"
        )
    return CelerySettings(broker_url=broker, backend_url=backend, queue=queue)


def celery_executor_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    settings = celery_settings(env)

    # By reference when set: a broker URL may carry a password, which then stays out of the UI.
    def source(name: str, value: str) -> Any:
        return {"env": name} if env.get(name) else value

    return {
        "broker": source("DAGSTER_CELERY_BROKER_URL", settings.broker_url),
        "backend": source("DAGSTER_CELERY_BACKEND_URL", settings.backend_url),
        # Every step goes to this queue (a step's `dagster-celery/queue` tag would override it).
        "config_source": {"task_default_queue": settings.queue},
    }


def k8s_executor_config(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each step in its own Kubernetes Job. Unset variables leave the run launcher's values (the Helm
    chart's K8sRunLauncher: namespace, secrets) and the code location's image in force."""
    env = os.environ if env is None else env
    config: dict[str, Any] = {}
    if namespace := env.get("DAGSTER_K8S_NAMESPACE"):
        config["job_namespace"] = namespace
    if image := env.get("DAGSTER_K8S_IMAGE"):
        config["job_image"] = image
    if secrets := env.get("DAGSTER_K8S_ENV_SECRETS"):
        config["env_secrets"] = [name.strip() for name in secrets.split(",") if name.strip()]
    if limit := env.get("DAGSTER_K8S_MAX_CONCURRENT"):
        if not limit.isdigit() or int(limit) < 1:
            raise ExecutorChoiceError(f"DAGSTER_K8S_MAX_CONCURRENT must be a positive integer, got {limit!r}")
        config["max_concurrent"] = int(limit)
    return config


def _hide_password(url: str) -> str:
    # Also in a malformed URL (the one being reported): whatever sits between a ':' and the '@'.
    return re.sub(r":[^:/@]+@", ":***@", url)


def _refuse_unshareable(choice: str, env: Mapping[str, str]) -> None:
    from core.platform.warehouse import Warehouse

    warehouse = Warehouse(env.get("WAREHOUSE_URL") or "duckdb:///default")
    if warehouse.backend == "duckdb":
        where = env.get("WAREHOUSE_URL") or "the default $VENTURELOOP_HOME/warehouse.duckdb"
        raise ExecutorChoiceError(
            f"DAGSTER_EXECUTOR={choice} runs steps in worker processes on other machines, but the warehouse is "
            f"DuckDB ({where}): one file with one writer, which workers elsewhere cannot share. Set WAREHOUSE_URL "
            f"to a PostgreSQL database every worker reaches (docs/deploy.md), or use DAGSTER_EXECUTOR=in_process"
        )
    if choice == "celery" and not _runs_in_postgres(env):
        # A celery worker loads the run from the instance named in the task: with SQLite under
        # DAGSTER_HOME, a worker on another machine finds no such run.
        raise ExecutorChoiceError(
            "DAGSTER_EXECUTOR=celery needs Dagster's runs and events in PostgreSQL, where every worker reads "
            "them: set DAGSTER_POSTGRES_URL and run `ventureloop instance init` (docs/deploy.md)"
        )


def _runs_in_postgres(env: Mapping[str, str]) -> bool:
    # DAGSTER_POSTGRES_URL (`instance init`), or an instance file written by Dagster's Helm chart,
    # which names the server without that variable.
    from orchestration.instance import read, storage_of

    home = env.get("DAGSTER_HOME")
    return bool(env.get("DAGSTER_POSTGRES_URL")) or (bool(home) and storage_of(read(Path(home))) == "postgres")


def executor(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    # In-process by default: each multiprocess step re-imports the code location, and a DuckDB
    # file has one writer anyway. DAGSTER_EXECUTOR=multiprocess for a server warehouse on one
    # machine, celery or k8s for several. dagster_celery and dagster_k8s are imported only when
    # chosen: celery and kubernetes would add to every load of the code location.
    env = os.environ if env is None else env
    choice = env.get("DAGSTER_EXECUTOR") or "in_process"
    if choice not in EXECUTORS:
        raise ExecutorChoiceError(f"DAGSTER_EXECUTOR={choice!r}: use one of {', '.join(EXECUTORS)} (see .env.example)")
    if choice in DISTRIBUTED:
        _refuse_unshareable(choice, env)
    if choice == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_executor_config(env), name="celery")
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(k8s_executor_config(env), name="k8s")
    return dg.multiprocess_executor if choice == "multiprocess" else dg.in_process_executor


def discovery_is_live() -> bool:
    return os.environ.get("DISCOVERY_MODE") == "live"


def location(*domains: dg.Definitions) -> dg.Definitions:
    return dg.Definitions.merge(*domains, dg.Definitions(resources=resources(), executor=executor()))
