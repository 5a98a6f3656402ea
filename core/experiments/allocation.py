"""Budget allocation among approved experiments: LinUCB ranks them, a greedy fill funds them in
that order, within the ledger's budgets.

An approved experiment without an allocation claims its requested budget. What it may get at most
(its cap) is that, within the headroom of its own monthly experiment budget; the claims of one
spend category (the playbook's spend account, expenses:<category>:...) share that category's
monthly headroom, and all claims share the global monthly headroom. Only budgets in the
experiment's currency count.

Headroom = limit - spent this month (counted as core.ledger.budgets counts it for spend) - what
allocated experiments that are still to run (approved, queued, running, paused) may yet spend
(their allocation less their spend so far): an allocation is a promise the budget must keep.

Who gets money first is its Priority: the upper confidence bound (UCB) of its reward per unit of
budget, computed by ml.linucb from its features and the finished experiments' outcomes and passed
in by the caller (this module knows nothing of learning). Claims are ranked by UCB, ties by
experiment id, and each in turn gets as much as its cap, its category's headroom left and the
global headroom left allow; what it cannot take stays for the ones after it. Amounts are integer
minor units by construction, never pass a cap, and a lower-ranked claim gets money only when every
higher-ranked one sharing its limits got all it could. A claim whose UCB is not positive gets
nothing, whatever the headroom: even optimistically it is expected to lose money (status
`declined`; it is ranked again next time, when more has been learned). A claim with a positive
UCB that finds no headroom stays unallocated (`waiting`) and is considered again next time.
A candidate with no priority (no features for it yet) ranks by its score, and its limited_by
says so.

Each allocation is a compare-and-set (state approved and no allocation yet) inside the audit
chain's write_transaction, with an `experiment.allocated` event carrying its UCB, mean and width:
a second allocate running at the same time waits for the first and then finds nothing left.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from core.experiments.lifecycle import APPROVED, PAUSED, QUEUED, RUNNING
from core.ledger.audit import Clock, append_events, utc_now, write_transaction
from core.ledger.budgets import GLOBAL_KEY, UNBUDGETED_SOURCES, utilization
from core.platform.warehouse import Warehouse, run_sql

EXPERIMENT_ALLOCATED = "experiment.allocated"
PERIOD = "month"
COMMITTED_STATES = (APPROVED, QUEUED, RUNNING, PAUSED)
LINUCB = "linucb"
NO_PRIORITY = "ranked by its score: no LinUCB priorities were given"
NO_FEATURES = "ranked by its score: no features for it in learning.experiment_features yet"
ALLOCATION_COLUMNS = [
    "experiment_id",
    "category",
    "score",
    "ucb",
    "mean",
    "width",
    "rank",  # the UCB rank within its currency, 1 = funded first
    "basis",  # linucb, or why its score stands in for its UCB
    "requested_budget_minor",
    "cap_minor",
    "allocated_budget_minor",
    "currency",
    "status",  # allocated | waiting (no headroom now) | declined (UCB not positive) | taken (by someone else meanwhile)
    "limited_by",
]


@dataclass(frozen=True)
class Priority:
    """Who gets money first: the upper confidence bound of the experiment's reward (net per unit of
    budget, ml.linucb), its mean and its width. `basis` says where it came from: "linucb", or why
    the score stands in for it."""

    ucb: float
    mean: float
    width: float
    basis: str = LINUCB


@dataclass(frozen=True)
class Claim:
    key: str
    priority: float  # its UCB: the higher, the earlier it is funded
    cap_minor: int  # the most this claim may get
    group: str | None = None  # the category whose headroom it shares


def ranked(claims: Sequence[Claim]) -> list[Claim]:
    """Funding order: highest priority first, ties by key (the experiment id)."""
    return sorted(claims, key=lambda c: (-c.priority, c.key))


@dataclass(frozen=True)
class Turn:
    """One claim's turn in the greedy fill: what it got and what was left when its turn came."""

    claim: Claim
    rank: int  # 1 = funded first
    amount: int
    group_left: int | None  # its category's headroom before its turn (None: no category budget)
    total_left: int | None  # the global headroom before its turn (None: no global budget)


def fill(claims: Sequence[Claim], total_minor: int | None, group_caps: Mapping[str, int]) -> list[Turn]:
    """In `ranked` order each claim with a positive priority takes as much as its cap, its group's
    headroom left and the total left allow; what it cannot take stays for the ones after it. None:
    no total limit; a group not in group_caps has no limit of its own. Integers throughout."""
    total_left = None if total_minor is None else max(int(total_minor), 0)
    group_left = {g: max(int(cap), 0) for g, cap in group_caps.items()}
    turns = []
    for rank, claim in enumerate(ranked(claims), start=1):
        before_group = group_left.get(claim.group) if claim.group is not None else None
        amount = max(int(claim.cap_minor), 0) if claim.priority > 0 else 0
        if before_group is not None:
            amount = min(amount, before_group)
            group_left[claim.group] -= amount
        if total_left is not None:
            amount = min(amount, total_left)
        turns.append(Turn(claim, rank, amount, before_group, total_left))
        if total_left is not None:
            total_left -= amount
    return turns


