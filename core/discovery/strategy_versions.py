"""The scoring weights' versions (learning.strategy_weights, core/platform/schema.py LEARNING_DDL).

Append-only, like the ledger: every run of the strategy optimizer adds a row, `deployed` or
`rejected` with its backtest; a rollback adds a `rolled_back` row that carries an earlier version's
weights (restores_version) and deploys them. No row is ever updated or deleted, so the table is the
whole story of which weights scored when, and why. Each row is also an audit event
(strategy_weights.recorded / strategy_weights.rolled_back), written in the same transaction.

The deployed weights are those of the latest row with a deployment event (status deployed or
rolled_back). Version 0 is the seed's defaults (core.discovery.weights.Weights()), deployed until
the first row is; it is never a row, and a rollback can restore it.

Also here: the history the optimizer learns from, read from the warehouse.
"""

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from core.discovery.weights import FACTORS, Weights
from core.ledger.audit import Clock, append_events, utc_now, write_transaction
from core.platform.warehouse import Warehouse, query_frame, run_sql

TABLE = "learning.strategy_weights"
DEPLOYED, REJECTED, ROLLED_BACK = "deployed", "rejected", "rolled_back"
STATUSES = (DEPLOYED, REJECTED, ROLLED_BACK)
DEFAULT_VERSION = 0
RECORDED_EVENT, ROLLED_BACK_EVENT = "strategy_weights.recorded", "strategy_weights.rolled_back"
# The proposal-time snapshot of each experiment's opportunity (core.experiments.proposals writes it).
PROPOSALS_TABLE = "experiments.proposal_features"
OUTCOMES_TABLE = "experiments.outcomes"


class StrategyVersionError(ValueError):
    """A version that cannot be recorded or restored; the message says which and why."""


class UnknownVersion(StrategyVersionError):
    pass


@dataclass(frozen=True)
class Deployed:
    weights: Weights
    version: int
    velocity: dict[str, float]


def _weights_json(weights: Weights) -> str:
    return json.dumps(asdict(weights), sort_keys=True)


def parse_weights(text: str, version: int) -> Weights:
    try:
        values = json.loads(text)
        return Weights(**{f: float(values[f]) for f in FACTORS})
    except (ValueError, KeyError, TypeError) as error:
        raise StrategyVersionError(
            f"{TABLE} version {version} has unreadable weights {text!r} ({error}); restore an earlier version "
            "with `ventureloop strategy rollback`"
        ) from None


def versions(warehouse: Warehouse) -> pd.DataFrame:
    """Every version, oldest first (empty, with the table's columns, before the first run)."""
    if not warehouse.table_exists(TABLE):
        return pd.DataFrame(columns=["version", "status", "weights", "parent_version", "reason", "created_at"])
    return warehouse.query(f"SELECT * FROM {TABLE} ORDER BY version")


def _deployed_row(conn: Any) -> dict | None:
    frame = query_frame(
        conn,
        f"SELECT version, weights, velocity FROM {TABLE} WHERE status IN (%s, %s) ORDER BY version DESC LIMIT 1",
        [DEPLOYED, ROLLED_BACK],
    )
    return None if frame.empty else frame.iloc[0].to_dict()


def _deployed(conn: Any) -> Deployed:
    row = _deployed_row(conn)
    if row is None:
        return Deployed(Weights(), DEFAULT_VERSION, {})
    version = int(row["version"])
    return Deployed(parse_weights(row["weights"], version), version, json.loads(row["velocity"] or "{}"))


def deployed(warehouse: Warehouse) -> Deployed:
    """The deployed weights, their version and the momentum velocity the optimizer left them with."""
    if not warehouse.table_exists(TABLE):
        return Deployed(Weights(), DEFAULT_VERSION, {})
    with warehouse.connect() as conn:
        return _deployed(conn)


def deployed_weights(warehouse: Warehouse) -> tuple[Weights, int]:
    """(weights, version) that score opportunities now; the seed's defaults as version 0."""
    current = deployed(warehouse)
    return current.weights, current.version


def _insert(conn: Any, backend: str, event: str, row: dict[str, Any]) -> int:
    """The row as the next version, and its audit event, on the caller's write_transaction."""
    version = int(run_sql(conn, f"SELECT coalesce(max(version), 0) + 1 FROM {TABLE}", None).fetchone()[0])
    row = {"version": version, **row}
    columns = ", ".join(row)
    run_sql(conn, f"INSERT INTO {TABLE} ({columns}) VALUES ({', '.join(['%s'] * len(row))})", list(row.values()))
    payload = {k: v for k, v in row.items() if k not in ("created_at", "velocity")}
    append_events(conn, backend, [(event, {**payload, "weights": json.loads(row["weights"])})], row["created_at"])
    return version


