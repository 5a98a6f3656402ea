"""The market simulator on its own: determinism, the ground truth driving outcomes, the shape and
arithmetic of the Stripe objects it makes, seasonality, fraud-like bursts, costs and the clock."""

import random
import re
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from core.ledger.simulated_payments import stripe_fee
from core.ledger.validation import prepare
from core.simulator.ground_truth import ORACLE_COLUMNS, oracle, source_quality, truth, truths
from core.simulator.market import (
    MARKETS,
    Experiment,
    SimulatedClock,
    experiment_oracle,
    local_price,
    simulate,
    simulate_experiment_day,
)

START = date(2026, 11, 2)  # a Monday
SEED = 11


def features(count: int, *, seed: int = 0, source: str | None = None) -> pd.DataFrame:
    """Opportunity features with the columns and value ranges of core.opportunity_features."""
    rng = random.Random(seed)
    sources = ("hackernews", "reddit", "github_trending", "producthunt", "freelance")
    types = ("saas", "api", "freelance_gig", "affiliate", "content", "marketplace", "open_source_tool", "other")
    return pd.DataFrame(
        [
            {
                "opportunity_id": f"opp-{n:04d}",
                "source": source or rng.choice(sources),
                "opportunity_type": rng.choice(types),
                "est_monthly_revenue_cents": rng.choice([0, 50_000, 500_000, 2_000_000, 10_000_000]),
                "confidence": round(rng.random(), 4),
                "capability_match": round(rng.random(), 4),
                "age_days": round(rng.uniform(0, 90), 4),
            }
            for n in range(count)
        ]
    )


def experiments(frame: pd.DataFrame, start: date = START) -> list[Experiment]:
    markets = sorted(MARKETS)
    return [
        Experiment(f"exp-{n:04d}", opportunity_id, start, markets[n % len(markets)])
        for n, opportunity_id in enumerate(frame["opportunity_id"])
    ]


def run(frame: pd.DataFrame, days: int = 28, seed: int = SEED, start: date = START):
    return list(simulate(seed, experiments(frame, start), truths(seed, frame), start, days))


# -- ground truth ------------------------------------------------------------------------------------


def test_ground_truth_is_deterministic_per_seed_and_opportunity():
    frame = features(50)
    table = oracle(SEED, frame)
    assert list(table.columns) == list(ORACLE_COLUMNS) and len(table) == 50
    pd.testing.assert_frame_equal(table, oracle(SEED, frame))
    assert not table.equals(oracle(SEED + 1, frame))
    # One opportunity's truth depends on its own features only, not on which others are in the frame.
    alone = oracle(SEED, frame.iloc[[7]]).reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, table.iloc[[7]].reset_index(drop=True))
    assert source_quality(SEED, "reddit") == source_quality(SEED, "reddit")
    assert 0.5 <= source_quality(SEED, "reddit") <= 1.5


def test_ground_truth_values_are_in_range_and_amounts_are_ints():
    table = oracle(SEED, features(300))
    assert table["success_probability"].between(0, 1, inclusive="neither").all()
    for column in ("monthly_revenue_median_cents", "price_cents"):
        assert all(type(value) is int for value in table[column].tolist())
    assert table["price_cents"].between(9_00, 89_00).all()
    assert table["price_cents"].max() < 10 * table["price_cents"].min()  # the amount-outlier rule's margin
    assert table["monthly_revenue_median_cents"].between(1_000_00, 30_000_00).all()
    assert (table.loc[table.opportunity_type.isin(["saas", "api", "content"]), "monthly_churn"] > 0).all()


def test_features_move_the_success_probability_as_documented():
    base = {"opportunity_id": "opp-x", "source": "hackernews", "opportunity_type": "saas"}
    low = truth(SEED, {**base, "confidence": 0.1, "capability_match": 0.1})
    high = truth(SEED, {**base, "confidence": 0.9, "capability_match": 0.9})
    assert high.success_probability > low.success_probability + 0.3
    stale = truth(SEED, {**base, "confidence": 0.9, "capability_match": 0.9, "age_days": 60})
    assert stale.success_probability < high.success_probability
    claimed = truth(SEED, {**base, "est_monthly_revenue_cents": 10_000_000})
    assert claimed.monthly_revenue_median_cents > truth(SEED, base).monthly_revenue_median_cents


