"""The proposal-time snapshot and the experiment_features asset on DuckDB and PostgreSQL.

Opportunities go through the real feature and scoring code into core.opportunities,
core.opportunity_features and core.scored_opportunities; the real propose_from_scored proposes
from them. Each new experiment's snapshot holds its scored row as it was (a later rescoring does not
touch it); an experiment proposed before the snapshot table existed is skipped and counted; an
experiment that finished (real transitions, a real sale in the ledger, record_outcomes) is the
history of a later proposal and of no earlier one; and a later outcome leaves every row as it was."""

import math
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from assets.learning.features import COLUMNS, experiment_features
from assets.resources import WarehouseResource
from core.discovery.features import CapabilityProfile, ScoringAssumptions
from core.discovery.features import build_features as opportunity_features
from core.discovery.scoring import Weights, score
from core.experiments.lifecycle import transition
from core.experiments.outcomes import record_outcomes
from core.experiments.proposals import ApprovalPolicy, propose_from_scored
from core.ledger.audit import fixed_clock
from core.ledger.booking import book
from core.ledger.validation import Posting, TransactionRequest
from core.platform.schema import ensure_schema
from core.platform.warehouse import Warehouse
from ml.features import FEATURE_COLUMNS, NUMERIC_FEATURES

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
DAY = timedelta(days=1)
NEVER = ApprovalPolicy(max_budget_minor=0, min_score=1.0)
TEXTS = [  # (source, title, days before T0 it was first fetched)
    ("hackernews", "ShipLog, a SaaS changelog tool, is now at $4.2k MRR", 1),
    ("hackernews", "Invoice API for freelancers: a REST API with webhooks, $29/month", 2),
    ("reddit", "My SaaS for dentists crossed $120k ARR", 3),
    ("reddit", "Subscription analytics SaaS at $900 MRR after a year", 9),
    ("hackernews", "Hiring: need a developer for a Shopify app, budget: $2,000", 4),
    ("reddit", "Started a newsletter about woodworking, 300 subscribers", 40),
]


def opportunities_frame(texts=TEXTS, fetched_before: datetime = T0) -> pd.DataFrame:
    rows = []
    for k, (source, title, days) in enumerate(texts):
        fingerprint = uuid.uuid4().hex
        rows.append(
            {
                "fingerprint": fingerprint,
                "opportunity_id": str(uuid.uuid4()),
                "source": source,
                "family": "hacker_news" if source == "hackernews" else "reddit",
                "external_id": f"x{k}-{fingerprint[:6]}",
                "url": f"https://example.com/{fingerprint}",
                "canonical_url": f"https://example.com/{fingerprint}",
                "title": title,
                "body": "",
                "author": "someone",
                "points": 10 * (k + 1),
                "comments": k,
                "created_at": fetched_before - days * DAY - timedelta(hours=1),
                "fetched_at": fetched_before - days * DAY,
                "cluster_id": f"cluster-{fingerprint}",
                "record_id": f"record-{fingerprint}",
            }
        )
    return pd.DataFrame(rows)


