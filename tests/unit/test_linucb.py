"""ml.linucb: the ridge estimate recovers a linear reward, the width is the model's uncertainty (it
shrinks with data, grows away from it), alpha trades the two, the encoding is fitted on history,
bad input is refused naming the column, and over a few rounds LinUCB earns more than chance."""

import numpy as np
import pandas as pd
import pytest

from core.experiments.allocation import Claim, greedy_fill
from ml.linucb import (
    NO_HISTORY,
    REWARD_CEILING,
    REWARD_FLOOR,
    Encoding,
    LinUCB,
    LinUCBInputError,
    allocation_round,
    fit,
    reward,
)

NUMERIC = ["confidence", "est_monthly_revenue_cents", "budget_minor"]
CATEGORICAL = ["source", "opportunity_type"]
TRUE_INTERCEPT = 0.1
TRUE_SLOPES = {"confidence": 0.8, "est_monthly_revenue_cents": 0.4e-5, "budget_minor": -2e-6}
SOURCE_EFFECT = {"hackernews": 0.2, "reddit": -0.3, "github": 0.0}


def population(rng: np.random.Generator, n: int, prefix: str = "e") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "experiment_id": [f"{prefix}{i:05d}" for i in range(n)],
            "confidence": rng.uniform(0, 1, n),
            "est_monthly_revenue_cents": rng.uniform(10_000, 200_000, n),
            "budget_minor": rng.uniform(5_000, 50_000, n),
            "source": rng.choice(list(SOURCE_EFFECT), n),
            "opportunity_type": rng.choice(["saas", "content", "freelance_gig"], n),
        }
    )


def true_reward(frame: pd.DataFrame) -> np.ndarray:
    linear = TRUE_INTERCEPT + sum(frame[c].to_numpy() * slope for c, slope in TRUE_SLOPES.items())
    return linear + frame["source"].map(SOURCE_EFFECT).to_numpy()


def test_theta_recovers_a_known_linear_reward():
    rng = np.random.default_rng(1)
    history = population(rng, 3_000)
    observed = true_reward(history) + rng.normal(0, 0.1, len(history))
    model = fit(history, observed, numeric=NUMERIC, categorical=CATEGORICAL, alpha=1.0)
    fresh = population(rng, 500, "c")
    predicted = model.priorities(fresh)
    assert np.abs(predicted["mean"].to_numpy() - true_reward(fresh)).max() < 0.03
    assert model.learned_from == 3_000
    # In standardized units: confidence ~ U(0, 1) has sd 1/sqrt(12), so its coefficient is 0.8 * that.
    assert model.coefficients()["confidence"] == pytest.approx(0.8 / np.sqrt(12), abs=0.01)
    # On raw vectors (an intercept column and one feature) theta is the generating coefficients.
    x = np.column_stack([np.ones(2_000), rng.normal(0, 1, 2_000)])
    bandit = LinUCB(2, ridge=1.0).update(x, 0.5 - 0.25 * x[:, 1] + rng.normal(0, 0.05, 2_000))
    assert bandit.theta == pytest.approx([0.5, -0.25], abs=0.01)


def test_the_width_shrinks_as_experiments_finish():
    rng = np.random.default_rng(2)
    history = population(rng, 1_000)
    observed = true_reward(history) + rng.normal(0, 0.1, len(history))
    candidate = population(rng, 1, "c")
    widths = []
    for n in (5, 50, 500):
        model = fit(history.iloc[:n], observed[:n], numeric=NUMERIC, categorical=CATEGORICAL)
        widths.append(model.priorities(candidate)["width"].item())
    assert widths[0] > widths[1] > widths[2] > 0
    assert widths[2] < 0.2 * widths[0]


def test_alpha_zero_is_greedy_on_the_mean_and_alpha_adds_the_width():
    rng = np.random.default_rng(3)
    history = population(rng, 40)
    observed = true_reward(history)
    candidates = population(rng, 30, "c")
    greedy = fit(history, observed, numeric=NUMERIC, categorical=CATEGORICAL, alpha=0.0).priorities(candidates)
    assert (greedy["ucb"] == greedy["mean"]).all()
    optimistic = fit(history, observed, numeric=NUMERIC, categorical=CATEGORICAL, alpha=2.0).priorities(candidates)
    assert optimistic["mean"].to_numpy() == pytest.approx(greedy["mean"].to_numpy())
    assert optimistic["ucb"].to_numpy() == pytest.approx((greedy["mean"] + 2.0 * greedy["width"]).to_numpy())