def test_a_higher_true_success_probability_gives_more_successful_experiments():
    # One source (one quality) and one claimed revenue: only the success probability differs.
    frame = features(400, seed=5, source="hackernews").assign(est_monthly_revenue_cents=2_000_000)
    table = oracle(SEED, frame).set_index("opportunity_id")
    revenue, cost = defaultdict(int), defaultdict(int)
    for day in run(frame):
        for obj in day.objects:
            if obj["type"] == "charge" and obj["id"] not in day.fraud_ids:
                revenue[obj["metadata"]["experiment_id"]] += obj["amount"]
        for event in day.costs:
            cost[event.experiment_id] += event.amount_minor
    # Success as a user measures it: the experiment's sales paid for its ad spend (same currency).
    succeeded = pd.Series(
        {e.opportunity_id: revenue[e.experiment_id] >= cost[e.experiment_id] for e in experiments(frame)}
    )
    probability = table.loc[succeeded.index, "success_probability"]
    high = succeeded[probability >= probability.median()].mean()
    low = succeeded[probability < probability.median()].mean()
    # 200 experiments a half: were outcomes blind to the truth, high - low would be 0 +- 0.04.
    assert high > low + 0.08 and high > 2 * low, (high, low)
    assert probability[succeeded].mean() > probability[~succeeded].mean() + 0.1
    # And about as often as the truth says: the mean true probability within a few points.
    assert abs(succeeded.mean() - probability.mean()) < 0.08, (succeeded.mean(), probability.mean())


# -- the market --------------------------------------------------------------------------------------


def test_a_day_is_deterministic_with_stable_ids():
    frame = features(10)
    first, again = run(frame), run(frame)
    assert [d.objects for d in first] == [d.objects for d in again]
    assert [d.costs for d in first] == [d.costs for d in again]
    other = run(frame, seed=SEED + 1)
    assert [d.objects for d in first] != [d.objects for d in other]
    ids = [obj["id"] for day in first for obj in day.objects]
    assert len(ids) == len(set(ids))
    # A day simulated alone is the same as that day within a run (nothing depends on call order).
    experiment, table = experiments(frame)[3], truths(SEED, frame)
    day = START + timedelta(days=20)
    alone = simulate_experiment_day(SEED, experiment, table[experiment.opportunity_id], day).objects
    within = [obj for obj in first[20].objects if obj["metadata"].get("experiment_id") == experiment.experiment_id]
    assert [obj["id"] for obj in alone if obj["type"] != "payout"] == [obj["id"] for obj in within]


def test_objects_have_the_stripe_shape_int_amounts_and_stripe_fees():
    days = run(features(30))
    objects = [obj for day in days for obj in day.objects]
    assert {"charge", "refund", "payout"} <= {obj["type"] for obj in objects}
    for obj in objects:
        assert obj["object"] == "balance_transaction" and obj["id"].startswith("txn_sim")
        for name in ("amount", "fee", "net", "created", "available_on"):
            assert type(obj[name]) is int, (name, obj)
        assert obj["net"] == obj["amount"] - obj["fee"]
        assert sum(detail["amount"] for detail in obj["fee_details"]) == obj["fee"]
        if obj["type"] == "charge":
            assert obj["amount"] > 0 and obj["fee"] == stripe_fee(obj["amount"])
            assert obj["metadata"]["experiment_id"].startswith("exp-")
        else:
            assert obj["amount"] < 0 and obj["fee"] == 0
    assert all(type(cost.amount_minor) is int and cost.amount_minor > 0 for day in days for cost in day.costs)


