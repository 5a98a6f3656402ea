"""What an experiment earned and spent, judged against its success criteria.

`experiment_totals` gives the numbers of dbt's experiment_pnl mart for one experiment: the postings
on revenue:* and expenses:* accounts that carry its id, each converted to the reporting currency
(USD) on its own UTC day at the ledger's ECB rates (core.ledger.fx, exact and half-even, as the
mart's fct_postings), then summed: revenue is the credits (sign flipped), cost the debits net of
reversals.

`evaluate` reads the criteria core.experiments.proposals.success_criteria writes:
    {"any_of": [{"metric": "revenue_minor", "at_least": X, "currency": "USD", "within_days": N},
                {"metric": "roi", "at_least": Y, "within_days": N}]}
A rule is met when its metric reached at_least in totals that cover at most within_days days.

`record_outcomes` writes one experiments.outcomes row per completed, failed or rolled_back
experiment (an upsert: it is rerun as late money arrives). A completed experiment is judged on its
money up to started_at + its longest rule window, a failed or rolled-back one is not judged (it did
not finish) and carries all its money, reversals of its spends included. Duration is started_at to
finished_at (the environment's clock), or, where those columns are empty, its first transition to
running to its transition into its final state.
"""

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from core.experiments.lifecycle import COMPLETED, FAILED, ROLLED_BACK, RUNNING
from core.ledger.audit import Clock, canonical_json, utc_now
from core.ledger.fx import FxError, RateTable
from core.platform.warehouse import Warehouse, query_frame, run_sql

REPORTING_CURRENCY = "USD"  # dbt_project.yml's reporting_currency
FINISHED_STATES = (COMPLETED, FAILED, ROLLED_BACK)
MONEY_METRICS = ("revenue_minor", "cost_minor", "net_minor")
METRICS = (*MONEY_METRICS, "roi")
RULE_KEYS = frozenset({"metric", "at_least", "within_days", "currency"})
OUTCOME_COLUMNS = [
    "experiment_id",
    "state",
    "evaluated_at",
    "succeeded",
    "revenue_minor",
    "cost_minor",
    "net_minor",
    "roi",
    "duration_days",
    "currency",
    "criteria",
    "reason",
]


class CriteriaError(ValueError):
    """Success criteria of a shape evaluate does not know."""


class OutcomeError(ValueError):
    """Experiments whose outcome could not be recorded, and why; `recorded` holds the others' rows."""

    def __init__(self, message: str, recorded: pd.DataFrame):
        super().__init__(message)
        self.recorded = recorded


@dataclass(frozen=True)
class Totals:
    revenue_minor: int
    cost_minor: int
    currency: str

    @property
    def net_minor(self) -> int:
        return self.revenue_minor - self.cost_minor

    @property
    def roi(self) -> float | None:
        """(revenue - cost) / cost, as experiment_pnl; None without cost (no ratio to speak of)."""
        return None if self.cost_minor == 0 else self.net_minor / self.cost_minor


def experiment_totals(
    warehouse: Warehouse,
    experiment_id: str,
    *,
    until: datetime | None = None,
    currency: str = REPORTING_CURRENCY,
    rates: RateTable | None = None,
) -> Totals:
    """Revenue and cost of one experiment in `currency` minor units, from its postings that occurred
    at or before `until` (all of them by default: then the numbers are experiment_pnl's).
    `rates` defaults to ledger.fx_rates, read only when a posting is in another currency."""
    sql = (
        "SELECT posting_id, account_id, currency, amount_minor, occurred_at FROM ledger.postings "
        "WHERE experiment_id = %s AND split_part(account_id, ':', 1) IN ('revenue', 'expenses')"
    )
    params: list[Any] = [experiment_id]
    if until is not None:
        if until.tzinfo is None:
            raise ValueError(f"experiment {experiment_id}: until={until.isoformat()} must be timezone-aware (UTC)")
        sql += " AND occurred_at <= %s"
        params.append(until)
    with warehouse.connect() as conn:
        rows = run_sql(conn, sql + " ORDER BY posting_id", params).fetchall()
    revenue = cost = 0
    for posting_id, account, posting_currency, amount, occurred_at in rows:
        amount = int(amount)
        if posting_currency != currency:
            if rates is None:
                rates = RateTable.from_warehouse(warehouse)
            try:
                amount = rates.convert(amount, posting_currency, currency, pd.Timestamp(occurred_at).to_pydatetime())
            except FxError as error:
                raise FxError(
                    f"experiment {experiment_id}: posting {posting_id} ({amount} {posting_currency} minor units on "
                    f"{account}) cannot be converted to {currency}: {error}"
                ) from None
        if account.startswith("revenue:"):
            revenue -= amount  # credits are negative
        else:
            cost += amount
    return Totals(revenue, cost, currency)


