"""The metrics endpoint's cost: one Prometheus scrape of `ventureloop metrics serve` against a DuckDB
warehouse with 1,000,000 postings, against the plain aggregate query measured in the same run.

    python benchmarks/metrics_scrape.py [--postings 1000000] [--repeat 15]

The warehouse is built by SQL inside DuckDB (a few seconds, cached in benchmarks/.data/): 1,000
experiments in every lifecycle state with their transitions and outcomes, postings in USD, EUR and
JPY over the last year on revenue, ad and fee accounts (1% of transactions reversed), five budgets,
quarantined fetch errors. Timed, each the median of --repeat runs:

- plain query: the revenue/cost GROUP BY over ledger.postings on a connection already open;
- plain query + connect: the same, opening and closing the read-only connection around it;
- collector read: everything a scrape reads (six queries on one fresh connection) into metric families;
- HTTP scrape: GET /metrics from the real server (prometheus_client's): with --cache-seconds 0 (each
  scrape reads, then answers), and above 0 (the default 5: a scrape answers from the last read and,
  when it is stale, starts the next read in the background), both with a read running behind every
  scrape (the worst case) and with none due.
The target: the HTTP scrape under 100 ms.
"""

import argparse
import os
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from _common import DATA_DIR, machine

from core.monitoring.metrics import MONEY_SQL, read_families, read_only_connection, serve
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

EXPERIMENTS = 1_000
# As of this instant the data ends; fixed so that a cached warehouse means the same thing each run.
END = "2026-12-01 00:00:00+00"


