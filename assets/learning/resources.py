"""The MLflow resource of the learning assets: where runs, model versions and the champion alias
live. Embedded default: a SQLite store and local artifacts under $VENTURELOOP_HOME/mlflow;
production: a tracking server (MLFLOW_TRACKING_URI). `mlflow` itself is imported by ml.registry
inside its methods, so this module costs nothing to import."""

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from core.platform.warehouse import default_home
from ml.registry import ModelVersion, Registry, embedded_artifact_root, embedded_tracking_uri, redacted


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking and registry. tracking_uri None means the embedded SQLite store under the
    home; registry_uri None means the tracking store's own registry."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    experiment: str = "ventureloop"

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or embedded_tracking_uri(default_home())

    def artifact_root(self) -> Path | None:
        """Where the embedded store keeps artifacts (None for a server: it decides)."""
        return None if self.tracking_uri else embedded_artifact_root(default_home())

    def registry(self) -> Registry:
        root = self.artifact_root()
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        return Registry(
            self.resolved_tracking_uri(),
            registry_uri=self.registry_uri,
            experiment=self.experiment,
            artifact_location=root.as_uri() if root is not None else None,
        )

    def metadata(self, logged: ModelVersion | str, metrics: Mapping[str, float] | None = None) -> dict:
        """What a materialization records of its MLflow run: the run id, where it is, and for a
        model the version and its metrics (numbers, so the UI plots them across materializations).
        `logged` is log_model's ModelVersion or log_run's run id."""
        found: dict = {"mlflow_tracking_uri": redacted(self.resolved_tracking_uri())}
        if isinstance(logged, ModelVersion):
            found.update(
                mlflow_run_id=logged.run_id,
                mlflow_model=logged.name,
                mlflow_model_version=logged.version,
                mlflow_model_uri=logged.uri,
            )
            metrics = {**logged.metrics, **(metrics or {})}
        else:
            found["mlflow_run_id"] = logged
        found.update({key: float(value) for key, value in (metrics or {}).items()})
        return found
