"""The model's inputs: curated rows -> model rows -> ``TimeSeriesDataSet``, shared by training and serving.

Training, evaluation, tuning and serving all go through :func:`model_frame` (curated rows ->
scale-free model features); training builds its datasets with :func:`dataset_kwargs` and serving
its forecasts with :func:`prediction_rows`, so the features a model was trained on are, by
construction, the features it is served with.

Choices (``docs/training.md`` explains them):

- **Target**: each trading day's log return ``ln(close_{t+k} / close_{t+k-1})``, forecast for
  ``k = 1..horizon`` days after the origin ``t`` (the decoder's steps). It is scale-free, so one
  model serves tickers priced at $20 and at $2,000; prices come back as ``close_t * exp(q)`` for
  each quantile ``q`` of the return from the origin (exact for quantiles: ``exp`` is monotone).
- **Known inputs**: calendar features and the time index relative to the forecast origin.
- **Features** are scale-free too: price levels enter only as log gaps (``ln(close / ma_n)``,
  ``ln(high / low)``, ``ln(close / open)``), volume as its log distance from its own 20-row mean.
- **Warm-up**: rows inside a symbol's indicator warm-up (any of ``ma_200``, ``rv_50``, ``rsi_14`` or
  the volume mean still null) are **dropped**; the model never sees a NaN.
- **Missing market data**: a market column that is null on a date (an index absent beyond the
  3-day carry-forward) or absent from the frame altogether is filled with 0 and flagged by
  ``mkt_missing`` = 1 on that row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.features.calendar import add_calendar_columns, next_trading_day, trading_days_from

if TYPE_CHECKING:
    from tickercast.config import ModelParams

TARGET = schema.LOG_RETURN
QUANTILES = (0.1, 0.5, 0.9)
VOLUME_WINDOW = 20
MARKET_MISSING = "mkt_missing"
# Known ahead: the calendar. Time enters as pytorch-forecasting's ``relative_time_idx`` (steps
# relative to the forecast origin, added by the dataset) rather than the absolute ``time_idx``: an
# absolute index would make a forecast depend on where a frame's index starts (a frame posted to
# the API starts at 0) and would extrapolate beyond the training range.
KNOWN_REALS = tuple(schema.CALENDAR_COLUMNS)
# Curated columns that must be non-null for a row to leave the warm-up.
WARMUP_COLUMNS = (
    schema.CLOSE,
    schema.OPEN,
    schema.HIGH,
    schema.LOW,
    schema.VOLUME,
    schema.LOG_RETURN,
    *schema.MOVING_AVERAGES,
    *schema.REALISED_VOLS,
    schema.RSI,
)
# Model inputs derived from the curated columns; market returns are appended per index.
BASE_UNKNOWN_REALS = (
    schema.LOG_RETURN,
    *(f"{ma}_gap" for ma in schema.MOVING_AVERAGES),
    "hl_range",
    "oc_return",
    *schema.REALISED_VOLS,
    "rsi",
    "volume_rel",
    schema.SENTIMENT,
    "news_log_count",
    schema.SENTIMENT_OBSERVED,
    MARKET_MISSING,
)
# Kept beside the features for turning log returns back into prices.
PREV_CLOSE = "prev_close"
PREV_DATE = "prev_date"
# The realised volatility that scales a forecast's error (the conformal layer's normaliser).
VOL_COLUMN = schema.REALISED_VOLS[0]  # rv_20, annualised


@dataclass(frozen=True)
class FeatureSpec:
    """Which model inputs a dataset uses; saved in the bundle so serving builds the same inputs.

    Attributes:
        market_indices: Short names of the market indices (``gspc``, ``vix``) whose returns are inputs.

    """

    market_indices: tuple[str, ...] = ()

    @property
    def market_returns(self) -> tuple[str, ...]:
        """The curated market-return columns used as inputs."""
        return tuple(f"{schema.MARKET_PREFIX}{name}_ret" for name in self.market_indices)

    @property
    def unknown_reals(self) -> tuple[str, ...]:
        """Inputs observed only up to the forecast origin."""
        return (*BASE_UNKNOWN_REALS, *self.market_returns)

    @property
    def features(self) -> list[str]:
        """Every model input, static and time-varying, in a stable order."""
        return [schema.SYMBOL, "relative_time_idx", *KNOWN_REALS, *self.unknown_reals]

    @classmethod
    def from_columns(cls, columns: list[str] | pd.Index) -> FeatureSpec:
        """Deduce the spec from curated column names (every ``mkt_<name>_ret`` column is used)."""
        names = sorted(
            c[len(schema.MARKET_PREFIX) : -len("_ret")]
            for c in columns
            if c.startswith(schema.MARKET_PREFIX) and c.endswith("_ret")
        )
        return cls(market_indices=tuple(names))


def model_frame(curated: pd.DataFrame, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Turn curated rows into model rows: scale-free features, warm-up dropped, no NaN.

    Args:
        curated: Curated rows of one or many symbols, in any order.
        spec: The inputs to build; deduced from the columns when ``None`` (training). Serving passes
            the bundle's spec so that a missing market column becomes "missing" rather than an error.

    Returns:
        One row per (symbol, date) outside the warm-up, sorted by symbol and date, with every model
        input plus ``prev_close`` / ``prev_date`` (the previous row of the same symbol).

    """
    spec = spec or FeatureSpec.from_columns(list(curated.columns))
    missing = [c for c in (schema.DATE, schema.SYMBOL, *WARMUP_COLUMNS, schema.TIME_IDX) if c not in curated]
    if missing:
        raise ValueError(f"frame lacks curated columns: {', '.join(missing)}")
    df = curated.copy()
    df[schema.DATE] = pd.to_datetime(df[schema.DATE]).astype("datetime64[ns]")
    df[schema.SYMBOL] = df[schema.SYMBOL].astype(str)
    df = df.sort_values([schema.SYMBOL, schema.DATE], kind="stable").reset_index(drop=True)
    df = df.drop_duplicates([schema.SYMBOL, schema.DATE], keep="last")

    grouped = df.groupby(schema.SYMBOL, sort=False)
    df[PREV_CLOSE] = grouped[schema.CLOSE].shift(1)
    df[PREV_DATE] = grouped[schema.DATE].shift(1)
    log_volume = np.log1p(df[schema.VOLUME].astype(float).clip(lower=0))
    volume_mean = log_volume.groupby(df[schema.SYMBOL], sort=False).transform(
        lambda s: s.rolling(VOLUME_WINDOW, min_periods=VOLUME_WINDOW).mean()
    )
    close = df[schema.CLOSE].astype(float)
    out = pd.DataFrame(
        {
            schema.DATE: df[schema.DATE],
            schema.SYMBOL: df[schema.SYMBOL],
            schema.TIME_IDX: df[schema.TIME_IDX].astype("int64"),
            schema.CLOSE: close,
            PREV_CLOSE: df[PREV_CLOSE].astype(float),
            PREV_DATE: df[PREV_DATE],
            schema.LOG_RETURN: df[schema.LOG_RETURN].astype(float),
            "hl_range": np.log(df[schema.HIGH].astype(float) / df[schema.LOW].astype(float)),
            "oc_return": np.log(close / df[schema.OPEN].astype(float)),
            "rsi": df[schema.RSI].astype(float) / 100.0 - 0.5,
            "volume_rel": log_volume - volume_mean,
        }
    )
    for ma in schema.MOVING_AVERAGES:
        out[f"{ma}_gap"] = np.log(close / df[ma].astype(float))
    for rv in schema.REALISED_VOLS:
        out[rv] = df[rv].astype(float)
    for column in schema.CALENDAR_COLUMNS:
        out[column] = df[column].astype(float)
    out[schema.SENTIMENT] = _column_or(df, schema.SENTIMENT, 0.0).fillna(0.0)
    out["news_log_count"] = np.log1p(_column_or(df, schema.NEWS_COUNT, 0.0).fillna(0.0).clip(lower=0))
    out[schema.SENTIMENT_OBSERVED] = _column_or(df, schema.SENTIMENT_OBSERVED, 0.0).fillna(0.0)
    market_missing = pd.Series(False, index=df.index)
    for column in spec.market_returns:
        values = _column_or(df, column, np.nan)
        market_missing |= values.isna()
        out[column] = values.fillna(0.0)
    out[MARKET_MISSING] = market_missing.astype(float)

    required = [c for c in spec.unknown_reals if c != MARKET_MISSING]
    keep = out[required].notna().all(axis=1) & np.isfinite(out[required]).all(axis=1)
    keep &= out[PREV_CLOSE].notna()
    return out.loc[keep].reset_index(drop=True)