def greedy_fill(claims: Sequence[Claim], total_minor: int | None, group_caps: Mapping[str, int]) -> dict[str, int]:
    """The amounts of `fill`, by claim key."""
    return {turn.claim.key: turn.amount for turn in fill(claims, total_minor, group_caps)}


def _reason(turn: Turn, requested: int, total: int | None, group_caps: Mapping[str, int]) -> str:
    claim = turn.claim
    if not claim.priority > 0:
        return f"its UCB {claim.priority:.4g} is not positive: expected to lose money even optimistically"
    if turn.amount == requested:
        return "its requested budget"
    if turn.amount == claim.cap_minor:
        return f"its monthly experiment budget ({claim.cap_minor} left)"
    if turn.group_left is not None and claim.group is not None and turn.amount == turn.group_left:
        cap = group_caps[claim.group]
        return f"the monthly {claim.group} category budget ({cap} left, {cap - turn.group_left} to higher UCB ranks)"
    if total is None or turn.total_left is None:  # unreachable: something had to stop it below its cap
        raise ArithmeticError(f"allocation: nothing explains why {claim.key} got {turn.amount} of {claim.cap_minor}")
    # Neither its cap nor its category stopped it, so the global headroom did.
    return f"the monthly global budget ({total} left, {total - turn.total_left} to higher UCB ranks)"


# -- reading the warehouse -------------------------------------------------------------------------


def spend_category(playbook: Any) -> str | None:
    """The category of the playbook's first spend step's account (expenses:<category>:...)."""
    steps = json.loads(playbook) if isinstance(playbook, str) else playbook
    for step in steps or []:
        if isinstance(step, dict) and step.get("type") == "spend":
            segments = str(step.get("params", {}).get("account", "")).split(":")
            return segments[1] if len(segments) > 1 else None
    return None


