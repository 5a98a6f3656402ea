"""`ventureloop` applies ./.env as the Dagster CLI does, so `make demo`, `make dev` and `dagster`
commands run from one directory use one instance and warehouse."""

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


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
    assert done.stdout.strip() == f"wrote {written}"
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
