"""LinUCB over experiment features: who gets money first.

One shared linear model, not one per arm. The "arms" are candidate experiments, each described by
its feature vector x (learning.experiment_features, as of its proposal), and each is funded once:
disjoint LinUCB (an A and b per arm) would never see an arm twice and so never learn. A shared
ridge regression of reward on x transfers what finished experiments taught to every new one:

    A = ridge * I + sum x x^T        b = sum r x        theta = A^-1 b
    mean = theta^T x                 width = sqrt(x^T A^-1 x)        ucb = mean + alpha * width

`alpha` is the exploration parameter (0: greedy on the mean); `width` is large for a candidate
unlike the experiments seen so far and shrinks as similar ones finish.

The reward of a finished experiment is `reward(net_minor, budget_minor)`: its net (revenue - cost,
reporting currency) per unit of the budget it requested (USD cents, the features' budget_minor),
clipped to [REWARD_FLOOR, REWARD_CEILING]. -1 is "lost its whole budget" (fees can push a loss a
little past it); the ceiling keeps one lucky outlier from pulling the linear fit towards itself.
A per-budget ratio makes a $50 and a $500 experiment comparable: the allocator spends a budget,
so return per unit of budget is what it should rank by.

The vector x: a constant 1 (the intercept), each numeric feature standardized with the mean and
standard deviation of the history it was fitted on, and each categorical one-hot over the
categories seen in that history. A category the history never saw encodes as all zeros (the
model knows nothing of it, so only the intercept and numeric features speak, and its width stays
large); a missing categorical value is such an unknown category. A numeric column that is
constant in the history is scaled by its magnitude instead (its standard deviation is 0), so a
candidate that differs there reads as unlike the history in relative terms, whatever its units.

Numpy only: no dagster, no scikit-learn.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

REWARD_FLOOR = -1.0
REWARD_CEILING = 3.0
INTERCEPT = "intercept"


class LinUCBInputError(ValueError):
    """Features or rewards LinUCB cannot use; the message names the column and the experiments."""


def reward(net_minor: Sequence[float] | pd.Series, budget_minor: Sequence[float] | pd.Series) -> np.ndarray:
    """Net per unit of requested budget, clipped to [REWARD_FLOOR, REWARD_CEILING] (module docstring).
    A budget of 0 or less counts as one minor unit: a loss then floors, a gain ceils."""
    net = np.asarray(net_minor, dtype=float)
    budget = np.asarray(budget_minor, dtype=float)
    if net.shape != budget.shape:
        raise LinUCBInputError(f"reward: {net.shape[0]} net amounts but {budget.shape[0]} budgets")
    for name, values in (("net_minor", net), ("budget_minor", budget)):
        if not np.isfinite(values).all():
            raise LinUCBInputError(f"reward: {name} has {int((~np.isfinite(values)).sum())} missing or infinite values")
    return np.clip(net / np.maximum(budget, 1.0), REWARD_FLOOR, REWARD_CEILING)


def _ids(frame: pd.DataFrame, mask: np.ndarray | pd.Series, id_column: str) -> str:
    mask = np.asarray(mask, dtype=bool)
    rows = frame[id_column][mask] if id_column in frame else pd.Series(frame.index[mask])
    shown = ", ".join(str(v) for v in rows.iloc[:5])
    more = f" and {int(mask.sum()) - 5} more" if mask.sum() > 5 else ""
    return f"{shown}{more}"


@dataclass(frozen=True)
class Encoding:
    """The vectorization fitted on the history: numeric means and scales, the categories seen."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categories: tuple[tuple[str, ...], ...]  # per categorical column, the values seen, sorted
    id_column: str = "experiment_id"

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        id_column: str = "experiment_id",
    ) -> "Encoding":
        if len(frame) == 0:
            raise LinUCBInputError("Encoding.fit: no rows to fit the encoding on (give at least one experiment)")
        _check_columns(frame, [*numeric, *categorical], "Encoding.fit")
        values = _numeric(frame, numeric, id_column, "Encoding.fit")
        means = values.mean(axis=0)
        stds = values.std(axis=0)
        # Constant in the history: scale by its magnitude so differences are relative, not in units.
        scales = np.where(stds > 1e-9 * np.maximum(np.abs(means), 1.0), stds, np.maximum(np.abs(means), 1.0))
        categories = tuple(tuple(sorted(set(_labels(frame[c])) - {None})) for c in categorical)
        return cls(
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            means=tuple(float(m) for m in means),
            scales=tuple(float(s) for s in scales),
            categories=categories,
            id_column=id_column,
        )

    @property
    def names(self) -> list[str]:
        """The name of each entry of x, in order."""
        one_hot = [f"{c}={v}" for c, seen in zip(self.categorical, self.categories, strict=True) for v in seen]
        return [INTERCEPT, *self.numeric, *one_hot]

    @property
    def dimension(self) -> int:
        return 1 + len(self.numeric) + sum(len(seen) for seen in self.categories)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """x for each row: (n, dimension). Raises naming the column on a missing column or a NaN."""
        _check_columns(frame, [*self.numeric, *self.categorical], "Encoding.transform")
        values = _numeric(frame, self.numeric, self.id_column, "Encoding.transform")
        standardized = (values - np.asarray(self.means)) / np.asarray(self.scales)
        blocks = [np.ones((len(frame), 1)), standardized]
        for column, seen in zip(self.categorical, self.categories, strict=True):
            # The code of each row's category among those seen (-1: unknown or missing), then one-hot.
            codes = pd.Categorical(_labels(frame[column]), categories=list(seen)).codes
            one_hot = np.zeros((len(frame), len(seen)))
            known = codes >= 0
            one_hot[np.flatnonzero(known), codes[known]] = 1.0
            blocks.append(one_hot)
        return np.hstack(blocks)


