"""Run every benchmark in its own interpreter (so that peak memory and imports are each one's own).

    python benchmarks/run_all.py           # the issue's sizes: 1,000,000 rows; 100,000 against 1,000,000;
                                           # the bandit at T = 100,000 over 20 seeds
    python benchmarks/run_all.py --quick   # CI-size sanity: 20,000 rows; 2,000 against 20,000; no demo;
                                           # the bandit at T = 10,000 over 5 seeds

Each script prints its rates and its ratio to a baseline measured in the same run; absolute times
on a shared 2-core machine are noise, ratios much less so. The first full run also generates the
raw data and the LSH index into benchmarks/.data/ (git-ignored), which takes a few minutes.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, skip the demo")
    args = parser.parse_args()
    if args.quick:
        runs = [
            ["opportunities_pipeline.py", "--rows", "20000"],
            ["near_duplicates.py", "--index", "20000", "--new", "2000"],
            ["startup.py", "--repeat", "2", "--no-demo"],
            ["ledger_write.py", "--postings", "20000"],
            ["dbt_marts.py", "--postings", "200000"],
            ["orchestration.py", "--quick"],
            ["bandit_regret.py", "--quick"],
            ["predictors.py", "--quick"],
            ["closed_loop.py", "--quick"],
            ["forecast.py", "--quick"],
            ["forecast_lstm.py"],
            ["anomalies.py", "--quick"],
            ["metrics_scrape.py", "--postings", "100000"],
        ]
    else:
        runs = [
            ["opportunities_pipeline.py"],
            ["near_duplicates.py"],
            ["startup.py"],
            ["ledger_write.py"],
            ["dbt_marts.py"],
            ["orchestration.py"],
            ["bandit_regret.py"],
            ["predictors.py"],
            ["closed_loop.py"],
            ["forecast.py"],
            ["forecast_lstm.py"],  # exits 0 at once without torch (a throwaway venv: its docstring)
            ["anomalies.py"],
            ["metrics_scrape.py"],
        ]
    failed = []
    for script, *options in runs:
        print(f"\n=== {script} {' '.join(options)}", flush=True)
        started = time.perf_counter()
        code = subprocess.run([sys.executable, str(HERE / script), *options], cwd=HERE.parent).returncode
        print(f"=== {script}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