def test_a_candidate_unlike_anything_seen_gets_a_larger_width():
    rng = np.random.default_rng(4)
    history = population(rng, 200)
    model = fit(history, true_reward(history), numeric=NUMERIC, categorical=CATEGORICAL)
    typical = history.iloc[[0]].assign(experiment_id="typical")
    far = typical.assign(experiment_id="far", est_monthly_revenue_cents=5_000_000.0)  # 25x the largest seen
    new_source = typical.assign(experiment_id="new-source", source="producthunt")  # never seen
    widths = model.priorities(pd.concat([typical, far, new_source])).set_index("experiment_id")["width"]
    assert widths["far"] > 10 * widths["typical"]
    assert widths["new-source"] > widths["typical"]


def test_the_encoding_is_fitted_on_history_and_unknown_categories_encode_as_zeros():
    history = pd.DataFrame(
        {
            "experiment_id": ["h1", "h2", "h3"],
            "confidence": [0.2, 0.4, 0.6],
            "budget_minor": [10_000.0, 10_000.0, 10_000.0],  # constant: scaled by its magnitude
            "source": ["reddit", "hackernews", "reddit"],
        }
    )
    encoding = Encoding.fit(history, numeric=["confidence", "budget_minor"], categorical=["source"])
    assert encoding.names == ["intercept", "confidence", "budget_minor", "source=hackernews", "source=reddit"]
    candidates = pd.DataFrame(
        {
            "experiment_id": ["c1", "c2", "c3"],
            "confidence": [0.4, 0.4 + np.std([0.2, 0.4, 0.6]), 0.4],
            "budget_minor": [10_000.0, 20_000.0, 10_000.0],
            "source": ["hackernews", "github", None],
        }
    )
    x = encoding.transform(candidates)
    assert x[0] == pytest.approx([1, 0, 0, 1, 0])
    assert x[1] == pytest.approx([1, 1, 1, 0, 0])  # one sd above; twice the constant; unknown source
    assert x[2] == pytest.approx([1, 0, 0, 0, 0])  # a missing category is an unknown one
    # Whatever dtype the warehouse returns the text in (pandas' string dtype has its own NA).
    as_strings = candidates.assign(source=pd.array(["hackernews", "github", pd.NA], dtype="string"))
    assert encoding.transform(as_strings) == pytest.approx(x)


def test_with_no_history_the_model_is_the_prior_encoded_on_the_candidates():
    rng = np.random.default_rng(5)
    candidates = population(rng, 4, "c")
    model = fit(candidates.iloc[:0], [], numeric=NUMERIC, categorical=CATEGORICAL, encode_on=candidates)
    scored = model.priorities(candidates)
    assert model.learned_from == 0
    assert (scored["mean"] == 0).all() and (scored["width"] > 0).all()


def test_the_reward_is_net_per_unit_of_budget_clipped():
    assert reward([5_000, -20_000, 200_000, 10], [10_000, 10_000, 10_000, 0]).tolist() == [
        0.5,
        REWARD_FLOOR,
        REWARD_CEILING,
        REWARD_CEILING,  # no budget counts as one minor unit
    ]
    with pytest.raises(LinUCBInputError, match="net_minor has 1 missing"):
        reward([float("nan")], [1_000])


def test_bad_input_is_refused_naming_the_column_and_the_experiment():
    rng = np.random.default_rng(6)
    history = population(rng, 10)
    model = fit(history, true_reward(history), numeric=NUMERIC, categorical=CATEGORICAL)
    with pytest.raises(LinUCBInputError, match=r"numeric feature 'confidence' is NaN or infinite for c00002"):
        model.priorities(population(rng, 3, "c").assign(confidence=[0.1, 0.2, np.nan]))
    with pytest.raises(LinUCBInputError, match=r"feature columns \['budget_minor', 'source'\] are missing"):
        model.priorities(population(rng, 3, "c").drop(columns=["budget_minor", "source"]))
    with pytest.raises(LinUCBInputError, match="numeric feature 'budget_minor' has values that are not numbers"):
        model.priorities(population(rng, 2, "c").assign(budget_minor=["lots", "more"]))
    with pytest.raises(LinUCBInputError, match="the reward is NaN or infinite for e00001"):
        fit(history, [0.0, np.nan, *[0.0] * 8], numeric=NUMERIC, categorical=CATEGORICAL)
    with pytest.raises(LinUCBInputError, match="10 experiments but 3 rewards"):
        fit(history, [0.0] * 3, numeric=NUMERIC, categorical=CATEGORICAL)
    with pytest.raises(LinUCBInputError, match="alpha .* must be a number >= 0"):
        LinUCB(3, alpha=-1.0)
    with pytest.raises(LinUCBInputError, match="vectors of 2 entries, the model has 3"):
        LinUCB(3).predict(np.ones((1, 2)))