def _labels(values: pd.Series) -> list[str | None]:
    """Categories as text, None where missing: the same label whatever dtype the warehouse returned."""
    missing = values.isna().to_numpy()
    return [None if gone else str(v) for v, gone in zip(values.to_numpy(dtype=object), missing, strict=True)]


def _check_columns(frame: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LinUCBInputError(
            f"{where}: feature columns {missing} are missing (the frame has {sorted(map(str, frame.columns))}); "
            "give rows of learning.experiment_features (ml.features.CATEGORICAL_FEATURES and NUMERIC_FEATURES)"
        )


def _numeric(frame: pd.DataFrame, columns: Sequence[str], id_column: str, where: str) -> np.ndarray:
    _check_columns(frame, columns, where)
    blocks = []
    for column in columns:
        try:
            values = pd.to_numeric(frame[column], errors="raise").to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise LinUCBInputError(
                f"{where}: numeric feature {column!r} has values that are not numbers "
                f"(e.g. {frame[column].iloc[0]!r}); the features table stores every numeric feature as a float"
            ) from None
        bad = ~np.isfinite(values)
        if bad.any():
            raise LinUCBInputError(
                f"{where}: numeric feature {column!r} is NaN or infinite for {_ids(frame, bad, id_column)}; "
                "features are never NULL (ml.features documents each one's fill value): rebuild the features"
            )
        blocks.append(values[:, None])
    return np.hstack(blocks) if blocks else np.empty((len(frame), 0))


class LinUCB:
    """A shared-parameter LinUCB over vectors x (module docstring). Fit with `update`; score
    candidates with `predict` -> (ucb, mean, width)."""

    def __init__(self, dimension: int, *, alpha: float = 1.0, ridge: float = 1.0):
        if dimension < 1:
            raise LinUCBInputError(f"LinUCB: dimension must be at least 1, got {dimension}")
        if not np.isfinite(alpha) or alpha < 0:
            raise LinUCBInputError(f"LinUCB: alpha (exploration) must be a number >= 0, got {alpha!r}")
        if not np.isfinite(ridge) or ridge <= 0:
            raise LinUCBInputError(f"LinUCB: ridge (the prior's precision) must be a number > 0, got {ridge!r}")
        self.alpha = float(alpha)
        self.ridge = float(ridge)
        self.A = self.ridge * np.eye(dimension)
        self.b = np.zeros(dimension)
        self.observations = 0

    @property
    def dimension(self) -> int:
        return self.b.shape[0]

    def update(self, X: np.ndarray, r: np.ndarray) -> "LinUCB":
        X = np.atleast_2d(np.asarray(X, dtype=float))
        r = np.asarray(r, dtype=float).reshape(-1)
        if X.shape[1] != self.dimension:
            raise LinUCBInputError(f"LinUCB.update: vectors of {X.shape[1]} entries, the model has {self.dimension}")
        if X.shape[0] != r.shape[0]:
            raise LinUCBInputError(f"LinUCB.update: {X.shape[0]} vectors but {r.shape[0]} rewards")
        if not (np.isfinite(X).all() and np.isfinite(r).all()):
            raise LinUCBInputError("LinUCB.update: vectors and rewards must be finite")
        self.A = self.A + X.T @ X
        self.b = self.b + X.T @ r
        self.observations += X.shape[0]
        return self

    @property
    def theta(self) -> np.ndarray:
        return np.linalg.solve(self.A, self.b)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ucb, mean, width) for each row of X."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.shape[1] != self.dimension:
            raise LinUCBInputError(f"LinUCB.predict: vectors of {X.shape[1]} entries, the model has {self.dimension}")
        # A is symmetric positive definite (ridge > 0): one Cholesky factor serves theta and every width.
        factor = np.linalg.cholesky(self.A)
        theta = np.linalg.solve(factor.T, np.linalg.solve(factor, self.b))
        mean = X @ theta
        whitened = np.linalg.solve(factor, X.T)  # L^-1 x: x^T A^-1 x = |L^-1 x|^2
        width = np.sqrt(np.maximum((whitened**2).sum(axis=0), 0.0))
        return mean + self.alpha * width, mean, width


