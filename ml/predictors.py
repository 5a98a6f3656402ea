"""The success and revenue predictors: XGBoost on the proposal-time features (ml.features), a
time-ordered holdout, the metrics a user judges them by, the quality gates a model must pass, and
the champion rule that decides whether a new version replaces the current one.

- Split: rows ordered by proposed_at; the last `holdout_fraction` is the holdout, never shuffled,
  so every training row was proposed no later than every holdout row (a model is judged on the
  future, as it will be used).
- Success: XGBClassifier on ml.features.CATEGORICAL_FEATURES (pandas `category`, native
  categorical splits) + NUMERIC_FEATURES; AUC, log loss, Brier score and a calibration table.
- Revenue: XGBRegressor on log1p(revenue_minor) with the pseudo-Huber objective; MAE in minor
  units (after expm1) and RMSLE, with the RMSLE of the best constant (the training mean of the
  log target) as the baseline to beat.
- Gates (`quality_gates`): a minimum metric per model and "not constant" on the holdout.
- Champion (`should_promote`): a candidate replaces the champion only if its gates pass and it
  beats the champion scored on the SAME holdout (the caller loads the champion and calls `evaluate`).

XGBoost 3.x and categories, as measured with xgboost-cpu 3.2: a model trained on pandas category
columns stores their categories and re-codes a prediction frame's categories by value (a different
order or a subset of them predicts the same), including after save/load; a category it never saw
raises XGBoostError. `design_matrix` therefore maps unseen categories to missing before predicting.

xgboost and sklearn are imported inside the functions: importing them costs seconds.
"""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SUCCESS = "success"
REVENUE = "revenue"
TIME_COLUMN = "proposed_at"
HOLDOUT_FRACTION = 0.25
MIN_EXPERIMENTS = 40  # finished experiments below which no model is trained
MIN_HOLDOUT = 10
MIN_CLASS_ROWS = 3  # of each outcome, in the training part and in the holdout
MIN_AUC = 0.55
CONSTANT_STD = 1e-6  # predictions on the holdout with a smaller spread are a constant model
HUBER_SLOPE = 3.0  # log1p(minor units): residuals beyond 20x count linearly; measured: slope 1 to 3 lowered RMSLE 1-2%
CALIBRATION_BINS = 10
# The primary metric of each model, and whether higher is better: the champion rule compares it.
PRIMARY = {SUCCESS: ("auc", True), REVENUE: ("rmsle", False)}


class TrainingDataError(ValueError):
    """Too few finished experiments, or only one outcome: no model can be trained or judged."""


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame

    @property
    def cutoff(self) -> pd.Timestamp:
        """The first proposal time of the holdout: every training row was proposed at or before it."""
        return self.holdout[TIME_COLUMN].min()


@dataclass
class Candidate:
    """A trained model with its holdout evaluation and gates, ready to log and to compare."""

    kind: str
    model: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame]
    split: Split
    predictions: np.ndarray  # on the holdout
    passed: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def primary(self) -> tuple[str, float]:
        name, _ = PRIMARY[self.kind]
        return name, self.metrics[name]


def feature_columns(categorical: list[str] | None = None, numeric: list[str] | None = None) -> tuple[list, list]:
    """The model's inputs: ml.features' lists unless given."""
    if categorical is None or numeric is None:
        from ml.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

        categorical = list(CATEGORICAL_FEATURES) if categorical is None else categorical
        numeric = list(NUMERIC_FEATURES) if numeric is None else numeric
    return list(categorical), list(numeric)


def time_split(
    frame: pd.DataFrame,
    holdout_fraction: float = HOLDOUT_FRACTION,
    *,
    min_rows: int = MIN_EXPERIMENTS,
    label: str | None = None,
) -> Split:
    """The last `holdout_fraction` of `frame` by proposed_at (ties by experiment_id) is the holdout.

    Raises TrainingDataError when there are fewer than `min_rows` rows, or, with `label` (a boolean
    column), when the training part or the holdout lacks either outcome."""
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction={holdout_fraction}: use a share strictly between 0 and 1")
    if TIME_COLUMN not in frame:
        raise ValueError(f"the training frame has no {TIME_COLUMN} column (columns: {', '.join(frame.columns)})")
    if len(frame) < max(min_rows, 2):
        raise TrainingDataError(
            f"{len(frame)} finished experiment(s); a model needs at least {min_rows} "
            "(more experiments must finish, or lower min_experiments)"
        )
    keys = [TIME_COLUMN, "experiment_id"] if "experiment_id" in frame else [TIME_COLUMN]
    ordered = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    holdout_rows = min(max(math.ceil(len(ordered) * holdout_fraction), MIN_HOLDOUT), len(ordered) - 1)
    split = Split(
        ordered.iloc[:-holdout_rows].reset_index(drop=True), ordered.iloc[-holdout_rows:].reset_index(drop=True)
    )
    if label is not None:
        for part, rows in (("training part", split.train), ("holdout", split.holdout)):
            positives = int(rows[label].astype(bool).sum())
            negatives = len(rows) - positives
            if min(positives, negatives) < MIN_CLASS_ROWS:
                raise TrainingDataError(
                    f"the {part} ({len(rows)} experiments proposed {rows[TIME_COLUMN].min()} .. "
                    f"{rows[TIME_COLUMN].max()}) has {positives} success(es) and {negatives} other outcome(s); "
                    f"the success predictor needs at least {MIN_CLASS_ROWS} of each in both parts"
                )
    return split


