"""From raw items to the `core.opportunities` table: normalize, fingerprint, deduplicate, cluster.

Works on the raw responses not normalized yet, so a run only touches what is new, and a replay
(after a connector fix) only needs `core.normalized_responses` rows removed, never a refetch.
"""

import contextlib
import gc
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd

from core.discovery.fingerprints import canonical_urls, fingerprints, is_web_url
from core.discovery.near_duplicates import index as near_duplicate_index
from core.discovery.sources.base import TOO_DEEP, BadRecord, Normalized, Source
from core.platform import quarantine
from core.platform.quarantine import Problem
from core.platform.warehouse import Warehouse, append_frame, insert_new_rows, query_frame, stage_frame

MAX_TITLE = 300
MAX_BODY = 20_000

OPPORTUNITY_COLUMNS = [
    "fingerprint",
    "opportunity_id",
    "source",
    "family",
    "external_id",
    "url",
    "canonical_url",
    "title",
    "body",
    "author",
    "points",
    "comments",
    "created_at",
    "fetched_at",
    "cluster_id",
    "record_id",
]


@dataclass
class SourceStats:
    source: str
    fetched: int = 0
    new: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    quarantined: int = 0


def validated(item: Normalized) -> tuple:
    """The checks every source shares (a connector's own normalize checks its own fields); the
    clean item as a row in `Normalized`'s field order (a second dataclass per record cost ~3%)."""
    title = " ".join(item.title.split())
    if not title:
        raise BadRecord("field 'title' is empty")
    if not is_web_url(item.url):
        raise BadRecord(f"field 'url' is not an absolute http(s) URL: {item.url!r:.80}")
    if item.created_at.tzinfo is None:
        raise BadRecord("field 'created_at' has no timezone")
    if item.points < 0 or item.comments < 0:
        raise BadRecord(f"negative engagement: points={item.points} comments={item.comments}")
    # PostgreSQL's TEXT cannot hold U+0000: kept, it would fail the write of every source's batch.
    for name in ("external_id", "url", "title", "body", "author"):
        if "\x00" in (getattr(item, name) or ""):
            raise BadRecord(f"field {name!r} holds a NUL character (U+0000), which no text column stores")
    return (
        item.external_id,
        item.url.strip(),
        title[:MAX_TITLE],
        item.body[:MAX_BODY],
        item.author,
        item.points,
        item.comments,
        item.created_at.astimezone(UTC),
    )


