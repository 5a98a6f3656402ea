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
- oracle:  knows each candidate's expected net from the hidden truth and funds the best first
           (only those expected to earn more than they cost), from the same all-source candidates.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from core.discovery.scoring import weighted_score
from core.discovery.weights import Weights
from core.simulator.population import DEFAULT_SOURCES, expected_net_minor, population, realize

DEFAULT_START = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LoopSettings:
    weeks: int = 12
    candidates_per_week: int = 120
    proposals_per_week: int = 20  # experiment_proposals' top_n
    weekly_budget_minor: int = 125_000  # about budgets.yaml's 5,000 USD a month
    random_picks: int = 5
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
    def choose(_at: datetime, candidates: pd.DataFrame, _history: History) -> tuple[list[str], None]:
        expected = expected_net_minor(settings.seed, candidates)
        ranked = candidates.assign(expected=expected.to_numpy()).sort_values("expected", ascending=False, kind="stable")
        return ranked.loc[ranked["expected"] > 0, "experiment_id"].tolist(), None

    return Policy("oracle", choose)


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
