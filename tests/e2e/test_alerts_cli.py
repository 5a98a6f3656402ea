"""`ventureloop alerts list` and `ventureloop alerts redeliver` as a user types them, in-process
through typer's runner: an alert whose webhook was down is listed undelivered, redelivered to a real
local HTTP receiver once ALERT_WEBHOOK_URL points at one, and then listed delivered."""

import json
import os
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from typer.testing import CliRunner

from core.monitoring.alerts import Alert, Alerter, AlertStore, LogSink, Retry, WebhookSink
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from orchestration.cli import app

PREFIXES = ("WAREHOUSE_", "DAGSTER_", "VENTURELOOP_", "ALERT_")


class Receiver(BaseHTTPRequestHandler):
    bodies: list

    def do_POST(self):
        type(self).bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    handler = type("Handler", (Receiver,), {"bodies": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", handler.bodies
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(env: dict[str, str], args: list[str], expect: int = 0):
    unset = {k: None for k in os.environ if k.startswith(PREFIXES)}
    done = CliRunner().invoke(app, args, env={**unset, **env}, catch_exceptions=False, terminal_width=200)
    assert done.exit_code == expect, f"{args}: exit {done.exit_code}\n{done.stdout}\n{done.stderr}"
    return done


def test_list_then_redeliver_an_alert_whose_webhook_was_down(tmp_path, receiver):
    url, bodies = receiver
    home = tmp_path / "home"
    warehouse = Warehouse(f"duckdb:///{home / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    down = WebhookSink(f"http://127.0.0.1:{closed_port()}/hook", timeout_seconds=1)
    alert = Alert("run_failure:discovery_job", "run_failure", "high", "run of discovery_job failed", "boom", None)
    Alerter(AlertStore(warehouse), [LogSink(), down], timedelta(hours=1), Retry(2, 0.01)).raise_alert(alert)
    env = {"VENTURELOOP_HOME": str(home)}

    listed = _cli(env, ["alerts", "list"]).stdout
    assert "1 alert(s)" in listed and "run of discovery_job failed" in listed
    assert "webhook: undelivered (2 tries)" in listed and "log: delivered" in listed

    # Without the webhook configured here, it cannot be sent: the command says which sink is missing.
    unconfigured = _cli(env, ["alerts", "redeliver"], expect=1).stdout
    assert "1 undelivered to sinks not configured here (webhook)" in unconfigured
    done = _cli({**env, "ALERT_WEBHOOK_URL": url}, ["alerts", "redeliver"]).stdout
    assert "-> webhook: delivered after 1 attempt(s)" in done and "1 redelivered, 0 still undelivered" in done
    assert [b["text"] for b in bodies] == ["[HIGH] run of discovery_job failed\nboom"]
    assert "webhook: delivered" in _cli(env, ["alerts", "list"]).stdout
    assert "nothing to redeliver" in _cli({**env, "ALERT_WEBHOOK_URL": url}, ["alerts", "redeliver"]).stdout


def test_redeliver_to_a_sink_still_down_exits_1(tmp_path):
    home = tmp_path / "home"
    warehouse = Warehouse(f"duckdb:///{home / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    alert = Alert("anomaly:x", "anomaly", "critical", "critical anomaly in refunds_minor", "refunds x6", None)
    Alerter(AlertStore(warehouse), [WebhookSink(dead, 1)], timedelta(hours=1), Retry(1, 0.01)).raise_alert(alert)
    env = {"VENTURELOOP_HOME": str(home), "ALERT_WEBHOOK_URL": dead, "ALERT_RETRY_ATTEMPTS": "1"}
    done = _cli(env, ["alerts", "redeliver"], expect=1).stdout
    assert "-> webhook: undelivered after 1 attempt(s) (ConnectError" in done
    assert "0 redelivered, 1 still undelivered" in done
