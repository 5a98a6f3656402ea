"""`ventureloop metrics serve` as an operator starts it: a real process on a free port, scraped over
HTTP with httpx and parsed with prometheus_client's own parser, as Prometheus would. The warehouse
is missing at first (ventureloop_warehouse_up 0, the reason on stderr), then appears: the next scrape
reads it. A port already taken is a message and exit 2, not a traceback."""

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.platform.warehouse import Warehouse
from tests.unit.test_metrics import BUDGETS, EXPECTED, build_small_warehouse, samples

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def _env(tmp_path: Path, warehouse: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_"))}
    env.update(VENTURELOOP_HOME=str(tmp_path / "home"), WAREHOUSE_URL=f"duckdb:///{warehouse}")
    return env


def _line(process: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            return process.stdout.readline()
        if process.poll() is not None:
            break
    raise AssertionError(f"no line from ventureloop metrics serve (exit {process.poll()}): {process.stderr.read()}")


def test_the_endpoint_reports_a_missing_warehouse_then_reads_it_once_it_exists(tmp_path):
    path = tmp_path / "later" / "warehouse.duckdb"
    process = subprocess.Popen(
        [str(BIN / "ventureloop"), "metrics", "serve", "--port", "0", "--cache-seconds", "0"],
        env=_env(tmp_path, path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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

            build_small_warehouse(Warehouse(f"duckdb:///{path}"))
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


def test_a_port_in_use_is_a_message_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(BIN / "ventureloop"), "metrics", "serve"],
            env={**_env(tmp_path, tmp_path / "w.duckdb"), "VENTURELOOP_METRICS_PORT": str(port)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "VENTURELOOP_METRICS_PORT" in done.stderr
    assert "Traceback" not in done.stderr
