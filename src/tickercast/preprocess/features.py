"""Curated features as pure Spark transforms (DataFrame -> DataFrame, no I/O).

Per-symbol logic runs over ``Window.partitionBy("symbol").orderBy("date")``; the trading calendar
and the market-index table are small (one row per trading date) and are broadcast. The formulas
are in ``docs/preprocessing.md``; :mod:`tickercast.preprocess.local_features` implements the same
ones in pandas and the tests hold both to an independent reference.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from tickercast import schema
from tickercast.preprocess import spec
from tickercast.preprocess.validate import previous_name

# The close of a symbol's previous valid row, where duplicate resolution already looked it up
# (see :func:`tickercast.preprocess.validate.resolve_duplicates`).
PREVIOUS_CLOSE = previous_name(schema.CLOSE)


def _by_symbol():
    """Each symbol's rows in date order."""
    return Window.partitionBy(schema.SYMBOL).orderBy(schema.DATE)


def _running_by_symbol():
    """Each symbol's rows up to the current one: one frame that every running sum and carry shares."""
    return _by_symbol().rowsBetween(Window.unboundedPreceding, Window.currentRow)


def _score_batch(headlines: pd.Series) -> pd.Series:
    from tickercast.data.sentiment import score_headlines

    return score_headlines(headlines).astype("float64")


def headline_scores(headlines: Column) -> Column:
    """Score headlines with the foundation's scorer (VADER) in a pandas UDF, batch by batch.

    Args:
        headlines: A string column.

    Returns:
        A double column: the compound score in [-1, 1].

    """
    return F.pandas_udf(_score_batch, "double")(headlines)


def trading_calendar(spark: SparkSession, dates: Iterable[dt.date]) -> DataFrame:
    """Return the distinct trading dates numbered densely from 0, as a local table.

    The job gathers the dates of the valid prices while it counts rows (a few thousand at most),
    so the calendar is built on the driver and broadcast from there, not recomputed from the rows.

    Args:
        spark: The session.
        dates: The trading dates, in any order, repeats allowed.

    Returns:
        ``date, time_idx`` with one row per trading date, numbered densely from 0 (small: broadcast it).

    """
    rows = [(day, idx) for idx, day in enumerate(sorted(set(dates)))]
    return spark.createDataFrame(rows, f"{schema.DATE} DATE, {schema.TIME_IDX} BIGINT")


# Exact sums. A value is split into two integers, hi = floor(value * 2^b) and lo = floor(the rest
# * 2^30): the value rounded down to a multiple of 2^-(b+30). Integer sums give the same bits
# whatever order rows arrive in and wherever a running sum started, as double sums would not, at a
# fraction of a decimal sum's cost. Sentiment scores lie in [-1, 1] (b = 30: 2^-60 steps; the
# sums overflow only past 2^33 rows).
_HALF_BITS = 30


def _fixed_point_parts(value: Column, hi_bits: int = _HALF_BITS) -> tuple[Column, Column]:
    """Split values into ``(hi, lo)`` longs with ``value ~ hi * 2^-hi_bits + lo * 2^-(hi_bits+30)``."""
    scaled = value * F.lit(float(2**hi_bits))  # a power of two: exact
    hi = F.floor(scaled)
    return hi, F.floor((scaled - hi) * F.lit(float(2**_HALF_BITS)))  # the fraction of a double: exact


def _fixed_point_value(hi: Column, lo: Column, hi_bits: int = _HALF_BITS) -> Column:
    """Turn (sums or differences of) :func:`_fixed_point_parts` back into a double."""
    return hi.cast("double") / F.lit(float(2**hi_bits)) + lo.cast("double") / F.lit(
        float(2 ** (hi_bits + _HALF_BITS))
    )


def _fixed_point_mean(hi_sum: Column, lo_sum: Column, count: Column) -> Column:
    """Turn the sums of :func:`_fixed_point_parts` of scores back into a mean (a double)."""
    return _fixed_point_value(hi_sum, lo_sum) / count