def normalize_records(source: Source, records: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Normalize one source's raw records; each bad one becomes a Problem naming the field."""
    rows, kept, problems = [], [], []
    # Every payload makes short-lived dicts, which keep triggering the cyclic GC, whose collections
    # re-walk the rows kept so far: pausing it saved ~10% at 100,000 records. Nothing here
    # builds reference cycles.
    with _gc_paused():
        for position, payload_text in enumerate(_chunked(records["payload"])):
            try:
                payload = payload_json(payload_text)
                if not isinstance(payload, Mapping):
                    raise BadRecord(f"payload is a {type(payload).__name__}, not an object")
                row = validated(source.normalize(payload))
            except (BadRecord, json.JSONDecodeError) as error:
                problems.append(_problem(records, position, str(error), payload_text))
                continue
            except RecursionError:  # json's limit, ~1,000 levels (orjson's is 1,024): this record's problem
                problems.append(Problem("normalize", _origin(records, position), TOO_DEEP, payload_text))
                continue
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                # A connector bug on an unexpected shape: still this record's problem, not the batch's.
                problems.append(_problem(records, position, f"{type(error).__name__}: {error}", payload_text))
                continue
            rows.append(row)
            kept.append(position)
    frame = pd.DataFrame.from_records(rows, columns=list(Normalized.__dataclass_fields__), nrows=len(rows))
    frame["source"] = source.name
    frame["family"] = source.family
    frame["fetched_at"] = records["fetched_at"].iloc[kept].reset_index(drop=True)
    frame["record_id"] = records["record_id"].iloc[kept].reset_index(drop=True)
    if not frame.empty:
        # From Python lists: iterating Arrow-backed string columns costs a few us a value.
        canonical = canonical_urls(frame["url"].tolist())
        frame["canonical_url"] = canonical
        frame["fingerprint"] = fingerprints(canonical, frame["title"].tolist())
    return frame, problems


# A run of 19 digits or more: an integer that may not fit in 64 bits (see payload_json).
_DIGIT_TO_ZERO = bytes(0 if 48 <= b <= 57 else 1 for b in range(256))
_LONG_DIGIT_RUN = bytes(19)


def payload_json(text: str) -> Any:
    """`json.loads(text)`, through orjson wherever the two agree: 9 -> 4 us a payload.

    orjson turns integers past 64 bits into floats, refuses what json accepts (NaN, Infinity,
    lone surrogates, 1e400) and words its errors differently. Texts with a long digit run or that
    orjson rejects go to json, so the values and the quarantine reasons are json's own."""
    try:
        raw = text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return json.loads(text)
    if _LONG_DIGIT_RUN in raw.translate(_DIGIT_TO_ZERO):
        return json.loads(text)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _chunked(column: pd.Series, size: int = 50_000) -> Iterator[str]:
    """The column's values as Python strings, a chunk at a time: a million payloads at once
    would hold a second copy of them all (~1 GB)."""
    for start in range(0, len(column), size):
        yield from column.iloc[start : start + size].tolist()


def _origin(records: pd.DataFrame, position: int) -> str:
    record = records.iloc[position]
    return f"raw.records/{record['record_id']} ({record['source']} {record['external_id']})"


def _problem(records: pd.DataFrame, position: int, reason: str, payload: str) -> Problem:
    """A record that did not normalize. Its identity is the item as every fetch names it: the raw
    record id is new with each fetch, so the same bad item fetched again is quarantined once."""
    record = records.iloc[position]
    identity = f"{record['source']} {record['external_id']}"
    return Problem("normalize", _origin(records, position), reason, payload, identity)


@contextlib.contextmanager
def _gc_paused():
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def pending_records(warehouse: Warehouse) -> pd.DataFrame:
    sql = (
        "SELECT r.record_id, r.response_id, r.source, r.external_id, r.payload, r.fetched_at "
        "FROM raw.records r JOIN raw.responses p ON p.response_id = r.response_id "
        "WHERE NOT EXISTS (SELECT 1 FROM core.normalized_responses n WHERE n.response_id = r.response_id) "
        "ORDER BY r.fetched_at, r.record_id"
    )
    if warehouse.backend != "duckdb":
        return warehouse.query(sql)
    # Through Arrow, the payloads never become a million Python strings on the way: for 1,000,000
    # records 4.4 s and a 2.6 GB peak, against 9.6 s and 4.9 GB with .df() (same dtypes).
    with warehouse.connect() as conn:
        return conn.sql(sql).to_arrow_table().to_pandas()


def pending_responses(warehouse: Warehouse) -> list[str]:
    frame = warehouse.query(
        "SELECT response_id FROM raw.responses p WHERE NOT EXISTS "
        "(SELECT 1 FROM core.normalized_responses n WHERE n.response_id = p.response_id)"
    )
    return list(frame["response_id"])


def ingest(warehouse: Warehouse, sources: list[Source], run_id: str | None = None) -> dict[str, SourceStats]:
    """Normalize every pending raw record into core.opportunities; return counts per source."""
    by_name = {s.name: s for s in sources}
    responses = pending_responses(warehouse)
    records = pending_records(warehouse)
    stats = {name: SourceStats(name) for name in by_name}
    frames, problems_by_source = [], {}
    for name, group in records.groupby("source", sort=True):
        source = by_name.get(name)
        if source is None:  # a source removed from configuration: keep its records pending
            responses = [r for r in responses if r not in set(group["response_id"])]
            continue
        frame, problems = normalize_records(source, group)
        stats[name].fetched = len(group)
        problems_by_source[name] = problems
        frames.append(frame)
    valid = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    # The raw payloads (~1 GB for a million records) are not needed past here: let them go before
    # store() makes its copies of the normalized rows.
    records = frames = group = None

    now = datetime.now(UTC)
    with warehouse.connect() as conn:
        for name, problems in problems_by_source.items():
            stats[name].quarantined = quarantine.store(
                conn, warehouse.backend, quarantine.quarantine_frame(name, problems, run_id)
            )
        if not valid.empty:
            store(conn, warehouse.backend, valid, stats)
        append_frame(
            conn,
            warehouse.backend,
            "core.normalized_responses",
            pd.DataFrame({"response_id": responses, "normalized_at": now}),
        )
    return stats


def store(conn, backend: str, valid: pd.DataFrame, stats: dict[str, SourceStats]) -> None:
    """Insert normalized rows: sightings always, opportunities only for unseen fingerprints."""
    record_sightings(conn, backend, valid)
    fresh = unseen(conn, backend, valid)
    if not fresh.empty:
        clustered = near_duplicate_index.assign_clusters(conn, backend, fresh)
        inserted = insert_new_rows(conn, backend, "core.opportunities", clustered[OPPORTUNITY_COLUMNS], ["fingerprint"])
        near_duplicate_index.persist(conn, backend, clustered, inserted["opportunity_id"])
        near = clustered[
            clustered["near_duplicate_of"].notna() & clustered["opportunity_id"].isin(inserted["opportunity_id"])
        ]
        for name, n in inserted["source"].value_counts().items():
            stats.setdefault(name, SourceStats(name)).new = int(n)
        for name, n in near["source"].value_counts().items():
            stats.setdefault(name, SourceStats(name)).near_duplicates = int(n)
    for name, n in valid["source"].value_counts().items():
        stats.setdefault(name, SourceStats(name)).duplicates = int(n) - stats[name].new


def record_sightings(conn, backend: str, valid: pd.DataFrame) -> int:
    return append_frame(
        conn,
        backend,
        "core.opportunity_sightings",
        valid.rename(columns={"fetched_at": "seen_at"})[
            ["fingerprint", "source", "points", "comments", "seen_at", "record_id"]
        ],
    )


def unseen(conn, backend: str, valid: pd.DataFrame) -> pd.DataFrame:
    """Exact dedup: first within the batch (earliest fetch wins), then against the table. The rows
    left get a new opportunity_id; the table's primary key settles races with other writers."""
    batch = valid.sort_values(["fetched_at", "record_id"]).drop_duplicates("fingerprint")
    known = set(_known_fingerprints(conn, backend, batch["fingerprint"]))
    fresh = batch[~batch["fingerprint"].isin(known)].copy()
    fresh["opportunity_id"] = [str(uuid.uuid4()) for _ in range(len(fresh))]
    return fresh


def _known_fingerprints(conn, backend: str, fingerprints: pd.Series) -> list[str]:
    stage_frame(conn, backend, "_batch_fingerprints", pd.DataFrame({"fingerprint": fingerprints.astype(str)}))
    found = query_frame(
        conn,
        "SELECT o.fingerprint FROM core.opportunities o JOIN _batch_fingerprints b ON b.fingerprint = o.fingerprint",
    )
    return list(found["fingerprint"])