def build(path: Path, postings: int) -> None:
    """Fill a new warehouse by SQL: every table the collector reads, at the given size."""
    import duckdb

    warehouse = Warehouse(f"duckdb:///{path}")
    ensure_schema(warehouse)
    transactions = postings // 2
    conn = duckdb.connect(str(path))
    conn.execute("SET TimeZone = 'UTC'")
    states = "['proposed','approved','queued','running','paused','completed','failed','cancelled','rolled_back']"
    conn.execute(f"""
        INSERT INTO experiments.experiments (experiment_id, idempotency_key, content_hash, opportunity_id, title,
            hypothesis, category, score, currency, requested_budget_minor, allocated_budget_minor, success_criteria,
            playbook, state, state_seq, created_at, updated_at, started_at, finished_at)
        SELECT 'exp-' || i, 'key-' || i, 'hash', 'opp-' || i, 'title', 'hypothesis', 'saas', 0.5, 'USD', 10000, 10000,
            '{{}}', '{{}}', {states}[1 + (i % 9)], 1, TIMESTAMPTZ '{END}' - INTERVAL 200 DAY,
            TIMESTAMPTZ '{END}' - INTERVAL 1 DAY,
            CASE WHEN i % 9 >= 3 THEN TIMESTAMPTZ '{END}' - INTERVAL 100 DAY + i * INTERVAL 1 HOUR END,
            CASE WHEN i % 9 IN (5, 6, 8) THEN TIMESTAMPTZ '{END}' - INTERVAL 100 DAY + i * INTERVAL 1 HOUR
                + (1 + i % 40) * INTERVAL 1 DAY END
        FROM range({EXPERIMENTS}) t(i)""")
    conn.execute(f"""
        INSERT INTO experiments.outcomes (experiment_id, state, evaluated_at, succeeded, revenue_minor, cost_minor,
            net_minor, roi, duration_days, currency, criteria, reason)
        SELECT experiment_id, state, TIMESTAMPTZ '{END}', state = 'completed' AND hash(experiment_id) % 3 = 0,
            1000, 500, 500, (hash(experiment_id) % 400) / 100.0 - 1, 10, 'USD', '{{}}', 'benchmark'
        FROM experiments.experiments WHERE state IN ('completed', 'failed', 'rolled_back')""")
    # Every 100th transaction reverses the one before it; kinds cycle revenue, spend, fee.
    conn.execute(f"""
        INSERT INTO ledger.transactions (transaction_id, idempotency_key, content_hash, kind, description,
            experiment_id, source, external_ref, occurred_at, recorded_at, reverses_transaction_id, metadata)
        SELECT 'tx-' || i, 'tx-key-' || i, 'hash', ['revenue','spend','fee'][1 + i % 3], 'benchmark',
            CASE WHEN i % 3 < 2 THEN 'exp-' || (i % {EXPERIMENTS}) END,
            CASE WHEN i % 3 = 2 THEN 'stripe' ELSE 'simulator' END, NULL,
            TIMESTAMPTZ '{END}' - (i % 525600) * INTERVAL 1 MINUTE, TIMESTAMPTZ '{END}',
            CASE WHEN i % 100 = 99 THEN 'tx-' || (i - 1) END, '{{}}'
        FROM range({transactions}) t(i)""")
    conn.execute(f"""
        INSERT INTO ledger.postings (posting_id, transaction_id, line, account_id, currency, amount_minor,
            experiment_id, occurred_at, recorded_at)
        SELECT 'p-' || i || '-' || line, 'tx-' || i, line,
            CASE WHEN i % 3 = 0 THEN (CASE WHEN line = 0 THEN 'assets:cash:stripe:usd'
                                           ELSE 'revenue:experiment:exp-' || (i % {EXPERIMENTS}) END)
                 WHEN i % 3 = 1 THEN (CASE WHEN line = 0 THEN 'expenses:ads:experiment:exp-' || (i % {EXPERIMENTS})
                                           ELSE 'liabilities:card:amex' END)
                 ELSE (CASE WHEN line = 0 THEN 'expenses:fees:stripe' ELSE 'assets:cash:stripe:usd' END) END,
            ['USD','USD','EUR','JPY'][1 + (i // 3) % 4],
            (CASE WHEN line = 0 THEN 1 ELSE -1 END) * (CASE WHEN i % 100 = 99 THEN -1 ELSE 1 END)
                * (100 + (i * 7919) % 50000),
            CASE WHEN i % 3 < 2 THEN 'exp-' || (i % {EXPERIMENTS}) END,
            TIMESTAMPTZ '{END}' - (i % 525600) * INTERVAL 1 MINUTE, TIMESTAMPTZ '{END}'
        FROM range({transactions}) t(i), range(2) l(line)""")
    conn.execute(f"""
        INSERT INTO ledger.budgets (budget_id, scope, scope_key, period, currency, limit_minor, created_at)
        VALUES ('b-global-day', 'global', '*', 'day', 'USD', 5000000, TIMESTAMPTZ '{END}' - INTERVAL 300 DAY),
               ('b-ads-month', 'category', 'ads', 'month', 'USD', 90000000, TIMESTAMPTZ '{END}' - INTERVAL 300 DAY),
               ('b-ads-month-eur', 'category', 'ads', 'month', 'EUR', 90000000, TIMESTAMPTZ '{END}' - INTERVAL 300 DAY),
               ('b-exp-1', 'experiment', 'exp-1', 'month', 'USD', 200000, TIMESTAMPTZ '{END}' - INTERVAL 300 DAY),
               ('b-exp-4', 'experiment', 'exp-4', 'hour', 'USD', 20000, TIMESTAMPTZ '{END}' - INTERVAL 300 DAY)""")
    conn.execute("""
        INSERT INTO ledger.budget_limits SELECT budget_id, 1, limit_minor, created_at, 'benchmark', 'benchmark'
        FROM ledger.budgets""")
    conn.execute(f"""
        INSERT INTO quarantine.records (quarantine_id, stage, source, origin, reason, payload, payload_encoding,
            quarantined_at, replayed_at, run_id, pending_key)
        SELECT 'q-' || i, ['fetch','parse','normalize'][1 + i % 3], ['hackernews','github','producthunt'][1 + i % 3],
            'https://example.invalid/' || i, 'HTTP 503', '', 'utf-8', TIMESTAMPTZ '{END}',
            CASE WHEN i % 4 = 0 THEN TIMESTAMPTZ '{END}' END, NULL, CASE WHEN i % 4 <> 0 THEN 'k-' || i END
        FROM range(3000) t(i)""")
    conn.execute(f"""
        INSERT INTO raw.responses (response_id, source, mode, request_url, status_code, content_type, body_bytes,
            fetched_at, run_id)
        SELECT 'r-' || i, ['hackernews','github','producthunt','devto'][1 + i % 4], 'snapshot', 'https://x.invalid',
            200, 'application/json', 1000, TIMESTAMPTZ '{END}', NULL
        FROM range(20000) t(i)""")
    conn.execute("CHECKPOINT")
    conn.close()


