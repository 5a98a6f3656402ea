"""Every variable the code reads is documented in .env.example, and everything documented there
is read by something: a user configures the platform by that file alone (README, "Configuration")."""

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


def documented() -> set[str]:
    return {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if re.match(r"^[A-Z][A-Z0-9_]*=", line)
    }


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
