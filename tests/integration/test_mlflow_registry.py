"""ml.registry on the real MLflow with a temporary embedded SQLite store: versions, the champion
alias, loading a model back, runs without a model, and the errors a user sees. The tracking
server (production) path is tests/e2e/test_mlflow_server.py."""

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.registry import (
    PREVIOUS_TAG,
    REASON_TAG,
    Registry,
    RegistryError,
    RegistryUnavailable,
    UnknownModel,
    embedded_tracking_uri,
)

ROOT = Path(__file__).resolve().parents[2]


def _model(seed: int):
    import xgboost

    rows = np.random.default_rng(seed)
    features = rows.random((60, 3))
    labels = (features[:, 0] + 0.2 * rows.random(60) > 0.6).astype(int)
    return xgboost.XGBClassifier(n_estimators=8, max_depth=2, random_state=seed).fit(features, labels), features


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlflow_home")


@pytest.fixture(scope="module")
def first_use(home) -> list[str]:
    """The store's first use, from a second process and two threads of this one at once: MLflow
    creates its tables on first use without a lock, and two creators on one new SQLite file
    collide. Returns the three runs they logged."""
    import mlflow  # noqa: F401 - imported before the child is told to go, so both start together

    uri = embedded_tracking_uri(home)
    script = (
        "import sys; from ml.registry import Registry; import mlflow; print('ready', flush=True); "
        "sys.stdin.readline(); "
        f"print(Registry({uri!r}).log_run('child', params={{}}, metrics={{'m': 1}}))"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    runs: list[str] = []
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()[-2000:]
        child.stdin.write("go\n")
        child.stdin.flush()
        threads = [
            threading.Thread(target=lambda i=i: runs.append(Registry(uri).log_run(f"t{i}", params={}, metrics={})))
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err[-2000:]
    return [*runs, out.strip().splitlines()[-1]]


@pytest.fixture(scope="module")
def registry(home, first_use) -> Registry:
    return Registry(embedded_tracking_uri(home), experiment="tests")


@pytest.fixture(scope="module")
def two_versions(registry):
    """Versions 1 and 2 of success_model, neither promoted."""
    first, features = _model(1)
    second, _ = _model(2)
    calibration = pd.DataFrame({"bucket": [0.1, 0.5, 0.9], "observed": [0.05, 0.45, 0.95], "count": [20, 20, 20]})
    v1 = registry.log_model(
        "success_model",
        first,
        params={"n_estimators": 8, "features": ["a", "b", "c"]},
        metrics={"auc": 0.81, "brier": 0.17},
        tables={"calibration": calibration},
        tags={"trained_on": "60 rows"},
    )
    v2 = registry.log_model("success_model", second, params={"n_estimators": 8}, metrics={"auc": 0.86, "brier": 0.15})
    return v1, v2, first, second, features


def test_log_model_registers_consecutive_versions_with_their_run_and_metrics(registry, home, two_versions):
    v1, v2, *_ = two_versions
    assert (v1.name, v1.version, v2.version) == ("success_model", 1, 2)
    assert v1.metrics == {"auc": 0.81, "brier": 0.17} and v2.metrics["auc"] == 0.86
    run = registry.run(v1.run_id)
    assert run["params"]["n_estimators"] == "8" and run["params"]["features"] == '["a", "b", "c"]'
    assert run["metrics"] == {"auc": 0.81, "brier": 0.17}
    assert run["tags"]["trained_on"] == "60 rows"
    assert registry.table(v1.run_id, "calibration")["observed"].tolist() == [0.05, 0.45, 0.95]
    listed = registry.versions("success_model")
    assert [(v.version, v.run_id, v.metrics["auc"]) for v in listed] == [(1, v1.run_id, 0.81), (2, v2.run_id, 0.86)]
    # Everything is under the home: the database and the artifacts, none in the current directory.
    assert (home / "mlflow" / "mlflow.db").is_file()
    assert list((home / "mlflow" / "artifacts" / "tests").rglob("model.ubj"))
    # The requirements are the installed packages, given (not inferred): xgboost-cpu, which is
    # xgboost without the 300 MB CUDA wheel a plain `xgboost` requirement would pull in.
    requirements = next((home / "mlflow" / "artifacts" / "tests").rglob("requirements.txt")).read_text().split()
    assert any(line.startswith("xgboost-cpu==") for line in requirements), requirements
    assert not any(line.startswith("xgboost==") for line in requirements)
    assert not (ROOT / "mlruns").exists()


def test_load_returns_the_estimator_that_was_logged(registry, two_versions):
    *_, second, features = two_versions
    loaded = registry.load("success_model", 2)
    assert type(loaded).__name__ == "XGBClassifier"
    np.testing.assert_array_equal(loaded.predict_proba(features), second.predict_proba(features))
    assert not np.array_equal(registry.load("success_model", 1).predict_proba(features), loaded.predict_proba(features))


def test_promote_moves_the_champion_alias_and_records_why(registry):
    for seed in (3, 4):
        registry.log_model("revenue_model", _model(seed)[0], params={}, metrics={"mae": 10.0 - seed})
    assert registry.champion("revenue_model") is None  # registered, never promoted
    registry.promote("revenue_model", 1, reason="first model")
    assert registry.champion("revenue_model").version == 1
    registry.promote("revenue_model", 2, reason="mae 6.0 < 7.0 on the same holdout")
    champion = registry.champion("revenue_model")
    assert (champion.version, champion.metrics, champion.aliases) == (2, {"mae": 6.0}, ("champion",))
    assert champion.tags[REASON_TAG] == "mae 6.0 < 7.0 on the same holdout"
    assert champion.tags[PREVIOUS_TAG] == "1"
    first = registry.versions("revenue_model")[0]
    assert first.aliases == () and first.tags[PREVIOUS_TAG] == "none"
    with pytest.raises(RegistryError, match="give a reason"):
        registry.promote("revenue_model", 1, reason=" ")
    with pytest.raises(UnknownModel, match=r"'revenue_model' has no version 7 .*versions: \[1, 2\]"):
        registry.promote("revenue_model", 7, reason="typo")
    assert registry.champion("revenue_model").version == 2  # a refused promotion changes nothing


def test_log_run_keeps_params_metrics_and_tables_without_registering(registry):
    posterior = pd.DataFrame({"source": ["hackernews", "github"], "alpha": [3.0, 1.0], "beta": [2.0, 5.0]})
    run_id = registry.log_run(
        "source_bandit",
        params={"prior": "beta(1,1)", "floor": 0.05},
        metrics={"hackernews_mean": 0.6},
        tables={"posterior": posterior},
    )
    run = registry.run(run_id)
    assert run["params"] == {"prior": "beta(1,1)", "floor": "0.05"}
    assert run["metrics"] == {"hackernews_mean": 0.6}
    pd.testing.assert_frame_equal(registry.table(run_id, "posterior"), posterior)
    assert registry.champion("source_bandit") is None
    with pytest.raises(UnknownModel):
        registry.versions("source_bandit")


def test_unknown_names_and_bad_input_say_what_and_where(registry, home, two_versions):
    assert registry.champion("no_such_model") is None
    with pytest.raises(UnknownModel) as error:
        registry.versions("no_such_model")
    message = str(error.value)
    assert "no registered model 'no_such_model'" in message and str(home / "mlflow" / "mlflow.db") in message
    assert "success_model" in message and "train it first" in message
    with pytest.raises(UnknownModel, match="no registered model 'no_such_model'"):
        registry.load("no_such_model", 1)
    with pytest.raises(RegistryError, match="metric 'auc' = 'high' is not a number"):
        registry.log_run("x", params={}, metrics={"auc": "high"})
    with pytest.raises(RegistryError, match="flavor 'torch' is not supported"):
        registry.log_model("x", object(), flavor="torch", params={}, metrics={})
    with pytest.raises(RegistryError, match="table 't' is a list, not a pandas DataFrame"):
        registry.log_run("x", params={}, metrics={}, tables={"t": [1, 2]})
    with pytest.raises(RegistryError, match="name 'a/b'"):
        registry.log_model("a/b", object(), params={}, metrics={})
    assert registry.champion("x") is None  # nothing refused was registered


def test_an_unreachable_server_fails_fast_naming_it():
    with pytest.raises(RegistryUnavailable, match=r"http://127\.0\.0\.1:9 is unreachable .*MLFLOW_TRACKING_URI"):
        Registry("http://127.0.0.1:9").champion("success_model")
    with pytest.raises(RegistryUnavailable, match=r"user:\*\*\*@127\.0\.0\.1:9"):  # the password is not printed
        Registry("http://user:secret@127.0.0.1:9").versions("success_model")


def test_a_second_registry_on_the_same_store_sees_and_adds_versions(registry, home, two_versions):
    other = Registry(embedded_tracking_uri(home), experiment="tests")
    assert [v.version for v in other.versions("success_model")] == [1, 2]
    added = other.log_model("success_model", _model(5)[0], params={}, metrics={"auc": 0.5})
    assert added.version == 3
    assert registry.versions("success_model")[-1].version == 3


def test_a_fresh_store_first_used_by_two_processes_and_two_threads_at_once_keeps_every_run(registry, first_use):
    assert sorted(registry.run(run_id)["tags"]["mlflow.runName"] for run_id in first_use) == ["child", "t0", "t1"]


def test_each_call_restores_mlflows_global_tracking_uri(registry, two_versions):
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    registry.versions("success_model")
    with pytest.raises(RegistryUnavailable):
        Registry("http://127.0.0.1:9").champion("success_model")
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
    assert [v.version for v in registry.versions("success_model")][:2] == [1, 2]  # and this store still answers


def test_an_asset_logs_through_the_resource_and_its_metadata_names_the_run(registry, home, monkeypatch):
    import dagster as dg

    from assets.learning.resources import MlflowResource

    @dg.asset
    def source_posterior(mlflow: MlflowResource) -> dg.MaterializeResult:
        run_id = mlflow.registry().log_run("source_bandit", params={"floor": 0.05}, metrics={"best_mean": 0.6})
        return dg.MaterializeResult(metadata=mlflow.metadata(run_id, {"best_mean": 0.6}))

    monkeypatch.setenv("VENTURELOOP_HOME", str(home))  # the resource's default: the store under the home
    result = dg.materialize([source_posterior], resources={"mlflow": MlflowResource(experiment="tests")})
    assert result.success
    metadata = result.asset_materializations_for_node("source_posterior")[0].metadata
    run_id = metadata["mlflow_run_id"].value
    assert metadata["best_mean"].value == 0.6
    assert registry.run(run_id)["params"] == {"floor": "0.05"}  # in the store this module's registry uses