def _frame(conn: Any, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    cursor = run_sql(conn, sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _outstanding(conn: Any) -> list[dict[str, Any]]:
    """Allocated experiments still to run, with what they may yet spend (allocation less spend so far)."""
    marks = ", ".join(["%s"] * len(COMMITTED_STATES))
    unbudgeted = ", ".join(["%s"] * len(UNBUDGETED_SOURCES))
    # Its spend as budgets count it (net of reversals, not the processor's fees): what the allocation paid for.
    rows = _frame(
        conn,
        "SELECT e.experiment_id, e.currency, e.allocated_budget_minor, e.playbook, "
        "CAST(coalesce((SELECT sum(p.amount_minor) FROM ledger.postings p "
        "  JOIN ledger.transactions t ON t.transaction_id = p.transaction_id "
        "  WHERE p.experiment_id = e.experiment_id AND p.currency = e.currency "
        f"  AND split_part(p.account_id, ':', 1) = 'expenses' AND t.source NOT IN ({unbudgeted})), 0) AS BIGINT) "
        f"AS spent FROM experiments.experiments e WHERE e.state IN ({marks}) AND e.allocated_budget_minor > 0",
        [*UNBUDGETED_SOURCES, *COMMITTED_STATES],
    )
    return [
        {
            "experiment_id": r["experiment_id"],
            "currency": r["currency"],
            "category": spend_category(r["playbook"]),
            "left": max(int(r["allocated_budget_minor"]) - int(r["spent"]), 0),
        }
        for r in rows
    ]


def _in_scope(budget: Mapping[str, Any], commitment: Mapping[str, Any]) -> bool:
    if commitment["currency"] != budget["currency"]:
        return False
    if budget["scope"] == "global":
        return True
    if budget["scope"] == "category":
        return commitment["category"] == budget["scope_key"]
    return commitment["experiment_id"] == budget["scope_key"]


def headroom(warehouse: Warehouse, conn: Any, at: datetime) -> pd.DataFrame:
    """Each monthly budget (core.ledger.budgets.utilization: its limit and this month's spend, counted
    as spend() counts it) with what is still promised to allocated experiments and the headroom left.
    Called inside the caller's write_transaction, which every spend waits for, so nothing moves
    between this read and the allocations."""
    committed = _outstanding(conn)
    budgets = utilization(warehouse, at)
    budgets = budgets[budgets["period"] == PERIOD].reset_index(drop=True)
    budgets["promised_minor"] = [
        sum(c["left"] for c in committed if _in_scope(row, c)) for row in budgets.to_dict("records")
    ]
    left = budgets["limit_minor"] - budgets["spent_minor"] - budgets["promised_minor"]
    budgets["headroom_minor"] = left.clip(lower=0).astype("int64")
    return budgets


def _priorities_of(
    candidates: Sequence[Mapping[str, Any]], priorities: Mapping[str, Priority] | None
) -> dict[str, Priority]:
    """Each candidate's priority: the one given, else its score (said in `basis`, and so in limited_by)."""
    chosen = {}
    for c in candidates:
        given = None if priorities is None else priorities.get(c["experiment_id"])
        if given is None:
            score = float(c["score"])
            given = Priority(score, score, 0.0, NO_PRIORITY if priorities is None else NO_FEATURES)
        values = (given.ucb, given.mean, given.width)
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values) or given.width < 0:
            raise ValueError(
                f"allocate: the priority of experiment {c['experiment_id']} is {given}: ucb, mean and width must be "
                "finite numbers and the width not negative (ml.linucb computes them; pass none to rank by score)"
            )
        chosen[c["experiment_id"]] = given
    return chosen


def allocate(
    warehouse: Warehouse,
    *,
    actor: str,
    clock: Clock = utc_now,
    priorities: Mapping[str, Priority] | None = None,
) -> pd.DataFrame:
    """Allocate budgets to the approved experiments that have none, in order of `priorities` (by
    experiment id; one missing ranks by its score) within the ledger's budgets (module docstring).
    Returns one row per such experiment, allocated, waiting for headroom or declined."""
    if not actor or not actor.strip():
        raise ValueError("allocate needs an actor (who allocates): allocations are audited")
    at = clock()
    rows: list[dict[str, Any]] = []
    with write_transaction(warehouse) as conn:
        candidates = _frame(
            conn,
            "SELECT experiment_id, score, requested_budget_minor, currency, playbook FROM experiments.experiments "
            "WHERE state = %s AND allocated_budget_minor IS NULL ORDER BY experiment_id",
            [APPROVED],
        )
        if not candidates:
            return pd.DataFrame(columns=ALLOCATION_COLUMNS)
        chosen = _priorities_of(candidates, priorities)
        limits = headroom(warehouse, conn, at)
        events = []
        for currency in sorted({c["currency"] for c in candidates}):
            mine = {c["experiment_id"]: c for c in candidates if c["currency"] == currency}
            room = {
                (b["scope"], b["scope_key"]): int(b["headroom_minor"])
                for b in limits.to_dict("records")
                if b["currency"] == currency
            }
            total = room.get(("global", GLOBAL_KEY))
            group_caps = {key: left for (scope, key), left in room.items() if scope == "category"}
            claims = []
            for key, c in mine.items():
                requested = int(c["requested_budget_minor"])
                own = room.get(("experiment", key))
                cap = min(requested, own) if own is not None else requested
                claims.append(Claim(key, chosen[key].ucb, cap, spend_category(c["playbook"])))
            turns = fill(claims, total, group_caps)
            for turn in turns:
                claim, amount, c, priority = turn.claim, turn.amount, mine[turn.claim.key], chosen[turn.claim.key]
                requested = int(c["requested_budget_minor"])
                limited_by = f"{_reason(turn, requested, total, group_caps)}; UCB rank {turn.rank} of {len(turns)}"
                if priority.basis != LINUCB:
                    limited_by += f" ({priority.basis})"
                status = "declined" if not claim.priority > 0 else "waiting"
                if amount > 0:
                    updated = run_sql(
                        conn,
                        "UPDATE experiments.experiments SET allocated_budget_minor = %s, updated_at = %s "
                        "WHERE experiment_id = %s AND state = %s AND allocated_budget_minor IS NULL "
                        "RETURNING experiment_id",
                        [amount, at, claim.key, APPROVED],
                    ).fetchall()
                    status = "allocated" if updated else "taken"
                    if updated:
                        events.append(
                            (
                                EXPERIMENT_ALLOCATED,
                                {
                                    "experiment_id": claim.key,
                                    "allocated_budget_minor": amount,
                                    "requested_budget_minor": requested,
                                    "currency": currency,
                                    "score": float(c["score"]),
                                    "ucb": priority.ucb,
                                    "mean": priority.mean,
                                    "width": priority.width,
                                    "rank": turn.rank,
                                    "basis": priority.basis,
                                    "actor": actor,
                                    "limited_by": limited_by,
                                },
                            )
                        )
                elif status == "waiting":
                    limited_by = "no headroom: " + limited_by
                rows.append(
                    {
                        "experiment_id": claim.key,
                        "category": claim.group,
                        "score": float(c["score"]),
                        "ucb": priority.ucb,
                        "mean": priority.mean,
                        "width": priority.width,
                        "rank": turn.rank,
                        "basis": priority.basis,
                        "requested_budget_minor": requested,
                        "cap_minor": claim.cap_minor,
                        "allocated_budget_minor": amount if status != "taken" else 0,
                        "currency": currency,
                        "status": status,
                        "limited_by": limited_by,
                    }
                )
        append_events(conn, warehouse.backend, events, recorded_at=at)
    return pd.DataFrame(rows, columns=ALLOCATION_COLUMNS)
