"""The audit log: a hash chain over every ledger write, hold decision and budget change.

Record n stores hash_n = sha256(hash_{n-1} + canonical_json(envelope_n)), where the envelope is
{seq, event_id, event_type, payload, recorded_at} and canonical JSON has sorted keys, no
whitespace and UTF-8 text. Editing, deleting or reordering any record breaks the chain at that
record. Events are appended in the SAME database transaction as the write they describe, so a
write without its audit record (or the reverse) cannot be committed.

seq is gap-free: writers are serialized on the chain (a transaction-scoped advisory lock on
PostgreSQL, a process-level lock on DuckDB, which allows a single writer process anyway) and the
seq PRIMARY KEY is the final guard.
"""

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.platform.warehouse import Warehouse, append_rows, run_sql

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key for the chain; any fixed 64-bit number works, this is "vloop-au".
CHAIN_LOCK_KEY = 0x766C6F6F702D6175

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class Problem:
    """One broken record: which check failed, which record, and what is wrong with it."""

    check: str
    record: str
    message: str

    def __str__(self) -> str:
        return f"{self.record}: {self.message} [{self.check}]"


# One encoder for all calls: json.dumps with non-default options builds a new one every time, which
# is measurable when a batch hashes a million rows.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text (no ASCII escapes): the form every hash is taken over."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"value is not plain JSON (str, int, bool, None, list, dict; no NaN): {error}") from None


# Where the ledger's writers read "now" (recorded_at, a hold's creation, a default decision time);
# tests pass fixed_clock(t) so that nothing they check depends on when they run.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, timezone-aware in UTC: the default Clock."""
    return datetime.now(UTC)


def fixed_clock(instant: datetime) -> Clock:
    """A Clock that always answers `instant` (timezone-aware)."""
    if instant.tzinfo is None:
        raise ValueError(f"fixed_clock({instant!r}) needs a timezone-aware instant")
    return lambda: instant


def utc_iso(value: Any) -> str:
    """One text form for a timestamp, whichever driver returned it (datetime or pandas)."""
    if type(value) is datetime and value.tzinfo is not None:  # the common case, without pandas
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    elif not isinstance(value, datetime):
        value = pd.Timestamp(value).to_pydatetime()
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(prev_hash: str, seq: int, event_id: str, event_type: str, payload: Any, recorded_at: str) -> str:
    envelope = {
        "seq": seq,
        "event_id": event_id,
        "event_type": event_type,
        "payload": payload,
        "recorded_at": recorded_at,
    }
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(envelope).encode("utf-8")).hexdigest()


def _process_lock(warehouse: Warehouse) -> threading.Lock:
    key = os.path.realpath(warehouse.duckdb_path) if warehouse.duckdb_path != ":memory:" else warehouse.url
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.Lock())