def discover(warehouse: Warehouse, opportunities: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """What the opportunities, opportunity_features and scored_opportunities assets write."""
    warehouse.append("core.opportunities", opportunities)
    table = warehouse.read("core.opportunities")
    features = opportunity_features(
        table, as_of, CapabilityProfile.load(), ScoringAssumptions.load(), table.groupby("cluster_id").size()
    )
    warehouse.replace("core.opportunity_features", features)
    scored = score(features, Weights())
    warehouse.replace("core.scored_opportunities", scored)
    return warehouse.read("core.scored_opportunities")


def finish_with_a_sale(warehouse: Warehouse, experiment_id: str, started: datetime, finished: datetime) -> None:
    """Completed through the real lifecycle, with a sale of ten times its budget in the ledger."""
    for step in ["approved", "queued", "running", "completed"]:
        at = finished if step == "completed" else started
        transition(warehouse, experiment_id, step, actor="test", reason=step, clock=fixed_clock(at))
    warehouse.execute(
        "UPDATE experiments.experiments SET started_at = %s, finished_at = %s WHERE experiment_id = %s",
        [started, finished, experiment_id],
    )
    budget = int(
        warehouse.scalar(
            "SELECT requested_budget_minor FROM experiments.experiments WHERE experiment_id = %s", [experiment_id]
        )
    )
    book(
        warehouse,
        TransactionRequest(
            idempotency_key=f"sale:{experiment_id}",
            kind="sale",
            description="sale",
            occurred_at=started + DAY,
            postings=[
                Posting("assets:cash:stripe:usd", "USD", 10 * budget),
                Posting(f"revenue:experiment:{experiment_id}", "USD", -10 * budget),
            ],
            experiment_id=experiment_id,
            source="test",
        ),
        clock=fixed_clock(started + DAY),
    )


def materialize(warehouse: Warehouse) -> dict:
    result = dg.materialize([experiment_features], resources={"warehouse": WarehouseResource(url=warehouse.url)})
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.asset_key == dg.AssetKey("experiment_features")
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def snapshots(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.read("experiments.proposal_features", "ORDER BY experiment_id").set_index("experiment_id")


def test_snapshot_then_features_as_of_each_proposal(warehouse: Warehouse):
    # An experiment of a warehouse older than the snapshot table: proposed, then the table is gone,
    # and the upgrade (ensure_schema) brings it back empty.
    old_scored = discover(warehouse, opportunities_frame([("reddit", "Old SaaS idea at $1k MRR", 30)]), T0 - 20 * DAY)
    (old,) = propose_from_scored(warehouse, old_scored, 1, NEVER, fixed_clock(T0 - 20 * DAY)).created
    warehouse.execute("DROP TABLE experiments.proposal_features")
    ensure_schema(warehouse)
    assert warehouse.count("experiments.proposal_features") == 0

    scored = discover(warehouse, opportunities_frame(), T0)
    first = propose_from_scored(warehouse, scored, 3, NEVER, fixed_clock(T0)).created
    assert len(first) == 3 and old not in first
    stored = snapshots(warehouse)
    assert sorted(stored.index) == sorted(first)
    experiments = warehouse.read("experiments.experiments").set_index("experiment_id")
    leads = scored.set_index("opportunity_id")
    for experiment_id, row in stored.iterrows():
        lead = leads.loc[row["opportunity_id"]]
        assert experiments.loc[experiment_id, "opportunity_id"] == row["opportunity_id"]
        assert pd.Timestamp(row["proposed_at"]) == pd.Timestamp(T0)
        assert (row["source"], row["opportunity_type"]) == (lead["source"], lead["opportunity_type"])
        for column in ["age_days", "confidence", "capability_match", "days_to_revenue"]:
            assert row[column] == pytest.approx(float(lead[column])), column
        assert int(row["est_monthly_revenue_cents"]) == int(lead["est_monthly_revenue_cents"])
        assert int(row["cluster_size"]) == int(lead["cluster_size"])
        assert int(row["requested_budget_minor"]) == int(experiments.loc[experiment_id, "requested_budget_minor"])
        assert (int(row["window_days"]), row["score"]) == (30, experiments.loc[experiment_id, "score"])

    # Discovery runs again five days later: the features table is rebuilt (ages grow), and the next
    # proposal round adds one experiment; the first three keep their snapshot as it was.
    rescored = discover(
        warehouse, opportunities_frame([("hackernews", "A $3k MRR SaaS for gyms", 0)], T0 + 5 * DAY), T0 + 5 * DAY
    )
    assert (rescored.set_index("opportunity_id").loc[stored["opportunity_id"], "age_days"] > 4.9).all()
    second = propose_from_scored(warehouse, rescored, 4, NEVER, fixed_clock(T0 + 5 * DAY))
    assert sorted(second.unchanged) == sorted(first) and len(second.created) == 1
    pd.testing.assert_frame_equal(snapshots(warehouse).loc[stored.index], stored)

    # One of the first three finishes on day 6 with a success; one more is proposed on day 8.
    winner = first[0]
    winner_source = stored.loc[winner, "source"]
    finish_with_a_sale(warehouse, winner, T0 + timedelta(hours=1), T0 + 6 * DAY)
    record_outcomes(warehouse, clock=fixed_clock(T0 + 6 * DAY))
    late_scored = discover(
        warehouse, opportunities_frame([(winner_source, "Another SaaS, $2k MRR", 0)], T0 + 8 * DAY), T0 + 8 * DAY
    )
    late_row = late_scored[late_scored["title"] == "Another SaaS, $2k MRR"]
    (late,) = propose_from_scored(warehouse, late_row, 1, NEVER, fixed_clock(T0 + 8 * DAY)).created

    # A frame with only the columns proposals need (as the lifecycle tests propose): NULLs in the snapshot.
    bare = pd.DataFrame(
        [
            {
                "opportunity_id": "bare",
                "score": 0.5,
                "opportunity_type": "api",
                "title": "Bare",
                "est_monthly_revenue_cents": 80_000,
            }
        ]
    )
    (plain,) = propose_from_scored(warehouse, bare, 1, NEVER, fixed_clock(T0 + 9 * DAY)).created
    bare_snapshot = snapshots(warehouse).loc[plain]
    assert bare_snapshot[["source", "age_days", "confidence", "capability_match", "cluster_size"]].isna().all()

    metadata = materialize(warehouse)
    features = warehouse.read("learning.experiment_features").set_index("experiment_id")
    assert list(features.reset_index().columns) == FEATURE_COLUMNS == list(COLUMNS)
    assert sorted(features.index) == sorted([*first, *second.created, late, plain])  # not the old one
    assert features[NUMERIC_FEATURES].notna().all().all()
    assert metadata["dagster/row_count"] == metadata["rows"] == 6
    assert metadata["skipped_without_snapshot"] == 1
    assert metadata["finished_experiments"] == 1
    assert metadata["features"]["numeric"] == NUMERIC_FEATURES

    # The winner's outcome is history for the day-8 proposal, not for the earlier ones.
    assert features.loc[late, "source_experiments"] == 1
    assert features.loc[late, "source_success_rate"] == pytest.approx(2 / 3)
    assert features.loc[late, "similar_experiments"] == (1 if stored.loc[winner, "opportunity_type"] == "saas" else 0)
    for experiment_id in [*first, *second.created]:
        assert features.loc[experiment_id, ["source_experiments", "similar_experiments"]].tolist() == [0, 0]
        assert features.loc[experiment_id, "source_success_rate"] == 0.5
    assert metadata["with_history"] == int(
        ((features["source_experiments"] > 0) | (features["similar_experiments"] > 0)).sum()
    )
    # The bare proposal's missing snapshot values take their fills.
    assert features.loc[plain, "source"] == "unknown"
    assert features.loc[plain, ["age_days", "confidence", "capability_match", "cluster_size"]].tolist() == [
        0,
        0,
        0.5,
        1,
    ]

    # Competition at T0 for a saas proposal: the saas opportunities fetched in (T0-30d, T0].
    timeline = warehouse.query(
        "SELECT f.opportunity_type, o.fetched_at FROM core.opportunities o "
        "JOIN core.opportunity_features f ON f.opportunity_id = o.opportunity_id"
    )
    fetched = pd.to_datetime(timeline["fetched_at"], utc=True)
    for experiment_id in first:
        kind = features.loc[experiment_id, "opportunity_type"]
        window = (timeline["opportunity_type"] == kind) & (fetched > T0 - 30 * DAY) & (fetched <= T0)
        assert features.loc[experiment_id, "competition"] == pytest.approx(math.log1p(int(window.sum())))
    assert features.loc[first[0], "proposed_at"] == pd.Timestamp(T0)

    # Later information (another success, more opportunities) leaves every existing row as it was.
    finish_with_a_sale(warehouse, second.created[0], T0 + 10 * DAY, T0 + 12 * DAY)
    record_outcomes(warehouse, clock=fixed_clock(T0 + 12 * DAY))
    discover(warehouse, opportunities_frame(TEXTS, T0 + 50 * DAY), T0 + 50 * DAY)  # all fetched after T0 + 9d
    again = materialize(warehouse)
    assert again["finished_experiments"] == 2
    pd.testing.assert_frame_equal(
        warehouse.read("learning.experiment_features").set_index("experiment_id").loc[features.index],
        features,
        check_exact=True,
    )


def test_an_empty_warehouse_gives_an_empty_table_with_every_column(warehouse: Warehouse):
    metadata = materialize(warehouse)
    assert metadata["rows"] == 0 and metadata["skipped_without_snapshot"] == 0
    assert metadata["newest"] == "no proposal yet"
    table = warehouse.read("learning.experiment_features")
    assert table.empty and list(table.columns) == FEATURE_COLUMNS