def calendar_lookups(spark: SparkSession, dates: Iterable[dt.date]) -> dict[str, DataFrame]:
    """Build the calendar's small tables :func:`daily_sentiment` looks observations up in, locally.

    Args:
        spark: The session.
        dates: The trading dates, in any order, repeats allowed.

    Returns:
        ``bounds`` (one row: ``_first_day, _last_day``, null without dates) and ``days`` (one row
        per calendar day from the first to the last trading date: ``_day, _next_idx``, the
        ``time_idx`` of the first trading date on or after it).

    """
    ordered = sorted(set(dates))
    first, last = (ordered[0], ordered[-1]) if ordered else (None, None)
    days = []
    if ordered:
        for offset in range((last - first).days + 1):
            day = first + dt.timedelta(days=offset)
            days.append((day, bisect.bisect_left(ordered, day)))
    return {
        "bounds": spark.createDataFrame([(first, last)], "_first_day DATE, _last_day DATE"),
        "days": spark.createDataFrame(days, "_day DATE, _next_idx BIGINT"),
    }


def daily_sentiment(
    prices: DataFrame,
    calendar: DataFrame,
    observations: DataFrame,
    lookups: dict[str, DataFrame] | None = None,
) -> DataFrame:
    """Aggregate sentiment observations per symbol and trading date, as of the close.

    Each observation counts for its symbol's first trading row dated on or after its effective
    date (news after 16:00 New York time or on a non-trading day moves to the next trading date).
    Observations after a symbol's last row wait for a later run.

    The observations never meet the 10M price rows in a sort: the small broadcast calendar moves
    each one to the next trading date of the market, and only where the symbol has no row that day
    (before its first row, or inside a gap in its history) does a small per-symbol table of those
    spans move it further, to the symbol's next row.

    Args:
        prices: Valid price rows (``symbol, date``), one per symbol and date.
        calendar: Output of :func:`trading_calendar`.
        observations: ``symbol, effective_date, score``.
        lookups: :func:`calendar_lookups` plus ``spans`` (:func:`symbol_spans`), perhaps collected
            and passed back as local tables (they grow with days and symbols, not rows); built
            here when omitted.

    Returns:
        ``symbol, date, sentiment_mean, news_count`` for the trading rows with observations,
        hash-partitioned by symbol (as the join with the prices wants). The mean is an exact
        fixed-point sum over the count, so it does not depend on the order rows arrive in.

    """
    if lookups is None:
        dates = [row[0] for row in calendar.select(schema.DATE).collect()]  # broadcast anyway
        lookups = {**calendar_lookups(prices.sparkSession, dates), "spans": symbol_spans(prices, calendar)}
    bounds, at_or_after, spans = lookups["bounds"], lookups["days"], lookups["spans"]
    # Anything before the first trading date counts for the first one.
    day = F.greatest(F.col("effective_date"), F.col("_first_day"))
    market_idx = F.greatest("_next_idx", "_first_idx")
    # Inside a gap in the symbol's history: the row that ends the gap.
    gap_end = F.get(F.filter("_gaps", lambda g: (g["_prev"] < market_idx) & (market_idx < g["_idx"])), 0)
    assigned = (
        observations.crossJoin(F.broadcast(bounds.select("_first_day")))  # one row
        .join(F.broadcast(at_or_after), day == F.col("_day"))
        .join(F.broadcast(spans), schema.SYMBOL)  # a row per symbol
        .where(F.col("_next_idx") <= F.col("_last_idx"))
        .select(schema.SYMBOL, F.coalesce(gap_end["_idx"], market_idx).alias(schema.TIME_IDX), "score")
    )
    dated = assigned.join(F.broadcast(calendar), schema.TIME_IDX)
    # Exact sums do not depend on the order rows arrive in, so the mean is the same however the
    # rows were partitioned.
    hi, lo = _fixed_point_parts(F.col("score"))
    mean = _fixed_point_mean(F.col("_hi"), F.col("_lo"), F.col(schema.NEWS_COUNT))
    return (
        dated.repartition(schema.SYMBOL)
        .groupBy(schema.SYMBOL, schema.DATE)
        .agg(F.sum(hi).alias("_hi"), F.sum(lo).alias("_lo"), F.count("score").alias(schema.NEWS_COUNT))
        .select(schema.SYMBOL, schema.DATE, mean.alias("sentiment_mean"), schema.NEWS_COUNT)
    )


