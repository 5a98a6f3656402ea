"""Prometheus metrics read from the warehouse on each scrape (`ventureloop metrics serve`).

`WarehouseCollector` is a prometheus_client custom collector: a read of the warehouse (made for a
scrape, see WarehouseCollector for when) opens one short connection, runs six aggregate queries in
one read-only transaction (a consistent snapshot), closes it, and turns the rows into metric
families. docs/metrics.md is the catalogue; the definitions:

- revenue_total_cents{currency, experiment}: minus the sum of every posting on a `revenue:*`
  account (revenue is credits, debit > 0 / credit < 0), cost_total_cents the sum of every posting on
  an `expenses:*` account: all time, reversals (refunds) included, in the posting's own currency's
  minor units (cents for USD and EUR, yen for JPY), unconverted. `experiment` is the posting's
  experiment_id, "" for money no experiment carries (Stripe fees, hosting). The same rule as dbt's
  experiment_pnl, before its conversion to the reporting currency.
- experiments{state} and active_experiments (state running) from experiments.experiments.
- experiment_duration_seconds{state}: started_at to finished_at of finished experiments, exactly as
  core.experiments.outcomes.finished_experiments (the executor's stamps, else the transitions), in
  the environment's clock (simulated time under the simulator).
- experiments_finished, experiments_succeeded, experiment_success_ratio and the experiment_roi
  histogram from experiments.outcomes (record_outcomes: one row per finished experiment).
- budget_*{budget_id, ...}: each budget's spend in the window containing the scrape's instant, by
  the rules of core.ledger.budgets (debits to expenses in the window, less reversals of spends
  dated in it; Stripe's fees never count), against its current limit.
- source_fetch_errors_total{source}: quarantine.records of stage "fetch" (core.discovery.fetch
  quarantines every failed request there, once per distinct failure); quarantine_pending{source,
  stage}: records of any stage not replayed yet.

A warehouse that is missing, unreachable or locked never fails a scrape: the scrape says
ventureloop_warehouse_up 0, logs why (one JSON line), and repeats the last snapshot it did read,
with its age in ventureloop_metrics_snapshot_age_seconds. DuckDB: the file is opened read-only and
only for the read (a few tens of milliseconds), never created; a writer (a pipeline run) that has it
open makes the read fail at once instead of waiting; a writer that opens the file during a read
waits it out (core.platform.warehouse.LOCK_WAIT_SECONDS).
`cache_seconds` above 0 answers every scrape from the last read and refreshes it in the background
once it is older than that (WarehouseCollector), so a scrape costs only the exposition.
"""

import bisect
import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from core.experiments.lifecycle import RUNNING, STATES
from core.experiments.outcomes import FINISHED_STATES
from core.ledger.budgets import UNBUDGETED_SOURCES, window
from core.platform.warehouse import Warehouse, run_sql

log = logging.getLogger(__name__)

PREFIX = "ventureloop_"
# In Prometheus' exporter port range; the graphite exporter defaults to it too (--port if both run on one host).
DEFAULT_PORT = 9108
# Experiments last minutes (live steps) to weeks (the simulator's windows): seconds, up to 90 days.
DURATION_BUCKETS: tuple[float, ...] = (
    60,
    600,
    3_600,
    6 * 3_600,
    86_400,
    3 * 86_400,
    7 * 86_400,
    14 * 86_400,
    30 * 86_400,
    60 * 86_400,
    90 * 86_400,
)
# ROI = (revenue - cost) / cost: -1 is every cent lost, 0 break-even.
ROI_BUCKETS: tuple[float, ...] = (-1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 1, 2, 5, 10)

# Every metric the collector exports (without PREFIX; a histogram by its base name), with its type:
# the dashboard test holds the Grafana queries to this list.
METRICS: dict[str, str] = {
    "revenue_total_cents": "gauge",
    "cost_total_cents": "gauge",
    "experiments": "gauge",
    "active_experiments": "gauge",
    "experiment_duration_seconds": "histogram",
    "experiments_finished": "gauge",
    "experiments_succeeded": "gauge",
    "experiment_success_ratio": "gauge",
    "experiment_roi": "histogram",
    "budget_limit_cents": "gauge",
    "budget_spent_cents": "gauge",
    "budget_utilization_ratio": "gauge",
    "source_fetch_errors": "counter",
    "quarantine_pending": "gauge",
    "warehouse_up": "gauge",
    "metrics_read_seconds": "gauge",
    "metrics_snapshot_age_seconds": "gauge",
}

