from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from core.discovery.features import (
    MAX_MONTHLY_REVENUE_CENTS,
    CapabilityProfile,
    ScoringAssumptions,
    build_features,
    revenue_signals,
)
from core.discovery.scoring import Weights, score

AS_OF = datetime(2026, 11, 25, 12, tzinfo=UTC)


def _opps(*rows: dict) -> pd.DataFrame:
    base = {
        "opportunity_id": "o",
        "fingerprint": "f",
        "source": "hackernews",
        "family": "hacker_news",
        "url": "https://a.io",
        "cluster_id": "c",
        "body": "",
        "points": 0,
        "comments": 0,
        "created_at": AS_OF,
    }
    return pd.DataFrame(
        [{**base, "opportunity_id": f"o{i}", "cluster_id": f"c{i}", **row} for i, row in enumerate(rows)]
    )


@pytest.mark.parametrize(
    "text, kind, cents",
    [
        ("ShipLog is now at $4.2k MRR", "stated_revenue", 420_000),
        ("MRR: $12,000 and growing", "stated_revenue", 1_200_000),
        ("we crossed $120k ARR", "stated_revenue", 1_000_000),
        ("making $430/month from templates", "stated_revenue", 43_000),
        ("Budget: $250 - $750 USD", "budget", 75_000),
        ("plans from $29/month", "price", None),
        ("no money talk here", "none", None),
    ],
)
def test_revenue_signals(text, kind, cents):
    found = revenue_signals(pd.Series([text])).iloc[0]
    assert found["revenue_signal"] == kind
    if cents is None:
        assert pd.isna(found["stated_monthly_cents"])
    else:
        assert found["stated_monthly_cents"] == cents


def test_price_only_is_price_times_assumed_customers():
    features = build_features(
        _opps({"title": "PromptVault, a team prompt library with an API, $19/month"}),
        AS_OF,
        CapabilityProfile.load(),
        ScoringAssumptions.load(),
    )
    row = features.iloc[0]
    assert row["revenue_signal"] == "price"
    assert row["est_monthly_revenue_cents"] == 1900 * ScoringAssumptions.load().customers_at_price
    assert row["opportunity_type"] == "api"


def test_types_capabilities_and_the_guarded_division():
    profile = CapabilityProfile.load()
    features = build_features(
        _opps(
            {"title": "Hiring: need a developer to build a Stripe billing dashboard", "family": "freelance"},
            {"title": "My weekend thoughts", "family": "hacker_news"},
            {"title": "Native iOS app for dog walkers", "family": "hacker_news"},
        ),
        AS_OF,
        profile,
        ScoringAssumptions.load(),
    )
    gig, nothing, ios = features.to_dict("records")
    assert gig["opportunity_type"] == "freelance_gig"
    assert set(gig["required_capabilities"].split(",")) >= {"payments", "web_app"}
    assert nothing["required_count"] == 0
    assert nothing["capability_match"] == profile.score_when_nothing_required  # not a ZeroDivisionError
    assert ios["required_capabilities"] == "mobile" and ios["capability_match"] == 0.0


def test_seed_formula_exactly():
    features = pd.DataFrame(
        [
            {
                "opportunity_id": "x",
                "title": "t",
                "url": "https://a.io",
                "cluster_id": "c",
                "opportunity_type": "saas",
                "revenue_signal": "stated_revenue",
                "est_monthly_revenue_cents": 500_000,
                "confidence": 0.8,
                "days_to_revenue": 30,
                "capability_match": 0.5,
                "age_days": 7.0,
            }
        ]
    )
    row = score(features, Weights()).iloc[0]
    expected = 0.40 * 0.5 + 0.20 * 0.8 + 0.15 * 0.5 + 0.15 * 0.5 + 0.10 * 0.5
    assert row["score"] == pytest.approx(expected)
    assert row["factor_revenue"] == pytest.approx(0.20)
    assert row["factor_timing"] == pytest.approx(0.05)
    assert "revenue" in row["why"]