def symbol_spans(prices: DataFrame, calendar: DataFrame) -> DataFrame:
    """Find each symbol's first and last trading index, its row count and the gaps in its history.

    Args:
        prices: Valid price rows (``symbol, date``), one per symbol and date.
        calendar: Output of :func:`trading_calendar`.

    Returns:
        ``symbol, _first_idx, _last_idx, _rows, _gaps``: one row per symbol; ``_gaps`` lists
        ``(_prev, _idx)`` for each row whose previous row is more than one trading day back.

    """
    idx = F.col(schema.TIME_IDX)
    by_symbol = _by_symbol()  # the order the de-duplicated prices already have: no sort
    prev_idx, next_idx = F.lag(idx).over(by_symbol), F.lead(idx).over(by_symbol)
    gap = idx - F.col("_prev") > 1
    return (
        prices.select(schema.SYMBOL, schema.DATE)
        .join(F.broadcast(calendar), schema.DATE)
        .select(
            schema.SYMBOL,
            schema.TIME_IDX,
            prev_idx.alias("_prev"),
            next_idx.alias("_next"),
            F.row_number().over(by_symbol).alias("_row"),
        )
        # Only a symbol's first and last rows and the rows after a gap matter: a small remainder.
        .where(F.col("_prev").isNull() | F.col("_next").isNull() | gap)
        .groupBy(schema.SYMBOL)
        .agg(
            F.min(idx).alias("_first_idx"),
            F.max(idx).alias("_last_idx"),
            F.max("_row").alias("_rows"),  # the last row's number
            F.collect_list(F.when(gap, F.struct(F.col("_prev"), idx.alias("_idx")))).alias("_gaps"),
        )
    )


# The moving sums: (value column, window lengths, hi_bits for the fixed-point parts, or None for
# counts, which are integers already). Prices and their changes get 2^-50 steps and sum without
# overflow to 8e12 (a price of 1e7 over 880k rows); squared returns (below 1e3) get 2^-60 steps.
_PRICE_BITS, _SQUARE_BITS = 20, 30


def _sum_name(name: str, n: int) -> str:
    return f"_s{n}_{name}"


def _running_name(name: str, part: str) -> str:
    return f"_run_{name}_{part}"


def _exact_moving_sums(
    series: dict[str, tuple[Column, Sequence[int], int | None]],
) -> tuple[dict[str, Column], dict[str, Column]]:
    """Plan exact moving sums: running integer sums, then the difference to ``n`` rows back.

    Returns:
        ``(running, sums)``: the running-sum columns (one running frame for all) and each moving
        sum (a ``lag`` per window length) read from them.

    """
    by_symbol, running_frame = _by_symbol(), _running_by_symbol()
    running: dict[str, Column] = {}
    sums: dict[str, Column] = {}
    for name, (value, windows, hi_bits) in series.items():
        if hi_bits is None:
            parts = {"n": value}
        else:
            parts = dict(zip("hl", _fixed_point_parts(value, hi_bits), strict=True))
        for part, column in parts.items():
            running[_running_name(name, part)] = F.sum(column).over(running_frame)
        for n in windows:
            # Nothing before a symbol's (or an incremental tail's) first row: a running sum of 0.
            diff = {
                part: F.col(_running_name(name, part))
                - F.coalesce(F.lag(_running_name(name, part), n).over(by_symbol), F.lit(0))
                for part in parts
            }
            sums[_sum_name(name, n)] = (
                diff["n"] if hi_bits is None else _fixed_point_value(diff["h"], diff["l"], hi_bits)
            )
    return running, sums