# starts_with (DuckDB, PostgreSQL 11+): a third faster than LIKE 'revenue:%' on DuckDB, measured here.
MONEY_SQL = """
SELECT CASE WHEN starts_with(account_id, 'revenue:') THEN 'revenue' ELSE 'expenses' END AS root,
       currency, coalesce(experiment_id, '') AS experiment, CAST(sum(amount_minor) AS BIGINT) AS total
FROM ledger.postings
WHERE starts_with(account_id, 'revenue:') OR starts_with(account_id, 'expenses:')
GROUP BY 1, 2, 3
"""

STATES_SQL = "SELECT state, count(*) FROM experiments.experiments GROUP BY state"

# core.experiments.outcomes.finished_experiments' start and finish, as seconds.
DURATIONS_SQL = """
SELECT state, extract(epoch FROM finished_at) - extract(epoch FROM started_at) AS seconds FROM (
    SELECT e.state,
        coalesce(e.started_at, (SELECT min(t.transitioned_at) FROM experiments.transitions t
            WHERE t.experiment_id = e.experiment_id AND t.to_state = %s)) AS started_at,
        coalesce(e.finished_at, (SELECT max(t.transitioned_at) FROM experiments.transitions t
            WHERE t.experiment_id = e.experiment_id AND t.to_state = e.state)) AS finished_at
    FROM experiments.experiments e WHERE e.state IN ({marks})
) finished
WHERE started_at IS NOT NULL AND finished_at IS NOT NULL
"""

OUTCOMES_SQL = "SELECT succeeded, roi FROM experiments.outcomes"

BUDGETS_SQL = (
    "SELECT budget_id, scope, scope_key, period, currency, limit_minor FROM ledger.budget_current ORDER BY budget_id"
)

# core.ledger.budgets' spend rules for every budget at once: `windows` is one VALUES row per budget
# (its current window, computed in Python by budgets.window). Spend is debits to expenses counted
# at their own occurred_at, plus reversals' credits counted at their original's occurred_at; each
# half is cut to [earliest window start, latest window end) before its join, which took the query
# from 100 ms to a few over 1,000,000 postings (benchmarks/metrics_scrape.py).
BUDGET_SPEND_SQL = """
WITH windows (budget_id, window_start, window_end) AS (VALUES {values}),
spend AS (
    SELECT p.currency, split_part(p.account_id, ':', 2) AS category, p.experiment_id, p.amount_minor,
           p.occurred_at AS counted_at
    FROM ledger.postings p
    JOIN ledger.transactions t ON t.transaction_id = p.transaction_id
    WHERE starts_with(p.account_id, 'expenses:') AND p.amount_minor > 0
      AND p.occurred_at >= %s AND p.occurred_at < %s
      AND t.occurred_at >= %s AND t.occurred_at < %s  -- a posting's occurred_at is its transaction's
      AND t.reverses_transaction_id IS NULL AND t.source NOT IN ({unbudgeted})
    UNION ALL
    SELECT p.currency, split_part(p.account_id, ':', 2), p.experiment_id, p.amount_minor, o.occurred_at
    FROM ledger.transactions t
    JOIN ledger.transactions o ON o.transaction_id = t.reverses_transaction_id
    JOIN ledger.postings p ON p.transaction_id = t.transaction_id
    WHERE t.reverses_transaction_id IS NOT NULL AND t.source NOT IN ({unbudgeted})
      AND o.occurred_at >= %s AND o.occurred_at < %s
      AND starts_with(p.account_id, 'expenses:') AND p.amount_minor < 0
)
SELECT b.budget_id, CAST(coalesce(sum(s.amount_minor), 0) AS BIGINT)
FROM ledger.budgets b
JOIN windows w ON w.budget_id = b.budget_id
LEFT JOIN spend s ON s.currency = b.currency
    AND (b.scope = 'global' OR (b.scope = 'category' AND s.category = b.scope_key)
         OR (b.scope = 'experiment' AND s.experiment_id = b.scope_key))
    AND s.counted_at >= w.window_start AND s.counted_at < w.window_end
GROUP BY b.budget_id
"""

QUARANTINE_SQL = """
SELECT source, stage, count(*) AS records, sum(CASE WHEN replayed_at IS NULL THEN 1 ELSE 0 END) AS pending
FROM quarantine.records GROUP BY source, stage
"""