def design_matrix(frame: pd.DataFrame, categorical: list[str], numeric: list[str], categories=None) -> pd.DataFrame:
    """The model's input: numeric columns as float64, categorical ones as pandas `category`.

    `categories` (column -> the values a trained model knows) restricts each categorical column to
    them; any other value becomes missing, which XGBoost routes down its default branch."""
    missing = [c for c in [*categorical, *numeric] if c not in frame]
    if missing:
        raise ValueError(f"the features frame lacks {', '.join(missing)} (has: {', '.join(frame.columns)})")
    data = {}
    for column in categorical:
        values = frame[column].astype("string")
        known = categories.get(column) if categories else None
        if known is None:
            known = sorted(values.dropna().unique())
        data[column] = pd.Categorical(values.where(values.isin(known)).astype(object), categories=list(known))
    for column in numeric:
        data[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return pd.DataFrame(data, index=frame.index)[[*categorical, *numeric]]


def model_inputs(model: Any, features: pd.DataFrame) -> pd.DataFrame:
    """`features` shaped as `model` was trained: its columns in its order, its categories."""
    booster = model.get_booster()
    names, types = booster.feature_names, booster.feature_types
    categorical = [n for n, t in zip(names, types, strict=True) if t == "c"]
    numeric = [n for n, t in zip(names, types, strict=True) if t != "c"]
    known = {
        name: arr.to_pylist()
        for name, arr in booster.get_categories(export_to_arrow=True).to_arrow()
        if arr is not None
    }
    return design_matrix(features, categorical, numeric, known)[list(names)]


def _tree_params(rows: int, seed: int) -> dict[str, Any]:
    # Shallow trees with shrinkage: the data are small and tabular, the effects mostly additive.
    return {
        "n_estimators": 400,
        "learning_rate": 0.05,
        "max_depth": 2,
        "min_child_weight": 1.0 if rows >= 500 else 0.5,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "tree_method": "hist",
        "enable_categorical": True,
        "max_cat_to_onehot": 1,  # partition splits over the categories, not one-vs-rest
        "random_state": seed,
        "n_jobs": 1,  # measured: on the shared 2-core machine one thread trains 3x faster than two
    }


def _rounds(estimator_class, params: dict, x: pd.DataFrame, y: np.ndarray) -> int:
    """The number of trees: early stopping on the last fifth of the training part (time-ordered,
    never the holdout), so the holdout stays unseen until it judges the model."""
    if len(x) < 100:
        return 100
    cut = int(len(x) * 0.8)
    probe = estimator_class(**{**params, "early_stopping_rounds": 40})
    probe.fit(x.iloc[:cut], y[:cut], eval_set=[(x.iloc[cut:], y[cut:])], verbose=False)
    return max(int(probe.best_iteration) + 1, 20)


def train_success(
    frame: pd.DataFrame,
    *,
    holdout_fraction: float = HOLDOUT_FRACTION,
    min_experiments: int = MIN_EXPERIMENTS,
    min_auc: float = MIN_AUC,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
    seed: int = 0,
) -> Candidate:
    """An XGBClassifier of `succeeded` from a training frame (ml.features.training_frame), with its
    holdout metrics, calibration table and gates."""
    from xgboost import XGBClassifier

    categorical, numeric = feature_columns(categorical, numeric)
    split = time_split(frame, holdout_fraction, min_rows=min_experiments, label="succeeded")
    x = design_matrix(split.train, categorical, numeric)
    y = split.train["succeeded"].astype(bool).to_numpy().astype(int)
    params = {**_tree_params(len(x), seed), "objective": "binary:logistic", "eval_metric": "logloss"}
    params["n_estimators"] = _rounds(XGBClassifier, params, x, y)
    model = XGBClassifier(**params).fit(x, y, verbose=False)
    metrics, tables, predictions = evaluate(SUCCESS, model, split.holdout)
    metrics |= {"train_rows": float(len(split.train)), "holdout_rows": float(len(split.holdout))}
    metrics["train_success_rate"] = float(y.mean())
    candidate = Candidate(SUCCESS, model, params, metrics, tables, split, predictions)
    candidate.passed, candidate.reasons = quality_gates(SUCCESS, metrics, predictions, min_auc=min_auc)
    return candidate


def train_revenue(
    frame: pd.DataFrame,
    *,
    holdout_fraction: float = HOLDOUT_FRACTION,
    min_experiments: int = MIN_EXPERIMENTS,
    categorical: list[str] | None = None,
    numeric: list[str] | None = None,
    seed: int = 0,
) -> Candidate:
    """An XGBRegressor of log1p(revenue_minor), pseudo-Huber loss, with its holdout metrics and gates."""
    from xgboost import XGBRegressor

    categorical, numeric = feature_columns(categorical, numeric)
    split = time_split(frame, holdout_fraction, min_rows=min_experiments)
    x = design_matrix(split.train, categorical, numeric)
    y = log_revenue(split.train)
    params = {
        **_tree_params(len(x), seed),
        "objective": "reg:pseudohubererror",
        "huber_slope": HUBER_SLOPE,
        # Measured: left to estimate its own intercept, pseudo-Huber takes one Newton step from 0,
        # where the hessian is tiny, lands far beyond the data (62 for targets near 5) and the
        # trees never recover (every prediction equal). The mean of the target starts it in place.
        "base_score": float(y.mean()),
        "eval_metric": "rmse",
    }
    params["n_estimators"] = _rounds(XGBRegressor, params, x, y)
    model = XGBRegressor(**params).fit(x, y, verbose=False)
    metrics, tables, predictions = evaluate(REVENUE, model, split.holdout, baseline_log=float(y.mean()))
    metrics |= {"train_rows": float(len(split.train)), "holdout_rows": float(len(split.holdout))}
    candidate = Candidate(REVENUE, model, params, metrics, tables, split, predictions)
    candidate.passed, candidate.reasons = quality_gates(REVENUE, metrics, predictions)
    return candidate


def log_revenue(frame: pd.DataFrame) -> np.ndarray:
    revenue = pd.to_numeric(frame["revenue_minor"], errors="coerce")
    if revenue.isna().any() or (revenue < 0).any():
        bad = frame.loc[revenue.isna() | (revenue < 0), "experiment_id" if "experiment_id" in frame else TIME_COLUMN]
        raise ValueError(f"revenue_minor must be a non-negative integer; not so for {', '.join(map(str, bad[:5]))}")
    return np.log1p(revenue.to_numpy(dtype="float64"))


def evaluate(
    kind: str, model: Any, holdout: pd.DataFrame, *, baseline_log: float | None = None
) -> tuple[dict[str, float], dict[str, pd.DataFrame], np.ndarray]:
    """A model's metrics on a holdout (also how a champion is scored on a candidate's holdout):
    (metrics, tables, predictions). Revenue predictions are log1p(minor units)."""
    x = model_inputs(model, holdout)
    if kind == SUCCESS:
        predictions = model.predict_proba(x)[:, 1].astype("float64")
        outcome = holdout["succeeded"].astype(bool).to_numpy()
        return (
            success_metrics(outcome, predictions),
            {"calibration": calibration_table(outcome, predictions)},
            predictions,
        )
    if kind == REVENUE:
        predictions = model.predict(x).astype("float64")
        return revenue_metrics(log_revenue(holdout), predictions, baseline_log), {}, predictions
    raise ValueError(f"unknown model kind {kind!r}: use {SUCCESS!r} or {REVENUE!r}")


def success_metrics(outcome: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    outcome = np.asarray(outcome, dtype=bool)
    probability = np.clip(np.asarray(probability, dtype="float64"), 1e-7, 1 - 1e-7)
    both = outcome.any() and not outcome.all()
    return {
        "auc": float(roc_auc_score(outcome, probability)) if both else float("nan"),
        "log_loss": float(log_loss(outcome, probability, labels=[False, True])),
        "brier": float(brier_score_loss(outcome, probability)),
        "holdout_success_rate": float(outcome.mean()),
        "prediction_std": float(probability.std()),
    }


def revenue_metrics(actual_log: np.ndarray, predicted_log: np.ndarray, baseline_log: float | None) -> dict[str, float]:
    """MAE in minor units (expm1 of both) and RMSLE; the baseline is the RMSLE of predicting
    `baseline_log` for every row (the training mean of the log target: the best constant)."""
    actual_log = np.asarray(actual_log, dtype="float64")
    predicted_log = np.clip(np.asarray(predicted_log, dtype="float64"), 0.0, None)
    metrics = {
        "mae_minor": float(np.abs(np.expm1(predicted_log) - np.expm1(actual_log)).mean()),
        "rmsle": float(np.sqrt(np.mean((predicted_log - actual_log) ** 2))),
        "prediction_std": float(predicted_log.std()),
    }
    if baseline_log is not None:
        metrics["baseline_rmsle"] = float(np.sqrt(np.mean((baseline_log - actual_log) ** 2)))
    return metrics


def calibration_table(outcome: np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Deciles of the predicted probability (fewer when predictions tie): per bin its count, the
    mean prediction and the observed success rate. A calibrated model has the two close."""
    frame = pd.DataFrame({"p": np.asarray(probability, dtype="float64"), "y": np.asarray(outcome, dtype=bool)})
    ranks = frame["p"].rank(method="first")
    frame["bin"] = pd.qcut(ranks, min(bins, len(frame)), labels=False) + 1 if len(frame) else []
    table = frame.groupby("bin").agg(
        count=("y", "size"),
        predicted_mean=("p", "mean"),
        observed_rate=("y", "mean"),
        low=("p", "min"),
        high=("p", "max"),
    )
    return table.reset_index().astype({"bin": "int64", "count": "int64"})


def quality_gates(
    kind: str, metrics: dict[str, float], predictions: np.ndarray, *, min_auc: float = MIN_AUC
) -> tuple[bool, list[str]]:
    """(passed, reasons): every gate with its verdict, the failing ones first."""
    spread = float(np.std(np.asarray(predictions, dtype="float64")))
    varies = spread > CONSTANT_STD
    relation = ">" if varies else "<="
    gates = [
        (
            varies,
            f"prediction std on the holdout {spread:.3g} {relation} {CONSTANT_STD:g} (a constant model is refused)",
        )
    ]
    if kind == SUCCESS:
        auc = metrics.get("auc", float("nan"))
        ok = not math.isnan(auc) and auc >= min_auc
        gates.append((ok, f"AUC {auc:.3f} {'>=' if ok else 'below the minimum'} {min_auc:.2f}"))
    elif kind == REVENUE:
        rmsle, baseline = metrics.get("rmsle", float("nan")), metrics.get("baseline_rmsle", float("nan"))
        ok = not math.isnan(rmsle) and not math.isnan(baseline) and rmsle < baseline
        verdict = "<" if ok else "is not below"
        gates.append((ok, f"RMSLE {rmsle:.3f} {verdict} the constant baseline's {baseline:.3f}"))
    else:
        raise ValueError(f"unknown model kind {kind!r}: use {SUCCESS!r} or {REVENUE!r}")
    gates.sort(key=lambda gate: gate[0])
    return all(ok for ok, _ in gates), [("pass: " if ok else "FAIL: ") + text for ok, text in gates]


def should_promote(
    candidate_metric: float,
    champion_metric: float | None,
    *,
    higher_is_better: bool = True,
    gates_passed: bool = True,
    champion: str = "the champion",
) -> tuple[bool, str]:
    """(promote, why). The candidate's and the champion's metric must come from the SAME holdout
    (the candidate's): the champion is loaded and scored on it. No champion (None, or one that could
    not be scored: NaN) promotes a candidate that passes its gates; a tie keeps the champion."""
    if not gates_passed:
        return False, "its quality gates failed"
    if champion_metric is None or (isinstance(champion_metric, float) and math.isnan(champion_metric)):
        return (
            True,
            "no champion to beat" if champion_metric is None else f"{champion} cannot be scored on this holdout",
        )
    better = candidate_metric > champion_metric if higher_is_better else candidate_metric < champion_metric
    relation = (
        "beats" if better else "does not beat"
    ) + f" {champion}: {candidate_metric:.4f} vs {champion_metric:.4f}"
    return better, f"{relation} on the same holdout"


def success_probability(model: Any, features: pd.DataFrame) -> np.ndarray:
    """P(success) per row of a features frame (ml.features columns), in [0, 1]."""
    if features.empty:
        return np.zeros(0)
    return model.predict_proba(model_inputs(model, features))[:, 1].astype("float64")


def predicted_revenue(model: Any, features: pd.DataFrame) -> np.ndarray:
    """Expected revenue per row in integer minor units (expm1 of the log prediction, at least 0)."""
    if features.empty:
        return np.zeros(0, dtype="int64")
    log = np.clip(model.predict(model_inputs(model, features)).astype("float64"), 0.0, None)
    return np.rint(np.expm1(log)).astype("int64")
