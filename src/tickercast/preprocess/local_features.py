"""The curated features on one machine with pandas: the same columns and formulas as the Spark job.

Serving uses it to turn raw OHLCV posted to ``POST /forecast`` into model rows, and the benchmark
uses it as the single-node peer of the Spark job. Tests check that both implementations agree.

Inputs are raw-contract frames (``tickercast.schema``); column names are matched case-insensitively
(``Date`` or ``date``). This function does not quarantine: a row it cannot use raises
``ValueError`` naming the row and the reason, with the same reasons the Spark job writes to its
quarantine. Rows later in a frame win over earlier rows for the same (symbol, date), so frames
concatenated in file-name order resolve duplicates like the job does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tickercast import schema
from tickercast.preprocess import spec

_PRICE_NUMBERS = ("Open", "High", "Low", "Close", "Volume")


def read_raw(data_root: Path, kind: str) -> pd.DataFrame | None:
    """Read every raw CSV of one kind under a data root, as strings, in file-name order.

    Args:
        data_root: The data root holding ``raw/``.
        kind: ``prices``, ``indices``, ``news`` or ``sentiment``.

    Returns:
        All rows of all files (later files last, so they win duplicates), or ``None`` without files.

    """
    files = sorted(schema.raw_dir(data_root, kind).glob("*.csv"))
    if not files:
        return None
    return pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True)


def compute_features(
    prices: pd.DataFrame,
    indices: pd.DataFrame | None = None,
    sentiment: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compute the curated feature rows from raw prices, market indices and news or sentiment.

    Args:
        prices: Raw prices, columns ``Date, Symbol, Open, High, Low, Close, Volume`` (extra columns
            are ignored). ``Date`` is an ISO date or a yfinance timestamp with offset (the date as
            written is used), or already a datetime/date column.
        indices: Raw market indices, columns ``Date, Symbol, Close``; each index symbol adds
            ``mkt_<name>_close`` and ``mkt_<name>_ret``. ``None`` adds no market columns.
        sentiment: Either raw news (``published_at, Symbol, headline``; headlines are scored with
            :func:`tickercast.data.sentiment.score_headlines`), or raw sentiment scores
            (``Date, Symbol, sentiment`` in [-1, 1]), or one frame with both sets of columns where
            each row is one or the other. ``None`` means no news: the sentiment columns are 0 and
            unobserved.

    Returns:
        One row per (symbol, trading date), sorted by symbol then date, with exactly the columns of
        :func:`tickercast.preprocess.spec.curated_columns`. ``date`` holds ``datetime.date`` objects
        (what pandas reads back from the curated Parquet); integer columns are int64, the rest
        float64.

    Raises:
        ValueError: A required column is missing, or a row has an unparseable or impossible value.

    """
    px = _clean_prices(prices)
    calendar = np.sort(px[schema.DATE].unique())
    px[schema.TIME_IDX] = np.searchsorted(calendar, px[schema.DATE].to_numpy()).astype(np.int64)
    px = px.sort_values([schema.SYMBOL, schema.DATE], kind="stable").reset_index(drop=True)

    _add_window_features(px)
    _add_sentiment(px, _observations(sentiment))

    dates = pd.DatetimeIndex(px[schema.DATE])
    px[schema.DAY_OF_WEEK] = dates.dayofweek.astype(np.int64)
    px[schema.DAY_OF_MONTH] = dates.day.astype(np.int64)
    px[schema.MONTH] = dates.month.astype(np.int64)

    index_symbols: list[str] = []
    if indices is not None and len(indices):
        market = _market_table(indices, calendar)
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


# --- parsing ----------------------------------------------------------------------------------------


def _normalise_columns(frame: pd.DataFrame, wanted: tuple[str, ...], kind: str) -> pd.DataFrame:
    by_lower = {str(c).lower(): c for c in frame.columns}
    missing = [c for c in wanted if c.lower() not in by_lower]
    if missing:
        raise ValueError(f"{kind}: {spec.REASON_MISSING_COLUMNS}: {', '.join(missing)}")
    return pd.DataFrame({c: frame[by_lower[c.lower()]].to_numpy() for c in wanted})


def _fail(kind: str, frame: pd.DataFrame, bad: pd.Series, reason: str) -> None:
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        row = frame.iloc[first].to_dict()
        raise ValueError(f"{kind} row {first}: {reason} ({row})")


