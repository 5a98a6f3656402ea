"""Start-up cost: loading the code location, and the whole demo from an empty home.

    python benchmarks/startup.py [--repeat 3] [--no-demo]

Targets (the discovery issue): `import orchestration.definitions` under 3 s; `make demo` for this
graph under 2 minutes once the environment exists. Every multiprocess step and every webserver
reload re-imports the definitions, so their import cost is paid again and again.

- import: each in a fresh interpreter, best of N and median, against `import dagster` (the floor:
  a code location cannot load faster than the framework it defines things in), for both code
  locations of workspace.yaml: `orchestration.definitions` (the target) and
  `orchestration.marts_definitions` (the dbt marts: dagster_dbt and dbt-core, reported, no
  target). Both the import alone (timed inside the child) and the child's whole wall time are
  shown. The dbt manifest is prepared first (`make env` does the same), so no timed import parses.
- demo: `ventureloop demo` (what `make demo` runs once the environment is there) with a fresh
  VENTURELOOP_HOME and DAGSTER_HOME in a temporary directory, once.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import REPO, machine

IMPORT_TARGET_S = 3.0
DEMO_TARGET_S = 120.0
TIMED_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def timed_import(module: str) -> tuple[float, float]:
    """(seconds inside the child for the import, the child's whole wall time)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", TIMED_IMPORT.format(module=module)], cwd=REPO, check=True, capture_output=True, text=True
    )
    return float(done.stdout.strip().splitlines()[-1]), time.perf_counter() - started


LOCATIONS = ("orchestration.definitions", "orchestration.marts_definitions")


def imports(repeat: int) -> dict[str, list[tuple[float, float]]]:
    prepare = "from assets.ledger_marts.project import prepare_if_stale; prepare_if_stale()"
    subprocess.run([sys.executable, "-c", prepare], cwd=REPO, check=True, capture_output=True)
    results: dict[str, list[tuple[float, float]]] = {"dagster": [], **{module: [] for module in LOCATIONS}}
    for _ in range(repeat):  # interleaved, so that machine noise hits both alike
        for module in results:
            results[module].append(timed_import(module))
    return results


def demo() -> tuple[float, int, str]:
    home = Path(tempfile.mkdtemp(prefix="ventureloop-demo-"))
    env = {k: v for k, v in os.environ.items() if k not in ("WAREHOUSE_URL", "DAGSTER_POSTGRES_URL")}
    env.update(VENTURELOOP_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), DISCOVERY_MODE="snapshot")
    command = [str(Path(sys.executable).parent / "ventureloop"), "demo"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    # the CLI's own summary line: "run <id> succeeded in 41.2 s; ..."
    summary = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    return elapsed, done.returncode, (summary or (done.stdout + done.stderr).strip().splitlines()[-1:] or [""])[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh interpreters per import (default 3)")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo run")
    args = parser.parse_args()
    print(f"start-up: {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")

    results = imports(args.repeat)
    print(f"  {'fresh-interpreter import':33} {'best s':>8} {'median s':>9} {'best wall s':>12} {'median wall s':>14}")
    for module, runs in results.items():
        inside, wall = [r[0] for r in runs], [r[1] for r in runs]
        print(
            f"  {module:33} {min(inside):8.2f} {statistics.median(inside):9.2f} {min(wall):12.2f} "
            f"{statistics.median(wall):14.2f}"
        )
    floor = min(r[0] for r in results["dagster"])
    for module in LOCATIONS:
        ours = min(r[0] for r in results[module])
        verdict = (
            ""
            if module != "orchestration.definitions"
            else f"; target < {IMPORT_TARGET_S:.0f} s: {'met' if ours < IMPORT_TARGET_S else 'NOT met'}"
        )
        print(f"import {module}: best {ours:.2f} s = {ours / floor:.2f}x `import dagster` ({floor:.2f} s){verdict}")

    if args.no_demo:
        print("demo: skipped (--no-demo)")
        return 0
    elapsed, code, last_line = demo()
    print(
        f"ventureloop demo (fresh home, snapshots): {elapsed:.1f} s, exit {code}; target < {DEMO_TARGET_S:.0f} s: "
        f"{'met' if elapsed < DEMO_TARGET_S and code == 0 else 'NOT met'}"
    )
    print(f"  {last_line[:140]}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
