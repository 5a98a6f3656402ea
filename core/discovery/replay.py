"""Replay quarantined records after a fix: what now normalizes is ingested like new data, and the
quarantine row is marked replayed (kept, never deleted, so the history of bad input stays)."""

import re
from datetime import UTC, datetime

import pandas as pd

from core.discovery import opportunities
from core.discovery.sources.base import Source
from core.platform import quarantine
from core.platform.quarantine import ReplayReport
from core.platform.warehouse import Warehouse, query_frame, stage_frame

_RECORD = re.compile(r"^raw\.records/([0-9a-f-]{36})")


def replay(warehouse: Warehouse, sources: list[Source], source: str | None = None) -> ReplayReport:
    """Discovery's quarantined records; ledger imports (stage `import`) replay through
    core.ledger.imports.replay instead."""
    report = ReplayReport()
    by_name = {s.name: s for s in sources}
    rows = quarantine.pending(warehouse, source)
    rows = rows[rows["stage"] != "import"].copy()
    rows["record_id"] = rows["origin"].str.extract(_RECORD, expand=False)
    replayable = rows[(rows["stage"] == "normalize") & rows["record_id"].notna() & rows["source"].isin(by_name)]
    for row in rows.drop(replayable.index).itertuples():
        report.not_replayable += 1
        report.reasons.append(
            f"{row.source} {row.stage} {row.origin}: a whole response failed; "
            f"rematerialize raw/{row.source} to fetch it again"
        )
    if replayable.empty:
        return report
    records = _records(warehouse, replayable["record_id"].tolist())
    now = datetime.now(UTC)
    with warehouse.connect() as conn:
        stats: dict[str, opportunities.SourceStats] = {}
        fixed_ids: list[str] = []
        for name, group in records.groupby("source"):
            valid, problems = opportunities.normalize_records(by_name[name], group)
            stats[name] = opportunities.SourceStats(name)
            report.still_failing += len(problems)
            report.reasons += [f"{name} {p.origin}: {p.reason}" for p in problems]
            if not valid.empty:
                opportunities.store(conn, warehouse.backend, valid, stats)
                fixed_ids += valid["record_id"].tolist()
        fixed = replayable[replayable["record_id"].isin(fixed_ids)]
        report.replayed = quarantine.mark_replayed(conn, warehouse.backend, fixed["quarantine_id"], now)
    return report


def _records(warehouse: Warehouse, record_ids: list[str]) -> pd.DataFrame:
    with warehouse.connect() as conn:
        stage_frame(conn, warehouse.backend, "_record_ids", pd.DataFrame({"record_id": record_ids}))
        return query_frame(
            conn, "SELECT r.* FROM raw.records r JOIN _record_ids i ON i.record_id = r.record_id ORDER BY r.fetched_at"
        )
