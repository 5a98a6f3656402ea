"""The container path (Dockerfile, compose.yaml), checked without a Docker daemon: no daemon runs
here and `docker compose` is not installed, so the files are parsed and held to what the services
need to find each other, the code locations and the configuration."""

import re
import shlex
from pathlib import Path

import yaml

from orchestration import instance

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = [name for name, service in SERVICES.items() if service.get("image") == "ventureloop:latest"]


def _command(service: dict) -> list[str]:
    command = service["command"]
    if command[:2] == ["sh", "-c"]:
        return shlex.split(command[2])
    return command


def _workspace() -> list[dict]:
    return yaml.safe_load(COMPOSE["configs"]["workspace"]["content"])["load_from"]


def test_every_service_is_there_and_has_a_healthcheck():
    assert {"postgres", "webserver", "daemon", "code-ventureloop", "code-ventureloop-marts"} <= set(SERVICES)
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert set(APP_SERVICES) == {"webserver", "daemon", "code-ventureloop", "code-ventureloop-marts", "metrics"}


def test_the_code_location_servers_serve_the_locations_of_workspace_yaml():
    local = {
        entry["python_module"]["location_name"]: entry["python_module"]["module_name"]
        for entry in yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    }
    served = {}
    for entry in _workspace():
        server = entry["grpc_server"]
        command = _command(SERVICES[server["host"]])
        start = command.index("dagster")
        assert command[start : start + 3] == ["dagster", "code-server", "start"]
        args = dict(zip(command[start + 3 :: 2], command[start + 4 :: 2], strict=False))
        assert args["-p"] == str(server["port"]) and args["-h"] == "0.0.0.0"
        assert args["--location-name"] == server["location_name"]
        served[server["location_name"]] = args["-m"]
        assert SERVICES[server["host"]]["healthcheck"]["test"][-1] == str(server["port"])
    assert served == local
    for name in ("webserver", "daemon"):
        assert "/etc/ventureloop/workspace.yaml" in _command(SERVICES[name])
        assert {"source": "workspace", "target": "/etc/ventureloop/workspace.yaml"} in SERVICES[name]["configs"]
        waits = SERVICES[name]["depends_on"]
        assert all(waits[entry["grpc_server"]["host"]]["condition"] == "service_healthy" for entry in _workspace())


def test_every_app_service_runs_on_postgresql_with_documented_variables():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    for name in APP_SERVICES:
        env = SERVICES[name]["environment"]
        assert env["WAREHOUSE_URL"].startswith("postgresql://") and env["WAREHOUSE_URL"].endswith(
            "@postgres:5432/warehouse"
        )
        assert env["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")
        assert set(env) <= documented, set(env) - documented
        # The instance each container writes at start is PostgreSQL storage, by reference to the variable.
        assert instance.render(env)["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_POSTGRES_URL"}}}
        assert _command(SERVICES[name])[:3] == ["ventureloop", "instance", "init"]
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Both databases the URLs name exist: dagster by POSTGRES_DB, warehouse by the init script.
    assert SERVICES["postgres"]["environment"]["POSTGRES_DB"] == "dagster"
    assert "CREATE DATABASE warehouse;" in COMPOSE["configs"]["create-warehouse-database"]["content"]


def test_the_image_installs_exactly_the_lock_and_parses_the_manifest():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if line.startswith("RUN") and " sync" in line]
    assert installs and all("uv sync --frozen" in line for line in installs)
    assert "COPY pyproject.toml uv.lock ./" in dockerfile
    assert not re.search(r"pip install (?!--no-cache-dir uv==)", dockerfile)  # only uv itself comes from pip
    uv_version = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)[1]
    assert f"uv=={uv_version}" in dockerfile
    assert "dagster-dbt project prepare-and-package --file assets/ledger_marts/project.py" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".env*", "!.env.example", ".ventureloop", "dbt_project/target"} <= set(ignored)
    # Every .env variant (.env.local, .env.prod) may hold secrets; only the example is documentation.
    assert ignored.index("!.env.example") > ignored.index(".env*")