def _column_or(df: pd.DataFrame, column: str, default: float) -> pd.Series:
    if column in df.columns:
        return pd.to_numeric(df[column], errors="coerce").astype(float)
    return pd.Series(default, index=df.index, dtype=float)


def dataset_kwargs(spec: FeatureSpec, params: ModelParams) -> dict[str, Any]:
    """Arguments of the training ``TimeSeriesDataSet`` (one place, so tuning and training agree)."""
    from pytorch_forecasting.data import GroupNormalizer, NaNLabelEncoder

    return {
        "time_idx": schema.TIME_IDX,
        "target": TARGET,
        "group_ids": [schema.SYMBOL],
        "max_encoder_length": params.max_encoder_length,
        "min_encoder_length": params.max_encoder_length,
        "max_prediction_length": params.horizon,
        # Samples near a series' end forecast fewer days, so the last dates still train day 1.
        "min_prediction_length": 1,
        "static_categoricals": [schema.SYMBOL],
        "time_varying_known_reals": list(KNOWN_REALS),
        "time_varying_unknown_reals": list(spec.unknown_reals),
        # Per-symbol mean and standard deviation of the return, fitted on training rows; an unknown
        # symbol gets the median over symbols. (center=False would divide by the mean: wrong for returns.)
        "target_normalizer": GroupNormalizer(groups=[schema.SYMBOL], method="standard", center=True),
        "categorical_encoders": {schema.SYMBOL: NaNLabelEncoder(add_nan=True)},
        "allow_missing_timesteps": True,
        "add_relative_time_idx": True,
        "add_target_scales": True,
        "add_encoder_length": False,
    }


