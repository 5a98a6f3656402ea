"""ml.forecast without a warehouse: the metrics on hand-computed cases, the backtest's origins and
that no model ever sees a day at or after its origin, the weights, the calibrated intervals, the
daily series and the reporting currency, and the errors a short or broken history gives."""

import json
import math
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from core.ledger import fx
from ml import forecast as ml


def days(n: int, start: date = date(2026, 1, 5)) -> np.ndarray:
    return np.datetime64(start, "D") + np.arange(n).astype("timedelta64[D]")


def weekly(n: int, seed: int = 3) -> np.ndarray:
    pattern = np.array([120, 130, 125, 118, 100, 60, 80], float)
    return np.tile(pattern, n // 7 + 1)[:n] * 100 + np.random.default_rng(seed).normal(0, 600, n)


def test_mase_is_the_mae_over_the_in_sample_seasonal_naive_mae():
    train = np.array([1, 3, 2, 4, 3, 5], float)  # lag-2 differences: 1, 1, 1, 1 -> scale 1
    assert ml.seasonal_naive_scale(train, 2) == 1.0
    assert ml.mase(np.array([4, 6]), np.array([5, 5]), train, 2) == pytest.approx(1.0)
    assert ml.mase(np.array([4, 6]), np.array([4, 6]), train, 2) == 0.0
    # Scale 2 (differences 2, 2) halves the same error.
    assert ml.mase(np.array([4, 6]), np.array([5, 5]), np.array([0, 0, 2, 2]), 2) == pytest.approx(0.5)


def test_mase_is_undefined_on_a_constant_history():
    assert math.isnan(ml.mase(np.array([1.0]), np.array([2.0]), np.zeros(10), 7))
    assert math.isnan(ml.seasonal_naive_scale(np.ones(7), 7))  # no full season to difference


def test_smape_in_percent_counts_two_zeros_as_perfect():
    # 2 * 10 / 210 = 9.5238% on the first day, 0 on the zero day: mean 4.7619%.
    assert ml.smape(np.array([100, 0]), np.array([110, 0])) == pytest.approx(100 * 20 / 210 / 2)
    assert ml.smape(np.array([0.0]), np.array([5.0])) == pytest.approx(200.0)


def test_coverage_counts_the_bounds_as_inside():
    assert ml.coverage(np.array([1, 2, 3]), np.array([0, 2.5, 3]), np.array([2, 3, 3])) == pytest.approx(2 / 3)


def test_seasonal_naive_repeats_the_last_season_and_widens_each_season():
    y = np.arange(1, 15, dtype=float)
    found = ml.seasonal_naive(y, days(14), days(10, date(2026, 1, 19)), ml.Settings())
    assert list(found.mean) == [8, 9, 10, 11, 12, 13, 14, 8, 9, 10]
    # Residuals y[t] - y[t-7] are all 7: sigma 7, sqrt(2) wider in the second season.
    assert found.upper[95][0] - found.mean[0] == pytest.approx(7 * 1.959964, rel=1e-5)
    assert found.upper[95][7] - found.mean[7] == pytest.approx(7 * 1.959964 * math.sqrt(2), rel=1e-5)
    assert np.all(found.lower[95] < found.lower[80])


@pytest.mark.parametrize(
    ("n", "origins", "horizon"),
    [
        (400, (310, 340, 370), 30),  # long history: three non-overlapping 30-day windows
        (33, (22, 24, 26), 7),  # the demo's month: one-week windows, origins two days apart
        (28, (21,), 7),  # the shortest history: one fold
    ],
)
def test_the_backtest_plan_ends_at_the_last_day(n, origins, horizon):
    plan = ml.plan_backtest(n, ml.Settings(horizon=30, folds=3))
    assert plan == ml.Plan(origins, horizon)
    assert plan.origins[-1] + plan.horizon == n
    assert plan.origins[0] >= 21


def test_a_too_short_history_says_how_long_it_must_be():
    with pytest.raises(ml.HistoryTooShort, match=r"27 day\(s\); a forecast needs at least 28"):
        ml.forecast(weekly(27), days(27))
    with pytest.raises(ml.HistoryTooShort, match="empty"):
        ml.daily_series([], [])


def test_the_backtest_never_shows_a_model_a_day_from_its_origin_on(monkeypatch):
    seen = []

    def spy(y, dates, future, settings):
        seen.append((len(y), dates[-1], future[0], len(future)))
        return ml.seasonal_naive(y, dates, future, settings)

    monkeypatch.setitem(ml.MODEL_FUNCTIONS, ml.SEASONAL_NAIVE, spy)
    y, d = weekly(90), days(90)
    bt = ml.backtest(y, d, ml.Settings(horizon=14, folds=3, models=(ml.SEASONAL_NAIVE,)))
    assert [s[0] for s in seen] == list(bt.plan.origins)
    for (length, last_seen, first_ahead, ahead), origin in zip(seen, bt.plan.origins, strict=True):
        assert length == origin and last_seen == d[origin - 1] and first_ahead == d[origin] and ahead == bt.plan.horizon
    # Changing every day from the first origin on changes nothing in the first fold's forecast.
    changed = y.copy()
    changed[bt.plan.origins[0] :] += 1e6
    again = ml.backtest(changed, d, ml.Settings(horizon=14, folds=3, models=(ml.SEASONAL_NAIVE,)))
    first, second = bt.forecasts[ml.SEASONAL_NAIVE][0], again.forecasts[ml.SEASONAL_NAIVE][0]
    assert np.array_equal(first.mean, second.mean) and np.array_equal(first.upper[95], second.upper[95])


def test_weights_are_inverse_mase_among_models_not_worse_than_seasonal_naive():
    weights = ml.choose_weights({"prophet": 0.5, "auto_arima": 1.0, "seasonal_naive": 1.0, "auto_ets": 2.0})
    assert weights == pytest.approx({"prophet": 0.5, "auto_arima": 0.25, "seasonal_naive": 0.25, "auto_ets": 0.0})
    assert ml.choose_weights({"auto_ets": math.nan, "seasonal_naive": 0.8}) == {"auto_ets": 0.0, "seasonal_naive": 1.0}
    assert ml.choose_weights({"prophet": 0.0, "seasonal_naive": 0.3}) == {"prophet": 1.0, "seasonal_naive": 0.0}
    with pytest.raises(ml.ForecastError, match="baseline"):
        ml.choose_weights({"prophet": 0.5, "seasonal_naive": math.nan})


def test_calibration_stretches_the_band_to_the_conformal_quantile_and_keeps_it_nested():
    mean = np.zeros(20)
    raw = ml.Forecast(mean, {80: mean - 1, 95: mean - 1.5}, {80: mean + 1, 95: mean + 1.5})
    actual = np.arange(1, 21) / 10.0  # 0.1 .. 2.0 above the mean
    factors = ml.calibration_factors([actual], [raw])
    assert factors[80] == pytest.approx(1.7)  # the ceil(21 * 0.8) = 17th smallest score
    assert factors[95] == pytest.approx(2.0 / 1.5)  # the 20th, on the 95% half-width of 1.5
    band = ml.calibrated(raw, factors)
    assert ml.coverage(actual, band.lower[80], band.upper[80]) == pytest.approx(0.85)
    assert ml.coverage(actual, band.lower[95], band.upper[95]) == 1.0
    narrow = ml.calibrated(raw, {80: 2.0, 95: 1.0})  # 95% would be inside 80%: it is widened to it
    assert np.all(narrow.upper[95] >= narrow.upper[80]) and np.all(narrow.lower[95] <= narrow.lower[80])


def test_a_failing_model_is_left_out_with_its_reason(monkeypatch):
    def broken(y, dates, future, settings):
        raise RuntimeError("no convergence")

    monkeypatch.setitem(ml.MODEL_FUNCTIONS, ml.AUTO_ARIMA, broken)
    settings = ml.Settings(horizon=7, folds=2, models=(ml.AUTO_ARIMA, ml.SEASONAL_NAIVE))
    result = ml.forecast(weekly(60), days(60), settings)
    assert result.weights == {ml.SEASONAL_NAIVE: 1.0}
    arima = result.score(ml.AUTO_ARIMA)
    assert arima.weight == 0.0 and "RuntimeError: no convergence" in arima.error and math.isnan(arima.mase)
    assert any("auto_arima left out" in note for note in result.notes)


def test_the_forecast_starts_the_day_after_the_history_with_ordered_intervals():
    y, d = weekly(84), days(84)
    result = ml.forecast(y, d, ml.Settings(horizon=10, folds=3, models=(ml.AUTO_ETS, ml.SEASONAL_NAIVE)))
    table = result.table()
    assert list(table["horizon_day"]) == list(range(1, 11))
    assert table["forecast_date"].iloc[0] == date(2026, 1, 5) + timedelta(days=84)
    assert result.trained_through == date(2026, 1, 5) + timedelta(days=83)
    assert (table["lo95"] <= table["lo80"]).all() and (table["lo80"] <= table["net"]).all()
    assert (table["net"] <= table["hi80"]).all() and (table["hi80"] <= table["hi95"]).all()
    assert sum(result.weights.values()) == pytest.approx(1.0)
    backtest = result.backtest_table().set_index("model")
    assert set(backtest.index) == {ml.AUTO_ETS, ml.SEASONAL_NAIVE, ml.ENSEMBLE}
    assert backtest.loc[ml.ENSEMBLE, "folds"] == 3 and backtest.loc[ml.ENSEMBLE, "horizon"] == 10
    # A clean weekly pattern: the ensemble's cross-fitted MASE is well below 1.
    assert backtest.loc[ml.ENSEMBLE, "mase"] < 1


def test_missing_days_are_zero_flow_days():
    dates, values = ml.daily_series([date(2026, 3, 1), date(2026, 3, 3), date(2026, 3, 3)], [5, 7, 1])
    assert [str(d) for d in dates] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert list(values) == [5, 0, 8]


def test_other_currencies_are_converted_and_a_currency_without_a_rate_is_left_out():
    day = date(2026, 10, 1)
    frame = pd.DataFrame(
        {
            "cash_date": [day, day, day],
            "currency": ["USD", "EUR", "KWD"],
            "net_minor": [1_000, 10_000, 5_000],
        }
    )
    daily, excluded = ml.reporting_cash_flow(frame, "USD")
    assert daily["net_minor"].tolist() == [1_000 + fx.convert(10_000, "EUR", "USD", day)]
    assert excluded[["currency", "net_minor"]].values.tolist() == [["KWD", 5_000]]
    assert "no FX rate for KWD" in excluded["reason"].iloc[0]


def test_settings_refuse_what_cannot_work():
    with pytest.raises(ml.ForecastError, match="seasonal_naive"):
        ml.Settings(models=(ml.PROPHET,))
    with pytest.raises(ml.ForecastError, match="unknown model"):
        ml.Settings(models=("lstm", ml.SEASONAL_NAIVE))
    with pytest.raises(ml.ForecastError, match="horizon=0"):
        ml.Settings(horizon=0)
    with pytest.raises(ml.ForecastError, match="'XX'"):
        ml.check_country("XX")
    assert ml.check_country("DE") == "DE" and ml.check_country("") is None


def test_the_forecast_settings_come_from_the_environment():
    from orchestration.resources import resources

    configured = resources(
        {"FORECAST_HORIZON_DAYS": "14", "FORECAST_HOLIDAY_COUNTRY": "", "FORECAST_BACKTEST_FOLDS": "2"}
    )
    assert configured["forecast"].settings() == ml.Settings(horizon=14, folds=2, holiday_country=None)
    assert resources({})["forecast"].settings() == ml.Settings(horizon=30, folds=3, holiday_country="US")
    with pytest.raises(ValueError, match="FORECAST_HORIZON_DAYS='a month'"):
        resources({"FORECAST_HORIZON_DAYS": "a month"})
    with pytest.raises(ValueError, match="horizon_days=0"):
        resources({"FORECAST_HORIZON_DAYS": "0"})


def test_auto_models_search_on_the_first_window_only_and_refit_that_structure_without_later_days(monkeypatch):
    searched = []
    real = ml._statsforecast

    def spy(kind, y, h, settings, spec):
        searched.append((kind, len(y), spec is None))
        return real(kind, y, h, settings, spec)

    monkeypatch.setattr(ml, "_statsforecast", spy)
    settings = ml.Settings(horizon=14, folds=3, models=(ml.AUTO_ARIMA, ml.AUTO_ETS, ml.SEASONAL_NAIVE))
    y, d = weekly(84), days(84)
    bt = ml.backtest(y, d, settings)
    first = bt.plan.origins[0]
    # One search per automatic model, on the earliest window; every later fold refits its choice.
    assert sorted(s for s in searched if s[2]) == [(ml.AUTO_ARIMA, first, True), (ml.AUTO_ETS, first, True)]
    assert [len_ for kind, len_, _ in searched if kind == ml.AUTO_ARIMA] == list(bt.plan.origins)
    for model in (ml.AUTO_ARIMA, ml.AUTO_ETS):
        assert all(f.spec == bt.specs[model] for f in bt.forecasts[model])
    assert set(bt.specs[ml.AUTO_ARIMA]) == {"order", "seasonal_order", "include_mean", "include_drift"}
    # Days from the second origin on change neither the choice nor the first two folds' forecasts.
    changed = y.copy()
    changed[bt.plan.origins[1] :] = changed[bt.plan.origins[1] :] * 3 + 5e4
    again = ml.backtest(changed, d, settings)
    assert again.specs == bt.specs
    for model in (ml.AUTO_ARIMA, ml.AUTO_ETS):
        for j in (0, 1):
            assert np.array_equal(again.forecasts[model][j].mean, bt.forecasts[model][j].mean)
            assert np.array_equal(again.forecasts[model][j].upper[95], bt.forecasts[model][j].upper[95])
    # The final fit refits the backtest's choice on the whole history rather than searching again.
    searched.clear()
    result = ml.forecast(y, d, settings)
    assert all(not fresh for _, length, fresh in searched if length == len(y))
    assert result.forecast.mean.shape == (14,)


def test_fixed_arima_refit_estimates_the_chosen_orders_coefficients_again():
    y, d = weekly(84), days(84)
    spec = {"order": (1, 0, 0), "seasonal_order": (0, 1, 0), "include_mean": False, "include_drift": False}
    short = ml.fit_predict(ml.AUTO_ARIMA, y[:42], d[:42], d[42:49], ml.Settings(), spec)
    long = ml.fit_predict(ml.AUTO_ARIMA, y, d, ml.next_days(d[-1], 7), ml.Settings(), spec)
    assert short.spec == long.spec == spec
    assert not np.allclose(short.mean, long.mean)
    # Seasonal differencing with a (1,0,0) part: the forecast is last week plus a decaying AR term.
    assert np.all(np.isfinite(long.lower[95])) and np.all(long.lower[95] < long.mean)


def test_prophet_without_sampling_uses_its_fitted_noise_scale():
    y, d = weekly(56), days(56)
    out = ml.fit_predict(ml.PROPHET, y, d, ml.next_days(d[-1], 7), ml.Settings(holiday_country=None))
    half95, half80 = out.upper[95] - out.mean, out.upper[80] - out.mean
    assert np.allclose(half95, half95[0]) and half95[0] > 0  # a constant band: the noise scale
    assert half95[0] / half80[0] == pytest.approx(1.959964 / 1.281552, rel=1e-4)
    assert 300 < half95[0] / 1.96 < 1200  # the series' noise is 600
    with pytest.raises(ml.ForecastError, match="uncertainty_samples"):
        ml.Settings(uncertainty_samples=-1)


# --- selection and refresh ------------------------------------------------------------------------

FAST = ml.Settings(horizon=14, folds=3, models=(ml.AUTO_ARIMA, ml.AUTO_ETS, ml.SEASONAL_NAIVE), holiday_country=None)


@pytest.fixture(scope="module")
def selected():
    y, d = weekly(70), days(70)
    return y, d, ml.forecast(y, d, FAST)


def test_refresh_with_the_full_paths_selection_gives_its_final_forecast(selected, monkeypatch):
    y, d, full = selected
    assert all(full.weights[m] > 0 for m in (ml.AUTO_ARIMA, ml.AUTO_ETS))  # both structures are used
    stored = json.loads(json.dumps(ml.Selection.of(full, FAST).as_dict()))  # through JSON, as stored
    selection = ml.Selection.from_dict(stored)
    assert selection.specs == full.specs and selection.selected_through == d[-1].item()
    fits = []
    real = ml.fit_predict
    monkeypatch.setattr(ml, "fit_predict", lambda model, *a: fits.append(model) or real(model, *a))
    again = ml.refresh(y, d, selection, FAST)
    assert sorted(fits) == sorted(again.fitted) == sorted(m for m, w in full.weights.items() if w > 0)
    for level in ml.LEVELS:
        assert np.array_equal(again.forecast.lower[level], full.forecast.lower[level])
        assert np.array_equal(again.forecast.upper[level], full.forecast.upper[level])
    assert np.array_equal(again.forecast.mean, full.forecast.mean)
    assert np.array_equal(again.dates, full.dates) and again.weights == full.weights


def test_refresh_never_searches_and_never_fits_a_model_without_weight(selected, monkeypatch):
    full = selected[2]
    selection = replace(
        ml.Selection.of(full, FAST), weights={ml.AUTO_ARIMA: 0.0, ml.AUTO_ETS: 0.5, ml.SEASONAL_NAIVE: 0.5}
    )
    calls = []
    real = ml._statsforecast

    def spy(kind, y_, h, settings, spec):
        calls.append((kind, spec))
        return real(kind, y_, h, settings, spec)

    monkeypatch.setattr(ml, "_statsforecast", spy)
    # Seven more days: a refresh, fitted on 77 days with the structures chosen on 70.
    y2, d2 = weekly(77), days(77)
    out = ml.refresh(y2, d2, selection, FAST)
    assert calls == [(ml.AUTO_ETS, full.specs[ml.AUTO_ETS])]  # fixed ETS, no ARIMA at all, no search
    assert out.fitted == (ml.AUTO_ETS, ml.SEASONAL_NAIVE) and out.weights[ml.AUTO_ARIMA] == 0
    assert out.dates[0] == d2[-1] + 1 and out.trained_through == d2[-1].item()
    assert np.all(out.forecast.lower[95] <= out.forecast.lower[80])
    # A weighted automatic model without its structure is refused rather than searched for.
    stored = selection.as_dict()
    stored["specs"].pop(ml.AUTO_ETS)
    with pytest.raises(ml.ForecastError, match="no structure"):
        ml.Selection.from_dict(stored)


def test_a_stale_selection_is_detected_and_refused(selected):
    _, d, full = selected
    selection = ml.Selection.of(full, FAST)
    assert ml.staleness(selection, days(77), FAST) is None  # 7 new days: still fresh
    assert "8 new day(s)" in ml.staleness(selection, days(78), FAST)
    assert ml.staleness(selection, days(78), FAST, max_new_days=14) is None
    assert "other settings" in ml.staleness(selection, d, replace(FAST, horizon=30))
    assert "before the selection" in ml.staleness(selection, days(60), FAST)
    with pytest.raises(ml.StaleSelection, match="re-select: 8 new day"):
        ml.refresh(weekly(78), days(78), selection, FAST)
    with pytest.raises(ml.ForecastError, match="not a stored selection"):
        ml.Selection.from_dict({"weights": {}})
