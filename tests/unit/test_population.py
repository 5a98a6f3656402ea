"""The fast simulated population: deterministic, shaped as ml.features takes it, and drawn from the
same hidden truth and per-experiment draw as the day-by-day market."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from core.experiments.proposals import requested_budget_minor
from core.simulator import ground_truth, market
from core.simulator.population import (
    OUTCOME_COLUMNS,
    PROPOSAL_COLUMNS,
    bayes_success_probability,
    expected_net_minor,
    population,
    realize,
    truths,
)

START = datetime(2026, 9, 1, tzinfo=UTC)


def test_a_population_is_deterministic_time_ordered_and_shaped_for_the_features() -> None:
    first = population(3, 400, START, days=14)
    assert list(first.columns) == PROPOSAL_COLUMNS
    pd.testing.assert_frame_equal(first, population(3, 400, START, days=14))
    assert not first.equals(population(4, 400, START, days=14))
    assert first["proposed_at"].is_monotonic_increasing
    assert first["proposed_at"].min() >= START and first["proposed_at"].max() < pd.Timestamp(START) + pd.Timedelta(
        days=14
    )
    assert str(first["proposed_at"].dt.tz) == "UTC"
    assert first["experiment_id"].is_unique
    assert first["requested_budget_minor"].tolist() == [
        requested_budget_minor(v) for v in first["est_monthly_revenue_cents"]
    ]
    assert set(first["opportunity_type"]) <= set(ground_truth.TYPE_EFFECT)


def test_sources_limit_where_proposals_come_from() -> None:
    frame = population(3, 200, START, sources=["freelancer"])
    assert set(frame["source"]) == {"freelancer"}
    assert (frame["opportunity_type"].isin(["freelance_gig", "other"])).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1, "start": START}, "n must be 0 or more"),
        ({"n": 5, "start": datetime(2026, 9, 1)}, "timezone-aware"),
        ({"n": 5, "start": START, "sources": []}, "sources is empty"),
    ],
)
def test_bad_arguments_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        population(1, **kwargs)


def test_outcomes_use_the_markets_own_draw_and_the_success_criteria() -> None:
    proposals = population(5, 300, START)
    outcomes = realize(5, proposals)
    assert list(outcomes.columns) == OUTCOME_COLUMNS
    table = truths(5, proposals)
    for row, truth in zip(proposals.head(20).itertuples(), table.head(20).itertuples(), strict=True):
        draw = market.outcome(
            5,
            market.Experiment(row.experiment_id, row.opportunity_id, row.proposed_at.date()),
            ground_truth.Truth(**{c: getattr(truth, c) for c in ground_truth.ORACLE_COLUMNS}),
        )
        got = outcomes.set_index("experiment_id").loc[row.experiment_id]
        # A market success earns its monthly draw; a failure 3% of it.
        assert (got["revenue_minor"] > 0.1 * draw.monthly_revenue_cents) == draw.succeeded
    assert (outcomes["net_minor"] == outcomes["revenue_minor"] - outcomes["cost_minor"]).all()
    met = (outcomes["revenue_minor"] >= 2 * proposals["requested_budget_minor"]) | (outcomes["roi"] >= 0.5)
    assert (outcomes["succeeded"] == met).all()
    assert (outcomes["finished_at"] == proposals["proposed_at"] + pd.Timedelta(days=30)).all()


def test_a_smaller_allocation_caps_the_spend_not_the_fees() -> None:
    proposals = population(5, 100, START)
    full = realize(5, proposals)
    small = realize(5, proposals, pd.Series(1_000, index=proposals["experiment_id"]))
    assert (small["cost_minor"] <= full["cost_minor"]).all()
    assert (small["revenue_minor"] == full["revenue_minor"]).all()
    with pytest.raises(ValueError, match="no amount for experiments"):
        realize(5, proposals, pd.Series(1_000, index=proposals["experiment_id"].head(3)))


def test_the_bayes_optimal_probability_knows_more_than_the_features() -> None:
    proposals = population(9, 3000, START)
    outcomes = realize(9, proposals)
    bayes = bayes_success_probability(9, proposals, draws=200)
    assert bayes.between(0, 1).all()
    # Calibrated: the mean of the probability is the observed success rate, within sampling error.
    assert abs(bayes.mean() - outcomes["succeeded"].mean()) < 0.03
    hit = bayes[outcomes["succeeded"].to_numpy()].mean()
    miss = bayes[~outcomes["succeeded"].to_numpy()].mean()
    assert hit > miss + 0.1
    expected = expected_net_minor(9, proposals, draws=200)
    top = expected.sort_values(ascending=False).index[:300]
    assert outcomes.loc[top, "net_minor"].mean() > outcomes["net_minor"].mean()
    assert np.isfinite(expected).all()
