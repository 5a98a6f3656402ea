"""`ventureloop` applies ./.env as the Dagster CLI does, so `make demo`, `make dev` and `dagster`
commands run from one directory use one instance and warehouse; and .env.example loads the same in
bash and python-dotenv."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRINT_ENVIRONMENT = "import json, os; print(json.dumps(dict(os.environ)))"


def test_instance_init_reads_home_from_the_env_file(tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    # As .env.example writes it: DAGSTER_HOME derived from VENTURELOOP_HOME inside the file.
    (project / ".env").write_text(
        f"VENTURELOOP_HOME={tmp_path}/home\nDAGSTER_HOME=${{VENTURELOOP_HOME}}/dagster\nDAGSTER_MAX_CONCURRENT_RUNS=7\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "VENTURELOOP_"))}
    done = subprocess.run(
        [str(BIN / "ventureloop"), "instance", "init"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    written = tmp_path / "home" / "dagster" / "dagster.yaml"
    assert done.stdout.startswith(f"wrote {written}: runs in SQLite under {written.parent}, pool limit 1")
    assert "max_concurrent_runs: 7" in written.read_text()


def test_only_home_in_the_env_file_still_puts_the_instance_under_it(tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"VENTURELOOP_HOME={tmp_path}/elsewhere\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "VENTURELOOP_"))}
    done = subprocess.run(
        [str(BIN / "ventureloop"), "instance", "init"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "elsewhere" / "dagster" / "dagster.yaml").exists()


def test_env_example_loads_in_bash_to_what_python_dotenv_reads():
    """`set -a; . ./.env.example` is how a shell user applies it: no word may run as a command, no
    variable may be unset, and every value must equal the one ventureloop and Dagster read."""
    from dotenv import dotenv_values

    done = subprocess.run(
        ["bash", "-c", 'set -euo pipefail; set -a; . ./.env.example; "$0" -c "$1"', sys.executable, PRINT_ENVIRONMENT],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    from_bash = json.loads(done.stdout)
    from_dotenv = dotenv_values(ROOT / ".env.example")
    assert from_dotenv and all(value is not None for value in from_dotenv.values())
    assert {name: from_bash.get(name) for name in from_dotenv} == from_dotenv
    assert from_dotenv["WEB_SEARCH_QUERIES"].count(";") == 2  # one value with spaces, not commands
    # Nothing without a default is set, so a copy of the file never overrides an exported value.
    assert not {"WAREHOUSE_URL", "DAGSTER_POSTGRES_URL", "DAGSTER_HOME", "VENTURELOOP_HOME"} & set(from_dotenv)
