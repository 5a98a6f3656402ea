"""Stripe balance transactions in the API's object shape, and Stripe's fee, for code that makes
them rather than fetching them: the market simulator (core.simulator.market) builds every payment
of the demo and the tests with these, so they book through the same path as real ones
(core.ledger.imports.import_objects).
"""

from datetime import datetime
from typing import Any


def stripe_fee(amount_minor: int) -> int:
    """2.9% + 30 minor units, rounded half up (integer arithmetic: no floats)."""
    return (amount_minor * 29 + 500) // 1000 + 30


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
