"""The HTML report (core/monitoring/report.py) on hand-made warehouses: every table filled (on DuckDB
and PostgreSQL), none filled, no warehouse at all, only the ledger, and a table of the wrong shape.

`fill_every_table` is also what tests/e2e/test_report_browser.py renders in Chromium."""

import base64
import re
import struct
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from core.monitoring.report import (
    SECTIONS,
    actual_net,
    beta_density,
    beta_interval,
    build_sections,
    money,
    write_report,
)
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
FIRST_DAY = date(2026, 10, 1)
DAYS = 60
LATEST_FORECAST, OLD_FORECAST = "fc-latest", "fc-old"
# Every section's key and the asset its "missing" sentence must name.
ASSETS_NAMED = {
    "revenue_cost": "ledger_entries",
    "forecast": "cash_flow_forecast",
    "funnel": "experiment_proposals",
    "roi": "experiment_outcomes",
    "bandit": "source_bandit",
    "anomalies": "metric_anomalies",
    "slo": "slo_report",
}
# state -> the states an experiment went through to get there (core.experiments.lifecycle's paths).
PATHS = {
    "proposed": ["proposed"],
    "approved": ["proposed", "approved"],
    "queued": ["proposed", "approved", "queued"],
    "running": ["proposed", "approved", "queued", "running"],
    "paused": ["proposed", "approved", "queued", "running", "paused"],
    "completed": ["proposed", "approved", "queued", "running", "completed"],
    "failed": ["proposed", "approved", "queued", "running", "failed"],
    "cancelled": ["proposed", "cancelled"],
    "rolled_back": ["proposed", "approved", "queued", "running", "failed", "rolled_back"],
}
EXPERIMENT_STATES = ["proposed"] * 3 + ["approved", "queued", "running", "running", "paused"]
EXPERIMENT_STATES += ["completed"] * 6 + ["failed", "failed", "cancelled", "rolled_back"]
JPY_PER_USD_CENT = 2  # the hand-made mart's rate: 2 JPY to the US cent


def at(day: int, hour: int = 12) -> datetime:
    return datetime.combine(FIRST_DAY + timedelta(days=day), datetime.min.time(), UTC) + timedelta(hours=hour)


def usd_revenue(day: int) -> int:
    return 10_000 + (day % 7) * 1_000  # cents; 60 days sum to 774,000 (7,740.00 USD)


def usd_cost(day: int) -> int:
    return 4_000 + (day % 3) * 500  # cents; 60 days sum to 270,000 (2,700.00 USD)


def postings() -> pd.DataFrame:
    """A sale and a spend a day in USD (the sale on the processor's balance, the spend on the card, as the
    simulator books them), a JPY sale every tenth day, and a bank payout into a cash account weekly."""
    rows = []

    def post(transaction: str, lines: list[tuple[str, str, int]], when: datetime) -> None:
        for n, (account, currency, amount) in enumerate(lines):
            rows.append((f"{transaction}-{n}", transaction, n, account, currency, amount, "exp-1", when, when))

    for day in range(DAYS):
        post(
            f"sale-{day}",
            [("assets:stripe:usd", "USD", usd_revenue(day)), ("revenue:experiment:exp-1", "USD", -usd_revenue(day))],
            at(day),
        )
        post(
            f"spend-{day}",
            [("expenses:ads:experiment:exp-1", "USD", usd_cost(day)), ("liabilities:card:usd", "USD", -usd_cost(day))],
            at(day, 15),
        )
        if day % 10 == 0:
            post(
                f"jpy-{day}",
                [("assets:cash:bank:jpy", "JPY", 1_200), ("revenue:experiment:exp-1", "JPY", -1_200)],
                at(day, 9),
            )
        if day % 7 == 6:
            post(
                f"payout-{day}",
                [("assets:cash:bank:usd", "USD", 50_000), ("assets:stripe:usd", "USD", -50_000)],
                at(day, 18),
            )
    columns = [
        "posting_id",
        "transaction_id",
        "line",
        "account_id",
        "currency",
        "amount_minor",
        "experiment_id",
        "occurred_at",
        "recorded_at",
    ]
    return pd.DataFrame(rows, columns=columns)


def fill_ledger(warehouse: Warehouse) -> pd.DataFrame:
    frame = postings()
    warehouse.append("ledger.postings", frame)
    return frame


