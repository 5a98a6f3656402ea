"""Anomalies in daily metrics: robust z-score rules for sharp single-day breaks, and an
IsolationForest (the seed's AnomalyDetector) over rolling features for what a rule misses.

The series are one value per metric and UTC day (revenue_minor, cost_minor, refunds_minor,
experiment_failures, run_duration_seconds, source_errors); a day is judged against its own past
only, so an anomaly found today is found again tomorrow with the same expected value.

Baseline of day t (`baseline`): the `window` observations before t (28 by default), divided by a
weekday profile: each weekday's median over the `season_window` observations before t (56) over
their overall median. The profile is used only when each weekday has at least 6 observations, the
overall and every weekday's median are positive (a mostly-zero count series has no multiplicative
profile), and it cuts the window's MAD by a quarter (PROFILE_GAIN): on a low-count series the
weekday medians are noise. With fewer observations per weekday the profile fits the window's own
noise and the scale shrinks with it.

    level    = median of the adjusted window
    expected = level x profile[weekday of t]
    error    = value / profile[weekday of t] - level        (the one-day-ahead error of day t)
    scale    = error_scale(errors of the `window` days before t), at least
               max(min_scale of the metric, relative_floor x |level|)
    robust z = error / scale

The scale comes from one-day-ahead errors, each computed when its day was new, so it includes how
wrong the baseline itself tends to be: scaled by in-sample residuals instead, z had a standard
deviation of 1.43 on clean weekly-seasonal Poisson series, and 1.3% of days reached |z| >= 4
(0.06% with the one-day-ahead errors). The floors make a constant series usable: zero MAD would
give an infinite z for any change, and one extra error on a day that always has none is not an
incident.

Robust z (`method = robust_z`): |z| >= Z_SEVERITY["low"] is an anomaly; its score is |z|.

IsolationForest (`method = isolation_forest`), one forest per metric, fitted on that metric's judged
days (the seed fitted one model per metric too): features robust z, day-over-day change in scale
units, asinh of the change against the expected value, the window's scale relative to its level
(how noisy the recent past was), the level's change over the last 7 days in scale units (a level
shift keeps this high after the single-day rule has adapted) and the weekday as sin/cos. Its score is
the isolation score s = 2^(-E[h(x)] / c(n)) in (0, 1) (sklearn's -score_samples), 0.5 for an
ordinary point; s >= IF_SEVERITY["low"] and |z| >= IF_MIN_Z is an anomaly. The second condition keeps
the forest from flagging a day only for being an unusual combination of ordinary values.

Severity (documented thresholds, docs/anomalies.md):
    robust_z:          low |z| >= 3.5, medium >= 5, high >= 8, critical >= 12
    isolation_forest:  low s >= 0.62, medium >= 0.68, high >= 0.74, critical >= 0.80

Short series: a metric with fewer than `min_history` + 1 observations has no baseline yet and no
anomaly; the forest needs `forest_min_days` judged days. `detect` says which metrics were skipped
and why (Detection.skipped), rather than returning silence that looks like "all clear".

Deterministic: the forest has a fixed random_state (`seed`); everything else is closed-form.
Framework-free: numpy, pandas, and scikit-learn imported inside the forest's function.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

METRICS = (
    "revenue_minor",
    "cost_minor",
    "refunds_minor",
    "experiment_failures",
    "run_duration_seconds",
    "source_errors",
)
METHODS = ("isolation_forest", "robust_z")
SEVERITIES = ("low", "medium", "high", "critical")
Z_SEVERITY = {"low": 3.5, "medium": 5.0, "high": 8.0, "critical": 12.0}
IF_SEVERITY = {"low": 0.62, "medium": 0.68, "high": 0.74, "critical": 0.80}
IF_MIN_Z = 3.0
PROFILE_GAIN = 0.75  # the weekday profile must cut the window's MAD by a quarter to be used
FIRST_PREDICTION = 7  # one-day-ahead errors are collected from day 7 on, for the scale of day 14 on
MAD_TO_SIGMA = 1.4826  # 1 / Phi^-1(3/4): MAD x this estimates a normal's standard deviation
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi / 2): the same for the mean absolute deviation
Q90_TO_SIGMA = 1.2816  # Phi^-1(0.9): the 90th percentile of |error| over this estimates it too
# The smallest change worth a unit of scale, per metric: one minor unit of money is noise, a dollar
# (100 minor units of USD) is the smallest a person would look at; one failure; one second.
MIN_SCALE = {
    "revenue_minor": 100.0,
    "cost_minor": 100.0,
    "refunds_minor": 100.0,
    "experiment_failures": 1.0,
    "run_duration_seconds": 1.0,
    "source_errors": 1.0,
}
SERIES_COLUMNS = ("metric_date", "metric", "value")
ANOMALY_COLUMNS = (
    "anomaly_id",
    "metric_date",
    "metric",
    "value",
    "expected",
    "score",
    "severity",
    "method",
    "explanation",
)
FEATURES = ("robust_z", "day_over_day", "relative_change", "noise", "level_shift", "weekday_sin", "weekday_cos")


class AnomalyError(ValueError):
    """A series the detector cannot read; the message names the column or value and what to do."""


@dataclass(frozen=True)
class Settings:
    window: int = 28
    season_window: int = 56
    min_history: int = 14
    forest_min_days: int = 28
    profile_min_per_weekday: int = 6
    relative_floor: float = 0.02
    trees: int = 200
    seed: int = 7
    min_scale: Mapping[str, float] = field(default_factory=lambda: dict(MIN_SCALE))

    def __post_init__(self) -> None:
        if self.window < 3 or self.min_history < 3:
            raise AnomalyError(f"window {self.window} and min_history {self.min_history} must both be at least 3 days")
        if self.min_history > self.window:
            raise AnomalyError(f"min_history {self.min_history} cannot exceed the window ({self.window} days)")
        if self.relative_floor < 0:
            raise AnomalyError(f"relative_floor {self.relative_floor} must be >= 0")

    def scale_floor(self, metric: str) -> float:
        return float(self.min_scale.get(metric, 1.0))


@dataclass
class Detection:
    """What `detect` found: the anomalies (ANOMALY_COLUMNS), the scored days of every metric
    (`scored`: metric_date, metric, value, expected, scale, robust_z, isolation_score) and the
    metrics or methods that were not run, with why."""

    anomalies: pd.DataFrame
    scored: pd.DataFrame
    skipped: dict[str, str]

    def counts(self) -> dict[str, int]:
        return {s: int((self.anomalies["severity"] == s).sum()) for s in SEVERITIES}


def anomaly_id(metric: str, metric_date: date, method: str) -> str:
    """Deterministic from (metric, day, method): a re-run finds the same anomaly under the same id."""
    day = metric_date.isoformat() if hasattr(metric_date, "isoformat") else str(metric_date)
    return hashlib.sha256(f"{metric}|{day[:10]}|{method}".encode()).hexdigest()[:32]


def severity(method: str, score: float) -> str | None:
    """The severity for a method's score, or None when the score is below the method's threshold."""
    thresholds = Z_SEVERITY if method == "robust_z" else IF_SEVERITY
    found = None
    for name in SEVERITIES:
        if score >= thresholds[name]:
            found = name
    return found


def _amount(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"


def explanation(metric: str, metric_date: date, value: float, expected: float, z: float, score_text: str = "") -> str:
    """'revenue_minor 12,400 on 2026-11-03 vs expected 3,100 (4.0x, robust z 7.2)': the metric, the day,
    what it was, what its past predicted, by how much it moved and the evidence."""
    if expected > 0 and value >= 0:
        ratio = value / expected
        moved = f"{ratio:.1f}x" if ratio >= 2 else f"{(ratio - 1) * 100:+.0f}%"
    elif expected == 0:
        moved = f"up {_amount(value)} from 0" if value > 0 else f"{_amount(value)} from 0"
    else:
        moved = f"{value - expected:+,.0f}"
    day = metric_date.isoformat()[:10] if hasattr(metric_date, "isoformat") else str(metric_date)
    evidence = f"robust z {z:.1f}" + (f", {score_text}" if score_text else "")
    return f"{metric} {_amount(value)} on {day} vs expected {_amount(expected)} ({moved}, {evidence})"


def baseline(values: np.ndarray, weekdays: np.ndarray, t: int, settings: Settings) -> tuple[float, float]:
    """(level, weekday factor) of day t from the observations before it: expected = level x factor."""
    season = values[max(0, t - settings.season_window) : t]
    season_days = weekdays[max(0, t - settings.season_window) : t]
    profile = np.ones(7)
    overall = float(np.median(season))
    if overall > 0:
        medians = []
        for day in range(7):
            same = season[season_days == day]
            if len(same) < settings.profile_min_per_weekday:
                break
            medians.append(float(np.median(same)))
        if len(medians) == 7 and min(medians) > 0:
            candidate = np.asarray(medians) / overall
            adjusted = season / candidate[season_days]
            spread = float(np.median(np.abs(season - overall)))
            # Kept only when it explains most of the spread: on a low-count series the weekday
            # medians are mostly noise, and dividing by them made more false alarms than it removed.
            if spread > 0 and float(np.median(np.abs(adjusted - np.median(adjusted)))) < PROFILE_GAIN * spread:
                profile = candidate
    start = max(0, t - settings.window)
    level = float(np.median(values[start:t] / profile[weekdays[start:t]]))
    return level, float(profile[weekdays[t]])


def error_scale(errors: np.ndarray, floor: float) -> float:
    """The larger of two normal-consistent estimates of the one-day-ahead errors' spread: 1.4826 x
    their median absolute value and their 90th percentile / 1.2816; else (more than 90% of them 0)
    1.2533 x their mean absolute value; at least `floor`.

    On a normal series both estimate its standard deviation. The percentile is what keeps a lumpy,
    mostly-zero series (refunds: a whole charge now and then) from turning each refund into a
    z of 50: there the median absolute error is 0 and the mean is a fraction of one refund."""
    if len(errors) == 0:
        return floor
    deviations = np.abs(errors)
    scale = max(MAD_TO_SIGMA * float(np.median(deviations)), float(np.quantile(deviations, 0.9)) / Q90_TO_SIGMA)
    if scale == 0:
        scale = MEAN_AD_TO_SIGMA * float(np.mean(deviations))
    return max(scale, floor)


def _clean(series: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    missing = [c for c in SERIES_COLUMNS if c not in series.columns]
    if missing:
        raise AnomalyError(f"the daily series lacks columns {missing}: it needs {list(SERIES_COLUMNS)}")
    frame = series[list(SERIES_COLUMNS)].copy()
    frame["metric_date"] = pd.to_datetime(frame["metric_date"]).dt.date
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    bad = frame[~np.isfinite(frame["value"])]
    if len(bad):
        first = bad.iloc[0]
        raise AnomalyError(
            f"{len(bad)} value(s) are not finite numbers, first {first['metric']} on {first['metric_date']}: "
            f"leave a day out rather than write NaN"
        )
    duplicated = frame.duplicated(subset=["metric", "metric_date"])
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise AnomalyError(f"{first['metric']} has more than one value on {first['metric_date']}: one per day")
    return frame.sort_values(["metric", "metric_date"]).reset_index(drop=True)


def score_metric(dates: list[date], values: np.ndarray, metric: str, settings: Settings) -> pd.DataFrame:
    """Every judged day of one metric (day min_history onwards) with its baseline and features."""
    import pandas as pd

    weekdays = np.asarray([d.weekday() for d in dates], dtype=int)
    rows = []
    levels: list[float] = []
    errors: list[float] = []  # deseasonalized one-day-ahead errors, from day FIRST_PREDICTION on
    for t in range(min(FIRST_PREDICTION, settings.min_history), len(values)):
        level, factor = baseline(values, weekdays, t, settings)
        value = float(values[t])
        error = value / factor - level
        if t >= settings.min_history:
            floor = max(settings.scale_floor(metric), settings.relative_floor * abs(level))
            scale = error_scale(np.asarray(errors[-settings.window :]), floor)
            expected = level * factor
            previous_level = levels[-7] if len(levels) >= 7 else levels[0]
            rows.append(
                {
                    "metric_date": dates[t],
                    "metric": metric,
                    "value": value,
                    "expected": expected,
                    "scale": scale,
                    "robust_z": error / scale,
                    "day_over_day": (value - float(values[t - 1])) / scale,
                    "relative_change": math.asinh((value - expected) / max(abs(expected), scale)),
                    "noise": scale / max(abs(level), settings.scale_floor(metric)),
                    "level_shift": (level - previous_level) / scale,
                    "weekday_sin": math.sin(2 * math.pi * weekdays[t] / 7),
                    "weekday_cos": math.cos(2 * math.pi * weekdays[t] / 7),
                }
            )
        levels.append(level)
        errors.append(error)
    return pd.DataFrame(rows, columns=["metric_date", "metric", "value", "expected", "scale", *FEATURES])


def isolation_scores(features: np.ndarray, settings: Settings) -> np.ndarray:
    """The isolation score s in (0, 1) of every row, from a forest fitted on all of them."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(
        n_estimators=settings.trees, max_samples=min(256, len(features)), random_state=settings.seed
    )
    forest.fit(features)
    return -forest.score_samples(features)


