"""Monitoring: anomalies in the daily metrics (ml/anomaly.py), the SLOs and their error-budget burn,
the alerts they raise (core/monitoring/), and the weekly report."""

import dagster as dg

from assets import with_code_references
from assets.monitoring.report import weekly_report, weekly_report_job, weekly_report_schedule

MONITORING_ASSETS: list = [
    weekly_report,
]
MONITORING_CHECKS: list = []
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