@dataclass
class Model:
    """An encoding and the LinUCB fitted through it on the history."""

    encoding: Encoding
    bandit: LinUCB

    @property
    def learned_from(self) -> int:
        return self.bandit.observations

    def priorities(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """One row per candidate: its id, ucb, mean and width."""
        ucb, mean, width = self.bandit.predict(self.encoding.transform(candidates))
        index_column = self.encoding.id_column
        ids = candidates[index_column].to_numpy() if index_column in candidates else candidates.index.to_numpy()
        return pd.DataFrame({index_column: ids, "ucb": ucb, "mean": mean, "width": width})

    def coefficients(self) -> pd.Series:
        """theta by feature name: what the model learned (standardized units: per standard deviation)."""
        return pd.Series(self.bandit.theta, index=self.encoding.names, name="theta")


def fit(
    history: pd.DataFrame,
    rewards: Sequence[float] | np.ndarray | pd.Series,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    alpha: float = 1.0,
    ridge: float = 1.0,
    encode_on: pd.DataFrame | None = None,
    id_column: str = "experiment_id",
) -> Model:
    """Fit the encoding and LinUCB on finished experiments' features and rewards. With no history the
    encoding is fitted on `encode_on` (the candidates: their features are known, their rewards are
    not) and the model is the prior: mean 0, width from the ridge alone."""
    r = np.asarray(rewards, dtype=float).reshape(-1)
    if len(history) != r.shape[0]:
        raise LinUCBInputError(f"fit: {len(history)} experiments but {r.shape[0]} rewards")
    bad = ~np.isfinite(r)
    if bad.any():
        raise LinUCBInputError(f"fit: the reward is NaN or infinite for {_ids(history, bad, id_column)}")
    basis = history if len(history) else encode_on
    if basis is None or len(basis) == 0:
        raise LinUCBInputError("fit: no history and no candidates to fit the encoding on")
    encoding = Encoding.fit(basis, numeric=numeric, categorical=categorical, id_column=id_column)
    bandit = LinUCB(encoding.dimension, alpha=alpha, ridge=ridge)
    if len(history):
        bandit.update(encoding.transform(history), r)
    return Model(encoding, bandit)


# -- one allocation round --------------------------------------------------------------------------

NO_HISTORY = "ranked by its score: no finished experiment with features to learn from yet"


@dataclass
class Round:
    """LinUCB's view of one allocation round. `priorities`: experiment_id, ucb, mean, width for each
    candidate it could score; `fallbacks`: the candidates it could not, each with why (their score
    should rank them); `skipped`: finished experiments left out of learning, each with why."""

    priorities: pd.DataFrame
    fallbacks: dict[str, str]
    skipped: dict[str, str]
    alpha: float
    ridge: float
    model: Model | None = None
    history_mean_reward: float = 0.0
    history_rmse: float = 0.0  # of the mean on the experiments it learned from

    @property
    def learned_from(self) -> int:
        return 0 if self.model is None else self.model.learned_from

    def metrics(self) -> dict[str, float]:
        """Numbers for an experiment tracker (MLflow metrics are floats)."""
        scored = self.priorities
        return {
            "alpha": self.alpha,
            "ridge": self.ridge,
            "learned_from": float(self.learned_from),
            "skipped_history": float(len(self.skipped)),
            "ranked_by_linucb": float(len(scored)),
            "ranked_by_score": float(len(self.fallbacks)),
            "mean_ucb": float(scored["ucb"].mean()) if len(scored) else 0.0,
            "mean_mean": float(scored["mean"].mean()) if len(scored) else 0.0,
            "mean_width": float(scored["width"].mean()) if len(scored) else 0.0,
            "history_mean_reward": self.history_mean_reward,
            "history_rmse": self.history_rmse,
        }


def _unusable(frame: pd.DataFrame, numeric: Sequence[str]) -> pd.Series:
    """Why each row's numeric features cannot be used ("" when they can): the first bad column."""
    reasons = pd.Series("", index=frame.index, dtype=object)
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) & (reasons == "").to_numpy()
        reasons[bad] = f"its feature {column!r} is missing, infinite or not a number"
    return reasons


