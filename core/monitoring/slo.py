"""Service level objectives: what fraction of events (or of time) must be good over a window, how
much of the allowed badness (the error budget) is left, and how fast it is being spent.

Framework-free: the asset (assets/monitoring/slo.py) collects the events from the Dagster instance
and the warehouse and hands them here. The seed's SLOs, fitted to a data platform:

- run_success_rate: Dagster runs that ended in the window, succeeded / ended;
- data_freshness:<asset>: the fraction of the window each key asset was fresh (its latest
  materialization younger than its maximum age), a time-based SLI;
- experiment_failure_rate: experiment executor runs that ended, not failed / ended;
- revenue_per_day: complete UTC days in the window whose revenue reached the threshold.

Burn rate (Google SRE workbook): the error rate in a short window divided by the error rate the
objective allows, 1 - objective. A burn rate of 1 spends the budget exactly over the SLO's window;
the status is `burning` when both the 1-hour and the 6-hour burn rates reach the SLO's threshold
(the short window says it is still happening, the long one that it is not a blip), `breached` when
the window's attainment is below the objective, `no_data` when the window holds no event.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

OK, BURNING, BREACHED, NO_DATA = "ok", "burning", "breached", "no_data"
STATUSES = (OK, BURNING, BREACHED, NO_DATA)
BURN_WINDOWS = (timedelta(hours=1), timedelta(hours=6))
# Spending 5% of a 30-day budget in 6 hours is a 6x burn: the workbook's threshold for a page on
# the 6-hour window. A 7-day SLO spends 21% of its budget at that rate in 6 hours.
DEFAULT_BURN_THRESHOLD = 6.0


class SloError(ValueError):
    pass


@dataclass(frozen=True)
class Slo:
    name: str
    objective: float  # the fraction of good events (or time) required, 0 < objective < 1
    window: timedelta
    description: str
    burn_threshold: float = DEFAULT_BURN_THRESHOLD

    def __post_init__(self) -> None:
        if not 0 < self.objective < 1:
            raise SloError(f"SLO {self.name}: objective {self.objective} must be between 0 and 1 (e.g. 0.95)")
        if self.window <= timedelta(0):
            raise SloError(f"SLO {self.name}: window {self.window} must be positive")
        if self.burn_threshold <= 0:
            raise SloError(f"SLO {self.name}: burn threshold {self.burn_threshold} must be positive")

    @property
    def window_text(self) -> str:
        return describe_window(self.window)


@dataclass(frozen=True)
class Event:
    """One thing the SLI counts: a run that ended, a day that closed; `weight` is how much of it
    counts (1 for an event, seconds for a time-based SLI)."""

    at: datetime
    good: bool
    weight: float = 1.0


@dataclass(frozen=True)
class Evaluation:
    slo: Slo
    evaluated_at: datetime
    good: float
    total: float
    attainment: float | None
    error_budget_remaining: float | None
    burn_rate_1h: float | None
    burn_rate_6h: float | None
    status: str
    detail: str

    def row(self) -> dict:
        """The monitoring.slo_report row."""
        return {
            "evaluated_at": self.evaluated_at,
            "slo": self.slo.name,
            "objective": self.slo.objective,
            "slo_window": self.slo.window_text,
            "good": self.good,
            "total": self.total,
            "attainment": self.attainment,
            "error_budget_remaining": self.error_budget_remaining,
            "burn_rate_1h": self.burn_rate_1h,
            "burn_rate_6h": self.burn_rate_6h,
            "status": self.status,
            "detail": self.detail,
        }


def describe_window(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def burn_rate(good: float, total: float, objective: float) -> float | None:
    """(bad / total) / (1 - objective); None without events."""
    if total <= 0:
        return None
    return ((total - good) / total) / (1 - objective)


def error_budget_remaining(good: float, total: float, objective: float) -> float | None:
    """The fraction of the window's error budget not yet spent: 1 with no bad event, 0 when the bad
    events are exactly what the objective allows, negative beyond it. None without events."""
    if total <= 0:
        return None
    allowed = (1 - objective) * total
    return 1 - (total - good) / allowed


def tally(events: Iterable[Event], start: datetime, end: datetime) -> tuple[float, float]:
    """(good, total) weight of the events with start < at <= end."""
    good = total = 0.0
    for event in events:
        if start < event.at <= end:
            total += event.weight
            good += event.weight if event.good else 0.0
    return good, total


def evaluate(slo: Slo, events: Sequence[Event], now: datetime, *, unit: str = "events", note: str = "") -> Evaluation:
    """The SLO over its window ending at `now`, with the 1-hour and 6-hour burn rates."""
    _aware(now)
    good, total = tally(events, now - slo.window, now)
    burns = [burn_rate(*tally(events, now - window, now), slo.objective) for window in BURN_WINDOWS]
    attainment = good / total if total > 0 else None
    budget = error_budget_remaining(good, total, slo.objective)
    status = status_of(slo, attainment, burns[0], burns[1])
    if attainment is None:
        detail = f"no {unit} in the last {slo.window_text}"
    else:
        detail = (
            f"{_number(good)} of {_number(total)} {unit} good in the last {slo.window_text} "
            f"({attainment:.2%}, objective {slo.objective:.2%}); error budget left {budget:.0%}; burn rate "
            f"{_rate(burns[0])} over 1h, {_rate(burns[1])} over 6h (threshold {slo.burn_threshold:g})"
        )
    return Evaluation(
        slo=slo,
        evaluated_at=now,
        good=good,
        total=total,
        attainment=attainment,
        error_budget_remaining=budget,
        burn_rate_1h=burns[0],
        burn_rate_6h=burns[1],
        status=status,
        detail=detail + (f"; {note}" if note else ""),
    )


def status_of(slo: Slo, attainment: float | None, burn_1h: float | None, burn_6h: float | None) -> str:
    if attainment is None:
        return NO_DATA
    if attainment < slo.objective:
        return BREACHED
    if burn_1h is not None and burn_6h is not None and min(burn_1h, burn_6h) >= slo.burn_threshold:
        return BURNING
    return OK


# -- the SLIs -------------------------------------------------------------------------------------


def run_events(ended: Iterable[tuple[datetime, bool]]) -> list[Event]:
    """(end time, succeeded) of each run that ended: one event each."""
    return [Event(at=_aware(at), good=bool(ok)) for at, ok in ended]


def freshness_events(updates: Iterable[datetime], max_age: timedelta, start: datetime, end: datetime) -> list[Event]:
    """The interval (start, end] cut into fresh and stale stretches, one event per stretch weighted
    by its seconds and stamped with its end (so tally() over a sub-window counts the stretches that
    end in it; evaluate() calls this with the SLO's window, and the burn windows' stretches are cut
    at their starts by `cut_points`). An asset is fresh at time t when it was updated within
    max_age before t. Time before its first update is not counted: an asset that never existed was
    not stale."""
    _aware(start), _aware(end)
    times = sorted(_aware(t) for t in updates if t <= end)
    events: list[Event] = []
    if not times:
        return events
    cuts = sorted({start, end, *[end - w for w in BURN_WINDOWS if end - w > start]})
    # Boundaries where freshness may change: each update (fresh from then) and each update + max_age.
    changes = sorted({t for t in times if start < t < end} | {t + max_age for t in times if start < t + max_age < end})
    points = sorted(set(cuts) | set(changes))
    for left, right in itertools.pairwise(points):
        if right <= start or left >= end:
            continue
        middle = left + (right - left) / 2
        latest = _latest_at_or_before(times, middle)
        if latest is None:
            continue
        events.append(Event(at=right, good=middle - latest <= max_age, weight=(right - left).total_seconds()))
    return events


def revenue_days(
    revenue_by_day: dict[date, int], threshold_minor: int, window: timedelta, now: datetime
) -> list[Event]:
    """One event per complete UTC day in the window (a day counts once it has closed, stamped with
    its end): good when its revenue reached threshold_minor. A day with no revenue row earned 0."""
    _aware(now)
    today = now.astimezone(UTC).date()
    days = max(1, int(window.total_seconds() // 86400))
    events = []
    for back in range(1, days + 1):
        day = today - timedelta(days=back)
        closed = datetime.combine(day + timedelta(days=1), time(), UTC)
        events.append(Event(at=closed, good=int(revenue_by_day.get(day, 0)) >= threshold_minor))
    return events


def _latest_at_or_before(times: Sequence[datetime], at: datetime) -> datetime | None:
    found = None
    for t in times:
        if t <= at:
            found = t
        else:
            break
    return found


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise SloError(f"{value!r} has no timezone: SLO times are timezone-aware UTC")
    return value


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# -- what the warehouse knows -----------------------------------------------------------------------

# Revenue is what the revenue accounts were credited (a refund, booked as a reversal, debits them
# back), per UTC day of occurrence, in each posting's own currency.
REVENUE_BY_DAY = """
SELECT cast(occurred_at at time zone 'UTC' as date) AS day, currency, -sum(amount_minor) AS revenue_minor
FROM ledger.postings
WHERE account_id LIKE 'revenue:%%' AND occurred_at >= %s AND occurred_at < %s
GROUP BY 1, 2
"""


def revenue_by_day(warehouse, start: datetime, end: datetime, currency: str) -> tuple[dict[date, int], list[str]]:
    """Revenue per UTC day in `currency` minor units (other currencies converted at the ECB rate of
    the day), and what could not be counted (a currency without a rate) for the detail."""
    import pandas as pd

    from core.ledger.fx import RateTable, daily_totals

    frame = warehouse.query(REVENUE_BY_DAY, [start, end])
    # The ledger's own rates only: revenue the ledger cannot convert is named, not guessed.
    foreign = (frame["currency"] != currency).any() and warehouse.table_exists("ledger.fx_rates")
    rates = RateTable.from_warehouse(warehouse) if foreign else RateTable({})
    rows = ((pd.Timestamp(r.day).date(), r.currency, r.revenue_minor) for r in frame.itertuples())
    totals, left_out = daily_totals(rows, currency, rates)
    return totals, [f"{other} on {day} not counted ({reason})" for day, other, _amount, reason in left_out]


def experiment_run_events(warehouse, since: datetime) -> list[Event]:
    """Experiment executor runs (experiments.runs, wall clock) that ended after `since`: good unless
    the run failed (the experiment failed or was rolled back, or the run raised)."""
    if not warehouse.table_exists("experiments.runs"):
        return []
    frame = warehouse.query(
        "SELECT status, finished_at FROM experiments.runs WHERE finished_at > %s AND status IN ('finished', 'failed')",
        [since],
    )
    return [Event(at=_timestamp(r.finished_at), good=r.status != "failed") for r in frame.itertuples()]


def _timestamp(value) -> datetime:
    import pandas as pd

    stamp = pd.Timestamp(value)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()
