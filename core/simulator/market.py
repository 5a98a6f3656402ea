"""Experiments run on the simulated market: each simulated day of an experiment becomes that day's
Stripe balance transactions (the API's object shape, as core.ledger.simulated_payments makes them,
so they book through core.ledger.imports.import_objects) and its costs (CostEvent: the caller books
them with core.ledger.budgets.spend, which enforces the budgets).

Per experiment and day (docs/simulator.md has the numbers):
- new customers ~ Poisson(rate x WEEKDAY x ramp); rate from the hidden truth: a successful
  experiment earns its monthly revenue draw / price / 30 customers a day, a failed one 3% of it;
- charges at the truth's price in the market's currency, with stripe_fee; recurring products renew
  30 days after each purchase unless the customer churned;
- refunds of earlier charges (up to 6 days later, full or half, never more than the charge);
- rare card-testing bursts: many charges within minutes from one or two cards (`fraud_ids`);
- one payout of half the day's net; the day's ad spend as a CostEvent.

Deterministic for (seed, experiment, day): every id is a hash of them, so a day simulated twice
gives the same objects with the same ids and booking it again books nothing new. Simulated time is
a SimulatedClock: nothing here reads the wall clock or sleeps, so 28 days take well under seconds.
"""

import hashlib
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from typing import Any

import pandas as pd

from core.ledger.budgets import expense
from core.ledger.money import exponent
from core.ledger.simulated_payments import balance_transaction, stripe_fee
from core.ledger.validation import TransactionRequest
from core.simulator.ground_truth import Truth

# market -> (settlement currency, minor units per USD cent, customer countries)
MARKETS: dict[str, tuple[str, Fraction, tuple[str, ...]]] = {
    "us": ("USD", Fraction(1), ("US", "CA")),
    "eu": ("EUR", Fraction(92, 100), ("DE", "FR", "NL", "ES")),
    "uk": ("GBP", Fraction(79, 100), ("GB", "IE")),
    "jp": ("JPY", Fraction(150, 100), ("JP",)),
}
# Monday first: B2B buyers buy on weekdays, least on Saturday.
WEEKDAY = (1.15, 1.2, 1.15, 1.1, 0.95, 0.65, 0.8)
FAILED_SHARE = 0.03  # a failed experiment still sells to a few stray customers
RAMP_DAYS = 7  # demand grows linearly to full over the first week
MAX_DAILY_CUSTOMERS = 80
REFUND_WINDOW_DAYS = 7
RENEWAL_DAYS = 30
BURST_CHARGES = (24, 40)
BURST_MINUTES = 6
AD_SPEND_CENTS = (8_00, 25_00)  # per day, USD cents, drawn per experiment


@dataclass(frozen=True)
class Experiment:
    experiment_id: str  # an account segment: it names revenue:experiment:<id> and expense accounts
    opportunity_id: str
    start: date
    market: str = "us"

    @property
    def currency(self) -> str:
        return MARKETS[self.market][0]


@dataclass(frozen=True)
class CostEvent:
    """A cost as a cost source reports it; `request` makes the spend core.ledger.budgets.spend books."""

    key: str  # idempotency key, stable for (seed, experiment, day, category)
    experiment_id: str
    category: str  # the second segment of the expense account: expenses:<category>:experiment:<id>
    amount_minor: int
    currency: str
    occurred_at: datetime
    description: str

    def request(self, paid_from: str | None = None) -> TransactionRequest:
        return expense(
            self.key,
            f"expenses:{self.category}:experiment:{self.experiment_id}",
            self.amount_minor,
            self.currency,
            self.occurred_at,
            paid_from=paid_from or f"liabilities:card:{self.currency.lower()}",
            description=self.description,
            experiment_id=self.experiment_id,
            source="simulator",
        )


@dataclass(frozen=True)
class SimulatedDay:
    day: date
    objects: list[dict[str, Any]]  # Stripe balance transactions, oldest first
    costs: list[CostEvent]
    fraud_ids: frozenset[str] = field(default_factory=frozenset)  # ids of the card-testing charges


