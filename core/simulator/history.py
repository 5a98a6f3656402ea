"""A simulated back catalog: finished experiments from the weeks before the market opens, so that
the learning assets of a new warehouse (the demo's) have outcomes to learn from on their first run.

Each one goes through the product's own paths: proposed by core.experiments.proposals (its features
snapshotted as of its proposal), approved by the actor `simulator:history`, allocated its requested
budget, moved queued -> running -> completed by core.experiments.lifecycle at the simulated times,
and its money booked in the ledger (one sale and one spend, the 30-day sums of
core.simulator.population.realize) with the experiment's id, so that record_outcomes judges it from
the ledger like any other. Its opportunity ids start with `hist-` and every row it writes names the
actor, so it is never mistaken for the product's own work.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from core.discovery.scoring import weighted_score
from core.discovery.weights import Weights
from core.experiments.allocation import EXPERIMENT_ALLOCATED, spend_category
from core.experiments.lifecycle import (
    APPROVED,
    COMPLETED,
    QUEUED,
    RUNNING,
    LifecycleError,
    Transition,
    check_transition,
    new_experiment_id,
    record_transition,
)
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import append_events, write_transaction
from core.ledger.booking import book_many
from core.ledger.budgets import expense
from core.ledger.validation import Posting, TransactionRequest
from core.platform.warehouse import Warehouse, run_sql
from core.simulator.population import population, realize

HISTORY_ACTOR = "simulator:history"
PREFIX = "hist"
START_DELAY = timedelta(hours=1)  # from approval to the run's start
SALES_ACCOUNT = "assets:stripe:usd"
CARD_ACCOUNT = "liabilities:card:usd"


@dataclass(frozen=True)
class HistoryReport:
    booked: int
    already: int
    first_proposed_at: datetime | None
    last_finished_at: datetime | None

    def summary(self) -> str:
        if not self.booked:
            return f"simulated history: {self.already} experiments already booked, nothing new"
        return (
            f"simulated history: {self.booked} finished experiments proposed from "
            f"{self.first_proposed_at:%Y-%m-%d} and finished by {self.last_finished_at:%Y-%m-%d}"
        )


def _scored(proposals: pd.DataFrame) -> pd.DataFrame:
    """The proposals as core.scored_opportunities rows: the seed's score, a title saying what they are."""
    return proposals.assign(
        score=weighted_score(proposals, Weights()).round(6),
        title="simulated history: " + proposals["opportunity_type"] + " from " + proposals["source"],
        is_cluster_lead=True,
    )


def history_proposals(seed: int, n: int, end: datetime, *, weeks: int = 12) -> pd.DataFrame:
    """The population the history books: n proposals over `weeks` weeks whose windows end by `end`,
    each with the experiment id proposing it gives (from its proposal key)."""
    if end.tzinfo is None:
        raise ValueError(f"book_history: end must be timezone-aware UTC, got {end!r}")
    proposals = population(seed, n, end - timedelta(weeks=weeks, days=31), days=weeks * 7, prefix=PREFIX)
    proposals["experiment_id"] = [new_experiment_id(f"proposal:{o}") for o in proposals["opportunity_id"]]
    return proposals


def book_history(warehouse: Warehouse, seed: int, n: int, end: datetime, *, weeks: int = 12) -> HistoryReport:
    """Book n finished experiments proposed over the `weeks` weeks whose windows end by `end`.
    Idempotent: experiments already booked (by their proposal keys) are left as they are."""
    with warehouse.held():  # thousands of short writes: one open DuckDB file, not one per connect
        return _book_history(warehouse, seed, n, end, weeks)


def _book_history(warehouse: Warehouse, seed: int, n: int, end: datetime, weeks: int) -> HistoryReport:
    proposals = history_proposals(seed, n, end, weeks=weeks)
    existing = set(
        warehouse.query(
            "SELECT experiment_id FROM experiments.experiments WHERE opportunity_id LIKE %s", [f"{PREFIX}-%"]
        )["experiment_id"]
    )
    fresh = proposals[~proposals["experiment_id"].isin(existing)].reset_index(drop=True)
    if fresh.empty:
        return HistoryReport(0, len(existing), None, None)
    outcomes = realize(seed, fresh).set_index("experiment_id")
    approve_all = ApprovalPolicy(max_budget_minor=2**62, min_score=0.0, source="the simulated history")
    scored = _scored(fresh)
    for _day, batch in scored.groupby(scored["proposed_at"].dt.floor("D")):
        at = batch["proposed_at"].min().to_pydatetime()
        propose_from_scored(warehouse, batch, len(batch), approve_all, clock=lambda at=at: at, actor=HISTORY_ACTOR)
    _run_all(warehouse, fresh, outcomes)
    playbooks = dict(
        warehouse.query(
            "SELECT experiment_id, playbook FROM experiments.experiments WHERE opportunity_id LIKE %s", [f"{PREFIX}-%"]
        ).itertuples(index=False, name=None)
    )
    requests: list[TransactionRequest] = []
    for row in fresh.itertuples(index=False):
        requests += _money(row, outcomes.loc[row.experiment_id], spend_category(playbooks[row.experiment_id]))
    book_many(warehouse, requests, clock=lambda: outcomes["finished_at"].max().to_pydatetime())
    return HistoryReport(
        len(fresh),
        len(existing),
        fresh["proposed_at"].min().to_pydatetime(),
        outcomes["finished_at"].max().to_pydatetime(),
    )


