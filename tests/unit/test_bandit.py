"""The source bandit (ml/bandit.py): the conjugate posteriors by hand, choose_sources' guarantees
(the exploration floor, never-tried sources) measured over many cycles with a fixed generator, the
errors bad input gets, and a short regret run as a test of direction."""

import math

import numpy as np
import pandas as pd
import pytest

from ml.bandit import (
    POSTERIOR_COLUMNS,
    BanditError,
    Prior,
    bernoulli_kl,
    choose_sources,
    favoured,
    lai_robbins_constant,
    normalize_roi,
    posterior,
    posterior_metrics,
    prepare,
    simulate,
)

OUTCOMES = pd.DataFrame(
    {
        "source": ["hackernews", "hackernews", "hackernews", "github", "reddit", "reddit"],
        "succeeded": [True, True, False, False, True, False],
        "roi": [1.5, 0.25, -0.75, None, 3.0, -1.0],
    }
)


def _row(table: pd.DataFrame, source: str) -> pd.Series:
    return table.set_index("source").loc[source]


def test_the_beta_posterior_counts_successes_and_failures_on_a_uniform_prior():
    table = posterior(OUTCOMES, sources=["producthunt"])
    assert list(table.columns) == list(POSTERIOR_COLUMNS)
    hn = _row(table, "hackernews")
    assert (hn.experiments, hn.successes, hn.failures) == (3, 2, 1)
    assert (hn.alpha, hn.beta) == (3.0, 2.0)
    assert hn["mean"] == pytest.approx(3 / 5)
    # A source with no outcome is the prior itself: Beta(1, 1), mean 1/2.
    ph = _row(table, "producthunt")
    assert (ph.experiments, ph.alpha, ph.beta, ph["mean"]) == (0, 1.0, 1.0, 0.5)
    # Best posterior mean first.
    assert table["mean"].is_monotonic_decreasing


def test_the_roi_posterior_is_the_normal_inverse_gamma_update_of_asinh_roi():
    table = posterior(OUTCOMES)
    z = np.arcsinh([1.5, 0.25, -0.75])
    n, mean = 3, z.mean()
    ss = ((z - mean) ** 2).sum()
    hn = _row(table, "hackernews")
    # Prior NIG(0, 1, 2, 1).
    assert hn.roi_experiments == 3
    assert hn.roi_kappa == 1 + n
    assert hn.roi_mu == pytest.approx(n * mean / (1 + n))
    assert hn.roi_shape == 2 + n / 2
    assert hn.roi_rate == pytest.approx(1 + ss / 2 + n * mean**2 / (2 * (1 + n)))
    nu = 2 * hn.roi_shape
    assert hn.roi_mean_sd == pytest.approx(math.sqrt(hn.roi_rate / (hn.roi_shape * hn.roi_kappa) * nu / (nu - 2)))
    # An experiment without an ROI (nothing spent) counts for success only.
    github = _row(table, "github")
    assert (github.experiments, github.roi_experiments, github.roi_mu, github.roi_rate) == (1, 0, 0.0, 1.0)
    # ROI -1 (everything lost) is a finite normalized value.
    assert normalize_roi([-1.0])[0] == pytest.approx(-0.881373587)