def _rules(criteria: Any) -> list[dict[str, Any]]:
    where = f"success criteria {_show(criteria)}"
    if not isinstance(criteria, dict) or set(criteria) != {"any_of"}:
        raise CriteriaError(f"{where}: expected a mapping with one key, any_of (a list of rules)")
    rules = criteria["any_of"]
    if not isinstance(rules, list) or not rules:
        raise CriteriaError(f"{where}: any_of must be a non-empty list of rules")
    for index, rule in enumerate(rules):
        at = f"{where}, rule {index}"
        if not isinstance(rule, dict):
            raise CriteriaError(f"{at}: a rule is a mapping of metric, at_least, within_days[, currency]")
        unknown = sorted(set(rule) - RULE_KEYS)
        missing = sorted({"metric", "at_least", "within_days"} - set(rule))
        if unknown or missing:
            raise CriteriaError(f"{at}: unknown keys {unknown}, missing keys {missing}; a rule has {sorted(RULE_KEYS)}")
        if rule["metric"] not in METRICS:
            raise CriteriaError(f"{at}: unknown metric {rule['metric']!r}; the metrics are {', '.join(METRICS)}")
        threshold, days = rule["at_least"], rule["within_days"]
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not math.isfinite(threshold):
            raise CriteriaError(f"{at}: at_least must be a finite number, got {threshold!r}")
        if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
            raise CriteriaError(f"{at}: within_days must be a positive integer, got {days!r}")
        money = rule["metric"] in MONEY_METRICS
        if money and (not isinstance(rule.get("currency"), str) or not isinstance(threshold, int)):
            raise CriteriaError(f"{at}: a {rule['metric']} rule needs a currency and an integer at_least (minor units)")
        if not money and "currency" in rule:
            raise CriteriaError(f"{at}: {rule['metric']} is a ratio and takes no currency")
    return rules


def longest_window_days(criteria: dict[str, Any]) -> int:
    """The longest within_days of the criteria's rules (CriteriaError if they are not rules)."""
    return max(rule["within_days"] for rule in _rules(criteria))


def evaluate(criteria: dict[str, Any], totals: Totals, duration_days: float) -> tuple[bool, str]:
    """Whether any rule of `criteria` is met by `totals`, the money of the experiment's first
    `duration_days` days, and a reason that gives every rule's value against its threshold."""
    rules = _rules(criteria)
    if not isinstance(duration_days, int | float) or not duration_days >= 0:
        raise ValueError(f"duration_days must be a non-negative number of days, got {duration_days!r}")
    verdicts = []
    for rule in rules:
        metric, threshold, days = rule["metric"], rule["at_least"], rule["within_days"]
        if metric in MONEY_METRICS and rule["currency"] != totals.currency:
            raise CriteriaError(
                f"success criteria {_show(criteria)}: a {metric} rule in {rule['currency']} cannot be judged on "
                f"totals in {totals.currency}; compute the totals in {rule['currency']}"
            )
        value = getattr(totals, metric)
        late = "" if duration_days <= days else f", but over {duration_days:.2f} days > {days}"
        if value is None:
            met, text = False, f"{metric} undefined (no cost), needs at least {threshold}"
        else:
            met = value >= threshold and duration_days <= days
            shown = f"{metric} {value:.6f}" if metric == "roi" else f"{metric} {value} {totals.currency}"
            text = f"{shown} {'>=' if value >= threshold else '<'} {threshold}{late}"
        verdicts.append((met, text))
    succeeded = any(met for met, _ in verdicts)
    detail = "; ".join(("met: " if met else "not met: ") + text for met, text in verdicts)
    return succeeded, f"{'succeeded' if succeeded else 'did not succeed'} ({detail})"


def _show(criteria: Any) -> str:
    try:
        return canonical_json(criteria)
    except (TypeError, ValueError):
        return repr(criteria)


