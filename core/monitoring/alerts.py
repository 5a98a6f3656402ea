"""Alerts: what went wrong, how bad, where to look, and who was told.

Framework-free. An `Alert` is raised through an `Alerter`, which

1. deduplicates it on its dedup_key in monitoring.alerts: a repeat within the dedup window adds one
   to the first alert's occurrences and last_seen_at, and tells nobody again;
2. hands a new alert to every sink (the log sink always; a Slack-compatible webhook and SMTP email
   when configured), each retried with exponential backoff (tenacity);
3. records each sink's outcome in monitoring.alert_deliveries: delivered, or undelivered with the
   last error after the retries. `redeliver()` (`ventureloop alerts redeliver`) tries the
   undelivered ones again.

A sink that is down never raises into the caller (a sensor, an asset): the pipeline's own result
must not depend on Slack. Neither does a warehouse that cannot record the alert: the sinks are
still told, and the log line says the alert was not recorded.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from core.platform.warehouse import run_sql

if TYPE_CHECKING:
    from email.message import EmailMessage

    from core.platform.warehouse import Warehouse

SEVERITIES = ("low", "medium", "high", "critical")
KINDS = ("run_failure", "check_failure", "anomaly", "slo_burn")
DELIVERED, UNDELIVERED = "delivered", "undelivered"
DEFAULT_UI_URL = "http://127.0.0.1:3000"  # `make dev` serves the UI there (DAGSTER_UI_URL overrides)
ALERTS_TABLE = "monitoring.alerts"
DELIVERIES_TABLE = "monitoring.alert_deliveries"
# Slack refuses a section block whose text is over 3,000 characters: the body is cut before that.
BLOCK_TEXT_LIMIT = 2900

log = logging.getLogger("ventureloop.alerts")


class AlertError(ValueError):
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Alert:
    dedup_key: str
    kind: str
    severity: str
    title: str
    body: str
    link: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AlertError(f"alert kind {self.kind!r}: use one of {', '.join(KINDS)}")
        if self.severity not in SEVERITIES:
            raise AlertError(f"alert severity {self.severity!r}: use one of {', '.join(SEVERITIES)}")
        if not self.dedup_key:
            raise AlertError("an alert needs a dedup_key (what makes two alerts the same problem)")


# -- links into the Dagster UI --------------------------------------------------------------------


def run_link(base: str, run_id: str) -> str:
    return f"{base.rstrip('/')}/runs/{run_id}"


def asset_link(base: str, asset_path: Sequence[str]) -> str:
    return f"{base.rstrip('/')}/assets/{'/'.join(quote(part, safe='') for part in asset_path)}"


def check_link(base: str, asset_path: Sequence[str], check_name: str) -> str:
    return f"{asset_link(base, asset_path)}?view=checks&checkDetail={quote(check_name, safe='')}"


# -- sinks ----------------------------------------------------------------------------------------


class Sink(Protocol):
    name: str

    def send(self, alert: Alert, alert_id: str, occurrences: int) -> None:
        """Deliver or raise."""


def _payload(alert: Alert, alert_id: str, occurrences: int) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "dedup_key": alert.dedup_key,
        "kind": alert.kind,
        "severity": alert.severity,
        "title": alert.title,
        "body": alert.body,
        "link": alert.link,
        "occurrences": occurrences,
    }


@dataclass
class LogSink:
    """One structured line per alert on the `ventureloop.alerts` logger (WARNING, ERROR for high
    and critical): the default, and the one a machine without Slack or SMTP relies on."""

    name: str = "log"
    logger: logging.Logger = field(default_factory=lambda: log)

    def send(self, alert: Alert, alert_id: str, occurrences: int) -> None:
        level = logging.ERROR if alert.severity in ("high", "critical") else logging.WARNING
        self.logger.log(level, "alert %s", json.dumps(_payload(alert, alert_id, occurrences), sort_keys=True))


@dataclass
class WebhookSink:
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat, Discord's /slack URL):
    POST JSON with `text` (the fallback every one of them shows) and Block Kit `blocks`."""

    url: str
    timeout_seconds: float = 5.0
    name: str = "webhook"

    def message(self, alert: Alert, alert_id: str, occurrences: int) -> dict[str, Any]:
        headline = f"[{alert.severity.upper()}] {alert.title}"
        text = f"{headline}\n{alert.body}" + (f"\n{alert.link}" if alert.link else "")
        fields = [
            {"type": "mrkdwn", "text": f"*kind*\n{alert.kind}"},
            {"type": "mrkdwn", "text": f"*severity*\n{alert.severity}"},
            {"type": "mrkdwn", "text": f"*alert*\n{alert_id}"},
            {"type": "mrkdwn", "text": f"*occurrences*\n{occurrences}"},
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.body[:BLOCK_TEXT_LIMIT]}, "fields": fields},
        ]
        if alert.link:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{alert.link}|Open in Dagster>"}})
        return {"text": text, "blocks": blocks}

    def send(self, alert: Alert, alert_id: str, occurrences: int) -> None:
        import httpx  # only a process that sends to a webhook pays for it

        response = httpx.post(self.url, json=self.message(alert, alert_id, occurrences), timeout=self.timeout_seconds)
        if response.status_code >= 300:
            raise AlertError(f"webhook answered HTTP {response.status_code}: {response.text[:200]}")


