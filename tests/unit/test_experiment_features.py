"""ml.features: no feature uses information from after its proposal, proven two ways on random
timelines (anything appended after a cut leaves every earlier proposal's row bit-identical; each
proposal's row equals the one built from only what was known at its proposed_at) and on extreme
values; every history feature on a hand-computed example; seasonality, fill values, input errors,
the training frame, and 100,000 proposals in seconds."""

import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.features import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    NUMERIC_FEATURES,
    build_features,
    training_frame,
)

T = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # a Monday in November
DAY = timedelta(days=1)


def proposal(experiment_id: str, at: datetime, source: str = "hackernews", kind: str = "saas", **values) -> dict:
    row = {
        "experiment_id": experiment_id,
        "opportunity_id": f"opp-{experiment_id}",
        "proposed_at": at,
        "source": source,
        "opportunity_type": kind,
        "age_days": 2.5,
        "confidence": 0.7,
        "est_monthly_revenue_cents": 300_000,
        "capability_match": 0.8,
        "days_to_revenue": 60,
        "cluster_size": 2,
        "requested_budget_minor": 30_000,
        "window_days": 30,
    }
    return {**row, **values}


def proposals_frame(*rows: dict) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    frame["proposed_at"] = pd.to_datetime(frame["proposed_at"], utc=True)
    return frame


def finished_frame(rows: list[tuple]) -> pd.DataFrame:
    """(experiment_id, source, type, finished_at, succeeded, roi) tuples."""
    frame = pd.DataFrame(
        rows, columns=["experiment_id", "source", "opportunity_type", "finished_at", "succeeded", "roi"]
    )
    frame["finished_at"] = pd.to_datetime(frame["finished_at"], utc=True)
    frame["succeeded"] = frame["succeeded"].astype(bool)
    frame["roi"] = frame["roi"].astype(float)
    return frame


def opportunities_frame(rows: list[tuple]) -> pd.DataFrame:
    """(type, first_seen_at) tuples."""
    frame = pd.DataFrame(rows, columns=["opportunity_type", "first_seen_at"])
    frame["first_seen_at"] = pd.to_datetime(frame["first_seen_at"], utc=True)
    return frame


def by_id(features: pd.DataFrame) -> pd.DataFrame:
    return features.set_index("experiment_id")


