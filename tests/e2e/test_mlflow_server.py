"""`ventureloop mlflow ui` serves the real MLflow server over the embedded store, and the registry's
production path (a tracking server URI) works against it: register, promote, load over REST, with
artifacts proxied by the server. One server for the module: it takes 10-40 s to start."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.registry import Registry, embedded_tracking_uri

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(seed: int):
    import xgboost

    rows = np.random.default_rng(seed)
    features = rows.random((50, 3))
    labels = (features[:, 1] > 0.5).astype(int)
    return xgboost.XGBClassifier(n_estimators=6, max_depth=2).fit(features, labels), features


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ventureloop mlflow ui` on a new home, started as a user starts it; while it starts, this
    process trains on the same new store (two processes on one fresh SQLite file)."""
    directory = tmp_path_factory.mktemp("mlflow_ui")
    home, log = directory / "home", (directory / "ui.log").open("w")  # a file, not a pipe nobody drains
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VENTURELOOP_"))}
    env["VENTURELOOP_HOME"] = str(home)
    port = _free_port()
    process = subprocess.Popen(
        [str(BIN / "ventureloop"), "mlflow", "ui", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the server starts uvicorn: stop the whole group at the end
    )
    try:
        embedded = Registry(embedded_tracking_uri(home))
        trained = embedded.log_model("embedded_model", _model(0)[0], params={}, metrics={"auc": 0.7})
        deadline = time.monotonic() + 180
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/health")[1].strip() == "OK":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`ventureloop mlflow ui` did not serve:\n{(directory / 'ui.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {
            "url": f"http://127.0.0.1:{port}",
            "home": home,
            "embedded": embedded,
            "trained": trained,
            "printed": (directory / "ui.log").read_text(),
        }
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a user stops it
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def test_the_ui_serves_the_embedded_store(server):
    status, page = _get(server["url"] + "/")
    assert status == 200 and "MLflow" in page
    assert f"MLflow UI: {server['url']} (store {server['home'] / 'mlflow' / 'mlflow.db'})" in server["printed"]
    # What the assets registered in the embedded store is what the server (so the UI) shows.
    remote = Registry(server["url"])
    assert [(v.version, v.run_id) for v in remote.versions("embedded_model")] == [(1, server["trained"].run_id)]
    assert (server["home"] / "mlflow" / "mlflow.db").is_file()


def test_a_tracking_server_registers_promotes_and_loads(server):
    registry = Registry(server["url"], experiment="production")
    first, features = _model(1)
    second, _ = _model(2)
    calibration = pd.DataFrame({"bucket": [0.25, 0.75], "observed": [0.2, 0.8]})
    v1 = registry.log_model(
        "success_model", first, params={"depth": 2}, metrics={"auc": 0.8}, tables={"cal": calibration}
    )
    v2 = registry.log_model("success_model", second, params={"depth": 2}, metrics={"auc": 0.9})
    assert (v1.version, v2.version) == (1, 2)
    assert registry.champion("success_model") is None
    registry.promote("success_model", 2, reason="auc 0.9 > 0.8")
    assert registry.champion("success_model").version == 2
    np.testing.assert_array_equal(
        registry.load("success_model", 2).predict_proba(features), second.predict_proba(features)
    )
    pd.testing.assert_frame_equal(registry.table(v1.run_id, "cal"), calibration)
    # The server proxied the artifacts into the home's artifacts directory (--serve-artifacts).
    artifacts = server["home"] / "mlflow" / "artifacts"
    assert len(list(artifacts.rglob("model.ubj"))) == 3  # the embedded model and these two
    # And the embedded store is the same store: the champion is visible without the server.
    assert server["embedded"].champion("success_model").version == 2
