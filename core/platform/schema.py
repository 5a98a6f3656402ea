"""Warehouse tables owned by ventureloop. Portable DDL: the same text runs on DuckDB and PostgreSQL.

`ensure_schema` creates all of it idempotently, so every entry point (assets, CLI, tests) calls it
first.
"""

from core.platform.warehouse import Warehouse

SCHEMAS = ("raw", "core", "quarantine", "ledger", "audit", "experiments", "learning", "forecasting", "monitoring")

DISCOVERY_DDL: list[str] = [
    # One row per HTTP response (or snapshot replay): normalization can be replayed from these.
    """CREATE TABLE IF NOT EXISTS raw.responses (
        response_id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        mode TEXT NOT NULL,
        request_url TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        content_type TEXT,
        body_bytes BIGINT NOT NULL,
        fetched_at TIMESTAMPTZ NOT NULL,
        run_id TEXT
    )""",
    # One row per item found in a response, verbatim as the API returned it (JSON text).
    """CREATE TABLE IF NOT EXISTS raw.records (
        record_id TEXT PRIMARY KEY,
        response_id TEXT NOT NULL,
        source TEXT NOT NULL,
        external_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        fetched_at TIMESTAMPTZ NOT NULL
    )""",
    # Which responses the opportunities asset has already normalized.
    """CREATE TABLE IF NOT EXISTS core.normalized_responses (
        response_id TEXT PRIMARY KEY,
        normalized_at TIMESTAMPTZ NOT NULL
    )""",
    # Anything that could not be used, with where it came from and why; replayable.
    """CREATE TABLE IF NOT EXISTS quarantine.records (
        quarantine_id TEXT PRIMARY KEY,
        stage TEXT NOT NULL,
        source TEXT NOT NULL,
        origin TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload TEXT NOT NULL,
        payload_encoding TEXT NOT NULL,
        quarantined_at TIMESTAMPTZ NOT NULL,
        replayed_at TIMESTAMPTZ,
        run_id TEXT
    )""",
    # Added after the table (so existing warehouses get it too): unique among pending records,
    # NULL once replayed (core.platform.quarantine).
    "ALTER TABLE quarantine.records ADD COLUMN IF NOT EXISTS pending_key TEXT",
    "CREATE UNIQUE INDEX IF NOT EXISTS quarantine_pending_key ON quarantine.records (pending_key)",
    """CREATE TABLE IF NOT EXISTS core.opportunities (
        fingerprint TEXT PRIMARY KEY,
        opportunity_id TEXT NOT NULL,
        source TEXT NOT NULL,
        family TEXT NOT NULL,
        external_id TEXT NOT NULL,
        url TEXT NOT NULL,
        canonical_url TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        author TEXT,
        points BIGINT NOT NULL,
        comments BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        fetched_at TIMESTAMPTZ NOT NULL,
        cluster_id TEXT NOT NULL,
        record_id TEXT NOT NULL
    )""",
    # Every time an opportunity is seen again: engagement over time gives velocity.
    """CREATE TABLE IF NOT EXISTS core.opportunity_sightings (
        fingerprint TEXT NOT NULL,
        source TEXT NOT NULL,
        points BIGINT NOT NULL,
        comments BIGINT NOT NULL,
        seen_at TIMESTAMPTZ NOT NULL,
        record_id TEXT NOT NULL
    )""",
    # The persisted near-duplicate index: one row per (band, bucket) an opportunity hashes to.
    """CREATE TABLE IF NOT EXISTS core.lsh_buckets (
        band INTEGER NOT NULL,
        bucket TEXT NOT NULL,
        opportunity_id TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS lsh_buckets_lookup ON core.lsh_buckets (band, bucket)",
    """CREATE TABLE IF NOT EXISTS core.lsh_signatures (
        opportunity_id TEXT PRIMARY KEY,
        cluster_id TEXT NOT NULL,
        signature TEXT NOT NULL
    )""",
]

# The ledger is append-only: no statement in the code base UPDATEs or DELETEs these tables.
# Amounts are signed integer minor units (debit > 0, credit < 0) in the posting's own currency.
LEDGER_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS ledger.accounts (
        account_id TEXT PRIMARY KEY,
        account_type TEXT NOT NULL,
        opened_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger.transactions (
        transaction_id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        content_hash TEXT NOT NULL,
        kind TEXT NOT NULL,
        description TEXT NOT NULL,
        experiment_id TEXT,
        source TEXT NOT NULL,
        external_ref TEXT,
        occurred_at TIMESTAMPTZ NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL,
        reverses_transaction_id TEXT UNIQUE,
        metadata TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ledger.postings (
        posting_id TEXT PRIMARY KEY,
        transaction_id TEXT NOT NULL,
        line INTEGER NOT NULL,
        account_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor BIGINT NOT NULL,
        experiment_id TEXT,
        occurred_at TIMESTAMPTZ NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS postings_by_transaction ON ledger.postings (transaction_id)",
    "CREATE INDEX IF NOT EXISTS postings_by_account ON ledger.postings (account_id, occurred_at)",
    # A pending hold: a proposed transaction not yet booked (fraud review, budget reservation).
    """CREATE TABLE IF NOT EXISTS ledger.holds (
        hold_id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        reason TEXT NOT NULL,
        proposed TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )""",
    # A hold is decided once: the primary key is what makes a second decision impossible.
    """CREATE TABLE IF NOT EXISTS ledger.hold_decisions (
        hold_id TEXT PRIMARY KEY,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TIMESTAMPTZ NOT NULL,
        transaction_id TEXT,
        note TEXT
    )""",
    # ECB reference rates: 1 EUR = per_eur units of currency on rate_date.
    """CREATE TABLE IF NOT EXISTS ledger.fx_rates (
        rate_date DATE NOT NULL,
        currency TEXT NOT NULL,
        per_eur DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (rate_date, currency)
    )""",
    """CREATE TABLE IF NOT EXISTS ledger.budgets (
        budget_id TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        scope_key TEXT NOT NULL,
        period TEXT NOT NULL,
        currency TEXT NOT NULL,
        limit_minor BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        UNIQUE (scope, scope_key, period, currency)
    )""",
    # Budget limits are versioned, never updated: ledger.budgets.limit_minor is the limit a budget
    # was created with; the current limit is its latest version here (ledger.budget_current).
    """CREATE TABLE IF NOT EXISTS ledger.budget_limits (
        budget_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        limit_minor BIGINT NOT NULL,
        changed_at TIMESTAMPTZ NOT NULL,
        changed_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (budget_id, version)
    )""",
    """CREATE OR REPLACE VIEW ledger.budget_current AS
    SELECT b.budget_id, b.scope, b.scope_key, b.period, b.currency, l.limit_minor, l.version,
           l.changed_at, l.changed_by
    FROM ledger.budgets b JOIN ledger.budget_limits l ON l.budget_id = b.budget_id
    WHERE l.version = (SELECT max(m.version) FROM ledger.budget_limits m WHERE m.budget_id = b.budget_id)""",
    """CREATE TABLE IF NOT EXISTS audit.events (
        seq BIGINT PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        recorded_at TIMESTAMPTZ NOT NULL
    )""",
]

# An experiment's row holds its current state; every change of it is a row of
# experiments.transitions (seq 0 is its creation, from_state NULL) and an audit event, written in
# the same transaction (core.experiments.lifecycle). state_seq is the seq of its latest transition.
EXPERIMENTS_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS experiments.experiments (
        experiment_id TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        content_hash TEXT NOT NULL,
        opportunity_id TEXT NOT NULL,
        title TEXT NOT NULL,
        hypothesis TEXT NOT NULL,
        category TEXT NOT NULL,
        score DOUBLE PRECISION NOT NULL,
        currency TEXT NOT NULL,
        requested_budget_minor BIGINT NOT NULL,
        allocated_budget_minor BIGINT,
        success_criteria TEXT NOT NULL,
        playbook TEXT NOT NULL,
        state TEXT NOT NULL,
        state_seq INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS experiments.transitions (
        experiment_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        transitioned_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (experiment_id, seq)
    )""",
    # Added after the table (so existing warehouses upgrade): the executor's times, in the
    # environment's clock (simulated time in the simulator), and the collect_outcome result (JSON).
    "ALTER TABLE experiments.experiments ADD COLUMN IF NOT EXISTS started_at TIMESTAMPTZ",
    "ALTER TABLE experiments.experiments ADD COLUMN IF NOT EXISTS wake_at TIMESTAMPTZ",
    "ALTER TABLE experiments.experiments ADD COLUMN IF NOT EXISTS finished_at TIMESTAMPTZ",
    "ALTER TABLE experiments.experiments ADD COLUMN IF NOT EXISTS outcome TEXT",
    # One row per run of the executor (core.experiments.executor): status running|finished|failed.
    """CREATE TABLE IF NOT EXISTS experiments.runs (
        experiment_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        message TEXT,
        PRIMARY KEY (experiment_id, attempt)
    )""",
    # A completed playbook step: a rerun skips it (core.experiments.checkpoints).
    """CREATE TABLE IF NOT EXISTS experiments.checkpoints (
        experiment_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        step_type TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        environment TEXT NOT NULL,
        result TEXT NOT NULL,
        completed_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (experiment_id, step_id)
    )""",
    # A manual gate a person opened (`ventureloop experiments open-gate`).
    """CREATE TABLE IF NOT EXISTS experiments.gates (
        experiment_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        opened_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        opened_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (experiment_id, step_id)
    )""",
    # One row per finished experiment (completed, failed, rolled_back), upserted by record_outcomes:
    # its money in the reporting currency and whether it met its success criteria.
    """CREATE TABLE IF NOT EXISTS experiments.outcomes (
        experiment_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        evaluated_at TIMESTAMPTZ NOT NULL,
        succeeded BOOLEAN NOT NULL,
        revenue_minor BIGINT NOT NULL,
        cost_minor BIGINT NOT NULL,
        net_minor BIGINT NOT NULL,
        roi DOUBLE PRECISION,
        duration_days DOUBLE PRECISION,
        currency TEXT NOT NULL,
        criteria TEXT NOT NULL,
        reason TEXT NOT NULL
    )""",
    # The opportunity's features as they were when it was proposed, written with the experiment in
    # one transaction (core.experiments.proposals): core.opportunity_features is rebuilt on every
    # discovery run, so this row is the only record of what was known at proposal time, and what
    # ml.features learns from. A column the scored frame did not carry is NULL (ml.features fills
    # it, documented there). An experiment proposed before this table existed has no row.
    """CREATE TABLE IF NOT EXISTS experiments.proposal_features (
        experiment_id TEXT PRIMARY KEY,
        opportunity_id TEXT NOT NULL,
        proposed_at TIMESTAMPTZ NOT NULL,
        source TEXT,
        opportunity_type TEXT NOT NULL,
        age_days DOUBLE PRECISION,
        confidence DOUBLE PRECISION,
        est_monthly_revenue_cents BIGINT NOT NULL,
        capability_match DOUBLE PRECISION,
        days_to_revenue DOUBLE PRECISION,
        cluster_size BIGINT,
        requested_budget_minor BIGINT NOT NULL,
        window_days INTEGER NOT NULL,
        score DOUBLE PRECISION NOT NULL
    )""",
]

