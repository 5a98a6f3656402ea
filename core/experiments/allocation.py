"""Budget allocation among approved experiments: proportional to score, within the ledger's budgets.
(The learning issue replaces the proportional rule with LinUCB; the limits stay.)

An approved experiment without an allocation claims its requested budget. What it may get at most
(its cap) is that, within the headroom of its own monthly experiment budget; the claims of one
spend category (the playbook's spend account, expenses:<category>:...) share that category's
monthly headroom, and all claims share the global monthly headroom. Only budgets in the
experiment's currency count.

Headroom = limit - spent this month (counted as core.ledger.budgets counts it for spend) - what
allocated experiments that are still to run (approved, queued, running, paused) may yet spend
(their allocation less their spend so far): an allocation is a promise the budget must keep.

Shares are water-filled: every claim grows in proportion to its score until it reaches its cap
or its category or the global headroom runs out; what a capped claim cannot take goes to the others.
The exact (rational) shares are then made integer minor units by largest remainder, first per
category and then within it, so they sum exactly to what is distributed and never pass a cap.
A claim whose share is 0 (no headroom) stays unallocated and is considered again next time.

Each allocation is a compare-and-set (state approved and no allocation yet) inside the audit
chain's write_transaction, with an `experiment.allocated` event: a second allocate running at the
same time waits for the first and then finds nothing left to allocate.
"""

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Any

import pandas as pd

from core.experiments.lifecycle import APPROVED, PAUSED, QUEUED, RUNNING
from core.ledger.audit import Clock, append_events, utc_now, write_transaction
from core.ledger.budgets import GLOBAL_KEY, UNBUDGETED_SOURCES, utilization
from core.platform.warehouse import Warehouse, run_sql

EXPERIMENT_ALLOCATED = "experiment.allocated"
PERIOD = "month"
COMMITTED_STATES = (APPROVED, QUEUED, RUNNING, PAUSED)
ALLOCATION_COLUMNS = [
    "experiment_id",
    "category",
    "score",
    "requested_budget_minor",
    "cap_minor",
    "allocated_budget_minor",
    "currency",
    "status",  # allocated | waiting (nothing to give now) | taken (allocated by someone else meanwhile)
    "limited_by",
]


@dataclass(frozen=True)
class Claim:
    key: str
    score: float
    cap_minor: int  # the most this claim may get
    group: str | None = None  # the category whose headroom it shares


def _weight(score: float) -> Fraction:
    # repr gives the shortest decimal that is the float (0.7, not 0.6999...): exact and small.
    weight = Fraction(repr(float(score))) if score == score else Fraction(0)
    return max(weight, Fraction(0))


def water_fill(claims: Sequence[Claim], total_minor: int | None, group_caps: Mapping[str, int]) -> dict[str, Fraction]:
    """The exact shares: progressive filling at a common level t, claim i holding min(cap_i, t * score_i)
    until its cap, its group's cap or the total stops it. None: no total limit; a group not in
    group_caps has no limit of its own."""
    share = {c.key: Fraction(0) for c in claims}
    weight = {c.key: _weight(c.score) for c in claims}
    active = {c.key for c in claims if weight[c.key] > 0 and c.cap_minor > 0}
    group_left = {g: Fraction(max(cap, 0)) for g, cap in group_caps.items()}
    total_left = None if total_minor is None else Fraction(max(total_minor, 0))
    by_key = {c.key: c for c in claims}
    while active and (total_left is None or total_left > 0):
        steps = [(by_key[k].cap_minor - share[k]) / weight[k] for k in active]
        group_weight: dict[str, Fraction] = defaultdict(Fraction)
        for k in active:
            if by_key[k].group in group_left:
                group_weight[by_key[k].group] += weight[k]
        steps += [group_left[g] / w for g, w in group_weight.items()]
        if total_left is not None:
            steps.append(total_left / sum(weight[k] for k in active))
        step = min(steps)
        for k in active:
            share[k] += step * weight[k]
        for g, w in group_weight.items():
            group_left[g] -= step * w
        if total_left is not None:
            total_left -= step * sum(weight[k] for k in active)
        active = {
            k
            for k in active
            if share[k] < by_key[k].cap_minor and (by_key[k].group not in group_left or group_left[by_key[k].group] > 0)
        }
    return share


