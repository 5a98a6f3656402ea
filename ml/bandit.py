"""The source bandit: which discovery sources to query this cycle, learned from experiment outcomes.

Two posteriors per source, both conjugate, so an update is counting:

- success: Beta-Bernoulli. Each finished experiment whose opportunity came from the source is one
  Bernoulli trial (succeeded or not); with a Beta(a0, b0) prior (default Beta(1, 1), uniform) the
  posterior is Beta(a0 + successes, b0 + failures).
- ROI: Gaussian with unknown mean and unknown variance, a normal-inverse-gamma posterior
  NIG(mu, kappa, shape, rate) on the *normalized* ROI z = asinh(roi). ROI is heavy-tailed (it is -1
  at worst and unbounded above: one 40x winner would swamp a plain mean); asinh is the identity near
  0 and logarithmic in the tails, needs no data-dependent scale (so a source's posterior never moves
  because another source's results did), and is defined for every ROI, negative ones included.
  Prior NIG(0, 1, 2, 1): mean normalized ROI 0 (break-even) worth one experiment, E[variance] = 1.
  Experiments without an ROI (no cost booked) count for the success posterior only.

Thompson sampling draws one value per source from its posterior and ranks the sources by it; a
source with few outcomes has a wide posterior, so it sometimes draws high and gets queried: that is
the exploration. `choose_sources` adds a floor under it: every source is queried with probability at
least `exploration_floor` each cycle, and a source with no outcomes yet is always queried.

The simulators at the end run Thompson sampling, UCB1, epsilon-greedy and uniform random on a
K-armed Bernoulli bandit for many independent replications at once (one row per replication), for
benchmarks/bandit_regret.py and the tests. Framework-free: numpy and pandas only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

OUTCOME_COLUMNS = ("source", "succeeded", "roi")
POSTERIOR_COLUMNS = (
    "source",
    "experiments",
    "successes",
    "failures",
    "alpha",
    "beta",
    "mean",
    "roi_experiments",
    "roi_mu",
    "roi_kappa",
    "roi_shape",
    "roi_rate",
    "roi_mean_sd",
)
COUNT_COLUMNS = ("experiments", "successes", "failures", "roi_experiments")
REWARDS = ("success", "roi")
POLICIES = ("thompson", "ucb1", "epsilon_greedy", "random")


class BanditError(ValueError):
    """Input the bandit cannot use; the message says which column or value, where, and what to do."""


@dataclass(frozen=True)
class Prior:
    """The prior every source starts from: Beta(alpha, beta) on its success rate and
    NIG(roi_mu, roi_kappa, roi_shape, roi_rate) on its normalized ROI."""

    alpha: float = 1.0
    beta: float = 1.0
    roi_mu: float = 0.0
    roi_kappa: float = 1.0
    roi_shape: float = 2.0
    roi_rate: float = 1.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "roi_kappa", "roi_shape", "roi_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise BanditError(f"Prior.{name}={value!r}: it must be a positive finite number")
        if not math.isfinite(self.roi_mu):
            raise BanditError(f"Prior.roi_mu={self.roi_mu!r}: it must be a finite number")


def normalize_roi(roi: np.ndarray | Sequence[float]) -> np.ndarray:
    """asinh(roi): the scale the Gaussian posterior lives on (see the module docstring)."""
    return np.arcsinh(np.asarray(roi, dtype=float))


# -- the posterior ---------------------------------------------------------------------------------


def posterior(outcomes: pd.DataFrame, sources: Iterable[str] = (), prior: Prior = Prior()) -> pd.DataFrame:
    """One row per source (POSTERIOR_COLUMNS), from `outcomes`: one row per finished experiment with
    its `source`, `succeeded` (bool) and `roi` (float, NULL when it had no cost). `sources` adds a
    prior-only row for each source that has no outcome yet. Sorted by posterior mean, best first."""
    import pandas as pd

    frame = _checked_outcomes(outcomes)
    names = sorted(set(frame["source"]).union(str(s) for s in sources))
    # Per-source sums by integer code (np.bincount): vectorized, and an empty frame needs no special case.
    codes = pd.Categorical(frame["source"], categories=names).codes.astype(np.int64)
    size = len(names)
    z = normalize_roi(frame["roi"].to_numpy(dtype=float, na_value=np.nan))
    has_roi = np.isfinite(z)
    z0 = np.where(has_roi, z, 0.0)
    experiments = np.bincount(codes, minlength=size)
    successes = np.bincount(codes, weights=frame["succeeded"].to_numpy(dtype=float), minlength=size).astype(np.int64)
    roi_n = np.bincount(codes, weights=has_roi.astype(float), minlength=size)
    z_mean = np.divide(np.bincount(codes, weights=z0, minlength=size), roi_n, out=np.zeros(size), where=roi_n > 0)
    # Sum of squared deviations from each source's own mean (two passes: stable, unlike sum x^2 - n mean^2).
    ss = np.bincount(codes, weights=np.where(has_roi, z0 - z_mean[codes], 0.0) ** 2, minlength=size)
    return posterior_from_counts(
        pd.DataFrame(
            {
                "source": names,
                "successes": successes,
                "failures": experiments - successes,
                "roi_experiments": roi_n.astype(np.int64),
                "roi_mean": z_mean,
                "roi_ss": ss,
            }
        ),
        prior,
    )


def posterior_from_counts(counts: pd.DataFrame, prior: Prior = Prior()) -> pd.DataFrame:
    """The posterior from sufficient statistics per source: successes, failures and, for the ROI
    posterior, roi_experiments (n), roi_mean (mean normalized ROI) and roi_ss (sum of squared
    deviations from that mean). The conjugate update (Murphy 2007, "Conjugate Bayesian analysis of
    the Gaussian distribution", eq. 85-89):
        kappa_n = kappa0 + n          mu_n = (kappa0 mu0 + n mean) / kappa_n
        shape_n = shape0 + n / 2      rate_n = rate0 + ss / 2 + kappa0 n (mean - mu0)^2 / (2 kappa_n)
    and the marginal of the mean is Student-t(2 shape_n, mu_n, rate_n / (shape_n kappa_n)), whose sd
    is roi_mean_sd."""
    import pandas as pd

    _require(counts, ("source", "successes", "failures", "roi_experiments", "roi_mean", "roi_ss"), "counts")
    counts = counts.reset_index(drop=True)
    for column in ("successes", "failures", "roi_experiments"):
        _non_negative_integers(counts[column], f"counts.{column}")
    ss = counts["roi_ss"].to_numpy(dtype=float)
    if not np.isfinite(ss).all() or (ss < 0).any():
        raise BanditError("counts.roi_ss: a sum of squares must be finite and non-negative")
    successes = counts["successes"].to_numpy(dtype=np.int64)
    failures = counts["failures"].to_numpy(dtype=np.int64)
    n = counts["roi_experiments"].to_numpy(dtype=np.int64)
    if (n > successes + failures).any():
        bad = counts.loc[n > successes + failures, "source"].tolist()
        raise BanditError(f"counts: roi_experiments exceeds successes + failures for {bad}")
    mean = counts["roi_mean"].to_numpy(dtype=float)
    alpha = prior.alpha + successes
    beta = prior.beta + failures
    kappa = prior.roi_kappa + n
    mu = (prior.roi_kappa * prior.roi_mu + n * mean) / kappa
    shape = prior.roi_shape + n / 2
    rate = prior.roi_rate + ss / 2 + prior.roi_kappa * n * (mean - prior.roi_mu) ** 2 / (2 * kappa)
    # Var of a Student-t with nu = 2 shape > 2 degrees of freedom: scale^2 nu / (nu - 2).
    mean_sd = np.sqrt(rate / (shape * kappa) * (2 * shape) / (2 * shape - 2))
    frame = pd.DataFrame(
        {
            "source": counts["source"].astype(str).to_numpy(dtype=object),
            "experiments": successes + failures,
            "successes": successes,
            "failures": failures,
            "alpha": alpha.astype(float),
            "beta": beta.astype(float),
            "mean": alpha / (alpha + beta),
            "roi_experiments": n,
            "roi_mu": mu,
            "roi_kappa": kappa.astype(float),
            "roi_shape": shape.astype(float),
            "roi_rate": rate,
            "roi_mean_sd": mean_sd,
        }
    )
    return frame.sort_values(["mean", "source"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _checked_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    _require(outcomes, OUTCOME_COLUMNS, "outcomes")
    frame = outcomes.loc[:, list(OUTCOME_COLUMNS)].reset_index(drop=True)
    missing = frame["source"].isna() | (frame["source"].astype(str).str.strip() == "")
    if missing.any():
        raise BanditError(
            f"outcomes.source: {int(missing.sum())} row(s) have no source (first at row {int(missing.idxmax())}); "
            "attribute each experiment to the source of its opportunity, or leave it out and count it"
        )
    succeeded = frame["succeeded"]
    valid = succeeded.isin([True, False, 0, 1]) & succeeded.notna()
    if not valid.all():
        row = int((~valid).idxmax())
        raise BanditError(
            f"outcomes.succeeded: {int((~valid).sum())} value(s) are not booleans "
            f"(row {row}: {_plain(succeeded.iloc[row])!r}); use True/False"
        )
    roi = pd.to_numeric(frame["roi"], errors="coerce")
    bad_roi = frame["roi"].notna() & (roi.isna() | ~np.isfinite(roi.fillna(0.0)))
    if bad_roi.any():
        row = int(bad_roi.idxmax())
        raise BanditError(f"outcomes.roi: row {row} is {_plain(frame['roi'].iloc[row])!r}: use a finite number or NULL")
    if (roi < -1).any():
        row = int((roi < -1).idxmax())
        raise BanditError(f"outcomes.roi: row {row} is {roi.iloc[row]}: an ROI (net / cost) is never below -1")
    return frame.assign(source=frame["source"].astype(str), succeeded=succeeded.astype(bool), roi=roi)


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so that a message reads 2, not np.int64(2)."""
    return value.item() if isinstance(value, np.generic) else value


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BanditError(
            f"{what}: missing column(s) {missing}; it has {list(frame.columns)}; it needs {list(columns)}"
        )


def _non_negative_integers(values: pd.Series, what: str) -> None:
    array = values.to_numpy()
    numeric = np.asarray(array, dtype=float) if array.dtype.kind in "iufb" else None
    if numeric is None or not np.isfinite(numeric).all() or (numeric != np.round(numeric)).any():
        raise BanditError(f"{what}: counts must be whole numbers, got {values.tolist()[:5]}")
    if (numeric < 0).any():
        row = int(numeric.argmin())
        raise BanditError(f"{what}: counts cannot be negative, got {int(numeric.min())} at row {row}")


def posterior_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The numbers an experiment tracker records of one posterior: per source its experiment count,
    posterior mean success rate and mean normalized ROI; overall the favoured source's share."""
    _require(table, POSTERIOR_COLUMNS, "posterior")
    metrics: dict[str, float] = {
        "sources": float(len(table)),
        "experiments": float(table["experiments"].sum()),
        "successes": float(table["successes"].sum()),
    }
    for row in table.itertuples():
        metrics[f"{row.source}.experiments"] = float(row.experiments)
        metrics[f"{row.source}.success_mean"] = float(row.mean)
        metrics[f"{row.source}.roi_mu"] = float(row.roi_mu)
    if len(table):
        metrics["best_success_mean"] = float(table["mean"].max())
    return metrics


def favoured(table: pd.DataFrame) -> tuple[str, str] | None:
    """The source with the highest posterior mean success rate among those with outcomes, and why
    (its mean, its count, how far ahead), or None when no source has an outcome yet."""
    _require(table, POSTERIOR_COLUMNS, "posterior")
    tried = table[table["experiments"] > 0].sort_values(["mean", "source"], ascending=[False, True], kind="stable")
    if tried.empty:
        return None
    best = tried.iloc[0]
    why = (
        f"posterior mean success {best['mean']:.3f} (Beta({best['alpha']:g}, {best['beta']:g})) "
        f"from {int(best['experiments'])} experiment(s), {int(best['successes'])} succeeded"
    )
    if len(tried) > 1:
        runner = tried.iloc[1]
        why += f"; next {runner['source']} at {runner['mean']:.3f} from {int(runner['experiments'])}"
    return str(best["source"]), why


# -- choosing the sources to query ----------------------------------------------------------------


@dataclass(frozen=True)
class SourceChoice:
    """The sources to query this cycle (in all_sources order), each with why, and every draw."""

    sources: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)
    draws: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return "; ".join(f"{s}: {self.reasons[s]}" for s in self.sources)