def test_one_batch_or_row_by_row_gives_the_same_posterior():
    whole = posterior(OUTCOMES)
    # The NIG update applied one observation at a time, from the prior.
    mu, kappa, shape, rate = 0.0, 1.0, 2.0, 1.0
    for x in np.arcsinh([1.5, 0.25, -0.75]):
        rate += kappa * (x - mu) ** 2 / (2 * (kappa + 1))
        mu = (kappa * mu + x) / (kappa + 1)
        kappa, shape = kappa + 1, shape + 0.5
    hn = _row(whole, "hackernews")
    assert (hn.roi_mu, hn.roi_kappa, hn.roi_shape, hn.roi_rate) == pytest.approx((mu, kappa, shape, rate))
    shuffled = posterior(OUTCOMES.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(whole, shuffled)


def test_a_custom_prior_shifts_the_posterior():
    table = posterior(OUTCOMES, prior=Prior(alpha=2, beta=8))
    hn = _row(table, "hackernews")
    assert (hn.alpha, hn.beta) == (4.0, 9.0)
    with pytest.raises(BanditError, match=r"Prior.beta=0"):
        Prior(beta=0)


def test_no_outcomes_at_all_gives_prior_rows_for_the_named_sources():
    empty = OUTCOMES.iloc[0:0]
    table = posterior(empty, sources=["b", "a"])
    assert table["source"].tolist() == ["a", "b"]
    assert (table["experiments"] == 0).all()
    assert favoured(table) is None


def test_the_favoured_source_says_why():
    source, why = favoured(posterior(OUTCOMES, sources=["producthunt"]))
    # producthunt's prior mean 0.5 is below hackernews' 0.6; an untried source is never "favoured".
    assert source == "hackernews"
    assert "0.600" in why and "3 experiment(s), 2 succeeded" in why and "next reddit at 0.500" in why
    metrics = posterior_metrics(posterior(OUTCOMES))
    assert metrics["hackernews.success_mean"] == pytest.approx(0.6)
    assert metrics["experiments"] == 6.0 and metrics["sources"] == 3.0


# -- choose_sources ------------------------------------------------------------------------------


def _table(counts: dict[str, tuple[int, int]]) -> pd.DataFrame:
    rows = [(s, w, f) for s, (w, f) in counts.items()]
    outcomes = pd.DataFrame(
        [(s, True, 0.5) for s, w, _ in rows for _ in range(w)]
        + [(s, False, -0.5) for s, _, f in rows for _ in range(f)],
        columns=["source", "succeeded", "roi"],
    )
    return posterior(outcomes)


def test_a_hopeless_source_is_still_queried_at_the_exploration_floor():
    # "bad" never wins a Thompson draw against two near-certain sources: it is queried only through
    # the floor, so its frequency over many cycles estimates the floor.
    table = prepare(_table({"good": (95, 5), "fine": (90, 10), "bad": (0, 100)}))
    rng = np.random.default_rng(11)
    cycles = 4000
    for floor in (0.0, 0.2, 0.5):
        picks = [
            choose_sources(table, ["good", "fine", "bad"], k=1, exploration_floor=floor, rng=rng) for _ in range(cycles)
        ]
        bad = sum("bad" in choice.sources for choice in picks) / cycles
        assert abs(bad - floor) <= 4 * math.sqrt(floor * (1 - floor) / cycles) + 1e-9, (floor, bad)
        # The better two: one by its draw every cycle, the other by its draw or the floor.
        assert all(len(choice.sources) >= 1 for choice in picks)
        assert sum("good" in c.sources for c in picks) / cycles > 0.6
    choice = choose_sources(table, ["good", "fine", "bad"], k=1, exploration_floor=0.5, rng=np.random.default_rng(1))
    ranked = [s for s in choice.sources if "ranked 1 of 3" in choice.reasons[s]]
    assert len(ranked) == 1 and set(choice.draws) == {"good", "fine", "bad"}


def test_every_source_has_at_least_the_floor_whatever_the_rule():
    table = prepare(_table({"a": (3, 7), "b": (5, 5), "c": (1, 9), "d": (8, 2), "e": (0, 10)}))
    rng = np.random.default_rng(5)
    cycles, floor = 3000, 0.3
    counts = dict.fromkeys("abcde", 0)
    for _ in range(cycles):
        for source in choose_sources(table, list("abcde"), exploration_floor=floor, rng=rng).sources:
            counts[source] += 1
    lowest = min(counts.values()) / cycles
    assert lowest >= floor - 4 * math.sqrt(floor * (1 - floor) / cycles)
    # The rule (k None) is half, rounded up, by draw: d, the best, nearly always.
    assert counts["d"] / cycles > 0.95


def test_a_source_never_tried_is_always_queried():
    table = _table({"a": (50, 0), "b": (0, 50)})
    # "new" is not in the table; "c" is in it with no experiment yet (a prior-only row).
    table = pd.concat([table, posterior(OUTCOMES.iloc[0:0], sources=["c"])], ignore_index=True)
    rng = np.random.default_rng(0)
    for _ in range(200):
        choice = choose_sources(table, ["a", "b", "c", "new"], k=1, exploration_floor=0.0, rng=rng)
        assert {"c", "new"} <= set(choice.sources)
        assert choice.reasons["new"] == "no outcome yet: always queried"
        assert "b" not in choice.sources  # floor 0 and a hopeless posterior
    # No posterior at all: every source.
    assert choose_sources(None, ["x", "y"], rng=rng).sources == ("x", "y")


def test_a_source_removed_from_the_configuration_is_not_queried():
    table = _table({"gone": (10, 0), "kept": (0, 10)})
    choice = choose_sources(table, ["kept"], k=1, exploration_floor=0.0, rng=np.random.default_rng(2))
    assert choice.sources == ("kept",)


def test_the_roi_variant_ranks_by_the_gaussian_posterior():
    outcomes = pd.DataFrame(
        {
            "source": ["rich"] * 30 + ["poor"] * 30,
            # Same success rate, very different money.
            "succeeded": [True, False] * 30,
            "roi": [4.0, 2.0] * 15 + [-0.9, -0.5] * 15,
        }
    )
    table = prepare(posterior(outcomes))
    rng = np.random.default_rng(4)
    by_roi = [
        choose_sources(table, ["rich", "poor"], k=1, exploration_floor=0.0, rng=rng, reward="roi") for _ in range(200)
    ]
    assert all(c.sources == ("rich",) for c in by_roi)
    by_success = [choose_sources(table, ["rich", "poor"], k=1, exploration_floor=0.0, rng=rng) for _ in range(400)]
    share = sum(c.sources == ("rich",) for c in by_success) / 400
    assert 0.35 < share < 0.65  # a coin toss between equal Beta posteriors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.assign(successes=t["successes"] - 5), r"posterior.successes: counts cannot be negative"),
        (lambda t: t.drop(columns=["alpha"]), r"posterior: missing column\(s\) \['alpha'\]"),
        (lambda t: t.rename(columns={"mean": "avg"}), r"missing column\(s\) \['mean'\]"),
        (lambda t: t.assign(beta=0.0), r"posterior.beta: every value must be positive"),
        (lambda t: t.assign(experiments=1.5), r"posterior.experiments: counts must be whole numbers"),
        (lambda t: pd.concat([t, t.head(1)]), r"source\(s\) \['hackernews'\] twice"),
    ],
)
def test_choose_sources_refuses_a_bad_posterior(change, message):
    table = change(posterior(OUTCOMES))
    with pytest.raises(BanditError, match=message):
        choose_sources(table, ["hackernews", "github", "reddit"], rng=np.random.default_rng(0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exploration_floor": 1.5}, r"exploration_floor=1.5: use a probability between 0 and 1"),
        ({"exploration_floor": float("nan")}, r"exploration_floor=nan"),
        ({"k": 0}, r"k=0: query at least one source"),
        ({"reward": "revenue"}, r"reward='revenue': use one of"),
    ],
)
def test_choose_sources_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        choose_sources(posterior(OUTCOMES), ["hackernews"], rng=np.random.default_rng(0), **kwargs)
    with pytest.raises(ValueError, match=r"all_sources is empty"):
        choose_sources(posterior(OUTCOMES), [])
    with pytest.raises(ValueError, match=r"names a source twice: \['a'\]"):
        choose_sources(None, ["a", "a"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.drop(columns=["succeeded"]), r"outcomes: missing column\(s\) \['succeeded'\]"),
        (
            lambda o: o.assign(succeeded=[1, 2, 0, 0, 1, 0]),
            r"outcomes.succeeded: 1 value\(s\) are not booleans \(row 1: 2\)",
        ),
        (lambda o: o.assign(source=[None, "a", "a", "a", "a", "a"]), r"outcomes.source: 1 row\(s\) have no source"),
        (lambda o: o.assign(roi=[0.1, -1.5, 0, 0, 0, 0]), r"outcomes.roi: row 1 is -1.5: an ROI .* never below -1"),
        (lambda o: o.assign(roi=[0.1, "lots", 0, 0, 0, 0]), r"outcomes.roi: row 1 is 'lots'"),
        (lambda o: o.assign(roi=[0.1, np.inf, 0, 0, 0, 0]), r"outcomes.roi: row 1 is inf"),
    ],
)
def test_the_posterior_refuses_bad_outcomes(change, message):
    with pytest.raises(BanditError, match=message):
        posterior(change(OUTCOMES))
    assert issubclass(BanditError, ValueError)


