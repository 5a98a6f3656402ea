"""The alert sinks against real local servers: a Slack-compatible webhook receiver (http.server in
a thread) and an SMTP server (aiosmtpd), through AlertsResource as the sensors build it; a sink on a
closed port is retried, recorded undelivered without raising, and redelivered once it is up."""

import json
import socket
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from assets.resources import AlertsResource, WarehouseResource
from core.monitoring.alerts import DELIVERED, UNDELIVERED, Alert

ALERT = Alert(
    dedup_key="check_failure:scored_opportunities:scores_within_unit_interval",
    kind="check_failure",
    severity="high",
    title="blocking check scores_within_unit_interval on scored_opportunities failed",
    body="3 scores above 1.0 in run 1234",
    link="http://127.0.0.1:3000/assets/scored_opportunities?view=checks&checkDetail=scores_within_unit_interval",
)


class Receiver(BaseHTTPRequestHandler):
    """Keeps each POST's content type and JSON body; answers `status` (set per test on a subclass)."""

    received: ClassVar[list] = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    handler = type("Handler", (Receiver,), {"received": [], "status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/T000/B000/secret", handler
    server.shutdown()
    server.server_close()


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content, session.authenticated))
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alerts", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@pytest.fixture
def smtp_server():
    mailbox = Mailbox()
    # A free port chosen here: the Controller connects to its own port to know it is up, so 0 won't do.
    port = closed_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    yield port, mailbox
    controller.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: connecting is refused


def resource(warehouse, **settings) -> AlertsResource:
    return AlertsResource(
        warehouse=WarehouseResource(url=warehouse.url), retry_wait_seconds=0.01, timeout_seconds=2, **settings
    )


@pytest.fixture
def duckdb_warehouse(duckdb_url):
    from core.platform.schema import ensure_schema
    from core.platform.warehouse import Warehouse

    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    return warehouse


def test_the_webhook_receives_slack_text_and_blocks(duckdb_warehouse, webhook):
    url, handler = webhook
    outcome = resource(duckdb_warehouse, webhook_url=url).alerter().raise_alert(ALERT)
    assert {d.sink: d.status for d in outcome.deliveries} == {"log": DELIVERED, "webhook": DELIVERED}
    [(content_type, body)] = handler.received
    assert content_type == "application/json"
    assert body["text"].startswith(f"[HIGH] {ALERT.title}\n{ALERT.body}")
    assert ALERT.link in body["text"]
    header, section, link = body["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": f"[HIGH] {ALERT.title}"}}
    assert section["text"]["text"] == ALERT.body
    assert {"type": "mrkdwn", "text": f"*alert*\n{outcome.alert_id}"} in section["fields"]
    assert link["text"]["text"] == f"<{ALERT.link}|Open in Dagster>"


def test_a_webhook_answering_500_is_undelivered_with_its_status(duckdb_warehouse, webhook):
    url, handler = webhook
    handler.status = 500
    outcome = resource(duckdb_warehouse, webhook_url=url, retry_attempts=2).alerter().raise_alert(ALERT)
    [delivery] = [d for d in outcome.deliveries if d.sink == "webhook"]
    assert delivery.status == UNDELIVERED and delivery.attempts == 2
    assert "HTTP 500" in delivery.error and len(handler.received) == 2


def test_email_arrives_at_the_smtp_server_after_login(duckdb_warehouse, smtp_server):
    port, mailbox = smtp_server
    alerts = resource(
        duckdb_warehouse,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,  # the local server has no certificate; production uses STARTTLS (the default)
        smtp_user="alerts",
        smtp_password="s3cret",
        email_from="ventureloop@example.com",
        email_to="ops@example.com, oncall@example.com",
    )
    outcome = alerts.alerter().raise_alert(ALERT)
    assert {d.sink: d.status for d in outcome.deliveries} == {"log": DELIVERED, "email": DELIVERED}
    [(sender, recipients, content, authenticated)] = mailbox.messages
    assert sender == "ventureloop@example.com" and recipients == ["ops@example.com", "oncall@example.com"]
    assert authenticated
    message = message_from_bytes(content, policy=policy.default)
    assert message["Subject"] == f"[ventureloop high] {ALERT.title}"
    assert message["X-Ventureloop-Alert"] == outcome.alert_id
    text = message.get_content()
    assert ALERT.body in text and f"open: {ALERT.link}" in text and "kind: check_failure" in text


def test_a_wrong_smtp_password_is_undelivered_not_raised(duckdb_warehouse, smtp_server):
    port, mailbox = smtp_server
    alerts = resource(
        duckdb_warehouse,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        smtp_user="alerts",
        smtp_password="wrong",
        email_from="ventureloop@example.com",
        email_to="ops@example.com",
        retry_attempts=2,
    )
    [delivery] = [d for d in alerts.alerter().raise_alert(ALERT).deliveries if d.sink == "email"]
    assert delivery.status == UNDELIVERED and "SMTPAuthenticationError" in delivery.error
    assert mailbox.messages == []


def test_sinks_that_are_down_are_recorded_undelivered_then_redelivered(duckdb_warehouse, webhook, smtp_server):
    url, handler = webhook
    port, mailbox = smtp_server
    down = closed_port()
    email = {"email_from": "ventureloop@example.com", "email_to": "ops@example.com", "smtp_starttls": False}
    broken = resource(
        duckdb_warehouse,
        webhook_url=f"http://127.0.0.1:{down}/hook",
        smtp_host="127.0.0.1",
        smtp_port=down,
        retry_attempts=3,
        **email,
    )
    outcome = broken.alerter().raise_alert(ALERT)  # raises nothing
    by_sink = {d.sink: d for d in outcome.deliveries}
    assert by_sink["log"].status == DELIVERED
    for sink in ("webhook", "email"):
        assert by_sink[sink].status == UNDELIVERED and by_sink[sink].attempts == 3
    assert "ConnectError" in by_sink["webhook"].error and "ConnectionRefusedError" in by_sink["email"].error
    recorded = duckdb_warehouse.query(
        "SELECT sink, status, attempts FROM monitoring.alert_deliveries WHERE sink <> 'log' ORDER BY sink"
    )
    assert recorded.values.tolist() == [["email", UNDELIVERED, 3], ["webhook", UNDELIVERED, 3]]

    # The sinks come back (the same names, now reachable): redelivery sends each once and records it.
    fixed = resource(duckdb_warehouse, webhook_url=url, smtp_host="127.0.0.1", smtp_port=port, **email)
    redelivered = fixed.alerter().redeliver()
    assert sorted((alert_id, d.sink, d.status) for alert_id, d in redelivered) == [
        (outcome.alert_id, "email", DELIVERED),
        (outcome.alert_id, "webhook", DELIVERED),
    ]
    assert len(handler.received) == 1 and len(mailbox.messages) == 1
    assert fixed.alerter().redeliver() == []