@dataclass
class EmailSink:
    """SMTP: STARTTLS when `starttls` (port 587), login when a user is given."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    user: str | None = None
    password: str | None = None
    starttls: bool = True
    timeout_seconds: float = 10.0
    name: str = "email"

    def message(self, alert: Alert, alert_id: str, occurrences: int) -> EmailMessage:
        from email.message import EmailMessage  # smtplib, ssl and email: for a process that mails only

        message = EmailMessage()
        message["Subject"] = f"[ventureloop {alert.severity}] {alert.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["X-Ventureloop-Alert"] = alert_id
        lines = [
            alert.body,
            "",
            f"kind: {alert.kind}",
            f"severity: {alert.severity}",
            f"occurrences: {occurrences}",
            f"alert: {alert_id} (dedup key {alert.dedup_key})",
        ]
        if alert.link:
            lines.append(f"open: {alert.link}")
        message.set_content("\n".join(lines))
        return message

    def send(self, alert: Alert, alert_id: str, occurrences: int) -> None:
        import smtplib
        import ssl

        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_seconds) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(self.message(alert, alert_id, occurrences))


# -- the store ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    alert_id: str
    new: bool
    occurrences: int


class AlertStore:
    """monitoring.alerts and monitoring.alert_deliveries on the warehouse (created by ensure_schema)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def ensure_tables(self) -> None:
        """Create the two tables if missing. Not ensure_schema: a sensor calls this on every tick,
        and its ALTER TABLEs would queue for exclusive locks behind running transactions."""
        from core.platform.schema import MONITORING_DDL

        if self.warehouse.table_exists(ALERTS_TABLE) and self.warehouse.table_exists(DELIVERIES_TABLE):
            return
        self.warehouse.execute_script(
            ["CREATE SCHEMA IF NOT EXISTS monitoring", *[s for s in MONITORING_DDL if "monitoring.alert" in s]]
        )

    def record(self, alert: Alert, now: datetime, dedup_window: timedelta) -> Recorded:
        with self.warehouse.connect() as conn:
            row = run_sql(
                conn,
                f"SELECT alert_id, occurrences FROM {ALERTS_TABLE} WHERE dedup_key = %s AND last_seen_at >= %s "
                "ORDER BY last_seen_at DESC LIMIT 1",
                [alert.dedup_key, now - dedup_window],
            ).fetchone()
            if row is not None:
                run_sql(
                    conn,
                    f"UPDATE {ALERTS_TABLE} SET occurrences = occurrences + 1, last_seen_at = %s WHERE alert_id = %s",
                    [now, row[0]],
                )
                return Recorded(alert_id=row[0], new=False, occurrences=int(row[1]) + 1)
            alert_id = str(uuid.uuid4())
            run_sql(
                conn,
                f"INSERT INTO {ALERTS_TABLE} (alert_id, dedup_key, kind, severity, title, body, link, first_seen_at, "
                "last_seen_at, occurrences) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 1)",
                [alert_id, alert.dedup_key, alert.kind, alert.severity, alert.title, alert.body, alert.link, now, now],
            )
            return Recorded(alert_id=alert_id, new=True, occurrences=1)

    def record_delivery(
        self, alert_id: str, sink: str, status: str, attempts: int, error: str | None, at: datetime
    ) -> None:
        self.warehouse.execute(
            f"INSERT INTO {DELIVERIES_TABLE} (alert_id, sink, status, attempts, error, attempted_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [alert_id, sink, status, attempts, error, at],
        )

    def undelivered(self) -> list[tuple[Alert, str, str, int]]:
        """(alert, alert_id, sink, occurrences) whose latest delivery attempt to that sink failed."""
        frame = self.warehouse.query(
            f"SELECT a.alert_id, a.dedup_key, a.kind, a.severity, a.title, a.body, a.link, a.occurrences, d.sink "
            f"FROM {DELIVERIES_TABLE} d JOIN {ALERTS_TABLE} a ON a.alert_id = d.alert_id "
            f"WHERE d.status = %s AND NOT EXISTS (SELECT 1 FROM {DELIVERIES_TABLE} later "
            "  WHERE later.alert_id = d.alert_id AND later.sink = d.sink AND later.attempted_at > d.attempted_at) "
            "ORDER BY a.first_seen_at, d.sink",
            [UNDELIVERED],
        )
        return [
            (
                Alert(r.dedup_key, r.kind, r.severity, r.title, r.body, None if _missing(r.link) else r.link),
                r.alert_id,
                r.sink,
                int(r.occurrences),
            )
            for r in frame.itertuples()
        ]

    def listing(self, limit: int = 50):
        """The latest alerts with their latest delivery status per sink ("webhook: undelivered")."""
        alerts = self.warehouse.query(
            f"SELECT alert_id, kind, severity, title, link, first_seen_at, last_seen_at, occurrences "
            f"FROM {ALERTS_TABLE} ORDER BY last_seen_at DESC LIMIT {int(limit)}"
        )
        deliveries = self.warehouse.query(
            f"SELECT d.alert_id, d.sink, d.status, d.attempts, d.error FROM {DELIVERIES_TABLE} d "
            f"WHERE NOT EXISTS (SELECT 1 FROM {DELIVERIES_TABLE} later WHERE later.alert_id = d.alert_id "
            "  AND later.sink = d.sink AND later.attempted_at > d.attempted_at) ORDER BY d.sink"
        )
        return alerts, deliveries


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


