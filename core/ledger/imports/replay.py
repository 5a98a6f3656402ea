"""Replay quarantined import records (stage `import`) through the importer, after a fix: a new
Stripe type mapping, a corrected fraud rule, a file put right. What now books (or is held, or is
found already booked) is marked replayed; what still fails stays pending with its new reason.

A record that fails again for the same reason stays pending as it is; one that fails for a new
reason is quarantined again with it, and its old row is marked replayed (it was: its outcome is the
new row), so the record is pending once, with its latest reason.

A record is replayed from what the quarantine kept:
- a Stripe object (API page, JSON or JSON lines) is complete in its payload, and so is a spend
  refused by the budgets that code booked rather than a file (core.ledger.imports.spends: the
  market simulator's ad costs);
- a whole rejected file (origin `<file>:1`, the payload is the file) is imported again as a file;
- a CSV row needs its file's header: it is read from the file at the row's origin, or from the
  copy the inbox sensor archived, checked to hold this very row at that line. When neither is
  there, the report says which file to correct and import again.
"""

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from core.ledger.budgets import SpendWindow
from core.ledger.fraud import FraudRules
from core.ledger.imports import candidates_from_bytes, object_candidate, spends, stripe
from core.ledger.imports.archive import archived_pattern
from core.ledger.imports.booking import STAGE, Candidate, ImportReport, book_candidates
from core.ledger.tax import TaxCalculator
from core.platform.quarantine import ReplayReport, decode_payload, mark_replayed, pending
from core.platform.warehouse import Warehouse


def replay_imports(
    warehouse: Warehouse,
    archive_dirs: Sequence[Path] = (),
    *,
    source: str | None = None,
    tax: TaxCalculator | None = None,
    rules: FraudRules | None = None,
    now: datetime | None = None,
    spend_window: SpendWindow | None = None,
) -> ReplayReport:
    """Every pending import record (of `source`, e.g. stripe or generic_csv, if given); a CSV row's
    file is looked for where it was imported from and in `archive_dirs` (the inbox's archive)."""
    report = ReplayReport()
    rows = pending(warehouse, source)
    rows = rows[rows["stage"] == STAGE]
    fixed: list[str] = []
    superseded: list[str] = []
    for row in rows.itertuples():
        payload = decode_payload(row.payload, row.payload_encoding)
        source, candidates, why_not = _candidates(row.origin, payload, archive_dirs)
        if why_not:
            report.not_replayable += 1
            report.reasons.append(f"{row.origin}: {why_not}")
            continue
        booked = book_candidates(
            warehouse,
            source,
            candidates,
            ImportReport(source, row.origin, "replay", None),
            tax=tax,
            rules=rules,
            now=now,
            spend_window=spend_window,
        )
        whole_file_again = [o for o in booked.rows if o.origin == row.origin and o.status == "quarantined"]
        if whole_file_again or not booked.rows:
            report.still_failing += 1
            report.reasons += [f"{o.origin}: {o.message}" for o in whole_file_again]
            if whole_file_again and all(o.message != row.reason for o in whole_file_again):
                superseded.append(row.quarantine_id)  # by the row its new reason was stored as
        else:
            fixed.append(row.quarantine_id)
            report.reasons += [
                f"{o.origin}: now {o.status}" + (f" ({o.message})" if o.message else "") for o in booked.rows
            ]
    # Booking is idempotent, so marking after it (not in its transaction) loses nothing if it fails.
    with warehouse.connect() as conn:
        report.replayed = mark_replayed(conn, warehouse.backend, fixed, now or datetime.now(UTC))
        mark_replayed(conn, warehouse.backend, superseded, now or datetime.now(UTC))
    return report


def _candidates(origin: str, payload: bytes, archive_dirs: Sequence[Path]) -> tuple[str, list[Candidate], str | None]:
    """(source, candidates, None), or ("", [], why this record cannot be replayed)."""
    text = payload.decode("utf-8", "surrogateescape")
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and obj.get("object") == spends.OBJECT:  # a refused spend booked by code
            return str(obj.get("source") or "spend"), [spends.candidate(origin, obj, text)], None
        if isinstance(obj, dict):
            return stripe.SOURCE, [object_candidate(origin, obj)], None
    name, _, line = origin.rpartition(":")
    if not line.isdigit():
        return "", [], "not a file or Stripe record; nothing to import it from"
    if int(line) == 1:  # the whole file was rejected (unknown format, bad header): its payload is the file
        source, _, candidates = candidates_from_bytes(payload, name)
        return source, candidates, None
    found = _file_holding(Path(name), int(line), text, archive_dirs)
    if found is None:
        where = " or ".join([name, *(f"{d}/*/*-{Path(name).name}" for d in archive_dirs)])
        return (
            "",
            [],
            (
                f"a CSV row is read with its file's header, and no file holding this row at line {line} "
                f"is at {where}: correct the file and run `ventureloop ledger import FILE` (rows "
                f"already booked are skipped as duplicates)"
            ),
        )
    header = next(
        line for line in found.read_text(encoding="utf-8", errors="surrogateescape").splitlines() if line.strip()
    )
    source, _, candidates = candidates_from_bytes(f"{header}\n{text}".encode("utf-8", "surrogateescape"), name)
    # The row keeps its place in the file, so a still-bad row matches its pending quarantine record.
    return source, [replace(candidate, origin=origin) for candidate in candidates[:1]], None


def _file_holding(path: Path, line: int, row: str, archive_dirs: Sequence[Path]) -> Path | None:
    """The file the row was imported from, or its archived copy, if it holds `row` at `line`."""
    row = row.rstrip("\r\n")
    options = [path, *(copy for d in archive_dirs for copy in sorted(Path(d).glob(archived_pattern(path.name))))]
    for option in options:
        if not option.is_file():
            continue
        lines = option.read_text(encoding="utf-8", errors="surrogateescape").splitlines(keepends=True)
        if "".join(lines[line - 1 : line + row.count("\n")]).rstrip("\r\n") == row:
            return option
    return None