# What the learning assets write (assets/learning/); each block names the module that writes it.
LEARNING_DDL: list[str] = [
    # Written by assets/learning/features.py (ml.features.build_features), replaced on every run: one
    # row per proposed experiment with a proposal-time snapshot, every feature as of proposed_at.
    """CREATE TABLE IF NOT EXISTS learning.experiment_features (
        experiment_id TEXT NOT NULL,
        opportunity_id TEXT NOT NULL,
        proposed_at TIMESTAMPTZ NOT NULL,
        source TEXT NOT NULL,
        opportunity_type TEXT NOT NULL,
        age_days DOUBLE PRECISION NOT NULL,
        confidence DOUBLE PRECISION NOT NULL,
        est_monthly_revenue_cents DOUBLE PRECISION NOT NULL,
        capability_match DOUBLE PRECISION NOT NULL,
        days_to_revenue DOUBLE PRECISION NOT NULL,
        cluster_size DOUBLE PRECISION NOT NULL,
        market_trend DOUBLE PRECISION NOT NULL,
        competition DOUBLE PRECISION NOT NULL,
        dow_sin DOUBLE PRECISION NOT NULL,
        dow_cos DOUBLE PRECISION NOT NULL,
        month_sin DOUBLE PRECISION NOT NULL,
        month_cos DOUBLE PRECISION NOT NULL,
        source_success_rate DOUBLE PRECISION NOT NULL,
        source_experiments DOUBLE PRECISION NOT NULL,
        similar_experiments DOUBLE PRECISION NOT NULL,
        similar_avg_roi DOUBLE PRECISION NOT NULL,
        budget_minor DOUBLE PRECISION NOT NULL,
        est_duration_days DOUBLE PRECISION NOT NULL
    )""",
    # assets/learning/bandit.py (source_bandit), rebuilt each materialization (ml.bandit.posterior):
    # one row per discovery source, its Beta posterior on experiment success and its
    # normal-inverse-gamma posterior on normalized ROI, asinh(roi). The discovery schedule reads it.
    """CREATE TABLE IF NOT EXISTS learning.source_posterior (
        source TEXT NOT NULL,
        experiments BIGINT NOT NULL,
        successes BIGINT NOT NULL,
        failures BIGINT NOT NULL,
        alpha DOUBLE PRECISION NOT NULL,
        beta DOUBLE PRECISION NOT NULL,
        mean DOUBLE PRECISION NOT NULL,
        roi_experiments BIGINT NOT NULL,
        roi_mu DOUBLE PRECISION NOT NULL,
        roi_kappa DOUBLE PRECISION NOT NULL,
        roi_shape DOUBLE PRECISION NOT NULL,
        roi_rate DOUBLE PRECISION NOT NULL,
        roi_mean_sd DOUBLE PRECISION NOT NULL,
        computed_at TIMESTAMPTZ NOT NULL
    )""",
    # core.discovery.strategy_versions: the scoring weights' versions, append-only. Each run of the
    # strategy optimizer adds a row (deployed or rejected, with its backtest); a rollback adds a
    # rolled_back row carrying an earlier version's weights (restores_version). The deployed weights
    # are the latest row whose status is deployed or rolled_back; version 0 is the seed's defaults.
    """CREATE TABLE IF NOT EXISTS learning.strategy_weights (
        version INTEGER PRIMARY KEY,
        status TEXT NOT NULL,
        weights TEXT NOT NULL,
        velocity TEXT NOT NULL,
        parent_version INTEGER NOT NULL,
        restores_version INTEGER,
        metric TEXT,
        backtest_old DOUBLE PRECISION,
        backtest_new DOUBLE PRECISION,
        backtest_k INTEGER,
        trained_on INTEGER,
        held_out INTEGER,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        mlflow_run_id TEXT
    )""",
]

