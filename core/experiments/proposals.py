"""Proposed experiments from scored opportunities, and the approval policy that decides which of
them need a person.

One experiment per opportunity: its idempotency key is `proposal:<opportunity_id>` and its id a
UUID derived from that key, so proposing again (a rematerialization) creates nothing new. A key
already stored with different content (the opportunity was rescored or re-estimated) keeps the
first experiment and reports the conflict: an experiment's plan does not change under it. The
score is not part of that content (it changes with every rescoring); the stored one is the first.

Sizing, in integer minor units of USD: the requested budget is 10% of the opportunity's estimated
monthly revenue, clamped to [MIN_BUDGET_MINOR, MAX_BUDGET_MINOR]; success is revenue of at least
twice the budget within 30 days, or an ROI of at least 0.5 within 30 days.

With each new experiment, in the same transaction, its opportunity's features as they were then go
into experiments.proposal_features (SNAPSHOT_FEATURES, from the scored row; NULL where the scored
frame lacks a column): core.opportunity_features is replaced on every discovery run, so this is the
only record learning has of what was known at proposal time.
"""

import hashlib
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from core.experiments.lifecycle import (
    APPROVED,
    PROPOSED,
    Transition,
    new_experiment_id,
    record_transition,
    transition,
)
from core.experiments.outcomes import longest_window_days
from core.experiments.playbook import CATEGORY_CHANNELS, default_playbook, validate_playbook
from core.ledger.audit import Clock, canonical_json, utc_now, write_transaction
from core.platform.warehouse import Warehouse, run_sql

DEFAULT_POLICY_FILE = Path(__file__).parent / "config" / "approval.yaml"
CURRENCY = "USD"
BUDGET_SHARE_PERCENT = 10
MIN_BUDGET_MINOR = 5_000  # 50.00 USD
MAX_BUDGET_MINOR = 200_000  # 2,000.00 USD
WINDOW_DAYS = 30
REVENUE_MULTIPLE = 2
MIN_ROI = 0.5
REQUIRED_COLUMNS = ("opportunity_id", "score", "opportunity_type", "title", "est_monthly_revenue_cents")
POLICY_ACTOR = "policy"
# The scored row's features kept in experiments.proposal_features; the first two are text, the
# others numbers (the row's value, or NULL when the scored frame has no such column or no value).
SNAPSHOT_FEATURES = (
    "source",
    "opportunity_type",
    "age_days",
    "confidence",
    "est_monthly_revenue_cents",
    "capability_match",
    "days_to_revenue",
    "cluster_size",
)
# A proposal as the learning code takes it (ml.features.build_features, core.simulator.population),
# and the snapshot row: that and the score.
PROPOSAL_COLUMNS = (
    "experiment_id",
    "opportunity_id",
    "proposed_at",
    *SNAPSHOT_FEATURES,
    "requested_budget_minor",
    "window_days",
)
SNAPSHOT_COLUMNS = (*PROPOSAL_COLUMNS, "score")


@dataclass(frozen=True)
class ApprovalPolicy:
    """Approve automatically when the requested budget is at most max_budget_minor (in currency)
    and the score at least min_score; otherwise wait for a person."""

    max_budget_minor: int
    min_score: float
    currency: str = CURRENCY
    source: str = "ApprovalPolicy"

    def decide(self, requested_budget_minor: int, currency: str, score: float) -> str | None:
        """The reason for approving, naming the rule, or None when a person must decide."""
        # `not >=` so that a NaN score waits for a person rather than passing the threshold.
        if currency != self.currency or requested_budget_minor > self.max_budget_minor or not score >= self.min_score:
            return None
        return (
            f"auto-approved by {self.source}: budget {requested_budget_minor} <= {self.max_budget_minor} "
            f"{self.currency} minor units and score {score:.3f} >= {self.min_score}"
        )


