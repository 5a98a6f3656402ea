"""A fast simulated population of proposed experiments, for the learning benchmarks and tests: many
thousands of proposals with the features core.discovery.features gives an opportunity, and what each
would earn on the market, without booking anything.

`population(seed, n, start)` draws n proposals (the shape ml.features.build_features takes) spread
over `days` days from `start`, from the bundled sources; `realize(seed, proposals)` draws each
one's outcome once, from the same hidden truth (core.simulator.ground_truth.truth) and the same
per-experiment draw (core.simulator.market.outcome: succeeded, monthly revenue, daily ad spend) as
the day-by-day market, and judges it on the proposals' success criteria. Over the 30-day window the
day-by-day market's expectations are summed instead of simulated day by day (docs/simulator.md):

    customers = min(monthly / price / 30 x share, MAX_DAILY_CUSTOMERS) x 30 x RAMP (0.9: the first
                week ramps up; the weekday factors average 1), share 1 if succeeded else 3%
    revenue   = customers x price x (1 - 0.9 x refund_rate)   (refunds: 80% full, 20% half)
    cost      = launch spend (5% of the allocation) + daily ads x 30, at most the allocation,
                + Stripe's fee on every charge (2.9% + 30 cents)

`bayes_success_probability` is the chance, given the hidden truth, that an experiment meets its
criteria: the best any predictor of `succeeded` can know (the Bayes-optimal score the predictor
benchmark compares against). `expected_net_minor` is what the oracle of the closed-loop benchmark
ranks by.
"""

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from core.discovery.features import MAX_MONTHLY_REVENUE_CENTS
from core.experiments.playbook import launch_spend_minor
from core.experiments.proposals import MIN_ROI, REVENUE_MULTIPLE, WINDOW_DAYS, requested_budget_minor
from core.experiments.proposals import PROPOSAL_COLUMNS as PROPOSAL_SHAPE
from core.simulator import ground_truth, market

RAMP = 0.9  # mean of min(1, (day + 1) / RAMP_DAYS) over the 30 days
PARTIAL_REFUND_SHARE = 0.9  # a refund gives back all of the charge 80% of the time, half 20%
# Opportunity types each source brings, as shares: a forum of founders brings SaaS, a freelance
# board gigs. Sources not named here bring every type alike.
SOURCE_TYPES: dict[str, dict[str, float]] = {
    "hackernews": {"saas": 0.4, "api": 0.2, "open_source_tool": 0.2, "content": 0.2},
    "github": {"open_source_tool": 0.6, "api": 0.2, "saas": 0.2},
    "reddit": {"saas": 0.3, "content": 0.3, "affiliate": 0.2, "other": 0.2},
    "producthunt": {"saas": 0.6, "api": 0.2, "marketplace": 0.2},
    "x": {"content": 0.4, "saas": 0.3, "other": 0.3},
    "freelancer": {"freelance_gig": 0.9, "other": 0.1},
    "feed_indiehackers": {"saas": 0.5, "content": 0.2, "marketplace": 0.2, "other": 0.1},
    "feed_api_marketplaces": {"api": 0.8, "saas": 0.2},
    "feed_affiliate": {"affiliate": 0.9, "other": 0.1},
}
DEFAULT_SOURCES = (
    "hackernews",
    "github",
    "reddit",
    "producthunt",
    "x",
    "freelancer",
    "web_search",
    "feed_indiehackers",
    "feed_api_marketplaces",
    "feed_affiliate",
)
# What core/discovery/config/scoring.yaml assumes per type: claimed revenue and days to revenue.
TYPE_DEFAULTS = {
    "saas": (100_000, 60),
    "api": (80_000, 45),
    "freelance_gig": (50_000, 7),
    "affiliate": (30_000, 30),
    "content": (20_000, 60),
    "marketplace": (100_000, 90),
    "open_source_tool": (20_000, 120),
    "other": (10_000, 90),
}
PROPOSAL_COLUMNS = list(PROPOSAL_SHAPE)
OUTCOME_COLUMNS = [
    "experiment_id",
    "finished_at",
    "succeeded",
    "revenue_minor",
    "cost_minor",
    "net_minor",
    "roi",
    "allocated_minor",
]


