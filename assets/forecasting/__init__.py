"""Forecasting: the cash-flow forecast of the reporting currency, from the dbt daily_cash_flow mart,
by an ensemble whose weights come from rolling-origin backtests (ml/forecast.py)."""

import dagster as dg

from assets import with_code_references
from assets.forecasting.forecast import cash_flow_forecast, ensemble_beats_seasonal_naive, forecast_intervals_nested

FORECASTING_ASSETS: list = [cash_flow_forecast]
FORECASTING_CHECKS: list = [forecast_intervals_nested, ensemble_beats_seasonal_naive]

defs = dg.Definitions(assets=with_code_references(FORECASTING_ASSETS), asset_checks=FORECASTING_CHECKS)
