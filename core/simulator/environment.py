"""The simulated market as an Environment (core.experiments.environment): experiments run against it
in simulated time, and what the market does on the way enters the ledger as real outcomes would.

Per experiment (a row of experiments.experiments):
- truth: core.simulator.ground_truth.truth(seed, features of its opportunity), read from
  core.opportunity_features, else core.scored_opportunities; an opportunity in neither (a test, a
  pruned table) gets ground_truth.DEFAULTS with the experiment's category as its type;
- market: us, eu, uk or jp, a hash of the experiment id (so the demo settles in several currencies);
- clock: its own simulated time, from `start` on its first run, from its latest checkpoint after.
`wait_until` moves that clock to the moment asked, day by day, booking each part of a day it passes:
the day's Stripe balance transactions through core.ledger.imports.import_objects (fraud rules and
holds as for real payments) and its ad cost through core.ledger.budgets.spend, both with the
simulated time as now. An ad cost is booked only while the experiment's ad spend so far plus it
(in the experiment's currency, at the ledger's FX, rounded up) stays within its allocated budget
less what its playbook's spend steps spend, so the executor's cost limit holds. A cost a budget
refuses is quarantined (stage import, reason "refused by the budgets: ...", the spend as payload:
core.ledger.imports.spends) and the day goes on; `ventureloop quarantine replay` books it once allowed.

Nothing is booked twice: every id and key is a hash of (seed, experiment, day), and where an
experiment's booking stands is remembered per experiment (in memory, and at first from the ledger:
the day of its latest booked event), so a day is neither re-simulated nor re-booked.
"""

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.ledger import fx
from core.ledger.budgets import SpendWindow, spend
from core.ledger.fraud import FraudRules
from core.ledger.imports import import_objects, spends
from core.ledger.imports.booking import STAGE
from core.ledger.tax import TaxCalculator
from core.platform.quarantine import Problem, quarantine
from core.platform.warehouse import Warehouse
from core.simulator import ground_truth, market
from core.simulator.ground_truth import Truth

if TYPE_CHECKING:
    import httpx

NAME = "simulator"
COST_SOURCE = "simulator"  # the source of the market's spends (CostEvent.request)
FEATURE_TABLES = ("core.opportunity_features", "core.scored_opportunities")
# Conversions accept a rate at most fx.MAX_RATE_AGE_DAYS old, and an experiment runs up to 30 days
# (proposals.WINDOW_DAYS): a start this far before the last rate keeps every simulated day convertible.
START_BEFORE_LAST_RATE_DAYS = 37
BOOK_DAYS = 7
LAUNCH_SPREAD_HOURS = 72
_DAY = timedelta(days=1)
_LAST_SECOND = timedelta(days=1, seconds=-1)


@lru_cache(maxsize=1)
def last_bundled_rate_date() -> date:
    return max(pd.Timestamp(d).date() for d in fx.bundled_rates()["rate_date"])


def default_start(today: date | datetime) -> datetime:
    """Where simulated time starts by default: 37 days before today or the bundled ECB rates' last
    date, whichever is earlier, at midnight UTC. Anchored on the wall clock alone, the simulated days
    would outrun the bundled rates within a week and no conversion would accept them."""
    day = today.astimezone(UTC).date() if isinstance(today, datetime) else today
    anchor = min(day, last_bundled_rate_date()) - timedelta(days=START_BEFORE_LAST_RATE_DAYS)
    return datetime.combine(anchor, time(0), tzinfo=UTC)


class SimulatedTime:
    """One experiment's simulated clock (a core.ledger.audit.Clock): it moves only when the
    SimulatedMarket advances it in wait_until."""

    def __init__(self, experiment_id: str, at: datetime):
        self.experiment_id = experiment_id
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def __repr__(self) -> str:
        return f"SimulatedTime({self.experiment_id!r}, {self.at.isoformat()})"


@dataclass
class _State:
    experiment: market.Experiment
    truth: Truth
    currency: str  # of the allocation: what the ad cap is counted in
    ad_cap_minor: int
    ad_spent_minor: int
    booked_keys: set[str]  # ad costs already booked
    booked_until: datetime  # every event before it is booked