def median_seconds(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    cached = DATA_DIR / f"metrics-{args.postings}.duckdb"
    if not cached.is_file():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        partial = cached.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(partial, args.postings)
        partial.rename(cached)
        print(f"built {cached} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    work = DATA_DIR / f"metrics-{args.postings}-run.duckdb"
    shutil.copyfile(cached, work)
    warehouse = Warehouse(f"duckdb:///{work}")
    as_of = datetime.fromisoformat(END.replace("+00", "+00:00")).replace(tzinfo=UTC)

    with read_only_connection(warehouse) as conn:
        count = conn.execute("SELECT count(*) FROM ledger.postings").fetchone()[0]
        conn.execute(MONEY_SQL).fetchall()  # warm the file's pages, as a second scrape finds them
        plain = median_seconds(lambda: conn.execute(MONEY_SQL).fetchall(), args.repeat)

    def plain_with_connect() -> None:
        with read_only_connection(warehouse) as conn:
            conn.execute(MONEY_SQL).fetchall()

    with_connect = median_seconds(plain_with_connect, args.repeat)
    families = read_families(warehouse, as_of)
    collector = median_seconds(lambda: read_families(warehouse, as_of), args.repeat)

    def http_median(cache_seconds: float) -> tuple[float, int]:
        server, _thread = serve(warehouse, host="127.0.0.1", port=0, cache_seconds=cache_seconds)
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        try:
            with httpx.Client() as client:
                body = client.get(url).text  # the first scrape, as every later one, reads (cache 0) or fills the cache
                found = {s.name: s.value for f in text_string_to_metric_families(body) for s in f.samples}
                assert found["ventureloop_warehouse_up"] == 1, "the endpoint could not read the warehouse"
                return median_seconds(lambda: client.get(url).raise_for_status(), args.repeat), len(found)
        finally:
            server.shutdown()
            server.server_close()

    http, _ = http_median(0)
    behind, _ = http_median(1e-9)  # every scrape answers from the last read and starts the next one
    cached, _ = http_median(3600)
    with httpx.Client() as client:  # the size of one body, parsed once (Prometheus parses, not the endpoint)
        server, _thread = serve(warehouse, host="127.0.0.1", port=0)
        body = client.get(f"http://127.0.0.1:{server.server_port}/metrics").text
        server.shutdown()
        server.server_close()
    samples = sum(len(f.samples) for f in text_string_to_metric_families(body))
    work.unlink(missing_ok=True)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"metrics scrape: {count:,} postings, {EXPERIMENTS:,} experiments; {machine()}; load average {load}")
    print(
        f"  {len(families)} warehouse metric families, {samples:,} samples ({len(body) / 1024:.0f} KiB) in the "
        f"HTTP body; median of {args.repeat}"
    )
    print(f"  {'measurement':48} {'ms':>9} {'x plain':>8}")
    for name, seconds in (
        ("plain revenue/cost GROUP BY (open connection)", plain),
        ("plain query + read-only connect/close", with_connect),
        ("collector read (6 queries, fresh connection)", collector),
        ("HTTP scrape, cache 0: reads, then answers", http),
        ("HTTP scrape, cache > 0, a read running behind it", behind),
        ("HTTP scrape, cache > 0, no read due", cached),
    ):
        print(f"  {name:48} {seconds * 1000:9.1f} {seconds / plain:8.2f}")
    for mode, seconds in (("cache 0", http), ("default, a read behind", behind)):
        verdict = "met" if seconds < 0.1 else "NOT met"
        print(f"  target: a scrape under 100 ms with {count:,} postings ({mode}): {seconds * 1000:.1f} ms, {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