def horizon_of(parameters: dict[str, Any]) -> int:
    """Trading days ahead a model forecasts, from its training dataset parameters."""
    return int(parameters.get("max_prediction_length", 1))


def prediction_rows(
    parameters: dict[str, Any], frame: pd.DataFrame, max_encoder_length: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the rows that forecast the ``horizon`` trading days after each symbol's last row.

    ``horizon`` decoder rows per symbol are appended, dated on the exchange calendar: their known
    inputs (``time_idx``, calendar) are those of the following trading days; their unknown inputs
    are copies of the last row (the TFT never reads unknown inputs in the decoder) and their target
    is 0 (never read either).

    Args:
        parameters: ``TimeSeriesDataSet.get_parameters()`` of the training set (from the bundle).
        frame: Model rows from :func:`model_frame`, possibly several symbols.
        max_encoder_length: Rows of history each forecast uses.

    Returns:
        The model rows (history and decoder rows; build the dataset with ``predict=True``: one
        sample per symbol) and a frame of ``symbol, as_of, horizon, forecast_for, last_close, vol``
        (one row per symbol and horizon; ``vol`` is the daily volatility at the origin,
        ``rv_20 / sqrt(252)``).

    """
    horizon = horizon_of(parameters)
    tail = frame.groupby(schema.SYMBOL, sort=True).tail(max_encoder_length)
    last = tail.groupby(schema.SYMBOL, sort=True).tail(1).reset_index(drop=True)
    days = {
        day: trading_days_from(next_trading_day(day), horizon).astype("datetime64[ns]")
        for day in set(last[schema.DATE].dt.date)
    }
    future = last.loc[last.index.repeat(horizon)].reset_index(drop=True)
    steps = np.tile(np.arange(1, horizon + 1), len(last))
    future[schema.DATE] = (
        np.concatenate([days[day] for day in last[schema.DATE].dt.date]) if len(last) else []
    )
    future[schema.DATE] = pd.to_datetime(future[schema.DATE]).astype("datetime64[ns]")
    future[schema.TIME_IDX] = future[schema.TIME_IDX] + steps
    future = add_calendar_columns(future).astype({c: float for c in schema.CALENDAR_COLUMNS})
    future[TARGET] = 0.0
    rows = pd.concat([tail, future], ignore_index=True).sort_values([schema.SYMBOL, schema.TIME_IDX])
    info = pd.DataFrame(
        {
            schema.SYMBOL: future[schema.SYMBOL].to_numpy(),
            "as_of": np.repeat(last[schema.DATE].dt.date.to_numpy(), horizon),
            "horizon": steps,
            "forecast_for": future[schema.DATE].dt.date.to_numpy(),
            "last_close": np.repeat(last[schema.CLOSE].to_numpy(), horizon),
            "vol": np.repeat((last[VOL_COLUMN] / np.sqrt(252.0)).to_numpy(), horizon),
        }
    )
    return rows, info