def parse_dates(values: pd.Series) -> pd.Series:
    """Turn raw ``Date`` values into midnight timestamps of the date as written.

    Args:
        values: ISO dates or ISO timestamps with offset as text, or datetime / date values.

    Returns:
        ``datetime64[ns]`` values; ``NaT`` where a value cannot be parsed.

    """
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
        return pd.to_datetime(out).dt.normalize().astype("datetime64[ns]")
    text = values.astype("string").str.strip()
    ok = text.str.fullmatch(spec.DATE_PATTERN).fillna(False).astype(bool)
    parsed = pd.to_datetime(text.str.slice(0, 10).where(ok), format="%Y-%m-%d", errors="coerce")
    return parsed.astype("datetime64[ns]")


def _parse_numbers(values: pd.Series) -> pd.Series:
    out = pd.to_numeric(values.astype("string").str.strip(), errors="coerce").astype("float64")
    return out.where(np.isfinite(out))


def _clean_prices(prices: pd.DataFrame) -> pd.DataFrame:
    raw = _normalise_columns(prices, schema.PRICE_REQUIRED, "prices")
    kind = "prices"
    _fail(kind, raw, raw.isna().any(axis=1), spec.REASON_MISSING_FIELD)
    out = pd.DataFrame({schema.SYMBOL: raw["Symbol"].astype(str).str.strip()})
    out[schema.DATE] = parse_dates(raw["Date"])
    _fail(kind, raw, out[schema.DATE].isna(), spec.REASON_UNPARSEABLE_DATE)
    for name in _PRICE_NUMBERS:
        out[name.lower()] = _parse_numbers(raw[name])
        _fail(kind, raw, out[name.lower()].isna(), f"{spec.REASON_UNPARSEABLE_NUMBER}: {name}")
    for name in ("Open", "High", "Low", "Close"):
        _fail(kind, raw, out[name.lower()] <= 0, f"{spec.REASON_NON_POSITIVE_PRICE}: {name}")
    o, h, lo, c = (out[k] for k in (schema.OPEN, schema.HIGH, schema.LOW, schema.CLOSE))
    _fail(kind, raw, h < lo, spec.REASON_HIGH_BELOW_LOW)
    _fail(kind, raw, (o < lo) | (o > h), spec.REASON_OPEN_OUTSIDE)
    _fail(kind, raw, (c < lo) | (c > h), spec.REASON_CLOSE_OUTSIDE)
    _fail(kind, raw, out[schema.VOLUME] < 0, spec.REASON_NEGATIVE_VOLUME)
    _fail(kind, raw, ~out[schema.SYMBOL].str.fullmatch(schema.SYMBOL_PATTERN), spec.REASON_BAD_SYMBOL)
    if out.empty:
        raise ValueError("prices: no rows")
    return out.drop_duplicates([schema.SYMBOL, schema.DATE], keep="last").reset_index(drop=True)


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


def _observations(sentiment: pd.DataFrame | None) -> pd.DataFrame:
    """Return (symbol, effective date, score) rows: the first trading date each observation may count for."""
    empty = pd.DataFrame(
        {
            schema.SYMBOL: pd.Series(dtype=object),
            "effective": pd.Series(dtype="datetime64[ns]"),
            "score": pd.Series(dtype="float64"),
        }
    )
    if sentiment is None or sentiment.empty:
        return empty
    lower = {str(c).lower() for c in sentiment.columns}
    parts = [empty]
    if {"published_at", "symbol", "headline"} <= lower:
        news = _normalise_columns(sentiment, schema.NEWS_COLUMNS, "news")
        news = news[news["headline"].notna()]
        if len(news):
            parts.append(_news_observations(news))
    if {"date", "symbol", "sentiment"} <= lower:
        scores = _normalise_columns(sentiment, schema.SENTIMENT_COLUMNS, "sentiment")
        scores = scores[scores["sentiment"].notna() | scores["Date"].notna()]
        if len(scores):
            parts.append(_score_observations(scores))
    if len(parts) == 1 and not ({"published_at", "headline"} <= lower or {"date", "sentiment"} <= lower):
        raise ValueError(
            "sentiment: expected news columns (published_at, Symbol, headline) "
            "or sentiment columns (Date, Symbol, sentiment)"
        )
    return pd.concat(parts, ignore_index=True)


