"""The whole loop, week by week, on the fast simulated population (core.simulator.population): the
proof that what the experiments earn steers the next round.

Each simulated week, discovery brings `candidates_per_week` opportunities (from the sources the
policy queries), the policy chooses which to fund in order, and each funded experiment gets its
requested budget while the week's budget lasts (one that does not fit is passed over for the next).
An experiment's outcome is known to the policies only when its 30-day window has ended, so the
first weeks' choices are judged weeks later, as in the product.

Policies, all on the same seeds, candidates and budget:
- random:  a random `random_picks` of the week's candidates, the week's budget split evenly among them
           (the issue's "random choice of opportunities and uniform budgets");
- score:   the seed's score (core.discovery.scoring, default weights), no learning: the ablation
           that shows what learning adds beyond the formula it starts from;
- learned: the product's loop (ml/): the source bandit chooses what discovery queries, the
           strategy optimizer's weights and the success predictor's probability score the
           candidates, the top `proposals_per_week` are proposed, LinUCB orders them for money;
- oracle:  knows the hidden truth: queries the better half of the sources by their true quality and
           funds the candidates by expected net per budget dollar, only those expected to gain.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.discovery.scoring import weighted_score
from core.discovery.weights import Weights
from core.simulator.ground_truth import source_quality
from core.simulator.population import DEFAULT_SOURCES, expected_net_minor, population, realize
from ml.features import FINISHED_COLUMNS

DEFAULT_START = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LoopSettings:
    weeks: int = 12
    candidates_per_week: int = 200
    proposals_per_week: int = 40  # experiment_proposals' top_n
    weekly_budget_minor: int = 500_000  # 5,000 USD a week
    random_picks: int = 15
    # Finished experiments the loop has before week 1 (its back catalog, as the demo's simulated
    # history gives a new warehouse): the first weeks' outcomes arrive only in week 5 otherwise.
    history_experiments: int = 400
    seed: int = 7
    start: datetime = DEFAULT_START


@dataclass
class History:
    """What the policies may know at a week's start: every experiment funded so far, with its
    proposal row and (once its window ended) its outcome."""

    proposals: pd.DataFrame = field(default_factory=pd.DataFrame)
    outcomes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def finished(self, at: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The funded proposals whose outcome was known by `at`, and those outcomes."""
        if self.outcomes.empty:
            return self.proposals.iloc[0:0], self.outcomes
        known = self.outcomes[self.outcomes["finished_at"] <= pd.Timestamp(at)]
        return self.proposals[self.proposals["experiment_id"].isin(known["experiment_id"])], known

    def add(self, proposals: pd.DataFrame, outcomes: pd.DataFrame) -> None:
        self.proposals = pd.concat([self.proposals, proposals], ignore_index=True)
        self.outcomes = pd.concat([self.outcomes, outcomes], ignore_index=True)


@dataclass
class Policy:
    """`sources(week_start, history)`: the sources discovery queries this week (None: every one);
    `choose(week_start, candidates, history)`: the experiment ids to fund, best first, and the
    budget each gets (None: its requested budget, while the week's budget lasts)."""

    name: str
    choose: Callable[[datetime, pd.DataFrame, History], tuple[list[str], dict[str, int] | None]]
    sources: Callable[[datetime, History], Sequence[str] | None] = lambda _at, _history: None


def random_policy(settings: LoopSettings) -> Policy:
    rng = np.random.default_rng([settings.seed, 1])

    def choose(_at: datetime, candidates: pd.DataFrame, _history: History) -> tuple[list[str], dict[str, int]]:
        picks = rng.choice(candidates["experiment_id"].to_numpy(), size=settings.random_picks, replace=False)
        each = settings.weekly_budget_minor // settings.random_picks
        return list(picks), dict.fromkeys(picks, each)

    return Policy("random", choose)


def score_policy(settings: LoopSettings) -> Policy:
    def choose(_at: datetime, candidates: pd.DataFrame, _history: History) -> tuple[list[str], None]:
        scored = candidates.assign(score=weighted_score(candidates, Weights()))
        ranked = scored.sort_values("score", ascending=False, kind="stable")
        return ranked["experiment_id"].head(settings.proposals_per_week).tolist(), None

    return Policy("score", choose)


