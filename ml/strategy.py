"""The strategy optimizer: re-estimates the scoring weights (core.discovery.weights) from what
past proposals realized, checks the new weights on a backtest, and says whether to deploy them.

The seed's StrategyOptimizer updates its parameters with momentum and deploys them only when they
validate; this is that loop for the five scoring weights.

Choices, and why:
- Target: each finished proposal's realized net (experiments.outcomes.net_minor) as a percentile
  rank in [0, 1] among the proposals it is compared with. The score exists to order opportunities,
  so only the order of outcomes matters; ranks also keep one windfall (net is heavy-tailed) from
  outweighing everything else.
- Objective: the Pearson correlation between the score (factors @ weights) and that target, a
  ranking objective that ignores the score's scale (weights on the simplex change both level and
  spread). Its gradient in closed form, with Fc the column-centred factors, s_c = Fc w, y_c the
  centred target:  d corr / dw = Fc'y_c / (|s_c| |y_c|) - corr * Fc's_c / |s_c|^2.
- Update (the seed's momentum, as ascent): velocity = momentum * velocity + learning_rate * gradient,
  weights = projection of (weights + velocity) onto the simplex (non-negative, summing to 1; the
  Euclidean projection of Duchi et al. 2008). `steps` updates a run start from the deployed weights
  and the velocity that version ended with, so momentum carries from one run to the next as the
  seed's daily cycle intends.
- Shrinkage: the objective also subtracts shrinkage/2 * |w - w_start|^2. A few dozen noisy outcomes
  would otherwise pull the weights to a vertex of the simplex (a score of one factor); the pull back
  toward the deployed weights keeps each run's move in proportion to the evidence.
- Backtest: the finished proposals in proposal-time order; the step learns from the earlier
  (1 - holdout_fraction) and both weight vectors rank the later holdout, which the step never saw.
  Metric: NDCG@k of the holdout's ranking with the target as gain (1.0: the k best outcomes on top,
  in order). The realized net of each ranking's top k is reported beside it, in minor units.
- Decision: deploy only if the new weights' NDCG@k beats the old by at least `margin` (absolute).
  A holdout of a few dozen experiments is noisy; the margin keeps the weights from flapping.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.discovery.scoring import factors
from core.discovery.weights import FACTORS, Weights

# What core.discovery.scoring.factors reads, plus the proposal's id and time.
PROPOSAL_COLUMNS = (
    "experiment_id",
    "proposed_at",
    "est_monthly_revenue_cents",
    "confidence",
    "days_to_revenue",
    "capability_match",
    "age_days",
)
OUTCOME_COLUMNS = ("experiment_id", "net_minor")
METRIC = "ndcg_at_k"
WEIGHT_DECIMALS = 6


class StrategyError(ValueError):
    """Input the optimizer cannot learn from; the message names the frame, column and rows."""


@dataclass(frozen=True)
class StrategySettings:
    learning_rate: float = 0.02
    momentum: float = 0.9
    steps: int = 20
    holdout_fraction: float = 0.3
    top_k: int = 10
    margin: float = 0.01
    min_experiments: int = 30
    shrinkage: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            problems.append(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.steps < 1:
            problems.append(f"steps must be at least 1, got {self.steps!r}")
        if not 0 < self.holdout_fraction < 1:
            problems.append(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction!r}")
        if self.top_k < 1:
            problems.append(f"top_k must be at least 1, got {self.top_k!r}")
        if not self.margin >= 0:
            problems.append(f"margin must be non-negative, got {self.margin!r}")
        if not (self.shrinkage >= 0 and math.isfinite(self.shrinkage)):
            problems.append(f"shrinkage must be a non-negative number, got {self.shrinkage!r}")
        if self.min_experiments < 4:
            problems.append(
                f"min_experiments must be at least 4 (two to learn from, two to backtest), got {self.min_experiments!r}"
            )
        if problems:
            raise StrategyError("strategy settings: " + "; ".join(problems))


@dataclass(frozen=True)
class Backtest:
    """Old and new weights ranking the same holdout. `*_top_net_minor`: the realized net of the k
    proposals each ranks first (USD minor units)."""

    metric: str
    k: int
    holdout: int
    old: float
    new: float
    old_top_net_minor: int
    new_top_net_minor: int
    holdout_from: pd.Timestamp
    holdout_to: pd.Timestamp


@dataclass(frozen=True)
class StrategyResult:
    old: Weights
    new: Weights
    velocity: dict[str, float]
    gradient: dict[str, float]
    backtest: Backtest
    deploy: bool
    reason: str
    trained_on: int
    settings: StrategySettings = field(default_factory=StrategySettings)

    def weights_table(self) -> pd.DataFrame:
        """One row per factor: old, new and the change."""
        old, new = asdict(self.old), asdict(self.new)
        return pd.DataFrame(
            {
                "factor": list(FACTORS),
                "old": [old[f] for f in FACTORS],
                "new": [new[f] for f in FACTORS],
                "change": [round(new[f] - old[f], WEIGHT_DECIMALS) for f in FACTORS],
            }
        )


# -- the pieces -------------------------------------------------------------------------------


def project_to_simplex(vector: np.ndarray) -> np.ndarray:
    """The point of {w >= 0, sum(w) = 1} nearest to `vector` (Euclidean): sort, find the largest
    index whose shifted value stays positive, shift everything by that threshold and clip at 0."""
    v = np.asarray(vector, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise StrategyError(f"cannot project {vector!r} onto the simplex: need a non-empty vector of finite numbers")
    ordered = np.sort(v)[::-1]
    cumulative = np.cumsum(ordered) - 1.0
    index = np.arange(1, v.size + 1)
    rho = np.nonzero(ordered - cumulative / index > 0)[0][-1]
    theta = cumulative[rho] / (rho + 1)
    return np.maximum(v - theta, 0.0)


def momentum_step(
    weights: np.ndarray, velocity: np.ndarray, gradient: np.ndarray, learning_rate: float, momentum: float
) -> tuple[np.ndarray, np.ndarray]:
    """One ascent step with momentum (the seed's update_with_momentum): velocity = momentum *
    velocity + learning_rate * gradient; weights = the simplex projection of weights + velocity."""
    velocity = momentum * np.asarray(velocity, dtype=float) + learning_rate * np.asarray(gradient, dtype=float)
    return project_to_simplex(np.asarray(weights, dtype=float) + velocity), velocity


def correlation_gradient(factor_matrix: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """d corr(factors @ weights, target) / d weights. Zero when the target does not vary (nothing
    to learn); the covariance direction when the score does not vary (the correlation is flat
    there, and moving along the covariance is what makes it positive)."""
    centred = factor_matrix - factor_matrix.mean(axis=0)
    y = target - target.mean()
    y_norm = float(np.linalg.norm(y))
    if y_norm < 1e-12:
        return np.zeros(factor_matrix.shape[1])
    s = centred @ weights
    s_norm = float(np.linalg.norm(s))
    if s_norm < 1e-12:
        return centred.T @ y / (y_norm * math.sqrt(len(y)))
    corr = float(s @ y) / (s_norm * y_norm)
    return centred.T @ y / (s_norm * y_norm) - corr * (centred.T @ s) / s_norm**2


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's rank among `values` scaled to [0, 1] (ties share their mean rank)."""
    if len(values) < 2:
        return np.zeros(len(values))
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return (ranks - 1.0) / (len(values) - 1.0)


def ranking(scores: np.ndarray) -> np.ndarray:
    """Indices from the highest score down; equal scores keep their (proposal-time) order, as
    core.discovery.scoring ranks them."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")


def ndcg_at_k(scores: np.ndarray, gains: np.ndarray, k: int) -> float:
    """Normalized discounted cumulative gain of ranking by `scores`, over the first k places:
    sum(gain / log2(place + 1)) divided by the same for the best possible order. 1.0 when all
    gains are equal (every order is best)."""
    k = min(k, len(gains))
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    got = float(gains[ranking(scores)[:k]] @ discounts)
    best = float(np.sort(gains)[::-1][:k] @ discounts)
    return 1.0 if best <= 0 else got / best


def weights_from(vector: np.ndarray) -> Weights:
    """Weights rounded to WEIGHT_DECIMALS places, the rounding residue on the largest so that they
    still sum to 1."""
    rounded = np.round(np.asarray(vector, dtype=float), WEIGHT_DECIMALS)
    rounded[int(np.argmax(rounded))] += round(1.0 - float(rounded.sum()), WEIGHT_DECIMALS)
    return Weights(**{f: float(round(max(v, 0.0), WEIGHT_DECIMALS)) for f, v in zip(FACTORS, rounded, strict=True)})


def as_vector(weights: Weights) -> np.ndarray:
    values = asdict(weights)
    return np.array([values[f] for f in FACTORS], dtype=float)


# -- the input --------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise StrategyError(f"{name} must be a DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise StrategyError(f"{name} lacks column(s) {missing}; it has {sorted(frame.columns)}")


def _no_gaps(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    for column in columns:
        values = frame[column]
        bad = values.isna()
        if column != "proposed_at" and column != "experiment_id":
            numeric = pd.to_numeric(values, errors="coerce")
            bad = bad | numeric.isna() | ~np.isfinite(numeric.fillna(0).astype(float))
        if bad.any():
            ids = frame.loc[bad, "experiment_id"].astype(str).head(5).tolist()
            raise StrategyError(
                f"{name}.{column} is missing or not a finite number for {int(bad.sum())} row(s), e.g. experiments {ids}"
            )


def history(proposals: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The finished proposals, oldest first: experiment_id, proposed_at, one column per factor (as
    core.discovery.scoring.factors computes it from the proposal-time features) and net_minor.
    Outcomes of experiments without a proposal row are left out (nothing to learn them from)."""
    _require(proposals, PROPOSAL_COLUMNS, "proposals")
    _require(outcomes, OUTCOME_COLUMNS, "outcomes")
    for frame, name in ((proposals, "proposals"), (outcomes, "outcomes")):
        duplicated = frame["experiment_id"].duplicated()
        if duplicated.any():
            ids = frame.loc[duplicated, "experiment_id"].astype(str).head(5).tolist()
            raise StrategyError(f"{name} has more than one row for experiment(s) {ids}: one row per experiment")
    _no_gaps(proposals, PROPOSAL_COLUMNS, "proposals")
    _no_gaps(outcomes, OUTCOME_COLUMNS, "outcomes")
    proposed_at = pd.to_datetime(proposals["proposed_at"])
    if proposed_at.dt.tz is None:
        raise StrategyError("proposals.proposed_at must be timezone-aware (UTC); got naive timestamps")
    joined = proposals.assign(proposed_at=proposed_at.dt.tz_convert("UTC")).merge(
        outcomes[list(OUTCOME_COLUMNS)], on="experiment_id", how="inner"
    )
    joined = joined.sort_values(["proposed_at", "experiment_id"], kind="stable").reset_index(drop=True)
    numeric = joined[list(PROPOSAL_COLUMNS[2:])].astype(float)
    return pd.concat(
        [joined[["experiment_id", "proposed_at"]], factors(numeric), joined["net_minor"].astype("int64")], axis=1
    )


# -- the optimizer ----------------------------------------------------------------------------


def split(frame: pd.DataFrame, holdout_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-ordered: the earlier rows to learn from, the later `holdout_fraction` to backtest on;
    at least two of each."""
    held = min(max(2, math.ceil(len(frame) * holdout_fraction)), len(frame) - 2)
    return frame.iloc[: len(frame) - held], frame.iloc[len(frame) - held :]


def optimize(
    finished: pd.DataFrame,
    current: Weights,
    velocity: dict[str, float] | None = None,
    settings: StrategySettings | None = None,
) -> StrategyResult:
    """Learn new weights from `finished` (the `history` frame), starting at `current` with the
    deployed version's `velocity` (zero if None), and backtest them against `current`."""
    settings = settings or StrategySettings()
    if not isinstance(current, Weights):
        raise StrategyError(f"current must be core.discovery.weights.Weights, got {type(current).__name__}")
    _require(finished, ("proposed_at", *FACTORS, "net_minor"), "finished")
    if len(finished) < settings.min_experiments:
        raise StrategyError(
            f"{len(finished)} finished experiment(s) with proposal-time features; the optimizer needs at least "
            f"{settings.min_experiments} (min_experiments)"
        )
    unknown = sorted(set(velocity or {}) - set(FACTORS))
    if unknown:
        raise StrategyError(f"velocity has factor(s) {unknown} the score does not have; factors are {list(FACTORS)}")
    train, holdout = split(finished, settings.holdout_fraction)

    matrix = train[list(FACTORS)].to_numpy(dtype=float)
    target = percentile_ranks(train["net_minor"].to_numpy(dtype=float))
    start = as_vector(current)
    w = start.copy()
    v = np.array([float((velocity or {}).get(f, 0.0)) for f in FACTORS])
    first_gradient = correlation_gradient(matrix, target, w)
    for _ in range(settings.steps):
        gradient = correlation_gradient(matrix, target, w) - settings.shrinkage * (w - start)
        w, v = momentum_step(w, v, gradient, settings.learning_rate, settings.momentum)
    new = weights_from(w)

    held_matrix = holdout[list(FACTORS)].to_numpy(dtype=float)
    net = holdout["net_minor"].to_numpy(dtype="int64")
    gains = percentile_ranks(net.astype(float))
    k = min(settings.top_k, len(holdout))
    old_scores, new_scores = held_matrix @ start, held_matrix @ as_vector(new)
    backtest = Backtest(
        metric=METRIC,
        k=k,
        holdout=len(holdout),
        old=round(ndcg_at_k(old_scores, gains, k), 6),
        new=round(ndcg_at_k(new_scores, gains, k), 6),
        old_top_net_minor=int(net[ranking(old_scores)[:k]].sum()),
        new_top_net_minor=int(net[ranking(new_scores)[:k]].sum()),
        holdout_from=holdout["proposed_at"].iloc[0],
        holdout_to=holdout["proposed_at"].iloc[-1],
    )
    deploy, reason = decide(current, new, backtest, settings.margin, target)
    return StrategyResult(
        old=current,
        new=new,
        velocity={f: round(float(x), 9) for f, x in zip(FACTORS, v, strict=True)},
        gradient={f: round(float(x), 9) for f, x in zip(FACTORS, first_gradient, strict=True)},
        backtest=backtest,
        deploy=deploy,
        reason=reason,
        trained_on=len(train),
        settings=settings,
    )


def decide(old: Weights, new: Weights, backtest: Backtest, margin: float, target: np.ndarray) -> tuple[bool, str]:
    """Deploy only new weights that rank the holdout better than the old by at least `margin`."""
    name = f"NDCG@{backtest.k} on the {backtest.holdout} latest finished proposals"
    if float(np.ptp(target)) == 0:
        return False, "rejected: the experiments learned from all realized the same net, so there is nothing to learn"
    if new == old:
        return False, f"rejected: the step left the weights unchanged ({name} {backtest.old:.4f})"
    gain = backtest.new - backtest.old
    if gain >= margin:
        return True, f"deployed: {name} {backtest.old:.4f} -> {backtest.new:.4f} (+{gain:.4f} >= margin {margin})"
    return False, f"rejected: {name} {backtest.old:.4f} -> {backtest.new:.4f} ({gain:+.4f} < margin {margin})"


def learn(
    proposals: pd.DataFrame,
    outcomes: pd.DataFrame,
    current: Weights,
    velocity: dict[str, float] | None = None,
    settings: StrategySettings | None = None,
) -> StrategyResult:
    """`history` then `optimize`: proposals with their proposal-time features, their outcomes."""
    return optimize(history(proposals, outcomes), current, velocity, settings)
