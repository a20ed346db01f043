"""Raw frames -> curated rows on one machine, with the feature kernel the Spark job's workers run.

``POST /forecast`` and the test factories turn raw prices (and indices, news or sentiment scores)
into curated rows here. The rules are the Spark job's: ``time_idx`` is the dense rank of the
distinct trading dates of the prices, news counts for its symbol's first row on or after its New
York date (the next day when published after the 16:00 close), an index value is carried over at
most ``MARKET_FFILL_LIMIT`` trading days, and the indicators, imputed sentiment and calendar
columns come from :func:`tickercast.features.indicators.curated_table`.

Inputs are raw-contract frames (``tickercast.schema``); column names are matched case-insensitively
(``Date`` or ``date``). Nothing is quarantined: a row that cannot be used raises ``ValueError``
naming the row and the reason, with the reasons the Spark job writes to its quarantine. Rows later
in a frame win over earlier rows for the same (symbol, date), so frames concatenated in file-name
order resolve duplicates as the job does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tickercast import schema
from tickercast.features import indicators, rules

_PRICE_NUMBERS = ("Open", "High", "Low", "Close", "Volume")
_PRICES = (schema.OPEN, schema.HIGH, schema.LOW, schema.CLOSE, schema.VOLUME)
# Sentiment scores lie in [-1, 1]: summed as integers in 2^-60 steps, as the Spark job sums them,
# so a day's mean has the same bits whatever order its observations come in.
_SCORE_BITS = 30


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


def curate(
    prices: pd.DataFrame,
    indices: pd.DataFrame | None = None,
    sentiment: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compute the curated rows from raw prices, market indices and news or sentiment scores.

    Args:
        prices: Raw prices, columns ``Date, Symbol, Open, High, Low, Close, Volume`` (extra columns
            are ignored). ``Date`` is an ISO date or a yfinance timestamp with offset (the date as
            written is used), or already a datetime/date column.
        indices: Raw market indices, columns ``Date, Symbol, Close``; each index symbol adds
            ``mkt_<name>_close`` and ``mkt_<name>_ret``. ``None`` adds no market columns.
        sentiment: Raw news (``published_at, Symbol, headline``; headlines are scored with
            :func:`tickercast.features.sentiment.score_headlines`), raw sentiment scores
            (``Date, Symbol, sentiment`` in [-1, 1]), or one frame with both sets of columns where
            each row is one or the other. ``None`` means no news: the sentiment columns are 0 and
            unobserved.

    Returns:
        One row per (symbol, trading date), sorted by symbol then date, with exactly the columns of
        :func:`tickercast.features.rules.curated_columns`. ``date`` holds ``datetime.date`` objects
        (what pandas reads back from the curated Parquet); integer columns are int64, the rest
        float64.

    Raises:
        ValueError: A required column is missing, or a row has an unparseable or impossible value.

    """
    px = clean_prices(prices)
    calendar = np.sort(px[schema.DATE].unique())
    px[schema.TIME_IDX] = np.searchsorted(calendar, px[schema.DATE].to_numpy()).astype(np.int64)
    px = px.sort_values([schema.SYMBOL, schema.DATE], kind="stable").reset_index(drop=True)
    by_symbol = px.groupby(schema.SYMBOL, sort=False)
    px[indicators.ROW_NUMBER] = by_symbol.cumcount().astype(np.int64) + 1
    px[indicators.PREVIOUS_CLOSE] = by_symbol[schema.CLOSE].shift(1)
    mean, count = daily_sentiment(px, observations(sentiment))

    market: dict[str, np.ndarray] = {}
    index_symbols: list[str] = []
    if indices is not None and len(indices):
        table = market_table(indices, calendar)
        index_symbols = list(table.attrs["symbols"])
        market = {name: table[name].to_numpy(dtype=np.float64) for name in table.columns}

    rows = pa.table(
        {
            schema.DATE: pa.array(px[schema.DATE].to_numpy().astype("datetime64[D]")),
            schema.SYMBOL: pa.array(px[schema.SYMBOL].to_numpy(dtype=object), pa.string()),
            **{name: pa.array(px[name].to_numpy(dtype=np.float64)) for name in _PRICES},
            schema.TIME_IDX: pa.array(px[schema.TIME_IDX].to_numpy()),
            indicators.ROW_NUMBER: pa.array(px[indicators.ROW_NUMBER].to_numpy()),
            indicators.PREVIOUS_CLOSE: _nullable(px[indicators.PREVIOUS_CLOSE].to_numpy()),
            indicators.SENTIMENT_MEAN: _nullable(mean),
            schema.NEWS_COUNT: pa.array(count, mask=count == 0),
        }
    )
    columns = rules.curated_columns(index_symbols)
    try:
        curated = indicators.curated_table(rows, market, columns)
    except indicators.ValueTooLarge as exc:
        raise ValueError(f"prices: {exc}") from None
    out = curated.to_pandas(date_as_object=True)
    for column in columns:
        if column in rules.INTEGER_COLUMNS:
            out[column] = out[column].astype(np.int64)
        elif column not in (schema.DATE, schema.SYMBOL):
            out[column] = out[column].astype(np.float64)
    return out


