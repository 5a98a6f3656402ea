"""The strategy optimizer (ml/strategy.py): the simplex projection, the momentum arithmetic, that
learning moves the weights toward the factor that predicts outcomes, that the backtest refuses
weights that rank worse, and that bad input fails saying what and where."""

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from core.discovery.weights import FACTORS, Weights
from ml.strategy import (
    StrategyError,
    StrategySettings,
    history,
    learn,
    momentum_step,
    optimize,
    project_to_simplex,
    top_net,
    weights_from,
)

START = pd.Timestamp("2026-09-01", tz="UTC")


def proposals(n: int, seed: int = 0) -> pd.DataFrame:
    """n proposals an hour apart whose features spread each factor over most of [0, 1]."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "experiment_id": [f"exp-{i:04d}" for i in range(n)],
            "proposed_at": pd.date_range(START, periods=n, freq="h"),
            "est_monthly_revenue_cents": rng.integers(0, 1_000_000, n),
            "confidence": rng.uniform(0, 1, n),
            "days_to_revenue": rng.uniform(0, 120, n),
            "capability_match": rng.uniform(0, 1, n),
            "age_days": rng.uniform(0, 30, n),
        }
    )


def outcomes_driven_by(frame: pd.DataFrame, column: str, seed: int = 1, noise: int = 5_000) -> pd.DataFrame:
    """Realized net that rises with one feature, plus noise."""
    rng = np.random.default_rng(seed)
    net = frame[column] / frame[column].max() * 100_000 + rng.normal(0, noise, len(frame))
    return pd.DataFrame({"experiment_id": frame["experiment_id"], "net_minor": net.round().astype("int64")})


# -- the pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        ([0.4, 0.2, 0.15, 0.15, 0.1], [0.4, 0.2, 0.15, 0.15, 0.1]),  # on the simplex: unchanged
        ([0.5, 0.5, 0.5, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]),  # shifted down equally
        ([2.0, 0.0, 0.0, 0.0, -1.0], [1.0, 0.0, 0.0, 0.0, 0.0]),  # far outside: the nearest vertex
        ([-1.0, -1.0, -1.0, -1.0, -1.0], [0.2] * 5),  # all negative: the centre
    ],
)
def test_the_projection_lands_on_the_nearest_point_of_the_simplex(vector, expected):
    projected = project_to_simplex(np.array(vector))
    assert projected == pytest.approx(expected)
    assert projected.min() >= 0 and projected.sum() == pytest.approx(1.0)


def test_the_projection_is_the_nearest_point_among_random_simplex_points():
    rng = np.random.default_rng(3)
    vector = rng.normal(0, 1, 5)
    projected = project_to_simplex(vector)
    others = rng.dirichlet(np.ones(5), 2_000)
    assert np.linalg.norm(vector - projected) <= np.linalg.norm(vector - others, axis=1).min() + 1e-12


def test_momentum_step_by_hand():
    weights = np.array([0.4, 0.2, 0.15, 0.15, 0.1])
    velocity = np.array([0.01, 0.0, 0.0, 0.0, -0.01])
    gradient = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    new, v = momentum_step(weights, velocity, gradient, learning_rate=0.1, momentum=0.5)
    # v = 0.5 * velocity + 0.1 * gradient = [0.005, 0.1, 0, 0, -0.005]; w + v sums to 1.1, so the
    # projection takes 0.1 / 5 = 0.02 off each (all stay positive).
    assert v == pytest.approx([0.005, 0.1, 0.0, 0.0, -0.005])
    assert new == pytest.approx([0.385, 0.28, 0.13, 0.13, 0.075])


def test_top_net_sums_the_net_of_the_k_best_scored_and_ties_keep_their_order():
    net = np.array([100, -50, 300, 20, -10])
    assert top_net(np.array([0.9, 0.1, 0.8, 0.5, 0.2]), net, 2) == 400
    assert top_net(np.array([0.1, 0.9, 0.2, 0.5, 0.8]), net, 2) == -60
    assert top_net(np.zeros(5), net, 2) == 50  # equal scores: the earlier proposals first


def test_rounded_weights_still_sum_to_one():
    weights = weights_from(np.array([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0]))
    assert sum(asdict(weights).values()) == pytest.approx(1.0, abs=1e-12)


# -- learning and the backtest ------------------------------------------------------------------


def test_the_weights_move_toward_the_factor_that_predicts_outcomes_and_deploy():
    frame = proposals(240)
    result = learn(frame, outcomes_driven_by(frame, "capability_match"), Weights())
    old, new = asdict(result.old), asdict(result.new)
    assert new["capability"] > old["capability"] + 0.2
    assert max(new, key=new.get) == "capability"
    assert result.gradient["capability"] == max(result.gradient.values())
    assert result.backtest.new > result.backtest.old * 1.05
    assert result.backtest.new_correlation > result.backtest.old_correlation
    assert result.deploy and result.reason.startswith("deployed")
    # Time-ordered: the step learned from the earliest 70%, the backtest ranked the rest.
    assert (result.trained_on, result.backtest.holdout) == (168, 72)
    assert result.backtest.holdout_from == START + pd.Timedelta(hours=168)
    assert sum(asdict(result.new).values()) == pytest.approx(1.0) and min(new.values()) >= 0


def test_the_velocity_carries_the_previous_run_s_momentum():
    frame = proposals(120)
    outcomes = outcomes_driven_by(frame, "confidence")
    settings = StrategySettings(steps=1, learning_rate=0.01)
    still = learn(frame, outcomes, Weights(), None, settings)
    pushed = learn(frame, outcomes, Weights(), {"confidence": 0.05}, settings)
    assert pushed.velocity["confidence"] == pytest.approx(0.9 * 0.05 + still.velocity["confidence"])
    assert pushed.new.confidence > still.new.confidence


def test_the_backtest_refuses_weights_that_rank_worse():
    # Learned from a past where revenue paid; the holdout (the later 30%) rewards the opposite.
    frame = proposals(200)
    outcomes = outcomes_driven_by(frame, "est_monthly_revenue_cents")
    later = frame.index >= 140
    outcomes.loc[later, "net_minor"] = -outcomes.loc[later, "net_minor"]
    result = learn(frame, outcomes, Weights(), settings=StrategySettings(margin=0.0))
    assert result.new.revenue > Weights().revenue  # the step did follow its training data
    # ... and only its training data: the holdout's outcomes do not move the learned weights.
    unflipped = learn(frame, outcomes_driven_by(frame, "est_monthly_revenue_cents"), Weights())
    assert unflipped.new == result.new and unflipped.deploy
    assert result.backtest.new < result.backtest.old
    assert not result.deploy
    assert result.reason.startswith("rejected") and "< margin" in result.reason


def test_a_gain_below_the_margin_is_rejected():
    frame = proposals(120)
    outcomes = outcomes_driven_by(frame, "capability_match")
    result = learn(frame, outcomes, Weights(), settings=StrategySettings(margin=10.0))
    assert result.backtest.new > result.backtest.old and not result.deploy
    assert "< margin 1000%" in result.reason


def test_the_smallest_history_still_learns_from_two_and_backtests_on_two():
    frame = proposals(4)
    settings = StrategySettings(min_experiments=4, holdout_fraction=0.9)
    result = learn(frame, outcomes_driven_by(frame, "confidence"), Weights(), settings=settings)
    assert (result.trained_on, result.backtest.holdout, result.backtest.k) == (2, 2, 2)


def test_outcomes_that_do_not_vary_teach_nothing():
    frame = proposals(60)
    flat = pd.DataFrame({"experiment_id": frame["experiment_id"], "net_minor": 1_000})
    result = learn(frame, flat, Weights())
    assert result.new == Weights() and not result.deploy
    assert "nothing to learn" in result.reason


# -- bad input ----------------------------------------------------------------------------------


def test_missing_columns_are_named():
    frame = proposals(40).drop(columns=["confidence"])
    with pytest.raises(StrategyError, match=r"proposals lacks column\(s\) \['confidence'\]"):
        learn(frame, outcomes_driven_by(proposals(40), "age_days"), Weights())
    with pytest.raises(StrategyError, match=r"outcomes lacks column\(s\) \['net_minor'\]"):
        learn(proposals(40), pd.DataFrame({"experiment_id": ["exp-0000"]}), Weights())


def test_a_missing_value_names_the_column_and_the_experiment():
    frame = proposals(40)
    frame.loc[7, "capability_match"] = np.nan
    with pytest.raises(StrategyError, match=r"proposals.capability_match .* 1 row\(s\), e.g. .*\['exp-0007'\]"):
        history(frame, outcomes_driven_by(proposals(40), "age_days"))
    outcomes = outcomes_driven_by(proposals(40), "age_days").astype({"net_minor": "object"})
    outcomes.loc[3, "net_minor"] = "lots"
    with pytest.raises(StrategyError, match=r"outcomes.net_minor .* \['exp-0003'\]"):
        history(proposals(40), outcomes)


def test_duplicates_naive_times_and_too_little_history_are_refused():
    frame = proposals(40)
    outcomes = outcomes_driven_by(frame, "age_days")
    with pytest.raises(StrategyError, match=r"more than one row for experiment\(s\) \['exp-0000'\]"):
        history(pd.concat([frame, frame.head(1)]), outcomes)
    with pytest.raises(StrategyError, match="timezone-aware"):
        history(frame.assign(proposed_at=frame["proposed_at"].dt.tz_localize(None)), outcomes)
    with pytest.raises(StrategyError, match="40 finished experiment.*at least 50"):
        learn(frame, outcomes, Weights(), settings=StrategySettings(min_experiments=50))
    with pytest.raises(StrategyError, match="velocity has factor"):
        learn(frame, outcomes, Weights(), velocity={"luck": 1.0})
    with pytest.raises(StrategyError, match="current must be"):
        optimize(history(frame, outcomes), dict.fromkeys(FACTORS, 0.2))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"learning_rate": 0.0}, "learning_rate must be a positive number"),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        ({"holdout_fraction": 1.0}, r"holdout_fraction must be in \(0, 1\)"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"margin": -0.1}, "margin must be non-negative"),
        ({"top_fraction": 0.0}, r"top_fraction must be in \(0, 1\]"),
        ({"shrinkage": float("nan")}, "shrinkage must be a non-negative number"),
        ({"min_experiments": 3}, "min_experiments must be at least 4"),
    ],
)
def test_bad_settings_say_which(setting, message):
    with pytest.raises(StrategyError, match=message):
        StrategySettings(**setting)


def test_the_projection_refuses_non_finite_input():
    with pytest.raises(StrategyError, match="finite numbers"):
        project_to_simplex(np.array([0.5, np.nan, 0.5]))


# -- on the simulated market -------------------------------------------------------------------


def test_on_the_simulated_market_learning_helps_and_what_deploys_earns_more():
    """3,000 finished experiments of core.simulator.population, then a fresh week of 1,000
    candidates: the top 100 by the learned weights against the top 100 by the seed's, judged by
    their expected net under the hidden truth. The seed's weights are already good here (within
    about 10% of the best weights on the simplex), so the gain is small; what must hold is that the
    learned weights help on average and that every version the backtest deploys earns more."""
    from core.discovery.scoring import weighted_score
    from core.simulator.population import expected_net_minor, population, realize

    ratios, deployed = [], []
    for seed in range(6):
        past = population(seed, 3_000, START, days=90)
        result = learn(past, realize(seed, past), Weights())
        fresh = population(seed + 100, 1_000, START, days=7)
        expected = expected_net_minor(seed + 100, fresh, draws=40).to_numpy()

        def top(weights: Weights, fresh=fresh, expected=expected) -> float:
            order = np.argsort(-weighted_score(fresh, weights).to_numpy(), kind="stable")
            return float(expected[order[:100]].sum())

        ratios.append(top(result.new) / top(Weights()))
        if result.deploy:
            deployed.append(ratios[-1])
    assert np.mean(ratios) > 1.02, ratios
    assert deployed and min(deployed) > 1.0, (deployed, ratios)
