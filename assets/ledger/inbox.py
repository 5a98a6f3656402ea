"""The inbox sensor: the files dropped in the inbox since its last poll are imported by one run,
then archived. Each file is launched once (its content hash and modification time are remembered
in the cursor); the run's key is made of the files' keys, so a launch cannot be repeated either.
A run that failed or was canceled is launched again for its files still in the inbox, under a new
run key, up to MAX_ATTEMPTS times; the cursor remembers each launch until its run has ended."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from assets.resources import LedgerInputsResource

# Files still being written by their producer: never pick them up half-written.
PARTIAL_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial")
REMEMBERED = 1000
LAUNCHES_WATCHED = 100  # launches whose run has not ended yet, looked up once a tick each
MAX_ATTEMPTS = 3
RUN_KEY_TAG = "dagster/run_key"  # the tag Dagster gives a run launched from a run request's key
RETRIED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
ENDED = (*RETRIED, dg.DagsterRunStatus.SUCCESS)


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
        seen, launched = _cursor(context.cursor)
        present: dict[str, Path] = {}
        for path in inbox_files(ledger_inputs.inbox):
            present.setdefault(file_key(path), path)
        requests = []
        for run_key, launch in list(launched.items()):
            runs = context.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
            if not runs or runs[0].status not in ENDED:
                continue  # not started yet, or still running
            del launched[run_key]
            left = {key: present[key] for key in launch["keys"] if key in present}
            if runs[0].status in RETRIED and left and launch["attempt"] < MAX_ATTEMPTS:
                requests.append(_request(left, launch["attempt"] + 1, launched))
        new = {key: path for key, path in present.items() if key not in seen}
        if new:
            requests.append(_request(new, 1, launched))
        recent = dict(list(launched.items())[-LAUNCHES_WATCHED:])
        cursor = json.dumps({"seen": [*seen, *new][-REMEMBERED:], "launched": recent})
        if not requests:
            return dg.SensorResult(skip_reason=f"no new files in {ledger_inputs.inbox}", cursor=cursor)
        return dg.SensorResult(run_requests=requests, cursor=cursor)

    return inbox_sensor


def _cursor(text: str | None) -> tuple[list[str], dict[str, dict]]:
    """(file keys seen, run key -> {keys, attempt} of the launches whose run has not ended)."""
    state = json.loads(text) if text else []
    if isinstance(state, list):  # the cursor before retries: only the keys seen
        return state, {}
    return state["seen"], state["launched"]


def _request(files: dict[str, Path], attempt: int, launched: dict[str, dict]) -> dg.RunRequest:
    keys = sorted(files)
    run_key = hashlib.sha256(("\n".join(keys) + (f"\nattempt {attempt}" if attempt > 1 else "")).encode()).hexdigest()
    launched[run_key] = {"keys": keys, "attempt": attempt}
    return dg.RunRequest(
        run_key=run_key,
        run_config={
            "ops": {
                "ledger_entries": {
                    "config": {
                        "inbox_files": [str(files[key]) for key in keys],
                        "pull_stripe_api": False,
                    }
                }
            }
        },
        tags={"ventureloop/inbox_files": str(len(files)), "ventureloop/inbox_attempt": str(attempt)},
    )
