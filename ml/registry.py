"""The MLflow registry as the learning assets use it: a run per training (params, metrics, tables),
a registered version per model, and the `champion` alias that scoring and allocation read.

Framework-free and cheap to import: `mlflow` (3.8 s) and the model libraries load inside the
methods. One Registry talks to one tracking URI: the embedded SQLite store under
$VENTURELOOP_HOME/mlflow (see `embedded_tracking_uri`) or a tracking server (http://...).

MLflow's fluent API (`mlflow.start_run`, `mlflow.xgboost.log_model`) reads a process-global
tracking URI, so every call here sets this Registry's URIs for its duration under one process
lock and restores the previous ones after: two Registries on different stores in one process
never write to each other's."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # pandas costs 1.6 s: the code location imports this module, a run reads tables
    import pandas as pd

CHAMPION = "champion"
FLAVORS = ("xgboost", "sklearn")
# Version tags written by log_model and promote.
FLAVOR_TAG = "ventureloop.flavor"
REASON_TAG = "ventureloop.promotion_reason"
PREVIOUS_TAG = "ventureloop.previous_champion"
PROMOTED_AT_TAG = "ventureloop.promoted_at"

_PROCESS_LOCK = threading.RLock()
# Set (unless already set) before mlflow is imported: the embedded default runs offline, so no
# usage telemetry to mlflow.org, and no download progress bars in the run logs.
MLFLOW_DEFAULTS = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


class RegistryError(RuntimeError):
    """The registry refused or could not do what was asked; the message says where and what to do."""


class RegistryUnavailable(RegistryError, ConnectionError):
    """The tracking server did not answer."""


class UnknownModel(RegistryError, LookupError):
    """No registered model (or no such version of it) under that name."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def embedded_tracking_uri(home: Path) -> str:
    """sqlite:////abs/home/mlflow/mlflow.db: the embedded store of a VENTURELOOP_HOME."""
    return f"sqlite:///{(Path(home).resolve() / 'mlflow' / 'mlflow.db')}"