def fill_marts(warehouse: Warehouse, frame: pd.DataFrame) -> None:
    """The two dbt marts the report reads, in their shape (dbt_project/models/marts), from the postings."""
    warehouse.execute_script(
        [
            "CREATE SCHEMA IF NOT EXISTS analytics",
            "CREATE TABLE analytics.daily_cash_flow (cash_date DATE, currency TEXT, inflow_minor BIGINT, "
            "outflow_minor BIGINT, net_minor BIGINT, posting_count BIGINT, last_recorded_at TIMESTAMPTZ)",
            "CREATE TABLE analytics.fct_postings (posting_id TEXT, account_id TEXT, account_type TEXT, currency TEXT, "
            "amount_minor BIGINT, occurred_at TIMESTAMPTZ, occurred_on DATE, reporting_currency TEXT, "
            "amount_reporting_minor BIGINT)",
        ]
    )
    day = frame["occurred_at"].map(lambda t: t.date())
    cash = frame[frame["account_id"].str.startswith("assets:cash:")].assign(cash_date=day)
    daily = cash.groupby(["cash_date", "currency"]).agg(
        inflow_minor=("amount_minor", lambda a: int(a[a > 0].sum())),
        outflow_minor=("amount_minor", lambda a: int(-a[a < 0].sum())),
        net_minor=("amount_minor", "sum"),
        posting_count=("amount_minor", "size"),
        last_recorded_at=("recorded_at", "max"),
    )
    warehouse.append("analytics.daily_cash_flow", daily.reset_index())
    kinds = {"assets": "asset", "liabilities": "liability", "revenue": "revenue", "expenses": "expense"}
    facts = frame.assign(
        account_type=frame["account_id"].str.split(":").str[0].map(kinds),
        occurred_on=day,
        reporting_currency="USD",
        amount_reporting_minor=[
            a if c == "USD" else a // JPY_PER_USD_CENT
            for a, c in zip(frame["amount_minor"], frame["currency"], strict=True)
        ],
    )[
        [
            "posting_id",
            "account_id",
            "account_type",
            "currency",
            "amount_minor",
            "occurred_at",
            "occurred_on",
            "reporting_currency",
            "amount_reporting_minor",
        ]
    ]
    warehouse.append("analytics.fct_postings", facts)


def fill_forecasts(warehouse: Warehouse) -> None:
    rows = []
    for forecast_id, made_at, level in (
        (OLD_FORECAST, NOW - timedelta(days=7), 999_999),
        (LATEST_FORECAST, NOW, 6_000),
    ):
        for h in range(1, 31):
            net = level + 100 * h
            spread80, spread95 = 2_000 + 50 * h, 3_500 + 90 * h
            rows.append(
                (
                    forecast_id,
                    "USD",
                    FIRST_DAY + timedelta(days=DAYS - 1 + h),
                    h,
                    net,
                    net - spread80,
                    net + spread80,
                    net - spread95,
                    net + spread95,
                    FIRST_DAY + timedelta(days=DAYS - 1),
                    made_at,
                )
            )
    columns = [
        "forecast_id",
        "currency",
        "forecast_date",
        "horizon_day",
        "net_minor",
        "lo80_minor",
        "hi80_minor",
        "lo95_minor",
        "hi95_minor",
        "trained_through",
        "made_at",
    ]
    warehouse.append("forecasting.cash_flow_forecast", pd.DataFrame(rows, columns=columns))
    backtest = [
        (LATEST_FORECAST, model, 4, 30, mase, 0.4, 0.79, 0.94, 0.2, weight, NOW)
        for model, mase, weight in (("ensemble", 0.71, 1.0), ("auto_ets", 0.8, 0.6), ("seasonal_naive", 1.0, 0.0))
    ]
    warehouse.append(
        "forecasting.forecast_backtest",
        pd.DataFrame(
            backtest,
            columns=[
                "forecast_id",
                "model",
                "folds",
                "horizon",
                "mase",
                "smape",
                "coverage80",
                "coverage95",
                "fit_seconds",
                "weight",
                "made_at",
            ],
        ),
    )


