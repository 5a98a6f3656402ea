"""The inbox sensor: the files dropped in the inbox since its last poll are imported by one run,
then archived. Each file is launched once (its content hash and modification time are remembered
in the cursor); the run's key is made of the files' keys, so a launch cannot be repeated either."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from assets.resources import LedgerInputsResource

# Files still being written by their producer: never pick them up half-written.
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")
REMEMBERED = 1000


def inbox_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(PARTIAL_SUFFIXES)
    )


def file_key(path: Path) -> str:
    """Content hash plus modification time: the same drop is launched once; the same content
    dropped again later is imported again (and books nothing: idempotency keys) and archived."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{digest}:{path.stat().st_mtime_ns}"


def build_inbox_sensor(job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(
        name="inbox_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Imports the files new in the inbox (Stripe exports, API dumps, generic CSV), "
        "all of one poll in one run.",
    )
    def inbox_sensor(context: dg.SensorEvaluationContext, ledger_inputs: LedgerInputsResource) -> dg.SensorResult:
        seen: list[str] = json.loads(context.cursor) if context.cursor else []
        new: dict[str, Path] = {}
        for path in inbox_files(ledger_inputs.inbox):
            key = file_key(path)
            if key not in seen and key not in new:
                new[key] = path
        if not new:
            return dg.SensorResult(skip_reason=f"no new files in {ledger_inputs.inbox}")
        run_key = hashlib.sha256("\n".join(sorted(new)).encode()).hexdigest()
        request = dg.RunRequest(
            run_key=run_key,
            run_config={
                "ops": {
                    "ledger_entries": {
                        "config": {
                            "inbox_files": [str(p) for p in new.values()],
                            "simulate_payments": False,
                            "pull_stripe_api": False,
                        }
                    }
                }
            },
            tags={"ventureloop/inbox_files": str(len(new))},
        )
        return dg.SensorResult(run_requests=[request], cursor=json.dumps([*seen, *new][-REMEMBERED:]))

    return inbox_sensor