def choose_sources(
    table: pd.DataFrame | PreparedPosterior | None,
    all_sources: Sequence[str],
    k: int | None = None,
    exploration_floor: float = 0.2,
    rng: np.random.Generator | None = None,
    *,
    reward: str = "success",
) -> SourceChoice:
    """Which of `all_sources` to query this cycle, by Thompson sampling on `table` (a `posterior`,
    or the `prepare`d one when choosing many times from one table).

    1. A source with no outcome yet (absent from the table, or 0 experiments) is queried.
    2. Every other source draws one value from its posterior (`reward` "success": its Beta; "roi":
       the mean of its normal-inverse-gamma); the `k` highest draws are queried. `k` None is the
       rule: half of them, rounded up (at least one).
    3. Each source not chosen so far is added with probability `exploration_floor`, independently,
       so every source is queried with probability at least the floor, however bad its posterior.
    A table source that is not in all_sources (a feed since removed) is ignored: it cannot be queried."""
    if not 0.0 <= exploration_floor <= 1.0 or not math.isfinite(exploration_floor):
        raise BanditError(f"exploration_floor={exploration_floor!r}: use a probability between 0 and 1")
    if reward not in REWARDS:
        raise BanditError(f"reward={reward!r}: use one of {REWARDS}")
    if k is not None and (not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1):
        raise BanditError(f"k={k!r}: query at least one source (a positive integer), or None for half")
    names = [str(s) for s in all_sources]
    if not names:
        raise BanditError("all_sources is empty: there is no source to choose from")
    if len(set(names)) != len(names):
        raise BanditError(f"all_sources names a source twice: {sorted({s for s in names if names.count(s) > 1})}")
    rng = rng if rng is not None else np.random.default_rng()
    known = prepare(table)
    row_of = known.row_of()
    reasons: dict[str, str] = {}
    draws: dict[str, float] = {}
    tried = [s for s in names if s in row_of and known.experiments[row_of[s]] > 0]
    for source in names:
        if source not in row_of or known.experiments[row_of[source]] == 0:
            reasons[source] = "no outcome yet: always queried"
    if tried:
        rows = np.array([row_of[s] for s in tried])
        if reward == "success":
            values = rng.beta(known.alpha[rows], known.beta[rows])
        else:
            variance = known.roi_rate[rows] / rng.gamma(known.roi_shape[rows])
            values = rng.normal(known.roi_mu[rows], np.sqrt(variance / known.roi_kappa[rows]))
        draws = dict(zip(tried, (float(v) for v in values), strict=True))
        take = min(len(tried), k if k is not None else math.ceil(len(tried) / 2))
        order = np.argsort(-values, kind="stable")
        for rank, index in enumerate(order[:take], start=1):
            reasons[tried[index]] = f"Thompson draw {values[index]:.3f} ranked {rank} of {len(tried)}"
        extra = rng.random(len(order) - take) < exploration_floor
        for index, chosen in zip(order[take:], extra, strict=True):
            if chosen:
                reasons[tried[index]] = f"exploration floor {exploration_floor:g} (draw {values[index]:.3f})"
    return SourceChoice(tuple(s for s in names if s in reasons), reasons, draws)


