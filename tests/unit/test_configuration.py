"""Every variable the code reads is documented in .env.example, and everything documented there
is read by something: a user configures the platform by that file alone (README, "Configuration")."""

import os
import re
from pathlib import Path

from core.discovery.sources.settings import SOURCE_SECRETS, SOURCE_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
# Variables we set for a child process ourselves, or that belong to another tool: not user settings.
NOT_SETTINGS = {
    "VENTURELOOP_WAREHOUSE_PATH",
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "GX_ANALYTICS_ENABLED",
    "USER",
    "PATH",
    "CI",
    "PYTEST_XDIST_WORKER",
}
# A variable name in quotes, on a line that reads the environment.
READ = re.compile(
    r"""(?:environ|env|EnvVar|getenv|env_var|_secret|_text|positive_int)\b[^\n]*?["']([A-Z][A-Z0-9_]{2,})["']"""
)


# A variable with no default is documented commented out (`# NAME=example`), so that a copy of the
# file sets nothing the user did not choose.
ASSIGNMENT = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=")


def documented() -> set[str]:
    return {match[1] for line in (ROOT / ".env.example").read_text().splitlines() if (match := ASSIGNMENT.match(line))}


def read_by_code() -> set[str]:
    found = set(SOURCE_SECRETS) | set(SOURCE_SETTINGS)
    files = [p for d in ("core", "assets", "orchestration") for p in (ROOT / d).rglob("*.py")]
    files += [*(ROOT / "tests").rglob("conftest.py"), ROOT / "dbt_project" / "profiles.yml", ROOT / "Makefile"]
    for path in files:
        found |= set(READ.findall(path.read_text(encoding="utf-8")))
    return found - NOT_SETTINGS


def test_every_variable_the_code_reads_is_in_env_example():
    missing = read_by_code() - documented()
    assert not missing, f"read by the code but not in .env.example: {sorted(missing)}"


def test_env_example_lists_nothing_the_code_ignores():
    stale = documented() - read_by_code()
    assert not stale, f"in .env.example but read by nothing: {sorted(stale)}"


# -- the project home and the env file (issue 12) --------------------------------------------------


def test_the_project_home_is_the_repository_whatever_the_current_directory(tmp_path, monkeypatch):
    from core.platform.warehouse import default_home, default_warehouse_url

    monkeypatch.delenv("VENTURELOOP_HOME", raising=False)
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_home() == ROOT / ".ventureloop"
    assert default_warehouse_url() == f"duckdb:///{ROOT / '.ventureloop' / 'warehouse.duckdb'}"

    from typer.testing import CliRunner

    from orchestration.cli import app

    # A command run from elsewhere: the repository's warehouse (or, if there is none yet, an error
    # naming it), never a new one in the current directory. A copy of the environment, as the
    # command applies the repository's .env if there is one.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    result = CliRunner().invoke(app, ["ledger", "balances"])
    assert str(ROOT / ".ventureloop" / "warehouse.duckdb") in result.stderr or os.environ.get("WAREHOUSE_URL")
    assert list(tmp_path.iterdir()) == []


def test_a_read_command_on_a_missing_warehouse_names_it_and_creates_nothing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from orchestration.cli import app

    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("VENTURELOOP_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for command in (["ledger", "balances"], ["ledger", "budgets"], ["experiments", "list"], ["quarantine", "list"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert f"no warehouse at {tmp_path / 'home' / 'warehouse.duckdb'}" in result.stderr
        assert "make demo" in result.stderr
    assert not (tmp_path / "home").exists()


def test_relative_homes_in_the_env_file_become_absolute_against_it(tmp_path, monkeypatch):
    from orchestration.cli import load_env_file

    for name in ("VENTURELOOP_HOME", "DAGSTER_HOME", "VENTURELOOP_INBOX"):
        monkeypatch.delenv(name, raising=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text("VENTURELOOP_HOME=./state\nDAGSTER_HOME=${VENTURELOOP_HOME}/dagster\n")
    monkeypatch.chdir(tmp_path)  # not the project: relative to the file, not to where the command runs
    load_env_file(project)
    assert os.environ["VENTURELOOP_HOME"] == str(project / "state")
    assert os.environ["DAGSTER_HOME"] == str(project / "state" / "dagster")
    monkeypatch.setenv("VENTURELOOP_INBOX", "drop")  # from the shell: relative to the current directory
    load_env_file(tmp_path / "nowhere")
    assert os.environ["VENTURELOOP_INBOX"] == str(tmp_path / "drop")


def test_a_relative_duckdb_warehouse_in_the_env_file_becomes_absolute_against_it(tmp_path, monkeypatch):
    from core.platform.warehouse import Warehouse
    from orchestration.cli import load_env_file

    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(tmp_path)
    for written, meant in (
        ("duckdb:///state/w.duckdb", project / "state" / "w.duckdb"),
        ("duckdb:///../w.duckdb", tmp_path / "w.duckdb"),
        ("duckdb:////srv/vl/w.duckdb", Path("/srv/vl/w.duckdb")),  # four slashes: absolute already
    ):
        (project / ".env").write_text(f"WAREHOUSE_URL={written}\n")
        load_env_file(project)
        assert Warehouse(os.environ["WAREHOUSE_URL"]).duckdb_path == str(meant)
    for untouched in ("duckdb:///:memory:", "postgresql://u@h:5432/db"):
        (project / ".env").write_text(f"WAREHOUSE_URL={untouched}\n")
        load_env_file(project)
        assert os.environ["WAREHOUSE_URL"] == untouched
    (project / ".env").write_text("")
    monkeypatch.setenv("WAREHOUSE_URL", "duckdb:///shell.duckdb")  # from the shell: the current directory
    load_env_file(project)
    assert os.environ["WAREHOUSE_URL"] == f"duckdb:///{tmp_path / 'shell.duckdb'}"


def test_help_lists_the_environment_variables():
    from typer.testing import CliRunner

    from orchestration.cli import app

    shown = CliRunner().invoke(app, ["--help"], terminal_width=120).output
    for name in ("VENTURELOOP_HOME", "WAREHOUSE_URL", "DAGSTER_HOME", "DAGSTER_POSTGRES_URL", "DAGSTER_POOL_LIMIT"):
        assert name in shown and name in documented()
