"""The cash_flow_forecast asset on a real warehouse: analytics.daily_cash_flow built in the mart's
shape (dbt runs are slow; the demo's end-to-end test covers the real chain), the forecast and the
backtest written, the MLflow run logged, the checks evaluated; each run appends its own forecast;
a short history and a missing mart are clear skips; and once on PostgreSQL."""

import tempfile
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.forecasting.forecast import (
    ForecastResource,
    cash_flow_forecast,
    ensemble_beats_seasonal_naive,
    forecast_intervals_nested,
)
from assets.resources import MlflowResource, WarehouseResource
from core.ledger import fx
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse

MLFLOW = MlflowResource(tracking_uri=f"sqlite:///{tempfile.mkdtemp(prefix='ventureloop-mlflow-')}/mlflow.db")
START = date(2026, 9, 1)  # inside the bundled ECB rates, which end 2026-11-27
MART_DDL = """CREATE TABLE analytics.daily_cash_flow (
    cash_date DATE NOT NULL, currency TEXT NOT NULL, inflow_minor BIGINT NOT NULL,
    outflow_minor BIGINT NOT NULL, net_minor BIGINT NOT NULL, posting_count BIGINT NOT NULL,
    last_recorded_at TIMESTAMPTZ NOT NULL
)"""
ASSETS = [cash_flow_forecast, forecast_intervals_nested, ensemble_beats_seasonal_naive]


def build_mart(warehouse: Warehouse, n_days: int) -> pd.DataFrame:
    """n_days of USD with a weekly pattern (every 9th day without a row: a zero-flow day), a EUR row
    every week and one KWD row, a currency the ECB does not publish."""
    rng = np.random.default_rng(11)
    weekday = [1.15, 1.2, 1.15, 1.1, 0.95, 0.65, 0.8]
    rows = []
    for k in range(n_days):
        day = START + timedelta(days=k)
        if k % 9 != 4 or k == n_days - 1:  # the mart's last day is the history's last
            net = int(50_000 * weekday[day.weekday()] + rng.normal(0, 3_000))
            rows.append((day, "USD", net + 1_000, 1_000, net))
        if k % 7 == 2:
            rows.append((day, "EUR", 8_000, 0, 8_000))
    rows.append((START + timedelta(days=3), "KWD", 2_000, 0, 2_000))
    frame = pd.DataFrame(rows, columns=["cash_date", "currency", "inflow_minor", "outflow_minor", "net_minor"])
    frame["posting_count"] = 3
    frame["last_recorded_at"] = datetime(2026, 12, 1, tzinfo=UTC)
    warehouse.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    warehouse.execute(MART_DDL)
    warehouse.append("analytics.daily_cash_flow", frame)
    return frame


