"""The simulator's days through the real import path on both backends: 28 days of 10 experiments
book cleanly and verify, booking them again books nothing, the default fraud rules hold the
card-testing bursts, and the costs book through the budgets."""

import time
from datetime import date

import pandas as pd

from core.ledger.budgets import spend
from core.ledger.fraud import default_rules
from core.ledger.imports import import_objects
from core.ledger.verify import verify
from core.platform.warehouse import Warehouse
from core.simulator.ground_truth import truths
from core.simulator.market import MARKETS, Experiment, SimulatedClock, simulate

START = date(2026, 11, 2)
SEED = 11
TYPES = ("saas", "api", "freelance_gig", "content", "marketplace")


def opportunities(count: int) -> pd.DataFrame:
    """Rows shaped like core.opportunity_features, varied enough that some experiments succeed."""
    return pd.DataFrame(
        [
            {
                "opportunity_id": f"opp-{n}",
                "source": ("hackernews", "reddit", "github_trending")[n % 3],
                "opportunity_type": TYPES[n % len(TYPES)],
                "est_monthly_revenue_cents": (0, 500_000, 2_000_000)[n % 3],
                "confidence": (n % 5) / 4,
                "capability_match": ((3 * n) % 5) / 4,
                "age_days": float(n),
            }
            for n in range(count)
        ]
    )


def experiments(frame: pd.DataFrame) -> list[Experiment]:
    markets = sorted(MARKETS)
    return [
        Experiment(f"exp-{n}", opportunity, START, markets[n % len(markets)])
        for n, opportunity in enumerate(frame["opportunity_id"])
    ]


def test_28_simulated_days_of_10_experiments_book_verify_and_rebook_nothing(warehouse: Warehouse):
    # Held open: 280 spends and 56 imports connect about 1,500 times, and reopening a DuckDB file
    # each time cost most of this test (Warehouse.held).
    with warehouse.held():
        frame = opportunities(10)
        began = time.perf_counter()
        days = list(simulate(SEED, experiments(frame), truths(SEED, frame), START, 28))
        print(f"simulated 28 days x 10 experiments in {time.perf_counter() - began:.3f} s")
        assert {obj["currency"] for day in days for obj in day.objects} == {"usd", "eur", "gbp", "jpy"}
        fraud = {f"stripe:{txn}": txn for day in days for txn in day.fraud_ids}
        assert fraud, "the seed should produce at least one card-testing burst"

        clock = SimulatedClock(START)
        held, booked, spends = set(), 0, []
        for day in clock.days(28):
            simulated = days[clock.elapsed_days]
            assert simulated.day == day
            report = import_objects(warehouse, simulated.objects, origin=f"simulator:{day}", now=clock.now())
            assert report.quarantined == 0, report.messages("quarantined")
            booked += report.booked
            held |= {row.key for row in report.rows if row.status == "held"}
            spends += [spend(warehouse, cost.request(), clock=clock) for cost in simulated.costs]
        assert booked + len(held) == sum(len(day.objects) for day in days)
        assert all(result.status == "booked" for result in spends) and len(spends) == 280
        assert verify(warehouse).ok

        # Every burst charge beyond what the per-card velocity limit lets through waits for review;
        # ordinary sales are (almost) never held.
        cards: dict[str, set[str]] = {}
        for day in days:
            for obj in day.objects:
                if obj["id"] in day.fraud_ids:
                    cards.setdefault(obj["metadata"]["customer_id"], set()).add(f"stripe:{obj['id']}")
        allowed = default_rules().velocity.max_per_customer
        for keys in cards.values():
            assert len(keys - held) <= allowed, (len(keys), len(keys & held))
        legit_held = held - set(fraud)
        legit = sum(1 for day in days for obj in day.objects if obj["id"] not in day.fraud_ids)
        assert len(legit_held) <= 0.01 * legit, sorted(legit_held)

        # The same days again: the same ids, so nothing new is booked or held.
        again = [import_objects(warehouse, day.objects, origin="again", now=clock.now()) for day in days]
        assert sum(r.booked for r in again) == 0 and sum(r.held for r in again) == 0
        assert sum(r.quarantined for r in again) == 0
        assert all(spend(warehouse, c.request(), clock=clock).status == "duplicate" for d in days for c in d.costs)
        assert verify(warehouse).ok