def allocation_round(
    features: pd.DataFrame,
    outcomes: pd.DataFrame,
    candidates: Sequence[str],
    *,
    alpha: float = 1.0,
    ridge: float = 1.0,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
) -> Round:
    """Priorities for `candidates` (experiment ids) from learning.experiment_features (`features`)
    and experiments.outcomes (`outcomes`: experiment_id, net_minor): the history is every finished
    experiment with features, its reward `reward(net_minor, budget_minor)`. Never raises for a bad
    row: a candidate without usable features is a fallback (ranked by its score, with why), a
    finished experiment without them is skipped from learning (with why). With no history at all
    every candidate is a fallback: ranking by width alone would fund the oddest first, and the
    score is the better guess until something has been learned. `numeric` and `categorical`
    default to ml.features' NUMERIC_FEATURES and CATEGORICAL_FEATURES."""
    if numeric is None or categorical is None:
        from ml.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

        numeric = NUMERIC_FEATURES if numeric is None else numeric
        categorical = CATEGORICAL_FEATURES if categorical is None else categorical
    # Refused up front, before any data is looked at: a configuration error, not a bad row.
    LinUCB(1, alpha=alpha, ridge=ridge)
    empty = pd.DataFrame(columns=["experiment_id", "ucb", "mean", "width"])
    missing = [c for c in ["experiment_id", *numeric, *categorical] if c not in features.columns]
    if missing:
        why = f"ranked by its score: learning.experiment_features lacks the columns {missing}"
        return Round(empty, dict.fromkeys(candidates, why), {}, alpha, ridge)
    features = features.assign(experiment_id=features["experiment_id"].astype(str).to_numpy(dtype=object))
    features = features.drop_duplicates("experiment_id", keep="last").set_index("experiment_id", drop=False)
    reasons = _unusable(features, numeric)
    budget_column = "budget_minor"

    fallbacks: dict[str, str] = {}
    usable: list[str] = []
    for key in candidates:
        if key not in features.index:
            fallbacks[key] = "ranked by its score: no features for it in learning.experiment_features yet"
        elif reasons[key]:
            fallbacks[key] = f"ranked by its score: {reasons[key]}"
        else:
            usable.append(key)

    # Vectorized: the history may hold 100,000 finished experiments.
    ids = outcomes["experiment_id"].astype(str).to_numpy(dtype=object)
    waiting, described = set(candidates), set(features.index)
    finished = outcomes.assign(experiment_id=ids).loc[np.array([key not in waiting for key in ids], dtype=bool)]
    finished = finished.drop_duplicates("experiment_id")
    why = reasons.reindex(finished["experiment_id"]).fillna("")
    why[np.array([key not in described for key in finished["experiment_id"]], dtype=bool)] = (
        "no features for it in learning.experiment_features"
    )
    skipped = {key: text for key, text in why.items() if text}
    history_ids = list(why.index[(why == "").to_numpy()])
    history = features.loc[history_ids]
    net = finished.set_index("experiment_id").loc[history_ids, "net_minor"]
    budget = history[budget_column] if budget_column in history else pd.Series(1.0, index=history.index)
    rewards = reward(net.to_numpy(dtype=float), budget.to_numpy(dtype=float))

    if not history_ids:
        fallbacks.update(dict.fromkeys(usable, NO_HISTORY))
        return Round(empty, fallbacks, skipped, alpha, ridge)
    model = fit(history, rewards, numeric=numeric, categorical=categorical, alpha=alpha, ridge=ridge)
    scored = model.priorities(features.loc[usable]).reset_index(drop=True) if usable else empty
    fitted = model.priorities(history)["mean"].to_numpy()
    rmse = float(np.sqrt(((fitted - rewards) ** 2).mean()))
    return Round(scored, fallbacks, skipped, alpha, ridge, model, float(rewards.mean()), rmse)