def assert_bit_identical(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """The same rows, keys and categories equal, every number the same 64 bits (0.0 is not -0.0)."""
    assert list(left.columns) == list(right.columns) == FEATURE_COLUMNS
    left, right = left.reset_index(drop=True), right.reset_index(drop=True)
    for column in ["experiment_id", "opportunity_id", "proposed_at", *CATEGORICAL_FEATURES]:
        assert left[column].tolist() == right[column].tolist(), column
    for column in NUMERIC_FEATURES:
        a, b = left[column].to_numpy(dtype=np.float64), right[column].to_numpy(dtype=np.float64)
        assert a.view(np.int64).tolist() == b.view(np.int64).tolist(), column


# -- each feature on a hand-computed example ---------------------------------------------------

PROPOSALS = proposals_frame(
    proposal("p1", T, "hackernews", "saas"),
    proposal("p2", T + DAY, "hackernews", "api"),
    proposal("p3", T + 10 * DAY, "reddit", "saas"),
)
FINISHED = finished_frame(
    [
        ("f1", "hackernews", "saas", T - DAY, True, 1.0),
        ("f2", "hackernews", "api", T, False, -0.5),  # finished at p1's very instant: not before it
        ("f3", "reddit", "saas", T + 5 * DAY, True, math.nan),  # no cost, so no ROI
        ("f4", "hackernews", "saas", T + 20 * DAY, True, 9.0),  # after every proposal
    ]
)
OPPORTUNITIES = opportunities_frame(
    [
        ("saas", T - DAY),
        ("saas", T - 3 * DAY),
        ("saas", T - 8 * DAY),
        ("saas", T - 20 * DAY),
        ("saas", T - 40 * DAY),
        ("saas", T),  # first seen at p1's instant: known to it
        ("saas", T + timedelta(seconds=1)),  # one second later: not known to p1
        ("content", T - DAY),
    ]
)


def test_history_features_count_only_what_finished_before_the_proposal():
    features = by_id(build_features(PROPOSALS, FINISHED, OPPORTUNITIES))
    # p1: hackernews finished before T: f1 (a success); saas: f1 (ROI 1.0). f2 finished at T exactly.
    assert features.loc["p1", "source_experiments"] == 1
    assert features.loc["p1", "source_success_rate"] == pytest.approx((1 + 1) / (1 + 2))
    assert features.loc["p1", "similar_experiments"] == 1
    assert features.loc["p1", "similar_avg_roi"] == 1.0
    # p2, a day later: hackernews f1 and f2 (one success of two); api: f2 alone.
    assert features.loc["p2", "source_experiments"] == 2
    assert features.loc["p2", "source_success_rate"] == pytest.approx((1 + 1) / (2 + 2))
    assert (features.loc["p2", "similar_experiments"], features.loc["p2", "similar_avg_roi"]) == (1, -0.5)
    # p3: reddit f3; saas f1 and f3, of which only f1 has an ROI. f4 finished after all of them.
    assert features.loc["p3", "source_experiments"] == 1
    assert features.loc["p3", "source_success_rate"] == pytest.approx(2 / 3)
    assert features.loc["p3", "similar_experiments"] == 2
    assert features.loc["p3", "similar_avg_roi"] == 1.0


def test_market_features_count_opportunities_first_seen_by_the_proposal():
    features = by_id(build_features(PROPOSALS, FINISHED, OPPORTUNITIES))
    # p1 (saas at T): (T-7d, T] holds T-1d, T-3d, T; (T-14d, T-7d] holds T-8d; (T-30d, T] five.
    assert features.loc["p1", "market_trend"] == pytest.approx((3 + 1) / (1 + 1))
    assert features.loc["p1", "competition"] == pytest.approx(math.log1p(5))
    # p3 (saas at T+10d): (T+3d, T+10d] none; (T-4d, T+3d] T-3d, T-1d, T, T+1s; (T-20d, T+10d] excludes T-20d.
    assert features.loc["p3", "market_trend"] == pytest.approx((0 + 1) / (4 + 1))
    assert features.loc["p3", "competition"] == pytest.approx(math.log1p(5))
    # p2 (api): no api opportunity at all.
    assert (features.loc["p2", "market_trend"], features.loc["p2", "competition"]) == (1.0, 0.0)


def test_snapshot_features_pass_through_and_budget_and_duration_are_the_proposals():
    features = by_id(build_features(PROPOSALS, FINISHED, OPPORTUNITIES))
    row = features.loc["p1"]
    assert (row["source"], row["opportunity_type"], row["opportunity_id"]) == ("hackernews", "saas", "opp-p1")
    assert row["proposed_at"] == pd.Timestamp(T)
    assert row[["age_days", "confidence", "est_monthly_revenue_cents", "capability_match"]].tolist() == [
        2.5,
        0.7,
        300_000.0,
        0.8,
    ]
    assert row[["days_to_revenue", "cluster_size", "budget_minor", "est_duration_days"]].tolist() == [
        60.0,
        2.0,
        30_000.0,
        30.0,
    ]


def test_rows_come_ordered_by_proposal_time_with_every_numeric_feature_a_float():
    shuffled = PROPOSALS.iloc[[2, 0, 1]]
    features = build_features(shuffled, FINISHED, OPPORTUNITIES)
    assert features["experiment_id"].tolist() == ["p1", "p2", "p3"]
    assert list(features.columns) == FEATURE_COLUMNS
    assert all(features[c].dtype == np.float64 for c in NUMERIC_FEATURES)
    assert str(features["proposed_at"].dtype) == "datetime64[ns, UTC]"
    assert_bit_identical(features, build_features(PROPOSALS, FINISHED.iloc[::-1], OPPORTUNITIES.iloc[::-1]))


@pytest.mark.parametrize(
    ("at", "dow", "month"),
    [
        (datetime(2026, 11, 2, 0, 0, tzinfo=UTC), 0, 10),  # Monday, November
        (datetime(2026, 11, 8, 23, 59, tzinfo=UTC), 6, 10),  # Sunday
        (datetime(2027, 1, 1, 0, 0, tzinfo=UTC), 4, 0),  # Friday, January
        (datetime(2026, 6, 17, 12, 0, tzinfo=UTC), 2, 5),  # Wednesday, June
        # 23:30 on a Sunday in New York is Monday 04:30 UTC: seasonality is of the UTC time.
        (pd.Timestamp("2026-03-01 23:30", tz="America/New_York").to_pydatetime(), 0, 2),
    ],
)
def test_seasonality_puts_day_of_week_and_month_on_the_unit_circle(at, dow, month):
    row = build_features(proposals_frame(proposal("p", at)), FINISHED.iloc[:0], OPPORTUNITIES.iloc[:0]).iloc[0]
    assert row["dow_sin"] == pytest.approx(math.sin(2 * math.pi * dow / 7))
    assert row["dow_cos"] == pytest.approx(math.cos(2 * math.pi * dow / 7))
    assert row["month_sin"] == pytest.approx(math.sin(2 * math.pi * month / 12))
    assert row["month_cos"] == pytest.approx(math.cos(2 * math.pi * month / 12))
    assert row["dow_sin"] ** 2 + row["dow_cos"] ** 2 == pytest.approx(1.0)


def test_missing_snapshot_values_take_their_documented_fill_and_no_history_means_the_prior():
    empty = proposals_frame(
        proposal(
            "p",
            T,
            source=None,
            kind="",
            age_days=math.nan,
            confidence=None,
            est_monthly_revenue_cents=math.inf,
            capability_match=math.nan,
            days_to_revenue=None,
            cluster_size=math.nan,
            requested_budget_minor=math.nan,
            window_days=None,
        )
    )
    row = build_features(empty, FINISHED.iloc[:0], OPPORTUNITIES.iloc[:0]).iloc[0]
    assert (row["source"], row["opportunity_type"]) == ("unknown", "unknown")
    assert row[NUMERIC_FEATURES].notna().all()
    expected = {
        "age_days": 0.0,
        "confidence": 0.0,
        "est_monthly_revenue_cents": 0.0,
        "capability_match": 0.5,
        "days_to_revenue": 30.0,
        "cluster_size": 1.0,
        "market_trend": 1.0,
        "competition": 0.0,
        "source_success_rate": 0.5,
        "source_experiments": 0.0,
        "similar_experiments": 0.0,
        "similar_avg_roi": 0.0,
        "budget_minor": 0.0,
        "est_duration_days": 30.0,
    }
    assert {name: row[name] for name in expected} == expected


def test_a_type_whose_finished_experiments_have_no_roi_averages_zero():
    finished = finished_frame([("f", "hackernews", "saas", T - DAY, False, math.nan)])
    row = build_features(proposals_frame(proposal("p", T)), finished, OPPORTUNITIES.iloc[:0]).iloc[0]
    assert (row["similar_experiments"], row["similar_avg_roi"], row["source_success_rate"]) == (1.0, 0.0, 1 / 3)


def test_no_proposals_give_an_empty_frame_with_every_column():
    features = build_features(PROPOSALS.iloc[:0], FINISHED, OPPORTUNITIES)
    assert features.empty and list(features.columns) == FEATURE_COLUMNS


# -- no leakage --------------------------------------------------------------------------------


def future_information(after: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outcomes and opportunities at or after `after`, as extreme as they come: every source and
    type a proposal has, huge and tiny ROIs, all successes, a flood of opportunities."""
    finished = finished_frame(
        [
            (f"future-{k}", source, kind, after + k * timedelta(hours=1), True, roi)
            for k, (source, kind, roi) in enumerate(
                (s, t, r)
                for s in ("hackernews", "reddit", "unseen")
                for t in ("saas", "api", "content")
                for r in (1e300, -1e300, 5e-324, math.nan, 0.0)
            )
        ]
    )
    # finished_at == after itself is in the future of a proposal at `after` (strictly before counts).
    opportunities = opportunities_frame(
        [(kind, after + timedelta(microseconds=1 + k)) for k in range(2_000) for kind in ("saas", "api")]
    )
    return finished, opportunities


def test_appending_extreme_future_information_changes_no_proposal_bit():
    before = build_features(PROPOSALS, FINISHED, OPPORTUNITIES)
    last = PROPOSALS["proposed_at"].max().to_pydatetime()
    more_finished, more_opportunities = future_information(last)
    after = build_features(
        PROPOSALS,
        pd.concat([FINISHED[FINISHED["finished_at"] < last], more_finished, FINISHED[FINISHED["finished_at"] >= last]]),
        pd.concat([more_opportunities, OPPORTUNITIES]),
    )
    assert_bit_identical(before, after)


def test_the_future_of_each_proposal_never_reaches_it():
    """For each proposal alone: its row, built from everything, equals the row built from only
    what existed at its proposed_at (finished strictly before, first seen at or before)."""
    full = by_id(build_features(PROPOSALS, FINISHED, OPPORTUNITIES))
    for experiment_id, at in PROPOSALS[["experiment_id", "proposed_at"]].itertuples(index=False):
        known = build_features(
            PROPOSALS[PROPOSALS["experiment_id"] == experiment_id],
            FINISHED[FINISHED["finished_at"] < at],
            OPPORTUNITIES[OPPORTUNITIES["first_seen_at"] <= at],
        )
        assert_bit_identical(full.loc[[experiment_id]].reset_index(), known)


SOURCES = ["hackernews", "reddit", "github"]
TYPES = ["saas", "api"]
HOURS = st.integers(min_value=0, max_value=24 * 40)  # hours after T: ties are common on purpose
ROIS = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.just(math.nan),
    st.sampled_from([1e300, -1e300, 5e-324, -0.0]),
)
EVENTS = st.tuples(HOURS, st.sampled_from(SOURCES), st.sampled_from(TYPES), st.booleans(), ROIS)


@st.composite
def timelines(draw):
    """Proposals, finished experiments and opportunities on one random clock, and a cut in it."""
    proposed = draw(st.lists(st.tuples(HOURS, st.sampled_from(SOURCES), st.sampled_from(TYPES)), max_size=12))
    finished = draw(st.lists(EVENTS, max_size=25))
    seen = draw(st.lists(st.tuples(HOURS, st.sampled_from(TYPES)), max_size=40))
    cut = draw(HOURS)
    at = lambda hours: T + timedelta(hours=hours)  # noqa: E731
    proposals = proposals_frame(
        *[proposal(f"p{k}", at(h), s, t) for k, (h, s, t) in enumerate(proposed)],
        proposal("anchor", at(0)),  # at least one row
    )
    finished = finished_frame([(f"f{k}", s, t, at(h), ok, roi) for k, (h, s, t, ok, roi) in enumerate(finished)])
    opportunities = opportunities_frame([(t, at(h)) for h, t in seen])
    return proposals, finished, opportunities, at(cut)


@given(timelines(), st.lists(EVENTS, max_size=25), st.lists(st.tuples(HOURS, st.sampled_from(TYPES)), max_size=40))
def test_property_information_after_a_cut_changes_no_earlier_proposal(timeline, late_finished, late_seen):
    proposals, finished, opportunities, cut = timeline
    # Keep what happened before the cut and replace the rest with arbitrary later events.
    known_finished = finished[finished["finished_at"] < cut]
    known_seen = opportunities[opportunities["first_seen_at"] <= cut]
    later_finished = finished_frame(
        [(f"late{k}", s, t, cut + timedelta(hours=h), ok, roi) for k, (h, s, t, ok, roi) in enumerate(late_finished)]
    )
    later_seen = opportunities_frame([(t, cut + timedelta(hours=h, seconds=1)) for h, t in late_seen])
    early = proposals[proposals["proposed_at"] <= cut]
    base = build_features(early, known_finished, known_seen)
    extended = build_features(
        proposals, pd.concat([later_finished, known_finished]), pd.concat([known_seen, later_seen])
    )
    assert_bit_identical(base, extended[extended["experiment_id"].isin(early["experiment_id"])])


# A build per proposal per example: half the profile's examples keep this file within its time.
@settings(max_examples=max(10, settings().max_examples // 2))
@given(timelines())
def test_property_each_row_equals_the_row_built_from_its_own_past(timeline):
    proposals, finished, opportunities, _ = timeline
    full = by_id(build_features(proposals, finished, opportunities))
    for experiment_id, at in proposals[["experiment_id", "proposed_at"]].itertuples(index=False):
        alone = build_features(
            proposals[proposals["experiment_id"] == experiment_id],
            finished[finished["finished_at"] < at],
            opportunities[opportunities["first_seen_at"] <= at],
        )
        assert_bit_identical(full.loc[[experiment_id]].reset_index(), alone)


# -- input errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "column"),
    [
        ("proposals", "window_days"),
        ("proposals", "proposed_at"),
        ("finished", "succeeded"),
        ("opportunities", "first_seen_at"),
    ],
)
def test_a_missing_column_is_named_with_its_frame(frame, column):
    frames = {"proposals": PROPOSALS, "finished": FINISHED, "opportunities": OPPORTUNITIES}
    frames[frame] = frames[frame].drop(columns=[column])
    with pytest.raises(ValueError, match=rf"^{frame}: missing column\(s\) \['{column}'\]"):
        build_features(frames["proposals"], frames["finished"], frames["opportunities"])


@pytest.mark.parametrize(
    ("frame", "column"),
    [("proposals", "proposed_at"), ("finished", "finished_at"), ("opportunities", "first_seen_at")],
)
@pytest.mark.parametrize("as_objects", [False, True], ids=["datetime64", "python-datetimes"])
def test_naive_timestamps_are_refused_naming_frame_and_column(frame, column, as_objects):
    frames = {"proposals": PROPOSALS.copy(), "finished": FINISHED.copy(), "opportunities": OPPORTUNITIES.copy()}
    naive = frames[frame][column].dt.tz_convert(None)
    frames[frame][column] = pd.Series(list(naive.dt.to_pydatetime()), dtype=object) if as_objects else naive
    with pytest.raises(ValueError, match=rf"^{frame}: column '{column}' holds naive"):
        build_features(frames["proposals"], frames["finished"], frames["opportunities"])


def test_other_bad_inputs_say_what_and_where():
    with pytest.raises(ValueError, match=r"^proposals: column 'experiment_id' repeats \['p1'\]"):
        build_features(pd.concat([PROPOSALS, PROPOSALS.iloc[:1]]), FINISHED, OPPORTUNITIES)
    with pytest.raises(ValueError, match=r"^finished: column 'succeeded' has missing values"):
        build_features(PROPOSALS, FINISHED.assign(succeeded=[True, None, False, True]), OPPORTUNITIES)
    with pytest.raises(ValueError, match=r"^finished: column 'roi' has infinite values"):
        build_features(PROPOSALS, FINISHED.assign(roi=[1.0, math.inf, 0.0, 0.0]), OPPORTUNITIES)
    with pytest.raises(ValueError, match=r"^proposals: column 'proposed_at' has 1 missing time"):
        build_features(PROPOSALS.assign(proposed_at=[T, pd.NaT, T]), FINISHED, OPPORTUNITIES)
    with pytest.raises(ValueError, match=r"^proposals: column 'confidence' must be numeric"):
        build_features(PROPOSALS.assign(confidence=["high", "low", "mid"]), FINISHED, OPPORTUNITIES)
    with pytest.raises(ValueError, match=r"^opportunities: expected a pandas DataFrame, got list"):
        build_features(PROPOSALS, FINISHED, [])


# -- the training frame --------------------------------------------------------------------------


def outcomes_frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["experiment_id", "succeeded", "revenue_minor", "cost_minor", "net_minor", "roi"])


def test_the_training_frame_joins_finished_experiments_to_their_outcomes_in_proposal_order():
    features = build_features(PROPOSALS, FINISHED, OPPORTUNITIES)
    outcomes = outcomes_frame(
        [
            ("p3", True, 90_000, 30_000, 60_000, 2.0),
            ("p1", False, 0, 0, 0, None),  # no cost: no ROI
            ("unknown-experiment", True, 1, 1, 0, 0.0),  # no features: not in the frame
        ]
    )
    frame = training_frame(features, outcomes)
    assert frame["experiment_id"].tolist() == ["p1", "p3"]  # p2 has not finished
    assert list(frame.columns) == [*FEATURE_COLUMNS, "succeeded", "revenue_minor", "cost_minor", "net_minor", "roi"]
    assert frame["succeeded"].tolist() == [False, True] and frame["succeeded"].dtype == bool
    assert frame["revenue_minor"].dtype == np.int64 and frame["net_minor"].tolist() == [0, 60_000]
    assert math.isnan(frame.loc[0, "roi"]) and frame.loc[1, "roi"] == 2.0
    assert_bit_identical(frame[FEATURE_COLUMNS], features[features["experiment_id"].isin(["p1", "p3"])])


def test_the_training_frame_carries_finished_at_when_outcomes_have_it_and_refuses_bad_outcomes():
    features = build_features(PROPOSALS, FINISHED, OPPORTUNITIES)
    outcomes = outcomes_frame([("p2", True, 5, 1, 4, 4.0)]).assign(finished_at=[T + 3 * DAY])
    frame = training_frame(features, outcomes)
    assert frame["finished_at"].tolist() == [pd.Timestamp(T + 3 * DAY)]
    with pytest.raises(ValueError, match=r"^outcomes: missing column\(s\) \['net_minor'\]"):
        training_frame(features, outcomes.drop(columns=["net_minor"]))
    with pytest.raises(ValueError, match=r"^outcomes: column 'experiment_id' repeats \['p2'\]"):
        training_frame(features, pd.concat([outcomes, outcomes]))
    with pytest.raises(ValueError, match=r"^outcomes: column 'revenue_minor' has missing values"):
        training_frame(features, outcomes.assign(revenue_minor=[None]))
    with pytest.raises(ValueError, match=r"^features: missing column\(s\) \['competition'\]"):
        training_frame(features.drop(columns=["competition"]), outcomes)


# -- scale -------------------------------------------------------------------------------------


def test_a_hundred_thousand_proposals_take_seconds():
    rng = np.random.default_rng(7)
    n = 100_000
    hours = np.sort(rng.integers(0, 24 * 365, n))
    proposals = pd.DataFrame(
        {
            "experiment_id": [f"e{k}" for k in range(n)],
            "opportunity_id": [f"o{k}" for k in range(n)],
            "proposed_at": pd.Timestamp(T) + pd.to_timedelta(hours, unit="h"),
            "source": rng.choice(SOURCES, n),
            "opportunity_type": rng.choice([*TYPES, "content", "other"], n),
            "age_days": rng.uniform(0, 30, n),
            "confidence": rng.uniform(0, 1, n),
            "est_monthly_revenue_cents": rng.integers(0, 10**6, n),
            "capability_match": rng.uniform(0, 1, n),
            "days_to_revenue": rng.integers(7, 120, n),
            "cluster_size": rng.integers(1, 5, n),
            "requested_budget_minor": rng.integers(5_000, 200_000, n),
            "window_days": 30,
        }
    )
    done = proposals.sample(frac=0.8, random_state=1)
    finished = pd.DataFrame(
        {
            "experiment_id": done["experiment_id"],
            "source": done["source"],
            "opportunity_type": done["opportunity_type"],
            "finished_at": done["proposed_at"] + pd.to_timedelta(rng.integers(1, 40 * 24, len(done)), unit="h"),
            "succeeded": rng.random(len(done)) < 0.3,
            "roi": rng.normal(0, 1, len(done)),
        }
    )
    opportunities = pd.DataFrame(
        {
            "opportunity_type": rng.choice([*TYPES, "content", "other"], 3 * n),
            "first_seen_at": pd.Timestamp(T) + pd.to_timedelta(rng.integers(-720, 24 * 365, 3 * n), unit="h"),
        }
    )
    started = time.perf_counter()
    features = build_features(proposals, finished, opportunities)
    elapsed = time.perf_counter() - started
    assert len(features) == n and features[NUMERIC_FEATURES].notna().all().all()
    assert elapsed < 10, f"build_features took {elapsed:.1f} s for {n} proposals"
    # The last proposal has seen nearly every earlier outcome of its source.
    last = features.iloc[-1]
    assert last["source_experiments"] > 0.7 * (finished["source"] == last["source"]).sum()
