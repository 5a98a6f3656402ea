"""Run one source: fetch (live or from snapshots), keep the raw items, quarantine what is bad.

One source failing never touches another: every outcome, including an unreachable API or
missing credentials, comes back as a `DiscoveryResult` rather than an exception."""

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd

from core.discovery.sources.base import TOO_DEEP, Source
from core.platform import quarantine
from core.platform.http import RecordingTransport, SnapshotTransport, SourceClient, SourceHTTPError
from core.platform.quarantine import Problem
from core.platform.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class DiscoveryResult:
    source: str
    family: str
    mode: str
    status: str  # "ok" | "failed" | "skipped"
    message: str
    responses: int = 0
    items: int = 0
    quarantined: int = 0
    requests: int = 0

    def as_metadata(self) -> dict:
        return asdict(self)


def transport_for(source: Source, mode: str, record_to: Path | None = None) -> httpx.BaseTransport | None:
    if record_to is not None:
        return RecordingTransport(record_to)
    if mode == "snapshot":
        return SnapshotTransport(source.snapshot_dir)
    return None  # httpx's default: the live network


def discover(
    source: Source,
    warehouse: Warehouse,
    mode: str,
    run_id: str | None = None,
    transport: httpx.BaseTransport | None = None,
    client: SourceClient | None = None,
) -> DiscoveryResult:
    result = DiscoveryResult(source.name, source.family, mode, "ok", "")
    if mode == "live" and transport is None and (missing := source.missing_credentials()):
        result.status = "skipped"
        result.message = f"skipped: set {', '.join(missing)} to fetch {source.name} live (see .env.example)"
        log.warning(json.dumps({"event": "source_skipped", "source": source.name, "missing": missing}))
        return result

    client = client or SourceClient(source.name, transport or transport_for(source, mode), rate_limit=source.rate_limit)
    responses, records, problems = [], [], []
    try:
        for page in source.fetch(client):
            response_id = str(uuid.uuid4())
            fetched_at = datetime.fromtimestamp(page.fetched.fetched_at, tz=UTC)
            responses.append(
                {
                    "response_id": response_id,
                    "source": source.name,
                    "mode": mode,
                    "request_url": page.fetched.url,
                    "status_code": page.fetched.status_code,
                    "content_type": page.fetched.content_type,
                    "body_bytes": len(page.fetched.body),
                    "fetched_at": fetched_at,
                    "run_id": run_id,
                }
            )
            for item in page.items:
                try:
                    payload = json.dumps(item.payload, ensure_ascii=False, default=str)
                except RecursionError:  # parsed near json's depth limit, deeper than the stack has room to write
                    origin = f"{page.fetched.url}#{item.external_id}"
                    problems.append(Problem("parse", origin, TOO_DEEP, page.fetched.body))
                    continue
                records.append(
                    {
                        "record_id": str(uuid.uuid4()),
                        "response_id": response_id,
                        "source": source.name,
                        "external_id": item.external_id,
                        "payload": payload,
                        "fetched_at": fetched_at,
                    }
                )
            problems.extend(page.problems)
    except SourceHTTPError as error:
        result.status = "failed"
        result.message = f"{error.reason} at {error.url}"
        problems.append(Problem("fetch", error.url, error.reason, error.body))
        log.error(
            json.dumps(
                {
                    "event": "source_failed",
                    "source": source.name,
                    "reason": error.reason,
                    "url": error.url,
                    "run_id": run_id,
                }
            )
        )
    except ValueError as error:
        # A bad setting (page size, query) for this source: its failure, not the run's.
        result.status = "failed"
        result.message = f"configuration error: {error}"
        log.error(json.dumps({"event": "source_misconfigured", "source": source.name, "error": str(error)}))
    finally:
        result.requests = client.requests_made
        client.close()

    warehouse.append("raw.responses", pd.DataFrame(responses))
    warehouse.append("raw.records", pd.DataFrame(records))
    result.quarantined = quarantine.quarantine(warehouse, source.name, problems, run_id)
    result.responses, result.items = len(responses), len(records)
    if result.status == "ok":
        result.message = f"{result.items} items from {result.responses} responses, {result.quarantined} quarantined"
    return result
