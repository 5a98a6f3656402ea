"""The inbox sensor: each new file dropped in $VENTURELOOP_HOME/inbox is imported once, then archived."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from assets.ledger import inbox_dir

# Files still being written by their producer: never pick them up half-written.
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")
REMEMBERED = 1000


def inbox_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and not p.name.startswith(".") and not p.name.endswith(PARTIAL_SUFFIXES))


def file_key(path: Path) -> str:
    """Content hash plus modification time: the same drop is launched once; the same content
    dropped again later is imported again (and books nothing: idempotency keys) and archived."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{digest}:{path.stat().st_mtime_ns}"


def build_inbox_sensor(job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(name="inbox_sensor", job=job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Imports each new file in the inbox (Stripe exports, API dumps, generic CSV).")
    def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen: list[str] = json.loads(context.cursor) if context.cursor else []
        requests = []
        for path in inbox_files(inbox_dir()):
            key = file_key(path)
            if key in seen:
                continue
            seen.append(key)
            requests.append(dg.RunRequest(
                run_key=key,
                run_config={"ops": {"ledger_entries": {"config": {"inbox_files": [str(path)],
                                                                  "simulate_payments": False}}}},
                tags={"ventureloop/inbox_file": path.name},
            ))
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen[-REMEMBERED:]))

    return inbox_sensor