@contextlib.contextmanager
def write_transaction(warehouse: Warehouse) -> Iterator[Any]:
    """One database transaction that owns the audit chain until it commits or rolls back.

    Every audited write (ledger, holds, budgets, FX loads) goes through here, so writes are
    serialized: that is what keeps seq gap-free and makes check-then-insert (idempotency keys,
    budget limits, hold decisions) atomic. On DuckDB the lock spans the commit, because DuckDB's
    optimistic concurrency would otherwise fail one of two racing transactions at commit time."""
    if warehouse.backend == "duckdb":
        with _process_lock(warehouse), warehouse.connect() as conn:
            yield conn
    else:
        with warehouse.connect() as conn:
            run_sql(conn, "SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
            yield conn


def append_events(
    conn: Any, backend: str, events: Sequence[tuple[str, dict[str, Any]]], recorded_at: datetime | None = None
) -> list[int]:
    """Append events to the chain inside the caller's write_transaction; returns their seqs."""
    if not events:
        return []
    recorded_at = recorded_at or datetime.now(UTC)
    stamp = utc_iso(recorded_at)  # refuses a naive time
    recorded_at = recorded_at.astimezone(UTC)
    head = run_sql(conn, "SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1", None).fetchone()
    seq, prev = (int(head[0]), head[1]) if head else (0, GENESIS_HASH)
    first = seq + 1
    stamp_json = canonical_json(stamp)
    type_json: dict[str, str] = {}
    rows = []
    for event_type, payload, event_id in zip(
        (e[0] for e in events), (e[1] for e in events), _uuid4_strings(len(events)), strict=False
    ):
        seq += 1
        payload_json = canonical_json(payload)
        if event_type not in type_json:
            type_json[event_type] = canonical_json(event_type)
        # The envelope's canonical JSON (record_hash's), written out: its keys in sorted order, each
        # value encoded as canonical_json encodes it, the payload encoded once for hash and row.
        envelope = (
            f'{{"event_id":"{event_id}","event_type":{type_json[event_type]},"payload":{payload_json},'
            f'"recorded_at":{stamp_json},"seq":{seq}}}'
        )
        digest = hashlib.sha256(prev.encode("ascii") + envelope.encode("utf-8")).hexdigest()
        rows.append((seq, event_id, event_type, payload_json, prev, digest, recorded_at))
        prev = digest
    append_rows(conn, backend, "audit.events", _EVENT_COLUMNS, rows)
    return list(range(first, seq + 1))


_EVENT_COLUMNS = ("seq", "event_id", "event_type", "payload", "prev_hash", "hash", "recorded_at")


def _uuid4_strings(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, as str(uuid.uuid4()) gives them, from one read of
    os.urandom: uuid.uuid4() builds a UUID object per call, which shows in a batch of thousands."""
    raw = os.urandom(16 * count)
    out = []
    for start in range(0, 16 * count, 16):
        value = int.from_bytes(raw[start : start + 16], "big")
        # RFC 4122 variant (10xx in bits 64-65 from the right end of the clock_seq) and version 4,
        # exactly as uuid.UUID(bytes=..., version=4) sets them.
        value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
        value = (value & ~(0xF000 << 64)) | (4 << 76)
        h = f"{value:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def read_events(conn: Any) -> list[tuple[Any, ...]]:
    return run_sql(
        conn,
        "SELECT seq, event_id, event_type, payload, prev_hash, hash, recorded_at FROM audit.events ORDER BY seq",
        None,
    ).fetchall()


def verify_chain(rows: Sequence[Sequence[Any]]) -> Problem | None:
    """Walk the chain in seq order and return the first broken record, if any."""
    expected, prev = 1, GENESIS_HASH
    for seq, event_id, event_type, payload_text, prev_hash, stored_hash, recorded_at in rows:
        where = f"audit.events seq {seq}"
        if seq != expected:
            return Problem(
                "audit.chain",
                f"audit.events seq {expected}",
                f"record seq {expected} is missing (the next record is seq {seq}): a record was deleted or renumbered",
            )
        if prev_hash != prev:
            return Problem(
                "audit.chain",
                where,
                f"prev_hash {prev_hash[:12]}... does not match the hash of seq {seq - 1} "
                f"({prev[:12]}...): records were deleted, inserted or reordered",
            )
        try:
            payload = json.loads(payload_text)
            recomputed = record_hash(prev, int(seq), event_id, event_type, payload, utc_iso(recorded_at))
        except (TypeError, ValueError) as error:
            return Problem("audit.chain", where, f"the record cannot be decoded ({error}): it was edited")
        if recomputed != stored_hash:
            return Problem(
                "audit.chain",
                where,
                f"hash does not match the record's content ({event_type}): the record was edited or moved",
            )
        prev, expected = stored_hash, expected + 1
    return None


def chain_id(warehouse: Warehouse) -> str | None:
    """The hash of the first record: it names this chain apart from any other warehouse's (each
    record hashes a fresh uuid), so heads published for another warehouse are not compared."""
    with warehouse.connect() as conn:
        first = run_sql(conn, "SELECT hash FROM audit.events WHERE seq = 1", None).fetchone()
    return first[0] if first else None


def parse_head(text: str) -> tuple[int, str]:
    """A published head as `chain_head` prints it: 'SEQ:HASH'."""
    seq, _, digest = text.strip().partition(":")
    if not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"audit chain head {text!r:.90} should be SEQ:HASH, e.g. 42:<64 hex digits>")
    return int(seq), digest


def check_heads(rows: Sequence[Sequence[Any]], heads: Sequence[tuple[int, str]]) -> Problem | None:
    """Each head published earlier must still be in the chain with the same hash: this catches the
    newest records cut off (with what they describe), which the chain alone cannot show."""
    hashes = {int(row[0]): row[5] for row in rows}
    for seq, digest in heads:
        if seq == 0:
            continue
        if seq not in hashes:
            return Problem(
                "audit.chain",
                f"audit.events seq {seq}",
                f"a head was published at seq {seq} but the chain ends at seq {max(hashes, default=0)}: "
                f"the newest records were removed",
            )
        if hashes[seq] != digest:
            return Problem(
                "audit.chain",
                f"audit.events seq {seq}",
                f"the published head's hash {digest[:12]}... does not match seq {seq} "
                f"({hashes[seq][:12]}...): the chain was cut and rewritten after it was published",
            )
    return None


def decoded_events(rows: Sequence[Sequence[Any]]) -> list[tuple[int, str, Any]]:
    """(seq, event_type, payload) of every record whose payload is readable JSON, for cross-checks."""
    decoded = []
    for seq, _event_id, event_type, payload_text, *_rest in rows:
        try:
            decoded.append((int(seq), event_type, json.loads(payload_text)))
        except (TypeError, ValueError):
            continue
    return decoded


def chain_head(warehouse: Warehouse) -> tuple[int, str]:
    """(seq, hash) of the newest record. Publish it elsewhere (run metadata, a ticket): the chain
    alone cannot show that its newest records were cut off together with what they describe."""
    with warehouse.connect() as conn:
        head = run_sql(conn, "SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1", None).fetchone()
    return (int(head[0]), head[1]) if head else (0, GENESIS_HASH)


@dataclass(frozen=True)
class PublishedHead:
    """A head as it was published, with the chain (the hash of seq 1) and the warehouse
    (Warehouse.describe()) it was read from: verify checks the heads of the current chain, and
    when this warehouse's heads are all of another chain, its chain was rewritten from seq 1."""

    head: tuple[int, str]
    chain_id: str | None
    warehouse: str | None  # None: published before heads named their warehouse


def check_published(
    rows: Sequence[Sequence[Any]], warehouse: str, published: Sequence[tuple[int, str] | PublishedHead]
) -> Problem | None:
    """check_heads on the plain heads (given by hand) and the published heads of the current chain;
    then, if this warehouse published heads and none is of its current chain, report the rewrite: a
    forger who recomputes the chain from its first record gets a new chain_id, and every head
    published before would otherwise be dismissed as another warehouse's."""
    chain = next((row[5] for row in rows if int(row[0]) == 1), None)
    plain = [head for head in published if not isinstance(head, PublishedHead)]
    ours = [head.head for head in published if isinstance(head, PublishedHead) and head.chain_id == chain]
    problem = check_heads(rows, plain + ours)
    if problem or ours:
        return problem
    # A head at seq 0 (published while the chain was empty) attests nothing.
    orphaned = [h for h in published if isinstance(h, PublishedHead) and h.warehouse == warehouse and h.head[0] > 0]
    if not orphaned:
        return None
    newest = max(orphaned, key=lambda h: h.head)
    return Problem(
        "audit.chain",
        "audit.events seq 1",
        f"{len(orphaned)} head(s) were published for this warehouse, the newest {newest.head[0]}:"
        f"{newest.head[1][:12]}... on a chain whose first record hashed to {(newest.chain_id or '')[:12]}..., "
        f"and none on its current chain ({(chain or 'no records')[:12]}...): the chain was rewritten from its "
        f"first record (if the warehouse was deliberately recreated, move the recorded heads aside)",
    )


def record_head(path: Path, chain: str | None, head: tuple[int, str], at: datetime, warehouse: str) -> None:
    """Append a published head to a JSON-lines file outside the warehouse (`ledger head` keeps one
    under VENTURELOOP_HOME), so a later verify can check the chain still reaches it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = canonical_json(
        {"chain_id": chain, "head": f"{head[0]}:{head[1]}", "recorded_at": utc_iso(at), "warehouse": warehouse}
    )
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")


def recorded_heads(path: Path) -> list[PublishedHead]:
    """Every head record_head wrote (of any chain and warehouse: verify picks), oldest first."""
    if not path.is_file():
        return []
    heads = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
            heads.append(PublishedHead(parse_head(entry["head"]), entry["chain_id"], entry.get("warehouse")))
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"{path}:{number}: not a recorded audit chain head ({error})") from None
    return heads
