"""The quarantine: every record we could not use, with its stage, origin and reason, kept
verbatim (base64 when it is not UTF-8) so that it can be inspected and replayed."""

import base64
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.platform.warehouse import Warehouse, run_sql, stage_frame

if TYPE_CHECKING:  # pandas loads when a frame is built: sources import Problem at start-up
    import pandas as pd

TABLE = "quarantine.records"


@dataclass
class ReplayReport:
    """What a replay of quarantined records did (core.discovery.replay, core.ledger.imports.replay)."""

    replayed: int = 0
    still_failing: int = 0
    not_replayable: int = 0
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """One record we could not use, as it will be quarantined: where it came from and why."""

    stage: str  # "fetch" | "parse" | "normalize" | "import"
    origin: str  # URL, URL#item-index, or file:line: where to look
    reason: str
    payload: bytes | str


def encode_payload(payload: bytes | str) -> tuple[str, str]:
    """The payload as storable text: itself when it is UTF-8 that a PostgreSQL TEXT can hold (no
    NUL byte), else base64 of its exact bytes (a str's lone surrogates are the bytes it escaped)."""
    if isinstance(payload, str):
        if "\x00" not in payload:
            try:
                payload.encode("utf-8")
                return payload, "utf-8"
            except UnicodeEncodeError:
                pass
        payload = payload.encode("utf-8", "surrogateescape")
    if b"\x00" not in payload:
        try:
            return payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(payload).decode("ascii"), "base64"


def storable_text(text: str) -> str:
    """An origin or reason as TEXT on both backends: NUL and bytes that are not UTF-8 written as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def decode_payload(text: str, encoding: str) -> bytes:
    return base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")


def quarantine_frame(source: str, problems: Iterable[Problem], run_id: str | None = None) -> "pd.DataFrame":
    import pandas as pd

    now = datetime.now(UTC)
    rows = []
    for problem in problems:
        text, encoding = encode_payload(problem.payload)
        rows.append(
            {
                "quarantine_id": str(uuid.uuid4()),
                "stage": problem.stage,
                "source": source,
                "origin": storable_text(problem.origin),
                "reason": storable_text(problem.reason),
                "payload": text,
                "payload_encoding": encoding,
                "quarantined_at": now,
                "replayed_at": None,
                "run_id": run_id,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "quarantine_id",
            "stage",
            "source",
            "origin",
            "reason",
            "payload",
            "payload_encoding",
            "quarantined_at",
            "replayed_at",
            "run_id",
        ],
    )


def quarantine(warehouse: Warehouse, source: str, problems: Iterable[Problem], run_id: str | None = None) -> int:
    return warehouse.append(TABLE, quarantine_frame(source, problems, run_id))


def pending(warehouse: Warehouse, source: str | None = None) -> "pd.DataFrame":
    where, params = "WHERE replayed_at IS NULL", []
    if source:
        where += " AND source = %s"
        params.append(source)
    return warehouse.read(TABLE, where + " ORDER BY quarantined_at", params)


def mark_replayed(conn: Any, backend: str, quarantine_ids: Iterable[str], at: datetime) -> int:
    """Mark records replayed, in the caller's transaction (kept, never deleted: the history of
    bad input stays)."""
    import pandas as pd

    ids = list(quarantine_ids)
    if ids:
        stage_frame(conn, backend, "_replayed", pd.DataFrame({"quarantine_id": ids}))
        run_sql(
            conn,
            f"UPDATE {TABLE} SET replayed_at = %s WHERE quarantine_id IN (SELECT quarantine_id FROM _replayed)",
            [at],
        )
    return len(ids)