def test_refunds_follow_their_charge_and_never_exceed_it():
    objects = [obj for day in run(features(60)) for obj in day.objects]
    charges = {obj["source"]: obj for obj in objects if obj["type"] == "charge"}
    refunds = [obj for obj in objects if obj["type"] == "refund"]
    assert len(refunds) > 20
    refunded = defaultdict(int)
    for refund in refunds:
        charge = charges[refund["metadata"]["charge"]]
        assert refund["created"] > charge["created"] and refund["currency"] == charge["currency"]
        assert refund["metadata"]["experiment_id"] == charge["metadata"]["experiment_id"]
        refunded[charge["id"]] += -refund["amount"]
    assert all(0 < amount <= charges_amount for amount, charges_amount in _pairs(refunded, charges))
    assert any(refund["created"] - charges[refund["metadata"]["charge"]]["created"] > 86_400 for refund in refunds)


def _pairs(refunded: dict[str, int], charges: dict[str, dict]):
    by_txn = {charge["id"]: charge["amount"] for charge in charges.values()}
    return [(amount, by_txn[txn]) for txn, amount in refunded.items()]


def test_the_market_decides_the_currency():
    frame = features(8)
    currencies = defaultdict(set)
    for day in run(frame, days=7):
        for obj in day.objects:
            if obj["type"] == "charge":
                currencies[obj["metadata"]["experiment_id"]].add(obj["currency"])
        for cost in day.costs:
            assert (
                cost.currency == next(e for e in experiments(frame) if e.experiment_id == cost.experiment_id).currency
            )
    assert all(len(found) == 1 for found in currencies.values())
    assert set().union(*currencies.values()) <= {"usd", "eur", "gbp", "jpy"}
    assert local_price(29_00, "us") == 29_00 and local_price(29_00, "eu") == 27_00
    assert local_price(29_00, "jp") == 4_350 and local_price(29_00, "uk") == 23_00
    with pytest.raises(ValueError, match="unknown market 'mars'"):
        simulate_experiment_day(
            SEED, Experiment("exp-1", "opp-0000", START, "mars"), truth(SEED, {"opportunity_id": "o"}), START
        )


def test_weekly_seasonality_is_visible_in_daily_totals():
    # Experiments that certainly succeed, in one currency, for six weeks: weekdays outsell weekends.
    frame = features(60, seed=2)
    table = {k: replace(v, success_probability=1.0, fraud_burst_rate=0.0) for k, v in truths(SEED, frame).items()}
    us = [replace(e, market="us") for e in experiments(frame)]
    by_weekday = defaultdict(int)
    for day in simulate(SEED, us, table, START, 42):
        if day.day < START + timedelta(days=7):
            continue  # the first week ramps up
        by_weekday[day.day.weekday()] += sum(o["amount"] for o in day.objects if o["type"] == "charge")
    weekdays = sum(by_weekday[d] for d in range(4)) / 4
    assert by_weekday[5] < 0.75 * weekdays and by_weekday[6] < 0.9 * weekdays, dict(by_weekday)
    assert by_weekday[1] > by_weekday[4] > by_weekday[5], dict(by_weekday)


def test_fraud_like_bursts_are_rare_flagged_and_tight():
    days = run(features(40))
    bursts = [day for day in days if day.fraud_ids]
    assert 1 <= len(bursts) <= 0.05 * 40 * 28
    for day in bursts:
        charges = [obj for obj in day.objects if obj["id"] in day.fraud_ids]
        assert len(charges) == len(day.fraud_ids) >= 24
        assert all(obj["type"] == "charge" for obj in charges)
        by_experiment = defaultdict(list)
        for obj in charges:
            by_experiment[obj["metadata"]["experiment_id"]].append(obj)
        for group in by_experiment.values():
            assert max(o["created"] for o in group) - min(o["created"] for o in group) < 6 * 60
            assert len({o["metadata"]["customer_id"] for o in group}) <= 2


