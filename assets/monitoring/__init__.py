"""Monitoring: anomalies in the daily metrics (ml/anomaly.py), the SLOs and their error-budget burn,
the alerts they raise (core/monitoring/), and the weekly report."""

import dagster as dg

from assets import with_code_references
from assets.monitoring.alerts import ALERT_SENSORS
from assets.monitoring.anomalies import metric_anomalies, no_recent_critical_anomaly
from assets.monitoring.report import weekly_report, weekly_report_job, weekly_report_schedule
from assets.monitoring.slo import FRESHNESS_CHECKS, freshness_checks_sensor, slo_job, slo_report, slo_schedule

MONITORING_ASSETS: list = [
    metric_anomalies,  # anomaly detection (ml/anomaly.py)
    slo_report,  # SLOs and alerts (docs/monitoring.md)
    weekly_report,  # the HTML report (docs/report.md)
]
MONITORING_CHECKS: list = [no_recent_critical_anomaly, *FRESHNESS_CHECKS]
MONITORING_JOBS: list = [slo_job, weekly_report_job]
MONITORING_SCHEDULES: list = [slo_schedule, weekly_report_schedule]
MONITORING_SENSORS: list = [freshness_checks_sensor, *ALERT_SENSORS]

defs = dg.Definitions(
    assets=with_code_references(MONITORING_ASSETS),
    asset_checks=MONITORING_CHECKS,
    jobs=MONITORING_JOBS,
    schedules=MONITORING_SCHEDULES,
    sensors=MONITORING_SENSORS,
)