def record_version(
    warehouse: Warehouse,
    *,
    status: str,
    weights: Weights,
    velocity: dict[str, float],
    reason: str,
    actor: str = "strategy_optimizer",
    parent_version: int | None = None,
    backtest: dict[str, Any] | None = None,
    mlflow_run_id: str | None = None,
    clock: Clock = utc_now,
) -> int:
    """Append one optimizer outcome (deployed or rejected) and return its version. parent_version is
    the version deployed when the optimizer started (default: the one deployed now). `backtest`:
    metric, old, new, k, trained_on, held_out."""
    if status not in (DEPLOYED, REJECTED):
        raise StrategyVersionError(
            f"record_version records {DEPLOYED} or {REJECTED}, got {status!r}; a rollback is `rollback(...)`"
        )
    if not isinstance(weights, Weights):
        raise StrategyVersionError(f"weights must be core.discovery.weights.Weights, got {type(weights).__name__}")
    if not reason.strip():
        raise StrategyVersionError("a version needs a reason (why it was deployed or rejected)")
    backtest = backtest or {}
    with write_transaction(warehouse) as conn:
        parent = _deployed(conn).version if parent_version is None else int(parent_version)
        return _insert(
            conn,
            warehouse.backend,
            RECORDED_EVENT,
            {
                "status": status,
                "weights": _weights_json(weights),
                "velocity": json.dumps({f: float(velocity.get(f, 0.0)) for f in FACTORS}, sort_keys=True),
                "parent_version": parent,
                "restores_version": None,
                "metric": backtest.get("metric"),
                "backtest_old": backtest.get("old"),
                "backtest_new": backtest.get("new"),
                "backtest_k": backtest.get("k"),
                "trained_on": backtest.get("trained_on"),
                "held_out": backtest.get("held_out"),
                "reason": reason,
                "actor": actor,
                "created_at": _now(clock),
                "mlflow_run_id": mlflow_run_id,
            },
        )


def rollback(warehouse: Warehouse, to_version: int, actor: str, reason: str, *, clock: Clock = utc_now) -> int:
    """Deploy an earlier version's weights again, as a new rolled_back row; returns its version.
    `to_version` is 0 (the seed's defaults) or a version that was deployed once: a rejected version
    failed its backtest and never scored anything, so it cannot be restored."""
    if not reason or not reason.strip():
        raise StrategyVersionError("a rollback needs a reason (--reason): it is recorded with the new version")
    if not actor or not actor.strip():
        raise StrategyVersionError("a rollback needs an actor (who rolls back; --by, default $USER)")
    with write_transaction(warehouse) as conn:
        current = _deployed(conn)
        if to_version == DEFAULT_VERSION:
            restored = Weights()
        else:
            found = query_frame(conn, f"SELECT status, weights FROM {TABLE} WHERE version = %s", [int(to_version)])
            if found.empty:
                latest = run_sql(conn, f"SELECT max(version) FROM {TABLE}", None).fetchone()[0]
                known = f"versions are 0 to {int(latest)}" if latest is not None else "only version 0 (the defaults)"
                raise UnknownVersion(
                    f"no strategy weights version {to_version}: {known} (`ventureloop strategy versions`)"
                )
            status = found.iloc[0]["status"]
            if status == REJECTED:
                raise StrategyVersionError(
                    f"version {to_version} was rejected by its backtest and never deployed; roll back to a version "
                    "that was deployed (`ventureloop strategy versions`)"
                )
            restored = parse_weights(found.iloc[0]["weights"], int(to_version))
        if to_version == current.version:
            raise StrategyVersionError(f"version {to_version} is the deployed version already; nothing to roll back")
        return _insert(
            conn,
            warehouse.backend,
            ROLLED_BACK_EVENT,
            {
                "status": ROLLED_BACK,
                "weights": _weights_json(restored),
                # Momentum restarts: the velocity belonged to the path that was rolled back.
                "velocity": json.dumps(dict.fromkeys(FACTORS, 0.0), sort_keys=True),
                "parent_version": current.version,
                "restores_version": int(to_version),
                "metric": None,
                "backtest_old": None,
                "backtest_new": None,
                "backtest_k": None,
                "trained_on": None,
                "held_out": None,
                "reason": reason,
                "actor": actor,
                "created_at": _now(clock),
                "mlflow_run_id": None,
            },
        )


def _now(clock: Clock) -> datetime:
    instant = clock()
    if instant.tzinfo is None:
        raise StrategyVersionError(f"the clock answered a naive time {instant!r}; times are timezone-aware UTC")
    return instant


def learning_history(warehouse: Warehouse) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(proposals, outcomes) for ml.strategy.history: each experiment's opportunity features as of
    its proposal, and the outcomes of the finished ones. None when the warehouse has no proposal-time
    snapshot (experiments.proposal_features): today's features of an opportunity are not what it
    looked like when it was proposed, so they are not a substitute."""
    if not warehouse.table_exists(PROPOSALS_TABLE):
        return None
    proposals = warehouse.read(PROPOSALS_TABLE)
    # TIMESTAMPTZ: UTC; an empty table reads back untyped on PostgreSQL.
    proposals["proposed_at"] = pd.to_datetime(proposals["proposed_at"], utc=True)
    outcomes = warehouse.query(
        f"SELECT o.experiment_id, o.net_minor, o.roi, o.succeeded FROM {OUTCOMES_TABLE} o "
        f"WHERE o.experiment_id IN (SELECT experiment_id FROM {PROPOSALS_TABLE}) ORDER BY o.experiment_id"
    )
    return proposals, outcomes