def embedded_artifact_root(home: Path) -> Path:
    return Path(home).resolve() / "mlflow" / "artifacts"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (None for any other store)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def redacted(uri: str) -> str:
    """The URI without a password, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Registry:
    """Runs, registered versions and the champion alias in one MLflow tracking store.

    `artifact_location` is where a new experiment keeps its artifacts; None means, for a SQLite
    store, the `artifacts` directory beside the database file (never MLflow's ./mlruns in the
    current directory), and for a server, the server's own default artifact root."""

    def __init__(
        self,
        tracking_uri: str,
        registry_uri: str | None = None,
        experiment: str = "ventureloop",
        *,
        artifact_location: str | None = None,
    ):
        if not tracking_uri:
            raise RegistryError("no MLflow tracking URI: give sqlite:///path/mlflow.db or http://host:port")
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.experiment = experiment
        database = sqlite_path(tracking_uri)
        if artifact_location is None and database is not None:
            artifact_location = (database.parent / "artifacts").resolve().as_uri()
        self.artifact_location = artifact_location
        self._client_instance: Any = None
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"Registry({redacted(self.tracking_uri)!r}, experiment={self.experiment!r})"

    # --- writing -----------------------------------------------------------------------------

    def log_model(
        self,
        name: str,
        model: Any,
        *,
        flavor: str = "xgboost",
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tables: Mapping[str, pd.DataFrame] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """A run with the params, metrics and tables, and the model logged in it and registered
        as the next version of `name`. The champion alias does not move: see `promote`."""
        if flavor not in FLAVORS:
            raise RegistryError(f"log_model({name!r}): flavor {flavor!r} is not supported: use one of {FLAVORS}")
        _check_name(name)
        clean_metrics = _metrics(metrics, name)
        _check_tables(tables, name)
        with self._scope() as mlflow:
            loader = _flavor_module(flavor)
            with self._started(mlflow, name, tags) as run, _quiet("mlflow.utils.environment"):
                self._log_contents(mlflow, run.info.run_id, params, {}, tables)
                # (quiet: without pip in a uv environment MLflow warns on every model that it
                # cannot find pip's version for conda.yaml; the pip requirements are exact.)
                info = loader.log_model(
                    model,
                    name="model",
                    registered_model_name=name,
                    # Inferring requirements loads the model in a subprocess (7 s measured here);
                    # the versions installed now are what the model needs.
                    pip_requirements=_requirements(flavor),
                )
                # After the model, with its id: MLflow 3 then shows them on the run and on the
                # logged model's page both.
                if clean_metrics:
                    mlflow.log_metrics(clean_metrics, model_id=info.model_id)
            version = int(info.registered_model_version)
            client = self._client()
            client.set_model_version_tag(name, str(version), FLAVOR_TAG, flavor)
            for key, value in _strings(tags).items():
                client.set_model_version_tag(name, str(version), key, value)
        return ModelVersion(name, version, run.info.run_id, clean_metrics, tags={FLAVOR_TAG: flavor, **_strings(tags)})

    def log_run(
        self,
        name: str,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tables: Mapping[str, pd.DataFrame] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> str:
        """A run without a registered model (the bandit's posterior, LinUCB, strategy weights);
        returns its run id."""
        _check_name(name)
        clean_metrics = _metrics(metrics, name)
        _check_tables(tables, name)
        with self._scope() as mlflow, self._started(mlflow, name, tags) as run:
            self._log_contents(mlflow, run.info.run_id, params, clean_metrics, tables)
        return run.info.run_id

    def promote(self, name: str, version: int, *, reason: str) -> None:
        """Point the `champion` alias of `name` at `version`, tagging the version with why and
        which version was champion before (`none` if none was)."""
        if not reason or not reason.strip():
            raise RegistryError(f"promote({name!r}, {version}): give a reason (it is kept on the version)")
        with self._scope():
            previous = self.champion(name)
            self._version(name, version)  # an unknown model or version fails here, before any write
            client = self._client()
            client.set_registered_model_alias(name, CHAMPION, str(version))
            tags = {
                REASON_TAG: reason,
                PREVIOUS_TAG: str(previous.version) if previous else "none",
                PROMOTED_AT_TAG: datetime.now(UTC).isoformat(timespec="seconds"),
            }
            for key, value in tags.items():
                client.set_model_version_tag(name, str(version), key, value)

    # --- reading -----------------------------------------------------------------------------

    def champion(self, name: str) -> ModelVersion | None:
        """The version the `champion` alias points at; None if there is none, or no model `name`."""
        with self._scope():
            try:
                registered = self._registered(name)
            except UnknownModel:
                return None
            version = (registered.aliases or {}).get(CHAMPION)
            return None if version is None else self._version(name, int(version))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, oldest first."""
        with self._scope():
            self._registered(name)
            found = self._client().search_model_versions(filter_string=f"name = '{_quoted(name)}'")
            return sorted((self._described(item) for item in found), key=lambda v: v.version)

    def load(self, name: str, version: int) -> Any:
        """The model object of a version, as it was logged (an xgboost sklearn estimator)."""
        described = self._version(name, version)
        flavor = described.tags.get(FLAVOR_TAG, "xgboost")
        with self._scope():
            return _flavor_module(flavor).load_model(described.uri)

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's params, metrics and tags, as MLflow keeps them (params and tags are strings)."""
        with self._scope():
            from mlflow.exceptions import MlflowException

            try:
                data = self._client().get_run(run_id).data
            except MlflowException as error:
                where = redacted(self.tracking_uri)
                raise RegistryError(f"run {run_id!r} is not in {where}: {error.message}") from None
        return {"params": dict(data.params), "metrics": dict(data.metrics), "tags": dict(data.tags)}

    def table(self, run_id: str, table: str) -> pd.DataFrame:
        """A table logged with a run (from its CSV artifact `tables/<table>.csv`)."""
        with self._scope() as mlflow:
            from mlflow.exceptions import MlflowException

            try:
                text = mlflow.artifacts.load_text(f"runs:/{run_id}/tables/{table}.csv")
            except MlflowException as error:
                raise RegistryError(
                    f"run {run_id!r} in {redacted(self.tracking_uri)} has no table {table!r}: {error.message}"
                ) from None
        import pandas as pd

        return pd.read_csv(io.StringIO(text))

    # --- internals ---------------------------------------------------------------------------

    def _started(self, mlflow: Any, name: str, tags: Mapping[str, Any] | None) -> Any:
        return mlflow.start_run(experiment_id=self._experiment(), run_name=name, tags=_strings(tags))

    def _log_contents(self, mlflow: Any, run_id: str, params, metrics, tables) -> None:
        if params:
            mlflow.log_params({key: _param(value) for key, value in params.items()})
        if metrics:
            mlflow.log_metrics(metrics)
        for key, frame in (tables or {}).items():
            # CSV for people and pandas; MLflow's JSON table format for the UI's table views.
            mlflow.log_text(frame.to_csv(index=False), f"tables/{key}.csv")
            mlflow.log_table(frame.reset_index(drop=True), artifact_file=f"tables/{key}.json")

    @contextlib.contextmanager
    def _scope(self) -> Iterator[Any]:
        """This Registry's URIs as MLflow's process-global ones, for the duration of one call."""
        for variable, value in MLFLOW_DEFAULTS.items():
            os.environ.setdefault(variable, value)
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        with _PROCESS_LOCK:
            saved = (
                tracking_utils._tracking_uri,
                registry_utils._registry_uri,
                os.environ.get("MLFLOW_TRACKING_URI"),
                os.environ.get("MLFLOW_REGISTRY_URI"),
            )
            try:
                mlflow.set_tracking_uri(self.tracking_uri)
                mlflow.set_registry_uri(self.registry_uri)
                self._client()
                yield mlflow
            finally:
                tracking_utils._tracking_uri, registry_utils._registry_uri = saved[0], saved[1]
                for variable, value in zip(("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"), saved[2:], strict=True):
                    if value is None:
                        os.environ.pop(variable, None)
                    else:
                        os.environ[variable] = value

    def _client(self) -> Any:
        if self._client_instance is not None:
            return self._client_instance
        from mlflow import MlflowClient

        self._check_reachable()
        with _store_lock(self.tracking_uri):
            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
            self._experiment_id = self._ensure_experiment(client)
            # Touch the registry store too: on a fresh SQLite file both stores create their tables.
            client.search_registered_models(max_results=1)
        self._client_instance = client
        return client

    def experiment_id(self) -> str:
        """The experiment's id, creating the store and the experiment on first use."""
        with self._scope():
            assert self._experiment_id is not None
            return self._experiment_id

    def _experiment(self) -> str:
        return self.experiment_id()

    def _ensure_experiment(self, client: Any) -> str:
        from mlflow.exceptions import MlflowException

        try:
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    return client.create_experiment(self.experiment, artifact_location=self._artifact_location())
                except MlflowException as error:  # created meanwhile by another process on a server
                    if error.error_code != "RESOURCE_ALREADY_EXISTS":
                        raise
                    found = client.get_experiment_by_name(self.experiment)
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        except MlflowException as error:
            raise RegistryError(
                f"MLflow at {redacted(self.tracking_uri)}: cannot open experiment {self.experiment!r}: {error.message}"
            ) from None

    def _artifact_location(self) -> str | None:
        if self.artifact_location is None:
            return None
        parts = urlsplit(self.artifact_location)
        if parts.scheme in ("", "file"):
            root = Path(parts.path if parts.scheme else self.artifact_location)
            folder = root / re.sub(r"[^A-Za-z0-9_.-]", "_", self.experiment)
            folder.mkdir(parents=True, exist_ok=True)
            return folder.resolve().as_uri()
        return f"{self.artifact_location.rstrip('/')}/{self.experiment}"

    def _check_reachable(self) -> None:
        """Fail in seconds, naming the server, instead of MLflow's minutes of retries."""
        parts = urlsplit(self.tracking_uri)
        if parts.scheme not in ("http", "https"):
            return
        health = f"{self.tracking_uri.rstrip('/')}/health"
        try:
            with urllib.request.urlopen(health, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answered: a proxy in front may not route /health, the API calls will tell
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RegistryUnavailable(
                f"MLflow tracking server {redacted(self.tracking_uri)} is unreachable ({reason}): start it "
                "(`mlflow server --backend-store-uri ...`), fix MLFLOW_TRACKING_URI, or unset it to use the "
                "embedded store under $VENTURELOOP_HOME/mlflow"
            ) from None

    def _registered(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self._client().get_registered_model(name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                known = sorted(model.name for model in self._client().search_registered_models(max_results=50))
                raise UnknownModel(
                    f"no registered model {name!r} in {redacted(self.registry_uri)} "
                    f"(registered: {', '.join(known) or 'none'}): train it first (materialize its asset), "
                    "or check MLFLOW_TRACKING_URI points at the store it was registered in"
                ) from None
            raise

    def _version(self, name: str, version: int) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        with self._scope():
            self._registered(name)
            try:
                found = self._client().get_model_version(name, str(int(version)))
            except MlflowException as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                known = [v.version for v in self.versions(name)]
                raise UnknownModel(
                    f"model {name!r} has no version {version} in {redacted(self.registry_uri)} (versions: {known})"
                ) from None
            return self._described(found)

    def _described(self, found: Any) -> ModelVersion:
        metrics = dict(self._client().get_run(found.run_id).data.metrics) if found.run_id else {}
        return ModelVersion(
            name=found.name,
            version=int(found.version),
            run_id=found.run_id,
            metrics=metrics,
            tags=dict(found.tags or {}),
            aliases=tuple(found.aliases or ()),
        )


@contextlib.contextmanager
def _quiet(logger: str) -> Iterator[None]:
    import logging

    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialize first use of a SQLite store across threads and processes: MLflow creates its
    tables on first use without a lock, and two creators on one fresh file collide."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; first use there is not guarded
        yield
        return
    with open(database.with_name(database.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _flavor_module(flavor: str) -> Any:
    if flavor == "xgboost":
        import mlflow.xgboost

        return mlflow.xgboost
    if flavor == "sklearn":
        import mlflow.sklearn

        return mlflow.sklearn
    raise RegistryError(f"flavor {flavor!r} is not supported: use one of {FLAVORS}")


def _requirements(flavor: str) -> list[str]:
    wanted = {"xgboost": ("xgboost-cpu", "xgboost", "scikit-learn"), "sklearn": ("scikit-learn",)}[flavor]
    found: dict[str, str] = {}
    for package in wanted:
        key = "xgboost" if package.startswith("xgboost") else package
        if key in found:
            continue
        try:
            found[key] = f"{package}=={metadata.version(package)}"
        except metadata.PackageNotFoundError:
            continue
    return sorted(found.values())


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or "/" in name or "'" in name:
        raise RegistryError(f"name {name!r}: use a non-empty name without '/' or quotes (e.g. success_model)")


def _quoted(name: str) -> str:
    return name.replace("'", "\\'")


def _metrics(metrics: Mapping[str, Any], name: str) -> dict[str, float]:
    clean = {}
    for key, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RegistryError(f"{name}: metric {key!r} = {value!r} is not a number") from None
        clean[str(key)] = number  # NaN is kept (MLflow stores it): an undefined metric compares false
    return clean


def _check_tables(tables: Mapping[str, Any] | None, name: str) -> None:
    for key, frame in (tables or {}).items():
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise RegistryError(f"{name}: table {key!r} is a {type(frame).__name__}, not a pandas DataFrame")
        _check_name(key)


def _param(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _strings(tags: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(key): value if isinstance(value, str) else _param(value) for key, value in (tags or {}).items()}