def window_features(rows: DataFrame) -> DataFrame:
    """Add the per-symbol indicators and the imputed sentiment.

    Spark recomputes a sliding frame from scratch for every row, so a 200-row mean would cost 200
    additions per row. Instead every moving sum is the difference of two running sums, ``n`` rows
    apart. A double running sum would make a value depend on where the sum started (an incremental
    run recomputing a tail would get other bits than a full run), so the running sums are exact
    integer sums of fixed-point parts (see :func:`_fixed_point_parts`): the difference is exactly
    the sum of the window's rounded values, whatever came before, at the cost of one running frame
    and a ``lag`` per window length. Row counts come from ``row_number``; sentiment is carried with
    the same running frame.

    Args:
        rows: ``symbol, date, open, high, low, close, volume, time_idx, sentiment_mean, news_count``
            (``sentiment_mean`` null on rows without observations).

    Returns:
        The input columns (less ``sentiment_mean``) plus ``log_return``, ``ma_*``, ``rv_*``,
        ``rsi_14``, ``sentiment``, ``sentiment_observed``.

    """
    by_symbol, running = _by_symbol(), _running_by_symbol()
    close = F.col(schema.CLOSE)
    observed = F.col("sentiment_mean").isNotNull()
    # Rows straight from duplicate resolution carry the previous close; others cost one more pass.
    has_previous = PREVIOUS_CLOSE in rows.columns
    prev_close = F.col(PREVIOUS_CLOSE) if has_previous else F.lag(close).over(by_symbol)
    out = rows.withColumns({schema.LOG_RETURN: F.ln(close / prev_close), "_delta": close - prev_close})
    ret, delta = F.col(schema.LOG_RETURN), F.col("_delta")
    rsi_window = (schema.RSI_WINDOW,)
    series = {
        "close": (close, schema.MA_WINDOWS, _PRICE_BITS),
        "ret2": (ret * ret, schema.RV_WINDOWS, _SQUARE_BITS),
        "gain": (F.greatest(delta, F.lit(0.0)), rsi_window, _PRICE_BITS),
        "loss": (F.greatest(-delta, F.lit(0.0)), rsi_window, _PRICE_BITS),
        # Counts decide RSI's "no losses" and "no gains" exactly, whatever the rounding of the sums.
        "ups": ((delta > 0).cast("long"), rsi_window, None),
        "downs": ((delta < 0).cast("long"), rsi_window, None),
    }
    running_sums, sums = _exact_moving_sums(series)
    # Two passes over each symbol's rows: the running sums, then what looks back on them.
    out = out.withColumns({"_row": F.row_number().over(by_symbol), **running_sums})
    out = out.withColumns(
        {
            # The returns over a window telescope: their sum is the log of the close n rows apart.
            **{_sum_name("ret", n): F.ln(close / F.lag(close, n).over(by_symbol)) for n in schema.RV_WINDOWS},
            **sums,
            "_obs_row": F.last(F.when(observed, F.col("_row")), True).over(running),
            "_obs_idx": F.last(F.when(observed, F.col(schema.TIME_IDX)), True).over(running),
            "_obs_value": F.last(F.col("sentiment_mean"), True).over(running),
        }
    )
    row = F.col("_row")
    columns: dict[str, Column] = {}
    for n in schema.MA_WINDOWS:
        columns[f"ma_{n}"] = F.when(row >= n, F.col(_sum_name("close", n)) / F.lit(float(n)))
    for n in schema.RV_WINDOWS:
        total, squares = F.col(_sum_name("ret", n)), F.col(_sum_name("ret2", n))
        variance = F.greatest((squares - total * total / F.lit(float(n))) / F.lit(float(n - 1)), F.lit(0.0))
        columns[f"rv_{n}"] = F.when(row >= n + 1, F.sqrt(variance) * F.lit(spec.ANNUALISATION))
    columns[schema.RSI] = _rsi(row, schema.RSI_WINDOW)

    carried = (row - F.col("_obs_row")) <= spec.SENTIMENT_MAX_CARRY_ROWS
    decay = F.pow(
        F.lit(0.5),
        (F.col(schema.TIME_IDX) - F.col("_obs_idx")).cast("double") / F.lit(spec.SENTIMENT_HALF_LIFE_DAYS),
    )
    columns[schema.SENTIMENT] = (
        F.when(observed, F.col("sentiment_mean"))
        .when(carried, F.col("_obs_value") * decay)
        .otherwise(F.lit(0.0))
    )
    columns[schema.SENTIMENT_OBSERVED] = observed.cast("long")
    columns[schema.NEWS_COUNT] = F.coalesce(F.col(schema.NEWS_COUNT), F.lit(0)).cast("long")
    helpers = ["_row", "_delta", "_obs_row", "_obs_idx", "_obs_value", "sentiment_mean", *running_sums]
    helpers += [PREVIOUS_CLOSE] if has_previous else []
    helpers += [*sums, *(_sum_name("ret", n) for n in schema.RV_WINDOWS)]
    return out.withColumns(columns).drop(*helpers)


def _rsi(row: Column, n: int) -> Column:
    gains, losses = F.col(_sum_name("gain", n)), F.col(_sum_name("loss", n))
    ups, downs = F.col(_sum_name("ups", n)), F.col(_sum_name("downs", n))
    rsi = F.lit(100.0) - F.lit(100.0) / (F.lit(1.0) + gains / losses)
    return (
        F.when(row < n + 1, F.lit(None).cast("double"))
        .when(downs == 0, F.when(ups == 0, F.lit(50.0)).otherwise(F.lit(100.0)))
        .otherwise(rsi)
    )