def fill_experiments(warehouse: Warehouse) -> None:
    experiments, transitions, outcomes = [], [], []
    for n, state in enumerate(EXPERIMENT_STATES):
        experiment_id = f"exp-{n}"
        created = at(n % DAYS)
        experiments.append(
            dict(
                experiment_id=experiment_id,
                idempotency_key=experiment_id,
                content_hash="h",
                opportunity_id=f"opp-{n}",
                title=f"Experiment {n}",
                hypothesis="it sells",
                category="saas",
                score=0.5,
                currency="USD",
                requested_budget_minor=10_000,
                success_criteria="{}",
                playbook="[]",
                state=state,
                state_seq=len(PATHS[state]) - 1,
                created_at=created,
                updated_at=created,
            )
        )
        for seq, to_state in enumerate(PATHS[state]):
            transitions.append(
                dict(
                    experiment_id=experiment_id,
                    seq=seq,
                    from_state=PATHS[state][seq - 1] if seq else None,
                    to_state=to_state,
                    actor="test",
                    reason="hand-made",
                    transitioned_at=created + timedelta(hours=seq),
                )
            )
        if state in ("completed", "failed", "rolled_back"):
            cost = 10_000
            revenue = {0: 0, 1: 5_000, 2: 30_000}[n % 3] if state == "completed" else 1_000
            outcomes.append(
                dict(
                    experiment_id=experiment_id,
                    state=state,
                    evaluated_at=NOW,
                    succeeded=revenue > cost,
                    revenue_minor=revenue,
                    cost_minor=cost,
                    net_minor=revenue - cost,
                    roi=(revenue - cost) / cost,
                    duration_days=14.0,
                    currency="USD",
                    criteria="{}",
                    reason="hand-made",
                )
            )
    warehouse.append("experiments.experiments", pd.DataFrame(experiments))
    warehouse.append("experiments.transitions", pd.DataFrame(transitions))
    warehouse.append("experiments.outcomes", pd.DataFrame(outcomes))


def fill_learning(warehouse: Warehouse) -> None:
    rows = [
        dict(
            source=source,
            experiments=s + f,
            successes=s,
            failures=f,
            alpha=1.0 + s,
            beta=1.0 + f,
            mean=(1 + s) / (2 + s + f),
            roi_experiments=s + f,
            roi_mu=0.3,
            roi_kappa=1.0 + s + f,
            roi_shape=2.0,
            roi_rate=1.0,
            roi_mean_sd=0.2,
            computed_at=NOW,
        )
        for source, s, f in (("hackernews", 12, 8), ("github", 3, 15), ("reddit", 1, 1))
    ]
    warehouse.append("learning.source_posterior", pd.DataFrame(rows))


def fill_monitoring(warehouse: Warehouse) -> None:
    metrics = []
    for day in range(DAYS):
        when = FIRST_DAY + timedelta(days=day)
        values = {
            "revenue_minor": usd_revenue(day),
            "cost_minor": usd_cost(day),
            "refunds_minor": 0,
            "experiment_failures": day % 4 == 0,
            "run_duration_seconds": 30.0 + day % 5,
            "source_errors": day % 9 == 0,
        }
        metrics += [dict(metric_date=when, metric=m, value=float(v), computed_at=NOW) for m, v in values.items()]
    metrics[-6]["value"] = 90_000.0  # the last day's revenue_minor: the spike the anomalies mark
    warehouse.append("monitoring.daily_metrics", pd.DataFrame(metrics))
    anomalies = [
        (
            "a1",
            DAYS - 1,
            "revenue_minor",
            90_000.0,
            16_000.0,
            9.1,
            "critical",
            "robust_z",
            "revenue_minor jumped to 900.00 USD, 5.6x its usual 160.00 USD",
        ),
        ("a2", 20, "cost_minor", 5_000.0, 4_500.0, 0.7, "low", "isolation_forest", "cost_minor a little high"),
        ("a3", 27, "source_errors", 1.0, 0.0, 2.5, "medium", "robust_z", "source_errors rose from 0 to 1"),
        ("a4", 45, "experiment_failures", 1.0, 0.1, 4.0, "high", "isolation_forest", "experiment_failures unusual"),
    ]
    warehouse.append(
        "monitoring.metric_anomalies",
        pd.DataFrame(
            [
                dict(
                    anomaly_id=i,
                    metric_date=FIRST_DAY + timedelta(days=d),
                    metric=m,
                    value=v,
                    expected=e,
                    score=s,
                    severity=sev,
                    method=meth,
                    explanation=text,
                    detected_at=NOW,
                )
                for i, d, m, v, e, s, sev, meth, text in anomalies
            ]
        ),
    )