def test_rank_follows_score_and_ties_keep_the_input_order():
    base = {
        "title": "t",
        "url": "https://a.io",
        "opportunity_type": "saas",
        "revenue_signal": "none",
        "confidence": 0.5,
        "days_to_revenue": 30,
        "capability_match": 0.5,
        "age_days": 1.0,
    }
    revenue = {"low": 10_000, "tie_first": 900_000, "mid": 300_000, "tie_second": 900_000}
    features = pd.DataFrame(
        [
            {**base, "opportunity_id": o, "cluster_id": o, "est_monthly_revenue_cents": cents}
            for o, cents in revenue.items()
        ]
    )
    scored = score(features, Weights())
    assert scored["opportunity_id"].tolist() == ["tie_first", "tie_second", "mid", "low"]
    assert scored["rank"].tolist() == [1, 2, 3, 4]
    assert scored["score"].iloc[0] == scored["score"].iloc[1] > scored["score"].iloc[2] > scored["score"].iloc[3]


def test_revenue_factor_is_capped_and_weights_are_validated():
    features = build_features(
        _opps({"title": "at $90k MRR", "created_at": AS_OF - timedelta(days=700)}),
        AS_OF,
        CapabilityProfile.load(),
        ScoringAssumptions.load(),
    )
    scored = score(features, Weights())
    assert scored["factor_revenue"].item() == pytest.approx(0.40)
    assert 0 <= scored["score"].item() <= 1
    with pytest.raises(ValueError, match="sum to 1"):
        Weights(revenue=0.9)
    with pytest.raises(ValueError, match="non-negative"):
        Weights(revenue=-0.1, confidence=0.7)


@pytest.mark.parametrize(
    ("title", "signal", "cents", "read_as"),
    [
        (
            "MRR $99999999999999999999",
            "stated_revenue",
            MAX_MONTHLY_REVENUE_CENTS,
            "$100,000,000,000,000,000,000/month",
        ),
        # About 2**63 cents, the int64 edge:
        ("MRR $92233720368547758", "stated_revenue", MAX_MONTHLY_REVENUE_CENTS, "$92,233,720,368,547,760/month"),
        ("$92233720368547757.99 MRR", "stated_revenue", MAX_MONTHLY_REVENUE_CENTS, "$92,233,720,368,547,760/month"),
        ("$9223372036854775807 ARR", "stated_revenue", MAX_MONTHLY_REVENUE_CENTS, "$768,614,336,404,564,736/month"),
        ("$" + "9" * 400 + " MRR", "stated_revenue", MAX_MONTHLY_REVENUE_CENTS, "an amount too large to read"),
        ("$99999999999999999/user/month", "price", MAX_MONTHLY_REVENUE_CENTS, "$3,000,000,000,000,000,000/month"),
        ("MRR $1,000,000,000", "stated_revenue", 1_000_000_000_00, None),  # the ceiling itself stands
        ("MRR $999,999,999.99", "stated_revenue", 999_999_999_99, None),
    ],
)
def test_absurd_revenue_is_capped_with_a_note(title, signal, cents, read_as):
    features = build_features(
        _opps({"title": title}, {"title": "ShipLog at $4.2k MRR"}),
        AS_OF,
        CapabilityProfile.load(),
        ScoringAssumptions.load(),
    )
    absurd, plain = features.to_dict("records")
    assert (absurd["revenue_signal"], absurd["est_monthly_revenue_cents"]) == (signal, cents)
    if read_as is None:
        assert pd.isna(absurd["revenue_note"])
    else:
        assert (
            absurd["revenue_note"] == f"{read_as} read from the text is above the $1,000,000,000/month ceiling: capped"
        )
    assert plain["est_monthly_revenue_cents"] == 420_000 and pd.isna(plain["revenue_note"])
    # It saturates the revenue factor, as the amount said; overflowed, it scored as no revenue at all.
    assert score(features, Weights()).set_index("opportunity_id").loc["o0", "factor_revenue"] == pytest.approx(0.40)


def test_cluster_lead_is_the_best_scored_member():
    features = build_features(
        _opps({"title": "ShipLog at $4.2k MRR", "points": 500}, {"title": "ShipLog changelog widget", "points": 1}),
        AS_OF,
        CapabilityProfile.load(),
        ScoringAssumptions.load(),
    )
    features["cluster_id"] = "same"
    scored = score(features, Weights())
    assert scored["is_cluster_lead"].tolist() == [True, False]
    assert scored.iloc[0]["title"].endswith("MRR")
