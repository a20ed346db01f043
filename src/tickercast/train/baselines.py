"""Baseline forecasters of the walk-forward backtest, each producing path records (ISSUE25.md).

Every forecaster has the same shape, :data:`Forecaster`: ``(curated, origins, horizon) -> records``,
and may use only rows dated on or before each origin; the backtest checks that by forecasting an
origin again from data cut at the origin (:func:`tickercast.train.backtest.audit_cutoff`).

- ``naive``: the random walk (statsforecast ``Naive``: median log return 0);
- ``drift``: the random walk with drift (statsforecast ``RandomWalkWithDrift`` over the window);
- both with bands from the empirical distribution of the ticker's past overlapping h-day log
  returns in the window (their 10th and 90th percentiles, re-centred on the model's median);
- ``auto_ets`` and ``auto_arima``: statsforecast on log closes with 80% intervals;
- ``lightgbm``: LightGBM quantile regression on the scale-free model features of
  :func:`tickercast.model.inputs.model_frame`, one model per horizon and quantile, refitted at
  every origin on rows whose target date is on or before the origin.

The statistical models see the last :data:`HISTORY_WINDOW` closes before each origin; all
``(symbol, origin)`` histories go through statsforecast in one call, as separate series.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.features.calendar import trading_days_from

log = logging.getLogger(__name__)

PATH_COLUMNS = (
    "model",
    "symbol",
    "origin",
    "horizon",
    "forecast_for",
    "last_close",
    "q10",
    "q50",
    "q90",
    "vol",
    "actual",
)
QUANTILE_COLUMNS = ("q10", "q50", "q90")
# Trading days of history the statistical baselines and the empirical bands read before an origin.
HISTORY_WINDOW = 500
# Fewer past h-day returns than this give no empirical band (NaN) rather than a noisy one.
MIN_BAND_RETURNS = 30
# Closes a series needs before a baseline forecasts from it (ETS and ARIMA fail on a handful).
MIN_SERIES_ROWS = MIN_BAND_RETURNS + 1
BAND_LEVEL = 80
TRADING_DAYS_PER_YEAR = 252
LIGHTGBM_PARAMS: dict[str, Any] = {
    "objective": "quantile",
    # Small trees on coarse bins: 15 fits per origin stay around 20 ms each.
    "n_estimators": 50,
    "learning_rate": 0.05,
    "num_leaves": 7,
    "max_bin": 63,
    "min_child_samples": 40,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "seed": 0,
    "verbose": -1,
}

Forecaster = Callable[[pd.DataFrame, Sequence[dt.date], int], pd.DataFrame]
"""``(curated rows, origin dates, horizon H) -> path records`` for horizons 1..H."""


# --- The truth every model is scored against ------------------------------------------------------


def closes(curated: pd.DataFrame) -> pd.DataFrame:
    """``symbol, date, close, vol`` per curated row, sorted; ``date`` as ``datetime.date``.

    ``vol`` is the daily volatility at that row: ``rv_20 / sqrt(252)`` (NaN in the warm-up).
    """
    frame = pd.DataFrame(
        {
            "symbol": curated[schema.SYMBOL].astype(str).to_numpy(),
            "date": pd.to_datetime(curated[schema.DATE]).dt.date.to_numpy(),
            "close": curated[schema.CLOSE].astype(float).to_numpy(),
            "vol": (
                curated["rv_20"].astype(float).to_numpy() / np.sqrt(TRADING_DAYS_PER_YEAR)
                if "rv_20" in curated
                else np.nan
            ),
        }
    )
    frame = frame.drop_duplicates(["symbol", "date"], keep="last")
    return frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def forecast_dates(origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """``origin, horizon, forecast_for``: the h-th trading day after each origin on the exchange calendar."""
    rows: list[tuple[dt.date, int, dt.date]] = []
    for origin in sorted(set(origins)):
        days = trading_days_from(origin + dt.timedelta(days=1), horizon).astype(dt.date)
        rows.extend((origin, h, day) for h, day in enumerate(days, start=1))
    return pd.DataFrame(rows, columns=["origin", "horizon", "forecast_for"])


def origin_rows(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """Build the record skeleton: one row per symbol with a close at the origin, and per horizon 1..H.

    Args:
        curated: Curated rows (all symbols).
        origins: Origin dates.
        horizon: Largest horizon ``H``.

    Returns:
        ``symbol, origin, horizon, forecast_for, last_close, vol, actual`` where ``actual`` is the
        realised log return ``ln(close at forecast_for / close at origin)`` (NaN when that close is
        not in the data).

    """
    c = closes(curated)
    at_origin = c[c["date"].isin(set(origins))].rename(columns={"date": "origin", "close": "last_close"})
    rows = at_origin.merge(forecast_dates(origins, horizon), on="origin", how="inner")
    later = c[["symbol", "date", "close"]].rename(columns={"date": "forecast_for"})
    rows = rows.merge(later, on=["symbol", "forecast_for"], how="left")
    rows["actual"] = np.log(rows["close"] / rows["last_close"])
    columns = ["symbol", "origin", "horizon", "forecast_for", "last_close", "vol", "actual"]
    return rows[columns].sort_values(["symbol", "origin", "horizon"]).reset_index(drop=True)


def _records(model: str, skeleton: pd.DataFrame, quantiles: pd.DataFrame) -> pd.DataFrame:
    """Join ``symbol, origin, horizon, q10, q50, q90`` onto the skeleton as path records of ``model``."""
    out = skeleton.merge(quantiles, on=["symbol", "origin", "horizon"], how="inner")
    out.insert(0, "model", model)
    return out[list(PATH_COLUMNS)].reset_index(drop=True)


# --- Statistical baselines (statsforecast) ---------------------------------------------------------


def histories(
    curated: pd.DataFrame, origins: Sequence[dt.date], window: int = HISTORY_WINDOW
) -> pd.DataFrame:
    """Each symbol's last ``window`` log closes up to and including each origin, as separate series.

    A symbol with fewer than ``MIN_SERIES_ROWS`` closes at an origin (just listed) gets no series:
    no model is worth fitting on so few, and its origin stays unforecast (scored by no one).

    Returns:
        statsforecast's long format: ``unique_id`` (``symbol|origin``), ``ds`` (0, 1, ...: trading
        days need no calendar frequency), ``y`` (log close), plus ``symbol`` and ``origin``.

    """
    c = closes(curated)
    parts = []
    for origin in sorted(set(origins)):
        seen = c[c["date"] <= origin]
        last = seen.groupby("symbol", sort=True)["date"].transform("max")
        tail = seen[last == origin].groupby("symbol", sort=True).tail(window)
        tail = tail[tail.groupby("symbol")["close"].transform("size") >= MIN_SERIES_ROWS]
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": tail["symbol"] + "|" + origin.isoformat(),
                    "ds": tail.groupby("symbol").cumcount().to_numpy(),
                    "y": np.log(tail["close"].to_numpy()),
                    "symbol": tail["symbol"].to_numpy(),
                    "origin": origin,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["unique_id", "ds", "y", "symbol", "origin"])
    return pd.concat(parts, ignore_index=True)


def empirical_bands(series: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Empirical spread of past overlapping h-day log returns of each series, centred on their median.

    Args:
        series: From :func:`histories`.
        horizon: Largest horizon ``H``.

    Returns:
        ``unique_id, horizon, lo, hi``: the 10th and 90th percentiles of the series' h-day log
        returns minus their median (NaN with fewer than :data:`MIN_BAND_RETURNS` returns).

    """
    lower, upper = (1 - BAND_LEVEL / 100) / 2, 1 - (1 - BAND_LEVEL / 100) / 2
    parts = []
    for h in range(1, horizon + 1):
        returns = series["y"] - series.groupby("unique_id", sort=False)["y"].shift(h)
        grouped = returns.groupby(series["unique_id"], sort=False)
        spread = grouped.quantile([lower, 0.5, upper]).unstack()
        enough = grouped.count().reindex(spread.index) >= MIN_BAND_RETURNS
        parts.append(
            pd.DataFrame(
                {
                    "unique_id": spread.index,
                    "horizon": h,
                    "lo": (spread[lower] - spread[0.5]).where(enough).to_numpy(),
                    "hi": (spread[upper] - spread[0.5]).where(enough).to_numpy(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _statsforecast(
    series: pd.DataFrame, model: Any, horizon: int, *, interval: bool = True, jobs: int = 1
) -> pd.DataFrame:
    """Fit ``model`` on every series and forecast ``horizon`` steps, with its 80% interval if asked.

    Returns:
        ``unique_id, horizon, mean, lo, hi`` in log-close units (``lo``/``hi`` NaN without interval).

    """
    from statsforecast import StatsForecast

    level = BAND_LEVEL
    fitted = StatsForecast(models=[model], freq=1, n_jobs=max(1, min(jobs, os.cpu_count() or 1)))
    out = fitted.forecast(df=series[["unique_id", "ds", "y"]], h=horizon, level=[level] if interval else None)
    alias = str(model)
    if not interval:
        out[f"{alias}-lo-{level}"] = out[f"{alias}-hi-{level}"] = np.nan
    out = out.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    out["horizon"] = out.groupby("unique_id").cumcount() + 1
    return pd.DataFrame(
        {
            "unique_id": out["unique_id"],
            "horizon": out["horizon"],
            "mean": out[alias],
            "lo": out[f"{alias}-lo-{level}"],
            "hi": out[f"{alias}-hi-{level}"],
        }
    )


def _stats_records(
    name: str,
    model: Any,
    curated: pd.DataFrame,
    origins: Sequence[dt.date],
    horizon: int,
    *,
    empirical: bool,
) -> pd.DataFrame:
    """Forecast with one statsforecast model; bands from the model or from past returns (``empirical``)."""
    series = histories(curated, origins)
    skeleton = origin_rows(curated, origins, horizon)
    if series.empty:
        return _records(
            name, skeleton, pd.DataFrame(columns=["symbol", "origin", "horizon", *QUANTILE_COLUMNS])
        )
    # Searching models is worth a second process; a random walk's fit is not worth starting one.
    forecast = _statsforecast(series, model, horizon, interval=not empirical, jobs=1 if empirical else 2)
    last = series.groupby("unique_id", sort=False).agg(
        y_last=("y", "last"), symbol=("symbol", "first"), origin=("origin", "first")
    )
    forecast = forecast.join(last, on="unique_id")
    # Log-close forecasts become log returns from the origin's close.
    median = forecast["mean"] - forecast["y_last"]
    if empirical:
        bands = empirical_bands(series, horizon)
        forecast = forecast.merge(bands, on=["unique_id", "horizon"], suffixes=("_model", ""))
        lo, hi = median + forecast["lo"], median + forecast["hi"]
    else:
        lo, hi = forecast["lo"] - forecast["y_last"], forecast["hi"] - forecast["y_last"]
    quantiles = pd.DataFrame(
        {
            "symbol": forecast["symbol"],
            "origin": forecast["origin"],
            "horizon": forecast["horizon"],
            "q10": lo,
            "q50": median,
            "q90": hi,
        }
    )
    return _records(name, skeleton, quantiles)


def naive(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """Forecast with the random walk: median log return 0, bands from past h-day returns."""
    from statsforecast.models import Naive

    return _stats_records("naive", Naive(), curated, origins, horizon, empirical=True)


def drift(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """Forecast with the random walk with drift (the window's mean log return), bands from past returns."""
    from statsforecast.models import RandomWalkWithDrift

    return _stats_records("drift", RandomWalkWithDrift(), curated, origins, horizon, empirical=True)


def auto_ets(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """Forecast with statsforecast's AutoETS on log closes, with its 80% interval."""
    from statsforecast.models import AutoETS

    return _stats_records("auto_ets", AutoETS(season_length=1), curated, origins, horizon, empirical=False)


def auto_arima(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """Forecast with statsforecast's AutoARIMA on log closes, with its 80% interval."""
    from statsforecast.models import AutoARIMA

    return _stats_records(
        "auto_arima", AutoARIMA(season_length=1), curated, origins, horizon, empirical=False
    )


# --- LightGBM quantile regression on the model features ------------------------------------------


def forward_returns(curated: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """For every curated row as an origin: ``symbol, origin, horizon, forecast_for, actual`` (h = 1..H)."""
    c = closes(curated)
    return origin_rows(curated, sorted(set(c["date"])), horizon)[
        ["symbol", "origin", "horizon", "forecast_for", "actual"]
    ]


def lightgbm(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """LightGBM quantile models (q = 0.1, 0.5, 0.9) per horizon, refitted at every origin.

    Features are the scale-free model inputs (no symbol: one pooled model for every ticker); the
    target is the h-day forward log return; training rows are those whose target date is on or
    before the origin, so no training target lies after it.
    """
    import lightgbm as lgb

    from tickercast.model.inputs import KNOWN_REALS, FeatureSpec, model_frame

    spec = FeatureSpec.from_columns(list(curated.columns))
    features = [*KNOWN_REALS, *spec.unknown_reals]
    frame = model_frame(curated, spec)
    frame["origin"] = frame[schema.DATE].dt.date
    targets = forward_returns(curated, horizon)
    data = frame[["symbol", "origin", *features]].merge(targets, on=["symbol", "origin"], how="inner")
    skeleton = origin_rows(curated, origins, horizon)
    parts = []
    for origin in sorted(set(origins)):
        for h in range(1, horizon + 1):
            rows = data[data["horizon"] == h]
            train = rows[(rows["forecast_for"] <= origin) & rows["actual"].notna()]
            test = rows[rows["origin"] == origin]
            if len(train) < 2 * int(LIGHTGBM_PARAMS["min_child_samples"]) or test.empty:
                continue
            predicted = {}
            for column, alpha in zip(QUANTILE_COLUMNS, (0.1, 0.5, 0.9), strict=True):
                model = lgb.LGBMRegressor(alpha=alpha, **LIGHTGBM_PARAMS)
                model.fit(train[features], train["actual"])
                predicted[column] = model.predict(test[features])
            # Independent quantile models can cross; sorting each row restores a valid band.
            ordered = np.sort(np.column_stack([predicted[c] for c in QUANTILE_COLUMNS]), axis=1)
            parts.append(
                pd.DataFrame(
                    {
                        "symbol": test["symbol"].to_numpy(),
                        "origin": origin,
                        "horizon": h,
                        **{c: ordered[:, i] for i, c in enumerate(QUANTILE_COLUMNS)},
                    }
                )
            )
    quantiles = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["symbol", "origin", "horizon", *QUANTILE_COLUMNS])
    )
    return _records("lightgbm", skeleton, quantiles)


BASELINES: dict[str, Forecaster] = {
    "naive": naive,
    "drift": drift,
    "auto_ets": auto_ets,
    "auto_arima": auto_arima,
    "lightgbm": lightgbm,
}
"""The baseline forecasters by model name."""
