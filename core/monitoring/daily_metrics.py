"""The daily series the anomaly detector watches (ml/anomaly.py), read from the warehouse:

    revenue_minor         credits to revenue:* accounts (sales), USD minor units
    refunds_minor         debits to revenue:* accounts (refunds, chargebacks, reversed sales), USD
    cost_minor            expenses:* debits net of their credits (spend net of reversals), USD
    experiment_failures   transitions of experiments into failed or rolled_back
    source_errors         discovery records quarantined (fetch, parse, normalize) for a source
    run_duration_seconds  mean wall time of the Dagster runs that ended that day (from the
                          instance's run records: the asset passes them in, see run_durations)

Days are UTC. Money is grouped per (day, currency, account class) in SQL and each group converted to
the reporting currency with the ledger's own ECB rates (core.ledger.fx.RateTable, half-even): the
dbt fct_postings mart converts per posting, so a day's total in a non-USD currency may differ from
the mart's by under one minor unit per posting, far below anything the detector reacts to. A group
without a usable rate is left out and named in `problems`, never guessed.

Each series is zero-filled between the first and last day its source table saw activity (a day of
the ledger with postings but no refund has 0 refunds); run_duration_seconds is not (a day without
runs has no duration, not a duration of 0).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from core.platform.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

REPORTING_CURRENCY = "USD"  # core.experiments.outcomes.REPORTING_CURRENCY, without importing pandas
DISCOVERY_STAGES = ("fetch", "parse", "normalize")
FAILURE_STATES = ("failed", "rolled_back")
COLUMNS = ("metric_date", "metric", "value")

MONEY_SQL = """
SELECT CAST(occurred_at AT TIME ZONE 'UTC' AS DATE) AS day, currency,
       split_part(account_id, ':', 1) AS account_class,
       CAST(sum(CASE WHEN amount_minor < 0 THEN -amount_minor ELSE 0 END) AS BIGINT) AS credits,
       CAST(sum(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END) AS BIGINT) AS debits
FROM ledger.postings
WHERE split_part(account_id, ':', 1) IN ('revenue', 'expenses')
GROUP BY 1, 2, 3
"""
LEDGER_DAYS_SQL = """
SELECT min(CAST(occurred_at AT TIME ZONE 'UTC' AS DATE)), max(CAST(occurred_at AT TIME ZONE 'UTC' AS DATE))
FROM ledger.postings
"""
FAILURES_SQL = """
SELECT CAST(transitioned_at AT TIME ZONE 'UTC' AS DATE) AS day,
       count(*) FILTER (WHERE to_state IN ('failed', 'rolled_back')) AS failures
FROM experiments.transitions
GROUP BY 1
"""
SOURCE_ERRORS_SQL = """
SELECT CAST(quarantined_at AT TIME ZONE 'UTC' AS DATE) AS day, count(*) AS errors
FROM quarantine.records
WHERE stage IN ('fetch', 'parse', 'normalize')
GROUP BY 1
"""
FETCH_DAYS_SQL = "SELECT DISTINCT CAST(fetched_at AT TIME ZONE 'UTC' AS DATE) AS day FROM raw.responses"


@dataclass
class DailyMetrics:
    """The series (COLUMNS, one row per metric and day) and what could not be counted."""

    series: "pd.DataFrame"
    problems: list[str] = field(default_factory=list)

    def days(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.series.groupby("metric").size().items()}


def _day(value) -> date:
    import pandas as pd

    return pd.Timestamp(value).date()


def _filled(metric: str, values: dict[date, float], first: date | None, last: date | None) -> list[tuple]:
    if first is None or last is None:
        return [(day, metric, float(v)) for day, v in sorted(values.items())]
    days = (last - first).days + 1
    return [(first + timedelta(n), metric, float(values.get(first + timedelta(n), 0.0))) for n in range(days)]


def money_series(warehouse: Warehouse, problems: list[str]) -> list[tuple]:
    from core.ledger.fx import FxError, RateTable

    groups = warehouse.query(MONEY_SQL)
    if groups.empty:
        return []
    rates = None
    totals: dict[str, dict[date, float]] = {"revenue_minor": {}, "refunds_minor": {}, "cost_minor": {}}
    for row in groups.itertuples(index=False):
        day, currency = _day(row.day), str(row.currency)
        credits, debits = int(row.credits), int(row.debits)
        if currency != REPORTING_CURRENCY:
            if rates is None:
                rates = RateTable.from_warehouse(warehouse)
            try:
                credits = rates.convert(credits, currency, REPORTING_CURRENCY, day)
                debits = rates.convert(debits, currency, REPORTING_CURRENCY, day)
            except FxError as error:
                problems.append(f"{row.account_class} postings in {currency} on {day} left out: {error}")
                continue
        if row.account_class == "revenue":
            totals["revenue_minor"][day] = totals["revenue_minor"].get(day, 0) + credits
            totals["refunds_minor"][day] = totals["refunds_minor"].get(day, 0) + debits
        else:
            totals["cost_minor"][day] = totals["cost_minor"].get(day, 0) + debits - credits
    first, last = (_day(v) for v in warehouse.query(LEDGER_DAYS_SQL).iloc[0])
    return [row for metric, values in totals.items() for row in _filled(metric, values, first, last)]


def failure_series(warehouse: Warehouse) -> list[tuple]:
    frame = warehouse.query(FAILURES_SQL)
    if frame.empty:
        return []
    values = {_day(r.day): float(r.failures) for r in frame.itertuples(index=False)}
    return _filled("experiment_failures", values, min(values), max(values))


def source_error_series(warehouse: Warehouse) -> list[tuple]:
    errors = warehouse.query(SOURCE_ERRORS_SQL)
    values = {_day(r.day): float(r.errors) for r in errors.itertuples(index=False)}
    active = set(values) | {_day(d) for d in warehouse.query(FETCH_DAYS_SQL)["day"]}
    if not active:
        return []
    return _filled("source_errors", values, min(active), max(active))


def run_durations(runs: Iterable[tuple[float, float]]) -> list[tuple]:
    """(start, end) Unix times of finished runs -> the mean duration of the runs that ended each UTC day."""
    per_day: dict[date, list[float]] = {}
    for start, end in runs:
        if start is None or end is None or end < start:
            continue
        day = datetime.fromtimestamp(end, UTC).date()
        per_day.setdefault(day, []).append(end - start)
    return [(day, "run_duration_seconds", sum(d) / len(d)) for day, d in sorted(per_day.items())]


def daily_metrics(
    warehouse: Warehouse, runs: Iterable[tuple[float, float]] = (), lookback_days: int | None = None
) -> DailyMetrics:
    """Every series, each cut to its own last `lookback_days` days (None: all of it)."""
    import pandas as pd

    problems: list[str] = []
    rows = money_series(warehouse, problems) + failure_series(warehouse) + source_error_series(warehouse)
    rows += run_durations(runs)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if lookback_days is not None and not frame.empty:
        first = {m: max(days) - timedelta(days=lookback_days - 1) for m, days in frame.groupby("metric")["metric_date"]}
        frame = frame[[day >= first[m] for m, day in zip(frame["metric"], frame["metric_date"], strict=True)]]
    return DailyMetrics(frame.sort_values(["metric", "metric_date"]).reset_index(drop=True), problems)
