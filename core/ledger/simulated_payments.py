"""A seeded stand-in for Stripe until the market simulator arrives: one day of balance transactions
in the API's object shape, deterministic for (seed, day), so the demo books them through the same
path as real ones (core.ledger.imports.import_objects).

Per day: charges for a handful of experiments (each settles in one currency: most in USD, one in
EUR, one in GBP), Stripe's fees (2.9% + 30 minor units, rounded half up), a few refunds of earlier
charges of the same day, and one payout per currency of part of the day's net. Amounts stay within
a few x of each other and no experiment sees a burst, so the default fraud rules hold nothing.
"""

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

# experiment id -> (settlement currency, price points in minor units, customer countries)
DEFAULT_EXPERIMENTS: dict[str, tuple[str, tuple[int, ...], tuple[str, ...]]] = {
    "exp-newsletter": ("USD", (900, 1500, 2900), ("US", "CA", "GB")),
    "exp-api-credits": ("USD", (1900, 4900, 9900), ("US", "DE", "FR")),
    "exp-templates": ("USD", (1200, 2900), ("US", "AU", "IN")),
    "exp-eu-course": ("EUR", (4900, 7900, 9900), ("DE", "FR", "NL", "ES")),
    "exp-uk-audit": ("GBP", (2500, 4500), ("GB", "IE")),
}


def stripe_fee(amount_minor: int) -> int:
    """2.9% + 30 minor units, rounded half up (integer arithmetic: no floats)."""
    return (amount_minor * 29 + 500) // 1000 + 30


def _id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}_sim{rng.getrandbits(64):016x}"


def balance_transaction(
    txn_id: str,
    *,
    kind: str,
    category: str,
    amount: int,
    fee: int,
    currency: str,
    created: datetime,
    source: str,
    description: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """One balance transaction in the Stripe API's object shape (also what core.simulator emits)."""
    epoch = int(created.timestamp())
    available = epoch + 2 * 86_400
    return {
        "id": txn_id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": available,
        "created": epoch,
        "currency": currency.lower(),
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency.lower(),
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        ),
        "net": amount - fee,
        "reporting_category": category,
        "source": source,
        "status": "pending",
        "type": kind,
        "metadata": metadata,
    }


def simulate_balance_transactions(
    seed: int,
    day: date,
    *,
    charges_per_experiment: tuple[int, int] = (3, 12),
    refund_rate: float = 0.06,
    experiments: dict[str, tuple[str, tuple[int, ...], tuple[str, ...]]] | None = None,
) -> list[dict[str, Any]]:
    """One UTC day of Stripe balance transactions, oldest first; the same (seed, day) gives the same list."""
    rng = random.Random(f"ventureloop-payments:{seed}:{day.isoformat()}")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    net_by_currency: dict[str, int] = {}
    for experiment, (currency, prices, countries) in sorted((experiments or DEFAULT_EXPERIMENTS).items()):
        for _ in range(rng.randint(*charges_per_experiment)):
            amount = rng.choice(prices)
            created = start + timedelta(seconds=rng.randrange(6 * 3600, 22 * 3600))
            customer = f"cus_sim{rng.getrandbits(40):010x}"
            metadata = {"experiment_id": experiment, "customer_country": rng.choice(countries), "customer_id": customer}
            fee = stripe_fee(amount)
            charge = balance_transaction(
                _id(rng, "txn"),
                kind="charge",
                category="charge",
                amount=amount,
                fee=fee,
                currency=currency,
                created=created,
                source=_id(rng, "ch"),
                description=f"{experiment} purchase",
                metadata=metadata,
            )
            out.append(charge)
            net_by_currency[currency] = net_by_currency.get(currency, 0) + charge["net"]
            if rng.random() < refund_rate:
                refunded = created + timedelta(minutes=rng.randrange(5, 90))
                refund = balance_transaction(
                    _id(rng, "txn"),
                    kind="refund",
                    category="refund",
                    amount=-amount,
                    fee=0,
                    currency=currency,
                    created=min(refunded, start + timedelta(hours=23)),
                    source=_id(rng, "re"),
                    description=f"REFUND FOR CHARGE ({experiment})",
                    metadata=metadata,
                )
                out.append(refund)
                net_by_currency[currency] -= amount
    payout_at = start + timedelta(hours=23, minutes=30)
    for currency, net in sorted(net_by_currency.items()):
        if net > 0:
            # Pay out about half of the day's net: Stripe pays out funds that became available.
            out.append(
                balance_transaction(
                    _id(rng, "txn"),
                    kind="payout",
                    category="payout",
                    amount=-(net // 2),
                    fee=0,
                    currency=currency,
                    created=payout_at,
                    source=_id(rng, "po"),
                    description="STRIPE PAYOUT",
                    metadata={},
                )
            )
    out.sort(key=lambda obj: (obj["created"], obj["id"]))
    return out
