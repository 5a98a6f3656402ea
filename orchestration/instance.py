"""Render $DAGSTER_HOME/dagster.yaml from the repository's dagster.yaml and the environment.

Dagster's instance file cannot choose a storage backend from an environment variable, so the
choice is made here, once, before the webserver or daemon start."""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "dagster.yaml"


def _check_postgres_url(url: str) -> None:
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, with which dagster-postgres 0.29 fails on
    # every run (NOTIFY ... $1); the lock pins SQLAlchemy < 2.1, and +psycopg (3) is refused here.
    scheme = url.split("://", 1)[0]
    if scheme not in ("postgresql", "postgres", "postgresql+psycopg2"):
        raise ValueError(
            f"DAGSTER_POSTGRES_URL must start with postgresql:// or postgresql+psycopg2://, got {scheme}://"
        )


def render(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if env is None else env
    config = yaml.safe_load(TEMPLATE.read_text())
    if url := env.get("DAGSTER_POSTGRES_URL"):
        _check_postgres_url(url)
        # By reference, so the password stays in the environment and out of the file.
        config["storage"] = {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}
    if runs := env.get("DAGSTER_MAX_CONCURRENT_RUNS"):
        config["concurrency"]["runs"]["max_concurrent_runs"] = _positive_int("DAGSTER_MAX_CONCURRENT_RUNS", runs)
    if limit := env.get("DAGSTER_POOL_LIMIT"):
        config["concurrency"]["pools"]["default_limit"] = _positive_int("DAGSTER_POOL_LIMIT", limit)
    return config


def _positive_int(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def write(dagster_home: Path, env: Mapping[str, str] | None = None) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    header = "# Written by `ventureloop instance init` from the repository's dagster.yaml; edit that instead.\n"
    path.write_text(header + yaml.safe_dump(render(env), sort_keys=False))
    return path
