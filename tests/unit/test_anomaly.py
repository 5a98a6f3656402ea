"""ml/anomaly.py: robust z finds a single-day break with the explanation and severity a person
reads, stays quiet on a clean weekly-seasonal series, copes with a series whose MAD is zero, and
says plainly when a series is too short to judge."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from core.monitoring.daily_metrics import run_durations
from ml.anomaly import (
    IF_SEVERITY,
    Z_SEVERITY,
    AnomalyError,
    Settings,
    anomaly_id,
    detect,
    explanation,
    severity,
)

START = date(2026, 9, 7)  # a Monday
WEEKDAY = (1.15, 1.2, 1.15, 1.1, 0.95, 0.65, 0.8)  # the market simulator's (core.simulator.market)


def series(values, metric: str = "revenue_minor", start: date = START) -> pd.DataFrame:
    return pd.DataFrame(
        {"metric_date": [start + timedelta(days=n) for n in range(len(values))], "metric": metric, "value": values}
    )


def seasonal(days: int, seed: int, mean_customers: float = 30.0, price: int = 100) -> np.ndarray:
    """Daily revenue as the simulator makes it: Poisson customers x a weekday factor x a price."""
    rng = np.random.default_rng(seed)
    weekdays = [(START + timedelta(days=n)).weekday() for n in range(days)]
    return np.array([rng.poisson(mean_customers * WEEKDAY[d]) * price for d in weekdays], dtype=float)


def test_a_spike_on_a_flat_series_is_found_with_its_explanation_and_severity():
    values = [3100.0] * 40
    values[30] = 12_400.0
    found = detect(series(values), methods=("robust_z",))
    [row] = found.anomalies.itertuples(index=False)
    day = START + timedelta(days=30)
    assert row.metric_date == day and row.metric == "revenue_minor" and row.method == "robust_z"
    assert row.expected == 3100.0
    # MAD and mean deviation are 0: the scale is the metric's floor, a dollar (100 minor units).
    assert row.score == pytest.approx((12_400 - 3100) / 100)
    assert row.severity == "critical"
    assert row.explanation == f"revenue_minor 12,400 on {day.isoformat()} vs expected 3,100 (4.0x, robust z 93.0)"
    assert row.anomaly_id == anomaly_id("revenue_minor", day, "robust_z")


def test_a_spike_in_a_seasonal_series_is_found_and_graded_by_its_z():
    values = seasonal(120, seed=3)
    spike_day = 95
    values[spike_day] = values[spike_day] * 4
    found = detect(series(values))
    day = START + timedelta(days=spike_day)
    rows = found.anomalies[found.anomalies["metric_date"] == day].set_index("method")
    assert set(rows.index) == {"robust_z", "isolation_forest"}
    z = rows.loc["robust_z"]
    assert z["severity"] == severity("robust_z", z["score"]) and z["score"] >= Z_SEVERITY["high"]
    assert z["value"] / z["expected"] == pytest.approx(4, rel=0.35)  # about its weekday's usual, times 4
    assert z["explanation"].startswith(f"revenue_minor {z['value']:,.0f} on {day.isoformat()} vs expected ")
    assert f"robust z {z['score']:.1f})" in z["explanation"]
    forest = rows.loc["isolation_forest"]
    assert forest["score"] >= IF_SEVERITY["low"] and f"isolation score {forest['score']:.2f}" in forest["explanation"]
    # Nothing else in the series is flagged by the rule.
    assert found.anomalies[found.anomalies["method"] == "robust_z"]["metric_date"].tolist() == [day]


def test_a_drop_to_zero_is_explained_as_minus_100_percent():
    values = [5000.0 + 40 * (n % 5) for n in range(40)]
    values[35] = 0.0
    found = detect(series(values), methods=("robust_z",))
    [row] = found.anomalies.itertuples(index=False)
    assert "-100%" in row.explanation and row.value == 0.0 and row.expected > 4900


def clean_seasonal(days: int, seed: int) -> np.ndarray:
    """The simulator's weekday cycle with 8% noise that never strays past 2.5 standard deviations:
    nothing in it is an anomaly, so anything flagged is a false alarm."""
    noise = np.clip(np.random.default_rng(seed).normal(size=days), -2.5, 2.5)
    weekdays = [(START + timedelta(days=n)).weekday() for n in range(days)]
    return np.round(10_000 * np.array([WEEKDAY[d] for d in weekdays]) * (1 + 0.08 * noise))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_clean_seasonal_series_raises_no_alarm(seed: int):
    found = detect(series(clean_seasonal(150, seed)))
    assert len(found.scored) == 150 - Settings().min_history
    assert found.anomalies.empty, found.anomalies["explanation"].tolist()


def test_the_weekly_cycle_is_not_mistaken_for_anomalies():
    # A strong weekday pattern and no noise: each Saturday is 0.65/1.2 of a Tuesday, every week.
    values = np.array([10_000 * WEEKDAY[(START + timedelta(days=n)).weekday()] for n in range(120)])
    found = detect(series(values))
    assert found.anomalies.empty
    late = found.scored[found.scored["metric_date"] > START + timedelta(days=60)]
    assert np.allclose(late["expected"], late["value"])  # the profile predicts each weekday exactly


def test_a_series_with_zero_mad_uses_its_floor_and_reacts_only_to_real_breaks():
    quiet = [0.0] * 40
    one_error = quiet.copy()
    one_error[30] = 1.0
    burst = quiet.copy()
    burst[30] = 12.0
    assert detect(series(one_error, "source_errors")).anomalies.empty
    found = detect(series(burst, "source_errors"), methods=("robust_z",))
    [row] = found.anomalies.itertuples(index=False)
    assert row.score == 12.0 and row.severity == "critical" and row.expected == 0.0
    assert "source_errors 12 on" in row.explanation and "up 12 from 0" in row.explanation
    assert np.isfinite(detect(series(quiet, "source_errors")).scored["robust_z"]).all()


def test_a_short_series_is_not_judged_and_says_why():
    found = detect(series([100.0] * 10 + [10_000.0]))
    assert found.anomalies.empty and found.scored.empty
    assert "11 day(s) of history" in found.skipped["revenue_minor"]
    assert "judged against the 14 before it" in found.skipped["revenue_minor"]
    # Long enough for the rule, too short to fit a forest on: the rule runs, the forest says why not.
    values = [1000.0 + 10 * (n % 3) for n in range(30)]
    values[25] = 9000.0
    found = detect(series(values))
    assert found.anomalies["method"].tolist() == ["robust_z"]
    assert "the forest is fitted on 28 at least" in found.skipped["revenue_minor/isolation_forest"]


def test_detection_is_deterministic_and_ids_are_stable():
    frame = pd.concat([series(seasonal(100, 5)), series(seasonal(100, 6, 3, 2000), "cost_minor")])
    frame.loc[frame.index[60], "value"] *= 6
    first, second = detect(frame), detect(frame.sample(frac=1, random_state=1))
    pd.testing.assert_frame_equal(first.anomalies, second.anomalies)
    assert first.anomalies["anomaly_id"].is_unique
    day = date(2026, 11, 3)
    assert anomaly_id("revenue_minor", day, "robust_z") == anomaly_id("revenue_minor", day, "robust_z")
    assert anomaly_id("revenue_minor", day, "robust_z") != anomaly_id("revenue_minor", day, "isolation_forest")


def test_severity_thresholds_and_explanation_format():
    assert severity("robust_z", 3.4) is None
    assert [severity("robust_z", z) for z in (3.5, 5, 8, 12)] == ["low", "medium", "high", "critical"]
    assert severity("isolation_forest", 0.61) is None and severity("isolation_forest", 0.8) == "critical"
    assert (
        explanation("revenue_minor", date(2026, 11, 3), 12_400, 3100, 7.2)
        == "revenue_minor 12,400 on 2026-11-03 vs expected 3,100 (4.0x, robust z 7.2)"
    )
    assert explanation("cost_minor", date(2026, 11, 3), 4100, 3100, 4.1).endswith("(+32%, robust z 4.1)")


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"metric_date": [START], "value": [1.0]}), r"lacks columns \['metric'\]"),
        (series([1.0, float("nan")]), "not finite"),
        (pd.concat([series([1.0]), series([2.0])]), "more than one value on"),
    ],
)
def test_unusable_input_is_refused_with_what_to_do(frame: pd.DataFrame, message: str):
    with pytest.raises(AnomalyError, match=message):
        detect(frame)


def test_settings_refuse_a_history_longer_than_the_window():
    with pytest.raises(AnomalyError, match="cannot exceed the window"):
        Settings(window=10, min_history=14)


def test_run_durations_are_averaged_per_utc_day_of_their_end():
    day = 1_790_000_000  # 2026-09-21 10:13:20 UTC
    rows = run_durations([(day, day + 30), (day + 100, day + 190), (day, None), (day + 86_400, day + 86_410)])
    assert [(str(d), v) for d, _, v in rows] == [("2026-09-21", 60.0), ("2026-09-22", 10.0)]
