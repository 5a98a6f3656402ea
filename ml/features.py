"""The features of every proposed experiment, computed as of its proposal time and nothing later.

`build_features(proposals, finished, opportunities)` gives one row per proposal. It is strictly
point in time: a proposal sees only the finished experiments with finished_at < proposed_at and the
opportunities with first_seen_at <= proposed_at, so appending anything that happened later (more
outcomes, more opportunities, however extreme) leaves every earlier row bit-identical
(tests/unit/test_experiment_features.py proves it). Vectorized: counts come from sorted arrays and
np.searchsorted, sums from per-group cumulative sums, one pass per source or type, never per row.

Each feature, its fill value when unknown, and why it is known at proposal time t (proposed_at).
"snapshot" means experiments.proposal_features, written with the experiment when it was proposed.

| feature | meaning | fill | known at t because |
|---|---|---|---|
| source | discovery source of the opportunity | "unknown" | snapshot |
| opportunity_type | its category (saas, api, ...) | "unknown" | snapshot |
| age_days | its age at the scoring the proposal used | 0.0 | snapshot |
| confidence | confidence in its revenue estimate, [0, 1] | 0.0 (no evidence) | snapshot |
| est_monthly_revenue_cents | estimated monthly revenue, USD cents | 0.0 | snapshot |
| capability_match | share of required capabilities we have | 0.5 (core.discovery's neutral) | snapshot |
| days_to_revenue | expected days to the first dollar | 30.0 (the score's scale) | snapshot |
| cluster_size | near-duplicates in its cluster | 1.0 (alone) | snapshot |
| market_trend | (n + 1) / (m + 1): same type first seen in (t-7d, t] vs (t-14d, t-7d] | 1.0 | first_seen_at <= t |
| competition | log1p(same-type opportunities first seen in (t-30d, t]) | 0.0 | first_seen_at <= t |
| dow_sin, dow_cos | weekday of t in UTC (Monday 0) on the unit circle | never missing | t itself |
| month_sin, month_cos | month of t in UTC (January 0) on the unit circle | never missing | t itself |
| source_success_rate | (successes + 1) / (n + 2) of its n finished, Beta(1, 1) | 0.5 (prior) | finished_at < t |
| source_experiments | n, the source's finished experiments | 0.0 | finished_at < t |
| similar_experiments | finished experiments of the same type | 0.0 | finished_at < t |
| similar_avg_roi | their mean ROI, over those with one (no cost: none) | 0.0 | finished_at < t |
| budget_minor | the requested budget, USD cents | 0.0 | snapshot |
| est_duration_days | the success criteria's longest window, days | 30.0 (proposals' window) | snapshot |

A missing or non-finite snapshot number takes the fill value; every numeric feature is a float
and never NULL. A missing source or type is the category "unknown", whose history is pooled like
any other category's. A finished experiment whose ROI is NaN (no cost) counts in
similar_experiments but not in similar_avg_roi. The rows come back ordered by proposed_at, then
experiment_id.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.experiments.proposals import PROPOSAL_COLUMNS as PROPOSAL_SHAPE

CATEGORICAL_FEATURES = ["source", "opportunity_type"]
NUMERIC_FEATURES = [
    "age_days",
    "confidence",
    "est_monthly_revenue_cents",
    "capability_match",
    "days_to_revenue",
    "cluster_size",
    "market_trend",
    "competition",
    "dow_sin",
    "dow_cos",
    "month_sin",
    "month_cos",
    "source_success_rate",
    "source_experiments",
    "similar_experiments",
    "similar_avg_roi",
    "budget_minor",
    "est_duration_days",
]
KEYS = ["experiment_id", "opportunity_id", "proposed_at"]
FEATURE_COLUMNS = [*KEYS, *CATEGORICAL_FEATURES, *NUMERIC_FEATURES]

PROPOSAL_COLUMNS = list(PROPOSAL_SHAPE)  # the snapshot's columns but the score
FINISHED_COLUMNS = ["experiment_id", "source", "opportunity_type", "finished_at", "succeeded", "roi"]
OPPORTUNITY_COLUMNS = ["opportunity_type", "first_seen_at"]
OUTCOME_COLUMNS = ["experiment_id", "succeeded", "revenue_minor", "cost_minor", "net_minor", "roi"]
LABELS = ["succeeded", "revenue_minor", "cost_minor", "net_minor", "roi"]

UNKNOWN = "unknown"
# The fill of each snapshot number when it is missing (or not finite), and the feature it becomes.
SNAPSHOT_FILLS = {
    "age_days": ("age_days", 0.0),
    "confidence": ("confidence", 0.0),
    "est_monthly_revenue_cents": ("est_monthly_revenue_cents", 0.0),
    "capability_match": ("capability_match", 0.5),
    "days_to_revenue": ("days_to_revenue", 30.0),
    "cluster_size": ("cluster_size", 1.0),
    "requested_budget_minor": ("budget_minor", 0.0),
    "window_days": ("est_duration_days", 30.0),
}
TREND_DAYS = 7
COMPETITION_DAYS = 30
DAY_NS = 86_400 * 10**9


def build_features(proposals: pd.DataFrame, finished: pd.DataFrame, opportunities: pd.DataFrame) -> pd.DataFrame:
    """One row per proposal (FEATURE_COLUMNS), every feature as of its proposed_at (module docstring).

    proposals: PROPOSAL_COLUMNS (experiments.proposal_features); finished: FINISHED_COLUMNS, one row
    per finished experiment; opportunities: OPPORTUNITY_COLUMNS, one row per opportunity ever seen.
    Times must be timezone-aware. ValueError names the frame and the column that is wrong."""
    _require(proposals, "proposals", PROPOSAL_COLUMNS)
    _require(finished, "finished", FINISHED_COLUMNS)
    _require(opportunities, "opportunities", OPPORTUNITY_COLUMNS)
    _unique(proposals, "proposals")
    _unique(finished, "finished")
    proposed = _utc_ns(proposals, "proposals", "proposed_at")
    order = np.lexsort((proposals["experiment_id"].astype(str).to_numpy(), proposed))
    frame = proposals.iloc[order]
    t = proposed[order]
    source = _category(frame["source"])
    kind = _category(frame["opportunity_type"])

    out: dict[str, object] = {
        "experiment_id": frame["experiment_id"].astype(str).to_numpy(),
        "opportunity_id": frame["opportunity_id"].astype(str).to_numpy(),
        "proposed_at": pd.DatetimeIndex(t.astype("datetime64[ns]")).tz_localize("UTC"),
        "source": source,
        "opportunity_type": kind,
    }
    for column, (feature, fill) in SNAPSHOT_FILLS.items():
        out[feature] = _number(frame[column], "proposals", column, fill)

    seen = _utc_ns(opportunities, "opportunities", "first_seen_at")
    seen_kind = _category(opportunities["opportunity_type"])
    recent = _counts_in(kind, t, seen_kind, seen, TREND_DAYS * DAY_NS)
    before = _counts_in(kind, t - TREND_DAYS * DAY_NS, seen_kind, seen, TREND_DAYS * DAY_NS)
    out["market_trend"] = (recent + 1.0) / (before + 1.0)
    out["competition"] = np.log1p(_counts_in(kind, t, seen_kind, seen, COMPETITION_DAYS * DAY_NS))

    stamp = out["proposed_at"]
    dow = 2 * np.pi * stamp.dayofweek.to_numpy(dtype=float) / 7
    month = 2 * np.pi * (stamp.month.to_numpy(dtype=float) - 1) / 12
    out["dow_sin"], out["dow_cos"] = np.sin(dow), np.cos(dow)
    out["month_sin"], out["month_cos"] = np.sin(month), np.cos(month)

    done = _utc_ns(finished, "finished", "finished_at")
    succeeded = _succeeded(finished)
    roi = _roi(finished)
    has_roi = ~np.isnan(roi)
    tiebreak = finished["experiment_id"].astype(str).to_numpy()
    by_source = _sums_before(source, t, _category(finished["source"]), done, tiebreak, [succeeded])
    out["source_experiments"] = by_source[0]
    out["source_success_rate"] = (by_source[1] + 1.0) / (by_source[0] + 2.0)
    by_kind = _sums_before(
        kind,
        t,
        _category(finished["opportunity_type"]),
        done,
        tiebreak,
        [has_roi.astype(float), np.where(has_roi, roi, 0.0)],
    )
    out["similar_experiments"] = by_kind[0]
    out["similar_avg_roi"] = np.where(by_kind[1] > 0, by_kind[2] / np.maximum(by_kind[1], 1.0), 0.0)
    features = pd.DataFrame(out)
    features["experiment_id"] = features["experiment_id"].astype("str")
    features["opportunity_id"] = features["opportunity_id"].astype("str")
    for column in CATEGORICAL_FEATURES:
        features[column] = features[column].astype("str")
    return features[FEATURE_COLUMNS]


def training_frame(features: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """The features of finished experiments joined to their outcomes (LABELS, and finished_at when
    `outcomes` has it), ordered by proposed_at then experiment_id: the order a time-ordered split
    cuts. An experiment without an outcome is not in it; an outcome without features is not either."""
    _require(features, "features", FEATURE_COLUMNS)
    _require(outcomes, "outcomes", OUTCOME_COLUMNS)
    _unique(features, "features")
    _unique(outcomes, "outcomes")
    carried = [*OUTCOME_COLUMNS, *(["finished_at"] if "finished_at" in outcomes.columns else [])]
    labels = outcomes[carried].copy()
    labels["experiment_id"] = labels["experiment_id"].astype(str)
    labels["succeeded"] = _succeeded(labels, "outcomes").astype(bool)
    for column in ("revenue_minor", "cost_minor", "net_minor"):
        if labels[column].isna().any():
            raise ValueError(f"outcomes: column {column!r} has missing values (money is never NULL)")
        labels[column] = labels[column].astype("int64")
    labels["roi"] = _roi(labels, "outcomes")
    if "finished_at" in labels.columns:
        labels["finished_at"] = pd.to_datetime(_utc_ns(labels, "outcomes", "finished_at"), utc=True)
    joined = features[FEATURE_COLUMNS].assign(experiment_id=features["experiment_id"].astype(str))
    joined = joined.merge(labels, on="experiment_id", how="inner", validate="one_to_one")
    return joined.sort_values(["proposed_at", "experiment_id"], kind="stable").reset_index(drop=True)


# -- validation --------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; it needs {list(columns)}")


def _unique(frame: pd.DataFrame, name: str) -> None:
    if frame["experiment_id"].isna().any():
        raise ValueError(f"{name}: column 'experiment_id' has missing values")
    duplicated = frame["experiment_id"].astype(str).duplicated()
    if duplicated.any():
        shown = sorted(set(frame["experiment_id"].astype(str)[duplicated]))[:5]
        raise ValueError(f"{name}: column 'experiment_id' repeats {shown}; one row per experiment")


def _utc_ns(frame: pd.DataFrame, name: str, column: str) -> np.ndarray:
    """The column as int64 nanoseconds since the epoch (UTC). Naive or missing times are refused:
    a naive time would be compared with aware ones at an offset nobody chose."""
    values = frame[column]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        raise ValueError(f"{name}: column {column!r} holds naive timestamps; give timezone-aware (UTC) times")
    elif len(values) == 0:
        return np.empty(0, dtype="int64")
    elif values.dtype == object:
        aware = values.map(lambda v: getattr(v, "tzinfo", None) is not None or v is None or v is pd.NaT)
        if not aware.all():
            raise ValueError(
                f"{name}: column {column!r} holds naive or non-time values (first at row "
                f"{values.index[~aware.to_numpy()][0]!r}); give timezone-aware (UTC) times"
            )
        stamps = pd.to_datetime(values, utc=True)
    else:
        raise ValueError(f"{name}: column {column!r} has dtype {values.dtype}, not timezone-aware timestamps")
    if stamps.isna().any():
        raise ValueError(f"{name}: column {column!r} has {int(stamps.isna().sum())} missing time(s)")
    return stamps.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").view("int64").copy()


def _category(values: pd.Series) -> np.ndarray:
    """Text values as an object array, UNKNOWN for a missing or empty one."""
    text = values.to_numpy(dtype=object, na_value=None)
    missing = pd.isna(text) | (text == "")
    return np.where(missing, UNKNOWN, text.astype(str)).astype(object)


def _number(values: pd.Series, name: str, column: str, fill: float) -> np.ndarray:
    try:
        numbers = pd.to_numeric(values, errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: column {column!r} must be numeric, got dtype {values.dtype}") from None
    return np.where(np.isfinite(numbers), numbers, fill)


def _succeeded(frame: pd.DataFrame, name: str = "finished") -> np.ndarray:
    values = frame["succeeded"]
    if values.isna().any():
        raise ValueError(f"{name}: column 'succeeded' has missing values (every finished experiment is judged)")
    try:
        flags = values.astype(bool).to_numpy() if values.dtype == object else values.to_numpy(dtype=bool)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: column 'succeeded' must be boolean, got dtype {values.dtype}") from None
    return flags.astype(float)


def _roi(frame: pd.DataFrame, name: str = "finished") -> np.ndarray:
    try:
        roi = pd.to_numeric(frame["roi"], errors="raise").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: column 'roi' must be numeric (NaN for no cost), got {frame['roi'].dtype}") from None
    if np.isinf(roi).any():
        raise ValueError(f"{name}: column 'roi' has infinite values; an ROI without cost is NaN")
    return roi


# -- point-in-time aggregates --------------------------------------------------------------------


def _groups(values: np.ndarray) -> dict[object, np.ndarray]:
    """The positions of each distinct value, in ascending order (groupby().indices without pandas' cost)."""
    if len(values) == 0:
        return {}
    codes, uniques = pd.factorize(values)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    return dict(zip(uniques, np.split(order, bounds), strict=True))


def _counts_in(
    query_group: np.ndarray, query_end: np.ndarray, group: np.ndarray, times: np.ndarray, width: int
) -> np.ndarray:
    """Per query, how many events of its group have a time in (end - width, end]."""
    counts = np.zeros(len(query_end), dtype=float)
    events = _groups(group)
    for value, at in _groups(query_group).items():
        if value not in events:
            continue
        sorted_times = np.sort(times[events[value]])
        end = query_end[at]
        counts[at] = np.searchsorted(sorted_times, end, side="right") - np.searchsorted(
            sorted_times, end - width, side="right"
        )
    return counts


def _sums_before(
    query_group: np.ndarray,
    query_time: np.ndarray,
    group: np.ndarray,
    times: np.ndarray,
    tiebreak: np.ndarray,
    values: list[np.ndarray],
) -> list[np.ndarray]:
    """Per query: the count of events of its group strictly before its time, then each of `values`
    summed over those events. Sums are prefix sums of the group's events in (time, tiebreak) order,
    so an event at or after a query's time never enters that query's sum, not even as rounding."""
    result = [np.zeros(len(query_time), dtype=float) for _ in range(len(values) + 1)]
    events = _groups(group)
    for value, at in _groups(query_group).items():
        if value not in events:
            continue
        rows = events[value]
        rows = rows[np.lexsort((tiebreak[rows], times[rows]))]
        position = np.searchsorted(times[rows], query_time[at], side="left")
        result[0][at] = position
        for k, column in enumerate(values, start=1):
            prefix = np.concatenate(([0.0], np.cumsum(column[rows])))
            result[k][at] = prefix[position]
    return result
