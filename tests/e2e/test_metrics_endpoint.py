"""`ventureloop metrics serve` as an operator starts it: a real process on a free port, scraped over
HTTP with httpx and parsed with prometheus_client's own parser, as Prometheus would. The warehouse
is missing at first (ventureloop_warehouse_up 0, the reason on stderr), then appears: the next scrape
reads it. A real Prometheus (Debian's package) scrapes it with the repository's prometheus.yml and
answers every query of the Grafana dashboard. A port already taken is a message and exit 2."""

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from orchestration.cli import app
from tests.unit.test_metrics import BUDGETS, EXPECTED, GRAFANA, dashboard_exprs, samples, small_duckdb_file

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _env(tmp_path: Path, warehouse: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_"))}
    env.update(VENTURELOOP_HOME=str(tmp_path / "home"), WAREHOUSE_URL=f"duckdb:///{warehouse}")
    return env


@pytest.fixture
def built(build_once, tmp_path) -> Path:
    """A copy of the unit tests' hand-built warehouse (built once per test run)."""
    path = tmp_path / "built" / "warehouse.duckdb"
    path.parent.mkdir()
    shutil.copyfile(small_duckdb_file(build_once), path)
    return path


def _serve(tmp_path: Path, warehouse: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "ventureloop"), "metrics", "serve", "--port", str(port), "--cache-seconds", "0"],
        env=_env(tmp_path, warehouse),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _line(process: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            return process.stdout.readline()
        if process.poll() is not None:
            break
    raise AssertionError(f"no line from ventureloop metrics serve (exit {process.poll()}): {process.stderr.read()}")


def test_the_endpoint_reports_a_missing_warehouse_then_reads_it_once_it_exists(tmp_path, built):
    path = tmp_path / "later" / "warehouse.duckdb"
    process = _serve(tmp_path, path, 0)
    try:
        banner = _line(process)
        assert banner.startswith("metrics: http://127.0.0.1:") and f"from duckdb:///{path}" in banner, banner
        url = banner.split()[1]
        with httpx.Client(timeout=10) as client:
            missing = client.get(url)
            assert missing.status_code == 200 and missing.headers["content-type"].startswith("text/plain")
            found = samples(missing.text)
            assert found[("warehouse_up", ())] == 0
            assert not [k for k in found if not k[0].startswith(("warehouse_up", "process_", "python_"))]
            assert not path.parent.exists()  # the endpoint never creates a warehouse

            path.parent.mkdir()
            shutil.copyfile(built, path)  # the warehouse appears (`make demo` ran)
            found = samples(client.get(url).text)
        assert found[("warehouse_up", ())] == 1
        for (name, labels), value in EXPECTED.items():
            assert found.get((name, tuple(sorted(labels)))) == pytest.approx(value), name
        limits = {
            (dict(lab)["scope"], dict(lab)["scope_key"], dict(lab)["period"]): v
            for (n, lab), v in found.items()
            if n == "budget_limit_cents"
        }
        assert limits == {key: limit for key, (limit, _spent) in BUDGETS.items()}
        assert found[("experiment_duration_seconds_count", (("state", "completed"),))] == 2
        assert found[("experiment_roi_bucket", (("le", "+Inf"),))] == 2
        assert found[("process_resident_memory_bytes", ())] > 0  # the exporter's own health, as usual
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0  # SIGTERM is a clean stop
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["metrics_warehouse_unreadable", "metrics_warehouse_readable"]
    assert f"no warehouse at {path}" in events[0]["reason"] and "make demo" in events[0]["reason"]


def test_a_port_in_use_is_a_message_and_exit_2(tmp_path, monkeypatch):
    for name, value in _env(tmp_path, tmp_path / "w.duckdb").items():
        monkeypatch.setenv(name, value)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("VENTURELOOP_METRICS_PORT", str(port))
        monkeypatch.chdir(tmp_path)
        done = CliRunner().invoke(app, ["metrics", "serve"])
    assert done.exit_code == 2, done.output
    assert f"cannot listen on 127.0.0.1:{port}" in done.output and "VENTURELOOP_METRICS_PORT" in done.output
    assert done.exception is None or isinstance(done.exception, SystemExit)
    monkeypatch.setenv("VENTURELOOP_METRICS_PORT", "nine")
    done = CliRunner().invoke(app, ["metrics", "serve"])
    assert done.exit_code == 2 and "VENTURELOOP_METRICS_PORT='nine' is not a number" in done.output


def test_prometheus_scrapes_the_endpoint_and_answers_every_dashboard_query(tmp_path, built):
    """The repository's prometheus.yml (its target pointed here, scraped every second) in a real
    Prometheus, and every PromQL expression of the Grafana dashboard evaluated by it."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Prometheus is required under CI=true (.ci/run installs Debian's prometheus package)")
        pytest.skip("no prometheus binary: `apt-get install prometheus` (Debian) to run this test")
    target, api = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    config = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    [job] = config["scrape_configs"]
    job["scrape_timeout"] = "1s"
    job["static_configs"] = [{"targets": [target]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    serve = _serve(tmp_path, built, int(target.rsplit(":", 1)[1]))
    prometheus = subprocess.Popen(  # both start at once: neither waits for the other
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address={api}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline, up = time.monotonic() + 30, []
        with httpx.Client(base_url=f"http://{api}", timeout=5) as client:

            def query(expr: str) -> list[dict]:
                answer = client.get("/api/v1/query", params={"query": expr}).json()
                assert answer["status"] == "success", (expr, answer)
                return answer["data"]["result"]

            while time.monotonic() < deadline and not up:
                time.sleep(0.3)
                try:
                    up = [r for r in query("ventureloop_warehouse_up") if r["value"][1] == "1"]
                except httpx.TransportError:
                    continue  # Prometheus is still starting
            assert up, f"Prometheus never scraped ventureloop_warehouse_up 1; the endpoint said {serve.poll()}"
            for expr in dashboard_exprs():
                query(expr)  # valid PromQL over what was scraped
            assert query("ventureloop_active_experiments")[0]["value"][1] == "2"
            assert float(query("ventureloop_experiment_success_ratio")[0]["value"][1]) == pytest.approx(2 / 3)
            revenue = {r["metric"]["currency"]: r["value"][1] for r in query(dashboard_exprs()[0])}
            assert revenue == {"USD": "1070", "EUR": "250", "JPY": "5000"}
            roi = query("histogram_quantile(0.5, sum by (le) (ventureloop_experiment_roi_bucket))")
            assert -1 <= float(roi[0]["value"][1]) <= 0.5  # two outcomes: -1 and 0.5
    finally:
        for process in (prometheus, serve):
            process.terminate()
            process.communicate(timeout=15)