@dataclass(frozen=True)
class PreparedPosterior:
    """A posterior table checked once and held as arrays, for choosing many times from one table
    (a simulation, a test of the floor): pandas indexing costs more than the draws themselves."""

    source: np.ndarray
    experiments: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    roi_mu: np.ndarray
    roi_kappa: np.ndarray
    roi_shape: np.ndarray
    roi_rate: np.ndarray

    def row_of(self) -> dict[str, int]:
        return {str(source): i for i, source in enumerate(self.source)}


def prepare(table: pd.DataFrame | PreparedPosterior | None) -> PreparedPosterior:
    """`table` (a `posterior`, or None for none) checked: every column present, no source twice,
    counts whole and non-negative, Beta and NIG parameters positive and finite."""
    if isinstance(table, PreparedPosterior):
        return table
    if table is None:
        empty = np.array([], dtype=float)
        return PreparedPosterior(np.array([], dtype=object), np.array([], dtype=np.int64), *[empty] * 6)
    _require(table, POSTERIOR_COLUMNS, "posterior")
    sources = table["source"].astype(str).to_numpy(dtype=object)
    unique, seen = np.unique(sources, return_counts=True)
    if (seen > 1).any():
        raise BanditError(f"posterior: source(s) {sorted(unique[seen > 1].tolist())} twice")
    for column in COUNT_COLUMNS:
        _non_negative_integers(table[column], f"posterior.{column}")
    arrays: dict[str, np.ndarray] = {}
    for column in ("alpha", "beta", "roi_kappa", "roi_shape", "roi_rate"):
        values = table[column].to_numpy(dtype=float)
        if not (np.isfinite(values) & (values > 0)).all():
            raise BanditError(f"posterior.{column}: every value must be positive and finite, got {values.tolist()[:5]}")
        arrays[column] = values
    arrays["roi_mu"] = table["roi_mu"].to_numpy(dtype=float)
    if not np.isfinite(arrays["roi_mu"]).all():
        raise BanditError("posterior.roi_mu: every value must be finite")
    return PreparedPosterior(source=sources, experiments=table["experiments"].to_numpy(dtype=np.int64), **arrays)