# -- the alerter ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    attempts: int = 3
    first_wait_seconds: float = 0.5
    max_wait_seconds: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise AlertError(f"alert retries: attempts {self.attempts} must be at least 1")


@dataclass(frozen=True)
class Delivery:
    sink: str
    status: str
    attempts: int
    error: str | None


@dataclass(frozen=True)
class Outcome:
    alert_id: str
    new: bool
    occurrences: int
    recorded: bool
    deliveries: tuple[Delivery, ...]


@dataclass
class Alerter:
    store: AlertStore | None
    sinks: Sequence[Sink]
    dedup_window: timedelta = timedelta(minutes=60)
    retry: Retry = field(default_factory=Retry)
    clock: Callable[[], datetime] = utc_now
    sleep: Callable[[float], None] | None = None  # tenacity's own sleep unless a test gives one

    def raise_alert(self, alert: Alert) -> Outcome:
        """Deduplicate, deliver a new alert to every sink, record how each went. Never raises for a
        sink or the store."""
        now = self.clock()
        recorded = None
        if self.store is not None:
            try:
                recorded = self.store.record(alert, now, self.dedup_window)
            except Exception as error:  # noqa: BLE001 - an unrecordable alert is still delivered
                log.warning(
                    "alert %s could not be recorded in %s (%s: %s): delivering it without deduplication",
                    alert.dedup_key,
                    ALERTS_TABLE,
                    type(error).__name__,
                    error,
                )
        if recorded is not None and not recorded.new:
            return Outcome(recorded.alert_id, False, recorded.occurrences, True, ())
        alert_id = recorded.alert_id if recorded else str(uuid.uuid4())
        deliveries = tuple(self._deliver(sink, alert, alert_id, 1, record=recorded is not None) for sink in self.sinks)
        return Outcome(alert_id, True, 1, recorded is not None, deliveries)

    def redeliver(self) -> list[tuple[str, Delivery]]:
        """Try every undelivered (alert, sink) again on the sink of that name, if it is configured;
        (alert_id, delivery) for each attempt."""
        if self.store is None:
            raise AlertError("redelivery needs the alert store (the warehouse)")
        by_name = {sink.name: sink for sink in self.sinks}
        done = []
        for alert, alert_id, sink_name, occurrences in self.store.undelivered():
            sink = by_name.get(sink_name)
            if sink is None:
                log.warning("alert %s: sink %s is not configured here, not redelivered", alert_id, sink_name)
                continue
            done.append((alert_id, self._deliver(sink, alert, alert_id, occurrences, record=True)))
        return done

    def _deliver(self, sink: Sink, alert: Alert, alert_id: str, occurrences: int, *, record: bool) -> Delivery:
        from tenacity import RetryError, Retrying, stop_after_attempt, wait_exponential

        options: dict[str, Any] = {
            "stop": stop_after_attempt(self.retry.attempts),
            "wait": wait_exponential(multiplier=self.retry.first_wait_seconds, max=self.retry.max_wait_seconds),
        }
        if self.sleep is not None:
            options["sleep"] = self.sleep
        attempts, error = 0, None
        try:
            for attempt in Retrying(**options):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    sink.send(alert, alert_id, occurrences)
            delivery = Delivery(sink.name, DELIVERED, attempts, None)
        except RetryError as failed:
            cause = failed.last_attempt.exception()
            error = f"{type(cause).__name__}: {cause}"
            delivery = Delivery(sink.name, UNDELIVERED, attempts, error)
            log.warning("alert %s undelivered to %s after %d attempt(s): %s", alert_id, sink.name, attempts, error)
        except Exception as unexpected:  # noqa: BLE001 - nothing a sink does may reach the pipeline
            delivery = Delivery(sink.name, UNDELIVERED, attempts, f"{type(unexpected).__name__}: {unexpected}")
        if record and self.store is not None:
            try:
                self.store.record_delivery(
                    alert_id, sink.name, delivery.status, delivery.attempts, delivery.error, self.clock()
                )
            except Exception as failed_record:  # noqa: BLE001
                log.warning("alert %s: the %s delivery could not be recorded: %s", alert_id, sink.name, failed_record)
        return delivery
