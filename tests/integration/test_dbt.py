"""dbt_project/ run by the real dbt CLI on DuckDB and PostgreSQL.

Every mart is compared with an independent computation in plain Python (ints and Fractions, no
SQL), the trial-balance test is shown to fail on an unbalanced ledger, an incremental build is
shown to equal a full refresh, and Dagster is shown to report the dbt tests as asset checks.
Ledger rows are written directly, as core/ledger/booking.py writes them, so that every case (unbalanced,
late, stale) can be made.

Each `dbt build` costs seconds, most of them dbt's start-up and parse: the small ledger that several
tests start from is written and built once per session per backend, and each test gets a copy.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from core.platform.dbt_env import dbt_env_for
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt_project"
DBT = Path(sys.executable).parent / "dbt"
EXPONENTS = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}
MAX_RATE_AGE_DAYS = 7
START = datetime(2026, 1, 26, tzinfo=UTC)  # a Monday
DAYS = 16
EXPERIMENTS = ("exp-a", "exp-b", "exp-c")


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return START + timedelta(days=day, hours=hour, minutes=minute)


# -- a ledger written row by row ------------------------------------------------------------------


@dataclass
class Ledger:
    accounts: dict[str, datetime] = field(default_factory=dict)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    fx_rates: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    budget_limits: list[dict[str, Any]] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def rate(self, day: date, currency: str, units: int, decimals: int) -> None:
        """ECB style: 1 EUR = units / 10**decimals of currency on day (stored as a double)."""
        self.fx_rates.append(
            {
                "rate_date": day,
                "currency": currency,
                "per_eur": units / 10**decimals,
                "source": "test",
                "_exact": Fraction(units, 10**decimals),
            }
        )

    def budget(self, scope: str, scope_key: str, period: str, currency: str, limit_minor: int) -> str:
        budget_id = f"b-{len(self.budgets):03d}"
        self.budgets.append(
            {
                "budget_id": budget_id,
                "scope": scope,
                "scope_key": scope_key,
                "period": period,
                "currency": currency,
                "limit_minor": limit_minor,
                "created_at": START,
            }
        )
        self.change_limit(budget_id, limit_minor, START)
        return budget_id

    def change_limit(self, budget_id: str, limit_minor: int, changed_at: datetime) -> None:
        version = 1 + sum(v["budget_id"] == budget_id for v in self.budget_limits)
        self.budget_limits.append(
            {
                "budget_id": budget_id,
                "version": version,
                "limit_minor": limit_minor,
                "changed_at": changed_at,
                "changed_by": "test",
                "reason": "",
            }
        )

    def book(
        self,
        legs: list[tuple[str, str, int]],
        occurred_at: datetime,
        recorded_at: datetime | None = None,
        experiment_id: str | None = None,
        kind: str = "test",
        source: str = "test",
        reverses: str | None = None,
    ) -> str:
        """legs: (account_id, currency, signed amount_minor). Not checked: some tests book unbalanced ones."""
        transaction_id = f"tx-{len(self.transactions):04d}"
        recorded_at = recorded_at or occurred_at
        self.transactions.append(
            {
                "transaction_id": transaction_id,
                "idempotency_key": f"key-{transaction_id}",
                "content_hash": "h",
                "kind": kind,
                "description": kind,
                "experiment_id": experiment_id,
                "source": source,
                "external_ref": None,
                "occurred_at": occurred_at,
                "recorded_at": recorded_at,
                "reverses_transaction_id": reverses,
                "metadata": "{}",
            }
        )
        for line, (account_id, currency, amount) in enumerate(legs):
            self.accounts.setdefault(account_id, occurred_at)
            self.postings.append(
                {
                    "posting_id": f"{transaction_id}-{line}",
                    "transaction_id": transaction_id,
                    "line": line,
                    "account_id": account_id,
                    "currency": currency,
                    "amount_minor": amount,
                    "experiment_id": experiment_id,
                    "occurred_at": occurred_at,
                    "recorded_at": recorded_at,
                }
            )
        return transaction_id

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        accounts = [
            {"account_id": a, "account_type": account_type(a), "opened_at": opened}
            for a, opened in self.accounts.items()
        ]
        return {
            "accounts": accounts,
            "transactions": self.transactions,
            "postings": self.postings,
            "fx_rates": self.fx_rates,
            "budgets": self.budgets,
            "budget_limits": self.budget_limits,
        }

    def write(self, warehouse: Warehouse) -> None:
        """Append what was added since the last write."""
        for table, rows in self.tables().items():
            new = rows[self.written[table] :]
            if new:
                frame = pd.DataFrame(new)
                warehouse.append(f"ledger.{table}", frame.drop(columns=[c for c in frame if c.startswith("_")]))
            self.written[table] = len(rows)

    def already_written(self) -> "Ledger":
        """Count every row so far as written: they are in a warehouse copied from one that has them."""
        self.written.update({table: len(rows) for table, rows in self.tables().items()})
        return self


# -- the marts, computed independently ------------------------------------------------------------


def account_type(account_id: str) -> str:
    root = account_id.split(":")[0]
    return {"assets": "asset", "liabilities": "liability", "expenses": "expense"}.get(root, root)


def window(period: str, instant: datetime) -> tuple[datetime | None, datetime | None]:
    instant = instant.astimezone(UTC)
    if period == "total":
        return None, None
    if period == "hour":
        start = instant.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    if period == "day":
        start = instant.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = instant.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def converted_postings(ledger: Ledger, reporting: str) -> list[dict[str, Any]]:
    rates = {(r["rate_date"], r["currency"]): r["_exact"] for r in ledger.fx_rates}

    def rate(currency: str, on: date) -> tuple[date | None, Fraction]:
        if currency == "EUR":
            return None, Fraction(1)
        day = max(d for (d, c) in rates if c == currency and d <= on)
        assert (on - day).days <= MAX_RATE_AGE_DAYS, "the generator made a stale rate"
        return day, rates[(day, currency)]

    out = []
    for posting in ledger.postings:
        currency, amount = posting["currency"], posting["amount_minor"]
        on = posting["occurred_at"].astimezone(UTC).date()
        row = dict(posting, account_type=account_type(posting["account_id"]), occurred_on=on)
        if currency == reporting:
            row.update(
                currency_rate_date=None, reporting_rate_date=None, fx_rate_date=None, amount_reporting_minor=amount
            )
        else:
            currency_day, currency_rate = rate(currency, on)
            reporting_day, reporting_rate = rate(reporting, on)
            exact = (
                Fraction(amount, 10 ** EXPONENTS[currency])
                / currency_rate
                * reporting_rate
                * 10 ** EXPONENTS[reporting]
            )
            row.update(
                currency_rate_date=currency_day,
                reporting_rate_date=reporting_day,
                fx_rate_date=min(d for d in (currency_day, reporting_day) if d is not None),
                amount_reporting_minor=round(exact),
            )  # Fraction rounds half to even
        out.append(row)
    return out


def budget_windows(ledger: Ledger, postings: list[dict[str, Any]], as_of: datetime) -> list[dict[str, Any]]:
    """Each budget in each window with spend and in the window containing as_of. Spend is
    core/ledger/budgets.py's: debits to expenses, not from a Stripe import; a reversal's credit
    counts in the window of the spend it reverses; other credits never count."""
    transactions = {t["transaction_id"]: t for t in ledger.transactions}
    spent: dict[tuple[str, datetime | None], list[int]] = {}
    for budget in ledger.budgets:
        for p in postings:
            if p["account_type"] != "expense" or p["currency"] != budget["currency"]:
                continue
            transaction = transactions[p["transaction_id"]]
            reverses = transaction["reverses_transaction_id"]
            if transaction["source"] == "stripe" or (p["amount_minor"] < 0) == (reverses is None):
                continue
            counted_at = transactions[reverses]["occurred_at"] if reverses else p["occurred_at"]
            key = {
                "global": budget["scope_key"],
                "category": p["account_id"].split(":")[1],
                "experiment": p["experiment_id"],
            }[budget["scope"]]
            if key == budget["scope_key"]:
                cell = spent.setdefault((budget["budget_id"], window(budget["period"], counted_at)[0]), [0, 0])
                cell[0] += p["amount_minor"]
                cell[1] += 1
    rows = []
    for budget in ledger.budgets:
        current = window(budget["period"], as_of)[0]
        starts = {start for (budget_id, start) in spent if budget_id == budget["budget_id"]} | {current}
        for start in starts:
            end = window(budget["period"], start)[1] if start else None
            versions = [
                v
                for v in ledger.budget_limits
                if v["budget_id"] == budget["budget_id"] and (end is None or v["changed_at"] < end)
            ]
            limit = max(versions, key=lambda v: v["version"])["limit_minor"] if versions else budget["limit_minor"]
            spent_minor, count = spent.get((budget["budget_id"], start), [0, 0])
            rows.append(
                {
                    **{k: budget[k] for k in ("budget_id", "scope", "scope_key", "period", "currency")},
                    "window_start": start,
                    "window_end": end,
                    "limit_minor": limit,
                    "spent_minor": spent_minor,
                    "remaining_minor": limit - spent_minor,
                    "utilization": spent_minor / limit if limit else None,
                    "is_exceeded": spent_minor > limit,
                    "posting_count": count,
                    "_current": start == current,
                }
            )
    return rows


def expected_marts(ledger: Ledger, reporting: str, as_of: datetime) -> dict[str, list[dict[str, Any]]]:
    postings = converted_postings(ledger, reporting)
    pnl: dict[str, dict[str, Any]] = {}
    for p in postings:
        if p["experiment_id"] is None or p["account_type"] not in ("revenue", "expense"):
            continue
        e = pnl.setdefault(p["experiment_id"], {"revenue": 0, "cost": 0, "tx": set(), "times": []})
        e["revenue" if p["account_type"] == "revenue" else "cost"] += p["amount_reporting_minor"]
        e["tx"].add(p["transaction_id"])
        e["times"].append(p["occurred_at"])
    experiment_pnl, revenue_summary = [], []
    for experiment_id, e in pnl.items():
        revenue, cost = -e["revenue"], e["cost"]
        experiment_pnl.append(
            {
                "experiment_id": experiment_id,
                "reporting_currency": reporting,
                "revenue_minor": revenue,
                "cost_minor": cost,
                "profit_minor": revenue - cost,
                "roi": (revenue - cost) / cost if cost else None,
                "transaction_count": len(e["tx"]),
                "first_event_at": min(e["times"]),
                "last_event_at": max(e["times"]),
            }
        )
        revenue_summary.append(
            {
                "experiment_id": experiment_id,
                "total_revenue_cents": revenue,
                "total_cost_cents": cost,
                "net_profit_cents": revenue - cost,
                "event_count": len(e["tx"]),
                "last_event_at": max(e["times"]),
            }
        )

    balances: dict[tuple[str, str], dict[str, Any]] = {}
    trial: dict[str, dict[str, Any]] = {}
    cash: dict[tuple[date, str], dict[str, Any]] = {}
    months: dict[date, dict[str, Any]] = {}
    for p in postings:
        amount, debit, credit = p["amount_minor"], max(p["amount_minor"], 0), max(-p["amount_minor"], 0)
        b = balances.setdefault(
            (p["account_id"], p["currency"]),
            {
                "account_id": p["account_id"],
                "account_type": p["account_type"],
                "currency": p["currency"],
                "debit_minor": 0,
                "credit_minor": 0,
                "balance_minor": 0,
                "reporting_currency": reporting,
                "balance_reporting_minor": 0,
                "posting_count": 0,
                "last_posted_at": p["occurred_at"],
            },
        )
        b["debit_minor"] += debit
        b["credit_minor"] += credit
        b["balance_minor"] += amount
        b["balance_reporting_minor"] += p["amount_reporting_minor"]
        b["posting_count"] += 1
        b["last_posted_at"] = max(b["last_posted_at"], p["occurred_at"])
        t = trial.setdefault(
            p["currency"],
            {
                "currency": p["currency"],
                "total_debits_minor": 0,
                "total_credits_minor": 0,
                "net_minor": 0,
                "posting_count": 0,
                "tx": set(),
            },
        )
        t["total_debits_minor"] += debit
        t["total_credits_minor"] += credit
        t["net_minor"] += amount
        t["posting_count"] += 1
        t["tx"].add(p["transaction_id"])
        if p["account_id"].startswith("assets:cash:"):
            c = cash.setdefault(
                (p["occurred_on"], p["currency"]),
                {
                    "cash_date": p["occurred_on"],
                    "currency": p["currency"],
                    "inflow_minor": 0,
                    "outflow_minor": 0,
                    "net_minor": 0,
                    "posting_count": 0,
                    "last_recorded_at": p["recorded_at"],
                },
            )
            c["inflow_minor"] += debit
            c["outflow_minor"] += credit
            c["net_minor"] += amount
            c["posting_count"] += 1
            c["last_recorded_at"] = max(c["last_recorded_at"], p["recorded_at"])
        if p["account_type"] in ("revenue", "expense"):
            m = months.setdefault(p["occurred_on"].replace(day=1), {"revenue": 0, "cost": 0, "tx": set()})
            m["revenue" if p["account_type"] == "revenue" else "cost"] += p["amount_reporting_minor"]
            m["tx"].add(p["transaction_id"])

    windows = budget_windows(ledger, postings, as_of)
    return {
        "stg_postings": [
            {
                k: p[k]
                for k in (
                    "posting_id",
                    "transaction_id",
                    "account_id",
                    "account_type",
                    "currency",
                    "amount_minor",
                    "experiment_id",
                    "occurred_at",
                    "occurred_on",
                    "recorded_at",
                )
            }
            for p in postings
        ],
        "fct_postings": [
            {
                k: p[k]
                for k in (
                    "posting_id",
                    "currency",
                    "amount_minor",
                    "occurred_on",
                    "currency_rate_date",
                    "reporting_rate_date",
                    "fx_rate_date",
                    "amount_reporting_minor",
                )
            }
            | {"reporting_currency": reporting}
            for p in postings
        ],
        "revenue_summary": revenue_summary,
        "experiment_pnl": experiment_pnl,
        "account_balances": list(balances.values()),
        "trial_balance": [
            {**{k: v for k, v in t.items() if k != "tx"}, "transaction_count": len(t["tx"])} for t in trial.values()
        ],
        "daily_cash_flow": list(cash.values()),
        "monthly_pnl": [
            {
                "month_start": month,
                "reporting_currency": reporting,
                "revenue_minor": -m["revenue"],
                "cost_minor": m["cost"],
                "profit_minor": -m["revenue"] - m["cost"],
                "transaction_count": len(m["tx"]),
            }
            for month, m in months.items()
        ],
        "budget_utilization": [
            {k: v for k, v in w.items() if k != "_current"} | {"as_of": as_of} for w in windows if w["_current"]
        ],
        "budget_utilization_history": [
            {k: v for k, v in w.items() if k != "_current"} for w in windows if w["posting_count"]
        ],
    }


KEYS = {
    "stg_postings": ["posting_id"],
    "fct_postings": ["posting_id"],
    "revenue_summary": ["experiment_id"],
    "experiment_pnl": ["experiment_id"],
    "account_balances": ["account_id", "currency"],
    "trial_balance": ["currency"],
    "daily_cash_flow": ["cash_date", "currency"],
    "monthly_pnl": ["month_start"],
    "budget_utilization": ["budget_id"],
    "budget_utilization_history": ["budget_id", "window_start"],
}


def _plain(value: Any) -> Any:
    """One representation for both drivers and for Python: UTC Timestamps for instants, naive
    Timestamps for dates, ints, floats, bools, None."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        stamp = pd.Timestamp(value)
        return stamp.tz_convert("UTC") if stamp.tzinfo else stamp
    if isinstance(value, date):
        return pd.Timestamp(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _sorted_rows(rows: list[dict[str, Any]], key: list[str]) -> list[dict[str, Any]]:
    plain = [{k: _plain(v) for k, v in row.items()} for row in rows]
    return sorted(plain, key=lambda row: tuple(str(row[k]) for k in key))


def read_marts(warehouse: Warehouse, like: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Each mart's rows, restricted to the columns of the expected rows when there are any."""
    actual = {}
    for name, key in KEYS.items():
        schema = "analytics_staging" if name.startswith("stg_") else "analytics"
        frame = warehouse.query(f"SELECT * FROM {schema}.{name}")
        columns = list(like[name][0]) if like[name] else list(frame.columns)
        actual[name] = _sorted_rows(frame[columns].to_dict("records"), key)
    return actual


def assert_marts_equal(warehouse: Warehouse, ledger: Ledger, reporting: str, as_of: datetime) -> None:
    expected = expected_marts(ledger, reporting, as_of)
    actual = read_marts(warehouse, expected)
    for name, key in KEYS.items():
        assert actual[name] == _sorted_rows(expected[name], key), f"{name} differs from the independent computation"


# -- the dbt CLI ----------------------------------------------------------------------------------


@dataclass
class DbtRun:
    returncode: int
    output: str
    results: dict[str, dict[str, Any]]

    def status(self, name: str) -> str:
        return self.results[name]["status"]

    def failed(self) -> set[str]:
        return {name for name, r in self.results.items() if r["status"] in ("fail", "error")}


def run_dbt(
    warehouse: Warehouse, target_path: Path, *args: str, reporting: str = "USD", as_of: datetime | None = None
) -> DbtRun:
    env = {
        **os.environ,
        **dbt_env_for(warehouse.url),
        "DBT_TARGET_PATH": str(target_path),
        "DBT_LOG_PATH": str(target_path),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    variables = {"reporting_currency": reporting, **({"budget_as_of": as_of.isoformat()} if as_of else {})}
    command = [
        str(DBT),
        *args,
        "--project-dir",
        str(DBT_PROJECT),
        "--profiles-dir",
        str(DBT_PROJECT),
        "--vars",
        json.dumps(variables),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    results_path = target_path / "run_results.json"
    results = json.loads(results_path.read_text())["results"] if results_path.exists() else []
    # unique ids are <type>.<package>.<name>[.<hash>]: the name is what the yml and the UI call it.
    return DbtRun(done.returncode, done.stdout + done.stderr, {r["unique_id"].split(".")[2]: r for r in results})


def build(warehouse: Warehouse, target_path: Path, *extra: str, **kwargs: Any) -> DbtRun:
    run = run_dbt(warehouse, target_path, "build", *extra, **kwargs)
    assert run.returncode == 0, f"dbt build failed ({run.failed()}):\n{run.output[-4000:]}"
    return run


def reset(warehouse: Warehouse) -> None:
    warehouse.execute_script(
        [f"DROP SCHEMA IF EXISTS {s} CASCADE" for s in ("ledger", "analytics", "analytics_staging")]
    )
    ensure_schema(warehouse)


# -- scenarios ------------------------------------------------------------------------------------


def rates_for(ledger: Ledger, days: range) -> None:
    for day in days:
        on = (START + timedelta(days=day)).date()
        ledger.rate(on, "USD", 10800 + 7 * day, 4)
        ledger.rate(on, "JPY", 16250 + 13 * day, 2)
        ledger.rate(on, "KWD", 33215 + day, 5)


def small_ledger() -> Ledger:
    ledger = Ledger()
    rates_for(ledger, range(0, 4))  # Monday to Thursday
    ledger.book(
        [("assets:cash:stripe:usd", "USD", 10_000), ("revenue:experiment:exp-a", "USD", -10_000)],
        at(0, 9),
        experiment_id="exp-a",
        kind="sale",
    )
    ledger.book(
        [("expenses:ads:experiment:exp-a", "EUR", 2_500), ("assets:cash:bank:eur", "EUR", -2_500)],
        at(1, 10),
        experiment_id="exp-a",
        kind="ad_spend",
    )
    ledger.book(
        [("assets:cash:stripe:jpy", "JPY", 1_500), ("revenue:experiment:exp-b", "JPY", -1_500)],
        at(4, 23, 59),
        experiment_id="exp-b",
        kind="sale",
    )  # Friday, before Friday's rate
    ledger.book([("assets:cash:bank:kwd", "KWD", 12_345), ("equity:capital", "KWD", -12_345)], at(2, 8), kind="capital")
    # 150 EUR at Tuesday's 1.0807 is 16210.5 US cents exactly: half-even gives 16210.
    ledger.book(
        [("assets:cash:bank:eur", "EUR", 15_000), ("revenue:experiment:exp-c", "EUR", -15_000)],
        at(1, 16),
        experiment_id="exp-c",
        kind="sale",
    )
    ledger.book([("expenses:hosting", "EUR", 300), ("assets:cash:bank:eur", "EUR", -300)], at(0, 20), kind="hosting")
    ledger.budget("experiment", "exp-a", "month", "EUR", 2_000)
    daily = ledger.budget("global", "*", "day", "EUR", 1_000)
    ledger.change_limit(daily, 500, at(1))  # Monday's window keeps 1000, Tuesday's has 500
    ledger.budget("category", "ads", "total", "EUR", 10_000)
    return ledger


# -- the small ledger, built once per session and copied per test ---------------------------------

SMALL_AS_OF = at(1)  # Tuesday: the daily budget's current window has spend, and is over its limit


@dataclass(frozen=True)
class BuiltLedger:
    """A warehouse holding small_ledger() and its first `dbt build` (as of SMALL_AS_OF)."""

    warehouse: Warehouse
    ledger: Ledger
    first_build: DbtRun


def _build_small_ledger(url: str, target_path: Path) -> DbtRun:
    warehouse = Warehouse(url)
    ensure_schema(warehouse)
    small_ledger().write(warehouse)
    return build(warehouse, target_path, as_of=SMALL_AS_OF)


@pytest.fixture(scope="session")
def small_duckdb_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, DbtRun]:
    root = tmp_path_factory.mktemp("small-ledger")
    url = f"duckdb:///{root}/warehouse.duckdb"
    return url, _build_small_ledger(url, root / "target")


@pytest.fixture(scope="session")
def small_postgres_template(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, DbtRun]]:
    import psycopg

    name = f"vl_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    try:
        yield url, _build_small_ledger(url, tmp_path_factory.mktemp("small-ledger") / "target")
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def built_small_ledger(request: pytest.FixtureRequest, warehouse_url: str) -> BuiltLedger:
    """The test's own warehouse (tests/conftest.py), made a copy of the session's built small ledger:
    what each test did first, writing small_ledger() and building it, is done once per session
    (a DuckDB file copy; a PostgreSQL database created from the template database)."""
    warehouse = Warehouse(warehouse_url)
    if warehouse.backend == "duckdb":
        url, run = request.getfixturevalue("small_duckdb_template")
        for suffix in ("", ".wal"):
            source = Path(Warehouse(url).duckdb_path + suffix)
            if source.exists():
                shutil.copy(source, warehouse.duckdb_path + suffix)
    else:
        import psycopg

        url, run = request.getfixturevalue("small_postgres_template")
        admin = request.getfixturevalue("postgres_admin_url")
        name, template = warehouse_url.rsplit("/", 1)[1], url.rsplit("/", 1)[1]
        with psycopg.connect(admin, autocommit=True) as conn:  # tests/conftest.py drops it after the test
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return BuiltLedger(warehouse, small_ledger().already_written(), run)


def test_build_passes_and_the_trial_balance_test_fails_on_an_unbalanced_ledger(
    built_small_ledger: BuiltLedger, tmp_path: Path
):
    warehouse, ledger, first = built_small_ledger.warehouse, built_small_ledger.ledger, built_small_ledger.first_build
    assert first.returncode == 0
    assert first.status("trial_balance_nets_to_zero") == "pass"
    assert_marts_equal(warehouse, ledger, "USD", SMALL_AS_OF)
    half = warehouse.query(
        "SELECT amount_minor, amount_reporting_minor FROM analytics.fct_postings "
        "WHERE transaction_id = 'tx-0004' ORDER BY amount_minor"
    )
    assert half.astype(int).values.tolist() == [[-15_000, -16_210], [15_000, 16_210]]
    daily = warehouse.query(
        "SELECT window_start, limit_minor, spent_minor, is_exceeded "
        "FROM analytics.budget_utilization_history WHERE budget_id = 'b-001'"
    )
    assert sorted((int(limit), int(spent), bool(over)) for _, limit, spent, over in daily.itertuples(index=False)) == [
        (500, 2_500, True),
        (1_000, 300, False),
    ]

    # Ten dollars of cash against nine dollars of revenue: no double-entry writer would do this.
    ledger.book(
        [("assets:cash:stripe:usd", "USD", 1_000), ("revenue:experiment:exp-a", "USD", -900)],
        at(3),
        recorded_at=at(10),
        experiment_id="exp-a",
    )
    ledger.write(warehouse)
    second = run_dbt(warehouse, tmp_path / "target", "build")
    assert second.returncode != 0
    assert second.failed() == {"trial_balance_nets_to_zero"}
    assert second.status("transactions_balance_per_currency") == "warn"  # and it names the transaction
    assert second.results["trial_balance_nets_to_zero"]["failures"] == 1  # one currency, USD, is off


def test_experiment_totals_equal_experiment_pnl(built_small_ledger: BuiltLedger):
    """core.experiments.outcomes.experiment_totals gives the mart's revenue and cost: a EUR cost, a
    JPY sale on a day without its own rate, and the EUR sale whose conversion is a half-even tie."""
    from core.experiments.outcomes import experiment_totals

    warehouse = built_small_ledger.warehouse
    mart = warehouse.query("SELECT experiment_id, revenue_minor, cost_minor FROM analytics.experiment_pnl")
    assert sorted(mart["experiment_id"]) == list(EXPERIMENTS)
    for row in mart.itertuples():
        totals = experiment_totals(warehouse, row.experiment_id)
        assert (totals.revenue_minor, totals.cost_minor) == (row.revenue_minor, row.cost_minor), row.experiment_id
    assert experiment_totals(warehouse, "exp-c").revenue_minor == 16_210  # the tie, rounded to even


def test_budget_marts_count_spend_as_the_ledger_does(built_small_ledger: BuiltLedger, tmp_path: Path):
    """analytics.budget_utilization(_history) equal core.ledger.budgets.utilization() on a ledger
    with a Stripe fee, a credit to an expense and a reversal dated after its spend's window."""
    from core.ledger.budgets import utilization

    warehouse, ledger = built_small_ledger.warehouse, built_small_ledger.ledger
    late = at(10)  # recorded after everything built: the incremental models pick the rows up
    ledger.book(
        [("expenses:fees:stripe", "EUR", 120), ("assets:cash:stripe:eur", "EUR", -120)],
        at(1, 11),
        late,
        kind="fee",
        source="stripe",
    )
    ledger.book(
        [("assets:cash:bank:eur", "EUR", 400), ("expenses:ads:experiment:exp-a", "EUR", -400)],
        at(1, 12),
        late,
        experiment_id="exp-a",
        kind="ad_credit",
    )
    hosting = next(t["transaction_id"] for t in ledger.transactions if t["kind"] == "hosting")  # Monday 20:00
    ledger.book(
        [("expenses:hosting", "EUR", -300), ("assets:cash:bank:eur", "EUR", 300)],
        at(1, 9),
        late,
        kind="reversal",
        reverses=hosting,
    )
    ledger.write(warehouse)
    # core/ledger/budgets.py has no "total" period, so its utilization() cannot report that budget.
    total = [b["budget_id"] for b in ledger.budgets if b["period"] == "total"]
    ledger.budgets = [b for b in ledger.budgets if b["period"] != "total"]
    for table in ("budget_limits", "budgets"):
        warehouse.execute(f"DELETE FROM ledger.{table} WHERE budget_id = %s", total)
    build(warehouse, tmp_path / "target", as_of=SMALL_AS_OF)
    assert_marts_equal(warehouse, ledger, "USD", SMALL_AS_OF)

    def spent(frame: pd.DataFrame) -> dict[str, int]:
        return {row.budget_id: int(row.spent_minor) for row in frame.itertuples(index=False)}

    current = spent(warehouse.query("SELECT budget_id, spent_minor FROM analytics.budget_utilization"))
    assert current == spent(utilization(warehouse, at=SMALL_AS_OF))
    assert current == {"b-000": 2_500, "b-001": 2_500}  # no fee, no credit, no reversal on Tuesday
    monday = at(0, 21)
    history = warehouse.query(
        "SELECT spent_minor FROM analytics.budget_utilization_history WHERE budget_id = 'b-001' AND window_start = %s",
        [monday.replace(hour=0)],
    )
    assert int(history.iloc[0, 0]) == spent(utilization(warehouse, at=monday))["b-001"] == 0  # the hosting, reversed


def test_a_posting_without_a_recent_rate_fails_the_build_rather_than_use_a_stale_rate(
    warehouse: Warehouse, tmp_path: Path
):
    ledger = small_ledger()
    ledger.book(
        [("assets:cash:stripe:jpy", "JPY", 900), ("revenue:experiment:exp-b", "JPY", -900)],
        at(3 + MAX_RATE_AGE_DAYS + 1),
        experiment_id="exp-b",
    )  # the last rates are Thursday's
    ledger.write(warehouse)
    run = run_dbt(warehouse, tmp_path / "target", "build")
    assert run.returncode != 0
    assert run.failed() == {"not_null_fct_postings_amount_reporting_minor"}
    assert run.results["not_null_fct_postings_amount_reporting_minor"]["failures"] == 2  # both legs
    assert run.status("revenue_summary") == "skipped"  # no mart is built on half-converted money
    for native in ("trial_balance", "daily_cash_flow", "budget_utilization"):  # ...but these need no rate
        assert run.status(native) == "success"


def test_incremental_build_picks_up_late_rows_and_equals_a_full_refresh(
    built_small_ledger: BuiltLedger, tmp_path: Path
):
    target = tmp_path / "target"
    warehouse, ledger = built_small_ledger.warehouse, built_small_ledger.ledger  # built once, as of at(1)
    friday_sale = "SELECT fx_rate_date FROM analytics.fct_postings WHERE posting_id = 'tx-0002-0'"
    assert _plain(warehouse.scalar(friday_sale)) == pd.Timestamp(at(3).date())  # Friday's rate is not out yet

    newest = max(p["recorded_at"] for p in ledger.postings)
    rates_for(ledger, range(4, 5))  # Friday's rate arrives: the Friday sale is reconverted
    ledger.book(
        [("revenue:experiment:exp-a", "USD", 2_000), ("assets:cash:stripe:usd", "USD", -2_000)],
        at(0, 15),
        recorded_at=at(6),
        experiment_id="exp-a",
        kind="refund",
    )  # late: for Monday
    ledger.book(
        [("expenses:ads:experiment:exp-a", "EUR", 700), ("assets:cash:bank:eur", "EUR", -700)],
        at(1, 6),
        recorded_at=newest - timedelta(hours=1),
        experiment_id="exp-a",
    )  # committed late
    ledger.book(
        [("assets:cash:stripe:jpy", "JPY", 800), ("revenue:experiment:exp-b", "JPY", -800)],
        at(5, 11),
        recorded_at=at(6),
        experiment_id="exp-b",
    )  # Saturday: Friday's rate
    ledger.write(warehouse)

    incremental = build(warehouse, target, as_of=at(5))
    for model, schema in (("fct_postings", "analytics"), ("daily_cash_flow", "analytics")):
        reads_itself = f"{schema}.{model}" in incremental.results[model]["compiled_code"].replace('"', "")
        assert reads_itself, f"{model} was rebuilt, not built incrementally"
    assert _plain(warehouse.scalar(friday_sale)) == pd.Timestamp(at(4).date())
    assert_marts_equal(warehouse, ledger, "USD", at(5))

    # A new reporting currency reconverts every held row without a full refresh.
    build(warehouse, target, reporting="EUR", as_of=at(5))
    assert_marts_equal(warehouse, ledger, "EUR", at(5))

    expected = expected_marts(ledger, "EUR", at(5))
    held = read_marts(warehouse, expected)
    build(warehouse, target, "--full-refresh", reporting="EUR", as_of=at(5))
    assert read_marts(warehouse, expected) == held


RATE_RANGES = {"USD": (10000, 12000, 4), "JPY": (14000, 17500, 2), "KWD": (30000, 38000, 5)}
CURRENCIES = ("USD", "EUR", "JPY", "KWD")


def accounts_for(experiment: str | None, currency: str) -> list[str]:
    own = (
        [f"revenue:experiment:{experiment}", f"expenses:ads:experiment:{experiment}"]
        if experiment
        else ["revenue:other"]
    )
    return [
        f"assets:cash:stripe:{currency.lower()}",
        f"assets:cash:bank:{currency.lower()}",
        "assets:receivables",
        "expenses:fees:stripe",
        "expenses:hosting",
        "liabilities:refunds",
        "liabilities:tax:de",
        "equity:capital",
        *own,
    ]


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[Ledger, str, datetime]:
    """A balanced ledger in four currencies. Every Monday has every rate (so none is older than a
    week); other business days may be holidays, or miss one currency. Budgets of every scope and
    period, some with a changed limit; a reporting currency; an instant to report budgets at."""
    ledger = Ledger()
    for day in range(DAYS):
        weekday = (START + timedelta(days=day)).weekday()
        if weekday >= 5 or (weekday and not draw(st.integers(0, 4))):
            continue
        for currency, (low, high, decimals) in RATE_RANGES.items():
            if weekday == 0 or draw(st.integers(0, 7)):
                ledger.rate((START + timedelta(days=day)).date(), currency, draw(st.integers(low, high)), decimals)
    for _ in range(draw(st.integers(1, 10))):
        experiment = draw(st.sampled_from((*EXPERIMENTS, None)))
        occurred = START + timedelta(minutes=draw(st.integers(0, DAYS * 24 * 60 - 1)))
        recorded = occurred + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
        legs = []
        for currency in draw(st.lists(st.sampled_from(CURRENCIES), min_size=1, max_size=2, unique=True)):
            accounts = draw(
                st.lists(st.sampled_from(accounts_for(experiment, currency)), min_size=2, max_size=4, unique=True)
            )
            amounts = [draw(st.integers(-(10**7), 10**7)) for _ in accounts[1:]]
            legs += [(a, currency, x) for a, x in zip(accounts, [-sum(amounts), *amounts], strict=True)]
        ledger.book(legs, occurred, recorded, experiment)
    seen = set()
    for _ in range(draw(st.integers(0, 5))):
        scope = draw(st.sampled_from(["global", "category", "experiment"]))
        key = (
            "*"
            if scope == "global"
            else draw(st.sampled_from(["ads", "fees", "hosting"]))
            if scope == "category"
            else draw(st.sampled_from(EXPERIMENTS))
        )
        period, currency = draw(st.sampled_from(["hour", "day", "month", "total"])), draw(st.sampled_from(CURRENCIES))
        if (scope, key, period, currency) not in seen:
            seen.add((scope, key, period, currency))
            budget_id = ledger.budget(scope, key, period, currency, draw(st.integers(0, 2 * 10**7)))
            if draw(st.booleans()):
                ledger.change_limit(
                    budget_id,
                    draw(st.integers(0, 2 * 10**7)),
                    START + timedelta(minutes=draw(st.integers(1, DAYS * 24 * 60))),
                )
    as_of = START + timedelta(minutes=draw(st.integers(0, DAYS * 24 * 60)))
    return ledger, draw(st.sampled_from(["USD", "EUR", "JPY"])), as_of


# Each example is a whole dbt build (seconds): few examples (3 in CI's profile, 62 in thorough), no
# deadline, and no shrinking, which would rebuild hundreds of times; a failure reports its example unshrunk.
@settings(
    max_examples=max(3, settings().max_examples // 16),
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(example=ledgers())
def test_every_mart_equals_an_independent_computation(
    warehouse: Warehouse, tmp_path: Path, example: tuple[Ledger, str, datetime]
):
    ledger, reporting, as_of = example
    reset(warehouse)
    ledger.write(warehouse)
    run = build(warehouse, tmp_path / "target", reporting=reporting, as_of=as_of)
    assert run.status("trial_balance_nets_to_zero") == "pass"
    assert_marts_equal(warehouse, ledger, reporting, as_of)


# -- through Dagster ------------------------------------------------------------------------------


def marts_resources(url: str) -> dict[str, Any]:
    from assets.resources import DbtResource, WarehouseResource

    warehouse = WarehouseResource(url=url)
    return {"warehouse": warehouse, "dbt": DbtResource(warehouse=warehouse)}


def mart(name: str) -> dg.AssetKey:
    return dg.AssetKey(["marts", name])


def test_dagster_materializes_the_dbt_assets_and_reports_dbt_tests_as_checks(
    duckdb_url: str, tmp_path: Path, monkeypatch
):
    import tempfile

    from assets.ledger_marts.dbt import ledger_dbt_assets

    warehouse = Warehouse(duckdb_url)
    ensure_schema(warehouse)
    ledger = small_ledger()
    ledger.write(warehouse)
    resources = marts_resources(duckdb_url)
    # Each dbt invocation's target directory (run_results, compiled SQL, dbt.log) must go when the
    # step ends, passed or failed: dagster-dbt's default leaves dbt_project/target/<id>/ per run.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    target_dirs = {p.name for p in (DBT_PROJECT / "target").iterdir() if p.is_dir()}

    result = dg.materialize([ledger_dbt_assets], resources=resources)
    assert result.success
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert {
        mart("revenue_summary"),
        mart("trial_balance"),
        mart("daily_cash_flow"),
        mart("budget_utilization"),
        dg.AssetKey(["staging", "stg_postings"]),
        mart("fct_postings"),
        dg.AssetKey(["seeds", "currencies"]),
    } <= materialized
    assert materialized == set(ledger_dbt_assets.keys)
    checks = {(c.asset_key, c.check_name): c for c in result.get_asset_check_evaluations()}
    assert len(checks) == len(ledger_dbt_assets.check_keys)
    assert checks[(mart("trial_balance"), "trial_balance_nets_to_zero")].passed
    assert checks[(dg.AssetKey(["staging", "stg_postings"]), "stg_postings_currency_is_known")].passed
    assert checks[(dg.AssetKey(["staging", "stg_postings"]), "transactions_balance_per_currency")].passed
    summary = warehouse.query("SELECT * FROM analytics.revenue_summary WHERE experiment_id = 'exp-a'")
    assert summary[["total_revenue_cents", "total_cost_cents"]].astype(int).values.tolist() == [[10_000, 2_702]]
    # Each table's row count is on its materialization (the UI's dagster/row_count), counted after dbt
    # exited by a connection that leaves the DuckDB file usable by the rest of the process (above).
    counts = {
        e.asset_key: e.materialization.metadata.get("dagster/row_count")
        for e in result.get_asset_materialization_events()
    }
    assert counts[mart("revenue_summary")].value == warehouse.count("analytics.revenue_summary") > 0
    assert counts[dg.AssetKey(["seeds", "currencies"])].value == warehouse.count("analytics_staging.currencies")
    assert counts[dg.AssetKey(["staging", "stg_postings"])] is None  # a view: counting would run its query

    ledger.book(
        [("assets:cash:stripe:usd", "USD", 1_000), ("revenue:experiment:exp-a", "USD", -900)],
        at(3),
        recorded_at=at(10),
        experiment_id="exp-a",
    )
    ledger.write(warehouse)
    failed = dg.materialize([ledger_dbt_assets], resources=resources, raise_on_error=False)
    assert not failed.success
    checks = {(c.asset_key, c.check_name): c for c in failed.get_asset_check_evaluations()}
    assert not checks[(mart("trial_balance"), "trial_balance_nets_to_zero")].passed

    assert not list(scratch.glob("ventureloop-dbt-*")), "a dbt run's target directory was left behind"
    assert {p.name for p in (DBT_PROJECT / "target").iterdir() if p.is_dir()} <= target_dirs, (
        "dagster-dbt left a folder in dbt_project/target"
    )


@pytest.mark.parametrize(
    "warehouse_url", ["duckdb"], indirect=True
)  # the selection is dagster-dbt's, not the backend's
def test_materializing_one_mart_runs_only_that_mart_and_its_tests(built_small_ledger: BuiltLedger):
    """What the UI's "Materialize selected" and `dagster asset materialize --select` do: a subset of
    the dbt multi-asset, which dagster-dbt turns into `dbt build --select` of just those nodes."""

    from assets.ledger_marts.dbt import ledger_dbt_assets

    warehouse = built_small_ledger.warehouse
    # Marker rows: one in the mart above revenue_summary, which a rebuild of revenue_summary must
    # carry over and a rebuild of experiment_pnl would remove, and one in an unrelated mart.
    warehouse.execute(
        "INSERT INTO analytics.experiment_pnl (experiment_id, revenue_minor, cost_minor, profit_minor, "
        "transaction_count) VALUES ('marker', 7, 0, 7, 1)"
    )
    warehouse.execute("INSERT INTO analytics.trial_balance (currency) VALUES ('XXX')")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [ledger_dbt_assets],
            selection=[mart("revenue_summary")],
            resources=marts_resources(warehouse.url),
            instance=instance,
        )
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == {mart("revenue_summary")}
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        key.name: True for key in ledger_dbt_assets.check_keys if key.asset_key == mart("revenue_summary")
    }
    # dbt ran that one model and its six tests (the step's run_results summary line), nothing else.
    summaries = [line for line in logs if line.startswith("dbt build: ")]
    assert len(summaries) == 1 and summaries[0].endswith(" s, 6 pass, 1 success"), summaries
    rebuilt = warehouse.query("SELECT experiment_id, total_revenue_cents FROM analytics.revenue_summary")
    assert dict(rebuilt.itertuples(index=False))["marker"] == 7  # read from experiment_pnl as it was
    assert dict(rebuilt.itertuples(index=False))["exp-a"] == 10_000
    assert warehouse.scalar("SELECT count(*) FROM analytics.experiment_pnl WHERE experiment_id = 'marker'") == 1
    assert warehouse.scalar("SELECT count(*) FROM analytics.trial_balance WHERE currency = 'XXX'") == 1


def test_a_dbt_target_that_disagrees_with_the_warehouse_is_a_clear_failure(duckdb_url: str):

    from assets.resources import DbtResource, WarehouseResource

    dbt = DbtResource(warehouse=WarehouseResource(url=duckdb_url), target="postgres")
    with pytest.raises(dg.Failure, match="DBT_TARGET=postgres but the warehouse is duckdb.*unset DBT_TARGET"):
        dbt.dbt_target()
    assert DbtResource(warehouse=WarehouseResource(url=duckdb_url), target="duckdb").dbt_target() == "duckdb"
