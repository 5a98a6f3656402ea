"""Daily cash-flow forecasting: four models, a rolling-origin backtest, and an ensemble whose weights
and interval widths come from that backtest (docs/forecasting.md).

Models (each sees only the history before its origin):
- prophet: weekly seasonality, yearly seasonality once the history spans a year, and the public
  holidays of a configured country;
- auto_arima and auto_ets: statsforecast's AutoARIMA and AutoETS on the numpy array;
- seasonal_naive: the same weekday last week, the baseline every other model must beat.

Metrics: MASE (primary: MAPE divides by the actual, and a zero-revenue day is an actual of zero),
scaled by the in-sample MAE of the seasonal naive forecast on each fold's training window; sMAPE in
percent (0 to 200); the share of held-out days inside the 80% and 95% intervals; fit seconds.

Framework-free: numpy at the top, pandas, prophet and statsforecast inside the functions that use
them (importing statsforecast costs seconds)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

PROPHET = "prophet"
AUTO_ARIMA = "auto_arima"
AUTO_ETS = "auto_ets"
SEASONAL_NAIVE = "seasonal_naive"
ENSEMBLE = "ensemble"
MODELS = (PROPHET, AUTO_ARIMA, AUTO_ETS, SEASONAL_NAIVE)
LEVELS = (80, 95)


class ForecastError(ValueError):
    pass


class HistoryTooShort(ForecastError):
    """Fewer days than one backtest needs; the message says how many there are and how many it takes."""


@dataclass(frozen=True)
class Settings:
    """horizon: days forecast; season_length: 7 for calendar days (5 for trading days); folds: backtest
    origins; min_train: the shortest training window a fold may have (default three seasons);
    min_backtest_horizon: the shortest held-out window (default one season)."""

    horizon: int = 30
    season_length: int = 7
    folds: int = 3
    min_train: int | None = None
    min_backtest_horizon: int | None = None
    holiday_country: str | None = "US"
    models: tuple[str, ...] = MODELS
    # 0: Prophet's intervals are its fitted noise scale (sigma_obs) around the mean, no simulation;
    # n > 0: quantiles of n simulated paths (trend changes included), Prophet's own way, ~10x slower.
    # The ensemble's intervals are recalibrated on the backtest either way.
    uncertainty_samples: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("horizon", "season_length", "folds"):
            if int(getattr(self, name)) < 1:
                raise ForecastError(f"{name}={getattr(self, name)}: must be at least 1")
        if int(self.uncertainty_samples) < 0:
            raise ForecastError(f"uncertainty_samples={self.uncertainty_samples}: must be 0 or more")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ForecastError(f"unknown model(s) {unknown}: use some of {', '.join(MODELS)}")
        if SEASONAL_NAIVE not in self.models:
            raise ForecastError("the models must include seasonal_naive: it is the baseline the weights compare to")

    @property
    def train_floor(self) -> int:
        return self.min_train if self.min_train is not None else 3 * self.season_length

    @property
    def test_floor(self) -> int:
        return self.min_backtest_horizon if self.min_backtest_horizon is not None else self.season_length

    @property
    def minimum_history(self) -> int:
        return self.train_floor + self.test_floor


def check_country(country: str | None) -> str | None:
    """A country code the holidays package knows (`US`, `DE`, `GB`...), or None for no holidays."""
    if not country:
        return None
    import holidays

    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ForecastError(
            f"holiday country {country!r} is not one the holidays package knows: use an ISO code like US"
        )
    return country


@dataclass(frozen=True)
class Forecast:
    """One model's (or the ensemble's) forecast: the mean and, per level, the lower and upper bounds."""

    mean: np.ndarray
    lower: Mapping[int, np.ndarray]
    upper: Mapping[int, np.ndarray]
    seconds: float = 0.0
    # What an automatic model's search chose (auto_arima's orders, auto_ets's components), to refit
    # that fixed model on later windows without searching again; None for the other models.
    spec: Mapping[str, object] | None = None


# --- metrics --------------------------------------------------------------------------------------


def seasonal_naive_scale(train: np.ndarray, season_length: int) -> float:
    """In-sample MAE of the seasonal naive forecast: MASE's denominator. NaN if undefined."""
    train = np.asarray(train, dtype=float)
    if len(train) <= season_length:
        return math.nan
    return float(np.mean(np.abs(train[season_length:] - train[:-season_length])))