# -- K-armed Bernoulli bandit simulators (benchmark and tests) -----------------------------------


def bernoulli_kl(p: float, q: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(q)) in nats."""
    if not (0 < q < 1) or not (0 <= p <= 1):
        raise BanditError(f"bernoulli_kl({p}, {q}): need 0 <= p <= 1 and 0 < q < 1")
    term = 0.0 if p == 0 else p * math.log(p / q)
    return term + (0.0 if p == 1 else (1 - p) * math.log((1 - p) / (1 - q)))


def lai_robbins_constant(means: Sequence[float]) -> float:
    """c in the Lai-Robbins lower bound: any uniformly good policy's expected regret is at least
    (c - o(1)) log T, with c = sum over suboptimal arms a of Delta_a / KL(p_a, p*)."""
    means = _checked_means(means)
    best = float(means.max())
    return sum((best - p) / bernoulli_kl(float(p), best) for p in means if p < best)


@dataclass(frozen=True)
class Simulation:
    """Cumulative pseudo-regret (sum of the chosen arms' gaps) per replication at each checkpoint."""

    policy: str
    checkpoints: np.ndarray  # (C,) rounds, ascending, the last is the horizon
    regret: np.ndarray  # (replications, C)
    pulls: np.ndarray  # (replications, K) at the horizon

    @property
    def final(self) -> np.ndarray:
        return self.regret[:, -1]


def simulate(
    policy: str,
    means: Sequence[float],
    horizon: int,
    replications: int,
    seed: int = 0,
    *,
    epsilon: float = 0.1,
    checkpoints: Sequence[int] | None = None,
) -> Simulation:
    """Run `policy` for `horizon` rounds on `replications` independent copies of the Bernoulli
    bandit with arm means `means`, all at once: one Python step per round on (replications, K)
    arrays. Replications draw from one generator seeded by `seed`, so a run is reproducible.

    thompson: Beta(1, 1) priors, play the arm with the highest posterior draw.
    ucb1: play each arm once, then the highest mean + sqrt(2 ln t / n) (Auer et al. 2002).
    epsilon_greedy: a uniformly random arm with probability epsilon, else the best empirical mean
        (ties broken at random; untried arms count as mean 0 and are reached by exploration).
    random: a uniformly random arm every round (the baseline)."""
    if policy not in POLICIES:
        raise BanditError(f"policy={policy!r}: use one of {POLICIES}")
    p = _checked_means(means)
    if horizon < 1 or replications < 1:
        raise BanditError(f"horizon={horizon}, replications={replications}: both must be at least 1")
    if not 0 <= epsilon <= 1:
        raise BanditError(f"epsilon={epsilon}: use a probability between 0 and 1")
    points = np.unique(np.asarray(checkpoints if checkpoints is not None else [horizon], dtype=np.int64))
    if points[0] < 1 or points[-1] > horizon:
        raise BanditError(f"checkpoints {points.tolist()}: each must be within 1..{horizon}")
    if points[-1] != horizon:
        points = np.append(points, horizon)
    rng = np.random.default_rng(seed)
    arms_count = len(p)
    rows = np.arange(replications)
    wins = np.zeros((replications, arms_count))
    plays = np.zeros((replications, arms_count))
    chosen = np.empty((horizon, replications), dtype=np.int16)
    for t in range(horizon):
        if policy == "thompson":
            arm = rng.beta(wins + 1.0, plays - wins + 1.0).argmax(axis=1)
        elif policy == "ucb1":
            if t < arms_count:
                arm = np.full(replications, t)
            else:
                arm = (wins / plays + np.sqrt(2.0 * math.log(t) / plays)).argmax(axis=1)
        elif policy == "epsilon_greedy":
            estimate = np.divide(wins, plays, out=np.zeros_like(wins), where=plays > 0)
            arm = (estimate + rng.random((replications, arms_count)) * 1e-9).argmax(axis=1)
            explore = rng.random(replications) < epsilon
            arm = np.where(explore, rng.integers(arms_count, size=replications), arm)
        else:
            arm = rng.integers(arms_count, size=replications)
        reward = rng.random(replications) < p[arm]
        wins[rows, arm] += reward
        plays[rows, arm] += 1.0
        chosen[t] = arm
    gaps = p.max() - p
    regret = np.cumsum(gaps[chosen], axis=0)[points - 1].T
    return Simulation(policy, points, regret, plays.astype(np.int64))


def _checked_means(means: Sequence[float]) -> np.ndarray:
    p = np.asarray(means, dtype=float)
    if p.ndim != 1 or len(p) < 2:
        raise BanditError(f"means {list(np.ravel(p))}: a bandit needs at least two arms")
    if not (np.isfinite(p).all() and (p > 0).all() and (p < 1).all()):
        raise BanditError(f"means {p.tolist()}: each arm's success probability must be strictly between 0 and 1")
    return p