def market_of(experiment_id: str) -> str:
    """The experiment's market: a stable hash of its id over market.MARKETS."""
    names = sorted(market.MARKETS)
    return names[int(hashlib.sha256(experiment_id.encode()).hexdigest(), 16) % len(names)]


def ad_time(experiment_id: str, day: date) -> datetime:
    """When an experiment's ad cost of `day` is charged: an hour and minute hashed from both, so the
    costs of several experiments spread over the day instead of all landing in one hourly budget."""
    digest = int(hashlib.sha256(f"{experiment_id}:{day.isoformat()}:ads".encode()).hexdigest(), 16)
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(minutes=digest % (23 * 60))


def playbook_spend_minor(experiment: Mapping[str, Any]) -> int:
    """What the experiment's playbook spend steps spend at most, in minor units (of the playbook's
    currency, which proposals make the experiment's)."""
    steps = experiment.get("playbook") or []
    if isinstance(steps, str):
        steps = json.loads(steps)
    return sum(int(step["params"]["amount_minor"]) for step in steps if step.get("type") == "spend")


def _minor(value: Any) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0
    return int(value)


class SimulatedMarket:
    """core.experiments.environment.Environment on the seeded market (see the module docstring).

    `webhook_failures`: the webhook answers 500 to the first that many calls of each
    Idempotency-Key (per market object), then 200. `rules`, `tax`, `spend_window`: as the imports
    take them (defaults: the default fraud rules, no tax, SpendWindow())."""

    name = NAME

    def __init__(
        self,
        warehouse: Warehouse,
        seed: int,
        start: datetime,
        *,
        webhook_failures: int = 0,
        rules: FraudRules | None = None,
        tax: TaxCalculator | None = None,
        spend_window: SpendWindow | None = None,
        run_id: str | None = None,
        launch_spread_hours: int = LAUNCH_SPREAD_HOURS,
    ):
        if start.tzinfo is None:
            raise ValueError(f"SimulatedMarket start {start!r} needs a timezone (UTC): time is UTC-aware")
        if webhook_failures < 0:
            raise ValueError(f"webhook_failures must be >= 0, got {webhook_failures}")
        self.warehouse = warehouse
        self.seed = seed
        self.start = start.astimezone(UTC)
        self.webhook_failures = webhook_failures
        self.rules = rules
        self.tax = tax
        self.spend_window = spend_window
        self.run_id = run_id
        self.launch_spread_hours = launch_spread_hours
        self._states: dict[str, _State] = {}
        self._webhook_calls: dict[str, int] = {}
        self._rates: fx.RateTable | None = None

    # -- the Environment protocol -----------------------------------------------------------------

    def clock_for(self, experiment: Mapping[str, Any], resume_at: datetime | None) -> SimulatedTime:
        self._state(experiment)
        experiment_id = str(experiment["experiment_id"])
        return SimulatedTime(experiment_id, (resume_at or self.launch_at(experiment_id)).astimezone(UTC))

    def launch_at(self, experiment_id: str) -> datetime:
        """When an experiment's first run starts in simulated time: `start` plus a minute within
        launch_spread_hours (default LAUNCH_SPREAD_HOURS) hashed from its id. Experiments approved
        together launch over a few days, as a team would launch them, rather than all in one hour of
        the hourly budgets; 0 starts every one at `start`."""
        if self.launch_spread_hours <= 0:
            return self.start
        digest = int(hashlib.sha256(f"{experiment_id}:launch".encode()).hexdigest(), 16)
        return self.start + timedelta(minutes=digest % (self.launch_spread_hours * 60))

    def wait_until(self, experiment: Mapping[str, Any], clock: Any, at: datetime) -> bool:
        if not isinstance(clock, SimulatedTime):
            raise TypeError(
                f"SimulatedMarket.wait_until needs the clock its clock_for made, got {clock!r}: "
                f"simulated time moves only on the market's own clocks"
            )
        at = at.astimezone(UTC)
        state = self._state(experiment)
        while state.booked_until < at:
            # Up to BOOK_DAYS days of payments in one import (an import costs a few writes whatever
            # its size); each day's ad cost is spent as that day ends.
            cursor, objects, days = state.booked_until, [], []
            while cursor < at and len(days) < BOOK_DAYS:
                day = cursor.date()
                midnight = datetime.combine(day, time(0), tzinfo=UTC)
                until = min(midnight + _DAY, at)
                clock.at = max(clock.at, min(midnight + _LAST_SECOND, until))
                simulated = market.simulate_experiment_day(self.seed, state.experiment, state.truth, day)
                low, high = cursor.timestamp(), until.timestamp()
                objects += [obj for obj in simulated.objects if low <= obj["created"] < high]
                self._spend(state, simulated.costs, day, cursor, until, clock)
                days.append(day)
                cursor = until
            if objects:
                import_objects(
                    self.warehouse,
                    objects,
                    origin=f"simulator:{self.seed}:{state.experiment.experiment_id}:{days[0]}..{days[-1]}",
                    run_id=self.run_id,
                    tax=self.tax,
                    rules=self.rules,
                    now=clock(),
                )
            state.booked_until = cursor  # only once booked: a failed import is retried from here
        clock.at = max(clock.at, at)
        return True

    def http_client(self) -> "httpx.Client":
        import httpx

        def answer(request: httpx.Request) -> httpx.Response:
            key = request.headers.get("Idempotency-Key", "")
            calls = self._webhook_calls[key] = self._webhook_calls.get(key, 0) + 1
            if calls <= self.webhook_failures:
                return httpx.Response(
                    500, json={"error": f"simulated outage ({calls} of {self.webhook_failures})", "key": key}
                )
            return httpx.Response(
                200, json={"ok": True, "method": request.method, "url": str(request.url), "key": key, "calls": calls}
            )

        return httpx.Client(transport=httpx.MockTransport(answer), timeout=5.0)

    # -- the ground truth ---------------------------------------------------------------------------

    def oracle(self) -> pd.DataFrame:
        """The hidden draws of every experiment this market ran (market.EXPERIMENT_ORACLE_COLUMNS over
        the days booked so far) joined with their opportunity's truth (ground_truth.ORACLE_COLUMNS).
        For evaluation only."""
        frames = []
        for state in sorted(self._states.values(), key=lambda s: s.experiment.experiment_id):
            days = max((state.booked_until.date() - state.experiment.start).days, 0)
            truths = {state.truth.opportunity_id: state.truth}
            frames.append(market.experiment_oracle(self.seed, [state.experiment], truths, state.experiment.start, days))
        experiments = (
            pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=market.EXPERIMENT_ORACLE_COLUMNS)
        )
        truth = pd.DataFrame(
            [vars(s.truth) for s in self._states.values()], columns=list(ground_truth.ORACLE_COLUMNS)
        ).drop_duplicates("opportunity_id")
        return experiments.merge(truth, on="opportunity_id", how="left")

    def warehouse_oracle(self) -> pd.DataFrame:
        """oracle() of every experiment that has run on this warehouse's simulated market, not only
        of those this object ran (each run of experiment_run makes its own market): each is read
        back from experiments.experiments and the ledger. The simulated history
        (core/simulator/history.py) is left out. `ventureloop simulator oracle` prints it."""
        from core.simulator.history import PREFIX as HISTORY_PREFIX

        # Not the simulated history's: the fast population realized those, not this market.
        started = self.warehouse.query(
            "SELECT * FROM experiments.experiments WHERE started_at IS NOT NULL AND opportunity_id NOT LIKE %s "
            "ORDER BY experiment_id",
            [f"{HISTORY_PREFIX}-%"],
        )
        for row in started.to_dict("records"):
            self._state(row)
        return self.oracle()

    # -- internals ----------------------------------------------------------------------------------

    def _state(self, experiment: Mapping[str, Any]) -> _State:
        experiment_id = str(experiment["experiment_id"])
        if experiment_id in self._states:
            return self._states[experiment_id]
        opportunity_id = str(experiment["opportunity_id"])
        started = experiment.get("started_at")
        if started is None or pd.isna(started):
            started = self.launch_at(experiment_id)
        else:
            started = pd.Timestamp(started).to_pydatetime()
        simulated = market.Experiment(
            experiment_id, opportunity_id, started.astimezone(UTC).date(), market_of(experiment_id)
        )
        truth = ground_truth.truth(self.seed, self._features(opportunity_id, experiment.get("category")))
        allocated = _minor(experiment.get("allocated_budget_minor"))
        reserved = min(playbook_spend_minor(experiment), allocated)
        currency = str(experiment.get("currency") or "USD")
        spent, keys, last = self._booked(experiment_id, currency)
        begin = datetime.combine(simulated.start, time(0), tzinfo=UTC)
        state = _State(
            experiment=simulated,
            truth=truth,
            currency=currency,
            ad_cap_minor=allocated - reserved,
            ad_spent_minor=spent,
            booked_keys=keys,
            # The day of the latest booked event may be booked in part: it is looked at again.
            booked_until=max(begin, datetime.combine(last.date(), time(0), tzinfo=UTC)) if last else begin,
        )
        self._states[experiment_id] = state
        return state

    def _features(self, opportunity_id: str, category: Any) -> dict[str, Any]:
        for table in FEATURE_TABLES:
            if self.warehouse.table_exists(table):
                found = self.warehouse.read(table, "WHERE opportunity_id = %s", [opportunity_id])
                if len(found):
                    return {k: v for k, v in found.iloc[0].to_dict().items() if not _missing(v)}
        return {
            "opportunity_id": opportunity_id,
            "opportunity_type": category or ground_truth.DEFAULTS["opportunity_type"],
        }

    def _booked(self, experiment_id: str, currency: str) -> tuple[int, set[str], datetime | None]:
        """(ad spend booked so far in the experiment's currency, their keys, latest booked event)."""
        costs = self.warehouse.query(
            "SELECT t.idempotency_key, t.occurred_at, p.currency, p.amount_minor FROM ledger.transactions t "
            "JOIN ledger.postings p ON p.transaction_id = t.transaction_id "
            "WHERE t.source = %s AND t.experiment_id = %s AND p.account_id = %s AND p.amount_minor > 0",
            [COST_SOURCE, experiment_id, f"expenses:ads:experiment:{experiment_id}"],
        )
        last = self.warehouse.scalar(
            "SELECT max(occurred_at) FROM ledger.transactions WHERE experiment_id = %s AND source IN (%s, %s)",
            [experiment_id, COST_SOURCE, "stripe"],
        )
        spent = sum(
            self._converted_up(int(row.amount_minor), row.currency, currency, row.occurred_at)
            for row in costs.itertuples(index=False)
        )
        keys = set(costs["idempotency_key"])
        return spent, keys, None if last is None else pd.Timestamp(last).to_pydatetime().astimezone(UTC)

    def _converted_up(self, amount: int, currency: str, target: str, at: Any) -> int:
        """`amount` in `target` at the ledger's FX on its day, one minor unit up when converted (so a
        sum of them is never below what experiment P&L converts)."""
        if currency == target:
            return amount
        return self._table().convert(amount, currency, target, pd.Timestamp(at).to_pydatetime()) + 1

    def _table(self) -> fx.RateTable:
        if self._rates is None:
            stored = self.warehouse.table_exists("ledger.fx_rates") and self.warehouse.count("ledger.fx_rates")
            self._rates = fx.RateTable.from_warehouse(self.warehouse) if stored else fx.bundled_table()
        return self._rates

    def _spend(
        self, state: _State, costs: list[market.CostEvent], day: date, since: datetime, until: datetime, clock: Any
    ) -> None:
        """The day's ad cost, if it falls in [since, until) and fits what the allocation leaves."""
        experiment_id = state.experiment.experiment_id
        for cost in costs:
            cost = replace(cost, occurred_at=ad_time(experiment_id, day))
            if not since <= cost.occurred_at < until or cost.key in state.booked_keys:
                continue
            counted = self._converted_up(cost.amount_minor, cost.currency, state.currency, cost.occurred_at)
            if state.ad_spent_minor + counted > state.ad_cap_minor:
                continue  # the allocation left for ads has no room for this day's campaign
            request = cost.request()
            result = spend(self.warehouse, request, tax=self.tax, clock=clock, spend_window=self.spend_window)
            if result.ok:
                state.booked_keys.add(cost.key)
                state.ad_spent_minor += counted
                continue
            problem = Problem(
                STAGE,
                f"simulator:{self.seed}:{experiment_id}:{day.isoformat()}#{cost.category}",
                spends.REFUSED.format(reason=result.reason),
                spends.to_payload(request),
            )
            quarantine(self.warehouse, COST_SOURCE, [problem], self.run_id)


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array: present
        return False