def mase(actual: np.ndarray, predicted: np.ndarray, train: np.ndarray, season_length: int) -> float:
    scale = seasonal_naive_scale(train, season_length)
    if not scale > 0:  # a constant training window: every scaled error is undefined
        return math.nan
    return float(np.mean(np.abs(np.asarray(actual, float) - np.asarray(predicted, float))) / scale)


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric MAPE in percent, 0 to 200; a day where both are zero counts as a perfect 0."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    denominator = np.abs(actual) + np.abs(predicted)
    ratio = np.divide(2 * np.abs(predicted - actual), denominator, out=np.zeros_like(actual), where=denominator > 0)
    return float(100 * np.mean(ratio))


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    actual = np.asarray(actual, float)
    return float(np.mean((actual >= lower) & (actual <= upper)))


# --- models ---------------------------------------------------------------------------------------


def _z(level: int) -> float:
    return NormalDist().inv_cdf(0.5 + level / 200)


def seasonal_naive(y: np.ndarray, dates: np.ndarray, future: np.ndarray, settings: Settings) -> Forecast:
    """Each day repeats the same day one season earlier; the k-th season ahead has sigma * sqrt(k)
    (the residuals' RMS), as in Hyndman and Athanasopoulos, FPP3 section 5.5."""
    m, h, n = settings.season_length, len(future), len(y)
    if n <= m:
        raise ForecastError(f"seasonal naive needs more than {m} days, got {n}")
    mean = y[n - m + (np.arange(h) % m)]
    sigma = math.sqrt(float(np.mean((y[m:] - y[:-m]) ** 2)))
    spread = sigma * np.sqrt(np.arange(h) // m + 1)
    return Forecast(mean, {lv: mean - _z(lv) * spread for lv in LEVELS}, {lv: mean + _z(lv) * spread for lv in LEVELS})


def _arima_spec(fitted: Mapping) -> dict[str, object]:
    p, q, seasonal_p, seasonal_q, _, d, seasonal_d = (int(v) for v in fitted["arma"])
    return {
        "order": (p, d, q),
        "seasonal_order": (seasonal_p, seasonal_d, seasonal_q),
        "include_mean": "intercept" in fitted["coef"],
        "include_drift": "drift" in fitted["coef"],
    }


def _ets_spec(fitted: Mapping) -> dict[str, object]:
    error, trend, season = fitted["method"][4:-1].split(",")  # "ETS(A,Ad,N)"
    return {"model": error + trend[0] + season, "damped": trend.endswith("d")}


def _statsforecast(kind: str, y: np.ndarray, h: int, settings: Settings, spec: Mapping | None) -> Forecast:
    """Without `spec`, statsforecast's automatic search (AutoARIMA's stepwise search over orders,
    AutoETS's over components) and the spec it chose; with one, that fixed model refit on `y`: its
    coefficients are estimated again, its structure is not searched again."""
    import warnings

    from statsforecast.models import ARIMA, AutoARIMA, AutoETS

    m = settings.season_length
    if kind == AUTO_ARIMA:
        model = AutoARIMA(season_length=m) if spec is None else ARIMA(season_length=m, **spec)
    else:
        model = AutoETS(season_length=m) if spec is None else AutoETS(season_length=m, **spec)
    y = np.asarray(y, dtype=float)
    with warnings.catch_warnings():
        # AutoARIMA warns for each candidate order whose fit does not converge; it skips them.
        warnings.simplefilter("ignore")
        model.fit(y)
        out = model.predict(h=h, level=list(LEVELS))
    if spec is None:
        spec = _arima_spec(model.model_) if kind == AUTO_ARIMA else _ets_spec(model.model_)
    return Forecast(
        np.asarray(out["mean"], float),
        {lv: np.asarray(out[f"lo-{lv}"], float) for lv in LEVELS},
        {lv: np.asarray(out[f"hi-{lv}"], float) for lv in LEVELS},
        spec=dict(spec),
    )


def auto_arima(
    y: np.ndarray, dates: np.ndarray, future: np.ndarray, settings: Settings, spec: Mapping | None = None
) -> Forecast:
    return _statsforecast(AUTO_ARIMA, y, len(future), settings, spec)


def auto_ets(
    y: np.ndarray, dates: np.ndarray, future: np.ndarray, settings: Settings, spec: Mapping | None = None
) -> Forecast:
    return _statsforecast(AUTO_ETS, y, len(future), settings, spec)


def prophet(y: np.ndarray, dates: np.ndarray, future: np.ndarray, settings: Settings) -> Forecast:
    import pandas as pd
    from prophet import Prophet

    for name in ("prophet", "cmdstanpy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    span = int((dates[-1] - dates[0]) / np.timedelta64(1, "D")) + 1
    model = Prophet(
        weekly_seasonality=True,
        # Prophet's own default wants two years; with less than one, its 20 yearly Fourier terms
        # fit noise (a 30-day history has no year to learn).
        yearly_seasonality=span >= 365,
        daily_seasonality=False,
        uncertainty_samples=settings.uncertainty_samples,
    )
    if settings.holiday_country:
        model.add_country_holidays(country_name=settings.holiday_country)
    model.fit(pd.DataFrame({"ds": pd.to_datetime(dates), "y": np.asarray(y, float)}))
    ahead = pd.DataFrame({"ds": pd.to_datetime(future)})
    if not settings.uncertainty_samples:
        mean = model.predict(ahead)["yhat"].to_numpy(float)
        # sigma_obs is the likelihood's noise scale on the scaled series: the day's own noise.
        sigma = float(np.ravel(model.params["sigma_obs"])[0]) * float(model.y_scale)
        lower = {lv: mean - _z(lv) * sigma for lv in LEVELS}
        upper = {lv: mean + _z(lv) * sigma for lv in LEVELS}
        return Forecast(mean, lower, upper)
    # Prophet samples with numpy's global generator: seed it for repeatable intervals, then put it back.
    state = np.random.get_state()
    try:
        np.random.seed(settings.seed)
        samples = model.predictive_samples(ahead)["yhat"]
    finally:
        np.random.set_state(state)
    model.uncertainty_samples = 0  # the point forecast alone: no second round of sampling
    mean = model.predict(ahead)["yhat"].to_numpy(float)
    lower = {lv: np.quantile(samples, 0.5 - lv / 200, axis=1) for lv in LEVELS}
    upper = {lv: np.quantile(samples, 0.5 + lv / 200, axis=1) for lv in LEVELS}
    return Forecast(mean, lower, upper)


ModelFunction = Callable[[np.ndarray, np.ndarray, np.ndarray, Settings], Forecast]
MODEL_FUNCTIONS: dict[str, ModelFunction] = {
    PROPHET: prophet,
    AUTO_ARIMA: auto_arima,
    AUTO_ETS: auto_ets,
    SEASONAL_NAIVE: seasonal_naive,
}


def fit_predict(
    model: str,
    y: np.ndarray,
    dates: np.ndarray,
    future: np.ndarray,
    settings: Settings,
    spec: Mapping[str, object] | None = None,
) -> Forecast:
    """Fit `model` on (dates, y) and forecast the days `future`; raises ForecastError with the model's
    name when it fails or returns something that is not a finite forecast. `spec`: the fixed
    structure an earlier fit of an automatic model chose (Forecast.spec), to refit without a search."""
    started = time.perf_counter()
    fixed = {} if spec is None else {"spec": spec}
    try:
        found = MODEL_FUNCTIONS[model](np.asarray(y, float), dates, future, settings, **fixed)
    except ForecastError:
        raise
    except Exception as error:
        raise ForecastError(f"{model} failed: {type(error).__name__}: {error}") from error
    arrays = [found.mean, *found.lower.values(), *found.upper.values()]
    if any(len(a) != len(future) or not np.all(np.isfinite(a)) for a in arrays):
        raise ForecastError(f"{model} returned a forecast that is not {len(future)} finite numbers")
    return replace(found, seconds=time.perf_counter() - started)


# --- backtest -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    origins: tuple[int, ...]  # each fold trains on y[:origin] and is scored on y[origin:origin + horizon]
    horizon: int


def plan_backtest(n: int, settings: Settings) -> Plan:
    """Rolling origins ending at the last day. The held-out window is the forecast horizon when the
    history allows `folds` of them after the shortest training window; on a shorter history it
    shrinks to a season, and then the origins step by fewer days than the window (windows overlap)."""
    if n < settings.minimum_history:
        raise HistoryTooShort(
            f"the history has {n} day(s); a forecast needs at least {settings.minimum_history} "
            f"({settings.train_floor} to train on and {settings.test_floor} to backtest): "
            f"wait for more days of cash flow"
        )
    available = n - settings.train_floor
    horizon = max(settings.test_floor, min(settings.horizon, available // settings.folds))
    folds = settings.folds
    if folds == 1:
        step = 0
    else:
        step = max(1, min(horizon, (available - horizon) // (folds - 1)))
        folds = min(folds, (available - horizon) // step + 1)
    last = n - horizon
    return Plan(tuple(last - step * (folds - 1 - j) for j in range(folds)), horizon)


@dataclass(frozen=True)
class ModelScore:
    model: str
    folds: int
    horizon: int
    mase: float
    smape: float
    coverage80: float
    coverage95: float
    fit_seconds: float  # mean seconds of one fit and forecast
    weight: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Backtest:
    plan: Plan
    actuals: tuple[np.ndarray, ...]
    scales: tuple[float, ...]
    forecasts: Mapping[str, tuple[Forecast, ...]]  # models that succeeded on every fold
    errors: Mapping[str, str]  # models that failed on a fold, and why
    # The structure each automatic model chose on the first (earliest, shortest) fold's training
    # window: the later folds and the final fit refit it rather than search again.
    specs: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


def backtest(y: np.ndarray, dates: np.ndarray, settings: Settings) -> Backtest:
    y = np.asarray(y, float)
    plan = plan_backtest(len(y), settings)
    actuals = tuple(y[o : o + plan.horizon] for o in plan.origins)
    scales = tuple(seasonal_naive_scale(y[:o], settings.season_length) for o in plan.origins)
    forecasts: dict[str, tuple[Forecast, ...]] = {}
    errors: dict[str, str] = {}
    specs: dict[str, Mapping[str, object]] = {}
    for model in settings.models:
        found: list[Forecast] = []
        for origin in plan.origins:
            # The first fold searches (AutoARIMA, AutoETS) on the earliest window only; the later
            # folds refit what it chose, so no fold's structure was chosen with days past its origin.
            spec = found[0].spec if found else None
            try:
                ahead = dates[origin : origin + plan.horizon]
                found.append(fit_predict(model, y[:origin], dates[:origin], ahead, settings, spec))
            except ForecastError as error:
                errors[model] = f"fold at {dates[origin]}: {error}"
                break
        else:
            forecasts[model] = tuple(found)
            if found[0].spec is not None:
                specs[model] = found[0].spec
    return Backtest(plan, actuals, scales, forecasts, errors, specs)


def _mean_mase(bt: Backtest, folds: Sequence[int], means: Sequence[np.ndarray]) -> float:
    values = [float(np.mean(np.abs(bt.actuals[j] - means[j]))) / bt.scales[j] for j in folds if bt.scales[j] > 0]
    return float(np.mean(values)) if values else math.nan


def _mean_mae(bt: Backtest, folds: Sequence[int], means: Sequence[np.ndarray]) -> float:
    return float(np.mean([np.mean(np.abs(bt.actuals[j] - means[j])) for j in folds]))


def choose_weights(errors: Mapping[str, float], baseline: str = SEASONAL_NAIVE) -> dict[str, float]:
    """Inverse-error weights over the models at least as good as the baseline (lower is better:
    MASE, or MAE when MASE is undefined). A model worse than seasonal naive gets no weight: with a
    few folds its error is a noisy estimate, and a model that already loses to repeating last
    week only adds variance to the average. Inverse-error rather than a fitted (stacked) combination
    because a least-squares fit on two or three folds' days overfits the folds, and simple
    combinations are known to be hard to beat out of sample (the forecast combination puzzle)."""
    reference = errors.get(baseline, math.nan)
    if not math.isfinite(reference):
        raise ForecastError(f"the baseline {baseline} has no backtest error: it cannot weigh the others")
    eligible = {m: e for m, e in errors.items() if math.isfinite(e) and e <= reference}
    if any(e == 0 for e in eligible.values()):  # a perfect model: share among the perfect ones
        perfect = [m for m, e in eligible.items() if e == 0]
        return {m: (1 / len(perfect) if m in perfect else 0.0) for m in errors}
    inverse = {m: 1 / e for m, e in eligible.items()}
    total = sum(inverse.values())
    return {m: inverse.get(m, 0.0) / total for m in errors}


def _fold_errors(bt: Backtest, folds: Sequence[int]) -> dict[str, float]:
    """Per model: mean MASE over `folds`, or mean MAE if the baseline's MASE is undefined there."""
    by_mase = {m: _mean_mase(bt, folds, [f.mean for f in fs]) for m, fs in bt.forecasts.items()}
    if math.isfinite(by_mase.get(SEASONAL_NAIVE, math.nan)):
        return by_mase
    return {m: _mean_mae(bt, folds, [f.mean for f in fs]) for m, fs in bt.forecasts.items()}


def combine(forecasts: Mapping[str, Forecast], weights: Mapping[str, float]) -> Forecast:
    """Weighted mean of the means and of each bound (quantile averaging), before calibration."""
    used = [m for m, w in weights.items() if w > 0]
    mean = sum(weights[m] * forecasts[m].mean for m in used)
    lower = {lv: sum(weights[m] * forecasts[m].lower[lv] for m in used) for lv in LEVELS}
    upper = {lv: sum(weights[m] * forecasts[m].upper[lv] for m in used) for lv in LEVELS}
    return Forecast(np.asarray(mean, float), lower, upper)


def _scores(actual: np.ndarray, raw: Forecast, level: int) -> np.ndarray:
    """How far outside (above 1) or inside (below 1) the raw band each actual falls, relative to the
    band's half-width on its side."""
    below = np.maximum(raw.mean - raw.lower[level], 1e-9)
    above = np.maximum(raw.upper[level] - raw.mean, 1e-9)
    return np.where(actual >= raw.mean, (actual - raw.mean) / above, (raw.mean - actual) / below)


def calibration_factors(actuals: Sequence[np.ndarray], raws: Sequence[Forecast]) -> dict[int, float]:
    """Per level, the factor that stretches (above 1) or shrinks the ensemble's half-widths so that
    the level's share of backtest days falls inside: the split-conformal quantile of the scores.
    Averaged model bounds are not the ensemble's quantiles, and the models' own intervals ignore
    their model uncertainty, so the nominal 95% is rarely 95% until checked like this."""
    factors = {}
    for level in LEVELS:
        scores = np.sort(np.concatenate([_scores(a, r, level) for a, r in zip(actuals, raws, strict=True)]))
        rank = min(len(scores), math.ceil((len(scores) + 1) * level / 100)) - 1
        factors[level] = float(scores[rank])
    return factors


def calibrated(raw: Forecast, factors: Mapping[int, float]) -> Forecast:
    """The raw band scaled by the factors, nested (95% never inside 80%) and ordered around the mean."""
    lower, upper = {}, {}
    for level in LEVELS:
        lower[level] = raw.mean - factors[level] * np.maximum(raw.mean - raw.lower[level], 0)
        upper[level] = raw.mean + factors[level] * np.maximum(raw.upper[level] - raw.mean, 0)
    lower[95], upper[95] = np.minimum(lower[95], lower[80]), np.maximum(upper[95], upper[80])
    return Forecast(raw.mean, lower, upper, raw.seconds)


@dataclass(frozen=True)
class Evaluation:
    """The backtest judged: one score per model and one for the ensemble, the weights, the
    calibration factors. The ensemble's own score is cross-fitted: each fold is forecast with the
    weights and calibration learnt on the other folds, so it is not graded on what it was fit to
    (with a single fold that is impossible, and `ensemble_in_sample` says so)."""

    scores: tuple[ModelScore, ...]
    weights: Mapping[str, float]
    factors: Mapping[int, float]
    ensemble_in_sample: bool


def _score(bt: Backtest, name: str, forecasts: Sequence[Forecast], weight: float, seconds: float) -> ModelScore:
    folds = range(len(bt.actuals))
    actual = np.concatenate(bt.actuals)
    return ModelScore(
        model=name,
        folds=len(bt.actuals),
        horizon=bt.plan.horizon,
        mase=_mean_mase(bt, folds, [f.mean for f in forecasts]),
        smape=smape(actual, np.concatenate([f.mean for f in forecasts])),
        coverage80=coverage(
            actual, np.concatenate([f.lower[80] for f in forecasts]), np.concatenate([f.upper[80] for f in forecasts])
        ),
        coverage95=coverage(
            actual, np.concatenate([f.lower[95] for f in forecasts]), np.concatenate([f.upper[95] for f in forecasts])
        ),
        fit_seconds=seconds,
        weight=weight,
    )


def evaluate(bt: Backtest) -> Evaluation:
    folds = list(range(len(bt.actuals)))
    weights = choose_weights(_fold_errors(bt, folds))
    raws = [combine({m: fs[j] for m, fs in bt.forecasts.items()}, weights) for j in folds]
    factors = calibration_factors(bt.actuals, raws)
    in_sample = len(folds) < 2
    ensemble = []
    for j in folds:
        others = [k for k in folds if k != j] or folds
        w = choose_weights(_fold_errors(bt, others))
        outside = [combine({m: fs[k] for m, fs in bt.forecasts.items()}, w) for k in others]
        ensemble.append(
            calibrated(
                combine({m: fs[j] for m, fs in bt.forecasts.items()}, w),
                calibration_factors([bt.actuals[k] for k in others], outside),
            )
        )
    scores = [
        _score(bt, m, fs, weights.get(m, 0.0), float(np.mean([f.seconds for f in fs])))
        for m, fs in bt.forecasts.items()
    ]
    scores += [
        ModelScore(m, len(folds), bt.plan.horizon, *(math.nan,) * 4, fit_seconds=0.0, weight=0.0, error=e)
        for m, e in bt.errors.items()
    ]
    used_seconds = sum(s.fit_seconds for s in scores if s.weight > 0)
    scores.append(_score(bt, ENSEMBLE, ensemble, 1.0, used_seconds))
    return Evaluation(tuple(scores), weights, factors, in_sample)


# --- the forecast ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsembleForecast:
    dates: np.ndarray  # the forecast days (datetime64[D])
    forecast: Forecast  # calibrated ensemble
    evaluation: Evaluation
    plan: Plan
    trained_through: date
    fit_seconds: float  # the final fits on the whole history
    history_days: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The structure each automatic model's backtest search chose (what the final fit refit).
    specs: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @property
    def weights(self) -> Mapping[str, float]:
        return self.evaluation.weights

    def score(self, model: str) -> ModelScore:
        return next(s for s in self.evaluation.scores if s.model == model)

    def relative_mase(self) -> float:
        """Ensemble MASE over seasonal naive MASE in the backtest: below 1 means it beats the baseline."""
        base = self.score(SEASONAL_NAIVE).mase
        return self.score(ENSEMBLE).mase / base if base and math.isfinite(base) else math.nan

    def table(self) -> pd.DataFrame:
        import pandas as pd

        f = self.forecast
        return pd.DataFrame(
            {
                "forecast_date": [d.item() for d in self.dates],
                "horizon_day": np.arange(1, len(self.dates) + 1),
                "net": f.mean,
                "lo80": f.lower[80],
                "hi80": f.upper[80],
                "lo95": f.lower[95],
                "hi95": f.upper[95],
            }
        )

    def backtest_table(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([vars(s) for s in self.evaluation.scores])


def as_days(dates: Sequence | np.ndarray) -> np.ndarray:
    return np.asarray(dates, dtype="datetime64[D]")


def next_days(last: np.datetime64, horizon: int) -> np.ndarray:
    return last + np.arange(1, horizon + 1).astype("timedelta64[D]")


def _checked(y: Sequence[float] | np.ndarray, dates: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    dates = as_days(dates)
    if len(y) != len(dates):
        raise ForecastError(f"{len(y)} values for {len(dates)} dates")
    if not len(y):
        raise HistoryTooShort("the history is empty")
    if not np.all(np.isfinite(y)):
        raise ForecastError("the history has missing or infinite values: fill missing days (zero cash flow) first")
    if len(dates) > 1 and not np.all(np.diff(dates) > np.timedelta64(0, "D")):
        raise ForecastError("the dates must be strictly increasing, one value per day")
    return y, dates


def forecast(
    y: Sequence[float] | np.ndarray,
    dates: Sequence | np.ndarray,
    settings: Settings = Settings(),
    future: Sequence | np.ndarray | None = None,
) -> EnsembleForecast:
    """Backtest every model, weigh and calibrate from it, refit the weighted models on the whole
    history and forecast `future` (default: the `settings.horizon` days after the last date)."""
    y, dates = _checked(y, dates)
    future = next_days(dates[-1], settings.horizon) if future is None else as_days(future)
    bt = backtest(y, dates, settings)
    evaluation = evaluate(bt)
    notes = [f"{m} left out: {e}" for m, e in bt.errors.items()]
    if evaluation.ensemble_in_sample:
        notes.append("one backtest fold only: the ensemble's backtest score is in-sample")
    final = final_fit(y, dates, future, settings, evaluation.weights, bt.specs, evaluation.factors)
    return EnsembleForecast(
        dates=future,
        forecast=final.forecast,
        evaluation=replace(evaluation, weights=final.weights),
        plan=bt.plan,
        trained_through=dates[-1].item(),
        fit_seconds=final.seconds,
        history_days=len(y),
        notes=tuple(notes + list(final.notes)),
        specs=dict(bt.specs),
    )


@dataclass(frozen=True)
class FinalFit:
    forecast: Forecast  # calibrated ensemble
    weights: Mapping[str, float]  # renormalized over the models that fitted
    seconds: float
    fitted: tuple[str, ...]
    notes: tuple[str, ...] = ()


def final_fit(
    y: np.ndarray,
    dates: np.ndarray,
    future: np.ndarray,
    settings: Settings,
    weights: Mapping[str, float],
    specs: Mapping[str, Mapping[str, object]],
    factors: Mapping[int, float],
) -> FinalFit:
    """Fit each weighted model once on (dates, y), an automatic one with its given structure (no
    search), combine them with `weights` (renormalized if one fails) and scale the band by `factors`.
    The full forecast's last step and the whole of a refresh: one function, so they cannot drift."""
    started = time.perf_counter()
    weights = dict(weights)
    notes: list[str] = []
    finals: dict[str, Forecast] = {}
    for model, weight in list(weights.items()):
        if weight <= 0:
            continue  # a model without weight is not refit: it would not change the forecast
        try:
            finals[model] = fit_predict(model, y, dates, future, settings, specs.get(model))
        except ForecastError as error:
            notes.append(f"{model} failed on the whole history and was left out: {error}")
            weights[model] = 0.0
    if not finals:
        raise ForecastError("every weighted model failed on the whole history: " + "; ".join(notes))
    total = sum(weights.values())
    weights = {m: w / total for m, w in weights.items()}
    ensemble = calibrated(combine(finals, weights), factors)
    return FinalFit(ensemble, weights, time.perf_counter() - started, tuple(finals), tuple(notes))


# --- selection and refresh (many series) ----------------------------------------------------------


class StaleSelection(ForecastError):
    """The stored selection is too old for this history or was made with other settings: re-select."""


AUTOMATIC = (AUTO_ARIMA, AUTO_ETS)
MAX_NEW_DAYS = 7


def _settings_dict(settings: Settings) -> dict[str, object]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()}


def _plain(spec: Mapping[str, object]) -> dict[str, object]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.items()}


@dataclass(frozen=True)
class Selection:
    """What a full forecast's backtest chose, kept to refresh the same series without backtesting:
    per model its weight and (automatic models) structure, the calibration factors, the settings it
    was made with, the last day it saw and how many days it had. `as_dict`/`from_dict`: JSON."""

    weights: Mapping[str, float]
    specs: Mapping[str, Mapping[str, object]]
    factors: Mapping[int, float]
    settings: Settings
    selected_through: date
    history_days: int

    @classmethod
    def of(cls, result: EnsembleForecast, settings: Settings) -> Selection:
        return cls(
            weights=dict(result.weights),
            specs={m: dict(s) for m, s in result.specs.items() if result.weights.get(m, 0.0) > 0},
            factors=dict(result.evaluation.factors),
            settings=settings,
            selected_through=result.trained_through,
            history_days=result.history_days,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "weights": dict(self.weights),
            "specs": {m: _plain(s) for m, s in self.specs.items()},
            "factors": {str(lv): f for lv, f in self.factors.items()},
            "settings": _settings_dict(self.settings),
            "selected_through": self.selected_through.isoformat(),
            "history_days": self.history_days,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Selection:
        try:
            raw = dict(data["settings"])
            raw["models"] = tuple(raw["models"])
            specs = {}
            for model, spec in data["specs"].items():
                specs[model] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()}
            selection = cls(
                weights={m: float(w) for m, w in data["weights"].items()},
                specs=specs,
                factors={int(lv): float(f) for lv, f in data["factors"].items()},
                settings=Settings(**raw),
                selected_through=date.fromisoformat(data["selected_through"]),
                history_days=int(data["history_days"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ForecastError(f"not a stored selection: {type(error).__name__}: {error}") from error
        missing = [m for m in AUTOMATIC if selection.weights.get(m, 0.0) > 0 and m not in selection.specs]
        if missing or set(selection.factors) != set(LEVELS) or not sum(selection.weights.values()) > 0:
            raise ForecastError(f"not a usable selection: no structure for {missing} or no factors/weights")
        return selection


def staleness(
    selection: Selection, dates: Sequence | np.ndarray, settings: Settings, max_new_days: int = MAX_NEW_DAYS
) -> str | None:
    """Why `selection` should not be used for a history ending at dates[-1] with `settings` (None:
    it may be). Stale when made with other settings, when the history has more than `max_new_days`
    days past the selection's last day, or when the history ends before it (it saw later days)."""
    if selection.settings != settings:
        return "the selection was made with other settings"
    last = as_days(dates)[-1].item()
    new = (last - selection.selected_through).days
    if new < 0:
        return f"the history ends {-new} day(s) before the selection's last day {selection.selected_through}"
    if new > max_new_days:
        return f"{new} new day(s) since the selection on {selection.selected_through} (more than {max_new_days})"
    return None


@dataclass(frozen=True)
class Refreshed:
    dates: np.ndarray  # the forecast days
    forecast: Forecast  # calibrated ensemble
    weights: Mapping[str, float]
    fitted: tuple[str, ...]  # the models fitted (each once)
    trained_through: date
    fit_seconds: float
    history_days: int
    selection: Selection
    notes: tuple[str, ...] = ()


def refresh(
    y: Sequence[float] | np.ndarray,
    dates: Sequence | np.ndarray,
    selection: Selection,
    settings: Settings,
    future: Sequence | np.ndarray | None = None,
    max_new_days: int = MAX_NEW_DAYS,
) -> Refreshed:
    """The daily forecast with a stored selection: each weighted model fitted once on the whole
    history with its stored structure (no search, no backtest), combined with the stored weights and
    calibrated with the stored factors, by the full forecast's own `final_fit`. Raises
    StaleSelection when `staleness` gives a reason: the caller re-selects with `forecast`."""
    y, dates = _checked(y, dates)
    reason = staleness(selection, dates, settings, max_new_days)
    if reason:
        raise StaleSelection(f"re-select: {reason}")
    future = next_days(dates[-1], settings.horizon) if future is None else as_days(future)
    final = final_fit(y, dates, future, settings, selection.weights, selection.specs, selection.factors)
    return Refreshed(
        dates=future,
        forecast=final.forecast,
        weights=final.weights,
        fitted=final.fitted,
        trained_through=dates[-1].item(),
        fit_seconds=final.seconds,
        history_days=len(y),
        selection=selection,
        notes=final.notes,
    )


def daily_series(
    days: Sequence[date], values: Sequence[float], through: date | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Calendar days from the first to `through` (default the last), summed per day; a day without
    a row is a day without cash flow, so it is zero, not missing."""
    if not len(days):
        raise HistoryTooShort("the history is empty: no cash flow has been booked yet")
    days = as_days(days)
    start, end = days.min(), as_days([through])[0] if through else days.max()
    calendar = start + np.arange(int((end - start) / np.timedelta64(1, "D")) + 1).astype("timedelta64[D]")
    totals = np.zeros(len(calendar))
    inside = days <= end
    np.add.at(totals, ((days[inside] - start) / np.timedelta64(1, "D")).astype(int), np.asarray(values, float)[inside])
    return calendar, totals


def reporting_cash_flow(frame: pd.DataFrame, currency: str, rates=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """analytics.daily_cash_flow rows (cash_date, currency, net_minor) as one net per day in
    `currency`: other currencies converted at the ECB rate of their day (core.ledger.fx, exact,
    rounded half-even, as the dbt marts convert), since the business spends one total whatever it
    was paid in. Returns (cash_date, net_minor) summed per day, and the rows that could not be
    converted (no rate for that currency or day) with the reason, left out and reported."""
    import pandas as pd

    from core.ledger import fx

    rows = (
        (pd.Timestamp(r.cash_date).date(), r.currency, r.net_minor)
        for r in frame[["cash_date", "currency", "net_minor"]].itertuples(index=False)
    )
    totals, left_out = fx.daily_totals(rows, currency, rates or fx.bundled_table())
    converted = pd.DataFrame(sorted(totals.items()), columns=["cash_date", "net_minor"])
    excluded = pd.DataFrame(left_out, columns=["cash_date", "currency", "net_minor", "reason"])
    return converted, excluded