def fill_slo(warehouse: Warehouse) -> None:
    slo = [
        (
            NOW - timedelta(days=1),
            "run_success_rate",
            0.99,
            "7d",
            99,
            100,
            0.99,
            0.5,
            0.1,
            0.2,
            "ok",
            "older evaluation",
        ),
        (NOW, "run_success_rate", 0.99, "7d", 198, 200, 0.99, 0.02, 0.5, 0.9, "burning", "2 of 200 runs failed"),
        (NOW, "experiment_failure_rate", 0.9, "30d", 12, 16, 0.75, -1.5, 3.0, 2.5, "breached", "4 of 16 failed"),
        (NOW, "revenue_per_day", 0.95, "30d", None, None, None, None, None, None, "no_data", "no revenue yet"),
    ]
    columns = [
        "evaluated_at",
        "slo",
        "objective",
        "slo_window",
        "good",
        "total",
        "attainment",
        "error_budget_remaining",
        "burn_rate_1h",
        "burn_rate_6h",
        "status",
        "detail",
    ]
    warehouse.append("monitoring.slo_report", pd.DataFrame(slo, columns=columns))


def fill_every_table(warehouse: Warehouse) -> None:
    ensure_schema(warehouse)
    fill_marts(warehouse, fill_ledger(warehouse))
    fill_forecasts(warehouse)
    fill_experiments(warehouse)
    fill_learning(warehouse)
    fill_monitoring(warehouse)
    fill_slo(warehouse)


def built_full_report(build_once) -> Path:
    """The report of a DuckDB warehouse with every table filled, written once per test run (it draws
    every chart, the costly part) into a directory with the warehouse (warehouse.duckdb) and the
    home (reports/). Read it; do not change it. Used by this module's and the browser test's
    `full_report` fixture."""

    def build(directory: Path) -> None:
        warehouse = Warehouse(f"duckdb:///{directory / 'warehouse.duckdb'}")
        fill_every_table(warehouse)
        write_report(warehouse, home=directory, now=NOW)

    return build_once("report-full", build)


@pytest.fixture
def full_report(build_once) -> Path:
    return built_full_report(build_once)


# -- reading the written file ----------------------------------------------------------------------


