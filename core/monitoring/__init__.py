"""Health of the platform: SLOs and their burn rates, alerts and their sinks, the Prometheus
metrics read from the warehouse, and the HTML report. Framework-free."""