# assets/forecasting (cash_flow_forecast, ml/forecast.py). Appended: one forecast_id per
# materialization, so past forecasts can be scored against what happened. The latest forecast is
# the rows of the latest made_at. Money in the reporting currency's minor units, rounded.
FORECASTING_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS forecasting.cash_flow_forecast (
        forecast_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        forecast_date DATE NOT NULL,
        horizon_day INTEGER NOT NULL,
        net_minor BIGINT NOT NULL,
        lo80_minor BIGINT NOT NULL,
        hi80_minor BIGINT NOT NULL,
        lo95_minor BIGINT NOT NULL,
        hi95_minor BIGINT NOT NULL,
        trained_through DATE NOT NULL,
        made_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (forecast_id, forecast_date)
    )""",
    # The rolling-origin backtest behind each forecast: one row per model (and one for the
    # ensemble), with the weight the ensemble gave it.
    """CREATE TABLE IF NOT EXISTS forecasting.forecast_backtest (
        forecast_id TEXT NOT NULL,
        model TEXT NOT NULL,
        folds INTEGER NOT NULL,
        horizon INTEGER NOT NULL,
        mase DOUBLE PRECISION,
        smape DOUBLE PRECISION,
        coverage80 DOUBLE PRECISION,
        coverage95 DOUBLE PRECISION,
        fit_seconds DOUBLE PRECISION NOT NULL,
        weight DOUBLE PRECISION NOT NULL,
        made_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (forecast_id, model)
    )""",
]

# assets/monitoring (metric_anomalies, slo_report, the alert sensors; core/monitoring, ml/anomaly.py).
MONITORING_DDL: list[str] = [
    # The daily series the anomaly detector saw, rebuilt each materialization: revenue_minor,
    # cost_minor, refunds_minor, experiment_failures, run_duration_seconds, source_errors.
    """CREATE TABLE IF NOT EXISTS monitoring.daily_metrics (
        metric_date DATE NOT NULL,
        metric TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        computed_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (metric_date, metric)
    )""",
    # Every anomaly ever detected, once: anomaly_id is derived from (metric, metric_date, method),
    # so a re-run finds the same anomaly and adds nothing.
    """CREATE TABLE IF NOT EXISTS monitoring.metric_anomalies (
        anomaly_id TEXT PRIMARY KEY,
        metric_date DATE NOT NULL,
        metric TEXT NOT NULL,
        value DOUBLE PRECISION NOT NULL,
        expected DOUBLE PRECISION,
        score DOUBLE PRECISION NOT NULL,
        severity TEXT NOT NULL,
        method TEXT NOT NULL,
        explanation TEXT NOT NULL,
        detected_at TIMESTAMPTZ NOT NULL
    )""",
    # One row per SLO per evaluation, appended: attainment over the SLO's window, the error budget
    # left and the burn rates over the last hour and six hours.
    """CREATE TABLE IF NOT EXISTS monitoring.slo_report (
        evaluated_at TIMESTAMPTZ NOT NULL,
        slo TEXT NOT NULL,
        objective DOUBLE PRECISION NOT NULL,
        slo_window TEXT NOT NULL,
        good DOUBLE PRECISION,
        total DOUBLE PRECISION,
        attainment DOUBLE PRECISION,
        error_budget_remaining DOUBLE PRECISION,
        burn_rate_1h DOUBLE PRECISION,
        burn_rate_6h DOUBLE PRECISION,
        status TEXT NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (evaluated_at, slo)
    )""",
    # Alerts, deduplicated on dedup_key: a repeat within the dedup window bumps occurrences and
    # last_seen_at instead of alerting again.
    """CREATE TABLE IF NOT EXISTS monitoring.alerts (
        alert_id TEXT PRIMARY KEY,
        dedup_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        link TEXT,
        first_seen_at TIMESTAMPTZ NOT NULL,
        last_seen_at TIMESTAMPTZ NOT NULL,
        occurrences BIGINT NOT NULL
    )""",
    # Each attempt to hand an alert to a sink: delivered, or undelivered after the retries (with
    # the last error), so that `ventureloop alerts redeliver` can try again.
    """CREATE TABLE IF NOT EXISTS monitoring.alert_deliveries (
        alert_id TEXT NOT NULL,
        sink TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT,
        attempted_at TIMESTAMPTZ NOT NULL
    )""",
]

ALL_DDL: list[str] = DISCOVERY_DDL + LEDGER_DDL + EXPERIMENTS_DDL + LEARNING_DDL + FORECASTING_DDL + MONITORING_DDL


def ensure_schema(warehouse: Warehouse) -> None:
    statements = [f"CREATE SCHEMA IF NOT EXISTS {schema}" for schema in SCHEMAS] + ALL_DDL
    warehouse.execute_script(statements)