# -- the K-armed simulators ------------------------------------------------------------------------


def test_the_lai_robbins_constant_of_the_classic_benchmark():
    kl = 0.4 * math.log(0.4 / 0.5) + 0.6 * math.log(0.6 / 0.5)
    assert bernoulli_kl(0.4, 0.5) == pytest.approx(kl)
    assert lai_robbins_constant([0.5] + [0.4] * 9) == pytest.approx(9 * 0.1 / kl)
    assert lai_robbins_constant([0.5] + [0.4] * 9) == pytest.approx(44.70, abs=0.01)
    with pytest.raises(BanditError, match="at least two arms"):
        lai_robbins_constant([0.5])


def test_learning_beats_epsilon_greedy_and_random_over_a_short_horizon():
    # A test of direction, not of the benchmark's numbers (benchmarks/bandit_regret.py): five arms,
    # 0.6 against 0.4, 3,000 rounds, 10 replications. On the classic 0.5 / 0.4 problem fixed-epsilon
    # greedy's linear cost only overtakes Thompson's exploration after ~10,000 rounds.
    means, horizon, reps = [0.6, 0.4, 0.4, 0.4, 0.4], 3000, 10
    final = {
        p: simulate(p, means, horizon, reps, seed=20).final for p in ("thompson", "epsilon_greedy", "ucb1", "random")
    }
    assert final["thompson"].mean() < 0.7 * final["epsilon_greedy"].mean()
    assert final["thompson"].mean() < 0.2 * final["random"].mean()
    assert final["ucb1"].mean() < final["random"].mean()
    # Random's regret is its expected gap every round: 0.8 * 0.2 * 3000 = 480.
    assert final["random"].mean() == pytest.approx(480, rel=0.05)