# Sources that fetched at least once (or have quarantined records): their fetch-error counter is
# exported as 0 before their first error, so that rate() and increase() see the first one.
SOURCES_SQL = "SELECT source FROM raw.responses GROUP BY source"


class MetricsError(RuntimeError):
    """The warehouse could not be read; the message says which one, why, and what to do."""


def _name(metric: str) -> str:
    return PREFIX + metric


def _histogram(
    name: str,
    documentation: str,
    bounds: Sequence[float],
    series: dict[tuple[str, ...], list[float]],
    labels: list[str],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(_name(name), documentation, labels=labels)
    for key, values in sorted(series.items()):
        counts = [0] * (len(bounds) + 1)
        for value in values:
            counts[bisect.bisect_left(bounds, value)] += 1  # le is inclusive: value <= bound
        cumulative, buckets = 0, []
        for bound, count in zip([*bounds, math.inf], counts, strict=True):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))  # as prometheus_client's own: "1.0", "+Inf"
        family.add_metric(list(key), buckets, sum_value=float(math.fsum(values)))
    return family


def read_families(warehouse: Warehouse, now: datetime | None = None) -> list[Metric]:
    """Every warehouse metric family, from one read-only connection (see the module docstring).
    Raises MetricsError naming the warehouse and the reason when it cannot be read."""
    now = now or datetime.now(UTC)
    try:
        with read_only_connection(warehouse) as conn:
            return _families(conn, now)
    except MetricsError:
        raise
    except Exception as error:  # any driver error is a reason for up 0, never a crash
        raise MetricsError(_explain(warehouse, error)) from error