class Links(HTMLParser):
    """Every src and href of the document, and its images."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self.references += [values[a] for a in ("src", "href") if a in values]
        if tag == "img":
            self.images.append(values["src"])


def png_size(src: str) -> tuple[int, int]:
    assert src.startswith("data:image/png;base64,")
    data = base64.b64decode(src.removeprefix("data:image/png;base64,"), validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def section_html(document: str, key: str) -> str:
    match = re.search(rf'<section id="{key}">(.*?)</section>', document, re.S)
    assert match, f"no section {key}"
    return match.group(1)


def assert_self_contained(document: str) -> None:
    assert not re.search(r"https?://", document, re.I)
    links = Links()
    links.feed(document)
    assert all(r.startswith(("data:image/png;base64,", "#")) for r in links.references), links.references


# -- tests -------------------------------------------------------------------------------------------


def test_money_is_exact_in_each_currency_own_exponent():
    assert money(123_456, "USD") == "1,234.56 USD"
    assert money(-5, "KWD") == "-0.005 KWD"
    assert money(1_200, "JPY") == "1,200 JPY"
    assert money(0, "EUR") == "0.00 EUR"
    # Beyond a float's 2**53: still exact to the cent.
    assert money(10**17 + 1, "USD") == "1,000,000,000,000,000.01 USD"
    assert money(42, "XYZ") == "42 minor units of XYZ"
    assert money(None, "USD") == "–"


def test_beta_density_and_interval():
    import numpy as np

    assert beta_density(2.0, 2.0, np.array([0.5]))[0] == pytest.approx(1.5)
    assert beta_interval(1.0, 1.0) == pytest.approx((0.05, 0.95), abs=1e-3)
    low, high = beta_interval(13.0, 9.0)  # Beta(13, 9): mean 0.59; scipy.stats.beta.ppf gives 0.4172 and 0.7550
    assert (low, high) == pytest.approx((0.4172, 0.7550), abs=1e-3)
    # Thousands of experiments: log-gamma keeps the density finite.
    assert np.isfinite(beta_density(3001.0, 2001.0, np.array([0.6]))).all()


def test_every_section_is_drawn_from_a_full_duckdb_warehouse(full_report):
    document = (full_report / "reports" / "report-2026-12-07.html").read_text(encoding="utf-8")
    assert (full_report / "reports" / "latest.html").read_text(encoding="utf-8") == document
    assert_full(document, f"duckdb:///{full_report / 'warehouse.duckdb'}")


@pytest.mark.postgres
def test_every_section_is_drawn_from_a_full_postgres_warehouse(postgres_url, tmp_path):
    warehouse = Warehouse(postgres_url)
    fill_every_table(warehouse)
    report = write_report(warehouse, home=tmp_path, now=NOW)
    assert report.drawn == [key for key, _title, _build in SECTIONS], (report.missing, report.errors)
    assert report.path == tmp_path / "reports" / "report-2026-12-07.html" and report.charts == 6
    assert_full(report.path.read_text(encoding="utf-8"), warehouse.describe())


def assert_full(document: str, warehouse: str) -> None:
    """The report of fill_every_table's rows: every section drawn, its numbers as a reader needs them."""
    assert document.count(": drawn</li>") == len(SECTIONS)
    assert_self_contained(document)
    links = Links()
    links.feed(document)
    assert len(links.images) == 6  # every section but the SLO table has a chart
    assert all(min(png_size(src)) > 100 for src in links.images)
    assert "2026-12-07 06:00:00 UTC" in document and warehouse in document

    revenue = section_html(document, "revenue_cost")
    # 60 days: revenue 774,000 cents and six JPY sales of 1,200 (3,600 cents at the mart's 2 JPY a cent);
    # cost 270,000 cents.
    assert "7,776.00 USD" in revenue and "2,700.00 USD" in revenue and "5,076.00 USD" in revenue
    assert "analytics.fct_postings" in revenue
    # The cash accounts: eight weekly payouts of 500.00 USD, six JPY sales in JPY's own units.
    assert "4,000.00 USD" in revenue and "7,200 JPY" in revenue

    forecast = section_html(document, "forecast")
    assert LATEST_FORECAST in forecast and OLD_FORECAST not in forecast
    assert "61.00 USD" in forecast  # day 1: net 6,100 cents
    assert "40.50 USD to 81.50 USD" in forecast  # its 80% interval, 6,100 ∓ 2,050
    assert "ensemble" in forecast and "0.710" in forecast

    funnel = section_html(document, "funnel")
    assert "18 experiments in experiments.experiments" in funnel
    # 2 running now; 12 ever ran (running, paused, completed, failed and rolled back ones).
    assert re.search(r"<td[^>]*>running</td><td[^>]*>2</td><td[^>]*>12</td>", funnel)

    roi = section_html(document, "roi")
    assert "ROI of the 9 finished experiments" in roi
    assert "730.00 USD" in roi and "900.00 USD" in roi and "-170.00 USD" in roi  # revenue, cost, net

    bandit = section_html(document, "bandit")
    assert "Beta(13, 9)" in bandit and "0.591" in bandit

    anomalies = section_html(document, "anomalies")
    assert "4 anomalies: 1 low, 1 medium, 1 high, 1 critical" in anomalies
    assert "900.00 USD" in anomalies and "jumped to 900.00 USD" in anomalies
    assert anomalies.index("critical") < anomalies.index("experiment_failures unusual")  # newest first

    slo = section_html(document, "slo")
    assert "older evaluation" not in slo and "breached" in slo and "1 burning" in slo
    assert "75.00%" in slo and "-150.0%" in slo