def calendar_columns(frame: DataFrame) -> DataFrame:
    """Add ``day_of_week`` (0 = Monday), ``day_of_month`` and ``month`` from ``date``."""
    date = F.col(schema.DATE)
    return frame.withColumns(
        {
            schema.DAY_OF_WEEK: F.weekday(date).cast("long"),
            schema.DAY_OF_MONTH: F.dayofmonth(date).cast("long"),
            schema.MONTH: F.month(date).cast("long"),
        }
    )


def market_table(indices: DataFrame, calendar: DataFrame, index_symbols: Sequence[str]) -> DataFrame:
    """Align market indices to the trading calendar, one ``mkt_*`` column pair per index.

    Index values on dates that are not trading dates are ignored; a missing value is carried
    forward from at most ``MARKET_FFILL_LIMIT`` trading days back, else null. The return is the log
    of the ratio of consecutive aligned closes (0 over a carried day, null next to a gap).

    Args:
        indices: Valid index rows ``symbol, date, close`` (one per symbol and date).
        calendar: Output of :func:`trading_calendar`.
        index_symbols: The index symbols to produce columns for (the distinct symbols of
            ``indices``; small, known to the driver because they name columns).

    Returns:
        ``time_idx`` plus ``mkt_<name>_close, mkt_<name>_ret`` for each index (small: broadcast it).

    """
    symbols = indices.sparkSession.createDataFrame([(s,) for s in index_symbols], "index_symbol STRING")
    by_idx = Window.partitionBy("index_symbol").orderBy(schema.TIME_IDX)
    # One row per trading date and index: the index's close that day, or null.
    grid = calendar.crossJoin(F.broadcast(symbols)).join(
        indices.select(F.col(schema.SYMBOL).alias("index_symbol"), schema.DATE, schema.CLOSE),
        ["index_symbol", schema.DATE],
        "left",
    )
    carried = F.last(schema.CLOSE, True).over(by_idx.rowsBetween(-spec.MARKET_FFILL_LIMIT, Window.currentRow))
    aligned = grid.withColumn("close_ff", carried).withColumn(
        "ret", F.ln(F.col("close_ff") / F.lag("close_ff").over(by_idx))
    )
    columns = []
    for symbol in sorted(index_symbols, key=schema.index_feature_name):
        close_col, ret_col = schema.market_columns(symbol)
        # Each (date, index) has one row: the max over it is that row's value, or null.
        mine = F.col("index_symbol") == symbol
        columns += [
            F.max(F.when(mine, F.col("close_ff"))).alias(close_col),
            F.max(F.when(mine, F.col("ret"))).alias(ret_col),
        ]
    return aligned.groupBy(schema.TIME_IDX).agg(*columns)


def curated(
    prices: DataFrame,
    calendar: DataFrame,
    sentiment: DataFrame,
    market: DataFrame | None,
    index_symbols: Sequence[str],
) -> DataFrame:
    """Assemble the curated rows from valid prices, the calendar, daily sentiment and the market table.

    Args:
        prices: Valid, de-duplicated ``symbol, date, open, high, low, close, volume``.
        calendar: Output of :func:`trading_calendar`.
        sentiment: Output of :func:`daily_sentiment`.
        market: Output of :func:`market_table`, or ``None`` without indices.
        index_symbols: The index symbols in ``market``.

    Returns:
        The curated columns in the order of :func:`tickercast.preprocess.spec.curated_columns`.

    """
    rows = prices.join(F.broadcast(calendar), schema.DATE).join(
        sentiment, [schema.SYMBOL, schema.DATE], "left"
    )
    out = calendar_columns(window_features(rows))
    return with_market(out, market, index_symbols)


def with_market(frame: DataFrame, market: DataFrame | None, index_symbols: Sequence[str]) -> DataFrame:
    """Join the market table on ``time_idx`` and order the columns as the contract says."""
    if market is not None and index_symbols:
        frame = frame.join(F.broadcast(market), schema.TIME_IDX, "left")
    columns = spec.curated_columns(list(index_symbols))
    return frame.select(*columns)
