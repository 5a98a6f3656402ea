"""The report people look at: one self-contained HTML file, written from the warehouse.

Seven sections, each read from the tables that hold it: revenue and cost over time, the cash-flow
forecast with its 80% and 95% intervals, the experiment funnel by state, the ROI distribution, the
source bandit's posteriors, the anomalies marked on their series, and the latest SLO status. A
section whose table is not there or has no rows says so in a sentence that names the asset to
materialize; nothing in a warehouse makes the report fail. The file carries everything it shows
(inline CSS, charts as inline base64 PNG drawn by matplotlib's Agg canvas), so it opens offline
and can be mailed or archived as it is.

Framework-free: the `weekly_report` asset (assets/monitoring/report.py), `ventureloop report` and
`make demo` call write_report.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.experiments.lifecycle import STATES
from core.experiments.outcomes import REPORTING_CURRENCY
from core.ledger.money import CURRENCY_EXPONENTS
from core.platform.warehouse import Warehouse, default_home
from core.simulator.history import PREFIX as HISTORY_PREFIX

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

LATEST_NAME = "latest.html"
HISTORY_DAYS = 90  # days of actual net cash flow drawn before the forecast
SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_COLORS = {"low": "#e6b800", "medium": "#f28e2b", "high": "#d62728", "critical": "#7b1fa2"}
SLO_STATUS_COLORS = {"ok": "#2e7d32", "burning": "#ef6c00", "breached": "#c62828", "no_data": "#757575"}
# monitoring.daily_metrics, in the anomaly detector's order; the *_minor ones are money in the reporting currency.
METRIC_ORDER = (
    "revenue_minor",
    "cost_minor",
    "refunds_minor",
    "experiment_failures",
    "run_duration_seconds",
    "source_errors",
)
ANOMALIES_LISTED = 25
CHART_DPI = 100


# -- formatting ---------------------------------------------------------------------------------


def money(amount_minor: Any, currency: str) -> str:
    """Integer minor units for a reader, with the currency's own exponent and thousands separators:
    `123456, "USD"` -> `1,234.56 USD`, `-5, "KWD"` -> `-0.005 KWD`, `1200, "JPY"` -> `1,200 JPY`.
    Exact (Decimal, never a float). A code the ledger does not know is shown in minor units."""
    if amount_minor is None or _missing(amount_minor):
        return "–"
    amount = int(amount_minor)
    places = CURRENCY_EXPONENTS.get(currency)
    if places is None:
        return f"{amount:,} minor units of {currency}"
    return f"{Decimal(amount).scaleb(-places):,.{places}f} {currency}"


def _major(amount_minor: Any, currency: str) -> float:
    """Minor units as a float of major units: for chart axes only, never for a number shown as text."""
    return float(amount_minor) / 10 ** CURRENCY_EXPONENTS.get(currency, 2)


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA: a NULL as either backend's driver and pandas hand it over."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _number(value: Any, digits: int = 2) -> str:
    return "–" if _missing(value) else f"{float(value):,.{digits}f}"


def _percent(value: Any, digits: int = 1) -> str:
    return "–" if _missing(value) else f"{100 * float(value):.{digits}f}%"


def _day(value: Any) -> str:
    import pandas as pd

    return "–" if _missing(value) else pd.Timestamp(value).strftime("%Y-%m-%d")


def _instant(value: Any) -> str:
    import pandas as pd

    if _missing(value):
        return "–"
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _metric_value(metric: str, value: Any) -> str:
    if _missing(value):
        return "–"
    if metric.endswith("_minor"):
        return money(round(float(value)), REPORTING_CURRENCY)
    if metric.endswith("_seconds"):
        return f"{float(value):,.1f} s"
    return _number(value, 0 if float(value).is_integer() else 2)


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; cells are escaped text unless wrapped in Markup; columns in `numeric` align right."""
    head = "".join(f'<th class="{"num" if i in numeric else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if i in numeric else ""}">{cell if isinstance(cell, Markup) else _e(cell)}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """HTML this module built itself (a badge): table_html inserts it without escaping."""


def _badge(text: str, color: str) -> Markup:
    return Markup(f'<span class="badge" style="background:{color}">{_e(text)}</span>')


# -- charts ---------------------------------------------------------------------------------------


def new_figure(width: float = 9.0, height: float = 3.6) -> Figure:
    """A Figure on matplotlib's Agg canvas: no pyplot, no global backend, nothing shown on a screen."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_img(figure: Figure, alt: str) -> str:
    """The figure as an <img> whose source is the PNG itself (base64): nothing to fetch, offline."""
    buffer = io.BytesIO()
    # No Software chunk: matplotlib's names its web site, and this file references nothing outside itself.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="chart" alt="{_e(alt)}" src="data:image/png;base64,{encoded}">'


def _money_axis(axis: Any, currency: str) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    axis.set_ylabel(currency)


def _date_axis(axis: Any) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _dates(values: Any) -> Any:
    """Dates of either backend (DuckDB's datetime64, PostgreSQL's date objects) as naive UTC datetime64."""
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(values), utc=True)
    return stamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()


# -- sections ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One part of the report. `missing` says what is not there and what to materialize; `error`
    that its tables were there but could not be drawn (and why). A drawn section has neither."""

    key: str
    title: str
    body: str = ""
    charts: int = 0
    missing: str | None = None
    error: str | None = None

    @property
    def drawn(self) -> bool:
        return self.missing is None and self.error is None


@dataclass
class Reader:
    """The warehouse as the sections read it: which tables exist (asked once) and the daily series
    that two sections share."""

    warehouse: Warehouse
    _tables: dict[str, bool] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)
    _cash: tuple[Any, str] | None = None

    def has(self, table: str) -> bool:
        if table not in self._tables:
            self._tables[table] = self.warehouse.table_exists(table)
        return self._tables[table]

    def rows(self, table: str) -> int:
        if table not in self._counts:
            self._counts[table] = self.warehouse.count(table) if self.has(table) else 0
        return self._counts[table]

    def cash(self) -> tuple[pd.DataFrame, str]:
        """Daily money in and out of the cash accounts per currency (cash_date, currency, inflow_minor,
        outflow_minor, net_minor) and where it came from: the dbt mart analytics.daily_cash_flow (what
        the forecast learns from) when it has rows, else the same sums over ledger.postings (the mart's
        own definition: assets:cash:* accounts, UTC days, native minor units). Empty when neither has one."""
        if self._cash is None:
            self._cash = self._read_cash()
        return self._cash

    def _read_cash(self) -> tuple[pd.DataFrame, str]:
        import pandas as pd

        columns = "cash_date, currency, inflow_minor, outflow_minor, net_minor"
        if self.rows("analytics.daily_cash_flow"):
            frame = self.warehouse.query(
                f"SELECT {columns} FROM analytics.daily_cash_flow ORDER BY cash_date, currency"
            )
            return _typed(frame, "cash_date"), "analytics.daily_cash_flow (dbt mart)"
        if self.has("ledger.postings"):
            frame = self.warehouse.query(
                f"SELECT {UTC_DAY} AS cash_date, currency, "
                "CAST(SUM(CASE WHEN amount_minor > 0 THEN amount_minor ELSE 0 END) AS BIGINT) AS inflow_minor, "
                "CAST(-SUM(CASE WHEN amount_minor < 0 THEN amount_minor ELSE 0 END) AS BIGINT) AS outflow_minor, "
                "CAST(SUM(amount_minor) AS BIGINT) AS net_minor "
                "FROM ledger.postings WHERE account_id LIKE 'assets:cash:%%' GROUP BY 1, currency ORDER BY 1, currency"
            )
            if len(frame):
                return _typed(frame, "cash_date"), "ledger.postings (assets:cash:*; the dbt mart is not built yet)"
        return pd.DataFrame(columns=columns.split(", ")), ""

    def reporting_cash(self) -> tuple[pd.DataFrame, str]:
        """The daily net cash flow of every currency in the reporting currency (cash_date, currency,
        net_minor), as the cash-flow forecast learns it: each currency's day converted at that day's
        ECB rate (core.ledger.fx, ledger.fx_rates or else the bundled snapshot), exactly, then summed.
        A row no rate covers is left out, and the note says how many."""
        import pandas as pd

        from core.ledger.fx import bundled_table, daily_totals, ledger_or_bundled

        cash, _origin = self.cash()
        if cash.empty:
            return cash, ""
        foreign = (cash["currency"] != REPORTING_CURRENCY).any()
        rates = ledger_or_bundled(self.warehouse) if foreign else bundled_table()
        rows = ((pd.Timestamp(r.cash_date).date(), r.currency, r.net_minor) for r in cash.itertuples())
        totals, left_out = daily_totals(rows, REPORTING_CURRENCY, rates)
        frame = _typed(pd.DataFrame(sorted(totals.items()), columns=["cash_date", "net_minor"]), "cash_date")
        note = f" ({len(left_out)} day-currency rows without an FX rate left out)" if left_out else ""
        return frame.assign(currency=REPORTING_CURRENCY), note

    def pnl(self) -> tuple[pd.DataFrame, str]:
        """Revenue and cost per UTC day (day, currency, revenue_minor, cost_minor), as the P&L counts them:
        credits to revenue:* accounts and debits to expenses:* (monthly_pnl's definition, by day). From the
        dbt mart analytics.fct_postings in the reporting currency when it has rows, else from
        ledger.postings in each currency's own units (no conversion without the mart's rates)."""
        import pandas as pd

        money_columns = (
            "CAST(-SUM(CASE WHEN {kind} = {revenue} THEN {amount} ELSE 0 END) AS BIGINT) AS revenue_minor, "
            "CAST(SUM(CASE WHEN {kind} = {expense} THEN {amount} ELSE 0 END) AS BIGINT) AS cost_minor"
        )
        if self.rows("analytics.fct_postings"):
            sums = money_columns.format(
                kind="account_type", revenue="'revenue'", expense="'expense'", amount="amount_reporting_minor"
            )
            frame = self.warehouse.query(
                f"SELECT occurred_on AS day, reporting_currency AS currency, {sums} FROM analytics.fct_postings "
                "WHERE account_type IN ('revenue', 'expense') AND amount_reporting_minor IS NOT NULL "
                "GROUP BY occurred_on, reporting_currency ORDER BY 1, 2"
            )
            if len(frame):
                return _typed(frame, "day"), "analytics.fct_postings (dbt mart), converted to the reporting currency"
        if self.has("ledger.postings"):
            sums = money_columns.format(
                kind="split_part(account_id, ':', 1)", revenue="'revenue'", expense="'expenses'", amount="amount_minor"
            )
            frame = self.warehouse.query(
                f"SELECT {UTC_DAY} AS day, currency, {sums} FROM ledger.postings "
                "WHERE account_id LIKE 'revenue:%%' OR account_id LIKE 'expenses:%%' GROUP BY 1, currency ORDER BY 1, 2"
            )
            if len(frame):
                return _typed(
                    frame, "day"
                ), "ledger.postings in each currency's own units (the dbt marts are not built yet)"
        return pd.DataFrame(columns=["day", "currency", "revenue_minor", "cost_minor"]), ""