def test_the_experiment_oracle_matches_what_happened():
    frame = features(40)
    days = run(frame)
    table = experiment_oracle(SEED, experiments(frame), truths(SEED, frame), START, 28).set_index("experiment_id")
    assert len(table) == 40 and table["succeeded"].dtype == bool
    fraud, burst_days = defaultdict(int), set()
    for day in days:
        for obj in day.objects:
            if obj["id"] in day.fraud_ids:
                fraud[obj["metadata"]["experiment_id"]] += 1
                burst_days.add((obj["metadata"]["experiment_id"], day.day))
    assert table["fraud_charges"].to_dict() == {e: fraud.get(e, 0) for e in table.index}
    assert table["burst_days"].sum() == len(burst_days) > 0
    revenue = defaultdict(int)
    for day in days:
        for obj in day.objects:
            if obj["type"] == "charge" and obj["id"] not in day.fraud_ids:
                revenue[obj["metadata"]["experiment_id"]] += obj["amount"]
    # Within a market (one currency), the successful experiments outsell the failed ones by far.
    for market, group in table.groupby("market"):
        won, lost = group[group.succeeded].index, group[~group.succeeded].index
        if len(won) and len(lost):
            median_won = pd.Series([revenue[e] for e in won]).median()
            assert median_won > 5 * pd.Series([revenue[e] for e in lost]).median(), market


def test_nothing_happens_before_an_experiment_starts():
    frame = features(3)
    late = [replace(e, start=START + timedelta(days=5)) for e in experiments(frame)]
    days = list(simulate(SEED, late, truths(SEED, frame), START, 5))
    assert all(not day.objects and not day.costs for day in days)


def test_costs_become_budget_spends():
    day = run(features(2), days=1)[0]
    cost = day.costs[0]
    assert cost.key == f"sim:{SEED}:{cost.experiment_id}:{START.isoformat()}:ads"
    prepared = prepare(cost.request())
    assert prepared.request.kind == "spend" and prepared.request.experiment_id == cost.experiment_id
    accounts = {p.account: p.amount_minor for p in prepared.request.postings}
    assert accounts == {
        f"expenses:ads:experiment:{cost.experiment_id}": cost.amount_minor,
        f"liabilities:card:{cost.currency.lower()}": -cost.amount_minor,
    }


def test_the_simulated_clock_never_reads_the_wall_clock():
    clock = SimulatedClock(START)
    assert clock() == clock.now() == datetime(2026, 11, 2, 23, 59, 59, tzinfo=UTC)
    assert list(clock.days(3)) == [START, START + timedelta(days=1), START + timedelta(days=2)]
    assert clock.today() == START + timedelta(days=2)
    assert clock.advance(5) == START + timedelta(days=7)


def test_the_documented_example_runs():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text(encoding="utf-8")
    example = re.findall(r"```python\n(.*?)```", doc, re.S)[0]  # the second: test_simulated_market_clock.py
    scope: dict = {}
    exec(compile(example, "docs/simulator.md", "exec"), scope)  # our own documentation, kept runnable
    assert len(scope["days"]) == 28 and len(scope["truth_table"]) == 2
    assert scope["clock"].today() == date(2026, 11, 29)


def test_the_truth_reads_real_scored_opportunities():
    # The columns and dtypes the discovery pipeline writes (core.scored_opportunities), not a mock-up.
    from core.discovery.features import CapabilityProfile, ScoringAssumptions, build_features
    from core.discovery.scoring import Weights, score

    as_of = datetime(2026, 11, 25, 12, tzinfo=UTC)
    titles = [
        "ShipLog is now at $4.2k MRR",
        "PromptVault, a team prompt library with an API, $19/month",
        "Hiring a Python developer, budget: $500",
        "An open-source CLI tool for logs",
    ]
    opportunities = pd.DataFrame(
        [
            {
                "opportunity_id": f"o{n}",
                "fingerprint": f"f{n}",
                "source": "hackernews" if n % 2 else "reddit",
                "family": "hacker_news",
                "url": "https://a.io",
                "cluster_id": f"c{n}",
                "title": title,
                "body": "",
                "points": 10 * n,
                "comments": n,
                "created_at": as_of - timedelta(days=n),
            }
            for n, title in enumerate(titles)
        ]
    )
    scored = score(build_features(opportunities, as_of, CapabilityProfile.load(), ScoringAssumptions.load()), Weights())
    table = oracle(SEED, scored).set_index("opportunity_id")
    assert sorted(table.index) == ["o0", "o1", "o2", "o3"]
    assert table.loc["o2", "opportunity_type"] == "freelance_gig"
    assert table["success_probability"].between(0, 1, inclusive="neither").all()
    assert table.loc["o0", "monthly_revenue_median_cents"] > table.loc["o3", "monthly_revenue_median_cents"]
