"""The MLflow resource and `ventureloop mlflow ui` choose the store the environment says, without
importing mlflow (the code location must not pay its import)."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
from typer.testing import CliRunner

from assets.learning.resources import MlflowResource
from ml.registry import ModelVersion
from orchestration.cli import app, mlflow_ui_command
from orchestration.resources import resources

ROOT = Path(__file__).resolve().parents[2]


def test_the_embedded_default_lives_under_the_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VENTURELOOP_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    built = resources({})["mlflow"]
    assert (built.tracking_uri, built.registry_uri, built.experiment) == (None, None, "ventureloop")
    registry = built.registry()
    assert registry.tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert registry.registry_uri == registry.tracking_uri
    assert registry.artifact_location == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert (tmp_path / "mlflow" / "artifacts").is_dir()


def test_a_tracking_server_comes_from_the_environment_by_reference():
    env = {
        "MLFLOW_TRACKING_URI": "https://ml:hunter2@mlflow.internal",
        "MLFLOW_REGISTRY_URI": "https://ml:hunter2@registry.internal",
        "MLFLOW_EXPERIMENT_NAME": "prod",
    }
    built = resources(env)["mlflow"]
    assert built.tracking_uri == dg.EnvVar("MLFLOW_TRACKING_URI")
    assert built.registry_uri == dg.EnvVar("MLFLOW_REGISTRY_URI")
    assert built.experiment == "prod" and "hunter2" not in repr(built)
    registry = MlflowResource(tracking_uri="http://127.0.0.1:5000", experiment="prod").registry()
    assert (registry.tracking_uri, registry.artifact_location) == ("http://127.0.0.1:5000", None)  # the server decides
    assert "hunter2" not in repr(MlflowResource(tracking_uri="https://ml:hunter2@h").registry())


def test_materialization_metadata_carries_the_run_the_version_and_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("VENTURELOOP_HOME", str(tmp_path))
    resource = MlflowResource()
    version = ModelVersion("success_model", 3, "abc123", {"auc": 0.84})
    assert resource.metadata(version, {"bayes_auc": 0.9}) == {
        "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
        "mlflow_run_id": "abc123",
        "mlflow_model": "success_model",
        "mlflow_model_version": 3,
        "mlflow_model_uri": "models:/success_model/3",
        "auc": 0.84,
        "bayes_auc": 0.9,
    }
    server = MlflowResource(tracking_uri="https://ml:hunter2@mlflow.internal")
    assert server.metadata("run9", {"regret": 3}) == {
        "mlflow_tracking_uri": "https://ml:***@mlflow.internal",
        "mlflow_run_id": "run9",
        "regret": 3.0,
    }


def test_mlflow_ui_runs_the_real_server_on_the_embedded_store(tmp_path):
    command = mlflow_ui_command(tmp_path, "127.0.0.1", 5123)
    assert command[:2] == [str(Path(sys.executable).parent / "mlflow"), "server"] and Path(command[0]).is_file()

    def option(name: str) -> str:
        return command[command.index(name) + 1]

    assert option("--backend-store-uri") == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert option("--artifacts-destination") == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert (option("--host"), option("--port"), option("--workers")) == ("127.0.0.1", "5123", "1")
    assert "--serve-artifacts" in command


def test_mlflow_ui_with_a_tracking_server_names_it_and_starts_nothing(tmp_path):
    done = CliRunner().invoke(
        app,
        ["mlflow", "ui"],
        env={"MLFLOW_TRACKING_URI": "https://ml:hunter2@mlflow.internal", "VENTURELOOP_HOME": str(tmp_path)},
    )
    assert done.exit_code == 0, done.output
    assert "the runs and the registry are at https://ml:***@mlflow.internal" in done.output
    assert "hunter2" not in done.output and not (tmp_path / "mlflow").exists()


def test_the_resource_and_registry_do_not_import_mlflow():
    probe = (
        "import sys; from assets.learning.resources import MlflowResource; MlflowResource().registry(); "
        "import orchestration.resources; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mlflow', 'xgboost', 'sklearn')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