# The UTC calendar day of a posting, on PostgreSQL and DuckDB alike (dbt_project/macros/time.sql's utc_date).
UTC_DAY = "CAST((occurred_at AT TIME ZONE 'UTC') AS DATE)"


def _typed(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    frame = frame.copy()
    frame[day] = _dates(frame[day])
    for column in frame.columns:
        if column.endswith("_minor"):
            frame[column] = frame[column].astype("int64")
    return frame


def _missing_table(reader: Reader, table: str, asset: str, rows_meaning: str = "rows") -> str | None:
    """None when `table` has rows, else the sentence that says what is missing and what to materialize."""
    if not reader.has(table):
        return f"{table} does not exist in this warehouse: materialize the asset {asset} (it creates and fills it)."
    if not reader.rows(table):
        return f"{table} has no {rows_meaning} yet: materialize the asset {asset}."
    return None


def _by_volume(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The currencies of `frame`, the reporting currency first, then by how much money moved."""
    volume = frame[list(columns)].abs().sum(axis=1).groupby(frame["currency"]).sum()
    return sorted(volume.index, key=lambda c: (c != REPORTING_CURRENCY, -int(volume[c]), c))


def revenue_and_cost(reader: Reader) -> Section:
    title = "Revenue and cost over time"
    pnl, origin = reader.pnl()
    if pnl.empty:
        return Section(
            "revenue_cost",
            title,
            missing=(
                "neither analytics.fct_postings nor ledger.postings has a revenue:* or expenses:* posting: "
                "materialize the asset ledger_entries, then the dbt marts (marts/fct_postings, marts/daily_cash_flow)."
            ),
        )
    currencies = _by_volume(pnl, ["revenue_minor", "cost_minor"])
    shown = currencies[:3]
    figure = new_figure(9.0, 3.0 * len(shown))
    axes = figure.subplots(len(shown), 1, squeeze=False)[:, 0]
    for axis, currency in zip(axes, shown, strict=True):
        rows = pnl[pnl["currency"] == currency]
        days = rows["day"].to_numpy()
        axis.bar(days, [_major(v, currency) for v in rows["revenue_minor"]], 0.8, color="#2e7d32", label="revenue")
        axis.bar(days, [-_major(v, currency) for v in rows["cost_minor"]], 0.8, color="#c62828", label="cost")
        axis.axhline(0, color="#444", linewidth=0.6)
        axis.set_title(f"{currency}: revenue (up) and cost (down) per UTC day", fontsize=10, loc="left")
        _money_axis(axis, currency)
        _date_axis(axis)
        net = axis.twinx()
        cumulative = (rows["revenue_minor"] - rows["cost_minor"]).cumsum()
        net.plot(
            days, [_major(v, currency) for v in cumulative], color="#1f4e79", linewidth=1.5, label="cumulative net"
        )
        _money_axis(net, f"cumulative net, {currency}")
        _align_zero(axis, net)
        handles = axis.get_legend_handles_labels()[0] + net.get_legend_handles_labels()[0]
        axis.legend(handles=handles, loc="upper left", fontsize=8)
    chart = png_img(figure, f"Revenue and cost per day in {', '.join(shown)}")
    totals = []
    for currency in currencies:
        rows = pnl[pnl["currency"] == currency]
        last30 = rows[rows["day"] > rows["day"].max() - _days(30)]
        totals.append(
            [
                currency,
                f"{_day(rows['day'].min())} to {_day(rows['day'].max())}",
                money(rows["revenue_minor"].sum(), currency),
                money(rows["cost_minor"].sum(), currency),
                money(rows["revenue_minor"].sum() - rows["cost_minor"].sum(), currency),
                money(last30["revenue_minor"].sum() - last30["cost_minor"].sum(), currency),
            ]
        )
    table = table_html(
        ["currency", "days", "revenue", "cost", "net", "net, last 30 days"], totals, numeric=(2, 3, 4, 5)
    )
    more = f" Charted: {', '.join(shown)}; the table has every currency." if len(currencies) > len(shown) else ""
    caption = (
        f"From {origin}: credits to revenue:* accounts and debits to expenses:* accounts per UTC day, "
        f"as the monthly P&L counts them.{more}"
    )
    return Section("revenue_cost", title, body=f"<p>{_e(caption)}</p>{chart}{table}{cash_table(reader)}", charts=1)


def _align_zero(left: Any, right: Any) -> None:
    """Put zero at the same height on both y axes of a twinned chart, so neither baseline misleads.
    Each axis keeps its own scale; both get the larger share of their height below zero."""
    limits = [axis.get_ylim() for axis in (left, right)]
    if any(high <= 0 or low >= high for low, high in limits):
        return  # a series with nothing above zero: no common baseline to line up
    below = max(max(-low, 0.0) / (high - low) for low, high in limits)
    if below > 0.9:
        return  # almost all below zero: aligning would squash the other axis
    for axis, (_low, high) in zip((left, right), limits, strict=True):
        axis.set_ylim(-high * below / (1 - below), high)


def cash_table(reader: Reader) -> str:
    """Money in and out of the cash accounts per currency: what the cash-flow forecast learns from. It
    differs from revenue and cost where money rests elsewhere (a payment processor's balance, a card)."""
    cash, origin = reader.cash()
    if cash.empty:
        return "<p>No cash-account posting (assets:cash:*) yet: the cash-flow forecast has nothing to learn from.</p>"
    rows = []
    for currency in _by_volume(cash, ["inflow_minor", "outflow_minor"]):
        days = cash[cash["currency"] == currency]
        rows.append(
            [
                currency,
                f"{_day(days['cash_date'].min())} to {_day(days['cash_date'].max())}",
                money(days["inflow_minor"].sum(), currency),
                money(days["outflow_minor"].sum(), currency),
                money(days["net_minor"].sum(), currency),
            ]
        )
    return f"<h3>Cash accounts, from {_e(origin)}</h3>" + table_html(
        ["currency", "days", "in", "out", "net"], rows, numeric=(2, 3, 4)
    )


def _days(n: int) -> Any:
    import numpy as np

    return np.timedelta64(n, "D")


def forecast(reader: Reader) -> Section:
    title = "Cash-flow forecast"
    missing = _missing_table(reader, "forecasting.cash_flow_forecast", "cash_flow_forecast", "forecast")
    if missing:
        return Section("forecast", title, missing=missing)
    frame = reader.warehouse.query(
        "SELECT forecast_id, currency, forecast_date, horizon_day, net_minor, lo80_minor, hi80_minor, lo95_minor, "
        "hi95_minor, trained_through, made_at FROM forecasting.cash_flow_forecast "
        "WHERE made_at = (SELECT max(made_at) FROM forecasting.cash_flow_forecast) ORDER BY currency, forecast_date"
    )
    frame["forecast_date"] = _dates(frame["forecast_date"])
    cash, origin = reader.cash()
    converted, left_out = reader.reporting_cash()
    currencies = sorted(frame["currency"].unique(), key=lambda c: (c != REPORTING_CURRENCY, c))
    figure = new_figure(9.0, 3.4 * len(currencies))
    axes = figure.subplots(len(currencies), 1, squeeze=False)[:, 0]
    for axis, currency in zip(axes, currencies, strict=True):
        rows = frame[frame["currency"] == currency]
        days = rows["forecast_date"].to_numpy()
        history = actual_net(converted if currency == REPORTING_CURRENCY else cash, currency, before=days.min())
        if len(history):
            axis.plot(
                history.index.to_numpy(),
                [_major(v, currency) for v in history],
                color="#333",
                linewidth=1.0,
                label="actual net",
            )
        # The wide band first, so that the narrow one is drawn over it.
        for level, color in ((95, "#9ecae1"), (80, "#4292c6")):
            axis.fill_between(
                days,
                [_major(v, currency) for v in rows[f"lo{level}_minor"]],
                [_major(v, currency) for v in rows[f"hi{level}_minor"]],
                color=color,
                alpha=0.6,
                label=f"{level}% interval",
            )
        axis.plot(
            days,
            [_major(v, currency) for v in rows["net_minor"]],
            color="#08306b",
            linewidth=1.6,
            linestyle="--",
            label="forecast",
        )
        axis.axhline(0, color="#444", linewidth=0.6)
        axis.set_title(f"{currency}: daily net cash flow, actual then forecast", fontsize=10, loc="left")
        _money_axis(axis, currency)
        _date_axis(axis)
        axis.legend(loc="upper left", fontsize=8, ncols=4)
    chart = png_img(figure, f"Cash-flow forecast with 80% and 95% intervals in {', '.join(currencies)}")
    first = frame.iloc[0]
    rows = []
    for currency in currencies:
        ahead = frame[frame["currency"] == currency]
        shown = ahead if len(ahead) <= 8 else _first_and_last(ahead, 7)  # the first week and the last day
        for r in shown.itertuples():
            rows.append(
                [
                    currency,
                    _day(r.forecast_date),
                    int(r.horizon_day),
                    money(r.net_minor, currency),
                    f"{money(r.lo80_minor, currency)} to {money(r.hi80_minor, currency)}",
                    f"{money(r.lo95_minor, currency)} to {money(r.hi95_minor, currency)}",
                ]
            )
    table = table_html(["currency", "day", "horizon", "net", "80% interval", "95% interval"], rows, numeric=(2, 3))
    caption = (
        f"Forecast {first.forecast_id}, made {_instant(first.made_at)} from the days through "
        f"{_day(first.trained_through)}; {len(frame) // len(currencies)} days ahead. The shaded bands are the "
        f"80% and 95% intervals. "
        + (
            f"The line before it is the actual daily net cash flow from {origin}, every currency converted to "
            f"{REPORTING_CURRENCY} at its day's ECB rate, as the forecast learns it{left_out}."
            if len(cash)
            else "No actual cash flow to draw before it (materialize marts/daily_cash_flow)."
        )
    )
    return Section(
        "forecast", title, body=f"<p>{_e(caption)}</p>{chart}{table}{backtest(reader, first.forecast_id)}", charts=1
    )


def actual_net(cash: pd.DataFrame, currency: str, before: Any) -> pd.Series:
    """The daily net cash flow of `currency` over the HISTORY_DAYS before `before`, one value a day:
    the mart has no row for a day without a cash posting, and that day's net is zero, not missing."""
    import pandas as pd

    rows = cash[(cash["currency"] == currency) & (cash["cash_date"] < before)]
    if rows.empty:
        return pd.Series(dtype="int64")
    start = max(rows["cash_date"].min(), before - _days(HISTORY_DAYS))
    days = pd.date_range(start, before - _days(1), freq="D")
    return rows.set_index("cash_date")["net_minor"].reindex(days, fill_value=0)


def _first_and_last(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    import pandas as pd

    return pd.concat([frame.head(n), frame.tail(1)])


def backtest(reader: Reader, forecast_id: str) -> str:
    """The backtest behind the forecast, when forecasting.forecast_backtest has it."""
    if not reader.has("forecasting.forecast_backtest"):
        return ""
    frame = reader.warehouse.query(
        "SELECT model, folds, horizon, mase, smape, coverage80, coverage95, fit_seconds, weight "
        "FROM forecasting.forecast_backtest WHERE forecast_id = %s ORDER BY weight DESC, model",
        [forecast_id],
    )
    if frame.empty:
        return ""
    rows = [
        [
            r.model,
            int(r.folds),
            int(r.horizon),
            _number(r.mase, 3),
            _number(r.smape, 3),
            _percent(r.coverage80),
            _percent(r.coverage95),
            _number(r.fit_seconds, 2),
            _number(r.weight, 3),
        ]
        for r in frame.itertuples()
    ]
    headers = ["model", "folds", "horizon", "MASE", "sMAPE", "80% coverage", "95% coverage", "fit s", "weight"]
    return "<h3>Backtest (rolling origin; MASE below 1 beats seasonal naive)</h3>" + table_html(
        headers, rows, numeric=(1, 2, 3, 4, 5, 6, 7, 8)
    )


def funnel(reader: Reader) -> Section:
    title = "Experiment funnel by state"
    missing = _missing_table(reader, "experiments.experiments", "experiment_proposals", "experiment")
    if missing:
        return Section("funnel", title, missing=missing)
    now = reader.warehouse.query(
        "SELECT state, count(*) AS n, "
        "SUM(CASE WHEN opportunity_id LIKE %s THEN 1 ELSE 0 END) AS history "
        "FROM experiments.experiments GROUP BY state",
        [f"{HISTORY_PREFIX}-%"],
    )
    reached = (
        reader.warehouse.query(
            "SELECT to_state AS state, count(DISTINCT experiment_id) AS n FROM experiments.transitions "
            "GROUP BY to_state"
        )
        if reader.has("experiments.transitions")
        else None
    )
    current = {str(r.state): int(r.n) for r in now.itertuples()}
    ever = {str(r.state): int(r.n) for r in reached.itertuples()} if reached is not None else {}
    states = [s for s in STATES if s in current or s in ever] + sorted((set(current) | set(ever)) - set(STATES))
    figure = new_figure(9.0, 0.45 * len(states) + 1.2)
    axis = figure.subplots()
    positions = list(range(len(states)))[::-1]
    if ever:
        axis.barh(
            [p + 0.2 for p in positions], [ever.get(s, 0) for s in states], 0.4, color="#9ecae1", label="ever reached"
        )
    axis.barh(
        [p - 0.2 for p in positions] if ever else positions,
        [current.get(s, 0) for s in states],
        0.4 if ever else 0.6,
        color="#1f4e79",
        label="in it now",
    )
    for position, state in zip(positions, states, strict=True):
        if current.get(state, 0):
            axis.text(current[state], position - (0.2 if ever else 0), f" {current[state]}", va="center", fontsize=8)
    axis.set_yticks(positions, states)
    axis.set_xlabel("experiments")
    axis.margins(x=0.08)
    figure.legend(loc="outside upper right", ncols=2, fontsize=8)
    chart = png_img(figure, "Experiments by lifecycle state")
    history = int(now["history"].sum())
    total = int(now["n"].sum())
    rows = [[s, current.get(s, 0), ever.get(s, 0) if ever else "–"] for s in states]
    table = table_html(["state", "in it now", "ever reached"], rows, numeric=(1, 2))
    caption = (
        f"{total} experiments in experiments.experiments"
        + (f", {history} of them the simulated back catalog (opportunity ids {HISTORY_PREFIX}-*)" if history else "")
        + ". 'Ever reached' counts each experiment once per state it entered (experiments.transitions)."
    )
    return Section("funnel", title, body=f"<p>{_e(caption)}</p>{chart}{table}", charts=1)


def roi_distribution(reader: Reader) -> Section:
    import numpy as np

    title = "ROI distribution"
    missing = _missing_table(reader, "experiments.outcomes", "experiment_outcomes", "outcome")
    if missing:
        return Section("roi", title, missing=missing)
    frame = reader.warehouse.query(
        "SELECT experiment_id, state, succeeded, roi, revenue_minor, cost_minor, net_minor, currency "
        "FROM experiments.outcomes"
    )
    with_roi = frame[frame["roi"].notna()]
    if with_roi.empty:
        return Section(
            "roi",
            title,
            missing=(
                f"experiments.outcomes has {len(frame)} outcome(s) but none with an ROI (an ROI needs a booked "
                "cost): materialize experiment_outcomes after experiments that spent have finished."
            ),
        )
    roi = with_roi["roi"].astype(float).to_numpy()
    low, high = np.percentile(roi, [2, 98]) if len(roi) >= 20 else (roi.min(), roi.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    clipped = np.clip(roi, low, high)
    succeeded = with_roi["succeeded"].astype(bool).to_numpy()
    figure = new_figure(9.0, 3.4)
    axis = figure.subplots()
    bins = np.linspace(low, high, 31)
    axis.hist(
        [clipped[succeeded], clipped[~succeeded]],
        bins=bins,
        stacked=True,
        color=["#2e7d32", "#c62828"],
        label=["met its criteria", "did not"],
    )
    axis.axvline(0, color="#444", linewidth=0.8, linestyle=":")
    axis.axvline(float(np.median(roi)), color="#1f4e79", linewidth=1.2, label=f"median {np.median(roi):.2f}")
    axis.set_xlabel("ROI (net / cost)")
    axis.set_ylabel("experiments")
    axis.legend(fontsize=8)
    chart = png_img(figure, "Histogram of experiment ROI")
    outside = int(((roi < low) | (roi > high)).sum())
    p10, p25, p75, p90 = np.percentile(roi, [10, 25, 75, 90])
    stats = table_html(
        ["experiments with ROI", "median", "mean", "10th–90th percentile", "quartiles", "ROI above 0", "met criteria"],
        [
            [
                len(roi),
                f"{np.median(roi):.2f}",
                f"{roi.mean():.2f}",
                f"{p10:.2f} to {p90:.2f}",
                f"{p25:.2f} to {p75:.2f}",
                _percent((roi > 0).mean()),
                _percent(succeeded.mean()),
            ]
        ],
        numeric=(0, 1, 2),
    )
    money_rows = [
        [
            currency,
            len(rows),
            money(rows["revenue_minor"].sum(), currency),
            money(rows["cost_minor"].sum(), currency),
            money(rows["net_minor"].sum(), currency),
        ]
        for currency, rows in frame.groupby("currency", sort=True)
    ]
    totals = table_html(["currency", "outcomes", "revenue", "cost", "net"], money_rows, numeric=(1, 2, 3, 4))
    caption = (
        f"ROI of the {len(roi)} finished experiments in experiments.outcomes that booked a cost "
        f"({len(frame) - len(roi)} without one are left out)."
        + (
            f" {outside} beyond the 2nd–98th percentile are drawn at the edges (lowest {roi.min():.2f}, highest "
            f"{roi.max():.2f})."
            if outside
            else ""
        )
    )
    return Section("roi", title, body=f"<p>{_e(caption)}</p>{chart}{stats}{totals}", charts=1)


def beta_density(alpha: float, beta: float, x: Any) -> Any:
    """The Beta(alpha, beta) density at x (numpy), through log-gamma so that large counts do not overflow."""
    import numpy as np

    log_norm = math.lgamma(alpha + beta) - math.lgamma(alpha) - math.lgamma(beta)
    return np.exp(log_norm + (alpha - 1) * np.log(x) + (beta - 1) * np.log1p(-x))


def beta_interval(alpha: float, beta: float, mass: float = 0.9, points: int = 4001) -> tuple[float, float]:
    """The central `mass` credible interval of Beta(alpha, beta), from its density on a fine grid."""
    import numpy as np

    x = np.linspace(0.0, 1.0, points)[1:-1]
    density = beta_density(alpha, beta, x)
    cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    cumulative /= cumulative[-1]
    tail = (1 - mass) / 2
    return float(np.interp(tail, cumulative, x)), float(np.interp(1 - tail, cumulative, x))


def bandit_posteriors(reader: Reader) -> Section:
    import numpy as np

    title = "Source bandit posteriors"
    missing = _missing_table(reader, "learning.source_posterior", "source_bandit", "posterior")
    if missing:
        return Section("bandit", title, missing=missing)
    frame = reader.warehouse.query(
        "SELECT source, experiments, successes, failures, alpha, beta, mean, roi_experiments, roi_mu, roi_mean_sd, "
        "computed_at FROM learning.source_posterior ORDER BY mean DESC, source"
    )
    x = np.linspace(0.0, 1.0, 801)[1:-1]
    figure = new_figure(9.0, 3.8)
    axis = figure.subplots()
    colors = [f"C{i % 10}" for i in range(len(frame))]
    for color, r in zip(colors, frame.itertuples(), strict=True):
        density = beta_density(float(r.alpha), float(r.beta), x)
        axis.plot(x, density, color=color, linewidth=1.4, label=f"{r.source} ({int(r.successes)}/{int(r.experiments)})")
        axis.fill_between(x, density, color=color, alpha=0.08)
    axis.set_xlim(0, 1)
    axis.set_ylim(bottom=0)
    axis.set_xlabel("P(an experiment from this source meets its criteria)")
    axis.set_ylabel("posterior density")
    axis.legend(fontsize=7, ncols=2, loc="upper right", title="source (successes/experiments)", title_fontsize=7)
    chart = png_img(figure, "Beta posterior densities of each source's success rate")
    rows = []
    for r in frame.itertuples():
        low, high = beta_interval(float(r.alpha), float(r.beta))
        rows.append(
            [
                r.source,
                int(r.experiments),
                int(r.successes),
                f"Beta({float(r.alpha):g}, {float(r.beta):g})",
                f"{float(r.mean):.3f}",
                f"{low:.3f} to {high:.3f}",
                int(r.roi_experiments),
                f"{float(r.roi_mu):+.2f} ± {float(r.roi_mean_sd):.2f}",
            ]
        )
    table = table_html(
        ["source", "experiments", "succeeded", "posterior", "mean", "90% interval", "with ROI", "asinh ROI"],
        rows,
        numeric=(1, 2, 4, 6),
    )
    caption = (
        f"learning.source_posterior, computed {_instant(frame['computed_at'].max())}: each discovery source's Beta "
        "posterior on the chance that an experiment from it meets its success criteria (prior Beta(1, 1)). The "
        "discovery schedule Thompson-samples these curves to choose which sources to query."
    )
    return Section("bandit", title, body=f"<p>{_e(caption)}</p>{chart}{table}", charts=1)


def anomalies(reader: Reader) -> Section:
    title = "Anomalies on their series"
    missing = _missing_table(reader, "monitoring.daily_metrics", "metric_anomalies", "daily metrics")
    found = (
        reader.warehouse.query(
            "SELECT metric_date, metric, value, expected, score, severity, method, explanation, detected_at "
            "FROM monitoring.metric_anomalies"
        )
        if reader.rows("monitoring.metric_anomalies")
        else None
    )
    if found is not None:
        found["metric_date"] = _dates(found["metric_date"])
    if missing and found is None:
        return Section("anomalies", title, missing=missing)
    parts = []
    charts = 0
    if not missing:
        series = reader.warehouse.query(
            "SELECT metric_date, metric, value FROM monitoring.daily_metrics ORDER BY metric, metric_date"
        )
        series["metric_date"] = _dates(series["metric_date"])
        names = [m for m in METRIC_ORDER if m in set(series["metric"])] + sorted(
            set(series["metric"]) - set(METRIC_ORDER)
        )
        figure = new_figure(9.0, 1.9 * len(names) + 0.6)
        axes = figure.subplots(len(names), 1, squeeze=False, sharex=True)[:, 0]
        severities_drawn: set[str] = set()
        for axis, name in zip(axes, names, strict=True):
            rows = series[series["metric"] == name]
            scale = 10 ** CURRENCY_EXPONENTS[REPORTING_CURRENCY] if name.endswith("_minor") else 1
            axis.plot(rows["metric_date"].to_numpy(), rows["value"].astype(float) / scale, color="#555", linewidth=1.0)
            if found is not None:
                marked = found[found["metric"] == name]
                for severity in [*SEVERITIES, *sorted(set(marked["severity"]) - set(SEVERITIES))]:
                    points = marked[marked["severity"] == severity]
                    if points.empty:
                        continue
                    severities_drawn.add(severity)
                    axis.scatter(
                        points["metric_date"].to_numpy(),
                        points["value"].astype(float) / scale,
                        s=24 + 14 * (SEVERITIES.index(severity) if severity in SEVERITIES else 0),
                        color=SEVERITY_COLORS.get(severity, "#000"),
                        edgecolors="black",
                        linewidths=0.5,
                        zorder=3,
                    )
            label = name.removesuffix("_minor") + (f" ({REPORTING_CURRENCY})" if name.endswith("_minor") else "")
            axis.set_title(label, fontsize=9, loc="left")
            _date_axis(axis)
        if severities_drawn:
            from matplotlib.lines import Line2D

            handles = [
                Line2D(
                    [],
                    [],
                    marker="o",
                    linestyle="",
                    color=SEVERITY_COLORS.get(s, "#000"),
                    markeredgecolor="black",
                    label=s,
                )
                for s in [*SEVERITIES, *sorted(severities_drawn - set(SEVERITIES))]
                if s in severities_drawn
            ]
            figure.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=8, title="severity")
        parts.append(png_img(figure, "Daily metrics with anomalies marked by severity"))
        charts = 1
        days = series["metric_date"]
        caption = (
            f"monitoring.daily_metrics: {len(names)} metrics over {_day(days.min())} to {_day(days.max())}, as the "
            "anomaly detector saw them; a marker is a day monitoring.metric_anomalies flagged, colored by severity."
        )
        parts.insert(0, f"<p>{_e(caption)}</p>")
    else:
        parts.append(f'<p class="missing">{_e(missing)} The anomalies below are listed without their series.</p>')
    if found is None:
        parts.append("<p>No anomaly detected in these series.</p>")
    else:
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        ordered = found.assign(_rank=found["severity"].map(lambda s: -rank.get(s, -1))).sort_values(
            ["metric_date", "_rank"], ascending=[False, True]
        )
        counts = found["severity"].value_counts()
        summary = ", ".join(
            f"{int(counts[s])} {s}" for s in [*SEVERITIES, *sorted(set(counts.index) - set(SEVERITIES))] if s in counts
        )
        rows = [
            [
                _day(r.metric_date),
                r.metric,
                _metric_value(r.metric, r.value),
                _metric_value(r.metric, r.expected),
                _badge(r.severity, SEVERITY_COLORS.get(r.severity, "#000")),
                r.method,
                r.explanation,
            ]
            for r in ordered.head(ANOMALIES_LISTED).itertuples()
        ]
        more = f" (the latest {ANOMALIES_LISTED} listed)" if len(found) > ANOMALIES_LISTED else ""
        parts.append(f"<p>{_e(f'{len(found)} anomalies: {summary}{more}.')}</p>")
        parts.append(
            table_html(
                ["day", "metric", "value", "expected", "severity", "method", "explanation"], rows, numeric=(2, 3)
            )
        )
    return Section("anomalies", title, body="".join(parts), charts=charts)


def slo_status(reader: Reader) -> Section:
    title = "SLO status"
    missing = _missing_table(reader, "monitoring.slo_report", "slo_report", "evaluation")
    if missing:
        return Section("slo", title, missing=missing)
    frame = reader.warehouse.query(
        "SELECT evaluated_at, slo, objective, slo_window, good, total, attainment, error_budget_remaining, "
        "burn_rate_1h, burn_rate_6h, status, detail FROM monitoring.slo_report "
        "WHERE evaluated_at = (SELECT max(evaluated_at) FROM monitoring.slo_report) ORDER BY slo"
    )
    rows = [
        [
            r.slo,
            _percent(r.objective, 2),
            r.slo_window,
            f"{_number(r.good, 0)} / {_number(r.total, 0)}",
            _percent(r.attainment, 2),
            _percent(r.error_budget_remaining, 1),
            _number(r.burn_rate_1h, 2),
            _number(r.burn_rate_6h, 2),
            _badge(r.status, SLO_STATUS_COLORS.get(r.status, "#000")),
            r.detail,
        ]
        for r in frame.itertuples()
    ]
    table = table_html(
        [
            "SLO",
            "objective",
            "window",
            "good / total",
            "attainment",
            "budget left",
            "burn 1h",
            "burn 6h",
            "status",
            "detail",
        ],
        rows,
        numeric=(1, 3, 4, 5, 6, 7),
    )
    counts = frame["status"].value_counts()
    summary = ", ".join(f"{int(n)} {status}" for status, n in counts.items())
    caption = f"monitoring.slo_report, evaluated {_instant(frame['evaluated_at'].iloc[0])}: {summary}."
    return Section("slo", title, body=f"<p>{_e(caption)}</p>{table}")


SECTIONS: tuple[tuple[str, str, Callable[[Reader], Section]], ...] = (
    ("revenue_cost", "Revenue and cost over time", revenue_and_cost),
    ("forecast", "Cash-flow forecast", forecast),
    ("funnel", "Experiment funnel by state", funnel),
    ("roi", "ROI distribution", roi_distribution),
    ("bandit", "Source bandit posteriors", bandit_posteriors),
    ("anomalies", "Anomalies on their series", anomalies),
    ("slo", "SLO status", slo_status),
)


def build_sections(warehouse: Warehouse) -> list[Section]:
    """Every section, in the report's order. A DuckDB file that is not there is never created: each
    section then says so. A section whose tables are there but cannot be drawn (a table of an older
    shape, a value no chart can take) says why, and the others are still drawn."""
    if not warehouse.exists():
        missing = (
            f"no warehouse at {warehouse.duckdb_path}: create it with `make demo` (or point WAREHOUSE_URL at one)."
        )
        return [Section(key, title, missing=missing) for key, title, _build in SECTIONS]
    reader = Reader(warehouse)
    sections = []
    for key, title, build in SECTIONS:
        try:
            sections.append(build(reader))
        # One table's surprise must not cost the reader the other six sections: the section names it.
        except Exception as error:  # noqa: BLE001
            sections.append(Section(key, title, error=f"{type(error).__name__}: {error}"))
    return sections


# -- the document ---------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1b1b1b;
       background: #f6f7f9; }
header { background: #1f4e79; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 6px 0; font-size: 22px; }
header p { margin: 2px 0; font-size: 13px; opacity: 0.9; }
main { max-width: 1000px; margin: 0 auto; padding: 12px 24px 48px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 14px 20px; margin: 16px 0; }
h2 { font-size: 17px; margin: 4px 0 8px; }
h3 { font-size: 14px; margin: 14px 0 6px; }
p { font-size: 13px; line-height: 1.45; }
img.chart { display: block; max-width: 100%; height: auto; margin: 8px 0; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; width: 100%; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { color: #fff; border-radius: 3px; padding: 1px 6px; font-size: 11px; white-space: nowrap; }
.missing { background: #fff8e1; border-left: 4px solid #f9a825; padding: 8px 12px; }
.error { background: #fdecea; border-left: 4px solid #c62828; padding: 8px 12px; }
nav ul { list-style: none; padding: 0; margin: 8px 0; font-size: 13px; }
nav li { margin: 2px 0; }
nav a { color: #1f4e79; }
"""


def render(sections: Sequence[Section], *, warehouse: str, generated_at: datetime) -> str:
    """The whole document: a header (when, from which warehouse), the contents with each section's
    state, then the sections. Everything inline; the only links are to anchors in the page."""
    contents = "".join(
        f'<li><a href="#{s.key}">{_e(s.title)}</a>: '
        + ("drawn" if s.drawn else f"missing: {_e(s.missing)}" if s.missing else f"could not be drawn: {_e(s.error)}")
        + "</li>"
        for s in sections
    )
    body = []
    for s in sections:
        if s.missing:
            inner = f'<p class="missing">Missing: {_e(s.missing)}</p>'
        elif s.error:
            inner = (
                f'<p class="error">This section could not be drawn: {_e(s.error)}. Its table may be of an older '
                "shape: materialize the asset that writes it again.</p>"
            )
        else:
            inner = s.body
        body.append(f'<section id="{s.key}"><h2>{_e(s.title)}</h2>{inner}</section>')
    drawn = sum(s.drawn for s in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ventureloop report {generated_at:%Y-%m-%d}</title><style>{CSS}</style></head><body>"
        "<header><h1>ventureloop report</h1>"
        f"<p>Generated {generated_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC from the warehouse {_e(warehouse)}</p>"
        f"<p>{drawn} of {len(sections)} sections drawn. Money is shown in each currency's own units, "
        "exactly as booked (integer minor units).</p></header>"
        f"<main><nav><ul>{contents}</ul></nav>{''.join(body)}</main></body></html>\n"
    )


@dataclass(frozen=True)
class Report:
    path: Path
    latest: Path | None
    sections: list[Section]
    generated_at: datetime
    warehouse: str
    size: int

    @property
    def drawn(self) -> list[str]:
        return [s.key for s in self.sections if s.drawn]

    @property
    def missing(self) -> dict[str, str]:
        return {s.key: s.missing for s in self.sections if s.missing}

    @property
    def errors(self) -> dict[str, str]:
        return {s.key: s.error for s in self.sections if s.error}

    @property
    def charts(self) -> int:
        return sum(s.charts for s in self.sections if s.drawn)


def reports_dir(home: Path | None = None) -> Path:
    return (home or default_home()) / "reports"


def _write(path: Path, text: str) -> None:
    # Written beside and renamed: a browser or mailer reading latest.html never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_report(
    warehouse: Warehouse, *, out: Path | None = None, home: Path | None = None, now: datetime | None = None
) -> Report:
    """Write the report and return where. By default $VENTURELOOP_HOME/reports/report-<UTC date>.html
    (one a day: a second run that day replaces it) and a copy as reports/latest.html, the stable
    name to bookmark; with `out`, that file alone."""
    generated_at = (now or datetime.now(UTC)).astimezone(UTC)
    sections = build_sections(warehouse)
    text = render(sections, warehouse=warehouse.describe(), generated_at=generated_at)
    latest = None
    if out is not None:
        path = Path(out).resolve()
        _write(path, text)
    else:
        directory = reports_dir(home)
        path = directory / f"report-{generated_at:%Y-%m-%d}.html"
        latest = directory / LATEST_NAME
        _write(path, text)
        _write(latest, text)
    return Report(path, latest, sections, generated_at, warehouse.describe(), len(text.encode("utf-8")))