def detect(series: pd.DataFrame, settings: Settings | None = None, methods: tuple[str, ...] = METHODS) -> Detection:
    """Anomalies in a long frame of daily series (metric_date, metric, value), one row per
    (metric, day, method) that crossed its method's threshold."""
    import pandas as pd

    settings = settings or Settings()
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise AnomalyError(f"unknown method(s) {unknown}: use {list(METHODS)}")
    frame = _clean(series)
    scored_parts, rows, skipped = [], [], {}
    for metric, group in frame.groupby("metric", sort=True):
        metric = str(metric)
        if len(group) <= settings.min_history:
            skipped[metric] = (
                f"{len(group)} day(s) of history: a day is judged against the {settings.min_history} before it "
                f"at least, so nothing is judged before day {settings.min_history + 1}"
            )
            continue
        scored = score_metric(list(group["metric_date"]), group["value"].to_numpy(dtype=float), metric, settings)
        scored["isolation_score"] = np.nan
        if "isolation_forest" in methods:
            if len(scored) >= settings.forest_min_days:
                scored["isolation_score"] = isolation_scores(scored[list(FEATURES)].to_numpy(), settings)
            else:
                skipped[f"{metric}/isolation_forest"] = (
                    f"{len(scored)} judged day(s): the forest is fitted on {settings.forest_min_days} at least"
                )
        scored_parts.append(scored)
        for row in scored.itertuples(index=False):
            if "robust_z" in methods and (level := severity("robust_z", abs(row.robust_z))):
                rows.append(_anomaly(row, "robust_z", abs(row.robust_z), level, ""))
            s = row.isolation_score
            if not math.isnan(s) and abs(row.robust_z) >= IF_MIN_Z and (level := severity("isolation_forest", s)):
                rows.append(_anomaly(row, "isolation_forest", s, level, f"isolation score {s:.2f}"))
    columns = ["metric_date", "metric", "value", "expected", "scale", "robust_z", "isolation_score"]
    scored_all = pd.concat(scored_parts, ignore_index=True)[columns] if scored_parts else pd.DataFrame(columns=columns)
    anomalies = pd.DataFrame(rows, columns=list(ANOMALY_COLUMNS))
    anomalies = anomalies.sort_values(["metric_date", "metric", "method"]).reset_index(drop=True)
    return Detection(anomalies, scored_all, skipped)


def _anomaly(row, method: str, score: float, level: str, score_text: str) -> dict:
    return {
        "anomaly_id": anomaly_id(row.metric, row.metric_date, method),
        "metric_date": row.metric_date,
        "metric": row.metric,
        "value": row.value,
        "expected": row.expected,
        "score": float(score),
        "severity": level,
        "method": method,
        "explanation": explanation(row.metric, row.metric_date, row.value, row.expected, row.robust_z, score_text),
    }


def markdown(anomalies: pd.DataFrame, limit: int = 10) -> str:
    """The newest anomalies as a table short enough for an asset page."""
    if anomalies.empty:
        return "no anomaly"
    newest = anomalies.sort_values(["metric_date", "score"], ascending=[False, False]).head(limit)
    lines = ["| day | metric | method | severity | explanation |", "|---|---|---|---|---|"]
    for row in newest.itertuples(index=False):
        day = row.metric_date.isoformat()[:10] if hasattr(row.metric_date, "isoformat") else str(row.metric_date)
        lines.append(f"| {day} | {row.metric} | {row.method} | {row.severity} | {row.explanation} |")
    return "\n".join(lines)