def oracle_policy(settings: LoopSettings) -> Policy:
    """Knows the hidden truth: discovery queries the better half of the sources by their true
    quality, and the candidates are funded by expected net per budget dollar (the greedy answer to
    the week's knapsack), only those expected to earn more than they cost."""
    qualities = {name: source_quality(settings.seed, name) for name in DEFAULT_SOURCES}
    best = sorted(DEFAULT_SOURCES, key=lambda name: -qualities[name])[: (len(DEFAULT_SOURCES) + 1) // 2]

    def choose(_at: datetime, candidates: pd.DataFrame, _history: History) -> tuple[list[str], None]:
        expected = expected_net_minor(settings.seed, candidates).to_numpy()
        ranked = candidates.assign(expected=expected, per_dollar=expected / candidates["requested_budget_minor"])
        ranked = ranked.sort_values("per_dollar", ascending=False, kind="stable")
        return ranked.loc[ranked["expected"] > 0, "experiment_id"].tolist(), None

    return Policy("oracle", choose, lambda _at, _history: best)


@dataclass
class _Learned:
    """What the learned policy carries from week to week: the strategy optimizer's deployed weights
    and velocity, and every opportunity discovery brought (the features' market timeline)."""

    weights: Weights = field(default_factory=Weights)
    velocity: dict[str, float] | None = None
    seen: list[pd.DataFrame] = field(default_factory=list)


def _finished_rows(proposals: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """ml.features' `finished` frame: each known outcome with its source, type and finish time."""
    meta = proposals[["experiment_id", "source", "opportunity_type"]]
    return outcomes.merge(meta, on="experiment_id")[list(FINISHED_COLUMNS)]


def learned_policy(settings: LoopSettings, *, exploration_floor: float = 0.2, alpha: float = 1.0) -> Policy:
    """The product's loop on the fast population: each piece is the one the assets run."""
    from ml import bandit, linucb, predictors, strategy
    from ml.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES, build_features, training_frame

    rng = np.random.default_rng([settings.seed, 2])
    state = _Learned()

    def sources(at: datetime, history: History) -> Sequence[str]:
        proposals, outcomes = history.finished(at)
        known = _finished_rows(proposals, outcomes) if len(outcomes) else pd.DataFrame(columns=FINISHED_COLUMNS)
        table = bandit.posterior(known[["source", "succeeded", "roi"]], sources=DEFAULT_SOURCES)
        return bandit.choose_sources(table, DEFAULT_SOURCES, exploration_floor=exploration_floor, rng=rng).sources

    def choose(at: datetime, candidates: pd.DataFrame, history: History) -> tuple[list[str], None]:
        state.seen.append(
            candidates[["opportunity_type", "proposed_at"]].rename(columns={"proposed_at": "first_seen_at"})
        )
        # The discovery timeline: this loop's candidates, and the back catalog's proposals before them.
        before = history.proposals[["opportunity_type", "proposed_at"]] if len(history.proposals) else None
        earlier = [] if before is None else [before.rename(columns={"proposed_at": "first_seen_at"})]
        timeline = pd.concat([*earlier, *state.seen], ignore_index=True).drop_duplicates()
        proposals, outcomes = history.finished(at)
        finished = _finished_rows(proposals, outcomes) if len(outcomes) else pd.DataFrame(columns=FINISHED_COLUMNS)
        now = candidates.assign(proposed_at=pd.Timestamp(at))  # decided at the week's start: nothing later is known
        features = build_features(now, finished, timeline)
        past = build_features(proposals, finished, timeline) if len(proposals) else None
        if len(outcomes) >= strategy.StrategySettings().min_experiments:
            result = strategy.learn(proposals, outcomes, state.weights, state.velocity)
            if result.deploy:
                state.weights, state.velocity = result.new, result.velocity
        scored = candidates.copy()
        if past is not None and len(outcomes) >= predictors.MIN_EXPERIMENTS:
            try:
                model = predictors.train_success(training_frame(past, outcomes), seed=settings.seed)
            except predictors.TrainingDataError:
                model = None
            if model is not None and model.passed:
                scored["confidence"] = predictors.success_probability(model.model, features)
        scored["score"] = weighted_score(scored, state.weights).to_numpy()
        top = scored.sort_values("score", ascending=False, kind="stable").head(settings.proposals_per_week)
        top_features = features.set_index("experiment_id").loc[top["experiment_id"]].reset_index()
        if past is not None and len(past):
            train = past.merge(outcomes[["experiment_id", "net_minor"]], on="experiment_id")
            budgets = proposals.set_index("experiment_id").loc[train["experiment_id"], "requested_budget_minor"]
            rewards = linucb.reward(train["net_minor"], budgets.to_numpy())
            model = linucb.fit(train, rewards, numeric=NUMERIC_FEATURES, categorical=CATEGORICAL_FEATURES, alpha=alpha)
            ranked = model.priorities(top_features).sort_values("ucb", ascending=False, kind="stable")
            order = ranked.loc[ranked["ucb"] > 0, "experiment_id"].tolist()
        else:  # nothing finished yet: the score's order
            order = top["experiment_id"].tolist()
        return order, None

    return Policy("learned", choose, sources)


def _fund(candidates: pd.DataFrame, order: list[str], amounts: dict[str, int] | None, budget: int) -> pd.Series:
    """experiment_id -> allocated minor units, in `order`, while the week's budget lasts."""
    requested = candidates.set_index("experiment_id")["requested_budget_minor"]
    funded: dict[str, int] = {}
    left = budget
    for experiment_id in order:
        amount = int(amounts[experiment_id]) if amounts is not None else int(requested[experiment_id])
        if 0 < amount <= left:
            funded[experiment_id] = amount
            left -= amount
    return pd.Series(funded, dtype="int64")


def run(policy: Policy, settings: LoopSettings) -> pd.DataFrame:
    """One row per week: what the policy funded and what those experiments earned over their windows."""
    history = History()
    if settings.history_experiments:
        before = settings.start - timedelta(weeks=12, days=31)
        past = population(settings.seed, settings.history_experiments, before, days=84, prefix="history")
        history.add(past, realize(settings.seed, past))
    rows = []
    for week in range(settings.weeks):
        at = settings.start + timedelta(weeks=week)
        sources = policy.sources(at, history)
        candidates = population(
            settings.seed,
            settings.candidates_per_week,
            at,
            days=7,
            sources=tuple(sources) if sources is not None else DEFAULT_SOURCES,
            prefix=f"w{week:02d}",
        )
        order, amounts = policy.choose(at, candidates, history)
        funded = _fund(candidates, order, amounts, settings.weekly_budget_minor)
        chosen = candidates[candidates["experiment_id"].isin(funded.index)].reset_index(drop=True)
        outcomes = realize(settings.seed, chosen, funded) if len(chosen) else pd.DataFrame()
        if len(chosen):
            history.add(chosen, outcomes)
        rows.append(
            {
                "week": week + 1,
                "policy": policy.name,
                "funded": len(chosen),
                "allocated_minor": int(funded.sum()),
                "revenue_minor": int(outcomes["revenue_minor"].sum()) if len(chosen) else 0,
                "cost_minor": int(outcomes["cost_minor"].sum()) if len(chosen) else 0,
                "net_minor": int(outcomes["net_minor"].sum()) if len(chosen) else 0,
                "succeeded": int(outcomes["succeeded"].sum()) if len(chosen) else 0,
                "sources": ",".join(sorted(set(chosen["source"]))) if len(chosen) else "",
            }
        )
    frame = pd.DataFrame(rows)
    frame["cumulative_net_minor"] = frame["net_minor"].cumsum()
    frame["cumulative_cost_minor"] = frame["cost_minor"].cumsum()
    frame["net_per_dollar"] = frame["cumulative_net_minor"] / frame["cumulative_cost_minor"].where(
        frame["cumulative_cost_minor"] > 0
    )
    return frame


def compare(policies: Sequence[Policy], settings: LoopSettings) -> pd.DataFrame:
    """Every policy's weeks side by side, with each week's cumulative regret against the oracle
    (the oracle must be among them)."""
    frames = pd.concat([run(policy, settings) for policy in policies], ignore_index=True)
    oracle = frames[frames["policy"] == "oracle"].set_index("week")["cumulative_net_minor"]
    if oracle.empty:
        raise ValueError("compare: regret is measured against the oracle: include oracle_policy")
    frames["regret_minor"] = frames["week"].map(oracle) - frames["cumulative_net_minor"]
    return frames