def _nullable(values: np.ndarray) -> pa.Array:
    return pa.array(values, mask=np.isnan(values), type=pa.float64())


# --- parsing ----------------------------------------------------------------------------------------


def _normalise_columns(frame: pd.DataFrame, wanted: tuple[str, ...], kind: str) -> pd.DataFrame:
    by_lower = {str(c).lower(): c for c in frame.columns}
    missing = [c for c in wanted if c.lower() not in by_lower]
    if missing:
        raise ValueError(f"{kind}: {rules.REASON_MISSING_COLUMNS}: {', '.join(missing)}")
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
    ok = text.str.fullmatch(rules.DATE_PATTERN).fillna(False).astype(bool)
    parsed = pd.to_datetime(text.str.slice(0, 10).where(ok), format="%Y-%m-%d", errors="coerce")
    return parsed.astype("datetime64[ns]")


def _parse_numbers(values: pd.Series) -> pd.Series:
    out = pd.to_numeric(values.astype("string").str.strip(), errors="coerce").astype("float64")
    return out.where(np.isfinite(out))


def clean_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Parse and check raw prices; later rows win for the same (symbol, date).

    Args:
        prices: Raw prices (see :func:`curate`).

    Returns:
        ``symbol, date`` (``datetime64[ns]``), ``open, high, low, close, volume`` (float64).

    Raises:
        ValueError: A column is missing, or a row is unusable (the quarantine reason says why).

    """
    raw = _normalise_columns(prices, schema.PRICE_REQUIRED, "prices")
    kind = "prices"
    _fail(kind, raw, raw.isna().any(axis=1), rules.REASON_MISSING_FIELD)
    out = pd.DataFrame({schema.SYMBOL: raw["Symbol"].astype(str).str.strip()})
    out[schema.DATE] = parse_dates(raw["Date"])
    _fail(kind, raw, out[schema.DATE].isna(), rules.REASON_UNPARSEABLE_DATE)
    for name in _PRICE_NUMBERS:
        out[name.lower()] = _parse_numbers(raw[name])
        _fail(kind, raw, out[name.lower()].isna(), f"{rules.REASON_UNPARSEABLE_NUMBER}: {name}")
    for name in ("Open", "High", "Low", "Close"):
        _fail(kind, raw, out[name.lower()] <= 0, f"{rules.REASON_NON_POSITIVE_PRICE}: {name}")
    o, h, lo, c = (out[k] for k in (schema.OPEN, schema.HIGH, schema.LOW, schema.CLOSE))
    _fail(kind, raw, h < lo, rules.REASON_HIGH_BELOW_LOW)
    _fail(kind, raw, (o < lo) | (o > h), rules.REASON_OPEN_OUTSIDE)
    _fail(kind, raw, (c < lo) | (c > h), rules.REASON_CLOSE_OUTSIDE)
    _fail(kind, raw, out[schema.VOLUME] < 0, rules.REASON_NEGATIVE_VOLUME)
    _fail(kind, raw, ~out[schema.SYMBOL].str.fullmatch(schema.SYMBOL_PATTERN), rules.REASON_BAD_SYMBOL)
    if out.empty:
        raise ValueError("prices: no rows")
    return out.drop_duplicates([schema.SYMBOL, schema.DATE], keep="last").reset_index(drop=True)


# --- sentiment ----------------------------------------------------------------------------------------


def observations(sentiment: pd.DataFrame | None) -> pd.DataFrame:
    """Parse news or sentiment scores into observations: the first trading date each may count for.

    Args:
        sentiment: Raw news, raw sentiment scores or both (see :func:`curate`), or ``None``.

    Returns:
        ``symbol, effective`` (``datetime64[ns]``: the New York date, the next day after the
        16:00 close), ``score``.

    Raises:
        ValueError: Neither kind of columns, or an unusable row.

    """
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
    from tickercast.features.sentiment import score_headlines

    text = news["published_at"].astype("string").str.strip()
    ok = text.str.fullmatch(rules.TIMESTAMP_PATTERN).fillna(False).astype(bool)
    stamps = pd.to_datetime(text.where(ok), utc=True, format="ISO8601", errors="coerce")
    _fail("news", news, stamps.isna(), rules.REASON_UNPARSEABLE_DATE)
    local = stamps.dt.tz_convert(schema.MARKET_TIMEZONE)
    day = local.dt.tz_localize(None).dt.normalize()
    seconds = (local.dt.tz_localize(None) - day).dt.total_seconds()
    after_close = seconds > schema.MARKET_CLOSE_HOUR * 3600
    effective = (day + pd.to_timedelta(after_close.astype(np.int64), unit="D")).astype("datetime64[ns]")
    symbols = news["Symbol"].astype(str).str.strip()
    _fail("news", news, ~symbols.str.fullmatch(schema.SYMBOL_PATTERN), rules.REASON_BAD_SYMBOL)
    headlines = news["headline"].astype(str).str.strip()
    scores = score_headlines(headlines).to_numpy(dtype=np.float64)
    return pd.DataFrame(
        {schema.SYMBOL: symbols.to_numpy(), "effective": effective.to_numpy(), "score": scores}
    )


def _score_observations(scores: pd.DataFrame) -> pd.DataFrame:
    dates = parse_dates(scores["Date"])
    _fail("sentiment", scores, dates.isna(), rules.REASON_UNPARSEABLE_DATE)
    values = _parse_numbers(scores["sentiment"])
    _fail("sentiment", scores, values.isna(), f"{rules.REASON_UNPARSEABLE_NUMBER}: sentiment")
    _fail("sentiment", scores, values.abs() > 1, rules.REASON_SENTIMENT_RANGE)
    symbols = scores["Symbol"].astype(str).str.strip()
    _fail("sentiment", scores, ~symbols.str.fullmatch(schema.SYMBOL_PATTERN), rules.REASON_BAD_SYMBOL)
    return pd.DataFrame({schema.SYMBOL: symbols.to_numpy(), "effective": dates.to_numpy(), "score": values})


def daily_sentiment(px: pd.DataFrame, obs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate observations per price row, as of the close.

    Each observation counts for its symbol's first row dated on or after its effective date;
    observations after a symbol's last row wait for later prices.

    Args:
        px: Price rows (``symbol, date``), one per symbol and date.
        obs: Output of :func:`observations`.

    Returns:
        Per row of ``px``: the mean observed score (NaN without observations) and their count.

    """
    mean = np.full(len(px), np.nan)
    counts = np.zeros(len(px), dtype=np.int64)
    if not len(obs):
        return mean, counts
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
    if not len(matched):
        return mean, counts
    scaled = matched["score"].to_numpy(dtype=np.float64) * float(2**_SCORE_BITS)  # a power of two: exact
    hi = np.floor(scaled)
    lo = np.floor((scaled - hi) * float(2**_SCORE_BITS))
    parts = pd.DataFrame({"row": matched["row"].to_numpy(dtype=np.int64), "hi": hi.astype(np.int64)})
    parts["lo"] = lo.astype(np.int64)
    grouped = parts.groupby("row").agg(hi=("hi", "sum"), lo=("lo", "sum"), count=("hi", "size"))
    rows = grouped.index.to_numpy(dtype=np.int64)
    total = grouped["hi"].to_numpy().astype(np.float64) / float(2**_SCORE_BITS) + grouped[
        "lo"
    ].to_numpy().astype(np.float64) / float(2 ** (2 * _SCORE_BITS))
    counts[rows] = grouped["count"].to_numpy()
    mean[rows] = total / counts[rows]
    return mean, counts


