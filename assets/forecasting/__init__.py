"""Forecasting: the cash-flow forecast of the reporting currency, from the dbt daily_cash_flow mart,
by an ensemble whose weights come from rolling-origin backtests (ml/forecast.py)."""

import dagster as dg

from assets import with_code_references

FORECASTING_ASSETS: list = []
FORECASTING_CHECKS: list = []

defs = dg.Definitions(assets=with_code_references(FORECASTING_ASSETS), asset_checks=FORECASTING_CHECKS)