def _news_observations(news: pd.DataFrame) -> pd.DataFrame:
    from tickercast.data.sentiment import score_headlines

    text = news["published_at"].astype("string").str.strip()
    ok = text.str.fullmatch(spec.TIMESTAMP_PATTERN).fillna(False).astype(bool)
    stamps = pd.to_datetime(text.where(ok), utc=True, format="ISO8601", errors="coerce")
    _fail("news", news, stamps.isna(), spec.REASON_UNPARSEABLE_DATE)
    local = stamps.dt.tz_convert(schema.MARKET_TIMEZONE)
    day = local.dt.tz_localize(None).dt.normalize()
    seconds = (local.dt.tz_localize(None) - day).dt.total_seconds()
    after_close = seconds > schema.MARKET_CLOSE_HOUR * 3600
    effective = (day + pd.to_timedelta(after_close.astype(np.int64), unit="D")).astype("datetime64[ns]")
    symbols = news["Symbol"].astype(str).str.strip()
    _fail("news", news, ~symbols.str.fullmatch(schema.SYMBOL_PATTERN), spec.REASON_BAD_SYMBOL)
    headlines = news["headline"].astype(str).str.strip()
    scores = score_headlines(headlines).to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {schema.SYMBOL: symbols.to_numpy(), "effective": effective.to_numpy(), "score": scores}
    )


def _score_observations(scores: pd.DataFrame) -> pd.DataFrame:
    dates = parse_dates(scores["Date"])
    _fail("sentiment", scores, dates.isna(), spec.REASON_UNPARSEABLE_DATE)
    values = _parse_numbers(scores["sentiment"])
    _fail("sentiment", scores, values.isna(), f"{spec.REASON_UNPARSEABLE_NUMBER}: sentiment")
    _fail("sentiment", scores, values.abs() > 1, spec.REASON_SENTIMENT_RANGE)
    symbols = scores["Symbol"].astype(str).str.strip()
    _fail("sentiment", scores, ~symbols.str.fullmatch(schema.SYMBOL_PATTERN), spec.REASON_BAD_SYMBOL)
    return pd.DataFrame({schema.SYMBOL: symbols.to_numpy(), "effective": dates.to_numpy(), "score": values})


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


# --- market indices -------------------------------------------------------------------------------


def _market_table(indices: pd.DataFrame, calendar: np.ndarray) -> pd.DataFrame:
    """Return mkt_* columns indexed by time_idx, aligned to the trading calendar of the prices."""
    raw = _normalise_columns(indices, schema.INDEX_REQUIRED, "indices")
    frame = pd.DataFrame({"symbol": raw["Symbol"].astype(str).str.strip()})
    frame["date"] = parse_dates(raw["Date"])
    _fail("indices", raw, frame["date"].isna(), spec.REASON_UNPARSEABLE_DATE)
    frame["close"] = _parse_numbers(raw["Close"])
    _fail("indices", raw, frame["close"].isna(), f"{spec.REASON_UNPARSEABLE_NUMBER}: Close")
    _fail("indices", raw, frame["close"] <= 0, f"{spec.REASON_NON_POSITIVE_PRICE}: Close")
    _fail("indices", raw, ~frame["symbol"].str.fullmatch(schema.SYMBOL_PATTERN), spec.REASON_BAD_SYMBOL)
    frame = frame.drop_duplicates(["symbol", "date"], keep="last")
    frame = frame[frame["date"].isin(calendar)]
    wide = frame.pivot(index="date", columns="symbol", values="close").reindex(calendar)
    symbols = sorted(frame["symbol"].unique(), key=schema.index_feature_name)
    table = pd.DataFrame(index=pd.RangeIndex(len(calendar), name=schema.TIME_IDX))
    for symbol in symbols:
        close_col, ret_col = schema.market_columns(symbol)
        close = wide[symbol].ffill(limit=spec.MARKET_FFILL_LIMIT).to_numpy()
        table[close_col] = close
        prev = np.concatenate([[np.nan], close[:-1]])
        table[ret_col] = np.log(close / prev)
    table.attrs["symbols"] = symbols
    return table