def population(
    seed: int,
    n: int,
    start: datetime,
    *,
    days: float = 84.0,
    sources: tuple[str, ...] | list[str] | None = None,
    prefix: str = "sim",
) -> pd.DataFrame:
    """n proposals (PROPOSAL_COLUMNS), proposed at uniform times over `days` days from `start`, in
    time order; each from one of `sources` (default: the bundled ten) chosen uniformly. The same
    (seed, n, start, days, sources, prefix) gives the same frame."""
    if n < 0:
        raise ValueError(f"population: n must be 0 or more, got {n}")
    if start.tzinfo is None:
        raise ValueError(f"population: start must be timezone-aware UTC, got {start!r}")
    chosen = DEFAULT_SOURCES if sources is None else tuple(sources)
    if not chosen:
        raise ValueError("population: sources is empty: give at least one source name")
    rng = np.random.default_rng([seed, n, len(chosen), sum(map(ord, prefix))])
    source = rng.choice(np.array(chosen, dtype=object), size=n)
    kinds = np.array(list(TYPE_DEFAULTS), dtype=object)
    uniform = np.full(len(kinds), 1 / len(kinds))
    kind = np.empty(n, dtype=object)
    for name in chosen:
        mine = source == name
        shares = SOURCE_TYPES.get(name)
        p = uniform if shares is None else np.array([shares.get(k, 0.0) for k in kinds])
        kind[mine] = rng.choice(kinds, size=int(mine.sum()), p=p / p.sum())
    claimed = np.array([TYPE_DEFAULTS[k][0] for k in kind], dtype=float)
    est = np.clip(claimed * 3 * rng.lognormal(0.0, 1.0, n), 5_000, MAX_MONTHLY_REVENUE_CENTS).round()
    offsets = np.sort(rng.uniform(0.0, days * 86_400, n))
    frame = pd.DataFrame(
        {
            "experiment_id": [f"{prefix}-{seed}-{i:06d}" for i in range(n)],
            "opportunity_id": [f"{prefix}-opp-{seed}-{i:06d}" for i in range(n)],
            "proposed_at": (pd.Timestamp(start) + pd.to_timedelta(offsets, unit="s")).floor("s"),
            "source": source.astype(str),
            "opportunity_type": kind.astype(str),
            "age_days": np.minimum(rng.exponential(5.0, n), 60.0).round(4),
            "confidence": rng.beta(2.0, 3.0, n).round(4),
            "est_monthly_revenue_cents": est.astype("int64"),
            "capability_match": rng.beta(2.0, 2.0, n).round(4),
            "days_to_revenue": np.array([TYPE_DEFAULTS[k][1] for k in kind], dtype="int64"),
            "cluster_size": (1 + rng.poisson(0.3, n)).astype("int64"),
        }
    )
    frame["requested_budget_minor"] = [requested_budget_minor(v) for v in frame["est_monthly_revenue_cents"]]
    frame["window_days"] = WINDOW_DAYS
    return frame[PROPOSAL_COLUMNS]


def truths(seed: int, proposals: pd.DataFrame) -> pd.DataFrame:
    """The hidden truth of each proposal (ground_truth.ORACLE_COLUMNS, keyed by experiment_id too)."""
    rows = proposals[
        [
            "experiment_id",
            "opportunity_id",
            "source",
            "opportunity_type",
            "confidence",
            "capability_match",
            "age_days",
            "est_monthly_revenue_cents",
        ]
    ].to_dict("records")
    table = pd.DataFrame([vars(ground_truth.truth(seed, row)) for row in rows], columns=ground_truth.ORACLE_COLUMNS)
    table.insert(0, "experiment_id", proposals["experiment_id"].to_numpy())
    return table