def _explain(warehouse: Warehouse, error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    where = warehouse.describe()
    if "Could not set lock" in text or "Conflicting lock" in text:
        return (
            f"the DuckDB warehouse {warehouse.duckdb_path} is open for writing by another process (a pipeline "
            "run): a DuckDB file has one writer and no readers meanwhile; the next scrape tries again"
        )
    if "does not exist" in text or "Catalog Error" in text or "UndefinedTable" in type(error).__name__:
        return (
            f"{where} lacks a table the metrics read ({text}): set it up with `make demo` or any `ventureloop` command"
        )
    return f"cannot read {where}: {type(error).__name__}: {text}"


@contextlib.contextmanager
def read_only_connection(warehouse: Warehouse, connect_timeout: int = 3) -> Iterator[Any]:
    """A short read-only connection in one transaction: DuckDB read_only=True (never creates or
    writes the file), PostgreSQL a READ ONLY REPEATABLE READ transaction (one snapshot for all the
    queries) with a connect timeout, so that an unreachable server costs seconds, not minutes."""
    if warehouse.backend == "duckdb":
        if not warehouse.exists():
            raise MetricsError(
                f"no warehouse at {warehouse.duckdb_path}: create it with `make demo`, or point "
                "WAREHOUSE_URL or VENTURELOOP_HOME at an existing one"
            )
        import duckdb

        # One thread: measured faster for these small aggregates on a busy 2-core machine (the
        # pipeline has the other cores), and a scrape never competes with a run for all of them.
        conn = duckdb.connect(warehouse.duckdb_path, read_only=True, config={"threads": 1})
        try:
            conn.execute("BEGIN TRANSACTION")
            yield conn
        finally:
            conn.close()  # a read-only transaction has nothing to commit
        return
    import psycopg

    with psycopg.connect(warehouse.postgres_dsn, connect_timeout=connect_timeout) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            yield conn
        finally:
            conn.rollback()  # nothing was written; ends the snapshot


def _families(conn: Any, now: datetime) -> list[Metric]:
    families: list[Metric] = []

    revenue = GaugeMetricFamily(
        _name("revenue_total_cents"),
        "Revenue booked, all time: minus the sum of the postings on revenue:* accounts, refunds "
        "(reversals) included, in minor units of the currency label (unconverted).",
        labels=["currency", "experiment"],
    )
    cost = GaugeMetricFamily(
        _name("cost_total_cents"),
        "Cost booked, all time: the sum of the postings on expenses:* accounts, reversals included, "
        "in minor units of the currency label (unconverted).",
        labels=["currency", "experiment"],
    )
    for root, currency, experiment, total in sorted(run_sql(conn, MONEY_SQL, None).fetchall()):
        if root == "revenue":
            revenue.add_metric([currency, experiment], float(-int(total)))
        else:
            cost.add_metric([currency, experiment], float(int(total)))
    families += [revenue, cost]

    by_state = dict.fromkeys(STATES, 0)
    for state, count in run_sql(conn, STATES_SQL, None).fetchall():
        by_state[state] = int(count)
    experiments = GaugeMetricFamily(_name("experiments"), "Experiments in each lifecycle state.", labels=["state"])
    for state, count in by_state.items():
        experiments.add_metric([state], count)
    families += [
        experiments,
        GaugeMetricFamily(_name("active_experiments"), "Experiments running now (state running).", by_state[RUNNING]),
    ]

    marks = ", ".join(["%s"] * len(FINISHED_STATES))
    durations: dict[tuple[str, ...], list[float]] = {(state,): [] for state in FINISHED_STATES}
    for state, seconds in run_sql(conn, DURATIONS_SQL.format(marks=marks), [RUNNING, *FINISHED_STATES]).fetchall():
        durations[(state,)].append(float(seconds))
    families.append(
        _histogram(
            "experiment_duration_seconds",
            "Start to finish of finished experiments, by final state (the environment's clock).",
            DURATION_BUCKETS,
            durations,
            ["state"],
        )
    )

    outcomes = run_sql(conn, OUTCOMES_SQL, None).fetchall()
    succeeded = sum(1 for ok, _ in outcomes if ok)
    families += [
        GaugeMetricFamily(
            _name("experiments_finished"), "Finished experiments with an outcome (experiments.outcomes).", len(outcomes)
        ),
        GaugeMetricFamily(
            _name("experiments_succeeded"), "Finished experiments that met their success criteria.", succeeded
        ),
    ]
    ratio = GaugeMetricFamily(
        _name("experiment_success_ratio"),
        "experiments_succeeded / experiments_finished (absent while none has finished).",
    )
    if outcomes:
        ratio.add_metric([], succeeded / len(outcomes))
    families.append(ratio)
    families.append(
        _histogram(
            "experiment_roi",
            "ROI ((revenue - cost) / cost, reporting currency) of finished experiments that booked a cost.",
            ROI_BUCKETS,
            {(): [float(roi) for _, roi in outcomes if roi is not None and not math.isnan(roi)]},
            [],
        )
    )

    families += _budget_families(conn, now)

    fetch_errors = CounterMetricFamily(
        _name("source_fetch_errors"),
        "Failed fetches of a discovery source (quarantine.records, stage fetch), all time.",
        labels=["source"],
    )
    pending = GaugeMetricFamily(
        _name("quarantine_pending"), "Quarantined records not replayed yet.", labels=["source", "stage"]
    )
    errors = {source: 0 for (source,) in run_sql(conn, SOURCES_SQL, None).fetchall()}
    for source, stage, records, waiting in sorted(run_sql(conn, QUARANTINE_SQL, None).fetchall()):
        errors.setdefault(source, 0)
        if stage == "fetch":
            errors[source] = int(records)
        pending.add_metric([source, stage], int(waiting))
    for source, count in sorted(errors.items()):
        fetch_errors.add_metric([source], count)
    families += [fetch_errors, pending]
    return families


def _budget_families(conn: Any, now: datetime) -> list[Metric]:
    labels = ["budget_id", "scope", "scope_key", "period", "currency"]
    limit = GaugeMetricFamily(_name("budget_limit_cents"), "Each budget's current limit, minor units.", labels=labels)
    spent = GaugeMetricFamily(
        _name("budget_spent_cents"),
        "Spend counted against each budget in its current window, minor units.",
        labels=labels,
    )
    utilization = GaugeMetricFamily(
        _name("budget_utilization_ratio"),
        "budget_spent_cents / budget_limit_cents in the current UTC hour, day or month (absent for a 0 limit).",
        labels=labels,
    )
    budgets = run_sql(conn, BUDGETS_SQL, None).fetchall()
    if budgets:
        values, params, windows = [], [], []
        for budget_id, _scope, _key, period, _currency, _limit in budgets:
            start, end = window(period, now)
            values.append("(%s, CAST(%s AS TIMESTAMPTZ), CAST(%s AS TIMESTAMPTZ))")
            params += [budget_id, start, end]
            windows.append((start, end))
        lo, hi = min(w[0] for w in windows), max(w[1] for w in windows)
        sql = BUDGET_SPEND_SQL.format(values=", ".join(values), unbudgeted=", ".join(["%s"] * len(UNBUDGETED_SOURCES)))
        spend = dict(
            run_sql(conn, sql, [*params, lo, hi, lo, hi, *UNBUDGETED_SOURCES, *UNBUDGETED_SOURCES, lo, hi]).fetchall()
        )
        for budget_id, scope, scope_key, period, currency, limit_minor in budgets:
            key = [budget_id, scope, scope_key, period, currency]
            used = int(spend.get(budget_id, 0))
            limit.add_metric(key, int(limit_minor))
            spent.add_metric(key, used)
            if int(limit_minor) > 0:
                utilization.add_metric(key, used / int(limit_minor))
    return [limit, spent, utilization]


@dataclass
class _Snapshot:
    families: list[Metric]
    read_at: float  # time.monotonic()
    read_seconds: float


@dataclass(eq=False)  # identity-hashed: the registry keys its collectors by them
class WarehouseCollector(Collector):
    """Reads the warehouse when scraped. cache_seconds 0: every scrape reads, and answers with what
    it read. Above 0: a scrape answers at once with the last read while it is younger than that;
    the first scrape that finds it older still answers with it, and starts a new read in the
    background for the next scrape (stale-while-revalidate). So a scrape never waits for the
    warehouse (a slow PostgreSQL, a large ledger) except the very first, values are at most one
    scrape interval old (metrics_snapshot_age_seconds says how old), and the warehouse is still
    read only when someone scrapes, never on a timer."""

    warehouse: Warehouse
    cache_seconds: float = 0.0
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)  # budget windows contain this instant
    _snapshot: _Snapshot | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _refresh: threading.Thread | None = field(default=None, init=False, repr=False)
    _reading: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    up: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False)

    def describe(self) -> list[Metric]:
        # Registering calls describe() (never collect()), so registration does not read the warehouse.
        return []

    def read(self) -> None:
        """Read the warehouse now and keep the result (or, on failure, keep the last one and say why)."""
        started = self.clock()
        try:
            families = read_families(self.warehouse, self.now())
        except MetricsError as error:
            with self._lock:
                self.up = 0
                if str(error) != self.last_error:  # one line per new reason, not one per scrape
                    log.warning(json.dumps({"event": "metrics_warehouse_unreadable", "reason": str(error)}))
                self.last_error = str(error)
            return
        with self._lock:
            if self.last_error is not None:
                log.info(json.dumps({"event": "metrics_warehouse_readable", "warehouse": self.warehouse.describe()}))
            self.up, self.last_error = 1, None
            self._snapshot = _Snapshot(families, self.clock(), self.clock() - started)

    def wait_for_refresh(self, timeout: float | None = None) -> None:
        """Block until a background read that is running has finished (tests, a clean shutdown)."""
        refresh = self._refresh
        if refresh is not None:
            refresh.join(timeout)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            snapshot = self._snapshot
            stale = snapshot is None or self.cache_seconds <= 0 or self.clock() - snapshot.read_at >= self.cache_seconds
            background = stale and snapshot is not None and self.cache_seconds > 0
            if background and (self._refresh is None or not self._refresh.is_alive()):
                self._refresh = threading.Thread(target=self.read, name="metrics-refresh", daemon=True)
                self._refresh.start()
        if stale and not background:
            with self._reading:  # concurrent scrapes that must read do so one at a time
                self.read()
        with self._lock:
            up, snapshot, now = self.up, self._snapshot, self.clock()
        yield GaugeMetricFamily(
            _name("warehouse_up"), "1 if the last read of the warehouse succeeded, else 0 (the reason is logged).", up
        )
        if snapshot is None:
            return
        yield GaugeMetricFamily(
            _name("metrics_read_seconds"), "How long the read behind these values took.", snapshot.read_seconds
        )
        yield GaugeMetricFamily(
            _name("metrics_snapshot_age_seconds"),
            "Age of the values below: 0 when read for this scrape, more when cached or the warehouse unreadable.",
            max(0.0, now - snapshot.read_at),
        )
        yield from snapshot.families


def registry_for(collector: WarehouseCollector, process_metrics: bool = True) -> CollectorRegistry:
    """A registry with the collector (and the process' own CPU and memory, as exporters do)."""
    from prometheus_client import PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def serve(warehouse: Warehouse, host: str = "127.0.0.1", port: int = DEFAULT_PORT, cache_seconds: float = 0.0):
    """Start the HTTP endpoint (/metrics, any path) in a daemon thread; returns (server, thread).
    Port 0 takes a free port: server.server_port is the one bound."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=registry_for(WarehouseCollector(warehouse, cache_seconds)))
