"""The curated features in pandas on one machine: a second implementation kept only as the benchmark's peer.

``benchmarks/preprocess_bench.py`` times it against the Spark job (the single-node baseline the
project started from). It is on no product path: ``POST /forecast`` and the tests' curated data use
:func:`tickercast.features.curate.curate`, which runs the one feature kernel
(:mod:`tickercast.features.indicators`). Parsing, news attribution and the market table are
:mod:`tickercast.features.curate`'s; the windows and the sentiment imputation are pandas here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.features import rules as spec
from tickercast.features.calendar import add_calendar_columns
from tickercast.features.curate import clean_prices, market_table, observations


def compute_features(
    prices: pd.DataFrame,
    indices: pd.DataFrame | None = None,
    sentiment: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compute the curated feature rows in pandas: the same inputs, output and errors as
    :func:`tickercast.features.curate.curate`, which the product runs.
    """
    px = clean_prices(prices)
    calendar = np.sort(px[schema.DATE].unique())
    px[schema.TIME_IDX] = np.searchsorted(calendar, px[schema.DATE].to_numpy()).astype(np.int64)
    px = px.sort_values([schema.SYMBOL, schema.DATE], kind="stable").reset_index(drop=True)

    _add_window_features(px)
    _add_sentiment(px, observations(sentiment))

    px = add_calendar_columns(px)

    index_symbols: list[str] = []
    if indices is not None and len(indices):
        market = market_table(indices, calendar)
        index_symbols = list(market.attrs["symbols"])
        px = px.join(market, on=schema.TIME_IDX)

    columns = spec.curated_columns(index_symbols)
    out = px[columns].copy()
    out[schema.DATE] = pd.DatetimeIndex(out[schema.DATE]).date
    for col in spec.INTEGER_COLUMNS:
        out[col] = out[col].astype(np.int64)
    for col in columns:
        if col not in (schema.DATE, schema.SYMBOL, *spec.INTEGER_COLUMNS):
            out[col] = out[col].astype(np.float64)
    return out


# --- per-symbol windows -------------------------------------------------------------------------


def _add_window_features(px: pd.DataFrame) -> None:
    """Add log_return, moving averages, realised volatilities and RSI to rows sorted by symbol, date."""
    close = px[schema.CLOSE]
    group = px[schema.SYMBOL]
    prev = close.groupby(group, sort=False).shift(1)
    px[schema.LOG_RETURN] = np.log(close / prev)

    def rolling(values: pd.Series, n: int, how: str) -> pd.Series:
        windows = values.groupby(group, sort=False).rolling(n, min_periods=n)
        result = windows.mean() if how == "mean" else windows.std(ddof=1)
        return result.reset_index(level=0, drop=True).reindex(px.index)

    for n in schema.MA_WINDOWS:
        px[f"ma_{n}"] = rolling(close, n, "mean")
    for n in schema.RV_WINDOWS:
        px[f"rv_{n}"] = rolling(px[schema.LOG_RETURN], n, "std") * spec.ANNUALISATION

    n = schema.RSI_WINDOW
    delta = close - prev
    avg_gain = rolling(delta.clip(lower=0), n, "mean")
    avg_loss = rolling((-delta).clip(lower=0), n, "mean")
    # Counting strictly negative changes decides "avg_loss = 0" exactly (a rolling sum may leave dust).
    downs = rolling((delta < 0).astype(np.float64).where(delta.notna()), n, "mean")
    ups = rolling((delta > 0).astype(np.float64).where(delta.notna()), n, "mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    rsi = np.where(downs == 0, np.where(ups == 0, 50.0, 100.0), rsi)
    px[schema.RSI] = pd.Series(rsi, index=px.index).where(avg_gain.notna())


# --- sentiment ----------------------------------------------------------------------------------------


def _add_sentiment(px: pd.DataFrame, obs: pd.DataFrame) -> None:
    """Aggregate observations as of the close and impute days without news from the past only."""
    n_rows = len(px)
    daily = np.zeros(n_rows)
    counts = np.zeros(n_rows, dtype=np.int64)
    if len(obs):
        # Each observation counts for its symbol's first row dated on or after its effective date.
        keys = px[[schema.SYMBOL, schema.DATE]].reset_index(names="row")
        obs = obs.astype({schema.SYMBOL: keys[schema.SYMBOL].dtype}).sort_values("effective", kind="stable")
        matched = pd.merge_asof(
            obs,
            keys.sort_values(schema.DATE, kind="stable"),
            left_on="effective",
            right_on=schema.DATE,
            by=schema.SYMBOL,
            direction="forward",
        ).dropna(subset=["row"])
        if len(matched):
            grouped = matched.groupby("row")["score"].agg(["count", "mean"])
            rows = grouped.index.to_numpy(dtype=np.int64)
            daily[rows] = grouped["mean"].to_numpy()
            counts[rows] = grouped["count"].to_numpy()
    observed = counts > 0
    px[schema.NEWS_COUNT] = counts
    px[schema.SENTIMENT_OBSERVED] = observed.astype(np.int64)

    # Past-only imputation: the last observation among the symbol's previous rows, decayed toward 0.
    row_ids = np.arange(n_rows, dtype=np.float64)
    last_row = pd.Series(np.where(observed, row_ids, np.nan)).groupby(px[schema.SYMBOL].to_numpy()).ffill()
    last_row = last_row.to_numpy()
    has_last = ~np.isnan(last_row)
    last_idx = np.where(has_last, last_row, 0).astype(np.int64)
    age_rows = np.arange(n_rows) - last_idx
    usable = has_last & (age_rows <= spec.SENTIMENT_MAX_CARRY_ROWS)
    time_idx = px[schema.TIME_IDX].to_numpy()
    steps = (time_idx - time_idx[last_idx]).astype(np.float64)
    decayed = daily[last_idx] * np.power(0.5, steps / spec.SENTIMENT_HALF_LIFE_DAYS)
    px[schema.SENTIMENT] = np.where(observed, daily, np.where(usable, decayed, 0.0))