def _days(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() / 86_400


def _timestamp(value: Any) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


def finished_experiments(warehouse: Warehouse) -> pd.DataFrame:
    """Completed, failed and rolled-back experiments with their start and finish: the columns the
    executor stamps, else the first transition to running and the one into the final state."""
    marks = ", ".join(["%s"] * len(FINISHED_STATES))
    with warehouse.connect() as conn:
        return query_frame(
            conn,
            "SELECT e.experiment_id, e.state, e.success_criteria, "
            "coalesce(e.started_at, (SELECT min(t.transitioned_at) FROM experiments.transitions t "
            "  WHERE t.experiment_id = e.experiment_id AND t.to_state = %s)) AS started_at, "
            "coalesce(e.finished_at, (SELECT max(t.transitioned_at) FROM experiments.transitions t "
            "  WHERE t.experiment_id = e.experiment_id AND t.to_state = e.state)) AS finished_at "
            f"FROM experiments.experiments e WHERE e.state IN ({marks}) ORDER BY e.experiment_id",
            [RUNNING, *FINISHED_STATES],
        )


def outcome_of(
    warehouse: Warehouse, row: dict[str, Any], evaluated_at: datetime, rates: RateTable | None = None
) -> dict[str, Any]:
    """The experiments.outcomes row of one finished experiment (a row of finished_experiments)."""
    experiment_id, state, criteria_text = row["experiment_id"], row["state"], row["success_criteria"]
    started, finished = _timestamp(row["started_at"]), _timestamp(row["finished_at"])
    duration = _days(started, finished)
    try:
        criteria = json.loads(criteria_text)
        window = longest_window_days(criteria)
    except (ValueError, CriteriaError) as error:
        raise CriteriaError(f"experiment {experiment_id}: {error}") from None
    if state == COMPLETED:
        until = started + timedelta(days=window) if started is not None else finished
        totals = experiment_totals(warehouse, experiment_id, until=until, rates=rates)
        measured = min(duration, window) if duration is not None else window
        succeeded, reason = evaluate(criteria, totals, measured)
    else:
        totals = experiment_totals(warehouse, experiment_id, rates=rates)
        succeeded = False
        reason = (
            f"{state}: it did not complete, so it is not judged against its criteria "
            f"(revenue {totals.revenue_minor}, cost {totals.cost_minor} {totals.currency} minor units, "
            "reversals included)"
        )
    return {
        "experiment_id": experiment_id,
        "state": state,
        "evaluated_at": evaluated_at,
        "succeeded": succeeded,
        "revenue_minor": totals.revenue_minor,
        "cost_minor": totals.cost_minor,
        "net_minor": totals.net_minor,
        "roi": totals.roi,
        "duration_days": duration,
        "currency": totals.currency,
        "criteria": criteria_text,
        "reason": reason,
    }


def record_outcomes(warehouse: Warehouse, *, clock: Clock = utc_now) -> pd.DataFrame:
    """Upsert one experiments.outcomes row per completed, failed or rolled_back experiment and return
    them. An experiment whose criteria or money cannot be read is left out and named in the
    OutcomeError raised after the others are written."""
    at = clock()
    rates = None
    finished = finished_experiments(warehouse)
    if not finished.empty:
        has_foreign = warehouse.scalar(
            "SELECT count(*) FROM ledger.postings WHERE experiment_id IS NOT NULL AND currency <> %s",
            [REPORTING_CURRENCY],
        )
        rates = RateTable.from_warehouse(warehouse) if has_foreign else None  # read once, not per experiment
    rows, problems = [], []
    for row in finished.to_dict("records"):
        try:
            rows.append(outcome_of(warehouse, row, at, rates))
        except (CriteriaError, FxError) as error:  # one bad experiment never hides the others' outcomes
            problems.append(str(error))
    columns = ", ".join(OUTCOME_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in OUTCOME_COLUMNS[1:])
    with warehouse.connect() as conn:
        for row in rows:
            run_sql(
                conn,
                f"INSERT INTO experiments.outcomes ({columns}) VALUES ({', '.join(['%s'] * len(OUTCOME_COLUMNS))}) "
                f"ON CONFLICT (experiment_id) DO UPDATE SET {updates}",
                [row[c] for c in OUTCOME_COLUMNS],
            )
    recorded = pd.DataFrame(rows, columns=OUTCOME_COLUMNS)
    if problems:
        raise OutcomeError(
            f"{len(problems)} finished experiment(s) have no outcome ({len(rows)} recorded): " + "; ".join(problems),
            recorded,
        )
    return recorded


def read_outcomes(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.query(f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM experiments.outcomes ORDER BY experiment_id")


def missing_outcomes(warehouse: Warehouse) -> pd.DataFrame:
    """Finished experiments without an outcome row for their current state (never recorded, or
    recorded before a failed experiment was rolled back)."""
    marks = ", ".join(["%s"] * len(FINISHED_STATES))
    return warehouse.query(
        "SELECT e.experiment_id, e.state, o.state AS outcome_state FROM experiments.experiments e "
        "LEFT JOIN experiments.outcomes o ON o.experiment_id = e.experiment_id "
        f"WHERE e.state IN ({marks}) AND (o.experiment_id IS NULL OR o.state <> e.state) ORDER BY e.experiment_id",
        list(FINISHED_STATES),
    )