@dataclass
class SimulatedClock:
    """Simulated time: `now()` is the end of the current simulated day, after all of its events, so a
    ledger call given it (import_objects(now=...), spend(clock=...)) sees that day as past."""

    start: date
    elapsed_days: int = 0

    def today(self) -> date:
        return self.start + timedelta(days=self.elapsed_days)

    def now(self) -> datetime:
        today = self.today()
        return datetime(today.year, today.month, today.day, 23, 59, 59, tzinfo=UTC)

    __call__ = now

    def advance(self, days: int = 1) -> date:
        self.elapsed_days += days
        return self.today()

    def days(self, count: int) -> Iterator[date]:
        """Each of the next `count` days, the clock standing on it while the caller handles it."""
        for index in range(count):
            if index:
                self.advance()
            yield self.today()


@dataclass(frozen=True)
class _Sale:
    txn_id: str
    charge_id: str
    customer: str
    country: str
    amount: int
    created: datetime
    refund_lag_days: int | None  # None: never refunded
    refund_amount: int


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _sim_id(prefix: str, *parts: object) -> str:
    return f"{prefix}_sim{_digest(*parts)[:24]}"


def _rng(*parts: object) -> random.Random:
    return random.Random(_digest("ventureloop-market", *parts))


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: exact and fine for the small rates here (lam <= MAX_DAILY_CUSTOMERS).
    limit, count, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def local_price(price_cents: int, market: str) -> int:
    """The truth's USD price in the market's currency, rounded to a whole unit (10 for zero-decimal)."""
    currency, rate, _countries = MARKETS[market]
    step = 10 ** exponent(currency) if exponent(currency) else 10
    return max(round(price_cents * rate / step), 1) * step


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    monthly_revenue_cents: int
    ad_spend_cents: int


@lru_cache(maxsize=4096)
def outcome(seed: int, experiment: Experiment, truth: Truth) -> Outcome:
    """Whether the experiment succeeds and what it earns a month then: one draw per experiment."""
    rng = _rng(seed, experiment.experiment_id, "outcome")
    succeeded = rng.random() < truth.success_probability
    revenue = rng.lognormvariate(math.log(truth.monthly_revenue_median_cents), truth.revenue_sigma)
    return Outcome(succeeded, round(revenue), rng.randrange(*AD_SPEND_CENTS))


@lru_cache(maxsize=65536)
def _sales(seed: int, experiment: Experiment, truth: Truth, day: date) -> tuple[_Sale, ...]:
    """The day's new and renewed charges; cached because refunds and renewals look back at them."""
    running = (day - experiment.start).days
    if running < 0:
        return ()
    result = outcome(seed, experiment, truth)
    rng = _rng(seed, experiment.experiment_id, day.isoformat(), "sales")
    price = local_price(truth.price_cents, experiment.market)
    countries = MARKETS[experiment.market][2]
    rate = result.monthly_revenue_cents / truth.price_cents / 30
    rate *= (1.0 if result.succeeded else FAILED_SHARE) * min(1.0, (running + 1) / RAMP_DAYS)
    rate = min(rate * WEEKDAY[day.weekday()], MAX_DAILY_CUSTOMERS)
    buyers: list[tuple[str, str]] = [
        (_sim_id("cus", seed, experiment.experiment_id, day, "new", n), rng.choice(countries))
        for n in range(_poisson(rng, rate))
    ]
    if truth.monthly_churn:
        for sale in _sales(seed, experiment, truth, day - timedelta(days=RENEWAL_DAYS)):
            if _rng(seed, sale.txn_id, "renews").random() >= truth.monthly_churn:
                buyers.append((sale.customer, sale.country))
    start = _day_start(day)
    sales = []
    for n, (customer, country) in enumerate(buyers):
        refunded = rng.random() < truth.refund_rate
        sales.append(
            _Sale(
                txn_id=_sim_id("txn", seed, experiment.experiment_id, day, "charge", n),
                charge_id=_sim_id("ch", seed, experiment.experiment_id, day, "charge", n),
                customer=customer,
                country=country,
                amount=price,
                created=start + timedelta(seconds=rng.randrange(6 * 3600, 22 * 3600)),
                refund_lag_days=rng.randrange(REFUND_WINDOW_DAYS) if refunded else None,
                # A partial refund gives half back (rounded down): never more than the charge.
                refund_amount=price if rng.random() < 0.8 else price // 2,
            )
        )
    return tuple(sales)