def _largest_remainder(
    exact: Mapping[str, Fraction], amount: int, order: Mapping[str, tuple[Any, ...]]
) -> dict[str, int]:
    """Integers that sum to `amount`, each the floor of its exact share or one more: the extra
    units go to the largest fractional parts, ties broken by `order` (ascending)."""
    floors = {k: v.numerator // v.denominator for k, v in exact.items()}
    extra = amount - sum(floors.values())
    ranked = sorted(exact, key=lambda k: (-(exact[k] - floors[k]), *order[k]))
    for k in ranked[:extra]:
        floors[k] += 1
    return floors


def shares(claims: Sequence[Claim], total_minor: int | None, group_caps: Mapping[str, int]) -> dict[str, int]:
    """Integer shares of the water-filled allocation: they sum exactly to what it distributes (an
    integer: either the total, or every claim stopped by an integer cap), never exceed a claim's
    cap or a group's cap, and a higher score never gets less than a lower one with no larger cap
    in the same group."""
    exact = water_fill(claims, total_minor, group_caps)
    by_key = {c.key: c for c in claims}
    order = {c.key: (-_weight(c.score), c.key) for c in claims}
    # A claim whose group has no cap is its own group: only a capped group needs its units counted.
    group_of = {c.key: c.group if c.group in group_caps else f"\x00{c.key}" for c in claims}
    members: dict[str, list[str]] = defaultdict(list)
    for key in exact:
        members[group_of[key]].append(key)
    group_exact = {g: sum((exact[k] for k in keys), Fraction(0)) for g, keys in members.items()}
    distributed = sum(group_exact.values(), Fraction(0))
    if distributed.denominator != 1:  # unreachable by the argument above; a loud guard, not a rounding
        raise ArithmeticError(f"water-filling distributed a fraction {distributed} of minor units")
    group_order = {g: (-max(_weight(by_key[k].score) for k in keys), g) for g, keys in members.items()}
    group_amounts = _largest_remainder(group_exact, int(distributed), group_order)
    result: dict[str, int] = {}
    for g, keys in members.items():
        result.update(_largest_remainder({k: exact[k] for k in keys}, group_amounts[g], order))
    return result


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


def allocate(warehouse: Warehouse, *, actor: str, clock: Clock = utc_now) -> pd.DataFrame:
    """Allocate budgets to the approved experiments that have none (see the module docstring);
    returns one row per such experiment, allocated or still waiting."""
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
        limits = headroom(warehouse, conn, at)
        events = []
        for currency in sorted({c["currency"] for c in candidates}):
            mine = [c for c in candidates if c["currency"] == currency]
            room = {
                (b["scope"], b["scope_key"]): int(b["headroom_minor"])
                for b in limits.to_dict("records")
                if b["currency"] == currency
            }
            total = room.get(("global", GLOBAL_KEY))
            group_caps = {key: left for (scope, key), left in room.items() if scope == "category"}
            claims = []
            for c in mine:
                requested = int(c["requested_budget_minor"])
                own = room.get(("experiment", c["experiment_id"]))
                cap = min(requested, own) if own is not None else requested
                claims.append(Claim(c["experiment_id"], float(c["score"]), cap, spend_category(c["playbook"])))
            given = shares(claims, total, group_caps)
            by_group: dict[str | None, int] = defaultdict(int)
            for claim in claims:
                by_group[claim.group] += given[claim.key]
            for claim, c in zip(claims, mine, strict=True):
                amount, requested = given[claim.key], int(c["requested_budget_minor"])
                if amount == requested:
                    limited_by = "its requested budget"
                elif amount == claim.cap_minor:
                    limited_by = f"its monthly experiment budget ({claim.cap_minor} left)"
                elif claim.group in group_caps and by_group[claim.group] == group_caps[claim.group]:
                    limited_by = f"the monthly {claim.group} category budget ({group_caps[claim.group]} left)"
                elif total is not None:
                    limited_by = f"the monthly global budget ({total} left)"
                else:
                    limited_by = "its score (water-filling)"
                status = "waiting"
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
                                    "actor": actor,
                                    "limited_by": limited_by,
                                },
                            )
                        )
                rows.append(
                    {
                        "experiment_id": claim.key,
                        "category": claim.group,
                        "score": float(c["score"]),
                        "requested_budget_minor": requested,
                        "cap_minor": claim.cap_minor,
                        "allocated_budget_minor": amount if status != "taken" else 0,
                        "currency": currency,
                        "status": status,
                        "limited_by": limited_by if amount > 0 else "no headroom: " + limited_by,
                    }
                )
        append_events(conn, warehouse.backend, events, recorded_at=at)
    return pd.DataFrame(rows, columns=ALLOCATION_COLUMNS)
