"""The quarantine: every record we could not use, with its stage, origin and reason, kept
verbatim (base64 when it is not UTF-8) so that it can be inspected and replayed.

Quarantining is idempotent: the same record (stage, source, origin, reason, payload) met again, by
a re-import, the next snapshot fetch or a concurrent writer, is stored once. `pending_key`, a digest
of those, is UNIQUE and rows go in with ON CONFLICT DO NOTHING, so no read-then-write race exists.
Marking a record replayed clears its key (NULLs never collide): if the same record fails again
later, it is quarantined again and shows as pending, while the replayed row stays as history."""

import base64
import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.platform.warehouse import Warehouse, insert_new_rows, run_sql, stage_frame

if TYPE_CHECKING:  # pandas loads when a frame is built: sources import Problem at start-up
    import pandas as pd

# The reason for JSON that Python's json cannot walk: it recurses once per level and raises
# RecursionError (not ValueError) past ~1,000. One text for every source and import file.
TOO_DEEP = "JSON nested too deeply to parse (more than about 1,000 levels of arrays or objects)"

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
    # What names the record across runs when the origin does not (a discovery raw record's id is new
    # with every fetch): it replaces the origin in the idempotency key. None: the origin does.
    identity: str | None = None


def pending_key(stage: str, source: str, identity: str, reason: str, payload: str, encoding: str) -> str:
    """The digest that makes a record pending at most once (see the module docstring)."""
    digest = hashlib.sha256()
    for part in (stage, source, identity, reason, encoding, payload):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")  # a separator no stored text holds (storable_text, encode_payload)
    return digest.hexdigest()


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
        origin, reason = storable_text(problem.origin), storable_text(problem.reason)
        identity = origin if problem.identity is None else storable_text(problem.identity)
        rows.append(
            {
                "quarantine_id": str(uuid.uuid4()),
                "stage": problem.stage,
                "source": source,
                "origin": origin,
                "reason": reason,
                "payload": text,
                "payload_encoding": encoding,
                "quarantined_at": now,
                "replayed_at": None,
                "run_id": run_id,
                "pending_key": pending_key(problem.stage, source, identity, reason, text, encoding),
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
            "pending_key",
        ],
    )


def quarantine(warehouse: Warehouse, source: str, problems: Iterable[Problem], run_id: str | None = None) -> int:
    """Store the problems not pending already; returns how many distinct records are now pending
    for them (this run's count of bad records, whether or not an earlier run stored them)."""
    frame = quarantine_frame(source, problems, run_id)
    if frame.empty:
        return 0
    with warehouse.connect() as conn:
        return store(conn, warehouse.backend, frame)


def store(conn: Any, backend: str, frame: "pd.DataFrame") -> int:
    """quarantine() inside the caller's transaction, for a frame from quarantine_frame."""
    if frame.empty:
        return 0
    insert_new_rows(conn, backend, TABLE, frame, ["pending_key"])
    return int(frame["pending_key"].nunique())


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
            f"UPDATE {TABLE} SET replayed_at = %s, pending_key = NULL "
            "WHERE quarantine_id IN (SELECT quarantine_id FROM _replayed)",
            [at],
        )
    return len(ids)
