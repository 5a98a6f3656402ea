"""The quarantine: every record we could not use, with its stage, origin and reason, kept
verbatim (base64 when it is not UTF-8) so that it can be inspected and replayed."""

import base64
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from core.discovery.sources.base import Problem
from core.platform.warehouse import Warehouse

TABLE = "quarantine.records"


def encode_payload(payload: bytes | str) -> tuple[str, str]:
    if isinstance(payload, str):
        return payload, "utf-8"
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def decode_payload(text: str, encoding: str) -> bytes:
    return base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")


def quarantine_frame(source: str, problems: Iterable[Problem], run_id: str | None = None) -> pd.DataFrame:
    now = datetime.now(UTC)
    rows = []
    for problem in problems:
        text, encoding = encode_payload(problem.payload)
        rows.append({
            "quarantine_id": str(uuid.uuid4()), "stage": problem.stage, "source": source,
            "origin": problem.origin, "reason": problem.reason, "payload": text,
            "payload_encoding": encoding, "quarantined_at": now, "replayed_at": None, "run_id": run_id,
        })
    return pd.DataFrame(rows, columns=["quarantine_id", "stage", "source", "origin", "reason", "payload",
                                       "payload_encoding", "quarantined_at", "replayed_at", "run_id"])


def quarantine(warehouse: Warehouse, source: str, problems: Iterable[Problem], run_id: str | None = None) -> int:
    return warehouse.append(TABLE, quarantine_frame(source, problems, run_id))


def pending(warehouse: Warehouse, source: str | None = None) -> pd.DataFrame:
    where, params = "WHERE replayed_at IS NULL", []
    if source:
        where += " AND source = %s"
        params.append(source)
    return warehouse.read(TABLE, where + " ORDER BY quarantined_at", params)
