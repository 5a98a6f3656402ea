"""build_features computes the same features as before its text patterns moved to Arrow (commit
929c9d6, which answered every pattern with Python's `re`): tests/fixtures/features_golden.csv holds
that implementation's output for the opportunities of the bundled snapshots, 300 generated Hacker
News hits and the tricky texts below. Spelled-out expectations for the tricky texts follow."""

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from core.discovery.features import CapabilityProfile, ScoringAssumptions, build_features

AS_OF = datetime(2026, 11, 27, tzinfo=UTC)
GOLDEN = Path(__file__).parents[1] / "fixtures" / "features_golden.csv"
INPUTS = ["opportunity_id", "source", "family", "title", "body", "points", "comments", "cluster_id"]
COMPUTED = [
    "cluster_size",
    "opportunity_type",
    "required_capabilities",
    "matched_capabilities",
    "required_count",
    "matched_count",
    "capability_match",
    "revenue_signal",
    "est_monthly_revenue_cents",
    "confidence",
    "days_to_revenue",
    "engagement_velocity",
    "age_days",
]


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    return build_features(
        frame, AS_OF, CapabilityProfile.load(), ScoringAssumptions.load(), frame.groupby("cluster_id").size()
    )


@pytest.mark.parametrize("strings", ["str", "object"])  # DuckDB reads give str columns, PostgreSQL object ones
def test_features_equal_the_previous_implementation(strings):
    golden = pd.read_csv(GOLDEN, keep_default_na=False, na_values=[""], float_precision="round_trip")
    frame = (
        golden[INPUTS]
        .astype(dict.fromkeys(["source", "family", "title", "body", "cluster_id"], strings))
        .assign(
            fingerprint=golden["opportunity_id"],
            url="https://example.com/" + golden["opportunity_id"],
            created_at=pd.to_datetime(golden["created_at"], utc=True),
        )
    )
    expected = golden[COMPUTED].fillna({"required_capabilities": "", "matched_capabilities": ""})
    pd.testing.assert_frame_equal(_features(frame)[COMPUTED], expected, check_dtype=False, check_exact=True)


@pytest.mark.parametrize(
    ("title", "body", "kind", "signal", "cents", "required"),
    [
        ("Café API – $5k MRR, naïve pricing", None, "api", "stated_revenue", 500_000, "api_development"),
        ("用户 api 工具 $29/month", "", "api", "price", 2_900 * 30, "api_development"),  # price x customers_at_price
        ("Résumé builder\xa0at $12k ARR", None, "saas", "stated_revenue", 100_000, "web_app,payments"),  # ARR / 12
        ("Show HN: Tool – $29/month 🚀", "Ask about our API", "api", "price", 2_900 * 30, "api_development"),
        ("We hit $5k MRR", "making $430/month from templates", "saas", "stated_revenue", 500_000, "web_app,payments"),
        ("ARR: $120k", "", "saas", "stated_revenue", 1_000_000, "web_app,payments"),
        ("Budget: $250 – $750", "[for hire] designer", "other", "budget", 75_000, ""),  # "budget:" needs a word after
        ("$5\x1cmrr", "", "saas", "stated_revenue", 500, "web_app,payments"),  # Python's \s takes \x1c, RE2's does not
        ("x[for hire]y", "fine-tune llm", "freelance_gig", "none", 50_000, "machine_learning"),
        ("€20 a month", "only €5", "other", "none", 10_000, ""),  # only dollar amounts are read
        ("", "", "other", "none", 10_000, ""),
        (None, None, "other", "none", 10_000, ""),
    ],
)
def test_tricky_texts(title, body, kind, signal, cents, required):
    frame = pd.DataFrame(
        [
            {
                "opportunity_id": "o",
                "fingerprint": "f",
                "source": "hackernews",
                "family": "hacker_news",
                "url": "https://a.io",
                "cluster_id": "c",
                "title": title,
                "body": body,
                "points": 3,
                "comments": 1,
                "created_at": AS_OF,
            }
        ]
    )
    row = _features(frame).iloc[0]
    assert (row["opportunity_type"], row["revenue_signal"]) == (kind, signal)
    assert row["est_monthly_revenue_cents"] == cents
    assert row["required_capabilities"] == required