def _run_all(warehouse: Warehouse, fresh: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    """Allocate, queue, run and complete every history experiment at its simulated times, in one
    write transaction: each move checked against the lifecycle's table and recorded as
    core.experiments.lifecycle.transition records it (history row and audit event), the state
    moved by a compare-and-set from approved (hundreds of separate transactions took half a minute)."""
    with write_transaction(warehouse) as conn:
        for row in fresh.itertuples(index=False):
            experiment_id = row.experiment_id
            approved_at = row.proposed_at.to_pydatetime()
            started = approved_at + START_DELAY
            finished = outcomes.loc[experiment_id, "finished_at"].to_pydatetime() + START_DELAY
            moves = [(APPROVED, QUEUED, approved_at), (QUEUED, RUNNING, started), (RUNNING, COMPLETED, finished)]
            for from_state, to_state, _at in moves:
                check_transition(from_state, to_state)
            seq = run_sql(
                conn,
                "UPDATE experiments.experiments SET allocated_budget_minor = %s, started_at = %s, finished_at = %s, "
                "state = %s, state_seq = state_seq + %s, updated_at = %s WHERE experiment_id = %s AND state = %s "
                "RETURNING state_seq",
                [
                    int(row.requested_budget_minor),
                    started,
                    finished,
                    COMPLETED,
                    len(moves),
                    finished,
                    experiment_id,
                    APPROVED,
                ],
            ).fetchone()
            if seq is None:
                raise LifecycleError(f"experiment {experiment_id} is no longer approved: the history leaves it alone")
            event = {
                "experiment_id": experiment_id,
                "allocated_budget_minor": int(row.requested_budget_minor),
                "requested_budget_minor": int(row.requested_budget_minor),
                "currency": "USD",
                "actor": HISTORY_ACTOR,
                "limited_by": "its requested budget",
            }
            append_events(conn, warehouse.backend, [(EXPERIMENT_ALLOCATED, event)], recorded_at=approved_at)
            first = int(seq[0]) - len(moves)
            for n, (from_state, to_state, at) in enumerate(moves, start=1):
                done = Transition(
                    experiment_id, first + n, from_state, to_state, HISTORY_ACTOR, "simulated history", at
                )
                record_transition(conn, warehouse.backend, done)


def _money(row: object, outcome: pd.Series, category: str | None) -> list[TransactionRequest]:
    """The window's sales (one transaction, mid-window) and spend (at the start), in USD."""
    experiment_id = row.experiment_id
    started = row.proposed_at.to_pydatetime() + START_DELAY
    requests = []
    if int(outcome["revenue_minor"]):
        requests.append(
            TransactionRequest(
                idempotency_key=f"{HISTORY_ACTOR}:{experiment_id}:sales",
                kind="sale",
                description="simulated history: the window's sales",
                occurred_at=started + timedelta(days=15),
                postings=[
                    Posting(SALES_ACCOUNT, "USD", int(outcome["revenue_minor"])),
                    Posting(f"revenue:experiment:{experiment_id}", "USD", -int(outcome["revenue_minor"])),
                ],
                experiment_id=experiment_id,
                source=HISTORY_ACTOR,
            )
        )
    if int(outcome["cost_minor"]):
        requests.append(
            expense(
                f"{HISTORY_ACTOR}:{experiment_id}:spend",
                f"expenses:{category or 'ads'}:experiment:{experiment_id}",
                int(outcome["cost_minor"]),
                "USD",
                started,
                paid_from=CARD_ACCOUNT,
                description="simulated history: the window's spend and fees",
                experiment_id=experiment_id,
                source=HISTORY_ACTOR,
            )
        )
    return requests
