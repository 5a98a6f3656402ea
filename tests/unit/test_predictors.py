"""ml.predictors: the time-ordered split, the metrics on hand-checked examples, the calibration
table, the quality gates, the champion rule, and (reduced) that the success predictor learns: on a
small simulated population its holdout AUC is well above chance and near the Bayes-optimal one."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from core.simulator.population import bayes_success_probability, population, realize
from ml import predictors
from ml.predictors import (
    REVENUE,
    SUCCESS,
    TrainingDataError,
    calibration_table,
    quality_gates,
    revenue_metrics,
    should_promote,
    success_metrics,
    time_split,
)

START = datetime(2026, 1, 5, tzinfo=UTC)
CATEGORICAL = ["source", "opportunity_type"]


def simulated(seed: int, n: int) -> pd.DataFrame:
    """ml.features.training_frame of n simulated experiments (history: those finished before each)."""
    from ml.features import FINISHED_COLUMNS, build_features, training_frame

    proposals = population(seed, n, START)
    outcomes = realize(seed, proposals)
    finished = proposals[["experiment_id", "source", "opportunity_type"]].merge(outcomes, on="experiment_id")
    timeline = pd.DataFrame(
        {"opportunity_type": proposals["opportunity_type"], "first_seen_at": proposals["proposed_at"]}
    )
    features = build_features(proposals, finished[FINISHED_COLUMNS], timeline)
    return training_frame(features, outcomes)


def frame(n: int, succeeded=None, start: str = "2026-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(n)
    return pd.DataFrame(
        {
            "experiment_id": [f"e{i:03d}" for i in range(n)],
            "proposed_at": pd.date_range(start, periods=n, freq="h", tz="UTC"),
            "succeeded": (np.arange(n) % 2 == 0) if succeeded is None else succeeded,
            "source": rng.choice(["a", "b"], n),
            "opportunity_type": rng.choice(["saas", "api"], n),
            "x": rng.normal(size=n),
            "revenue_minor": rng.integers(0, 100_000, n),
        }
    )


def test_split_is_time_ordered_never_shuffled():
    data = frame(80).sample(frac=1.0, random_state=3)  # rows arrive out of order
    split = time_split(data, 0.25)
    assert len(split.train) == 60 and len(split.holdout) == 20
    assert split.train["proposed_at"].max() < split.holdout["proposed_at"].min() == split.cutoff
    assert split.train["proposed_at"].is_monotonic_increasing and split.holdout["proposed_at"].is_monotonic_increasing
    assert set(split.holdout["experiment_id"]) == {f"e{i:03d}" for i in range(60, 80)}


def test_too_few_experiments_and_a_single_outcome_are_refused_clearly():
    with pytest.raises(TrainingDataError, match=r"12 finished experiment\(s\); a model needs at least 40"):
        time_split(frame(12))
    everyone_failed = frame(60, succeeded=np.zeros(60, dtype=bool))
    with pytest.raises(TrainingDataError, match=r"training part .* has 0 success\(es\) and 45 other"):
        time_split(everyone_failed, label="succeeded")
    late_successes = frame(60, succeeded=np.arange(60) >= 45)  # the holdout has only successes
    with pytest.raises(TrainingDataError, match="the training part"):
        time_split(late_successes, label="succeeded")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        time_split(frame(60), 1.0)
    with pytest.raises(TrainingDataError, match="a model needs at least 40"):
        predictors.train_success(frame(20), categorical=CATEGORICAL, numeric=["x"])


def test_success_metrics_on_a_hand_example():
    outcome = np.array([True, False, True, False])
    probability = np.array([0.9, 0.2, 0.4, 0.6])
    metrics = success_metrics(outcome, probability)
    # Pairs (positive, negative): (0.9, 0.2) (0.9, 0.6) (0.4, 0.2) ranked right, (0.4, 0.6) wrong.
    assert metrics["auc"] == pytest.approx(0.75)
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.36 + 0.36) / 4)
    assert metrics["log_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.8) + np.log(0.4) + np.log(0.4)) / 4)


def test_revenue_metrics_on_a_hand_example():
    actual = np.log1p(np.array([0, 99, 999]))
    predicted = np.log1p(np.array([9, 99, 99]))
    metrics = revenue_metrics(actual, predicted, baseline_log=float(np.log1p(99)))
    assert metrics["mae_minor"] == pytest.approx((9 + 0 + 900) / 3)
    assert metrics["rmsle"] == pytest.approx(np.sqrt((np.log(10) ** 2 + 0 + np.log(10) ** 2) / 3))
    assert metrics["baseline_rmsle"] == pytest.approx(np.sqrt((np.log(100) ** 2 + np.log(10) ** 2) / 3))


def test_calibration_table_has_deciles_with_predicted_mean_and_observed_rate():
    probability = np.repeat(np.arange(10) / 10 + 0.05, 10)  # ten groups of ten
    outcome = np.concatenate([np.arange(10) < k for k in range(10)])  # group k: k successes of 10
    table = calibration_table(outcome, probability)
    assert table["bin"].tolist() == list(range(1, 11))
    assert table["count"].tolist() == [10] * 10
    assert table["predicted_mean"].to_numpy() == pytest.approx(np.arange(10) / 10 + 0.05)
    assert table["observed_rate"].to_numpy() == pytest.approx(np.arange(10) / 10)


def test_quality_gates_refuse_a_constant_model_and_a_weak_one():
    passed, reasons = quality_gates(SUCCESS, {"auc": 0.8}, np.full(50, 0.3))
    assert not passed and reasons[0].startswith("FAIL: prediction std on the holdout ") and "constant" in reasons[0]
    passed, reasons = quality_gates(SUCCESS, {"auc": 0.52}, np.linspace(0, 1, 50))
    assert not passed and reasons[0] == "FAIL: AUC 0.520 below the minimum 0.55"
    passed, reasons = quality_gates(SUCCESS, {"auc": 0.70}, np.linspace(0, 1, 50))
    assert passed and all(r.startswith("pass: ") for r in reasons)
    passed, reasons = quality_gates(REVENUE, {"rmsle": 1.3, "baseline_rmsle": 1.2}, np.linspace(0, 9, 50))
    assert not passed and "RMSLE 1.300 is not below the constant baseline's 1.200" in reasons[0]
    assert quality_gates(REVENUE, {"rmsle": 1.1, "baseline_rmsle": 1.2}, np.linspace(0, 9, 50))[0]


def test_champion_rule():
    assert should_promote(0.70, None) == (True, "no champion to beat")
    assert should_promote(0.70, 0.65, champion="champion v1") == (
        True,
        "beats champion v1: 0.7000 vs 0.6500 on the same holdout",
    )
    assert should_promote(0.65, 0.65)[0] is False  # a tie keeps the champion
    assert should_promote(0.60, 0.65)[1].startswith("does not beat")
    assert should_promote(0.90, None, gates_passed=False) == (False, "its quality gates failed")
    # RMSLE: lower is better.
    assert should_promote(1.1, 1.2, higher_is_better=False)[0] is True
    assert should_promote(1.3, 1.2, higher_is_better=False)[0] is False
    assert should_promote(0.7, float("nan"))[0] is True


def test_the_success_predictor_learns_on_a_simulated_population():
    data = simulated(seed=11, n=1500)
    candidate = predictors.train_success(data)  # ml.features' columns
    holdout = candidate.split.holdout
    held = population(11, 1500, START).set_index("experiment_id").loc[holdout["experiment_id"]].reset_index()
    bayes = success_metrics(holdout["succeeded"].to_numpy(), bayes_success_probability(11, held, draws=200))
    assert candidate.passed, candidate.reasons
    assert candidate.metrics["auc"] > 0.62
    assert candidate.metrics["auc"] > 0.85 * bayes["auc"]
    assert candidate.tables["calibration"]["count"].sum() == len(holdout)
    # Scoring: probabilities in [0, 1], unseen categories (a new source) still score.
    unseen = holdout.head(5).assign(source="a-source-never-seen")
    probability = predictors.success_probability(candidate.model, unseen)
    assert ((probability > 0) & (probability < 1)).all()
    # Categories re-coded by value: a frame with the categories in another order scores the same.
    reordered = holdout.assign(
        source=pd.Categorical(holdout["source"], categories=sorted(set(holdout["source"]))[::-1])
    )
    assert predictors.success_probability(candidate.model, reordered) == pytest.approx(candidate.predictions)


def test_the_revenue_predictor_beats_the_constant_and_predicts_minor_units():
    data = simulated(seed=12, n=800)
    candidate = predictors.train_revenue(data)
    assert candidate.params["objective"] == "reg:pseudohubererror"
    assert candidate.passed, candidate.reasons
    assert candidate.metrics["rmsle"] < candidate.metrics["baseline_rmsle"]
    revenue = predictors.predicted_revenue(candidate.model, candidate.split.holdout)
    assert revenue.dtype == np.int64 and (revenue >= 0).all() and revenue.std() > 0


def test_score_takes_the_champion_probability_as_confidence_where_there_is_one():
    from core.discovery.scoring import score
    from core.discovery.weights import Weights

    features = pd.DataFrame(
        {
            "opportunity_id": ["a", "b", "c"],
            "cluster_id": ["a", "b", "c"],
            "opportunity_type": "saas",
            "revenue_signal": "none",
            "est_monthly_revenue_cents": 0,
            "days_to_revenue": 30,
            "capability_match": 0.5,
            "age_days": 0.0,
            "confidence": [0.9, 0.9, 0.9],
        }
    )
    seed = score(features, Weights()).set_index("opportunity_id")
    assert seed["factor_confidence"].tolist() == pytest.approx([0.18] * 3)
    # Row b has no probability (NaN): it keeps the seed's confidence; the others take the model's.
    learned = score(features, Weights(), pd.Series([0.1, np.nan, 0.5])).set_index("opportunity_id")
    assert learned.loc[["a", "b", "c"], "factor_confidence"].tolist() == pytest.approx([0.02, 0.18, 0.10])
    assert learned.loc["b", "rank"] == 1


def test_a_trained_model_that_can_only_predict_a_constant_fails_its_gates():
    data = frame(80).assign(source="a", opportunity_type="saas", x=1.0)  # nothing to split on
    candidate = predictors.train_success(data, categorical=CATEGORICAL, numeric=["x"])
    assert not candidate.passed
    assert candidate.reasons[0].startswith("FAIL: prediction std on the holdout")
    assert should_promote(candidate.metrics["auc"], None, gates_passed=candidate.passed) == (
        False,
        "its quality gates failed",
    )
    revenue = predictors.train_revenue(data, categorical=CATEGORICAL, numeric=["x"])
    assert not revenue.passed and revenue.reasons[0].startswith("FAIL: prediction std")