def materialize(warehouse: Warehouse, **settings) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS,
        resources={
            "warehouse": WarehouseResource(url=warehouse.url),
            "forecast": ForecastResource(**settings),
            "mlflow": MLFLOW,
        },
        raise_on_error=False,
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = result.asset_materializations_for_node("cash_flow_forecast")
    return {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def assert_forecast_written(warehouse: Warehouse, result: dg.ExecuteInProcessResult, horizon: int, last: date):
    assert result.success
    found = metadata(result)
    forecast = warehouse.read("forecasting.cash_flow_forecast").sort_values("horizon_day")
    assert forecast["forecast_id"].nunique() == 1 and found["forecast_id"] == forecast["forecast_id"].iloc[0]
    assert forecast["horizon_day"].tolist() == list(range(1, horizon + 1))
    dates = [pd.Timestamp(d).date() for d in forecast["forecast_date"]]
    assert dates == [last + timedelta(days=k) for k in range(1, horizon + 1)]
    assert {pd.Timestamp(d).date() for d in forecast["trained_through"]} == {last}
    assert (forecast["currency"] == "USD").all()
    # The weekly pattern around 50,000 cents a day: the forecast is of that order, never absurd.
    assert forecast["net_minor"].between(20_000, 90_000).all()
    backtest = warehouse.read("forecasting.forecast_backtest").set_index("model")
    assert set(backtest.index) == {"prophet", "auto_arima", "auto_ets", "seasonal_naive", "ensemble"}
    models = backtest.drop(index="ensemble")
    assert models["weight"].sum() == pytest.approx(1.0)
    assert backtest.loc["ensemble", "folds"] == found["backtest_folds"]
    assert found["rows_excluded"] == 1 and found["currencies_converted"] == "EUR"
    assert "| 1 | " in found["forecast"] and "| ensemble |" in found["backtest"]
    evaluations = checks(result)
    assert evaluations["forecast_intervals_nested"].passed
    ensemble_check = evaluations["ensemble_beats_seasonal_naive"]
    assert ensemble_check.severity == dg.AssetCheckSeverity.WARN
    relative = backtest.loc["ensemble", "mase"] / backtest.loc["seasonal_naive", "mase"]
    assert ensemble_check.passed == (relative < 1)
    return found


def test_the_forecast_converts_currencies_writes_both_tables_and_logs_to_mlflow(tmp_path):
    import mlflow

    warehouse = Warehouse(f"duckdb:///{tmp_path}/warehouse.duckdb")
    ensure_schema(warehouse)
    mart = build_mart(warehouse, 70)
    result = materialize(warehouse, horizon_days=14, backtest_folds=2)
    found = assert_forecast_written(warehouse, result, 14, START + timedelta(days=69))
    run = mlflow.MlflowClient(MLFLOW.resolved_tracking_uri()).get_run(found["mlflow_run_id"])
    assert run.data.params["horizon_days"] == "14" and run.data.params["forecast_id"] == found["forecast_id"]
    assert run.data.metrics["ensemble_mase"] == pytest.approx(found["ensemble_mase"])
    # The history the models saw: USD plus EUR converted at its day's rate, KWD left out.
    eur = mart[mart.currency == "EUR"].iloc[0]
    assert fx.convert(8_000, "EUR", "USD", eur.cash_date) > 0  # a rate exists for every EUR day
    # Each materialization appends its own forecast; the checks read the latest.
    again = materialize(warehouse, horizon_days=7, backtest_folds=1)
    assert again.success and checks(again)["forecast_intervals_nested"].passed
    forecast = warehouse.read("forecasting.cash_flow_forecast")
    assert forecast["forecast_id"].nunique() == 2 and len(forecast) == 14 + 7
    assert warehouse.count("forecasting.forecast_backtest") == 10


def test_a_short_history_is_skipped_with_the_reason(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path}/warehouse.duckdb")
    ensure_schema(warehouse)
    build_mart(warehouse, 12)
    result = materialize(warehouse)
    assert result.success
    found = metadata(result)
    assert found["decision"] == "skipped"
    assert "12 day(s); a forecast needs at least 28" in found["reason"]
    assert warehouse.count("forecasting.cash_flow_forecast") == 0
    assert all(evaluation.passed for evaluation in checks(result).values())


def test_without_the_mart_the_asset_skips_naming_it(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path}/warehouse.duckdb")
    result = dg.materialize(
        [cash_flow_forecast],
        resources={"warehouse": WarehouseResource(url=warehouse.url), "forecast": ForecastResource(), "mlflow": MLFLOW},
    )
    (materialization,) = result.asset_materializations_for_node("cash_flow_forecast")
    assert materialization.metadata["decision"].value == "skipped"
    assert "analytics.daily_cash_flow does not exist yet" in materialization.metadata["reason"].value
    assert warehouse.count("forecasting.cash_flow_forecast") == 0


def test_an_unknown_holiday_country_fails_before_reading(tmp_path):
    warehouse = Warehouse(f"duckdb:///{tmp_path}/warehouse.duckdb")
    result = dg.materialize(
        [cash_flow_forecast],
        resources={
            "warehouse": WarehouseResource(url=warehouse.url),
            "forecast": ForecastResource(holiday_country="Narnia"),
            "mlflow": MLFLOW,
        },
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "FORECAST_HOLIDAY_COUNTRY" in str(failure.step_failure_data.error.message)


@pytest.mark.postgres
def test_the_forecast_on_postgresql(postgres_database):
    warehouse = Warehouse(postgres_database())
    ensure_schema(warehouse)
    build_mart(warehouse, 50)
    result = materialize(warehouse, horizon_days=10, backtest_folds=2)
    assert_forecast_written(warehouse, result, 10, START + timedelta(days=49))
