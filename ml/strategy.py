"""The strategy optimizer: re-estimates the scoring weights (core.discovery.weights) from what
past proposals realized, checks the new weights on a backtest, and says whether to deploy them.

The seed's StrategyOptimizer updates its parameters with momentum and deploys them only when they
validate; this is that loop for the five scoring weights.

Choices, and why (measured on core.simulator.population: docs/learning.md):
- Target: each finished proposal's realized net (experiments.outcomes.net_minor). The proposals
  that get funded are the top of the ranking, and what they are for is money: a target of ranks
  instead (tried first) learned to tell a small loss from a large one and dropped the revenue
  factor, and the weights it deployed halved the expected net of the top proposals.
- Objective: the Pearson correlation between the score (factors @ weights) and that target, blind
  to the score's scale (weights on the simplex change both its level and its spread). Equivalent to
  the least-squares fit of net on a + b * score. Its gradient in closed form, with Fc the
  column-centred factors, s_c = Fc w, y_c the centred target:
      d corr / dw = Fc'y_c / (|s_c| |y_c|) - corr * Fc's_c / |s_c|^2.
- Shrinkage: the objective also subtracts shrinkage/2 * |w - w_start|^2, so that a few hundred
  noisy outcomes move the weights in proportion to the evidence instead of to a vertex of the
  simplex (a score of one factor).
- Update (the seed's momentum, as ascent): velocity = momentum * velocity + learning_rate * gradient,
  weights = projection of (weights + velocity) onto the simplex (non-negative, summing to 1; the
  Euclidean projection of Duchi et al. 2008). `steps` updates a run start from the deployed weights
  and the velocity that version ended with, so momentum carries from one run to the next as the
  seed's daily cycle intends.
- Backtest: the finished proposals in proposal-time order; the update learns from the earlier
  (1 - holdout_fraction) and both weight vectors rank the later holdout, which it never saw.
  Metric: the realized net of the k proposals each ranks first, k = max(top_k, top_fraction of
  the holdout): the money those proposals would have made. The correlation of score and net on the
  whole holdout is reported beside it.
- Decision: deploy only if the new weights' top-k net beats the old by at least `margin` (a
  fraction of the old's magnitude). Realized outcomes are noisy (success is a coin flip, revenue
  heavy-tailed); the margin keeps noise from deploying, and the weights from flapping.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.discovery.scoring import factors
from core.discovery.weights import FACTORS, Weights
from core.ledger.money import format_minor

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
METRIC = "top_k_net_minor"
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
    top_fraction: float = 0.1
    margin: float = 0.05
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
        if not 0 < self.top_fraction <= 1:
            problems.append(f"top_fraction must be in (0, 1], got {self.top_fraction!r}")
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
    """Old and new weights ranking the same holdout. old / new: the realized net of the k proposals
    each ranks first (USD minor units); *_correlation: of score and net over the whole holdout."""

    metric: str
    k: int
    holdout: int
    old: int
    new: int
    old_correlation: float
    new_correlation: float
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


def ranking(scores: np.ndarray) -> np.ndarray:
    """Indices from the highest score down; equal scores keep their (proposal-time) order, as
    core.discovery.scoring ranks them."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")


def top_net(scores: np.ndarray, net: np.ndarray, k: int) -> int:
    """The realized net of the k proposals the scores rank first."""
    return int(np.asarray(net, dtype="int64")[ranking(scores)[:k]].sum())


def correlation(scores: np.ndarray, net: np.ndarray) -> float:
    """Pearson correlation; 0 when either side does not vary."""
    s, y = scores - scores.mean(), net - net.mean()
    denominator = float(np.linalg.norm(s) * np.linalg.norm(y))
    return 0.0 if denominator < 1e-12 else float(s @ y) / denominator


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
    target = train["net_minor"].to_numpy(dtype=float)
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
    k = min(len(holdout), max(settings.top_k, math.ceil(settings.top_fraction * len(holdout))))
    old_scores, new_scores = held_matrix @ start, held_matrix @ as_vector(new)
    backtest = Backtest(
        metric=METRIC,
        k=k,
        holdout=len(holdout),
        old=top_net(old_scores, net, k),
        new=top_net(new_scores, net, k),
        old_correlation=round(correlation(old_scores, net.astype(float)), 6),
        new_correlation=round(correlation(new_scores, net.astype(float)), 6),
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
    """Deploy only new weights whose top k of the holdout realized more net than the old's top k,
    by at least `margin` times the old's magnitude."""
    if float(np.ptp(target)) == 0:
        return False, "rejected: the experiments learned from all realized the same net, so there is nothing to learn"
    what = f"the top {backtest.k} of the {backtest.holdout} latest finished proposals"
    old_net, new_net = format_minor(backtest.old, "USD"), format_minor(backtest.new, "USD")
    if new == old:
        return False, f"rejected: the step left the weights unchanged ({what} realized {old_net} net)"
    gain, needed = backtest.new - backtest.old, margin * max(abs(backtest.old), 1)
    versus = f"{what} realized {new_net} net by the new weights, {old_net} by the old"
    if gain > 0 and gain >= needed:
        return True, f"deployed: {versus} (+{format_minor(gain, 'USD')} >= margin {margin:.0%})"
    signed = ("+" if gain >= 0 else "") + format_minor(gain, "USD")
    return False, f"rejected: {versus} ({signed} < margin {margin:.0%})"


def learn(
    proposals: pd.DataFrame,
    outcomes: pd.DataFrame,
    current: Weights,
    velocity: dict[str, float] | None = None,
    settings: StrategySettings | None = None,
) -> StrategyResult:
    """`history` then `optimize`: proposals with their proposal-time features, their outcomes."""
    return optimize(history(proposals, outcomes), current, velocity, settings)