def test_over_a_few_rounds_linucb_earns_more_than_a_uniform_random_allocation():
    """Each round 30 candidates ask for budgets; the round's money funds about six. LinUCB ranks them
    and the allocator's greedy fill funds in that order; the baseline funds a random order.
    Rewards are noisy draws of a linear function of the features; the net is reward x budget."""
    rounds, per_round, money = 8, 30, 150_000
    totals = {"linucb": 0.0, "random": 0.0}
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        seen, rewards = [], []
        for round_ in range(rounds):
            candidates = population(rng, per_round, f"r{round_}-")
            history = pd.concat(seen) if seen else candidates.iloc[:0]
            model = fit(history, rewards, numeric=NUMERIC, categorical=CATEGORICAL, alpha=1.0, encode_on=candidates)
            order = {
                "linucb": model.priorities(candidates)["ucb"].to_numpy(),
                "random": rng.permutation(per_round).astype(float) + 1.0,
            }
            for policy, priority in order.items():
                claims = [
                    Claim(key, float(p), int(budget))
                    for key, p, budget in zip(
                        candidates["experiment_id"], priority, candidates["budget_minor"], strict=True
                    )
                ]
                given = greedy_fill(claims, money, {})
                funded = candidates[[given[k] > 0 for k in candidates["experiment_id"]]]
                realized = true_reward(funded) + rng.normal(0, 0.3, len(funded))
                totals[policy] += float((realized * funded["budget_minor"].to_numpy()).sum())
                if policy == "linucb":  # only what LinUCB funded is learned from, as in production
                    seen.append(funded)
                    rewards.extend(realized)
    assert totals["linucb"] > totals["random"] + 0.25 * abs(totals["random"]), totals


def _round_inputs(rng: np.random.Generator):
    features = population(rng, 60)
    finished = features.iloc[:50]
    outcomes = pd.DataFrame(
        {
            "experiment_id": finished["experiment_id"],
            "net_minor": (true_reward(finished) * finished["budget_minor"]).round().astype("int64"),
        }
    )
    return features, outcomes, list(features["experiment_id"].iloc[50:])


def test_a_round_scores_the_candidates_and_learns_from_the_finished_ones():
    features, outcomes, candidates = _round_inputs(np.random.default_rng(7))
    result = allocation_round(features, outcomes, candidates, alpha=0.5, numeric=NUMERIC, categorical=CATEGORICAL)
    assert result.learned_from == 50 and not result.fallbacks and not result.skipped
    assert sorted(result.priorities["experiment_id"]) == sorted(candidates)
    scored = result.priorities.set_index("experiment_id")
    expected = true_reward(features.set_index("experiment_id").loc[candidates])
    assert np.abs(scored.loc[candidates, "mean"].to_numpy() - expected).max() < 0.3  # 50 noiseless points, ridge
    assert scored["ucb"].to_numpy() == pytest.approx((scored["mean"] + 0.5 * scored["width"]).to_numpy())
    metrics = result.metrics()
    assert metrics["learned_from"] == 50.0 and metrics["ranked_by_linucb"] == 10.0 and metrics["alpha"] == 0.5
    assert all(isinstance(v, float) for v in metrics.values())


def test_a_round_never_raises_for_a_bad_row_it_falls_back_or_skips_saying_why():
    features, outcomes, candidates = _round_inputs(np.random.default_rng(8))
    features = features.copy()
    features.loc[features["experiment_id"] == candidates[0], "confidence"] = np.nan
    features.loc[features["experiment_id"] == "e00003", "budget_minor"] = np.inf
    features = features[features["experiment_id"] != candidates[1]]
    outcomes = pd.concat([outcomes, pd.DataFrame({"experiment_id": ["gone"], "net_minor": [5]})])
    result = allocation_round(features, outcomes, candidates, numeric=NUMERIC, categorical=CATEGORICAL)
    assert result.fallbacks == {
        candidates[0]: "ranked by its score: its feature 'confidence' is missing, infinite or not a number",
        candidates[1]: "ranked by its score: no features for it in learning.experiment_features yet",
    }
    assert result.skipped == {
        "e00003": "its feature 'budget_minor' is missing, infinite or not a number",
        "gone": "no features for it in learning.experiment_features",
    }
    assert result.learned_from == 49 and len(result.priorities) == 8


def test_a_round_with_nothing_learned_or_an_unreadable_table_ranks_every_candidate_by_score():
    features, outcomes, candidates = _round_inputs(np.random.default_rng(9))
    nothing = allocation_round(features, outcomes.iloc[:0], candidates, numeric=NUMERIC, categorical=CATEGORICAL)
    assert nothing.priorities.empty and nothing.learned_from == 0
    assert set(nothing.fallbacks.values()) == {NO_HISTORY}
    old = allocation_round(
        features.drop(columns=["source"]), outcomes, candidates, numeric=NUMERIC, categorical=CATEGORICAL
    )
    assert (
        old.fallbacks[candidates[0]] == "ranked by its score: learning.experiment_features lacks the columns ['source']"
    )
    with pytest.raises(LinUCBInputError, match="alpha"):
        allocation_round(features, outcomes, candidates, alpha=float("nan"), numeric=NUMERIC, categorical=CATEGORICAL)
