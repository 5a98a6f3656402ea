"""Proposals without a warehouse: sizing in integer minor units, the policy's rule, the top leads,
and the opportunities that cannot become an experiment."""

import math

import pandas as pd
import pytest

from core.experiments.playbook import validate_playbook
from core.experiments.proposals import (
    ApprovalPolicy,
    ProposalError,
    content_hash,
    proposal_from,
    requested_budget_minor,
    top_leads,
)

OPPORTUNITY = {
    "opportunity_id": "opp-1",
    "score": 0.73,
    "opportunity_type": "api",
    "title": "Currency API",
    "est_monthly_revenue_cents": 123_456,
}


@pytest.mark.parametrize(
    ("revenue", "budget"), [(0, 5_000), (49_999, 5_000), (123_456, 12_345), (2_000_000, 200_000), (10**9, 200_000)]
)
def test_the_budget_is_a_tenth_of_monthly_revenue_within_its_bounds(revenue, budget):
    assert requested_budget_minor(revenue) == budget and isinstance(requested_budget_minor(revenue), int)


def test_a_proposal_carries_its_plan_as_data():
    proposal = proposal_from(OPPORTUNITY)
    assert proposal["category"] == "api" and proposal["currency"] == "USD"
    assert proposal["requested_budget_minor"] == 12_345
    assert proposal["success_criteria"] == {
        "any_of": [
            {"metric": "revenue_minor", "at_least": 24_690, "currency": "USD", "within_days": 30},
            {"metric": "roi", "at_least": 0.5, "within_days": 30},
        ]
    }
    assert validate_playbook(proposal["playbook"])
    assert "Currency API" in proposal["hypothesis"] and "24690" in proposal["hypothesis"]
    # A rescoring is the same plan; a new estimate is not.
    assert content_hash(proposal_from({**OPPORTUNITY, "score": 0.5})) == content_hash(proposal)
    assert content_hash(proposal_from({**OPPORTUNITY, "est_monthly_revenue_cents": 999_999})) != content_hash(proposal)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"opportunity_type": "crypto"}, "opportunity 'opp-1': opportunity_type 'crypto' is not a category"),
        ({"score": math.nan}, "opportunity 'opp-1': score must be a number in \\[0, 1\\], got nan"),
        ({"score": 1.5}, "score must be a number in \\[0, 1\\], got 1.5"),
        ({"est_monthly_revenue_cents": math.nan}, "est_monthly_revenue_cents must be a non-negative amount, got nan"),
        ({"est_monthly_revenue_cents": -1}, "est_monthly_revenue_cents must be a non-negative amount, got -1"),
        ({"title": " "}, "opportunity 'opp-1': title must be non-empty text"),
        ({"opportunity_id": ""}, "opportunity_id must be a non-empty string"),
    ],
)
def test_an_opportunity_that_cannot_be_proposed_says_why(change, message):
    with pytest.raises(ProposalError, match=message):
        proposal_from({**OPPORTUNITY, **change})


@pytest.mark.parametrize(
    ("budget", "currency", "score", "approved"),
    [
        (20_000, "USD", 0.6, True),  # at both limits
        (20_001, "USD", 0.9, False),
        (100, "USD", 0.599, False),
        (100, "EUR", 0.9, False),  # a limit in USD says nothing about euros
        (100, "USD", math.nan, False),
    ],
)
def test_the_policy_approves_at_or_under_the_budget_and_at_or_over_the_score(budget, currency, score, approved):
    reason = ApprovalPolicy(max_budget_minor=20_000, min_score=0.6, source="approval.yaml auto_approve").decide(
        budget, currency, score
    )
    assert (reason is not None) == approved
    if approved:
        assert reason.startswith("auto-approved by approval.yaml auto_approve: budget 20000 <= 20000 USD")


def test_top_leads_are_cluster_leads_by_score():
    frame = pd.DataFrame(
        {
            "opportunity_id": ["a", "b", "c", "d"],
            "score": [0.5, 0.9, 0.95, 0.7],
            "opportunity_type": ["saas"] * 4,
            "title": ["A", "B", "C", "D"],
            "est_monthly_revenue_cents": [1, 2, 3, 4],
            "is_cluster_lead": [True, True, False, True],
        }
    )
    assert list(top_leads(frame, 2)["opportunity_id"]) == ["b", "d"]
    with pytest.raises(ValueError, match=r"scored opportunities lack columns \['title'\]"):
        top_leads(frame.drop(columns=["title"]), 2)


def test_the_snapshot_keeps_the_scored_row_as_plain_values_and_none_for_what_it_lacks():
    import numpy as np

    from core.experiments.proposals import SNAPSHOT_COLUMNS, snapshot_of

    row = {
        **OPPORTUNITY,
        "est_monthly_revenue_cents": 2**60 + 1,  # exact, not through a float
        "source": float("nan"),
        "age_days": np.float64(1.25),
        "confidence": None,
        "cluster_size": np.int64(3),
        "days_to_revenue": np.int64(45),
    }
    proposal = proposal_from(row)
    snapshot = snapshot_of("exp-1", proposal, row, "at")
    assert list(snapshot) == list(SNAPSHOT_COLUMNS)
    assert snapshot["est_monthly_revenue_cents"] == 2**60 + 1 and type(snapshot["est_monthly_revenue_cents"]) is int
    assert (snapshot["source"], snapshot["confidence"], snapshot["capability_match"]) == (None, None, None)
    assert (snapshot["age_days"], snapshot["days_to_revenue"], snapshot["cluster_size"]) == (1.25, 45.0, 3)
    assert type(snapshot["cluster_size"]) is int and type(snapshot["age_days"]) is float
    assert (snapshot["opportunity_type"], snapshot["requested_budget_minor"], snapshot["window_days"]) == (
        "api",
        200_000,
        30,
    )
    assert (snapshot["experiment_id"], snapshot["proposed_at"], snapshot["score"]) == ("exp-1", "at", 0.73)