# --- market indices -------------------------------------------------------------------------------


def market_table(indices: pd.DataFrame, calendar: np.ndarray) -> pd.DataFrame:
    """Align market indices to the trading calendar of the prices, one ``mkt_*`` pair per index.

    Args:
        indices: Raw market indices (see :func:`curate`).
        calendar: The distinct trading dates of the prices, sorted (``datetime64[ns]``).

    Returns:
        ``mkt_<name>_close, mkt_<name>_ret`` per index, indexed by ``time_idx``; ``attrs["symbols"]``
        lists the index symbols. Values on non-trading dates are ignored; a missing value is
        carried over at most ``MARKET_FFILL_LIMIT`` trading days, else null; the return is the log
        of consecutive aligned closes.

    Raises:
        ValueError: A column is missing, or a row is unusable.

    """
    raw = _normalise_columns(indices, schema.INDEX_REQUIRED, "indices")
    frame = pd.DataFrame({"symbol": raw["Symbol"].astype(str).str.strip()})
    frame["date"] = parse_dates(raw["Date"])
    _fail("indices", raw, frame["date"].isna(), rules.REASON_UNPARSEABLE_DATE)
    frame["close"] = _parse_numbers(raw["Close"])
    _fail("indices", raw, frame["close"].isna(), f"{rules.REASON_UNPARSEABLE_NUMBER}: Close")
    _fail("indices", raw, frame["close"] <= 0, f"{rules.REASON_NON_POSITIVE_PRICE}: Close")
    _fail("indices", raw, ~frame["symbol"].str.fullmatch(schema.SYMBOL_PATTERN), rules.REASON_BAD_SYMBOL)
    frame = frame.drop_duplicates(["symbol", "date"], keep="last")
    frame = frame[frame["date"].isin(calendar)]
    wide = frame.pivot(index="date", columns="symbol", values="close").reindex(calendar)
    symbols = sorted(frame["symbol"].unique(), key=schema.index_feature_name)
    table = pd.DataFrame(index=pd.RangeIndex(len(calendar), name=schema.TIME_IDX))
    for symbol in symbols:
        close_col, ret_col = schema.market_columns(symbol)
        close = wide[symbol].ffill(limit=rules.MARKET_FFILL_LIMIT).to_numpy()
        table[close_col] = close
        previous = np.concatenate([[np.nan], close[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            table[ret_col] = np.log(close / previous)
    table.attrs["symbols"] = symbols
    return table