def test_a_simulation_is_reproducible_and_reports_its_checkpoints():
    first = simulate("thompson", [0.5, 0.4], 500, 4, seed=9, checkpoints=[100, 250])
    again = simulate("thompson", [0.5, 0.4], 500, 4, seed=9, checkpoints=[100, 250])
    np.testing.assert_array_equal(first.regret, again.regret)
    assert first.checkpoints.tolist() == [100, 250, 500]
    assert first.regret.shape == (4, 3)
    assert (np.diff(first.regret, axis=1) >= 0).all()  # cumulative
    assert first.pulls.sum(axis=1).tolist() == [500] * 4
    # UCB1 plays each arm once first.
    assert (simulate("ucb1", [0.5, 0.4, 0.3], 3, 2).pulls == 1).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("greedy", [0.5, 0.4], 10, 1), r"policy='greedy'"),
        (("thompson", [0.5, 1.0], 10, 1), r"strictly between 0 and 1"),
        (("thompson", [0.5, 0.4], 0, 1), r"horizon=0"),
    ],
)
def test_the_simulator_refuses_bad_settings(args, message):
    with pytest.raises(BanditError, match=message):
        simulate(*args)
    with pytest.raises(BanditError, match=r"checkpoints \[20\]: each must be within 1..10"):
        simulate("thompson", [0.5, 0.4], 10, 1, checkpoints=[20])