def _money(
    succeeded: np.ndarray,
    monthly: np.ndarray,
    ad_daily: np.ndarray,
    price: np.ndarray,
    refund_rate: np.ndarray,
    allocated: np.ndarray,
    launch: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Revenue and cost over the window in USD cents (the module docstring's sums), elementwise."""
    share = np.where(succeeded, 1.0, market.FAILED_SHARE)
    daily = np.minimum(monthly / price / 30 * share, market.MAX_DAILY_CUSTOMERS)
    customers = daily * WINDOW_DAYS * RAMP
    revenue = np.round(customers * price * (1 - PARTIAL_REFUND_SHARE * refund_rate))
    fees = np.round(customers * (price * 0.029 + 30))
    cost = np.minimum(launch + ad_daily * WINDOW_DAYS, allocated) + fees
    return revenue, cost


def _launch(allocated: np.ndarray) -> np.ndarray:
    # The playbook's launch campaign (core.experiments.playbook.launch_spend_minor), per allocation.
    return np.vectorize(lambda minor: launch_spend_minor(int(minor)), otypes=[float])(allocated)


def _judged(revenue: np.ndarray, cost: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """core.experiments.proposals.success_criteria: revenue of twice the budget, or an ROI of 0.5."""
    roi = np.divide(revenue - cost, cost, out=np.zeros_like(revenue, dtype=float), where=cost > 0)
    return (revenue >= REVENUE_MULTIPLE * budget) | ((cost > 0) & (roi >= MIN_ROI))


def _allocated(proposals: pd.DataFrame, allocated_minor: pd.Series | None) -> np.ndarray:
    if allocated_minor is None:
        return proposals["requested_budget_minor"].to_numpy(dtype=float)
    given = proposals["experiment_id"].map(allocated_minor)
    if given.isna().any():
        missing = proposals.loc[given.isna(), "experiment_id"].head(3).tolist()
        raise ValueError(f"realize: allocated_minor has no amount for experiments {missing}")
    return given.to_numpy(dtype=float)


def realize(seed: int, proposals: pd.DataFrame, allocated_minor: pd.Series | None = None) -> pd.DataFrame:
    """Each proposal's outcome (OUTCOME_COLUMNS) when run with `allocated_minor` (experiment_id ->
    USD cents; default its requested budget): one draw per experiment, the market's own
    (market.outcome), finished at the end of its window."""
    table = truths(seed, proposals)
    draws = [
        market.outcome(
            seed,
            market.Experiment(row.experiment_id, row.opportunity_id, row.proposed_at.date()),
            ground_truth.Truth(**{c: getattr(row, c) for c in ground_truth.ORACLE_COLUMNS}),
        )
        for row in table.assign(proposed_at=proposals["proposed_at"].to_numpy()).itertuples(index=False)
    ]
    allocated = _allocated(proposals, allocated_minor)
    revenue, cost = _money(
        np.array([d.succeeded for d in draws]),
        np.array([d.monthly_revenue_cents for d in draws], dtype=float),
        np.array([d.ad_spend_cents for d in draws], dtype=float),
        table["price_cents"].to_numpy(dtype=float),
        table["refund_rate"].to_numpy(dtype=float),
        allocated,
        _launch(allocated),
    )
    succeeded = _judged(revenue, cost, proposals["requested_budget_minor"].to_numpy(dtype=float))
    net = revenue - cost
    return pd.DataFrame(
        {
            "experiment_id": proposals["experiment_id"].to_numpy(),
            "finished_at": proposals["proposed_at"] + timedelta(days=WINDOW_DAYS),
            "succeeded": succeeded,
            "revenue_minor": revenue.astype("int64"),
            "cost_minor": cost.astype("int64"),
            "net_minor": net.astype("int64"),
            "roi": np.divide(net, cost, out=np.zeros_like(net), where=cost > 0),
            "allocated_minor": allocated.astype("int64"),
        }
    )[OUTCOME_COLUMNS]


def _monte_carlo(seed: int, proposals: pd.DataFrame, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """(P(criteria met), E[net]) per proposal over `draws` fresh draws of the market's per-experiment
    randomness (succeeded, monthly revenue, daily ads) given its truth, at its requested budget."""
    table = truths(seed, proposals)
    rng = np.random.default_rng([seed, len(proposals), draws, 97])
    shape = (len(proposals), draws)
    p = table["success_probability"].to_numpy()[:, None]
    median = table["monthly_revenue_median_cents"].to_numpy(dtype=float)[:, None]
    sigma = table["revenue_sigma"].to_numpy(dtype=float)[:, None]
    succeeded = rng.random(shape) < p
    monthly = np.exp(np.log(median) + sigma * rng.standard_normal(shape)).round()
    ad_daily = rng.integers(market.AD_SPEND_CENTS[0], market.AD_SPEND_CENTS[1], shape).astype(float)
    budget = proposals["requested_budget_minor"].to_numpy(dtype=float)[:, None]
    revenue, cost = _money(
        succeeded,
        monthly,
        ad_daily,
        table["price_cents"].to_numpy(dtype=float)[:, None],
        table["refund_rate"].to_numpy(dtype=float)[:, None],
        np.broadcast_to(budget, shape),
        np.broadcast_to(_launch(budget), shape),
    )
    return _judged(revenue, cost, budget).mean(axis=1), (revenue - cost).mean(axis=1)


def bayes_success_probability(seed: int, proposals: pd.DataFrame, draws: int = 400) -> pd.Series:
    """P(the experiment meets its criteria | its hidden truth), by Monte Carlo over the market's draws."""
    return pd.Series(_monte_carlo(seed, proposals, draws)[0], index=proposals.index, name="bayes_success_probability")


def expected_net_minor(seed: int, proposals: pd.DataFrame, draws: int = 400) -> pd.Series:
    """E[revenue - cost | the hidden truth] at the requested budget, USD cents: what an oracle ranks by."""
    return pd.Series(_monte_carlo(seed, proposals, draws)[1], index=proposals.index, name="expected_net_minor")
