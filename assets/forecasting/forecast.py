"""The cash-flow forecast as an asset: daily net cash flow in the reporting currency for the next
`horizon_days`, with 80% and 95% intervals, by the backtest-weighted ensemble of ml/forecast.py.

Input: analytics.daily_cash_flow (the dbt mart, native currencies). Every currency is converted to
the reporting currency (USD) at its day's ECB rate from ledger.fx_rates (the bundled snapshot when
the warehouse has none); a row without a rate is left out and counted in the metadata. A day
without a row is a day without cash flow: zero, not missing.

Output: forecasting.cash_flow_forecast (one forecast_id per materialization, appended) and
forecasting.forecast_backtest (one row per model and one for the ensemble), an MLflow run, and
both tables in the materialization's metadata."""

import datetime
import math
import uuid

import dagster as dg
import pydantic

from assets.resources import MlflowResource, WarehouseResource, warehouse_kind, warehouse_pool

OWNER = "team:learning"
FORECAST_TABLE = "forecasting.cash_flow_forecast"
BACKTEST_TABLE = "forecasting.forecast_backtest"
MART = "analytics.daily_cash_flow"
DAILY_CASH_FLOW = dg.AssetKey(["marts", "daily_cash_flow"])


class ForecastResource(dg.ConfigurableResource):
    """How the cash flow is forecast: FORECAST_HORIZON_DAYS (default 30), FORECAST_HOLIDAY_COUNTRY
    (an ISO code the holidays package knows, default US; empty for none) and FORECAST_BACKTEST_FOLDS
    (rolling origins, default 3: each costs one fit of every model)."""

    horizon_days: int = 30
    holiday_country: str | None = "US"
    backtest_folds: int = 3

    @pydantic.field_validator("horizon_days", "backtest_folds")
    @classmethod
    def _positive(cls, value: int, info) -> int:
        if value < 1 or value > 366:
            raise ValueError(f"{info.field_name}={value}: use a whole number from 1 to 366")
        return value

    def settings(self):
        from ml.forecast import ForecastError, Settings, check_country

        try:
            country = check_country(self.holiday_country)
        except ForecastError as error:
            raise dg.Failure(f"FORECAST_HOLIDAY_COUNTRY: {error}") from None
        return Settings(horizon=self.horizon_days, folds=self.backtest_folds, holiday_country=country)


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _backtest_markdown(table) -> str:
    lines = [
        "| model | MASE | sMAPE % | 80% coverage | 95% coverage | fit s | weight |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples(index=False):
        cells = [f"{v:.3f}" if v is not None and math.isfinite(v) else "-" for v in (row.mase, row.smape)]
        cover = [f"{v:.0%}" if v is not None and math.isfinite(v) else "-" for v in (row.coverage80, row.coverage95)]
        note = f" ({row.error})" if getattr(row, "error", None) else ""
        numbers = [*cells, *cover, f"{row.fit_seconds:.3f}", f"{row.weight:.2f}"]
        lines.append(f"| {row.model}{note} | {' | '.join(numbers)} |")
    return "\n".join(lines)


def _forecast_markdown(rows) -> str:
    lines = ["| day | date | net | 80% | 95% |", "|---:|---|---:|---|---|"]
    for r in rows.itertuples(index=False):
        lines.append(
            f"| {r.horizon_day} | {r.forecast_date} | {r.net_minor / 100:,.2f} | "
            f"{r.lo80_minor / 100:,.2f} to {r.hi80_minor / 100:,.2f} | "
            f"{r.lo95_minor / 100:,.2f} to {r.hi95_minor / 100:,.2f} |"
        )
    return "\n".join(lines)


@dg.asset(
    group_name="forecasting",
    owners=[OWNER],
    kinds={"python", "prophet", "statsforecast", warehouse_kind()},
    pool=warehouse_pool(),
    deps=[DAILY_CASH_FLOW],
    metadata={"dagster/table_name": FORECAST_TABLE},
    description="Daily net cash flow in USD for the next FORECAST_HORIZON_DAYS (default 30) with 80% and 95% "
    "intervals: Prophet, AutoARIMA, AutoETS and seasonal naive, weighted by a rolling-origin backtest (MASE) "
    "and calibrated on it; the backtest per model is in forecasting.forecast_backtest and MLflow.",
)
def cash_flow_forecast(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, forecast: ForecastResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    import pandas as pd

    from core.experiments.outcomes import REPORTING_CURRENCY
    from core.ledger.fx import ledger_or_bundled
    from core.platform.schema import ensure_schema
    from core.platform.warehouse import append_frame
    from ml import forecast as ml

    settings = forecast.settings()
    client = warehouse.client()
    ensure_schema(client)
    if not client.table_exists(MART):
        # A skip, not a failure: the mart is the other code location's, and materializing this whole
        # location (`dagster asset materialize --select '*'`) before the marts exist is not an error.
        reason = f"{MART} does not exist yet: materialize the dbt marts (marts/daily_cash_flow) first"
        context.log.warning(f"cash-flow forecast skipped: {reason}")
        return dg.MaterializeResult(metadata={"decision": "skipped", "reason": reason})
    mart = client.query(f"SELECT cash_date, currency, net_minor FROM {MART}")
    foreign = set(mart["currency"]) - {REPORTING_CURRENCY}
    rates = ledger_or_bundled(client) if foreign else None
    daily, excluded = ml.reporting_cash_flow(mart, REPORTING_CURRENCY, rates)
    common = {
        "currency": REPORTING_CURRENCY,
        "currencies_converted": ", ".join(sorted(foreign - set(excluded["currency"]))) or "none",
        "rows_excluded": len(excluded),
        "horizon_days": settings.horizon,
        "holiday_country": settings.holiday_country or "none",
    }
    if len(excluded):
        context.log.warning(f"{len(excluded)} cash-flow row(s) left out, no FX rate: {excluded['reason'].iloc[0]}")
        common["excluded"] = dg.MetadataValue.md(excluded.head(20).to_markdown(index=False))
    try:
        if daily.empty:
            raise ml.HistoryTooShort(f"{MART} has no {REPORTING_CURRENCY}-convertible rows: nothing has been booked")
        dates, values = ml.daily_series(list(daily["cash_date"]), daily["net_minor"])
        result = ml.forecast(values, dates, settings)
    except ml.HistoryTooShort as error:
        context.log.warning(f"cash-flow forecast skipped: {error}")
        return dg.MaterializeResult(metadata={**common, "decision": "skipped", "reason": str(error)})

    forecast_id = str(uuid.uuid4())
    made_at = datetime.datetime.now(datetime.UTC)
    table = result.table()
    rows = pd.DataFrame(
        {
            "forecast_id": forecast_id,
            "currency": REPORTING_CURRENCY,
            "forecast_date": table["forecast_date"],
            "horizon_day": table["horizon_day"].astype("int64"),
            # Money is integer minor units; rounding is monotonic, so the bounds stay ordered.
            **{
                f"{name}_minor": table[name].round().astype("int64") for name in ("net", "lo80", "hi80", "lo95", "hi95")
            },
            "trained_through": result.trained_through,
            "made_at": made_at,
        }
    )
    scores = result.backtest_table()
    backtest_rows = pd.DataFrame(
        {
            "forecast_id": forecast_id,
            "model": scores["model"],
            "folds": scores["folds"].astype("int64"),
            "horizon": scores["horizon"].astype("int64"),
            **{c: [_number(v) for v in scores[c]] for c in ("mase", "smape", "coverage80", "coverage95")},
            "fit_seconds": scores["fit_seconds"].astype(float),
            "weight": scores["weight"].astype(float),
            "made_at": made_at,
        }
    )
    with client.connect() as conn:  # both tables or neither
        append_frame(conn, client.backend, FORECAST_TABLE, rows)
        append_frame(conn, client.backend, BACKTEST_TABLE, backtest_rows)

    ensemble, baseline = result.score(ml.ENSEMBLE), result.score(ml.SEASONAL_NAIVE)
    metrics = {
        "ensemble_mase": ensemble.mase,
        "seasonal_naive_mase": baseline.mase,
        "ensemble_relative_mase": result.relative_mase(),
        "ensemble_coverage80": ensemble.coverage80,
        "ensemble_coverage95": ensemble.coverage95,
        "calibration80": result.evaluation.factors[80],
        "calibration95": result.evaluation.factors[95],
        "forecast_net_total_minor": float(rows["net_minor"].sum()),
        "history_days": float(result.history_days),
        **{f"weight_{m}": w for m, w in result.weights.items()},
        **{f"mase_{s.model}": s.mase for s in result.evaluation.scores},
    }
    run_id = mlflow.registry().log_run(
        "cash_flow_forecast",
        params={
            "horizon_days": settings.horizon,
            "holiday_country": settings.holiday_country or "none",
            "backtest_folds": len(result.plan.origins),
            "backtest_horizon": result.plan.horizon,
            "trained_through": result.trained_through.isoformat(),
            "forecast_id": forecast_id,
        },
        metrics=metrics,
        tables={"backtest": scores.drop(columns=["error"]), "forecast": rows.drop(columns=["made_at"])},
        tags={"dagster_run_id": context.run.run_id, "forecast_id": forecast_id},
    )
    for note in result.notes:
        context.log.info(note)
    return dg.MaterializeResult(
        metadata={
            **mlflow.metadata(run_id, {k: v for k, v in metrics.items() if math.isfinite(v)}),
            **common,
            "decision": "forecast",
            "forecast_id": forecast_id,
            "trained_through": result.trained_through.isoformat(),
            "dagster/row_count": len(rows),
            "backtest_folds": len(result.plan.origins),
            "backtest_horizon_days": result.plan.horizon,
            "notes": "; ".join(result.notes) or "none",
            "forecast": dg.MetadataValue.md(_forecast_markdown(rows)),
            "backtest": dg.MetadataValue.md(_backtest_markdown(scores)),
            "weights": dg.MetadataValue.json({m: round(w, 4) for m, w in result.weights.items()}),
        }
    )


def _latest(client, table: str):
    return client.query(f"SELECT * FROM {table} WHERE made_at = (SELECT max(made_at) FROM {table})")


@dg.asset_check(
    asset=cash_flow_forecast,
    blocking=True,
    description="The latest forecast has one row per day 1..horizon, and on every day lo95 <= lo80 <= net <= "
    "hi80 <= hi95.",
)
def forecast_intervals_nested(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    client = warehouse.client()
    if not client.table_exists(FORECAST_TABLE) or client.count(FORECAST_TABLE) == 0:
        return dg.AssetCheckResult(passed=True, metadata={"forecast": "none yet (history too short or never run)"})
    rows = _latest(client, FORECAST_TABLE).sort_values("horizon_day")
    ordered = (
        (rows["lo95_minor"] <= rows["lo80_minor"])
        & (rows["lo80_minor"] <= rows["net_minor"])
        & (rows["net_minor"] <= rows["hi80_minor"])
        & (rows["hi80_minor"] <= rows["hi95_minor"])
    )
    days = list(rows["horizon_day"])
    consecutive = days == list(range(1, len(days) + 1))
    bad = rows.loc[~ordered, "forecast_date"].astype(str).tolist()
    return dg.AssetCheckResult(
        passed=bool(ordered.all() and consecutive),
        metadata={
            "days": len(rows),
            "days_out_of_order": len(bad),
            "first_bad_days": ", ".join(bad[:5]) or "none",
            "horizon_days_consecutive": consecutive,
        },
    )


@dg.asset_check(
    asset=cash_flow_forecast,
    blocking=False,
    description="In the latest backtest the ensemble's MASE is below seasonal naive's (relative MASE under 1). "
    "A warning, not a failure: on a short or erratic history the baseline may win, and the forecast still "
    "stands, weighted towards it.",
)
def ensemble_beats_seasonal_naive(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    client = warehouse.client()
    if not client.table_exists(BACKTEST_TABLE) or client.count(BACKTEST_TABLE) == 0:
        return dg.AssetCheckResult(passed=True, metadata={"backtest": "none yet (history too short or never run)"})
    rows = _latest(client, BACKTEST_TABLE).set_index("model")
    ensemble, baseline = rows.loc["ensemble", "mase"], rows.loc["seasonal_naive", "mase"]
    relative = ensemble / baseline if baseline and baseline > 0 else math.nan
    return dg.AssetCheckResult(
        passed=bool(math.isfinite(relative) and relative < 1),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "ensemble_mase": _number(ensemble) or 0.0,
            "seasonal_naive_mase": _number(baseline) or 0.0,
            "relative_mase": _number(relative) or 0.0,
            "folds": int(rows.loc["ensemble", "folds"]),
        },
    )
