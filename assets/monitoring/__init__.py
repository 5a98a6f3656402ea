"""Monitoring: anomalies in the daily metrics (ml/anomaly.py), the SLOs and their error-budget burn,
the alerts they raise (core/monitoring/), and the weekly report."""

import dagster as dg

from assets import with_code_references
from assets.monitoring.anomalies import metric_anomalies, no_recent_critical_anomaly

MONITORING_ASSETS: list = []
MONITORING_CHECKS: list = []
MONITORING_ASSETS.append(metric_anomalies)  # anomaly detection (ml/anomaly.py)
MONITORING_CHECKS.append(no_recent_critical_anomaly)

defs = dg.Definitions(assets=with_code_references(MONITORING_ASSETS), asset_checks=MONITORING_CHECKS)
