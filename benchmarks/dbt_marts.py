"""`dbt build` of every ledger mart over N postings (default 10,000,000) on DuckDB, against a
hand-written DuckDB query for revenue_summary over the same rows, in the same run.

    python benchmarks/dbt_marts.py [--postings 10000000] [--experiments 200] [--keep]

Target (the ledger issue): the dbt marts within 2x of the hand-written query.

- The ledger is generated inside DuckDB (range() and hash() pseudo-random values), straight into
  ledger.transactions / ledger.postings / ledger.accounts of a warehouse made by ensure_schema:
  balanced transactions (charges with their Stripe fee, ad spend, refunds, hosting, currency
  exchanges; about 2.6 postings each) in USD, EUR, GBP, JPY and CHF over `--experiments`
  experiments, appended in time order between 2026-09-01 and 2026-11-27 (the bundled ECB rates).
  The rates (core.ledger.fx.bundled_rates) and a few budgets are written by the product code
  (store_rates, set_budget). Generation is set-up and not timed.
- `dbt build` is the real CLI (`--profiles-dir dbt_project`, environment from
  core.platform.dbt_env.dbt_env_for): seed, every model and every test, on a fresh warehouse, so the
  incremental models do their first, full build. Its target and log paths are a temporary
  directory, so the project's own target/ (the manifest Dagster loads) is left alone. A `dbt
  parse` into that directory comes first (set-up, printed, not timed): a deployment parses once
  (`make env`) and dagster-dbt gives every run the saved partial parse, so no run pays a full parse.
- The hand-written query computes revenue_summary with the same rules as fct_postings (rate of
  the posting's UTC day or the nearest earlier one, at most 7 days old, through the euro, exact
  integer arithmetic rounded half to even per posting) into a table, with an ASOF join instead of
  dbt's join on per-day rates. It runs before and after dbt (best of the two counts), and its result is
  checked to equal dbt's analytics.revenue_summary row for row.
- Reported: dbt's wall time, and three ratios over the hand query: the whole `dbt build` (all
  marts, the tests and dbt's start-up, wall clock); the same build's models and tests alone (first
  node's start to last node's end, from run_results.json: dbt's start-up, ~5-10 s of imports and
  connecting, is a constant that does not grow with the data, so it is reported separately); and
  the models on revenue_summary's path (stg_postings -> fct_postings -> experiment_pnl ->
  revenue_summary), rebuilt alone. Peak RSS of this process and of the dbt process.
- `--dbt-project DIR` builds another copy of the project (before/after: `git archive <commit>
  dbt_project | tar -x -C DIR`), `--save-ledger` / `--ledger` re-use a generated ledger.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from _common import DATA_DIR, REPO, machine, peak_rss_mb

from core.ledger.budgets import set_budget
from core.ledger.fx import bundled_rates, store_rates
from core.ledger.money import CURRENCY_EXPONENTS
from core.platform.dbt_env import dbt_env_for
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

TARGET_RATIO = 2.0
DBT_PROJECT = REPO / "dbt_project"  # --dbt-project runs another copy (e.g. `git archive <commit> dbt_project`)
DBT = Path(sys.executable).parent / "dbt"
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")
REPORTING = "USD"
MAX_RATE_AGE_DAYS = 7
BUDGET_AS_OF = "2026-11-20T12:00:00+00:00"
POSTINGS_PER_10_TRANSACTIONS = 26  # 4 charges x 3, 3 ad spends x 2, refund 2, hosting 2, exchange 4


# -- the ledger, generated in SQL ------------------------------------------------------------------


def generate(warehouse: Warehouse, postings: int, experiments: int) -> dict[str, int]:
    transactions = max(10, postings * 10 // POSTINGS_PER_10_TRANSACTIONS)
    currency_of = " ".join(f"WHEN {n} THEN '{c}'" for n, c in enumerate(CURRENCIES))
    with warehouse.connect() as conn:
        conn.execute("SET preserve_insertion_order = false")
        # One row per transaction. h1..h3 are independent pseudo-random draws; occurred_at runs
        # forward with i (a ledger is appended in time order) with a few hours of jitter.
        conn.execute(f"""
            CREATE TEMP TABLE gen AS
            WITH base AS (
                SELECT i, i % 10 AS k,
                       hash(i * 3 + 1) AS h1, hash(i * 3 + 2) AS h2, hash(i * 3 + 3) AS h3,
                       md5(CAST(i AS VARCHAR) || ':vl-bench') AS md
                FROM range({transactions}) AS r(i)
            )
            SELECT i, k,
                   substr(md, 1, 8) || '-' || substr(md, 9, 4) || '-4' || substr(md, 14, 3) || '-8'
                       || substr(md, 18, 3) || '-' || substr(md, 21, 12) AS tid,
                   h1 % {experiments} AS e,
                   'exp-' || lpad(CAST(h1 % {experiments} AS VARCHAR), 4, '0') AS experiment,
                   CASE (h1 % {experiments}) % {len(CURRENCIES)} {currency_of} END AS cur,
                   CAST(500 + h2 % 49500 AS BIGINT) AS amount,
                   TIMESTAMPTZ '2026-09-01 00:00:00+00'
                       + to_microseconds(CAST(i * (86 * 86400000000 // {transactions})
                                              + h3 % 14400000000 AS BIGINT)) AS occurred_at
            FROM base
        """)
        conn.execute("""
            INSERT INTO ledger.transactions
            SELECT tid, 'bench:' || i, sha256(tid), kind, kind || ' ' || i,
                   CASE WHEN k <= 7 THEN experiment END, source, kind || '_' || i,
                   occurred_at, occurred_at + to_microseconds(CAST(i % 600000000 AS BIGINT)), NULL,
                   CASE WHEN k <= 3 THEN '{"stripe_type":"charge"}' ELSE '{}' END
            FROM (SELECT *,
                         CASE WHEN k <= 3 THEN 'charge' WHEN k <= 6 THEN 'spend' WHEN k = 7 THEN 'refund'
                              WHEN k = 8 THEN 'expense' ELSE 'fx' END AS kind,
                         CASE WHEN k <= 3 OR k = 7 THEN 'stripe' WHEN k <= 6 THEN 'ads' ELSE 'bank' END AS source
                  FROM gen)
            ORDER BY i
        """)
        # The postings of each kind; every transaction balances per currency. A posting's
        # experiment is its transaction's (core.ledger), so charges put their fee on the experiment.
        conn.execute("""
            INSERT INTO ledger.postings
            SELECT tid || '/' || line, tid, line, account_id, currency, amount_minor, experiment_id, occurred_at,
                   occurred_at + to_microseconds(CAST(i % 600000000 AS BIGINT))
            FROM (
                SELECT i, tid, 1 AS line, 'assets:cash:stripe:' || lower(cur) AS account_id, cur AS currency,
                       amount - (amount * 29 // 1000 + 30) AS amount_minor, experiment AS experiment_id, occurred_at
                FROM gen WHERE k <= 3
                UNION ALL
                SELECT i, tid, 2, 'expenses:fees:stripe', cur, amount * 29 // 1000 + 30, experiment, occurred_at
                FROM gen WHERE k <= 3
                UNION ALL
                SELECT i, tid, 3, 'revenue:experiment:' || experiment, cur, -amount, experiment, occurred_at
                FROM gen WHERE k <= 3
                UNION ALL
                SELECT i, tid, 1, 'expenses:ads:experiment:' || experiment, cur, amount // 4, experiment, occurred_at
                FROM gen WHERE k BETWEEN 4 AND 6
                UNION ALL
                SELECT i, tid, 2, 'liabilities:card:amex', cur, -(amount // 4), experiment, occurred_at
                FROM gen WHERE k BETWEEN 4 AND 6
                UNION ALL
                SELECT i, tid, 1, 'revenue:experiment:' || experiment, cur, amount, experiment, occurred_at
                FROM gen WHERE k = 7
                UNION ALL
                SELECT i, tid, 2, 'assets:cash:stripe:' || lower(cur), cur, -amount, experiment, occurred_at
                FROM gen WHERE k = 7
                UNION ALL
                SELECT i, tid, 1, 'expenses:infra:hosting', cur, amount, NULL, occurred_at FROM gen WHERE k = 8
                UNION ALL
                SELECT i, tid, 2, 'assets:cash:bank:' || lower(cur), cur, -amount, NULL, occurred_at
                FROM gen WHERE k = 8
                UNION ALL
                SELECT i, tid, 1, 'assets:cash:bank:usd', 'USD', -amount * 20, NULL, occurred_at FROM gen WHERE k = 9
                UNION ALL
                SELECT i, tid, 2, 'equity:fx-clearing', 'USD', amount * 20, NULL, occurred_at FROM gen WHERE k = 9
                UNION ALL
                SELECT i, tid, 3, 'assets:cash:bank:eur', 'EUR', amount * 17, NULL, occurred_at FROM gen WHERE k = 9
                UNION ALL
                SELECT i, tid, 4, 'equity:fx-clearing', 'EUR', -amount * 17, NULL, occurred_at FROM gen WHERE k = 9
            )
            ORDER BY i, line
        """)
        conn.execute("""
            INSERT INTO ledger.accounts
            SELECT account_id,
                   CASE split_part(account_id, ':', 1) WHEN 'assets' THEN 'asset' WHEN 'liabilities' THEN 'liability'
                        WHEN 'equity' THEN 'equity' WHEN 'revenue' THEN 'revenue' ELSE 'expense' END,
                   min(occurred_at)
            FROM ledger.postings GROUP BY account_id
        """)
        conn.execute("DROP TABLE gen")
        counts = {
            table: conn.execute(f"SELECT count(*) FROM ledger.{table}").fetchone()[0]
            for table in ("transactions", "postings", "accounts")
        }
    store_rates(warehouse, bundled_rates())
    at = datetime(2026, 9, 1, tzinfo=UTC)
    for scope, key, period, currency, limit in (
        ("global", "*", "day", "USD", 5_000_000),
        ("category", "ads", "month", "EUR", 20_000_000),
        ("category", "fees", "month", "USD", 1_000_000),
        ("experiment", "exp-0000", "day", "USD", 200_000),
        ("experiment", "exp-0001", "hour", "EUR", 50_000),
        ("experiment", "exp-0003", "month", "JPY", 900_000),
    ):
        set_budget(
            warehouse,
            scope=scope,
            scope_key=key,
            period=period,
            currency=currency,
            limit_minor=limit,
            changed_by="benchmark",
            reason="dbt benchmark",
            at=at,
        )
    with warehouse.connect() as conn:
        conn.execute("CHECKPOINT")
    counts["budgets"] = 6
    return counts


# -- the hand-written revenue_summary --------------------------------------------------------------


def hand_query() -> str:
    exponents = ", ".join(f"('{code}', {exp})" for code, exp in sorted(CURRENCY_EXPONENTS.items()))
    return f"""
        CREATE OR REPLACE TABLE bench.revenue_summary_hand AS
        WITH rates AS (
            SELECT rate_date, upper(currency) AS currency, CAST(round(per_eur * 1000000000) AS BIGINT) AS nano
            FROM ledger.fx_rates WHERE upper(currency) <> 'EUR'
        ),
        reporting_rates AS (SELECT rate_date, nano FROM rates WHERE currency = '{REPORTING}'),
        exponents(code, exponent) AS (VALUES {exponents}),
        pnl AS (
            SELECT transaction_id, experiment_id, currency, amount_minor, occurred_at,
                   split_part(account_id, ':', 1) = 'revenue' AS is_revenue,
                   CAST(occurred_at AT TIME ZONE 'UTC' AS DATE) AS day
            FROM ledger.postings
            WHERE experiment_id IS NOT NULL AND split_part(account_id, ':', 1) IN ('revenue', 'expenses')
        ),
        rated AS (
            SELECT pnl.*,
                   CASE WHEN pnl.currency = 'EUR' THEN 1000000000
                        WHEN pnl.day - cr.rate_date <= {MAX_RATE_AGE_DAYS} THEN cr.nano END AS cur_nano,
                   CASE WHEN '{REPORTING}' = 'EUR' THEN 1000000000
                        WHEN pnl.day - rr.rate_date <= {MAX_RATE_AGE_DAYS} THEN rr.nano END AS rep_nano
            FROM pnl
            ASOF LEFT JOIN rates AS cr ON cr.currency = pnl.currency AND pnl.day >= cr.rate_date
            ASOF LEFT JOIN reporting_rates AS rr ON pnl.day >= rr.rate_date
        ),
        fractions AS (
            SELECT rated.*,
                   CAST(amount_minor AS HUGEINT) * rep_nano * CAST(power(10, rep.exponent) AS BIGINT) AS num,
                   CAST(cur_nano AS HUGEINT) * CAST(power(10, cur.exponent) AS BIGINT) AS den
            FROM rated
            JOIN exponents AS cur ON cur.code = rated.currency
            JOIN exponents AS rep ON rep.code = '{REPORTING}'
        ),
        converted AS (
            SELECT transaction_id, experiment_id, occurred_at, is_revenue,
                   CASE WHEN currency = '{REPORTING}' THEN amount_minor
                        ELSE CAST(sign(num) * (abs(num) // den
                             + CASE WHEN 2 * (abs(num) % den) > den THEN 1
                                    WHEN 2 * (abs(num) % den) = den AND (abs(num) // den) % 2 = 1 THEN 1
                                    ELSE 0 END) AS BIGINT) END AS amount_reporting
            FROM fractions
        )
        SELECT experiment_id,
               CAST(-sum(CASE WHEN is_revenue THEN amount_reporting ELSE 0 END) AS BIGINT) AS total_revenue_cents,
               CAST(sum(CASE WHEN NOT is_revenue THEN amount_reporting ELSE 0 END) AS BIGINT) AS total_cost_cents,
               CAST(-sum(amount_reporting) AS BIGINT) AS net_profit_cents,
               count(DISTINCT transaction_id) AS event_count,
               max(occurred_at) AS last_event_at
        FROM converted
        GROUP BY experiment_id
    """


def run_hand_query(warehouse: Warehouse) -> tuple[float, int]:
    """Run the hand query (autocommit) and time it, connection set-up excluded."""
    import duckdb

    conn = duckdb.connect(warehouse.duckdb_path)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE SCHEMA IF NOT EXISTS bench")
        started = time.perf_counter()
        conn.execute(hand_query())
        seconds = time.perf_counter() - started
        rows = conn.execute("SELECT count(*) FROM bench.revenue_summary_hand").fetchone()[0]
    finally:
        conn.close()
    return seconds, rows


def compare_with_dbt(warehouse: Warehouse) -> str:
    """The hand query's rows against dbt's revenue_summary: both ways, every column."""
    columns = "experiment_id, total_revenue_cents, total_cost_cents, net_profit_cents, event_count, last_event_at"
    with warehouse.connect() as conn:
        only_hand = conn.execute(
            f"SELECT count(*) FROM (SELECT {columns} FROM bench.revenue_summary_hand "
            f"EXCEPT SELECT {columns} FROM analytics.revenue_summary)"
        ).fetchone()[0]
        only_dbt = conn.execute(
            f"SELECT count(*) FROM (SELECT {columns} FROM analytics.revenue_summary "
            f"EXCEPT SELECT {columns} FROM bench.revenue_summary_hand)"
        ).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM analytics.revenue_summary").fetchone()[0]
    if only_hand or only_dbt:
        raise AssertionError(
            f"the hand query and dbt disagree: {only_hand} rows only in the hand query, "
            f"{only_dbt} only in analytics.revenue_summary"
        )
    return f"identical to analytics.revenue_summary ({rows} experiments, every column)"


# -- dbt -------------------------------------------------------------------------------------------


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess, int]:
    """Run a command; wall seconds, its result and its peak RSS in MB (VmHWM, polled: ru_maxrss of
    a child would include this process's pages, which the child shares until it execs)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_kb = 0

    def poll() -> None:
        nonlocal peak_kb
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    watcher.join()
    return seconds, subprocess.CompletedProcess(command, process.returncode, stdout, stderr), peak_kb // 1024


def dbt_build(
    url: str, work: Path, project: Path, extra: list[str] | None = None, verb: str = "build"
) -> tuple[float, dict, int]:
    env = {**os.environ, **dbt_env_for(url), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    target = work / "dbt_target"
    command = [
        str(DBT),
        verb,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--target-path",
        str(target),
        "--log-path",
        str(work / "dbt_logs"),
        "--vars",
        json.dumps({"budget_as_of": BUDGET_AS_OF, "reporting_currency": REPORTING}),
        *(extra or []),
    ]
    seconds, done, peak_mb = run_measured(command, env)
    if done.returncode != 0:
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
        raise RuntimeError(f"dbt {verb} failed (exit {done.returncode})")
    results = json.loads((target / "run_results.json").read_text()) if verb != "parse" else {}
    return seconds, results, peak_mb


def node_span(results: dict) -> float:
    """Seconds from the first node's start to the last node's end: the models and tests, without
    dbt's start-up (imports, parse, connecting), which is a constant that does not grow with data."""
    times = [(t["started_at"], t["completed_at"]) for r in results["results"] for t in r["timing"]]
    starts = [datetime.fromisoformat(s.replace("Z", "+00:00")) for s, _ in times if s]
    ends = [datetime.fromisoformat(e.replace("Z", "+00:00")) for _, e in times if e]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def summarize(results: dict) -> dict:
    nodes = {}
    for result in results["results"]:
        unique_id = result["unique_id"]
        kind, name = unique_id.split(".")[0], unique_id.split(".")[2]
        nodes[unique_id] = (kind, name, result["execution_time"], result["status"])
    models = {name: t for kind, name, t, _ in nodes.values() if kind == "model"}
    return {
        "elapsed": results["elapsed_time"],
        "span": node_span(results),
        "models": models,
        "model_seconds": sum(models.values()),
        "test_seconds": sum(t for kind, _n, t, _s in nodes.values() if kind == "test"),
        "tests": sum(1 for kind, *_ in nodes.values() if kind == "test"),
        "slowest": sorted(((t, f"{kind} {name}") for kind, name, t, _ in nodes.values()), reverse=True)[:8],
        "statuses": sorted({s for *_r, s in nodes.values()}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=10_000_000)
    parser.add_argument("--experiments", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the warehouse (benchmarks/.data/dbt_marts_*)")
    parser.add_argument("--dbt-project", type=Path, default=DBT_PROJECT, help="the dbt project to build")
    parser.add_argument(
        "--ledger",
        type=Path,
        help="start from a copy of this generated ledger (set-up, not "
        "timed); made by --save-ledger, saves a minute or two per iteration",
    )
    parser.add_argument("--save-ledger", type=Path, help="save a copy of the generated ledger here, before dbt")
    args = parser.parse_args()
    project = args.dbt_project.resolve()

    print(f"dbt marts: {args.postings:,} postings on DuckDB; {machine()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = TemporaryDirectory(prefix="dbt_marts_", dir=DATA_DIR)
    work = Path(tmp.name)
    url = f"duckdb:///{work / 'warehouse.duckdb'}"
    warehouse = Warehouse(url)
    try:
        started = time.perf_counter()
        if args.ledger:
            shutil.copy(args.ledger, work / "warehouse.duckdb")
            with warehouse.connect() as conn:
                counts = {
                    table: conn.execute(f"SELECT count(*) FROM ledger.{table}").fetchone()[0]
                    for table in ("transactions", "postings", "accounts")
                }
        else:
            ensure_schema(warehouse)
            counts = generate(warehouse, args.postings, args.experiments)
            if args.save_ledger:
                shutil.copy(work / "warehouse.duckdb", args.save_ledger)
        size_mb = (work / "warehouse.duckdb").stat().st_size / 2**20
        print(
            f"{'copied' if args.ledger else 'generated'} {counts['transactions']:,} transactions, "
            f"{counts['postings']:,} postings, {counts['accounts']:,} accounts ({size_mb:,.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s (set-up, not timed); dbt project {project}"
        )

        # As deployed: `make env` parses the project once and dagster-dbt hands each run the saved
        # partial parse, so dbt's start-up is not a full parse. Set-up, not timed (printed).
        parse_seconds, _, _ = dbt_build(url, work, project, verb="parse")
        hand_before, _ = run_hand_query(warehouse)
        dbt_seconds, results, dbt_peak_mb = dbt_build(url, work, project)
        hand_after, hand_rows = run_hand_query(warehouse)
        agreement = compare_with_dbt(warehouse)
        # revenue_summary alone: its models, rebuilt from scratch, no tests (like for like with the hand query)
        path_wall, path_results, _ = dbt_build(
            url, work, project, ["--full-refresh", "--select", "+revenue_summary"], "run"
        )
        rerun_seconds, rerun_results, rerun_peak_mb = dbt_build(url, work, project)  # incremental: nothing new
    finally:
        if args.keep:
            kept = DATA_DIR / f"dbt_marts_{args.postings}.duckdb"
            shutil.move(str(work / "warehouse.duckdb"), kept)
            print(f"kept the warehouse: {kept}")
        tmp.cleanup()

    hand = min(hand_before, hand_after)
    summary, path, rerun = summarize(results), summarize(path_results), summarize(rerun_results)
    print(
        f"\ndbt parse (set-up, not timed: a deployment parses once; every timed command below re-uses it): "
        f"{parse_seconds:.1f} s"
    )
    print(
        f"hand-written revenue_summary (DuckDB SQL, {hand_rows} rows): {hand_before:.2f} s before dbt, "
        f"{hand_after:.2f} s after; best {hand:.2f} s"
    )
    print(f"  {agreement}")
    print(
        f"dbt build, first (full) build: {dbt_seconds:.1f} s wall, {summary['elapsed']:.1f} s inside dbt, "
        f"{summary['span']:.1f} s from the first node's start to the last node's end (dbt start-up "
        f"{dbt_seconds - summary['span']:.1f} s); {len(summary['models'])} models {summary['model_seconds']:.1f} s, "
        f"{summary['tests']} tests {summary['test_seconds']:.1f} s (summed node times overlap: dbt threads run "
        f"on {os.cpu_count()} cores); statuses {summary['statuses']}"
    )
    print("  slowest nodes: " + ", ".join(f"{name} {t:.1f} s" for t, name in summary["slowest"]))
    print(
        f"dbt run --full-refresh -s +revenue_summary (its {len(path['models'])} models, no tests): {path_wall:.1f} s "
        f"wall, {path['span']:.1f} s of nodes: " + ", ".join(f"{name} {t:.1f} s" for name, t in path["models"].items())
    )
    print(
        f"dbt build again, incremental with nothing new: {rerun_seconds:.1f} s wall, {rerun['span']:.1f} s of nodes "
        f"({rerun['model_seconds']:.1f} s models, {rerun['test_seconds']:.1f} s tests)"
    )
    ratios = (
        (f"whole dbt build (all marts + {summary['tests']} tests + dbt start-up, wall)", dbt_seconds / hand),
        ("dbt build's models and tests (first node start to last node end)", summary["span"] / hand),
        ("revenue_summary's models (first node start to last node end)", path["span"] / hand),
    )
    print()
    for name, ratio in ratios:
        print(
            f"ratio, {name} / hand query: {ratio:.1f}x "
            f"(target <= {TARGET_RATIO:.0f}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'})"
        )
    print(
        f"peak RSS: dbt {dbt_peak_mb:,} MB (incremental run {rerun_peak_mb:,} MB); this process (generation "
        f"and the hand query, DuckDB in-process) {peak_rss_mb():,.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
