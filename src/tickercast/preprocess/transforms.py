"""Curated features as pure Spark transforms (DataFrame -> DataFrame, no I/O).

Per-symbol rows are put together in date order by ``Window.partitionBy("symbol").orderBy("date")``
and the indicators and calendar columns computed from them by :mod:`tickercast.features` in the
Python workers (``mapInArrow``); the trading calendar and the market-index table are small (one row
per trading date) and are broadcast. The formulas are in ``docs/preprocessing.md``.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_type

from tickercast import schema
from tickercast.features import calendar as exchange_calendar
from tickercast.features import indicators, rules
from tickercast.preprocess import write

# The close of a symbol's previous valid row, where duplicate resolution already looked it up
# (:func:`tickercast.preprocess.validate.resolve_duplicates`, ``previous=["close"]``).
PREVIOUS_CLOSE = indicators.PREVIOUS_CLOSE


def _by_symbol():
    """Each symbol's rows in date order."""
    return Window.partitionBy(schema.SYMBOL).orderBy(schema.DATE)


def _score_batch(headlines: pa.Array) -> pa.Array:
    from tickercast.features.sentiment import score_headline_array

    return score_headline_array(headlines)


def headline_scores(headlines: Column) -> Column:
    """Score headlines with the foundation's scorer (VADER) in an Arrow UDF, batch by batch.

    The batches stay Arrow arrays: only each batch's distinct headlines become Python strings
    (a pandas UDF would turn every row into one first, about a third of the scoring time).

    Args:
        headlines: A string column.

    Returns:
        A double column: the compound score in [-1, 1].

    """
    return F.arrow_udf(_score_batch, "double")(headlines)  # type: ignore[call-overload]


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
    if first is not None and last is not None:
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


def _numbered(rows: DataFrame) -> DataFrame:
    """Add each row's position in its symbol's rows (``_row``), and the previous close if missing.

    The window also puts each symbol's rows in one partition, in date order, which is what the
    feature kernel needs; Spark shuffles or sorts for it only where the rows are not so already
    (the job's rows are: duplicate resolution partitioned and sorted them).
    """
    by_symbol = _by_symbol()
    extra = {indicators.ROW_NUMBER: F.row_number().over(by_symbol)}
    if PREVIOUS_CLOSE not in rows.columns:
        extra[PREVIOUS_CLOSE] = F.lag(schema.CLOSE).over(by_symbol)
    return rows.withColumns(extra)


# What :func:`window_features` adds, in order (``news_count`` replaces the input's, 0 for null),
# and the input columns it consumes.
WINDOW_COLUMNS = (
    schema.LOG_RETURN,
    *schema.MOVING_AVERAGES,
    *schema.REALISED_VOLS,
    schema.RSI,
    schema.SENTIMENT,
    schema.NEWS_COUNT,
    schema.SENTIMENT_OBSERVED,
)
_CONSUMED = (indicators.ROW_NUMBER, PREVIOUS_CLOSE, indicators.SENTIMENT_MEAN, schema.NEWS_COUNT)


def _window_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Add :func:`indicators.window_columns` to whole symbols' rows (runs in the Python workers)."""
    for table in indicators.whole_symbols(batches):
        computed = indicators.window_columns(table)
        out = table.drop_columns(list(_CONSUMED))
        for name in WINDOW_COLUMNS:
            out = out.append_column(name, computed[name])
        yield from out.to_batches()


def window_features(rows: DataFrame) -> DataFrame:
    """Add the per-symbol indicators and the imputed sentiment (the kernel, in the Python workers).

    Args:
        rows: ``symbol, date, close, time_idx, sentiment_mean, news_count`` and any other columns
            (``sentiment_mean`` and ``news_count`` null on rows without observations), perhaps
            with the previous close from duplicate resolution (else it is looked up here).

    Returns:
        The input columns (less ``sentiment_mean``) plus ``log_return``, ``ma_*``, ``rv_*``,
        ``rsi_14``, ``sentiment``, ``sentiment_observed``; ``news_count`` 0 without observations.

    """
    numbered = _numbered(rows)
    fields = [f for f in numbered.schema.fields if f.name not in _CONSUMED]
    kept = [f"`{f.name}` {f.dataType.simpleString()}" for f in fields]
    # The added columns have the types the curated files give them.
    added_fields = write.curated_schema(WINDOW_COLUMNS)
    added = [f"{f.name} {from_arrow_type(f.type).simpleString()}" for f in added_fields]
    return numbered.mapInArrow(_window_batches, ", ".join(kept + added))


def feature_rows(prices: DataFrame, calendar: DataFrame, sentiment: DataFrame) -> DataFrame:
    """Join prices, the calendar and daily sentiment into the rows the feature kernel reads.

    Args:
        prices: Valid, de-duplicated ``symbol, date, open, high, low, close, volume``, perhaps with
            the previous close.
        calendar: Output of :func:`trading_calendar`.
        sentiment: Output of :func:`daily_sentiment`.

    Returns:
        The rows with ``time_idx``, ``sentiment_mean``, ``news_count``, the previous close and
        ``_row``: each symbol's rows in one partition, in date order (see
        :func:`tickercast.preprocess.write.write_curated`).

    """
    rows = prices.join(F.broadcast(calendar), schema.DATE).join(
        sentiment, [schema.SYMBOL, schema.DATE], "left"
    )
    return _numbered(rows)


def _calendar_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Add the exchange calendar's columns of ``date`` to each batch (runs in the Python workers)."""
    for batch in batches:
        computed = exchange_calendar.calendar_columns(batch.column(schema.DATE))
        kept = [name for name in batch.schema.names if name not in computed]
        yield pa.RecordBatch.from_arrays(
            [*(batch.column(name) for name in kept), *computed.values()], [*kept, *computed]
        )


def calendar_columns(frame: DataFrame) -> DataFrame:
    """Add ``day_of_week`` (0 = Monday), ``day_of_month`` and ``month`` of ``date`` (replacing any).

    They are :func:`tickercast.features.calendar.calendar_columns`, computed in the Python workers.
    """
    fields = [f for f in frame.schema.fields if f.name not in schema.CALENDAR_COLUMNS]
    kept = [f"`{f.name}` {f.dataType.simpleString()}" for f in fields]
    added = [f"{name} bigint" for name in schema.CALENDAR_COLUMNS]
    return frame.mapInArrow(_calendar_batches, ", ".join(kept + added))


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
    carried = F.last(schema.CLOSE, True).over(
        by_idx.rowsBetween(-rules.MARKET_FFILL_LIMIT, Window.currentRow)
    )
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


def with_market(frame: DataFrame, market: DataFrame | None, index_symbols: Sequence[str]) -> DataFrame:
    """Join the market table on ``time_idx`` and order the columns as the contract says."""
    if market is not None and index_symbols:
        frame = frame.join(F.broadcast(market), schema.TIME_IDX, "left")
    columns = rules.curated_columns(list(index_symbols))
    return frame.select(*columns)