def test_an_empty_warehouse_says_what_is_missing_in_every_section(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    report = write_report(warehouse, out=tmp_path / "empty.html", now=NOW)
    assert report.drawn == [] and report.errors == {}
    assert set(report.missing) == set(ASSETS_NAMED)
    for key, asset in ASSETS_NAMED.items():
        assert asset in report.missing[key], report.missing[key]
    document = (tmp_path / "empty.html").read_text(encoding="utf-8")
    assert report.latest is None and not (tmp_path / "reports").exists()
    assert document.count('class="missing"') == len(SECTIONS) and "<img" not in document
    assert "forecasting.cash_flow_forecast has no forecast yet: materialize the asset cash_flow_forecast" in document
    assert_self_contained(document)


def test_no_warehouse_file_is_never_created(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'nowhere' / 'warehouse.duckdb'}")
    sections = build_sections(warehouse)
    assert all(s.missing and "no warehouse at" in s.missing and "make demo" in s.missing for s in sections)
    assert not warehouse.exists()


def test_without_the_marts_the_ledger_gives_revenue_and_cost_in_each_currency(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    fill_ledger(warehouse)
    fill_forecasts(warehouse)
    sections = {s.key: s for s in build_sections(warehouse)}
    revenue = sections["revenue_cost"]
    assert revenue.drawn and "ledger.postings in each currency" in revenue.body
    assert "7,740.00 USD" in revenue.body and "7,200 JPY" in revenue.body  # unconverted
    assert "ledger.postings (assets:cash:*" in revenue.body
    # The forecast draws its history from the ledger's cash accounts too.
    assert sections["forecast"].drawn and "ledger.postings (assets:cash:*" in sections["forecast"].body


def test_series_without_anomalies_are_drawn_and_say_none_was_found(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    metrics = [
        dict(metric_date=FIRST_DAY + timedelta(days=d), metric=m, value=float(d), computed_at=NOW)
        for d in range(5)
        for m in ("source_errors", "revenue_minor")
    ]
    warehouse.append("monitoring.daily_metrics", pd.DataFrame(metrics))
    anomalies = {s.key: s for s in build_sections(warehouse)}["anomalies"]
    assert anomalies.drawn and anomalies.charts == 1
    assert "2 metrics over 2026-10-01 to 2026-10-05" in anomalies.body
    assert "No anomaly detected in these series." in anomalies.body


def test_the_forecast_history_has_one_value_a_day_zero_when_no_cash_moved():
    cash = pd.DataFrame(
        {
            "cash_date": pd.to_datetime(["2026-11-01", "2026-11-04", "2026-11-05", "2026-11-04"]).to_numpy(),
            "currency": ["USD", "USD", "USD", "EUR"],
            "net_minor": [500, -200, 900, 7],
        }
    )
    history = actual_net(cash, "USD", before=pd.Timestamp("2026-11-05").to_datetime64())
    assert history.to_dict() == {
        pd.Timestamp("2026-11-01"): 500,
        pd.Timestamp("2026-11-02"): 0,
        pd.Timestamp("2026-11-03"): 0,
        pd.Timestamp("2026-11-04"): -200,
    }


def test_a_table_of_another_shape_fails_its_section_only(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    fill_slo(warehouse)  # the SLO table is drawn beside the broken one
    warehouse.execute_script(
        [
            "DROP TABLE learning.source_posterior",
            "CREATE TABLE learning.source_posterior (source TEXT, experiments BIGINT)",
            "INSERT INTO learning.source_posterior VALUES ('hackernews', 3)",
        ]
    )
    report = write_report(warehouse, out=tmp_path / "r.html", now=NOW)
    assert list(report.errors) == ["bandit"] and "alpha" in report.errors["bandit"]
    assert report.drawn == ["slo"]
    document = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Source bandit posteriors</a>: could not be drawn" in document
    assert "This section could not be drawn" in section_html(document, "bandit")


def test_the_forecast_history_is_every_currency_in_the_reporting_one_as_the_forecast_learns_it(tmp_path):
    from core.ledger.fx import convert
    from core.monitoring.report import Reader

    warehouse = Warehouse(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    ensure_schema(warehouse)
    day, when = date(2026, 11, 3), datetime(2026, 11, 3, 12, tzinfo=UTC)
    rows = [("USD", 50_000), ("JPY", 120_000), ("KWD", 1_000)]  # the ECB publishes no KWD rate
    warehouse.append(
        "ledger.postings",
        pd.DataFrame(
            [
                (f"p{n}", f"t{n}", 0, f"assets:cash:bank:{c.lower()}", c, a, None, when, when)
                for n, (c, a) in enumerate(rows)
            ],
            columns=[
                "posting_id",
                "transaction_id",
                "line",
                "account_id",
                "currency",
                "amount_minor",
                "experiment_id",
                "occurred_at",
                "recorded_at",
            ],
        ),
    )
    converted, note = Reader(warehouse).reporting_cash()
    assert converted["net_minor"].tolist() == [50_000 + convert(120_000, "JPY", "USD", day)]
    assert converted["currency"].tolist() == ["USD"] and "1 day-currency rows without an FX rate" in note