def load_policy(path: Path | None = None) -> ApprovalPolicy:
    path = path or DEFAULT_POLICY_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rule = data.get("auto_approve")
    if not isinstance(rule, dict):
        raise ValueError(f"{path}: needs an auto_approve mapping with max_budget_minor and min_score")
    missing = sorted({"max_budget_minor", "min_score"} - set(rule))
    if missing:
        raise ValueError(f"{path}: auto_approve lacks {missing}")
    limit, threshold = rule["max_budget_minor"], rule["min_score"]
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(
            f"{path}: auto_approve.max_budget_minor must be a non-negative integer of minor units, got {limit!r}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValueError(f"{path}: auto_approve.min_score must be a number in [0, 1], got {threshold!r}")
    currency = rule.get("currency", CURRENCY)
    return ApprovalPolicy(limit, float(threshold), currency, source=f"{path.name} auto_approve")


@dataclass
class ProposalReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # messages: same key, different content, first kept
    skipped: list[str] = field(default_factory=list)  # messages: opportunities that cannot become experiments
    approved: list[Transition] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # proposed, for a person to decide

    def summary(self) -> str:
        return (
            f"{len(self.created)} proposed, {len(self.unchanged)} already proposed, {len(self.conflicts)} conflicts "
            f"(first kept), {len(self.skipped)} skipped, {len(self.approved)} auto-approved, "
            f"{len(self.waiting)} waiting for a person"
        )


def requested_budget_minor(est_monthly_revenue_cents: int) -> int:
    share = max(int(est_monthly_revenue_cents), 0) * BUDGET_SHARE_PERCENT // 100
    return min(max(share, MIN_BUDGET_MINOR), MAX_BUDGET_MINOR)


def success_criteria(budget_minor: int) -> dict[str, Any]:
    return {
        "any_of": [
            {
                "metric": "revenue_minor",
                "at_least": budget_minor * REVENUE_MULTIPLE,
                "currency": CURRENCY,
                "within_days": WINDOW_DAYS,
            },
            {"metric": "roi", "at_least": MIN_ROI, "within_days": WINDOW_DAYS},
        ]
    }


class ProposalError(ValueError):
    """An opportunity that cannot become an experiment, and why."""


def proposal_from(opportunity: dict[str, Any]) -> dict[str, Any]:
    """The experiment an opportunity becomes (without its state or times); ProposalError names
    the opportunity and the field that stops it."""
    where = f"opportunity {opportunity.get('opportunity_id')!r}"
    if not isinstance(opportunity.get("opportunity_id"), str) or not opportunity["opportunity_id"]:
        raise ProposalError(f"{where}: opportunity_id must be a non-empty string")
    category = opportunity["opportunity_type"]
    if category not in CATEGORY_CHANNELS:
        raise ProposalError(
            f"{where}: opportunity_type {category!r} is not a category ({', '.join(sorted(CATEGORY_CHANNELS))})"
        )
    score, revenue = opportunity["score"], opportunity["est_monthly_revenue_cents"]
    if not isinstance(score, int | float) or isinstance(score, bool) or not 0 <= score <= 1:
        raise ProposalError(f"{where}: score must be a number in [0, 1], got {score!r}")
    if not isinstance(revenue, int | float) or isinstance(revenue, bool) or not 0 <= revenue < 2**62:
        raise ProposalError(f"{where}: est_monthly_revenue_cents must be a non-negative amount, got {revenue!r}")
    if not isinstance(opportunity["title"], str) or not opportunity["title"].strip():
        raise ProposalError(f"{where}: title must be non-empty text")
    budget = requested_budget_minor(int(revenue))
    playbook = default_playbook(category, budget, CURRENCY)
    validate_playbook(playbook)
    title = str(opportunity["title"])
    return {
        "opportunity_id": str(opportunity["opportunity_id"]),
        "title": title,
        "hypothesis": (
            f"A {category} experiment on {title!r} earns at least {budget * REVENUE_MULTIPLE} {CURRENCY} minor "
            f"units within {WINDOW_DAYS} days of spending {budget}"
        ),
        "category": category,
        "score": round(float(opportunity["score"]), 6),
        "currency": CURRENCY,
        "requested_budget_minor": budget,
        "success_criteria": success_criteria(budget),
        "playbook": playbook,
    }


def content_hash(proposal: dict[str, Any]) -> str:
    """What makes two proposals of one opportunity the same: everything but the score, which moves
    on every rescoring (the timing factor ages) without changing the plan."""
    plan = {name: value for name, value in proposal.items() if name != "score"}
    return hashlib.sha256(canonical_json(plan).encode("utf-8")).hexdigest()


def top_leads(scored: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """The top_n cluster leads by score (a near-duplicate's lead speaks for its cluster)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in scored.columns]
    if missing:
        raise ValueError(f"scored opportunities lack columns {missing} (core.scored_opportunities has them)")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    leads = scored[scored["is_cluster_lead"].astype(bool)] if "is_cluster_lead" in scored.columns else scored
    return leads.sort_values(["score", "opportunity_id"], ascending=[False, True], kind="stable").head(top_n)


def propose_from_scored(
    warehouse: Warehouse,
    scored: pd.DataFrame,
    top_n: int,
    policy: ApprovalPolicy,
    clock: Clock = utc_now,
    actor: str = "proposals",
) -> ProposalReport:
    """Propose the top_n cluster leads of `scored` (idempotently), then apply `policy` to this
    batch's experiments that are still proposed. A lead that cannot become an experiment (an
    unknown type, a missing score or estimate) takes its place in the top_n and is reported in
    `skipped` with its reason; the scored table is rebuilt each run, so a fixed row is proposed
    on the next one."""
    report = ProposalReport()
    at = clock()
    proposals, rows = [], []
    for row in top_leads(scored, top_n).to_dict("records"):
        try:
            proposals.append(proposal_from(row))
        except ProposalError as error:  # one bad row never stops the batch; the report names it
            report.skipped.append(str(error))
            continue
        rows.append(row)
    with write_transaction(warehouse) as conn:
        for proposal, row in zip(proposals, rows, strict=True):
            key = f"proposal:{proposal['opportunity_id']}"
            experiment_id = new_experiment_id(key)
            digest = content_hash(proposal)
            stored = run_sql(
                conn, "SELECT content_hash FROM experiments.experiments WHERE idempotency_key = %s", [key]
            ).fetchone()
            if stored is not None:
                if stored[0] == digest:
                    report.unchanged.append(experiment_id)
                else:
                    report.conflicts.append(
                        f"experiment {experiment_id} (key {key}): proposed again with different content; "
                        f"the first proposal is kept (propose a new experiment to change the plan)"
                    )
                continue
            _insert(conn, experiment_id, key, digest, proposal, at)
            _insert_snapshot(conn, experiment_id, proposal, row, at)
            record_transition(
                conn,
                warehouse.backend,
                Transition(
                    experiment_id,
                    0,
                    None,
                    PROPOSED,
                    actor,
                    f"top {top_n} scored opportunity (score {proposal['score']})",
                    at,
                ),
            )
            report.created.append(experiment_id)
    batch = [new_experiment_id(f"proposal:{p['opportunity_id']}") for p in proposals]
    for experiment_id in batch:
        row = warehouse.query(
            "SELECT state, requested_budget_minor, currency, score FROM experiments.experiments "
            "WHERE experiment_id = %s",
            [experiment_id],
        ).iloc[0]
        if row["state"] != PROPOSED:
            continue
        reason = policy.decide(int(row["requested_budget_minor"]), row["currency"], float(row["score"]))
        if reason is None:
            report.waiting.append(experiment_id)
            continue
        report.approved.append(
            transition(
                warehouse,
                experiment_id,
                APPROVED,
                actor=POLICY_ACTOR,
                reason=reason,
                expected_from=PROPOSED,
                clock=clock,
            )
        )
    return report


def _insert(conn: Any, experiment_id: str, key: str, digest: str, proposal: dict[str, Any], at: Any) -> None:
    run_sql(
        conn,
        "INSERT INTO experiments.experiments (experiment_id, idempotency_key, content_hash, opportunity_id, title, "
        "hypothesis, category, score, currency, requested_budget_minor, allocated_budget_minor, success_criteria, "
        "playbook, state, state_seq, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, 0, %s, %s)",
        [
            experiment_id,
            key,
            digest,
            proposal["opportunity_id"],
            proposal["title"],
            proposal["hypothesis"],
            proposal["category"],
            proposal["score"],
            proposal["currency"],
            proposal["requested_budget_minor"],
            canonical_json(proposal["success_criteria"]),
            canonical_json(proposal["playbook"]),
            PROPOSED,
            at,
            at,
        ],
    )


def snapshot_of(experiment_id: str, proposal: dict[str, Any], row: dict[str, Any], at: Any) -> dict[str, Any]:
    """The experiments.proposal_features row of a new experiment: its scored row's features as they
    are now (None where the row has no value), its budget, its criteria's longest window and score."""
    values: dict[str, Any] = {"experiment_id": experiment_id, "opportunity_id": proposal["opportunity_id"]}
    values["proposed_at"] = at
    for name in SNAPSHOT_FEATURES:
        values[name] = _plain(row.get(name), text=name in ("source", "opportunity_type"))
    values["opportunity_type"] = proposal["category"]  # validated by proposal_from
    # proposal_from checked it is a non-negative amount below 2**62; stored as integer cents.
    revenue = row["est_monthly_revenue_cents"]
    values["est_monthly_revenue_cents"] = int(revenue) if isinstance(revenue, numbers.Integral) else round(revenue)
    if values["cluster_size"] is not None:
        values["cluster_size"] = int(values["cluster_size"])
    values["requested_budget_minor"] = proposal["requested_budget_minor"]
    values["window_days"] = longest_window_days(proposal["success_criteria"])
    values["score"] = proposal["score"]
    return values


def _plain(value: Any, *, text: bool) -> Any:
    """A driver-neutral value: None for a missing one (None, NaN, NaT, pd.NA), else str or float."""
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return None
    if text:
        return str(value)
    number = float(value)
    return None if math.isnan(number) else number


def _insert_snapshot(conn: Any, experiment_id: str, proposal: dict[str, Any], row: dict[str, Any], at: Any) -> None:
    values = snapshot_of(experiment_id, proposal, row, at)
    run_sql(
        conn,
        f"INSERT INTO experiments.proposal_features ({', '.join(SNAPSHOT_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(SNAPSHOT_COLUMNS))})",
        [values[name] for name in SNAPSHOT_COLUMNS],
    )