def _stripe_object(txn_id: str, *, kind: str, **fields: Any) -> dict[str, Any]:
    # The simulator's reporting category is its type (charge, refund, payout), as in Stripe's API.
    return balance_transaction(txn_id, kind=kind, category=kind, **fields)


def _charge(
    experiment: Experiment, txn_id: str, charge_id: str, customer: str, country: str, amount: int, at: datetime
) -> dict[str, Any]:
    return _stripe_object(
        txn_id,
        kind="charge",
        amount=amount,
        fee=stripe_fee(amount),
        currency=experiment.currency,
        created=at,
        source=charge_id,
        description=f"{experiment.experiment_id} purchase",
        metadata={"experiment_id": experiment.experiment_id, "customer_country": country, "customer_id": customer},
    )


def _burst(seed: int, experiment: Experiment, truth: Truth, day: date) -> list[dict[str, Any]]:
    """A card-testing burst, or nothing: rare (truth.fraud_burst_rate a day), at most one a day."""
    rng = _rng(seed, experiment.experiment_id, day.isoformat(), "burst")
    if (day - experiment.start).days < 0 or rng.random() >= truth.fraud_burst_rate:
        return []
    price = local_price(truth.price_cents, experiment.market)
    cards = [_sim_id("cus", seed, experiment.experiment_id, day, "burst", n) for n in range(rng.randint(1, 2))]
    country = rng.choice(MARKETS[experiment.market][2])
    begin = _day_start(day) + timedelta(seconds=rng.randrange(1 * 3600, 23 * 3600 - BURST_MINUTES * 60))
    charges = []
    for n in range(rng.randint(*BURST_CHARGES)):
        at = begin + timedelta(seconds=rng.randrange(BURST_MINUTES * 60))
        txn = _sim_id("txn", seed, experiment.experiment_id, day, "burst", n)
        charge = _sim_id("ch", seed, experiment.experiment_id, day, "burst", n)
        charges.append(_charge(experiment, txn, charge, cards[n % len(cards)], country, price, at))
    return charges


