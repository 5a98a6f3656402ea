"""Monitoring: anomalies in the daily metrics (ml/anomaly.py), the SLOs and their error-budget burn,
the alerts they raise (core/monitoring/), and the weekly report."""

import dagster as dg

from assets import with_code_references

MONITORING_ASSETS: list = []
MONITORING_CHECKS: list = []

defs = dg.Definitions(assets=with_code_references(MONITORING_ASSETS), asset_checks=MONITORING_CHECKS)
