"""Monitoring: anomalies in the daily metrics (ml/anomaly.py), the SLOs and their error-budget burn,
the alerts they raise (core/monitoring/), and the weekly report."""

import dagster as dg

from assets import with_code_references
from assets.monitoring.anomalies import metric_anomalies, no_recent_critical_anomaly
from assets.monitoring.report import weekly_report, weekly_report_job, weekly_report_schedule

MONITORING_ASSETS: list = [
    weekly_report,
]
MONITORING_CHECKS: list = []
MONITORING_ASSETS.append(metric_anomalies)  # anomaly detection (ml/anomaly.py)
MONITORING_CHECKS.append(no_recent_critical_anomaly)
from assets.monitoring.alerts import ALERT_SENSORS
from assets.monitoring.slo import FRESHNESS_CHECKS, freshness_checks_sensor, slo_job, slo_report, slo_schedule

MONITORING_ASSETS: list = []
MONITORING_CHECKS: list = []
MONITORING_JOBS: list = []
MONITORING_SCHEDULES: list = []
MONITORING_SENSORS: list = []

# SLOs and alerts (docs/monitoring.md)
MONITORING_ASSETS.append(slo_report)
MONITORING_CHECKS.extend(FRESHNESS_CHECKS)
MONITORING_JOBS.append(slo_job)
MONITORING_SCHEDULES.append(slo_schedule)
MONITORING_SENSORS.extend([freshness_checks_sensor, *ALERT_SENSORS])

MONITORING_JOBS: list = [
    weekly_report_job,
]
MONITORING_SCHEDULES: list = [
    weekly_report_schedule,
]
MONITORING_SENSORS: list = []

defs = dg.Definitions(
    assets=with_code_references(MONITORING_ASSETS),
    asset_checks=MONITORING_CHECKS,
    jobs=MONITORING_JOBS,
    schedules=MONITORING_SCHEDULES,
    sensors=MONITORING_SENSORS,
)