def simulate_experiment_day(seed: int, experiment: Experiment, truth: Truth, day: date) -> SimulatedDay:
    """One simulated UTC day of one experiment; the same arguments always give the same objects."""
    if experiment.market not in MARKETS:
        raise ValueError(
            f"experiment {experiment.experiment_id}: unknown market {experiment.market!r}; "
            f"use one of {', '.join(MARKETS)}"
        )
    if (day - experiment.start).days < 0:
        return SimulatedDay(day, [], [])
    currency = experiment.currency
    objects = [
        _charge(experiment, s.txn_id, s.charge_id, s.customer, s.country, s.amount, s.created)
        for s in _sales(seed, experiment, truth, day)
    ]
    for lag in range(REFUND_WINDOW_DAYS):
        for sale in _sales(seed, experiment, truth, day - timedelta(days=lag)):
            if sale.refund_lag_days != lag:
                continue
            rng = _rng(seed, sale.txn_id, "refund")
            if lag == 0:
                at = sale.created + timedelta(minutes=rng.randrange(5, 90))
                at = min(at, _day_start(day) + timedelta(hours=23))
            else:
                at = _day_start(day) + timedelta(seconds=rng.randrange(6 * 3600, 22 * 3600))
            objects.append(
                _stripe_object(
                    _sim_id("txn", sale.txn_id, "refund"),
                    kind="refund",
                    amount=-sale.refund_amount,
                    fee=0,
                    currency=currency,
                    created=at,
                    source=_sim_id("re", sale.txn_id, "refund"),
                    description=f"REFUND FOR CHARGE ({experiment.experiment_id})",
                    metadata={
                        "experiment_id": experiment.experiment_id,
                        "customer_country": sale.country,
                        "customer_id": sale.customer,
                        "charge": sale.charge_id,
                    },
                )
            )
    burst = _burst(seed, experiment, truth, day)
    net = sum(obj["net"] for obj in objects)
    objects += burst
    if net > 0:
        # Stripe pays out funds that became available: about half of the day's net.
        objects.append(
            _stripe_object(
                _sim_id("txn", seed, experiment.experiment_id, day, "payout"),
                kind="payout",
                amount=-(net // 2),
                fee=0,
                currency=currency,
                created=_day_start(day) + timedelta(hours=23, minutes=30),
                source=_sim_id("po", seed, experiment.experiment_id, day, "payout"),
                description="STRIPE PAYOUT",
                metadata={},
            )
        )
    objects.sort(key=lambda obj: (obj["created"], obj["id"]))
    result = outcome(seed, experiment, truth)
    noise = _rng(seed, experiment.experiment_id, day.isoformat(), "ads").uniform(0.8, 1.2)
    ads = local_price(max(round(result.ad_spend_cents * noise), 1), experiment.market)
    cost = CostEvent(
        key=f"sim:{seed}:{experiment.experiment_id}:{day.isoformat()}:ads",
        experiment_id=experiment.experiment_id,
        category="ads",
        amount_minor=ads,
        currency=currency,
        occurred_at=_day_start(day) + timedelta(hours=23),
        description=f"ad spend of {experiment.experiment_id} on {day.isoformat()}",
    )
    return SimulatedDay(day, objects, [cost], frozenset(obj["id"] for obj in burst))


EXPERIMENT_ORACLE_COLUMNS = (
    "experiment_id",
    "opportunity_id",
    "market",
    "currency",
    "succeeded",
    "monthly_revenue_cents",
    "daily_ad_spend_cents",
    "burst_days",
    "fraud_charges",
)


def experiment_oracle(
    seed: int, experiments: Iterable[Experiment], truths: Mapping[str, Truth], start: date, days: int
) -> pd.DataFrame:
    """Each experiment's hidden draws over `days` from `start` (EXPERIMENT_ORACLE_COLUMNS): whether
    it succeeded, its monthly revenue draw (USD cents), its mean daily ad spend (USD cents) and how
    many card-testing bursts and charges it received. For evaluation, like ground_truth.oracle."""
    rows = []
    for experiment in sorted(experiments, key=lambda e: e.experiment_id):
        truth = truths[experiment.opportunity_id]
        result = outcome(seed, experiment, truth)
        bursts = [len(_burst(seed, experiment, truth, start + timedelta(days=n))) for n in range(days)]
        rows.append(
            {
                "experiment_id": experiment.experiment_id,
                "opportunity_id": experiment.opportunity_id,
                "market": experiment.market,
                "currency": experiment.currency,
                "succeeded": result.succeeded,
                "monthly_revenue_cents": result.monthly_revenue_cents,
                "daily_ad_spend_cents": result.ad_spend_cents,
                "burst_days": sum(1 for count in bursts if count),
                "fraud_charges": sum(bursts),
            }
        )
    return pd.DataFrame(rows, columns=list(EXPERIMENT_ORACLE_COLUMNS))


def simulate(
    seed: int, experiments: Iterable[Experiment], truths: Mapping[str, Truth], start: date, days: int
) -> Iterator[SimulatedDay]:
    """`days` simulated days from `start`, every experiment's events of a day in one SimulatedDay."""
    experiments = sorted(experiments, key=lambda e: e.experiment_id)
    for offset in range(days):
        day = start + timedelta(days=offset)
        parts = [simulate_experiment_day(seed, e, truths[e.opportunity_id], day) for e in experiments]
        objects = sorted((obj for part in parts for obj in part.objects), key=lambda o: (o["created"], o["id"]))
        yield SimulatedDay(
            day,
            objects,
            [cost for part in parts for cost in part.costs],
            frozenset().union(*(part.fraud_ids for part in parts)),
        )
