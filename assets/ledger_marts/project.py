"""dbt_project/ as a dagster-dbt `DbtProject`, and the preparation of its manifest.

The manifest (dbt_project/target/manifest.json) is what `@dbt_assets` reads to build the asset
graph, so every process that loads the marts code location needs a parsed one. It is prepared by
dagster-dbt's own preparer (`dbt parse`), in one of two ways:

- ahead of time, by `make env`, with
  `.venv/bin/dagster-dbt project prepare-and-package --file assets/ledger_marts/project.py`
  (that command finds `ledger_dbt_project` in this file and runs its preparer);
- on load, when the manifest is missing or older than a file of the project
  (`prepare_if_stale`, called by assets/ledger_marts/dbt.py), so an edited model is picked up
  by the next load and a fresh checkout loads without a separate step.

dbt_project/profiles.yml reads its connection from environment variables only, and `dbt parse`
loads the profile, so the preparer runs with the variables of this environment's warehouse
(core/platform/dbt_env.py); parsing neither connects to it nor writes it.
"""

from pathlib import Path

from dagster_dbt import DbtProject
from dagster_dbt.dbt_project import DagsterDbtProjectPreparer
from dagster_shared.record import replace

from core.platform.dbt_env import DBT_PROJECT_DIR, dbt_environment
from core.platform.warehouse import default_warehouse_url

# What `dbt parse` reads: a newer file than the manifest means the manifest is stale.
PROJECT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests")


class WarehousePreparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparer (`dbt deps` when the project has packages, then `dbt parse`), run
    with the dbt variables of the warehouse that WAREHOUSE_URL names (or the embedded default)."""

    def prepare(self, project: DbtProject) -> None:
        with dbt_environment(default_warehouse_url()):
            super().prepare(project)


# DbtProject takes no preparer argument; `replace` sets the field without re-running __new__.
ledger_dbt_project = replace(
    DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR), preparer=WarehousePreparer()
)


def manifest_is_stale(project: DbtProject = ledger_dbt_project) -> bool:
    manifest = Path(project.manifest_path)
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    for name in PROJECT_SOURCES:
        source = Path(project.project_dir) / name
        files = [source] if source.is_file() else source.rglob("*")
        if any(path.stat().st_mtime > built for path in files if path.is_file()):
            return True
    return False


def prepare_if_stale(project: DbtProject = ledger_dbt_project) -> None:
    """Parse the project when its manifest is missing or out of date. Concurrent loads (two test
    workers, the webserver and the daemon) do not race: the preparer takes a lock on the manifest
    and skips the parse when another process finished one meanwhile."""
    if manifest_is_stale(project):
        project.preparer.prepare(project)
