"""Validation and quarantine: raw CSV lines -> typed rows, each valid or carrying a reason.

Pure DataFrame -> DataFrame functions; the job reads the files and writes the results. Every raw
kind goes through the same three steps:

1. :func:`parse_lines` maps each data line onto the contract's columns using its own file's header
   (files may order or extend their columns differently) and flags files whose header lacks
   required columns;
2. ``check_<kind>`` parses dates and numbers and sets ``reason`` on the first rule a row breaks;
3. :func:`resolve_duplicates` drops exact duplicates across files and marks the losers of
   conflicting duplicates ``superseded`` (the file that sorts last by name wins).

Rows leave here with ``status`` = ``valid``, ``bad`` (a validation reason), ``bad_file`` (the whole
file lacks columns), ``duplicate`` (dropped silently) or ``superseded``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from tickercast import schema
from tickercast.preprocess import spec

N_FIELDS = 24  # the most columns a raw line may carry; more are cut off by the CSV parser
SOURCE_FILE = "source_file"
RECORD = "record"
REASON = "reason"
STATUS = "status"

VALID, BAD, BAD_FILE, DUPLICATE, SUPERSEDED = "valid", "bad", "bad_file", "duplicate", "superseded"

KNOWN_COLUMNS = {
    schema.RAW_PRICES: (*schema.PRICE_REQUIRED, *schema.PRICE_OPTIONAL),
    schema.RAW_INDICES: (*schema.INDEX_REQUIRED, *schema.INDEX_OPTIONAL),
    schema.RAW_NEWS: schema.NEWS_COLUMNS,
    schema.RAW_SENTIMENT: schema.SENTIMENT_COLUMNS,
}
# The contract columns each kind's checks read (optional ones may be absent from a file).
USED_COLUMNS = {
    schema.RAW_PRICES: schema.PRICE_REQUIRED,
    schema.RAW_INDICES: ("Date", "Symbol", "Open", "High", "Low", "Close", "Volume"),
    schema.RAW_NEWS: schema.NEWS_COLUMNS,
    schema.RAW_SENTIMENT: schema.SENTIMENT_COLUMNS,
}

_INF = float("inf")


def parse_lines(lines: DataFrame, kind: str) -> DataFrame:
    """Split raw CSV lines into the contract's columns, using each file's own header.

    A line counts as a header when at least two of its fields are column names of this kind; each
    file's header decides where each column is. Blank lines and header lines are dropped.

    Args:
        lines: Columns ``source_file`` and ``value`` (one raw line per row).
        kind: The raw kind (``prices``, ``indices``, ``news``, ``sentiment``).

    Returns:
        One row per data line: ``source_file``, ``record`` (the raw line), one string column per
        entry of ``USED_COLUMNS[kind]`` (trimmed, empty -> null), ``missing_columns`` (required
        columns the file's header lacks, empty when complete), ``header`` (the header as text, or
        null when the file has none) and ``extra_fields`` (true when the line has more fields
        than its header).

    """
    known = F.array(*[F.lit(c) for c in KNOWN_COLUMNS[kind]])
    value = F.col("value")
    text = F.when(F.substring(value, 1, 1) == "\ufeff", F.expr("substring(value, 2)")).otherwise(value)
    # Header detection looks at the raw text (cheap), so the CSV parser runs once per line.
    naive_fields = F.transform(F.split(F.regexp_replace(text, '"', ""), ","), lambda x: F.trim(x))
    is_header = F.size(F.array_intersect(naive_fields, known)) >= 2
    lines = lines.where(F.trim(value) != "").withColumn("_is_header", is_header)

    def split_fields(frame: DataFrame) -> DataFrame:
        # Lines without quotes (all price and index files in practice) are split on commas, which is
        # far cheaper than the CSV parser; quoted lines go through the parser (RFC 4180 quotes).
        quoted = F.instr(text, '"') > 0
        csv_schema = ", ".join(f"c{i} STRING" for i in range(N_FIELDS))
        parsed = F.from_csv(text, csv_schema, {"escape": '"', "mode": "PERMISSIVE"})
        staged = frame.select(
            SOURCE_FILE,
            value.alias(RECORD),
            F.when(quoted, parsed).alias("_p"),
            F.when(~quoted, F.split(text, ",")).alias("_s"),
        )
        from_parser = F.array(*[F.col(f"_p.c{i}") for i in range(N_FIELDS)])
        return staged.select(SOURCE_FILE, RECORD, F.coalesce(F.col("_s"), from_parser).alias("fields"))

    def cell(position: Column) -> Column:
        return F.nullif(F.trim(F.try_element_at("fields", position)), F.lit(""))

    headers = (
        split_fields(lines.where("_is_header"))
        .select(SOURCE_FILE, F.transform("fields", lambda x: F.trim(x)).alias("fields"))
        .groupBy(SOURCE_FILE)
        .agg(F.min(F.filter("fields", lambda x: x.isNotNull() & (x != ""))).alias("header_fields"))
    )
    data = split_fields(lines.where(~F.col("_is_header"))).join(F.broadcast(headers), SOURCE_FILE, "left")
    header = F.coalesce(F.col("header_fields"), F.array().cast("array<string>"))
    required = F.array(*[F.lit(c) for c in schema.REQUIRED_COLUMNS[kind]])
    columns = []
    for name in USED_COLUMNS[kind]:
        position = F.array_position(header, name).cast("int")
        columns.append(F.when(position > 0, cell(position)).alias(name))
    extra = F.exists(
        F.slice("fields", F.size(header) + 1, N_FIELDS), lambda x: x.isNotNull() & (F.trim(x) != "")
    )
    return data.select(
        SOURCE_FILE,
        RECORD,
        *columns,
        F.array_except(required, header).alias("missing_columns"),
        F.array_join("header_fields", ",").alias("header"),
        extra.alias("extra_fields"),
    )


def _number(name: str) -> Column:
    value = F.col(name).try_cast("double")
    # NaN compares above infinity in Spark, so this one test rejects NaN and both infinities.
    return F.when(F.abs(value) < F.lit(_INF), value)


def _raw_date(name: str) -> Column:
    """Parse the calendar date as written: ISO date or yfinance timestamp (the offset is ignored)."""
    text = F.col(name)
    return F.when(text.rlike(spec.DATE_PATTERN), F.try_to_date(F.substring(text, 1, 10), "yyyy-MM-dd"))


def _first(conditions: Sequence[tuple[Column, str]]) -> Column:
    """Return the label of the first true condition, else null."""
    return F.coalesce(*[F.when(cond, F.lit(label)) for cond, label in conditions], F.lit(None).cast("string"))


def _reason_chain(checks: Sequence[tuple[Column, Column | str]]) -> Column:
    """Return the reason of the first failing check (a column or text), else null."""
    out: Column | None = None
    for failed, reason in checks:
        value = reason if isinstance(reason, Column) else F.lit(reason)
        out = F.when(failed, value) if out is None else out.when(failed, value)
    assert out is not None
    return out.otherwise(F.lit(None).cast("string"))


def _ohlcv_reason(
    missing: Column,
    unparseable: Column,
    non_positive: Column,
    date: Column,
    ohlcv: tuple[Column, Column, Column, Column, Column],
    today: dt.date,
) -> Column:
    """Return the first reason a price or index row is bad, in the order the contract lists them.

    A null price (an index file without ``Open`` or ``High``) fails no comparison: ``when`` treats a
    null condition as false, so one chain serves full OHLCV rows and close-only index rows.
    """
    o, h, lo, c, v = ohlcv
    return _reason_chain(
        [
            (missing.isNotNull(), F.concat(F.lit(f"{spec.REASON_MISSING_FIELD}: "), missing)),
            (date.isNull(), spec.REASON_UNPARSEABLE_DATE),
            (unparseable.isNotNull(), F.concat(F.lit(f"{spec.REASON_UNPARSEABLE_NUMBER}: "), unparseable)),
            (~F.col("Symbol").rlike(schema.SYMBOL_PATTERN), spec.REASON_BAD_SYMBOL),
            (non_positive.isNotNull(), F.concat(F.lit(f"{spec.REASON_NON_POSITIVE_PRICE}: "), non_positive)),
            (h < lo, spec.REASON_HIGH_BELOW_LOW),
            ((o < lo) | (o > h), spec.REASON_OPEN_OUTSIDE),
            ((c < lo) | (c > h), spec.REASON_CLOSE_OUTSIDE),
            (v < 0, spec.REASON_NEGATIVE_VOLUME),
            (date > F.lit(today), spec.REASON_FUTURE_DATE),
        ]
    )


def _file_level(reason: Column) -> Column:
    """Prepend the whole-file problems (missing columns, extra fields) to a row's own reason."""
    missing = F.concat(F.lit(f"{spec.REASON_MISSING_COLUMNS}: "), F.array_join("missing_columns", ", "))
    return (
        F.when(F.size("missing_columns") > 0, missing)
        .when(F.col("extra_fields"), F.lit(f"{spec.REASON_MALFORMED}: more fields than the header"))
        .otherwise(reason)
    )


def _finish(frame: DataFrame, reason: Column, typed: dict[str, Column]) -> DataFrame:
    # Separate projections keep each expression computed once (and the plans small).
    with_reason = frame.select(
        SOURCE_FILE,
        RECORD,
        "header",
        "missing_columns",
        *[col.alias(name) for name, col in typed.items()],
        _file_level(reason).alias(REASON),
    )
    status = (
        F.when(F.size("missing_columns") > 0, F.lit(BAD_FILE))
        .when(F.col(REASON).isNotNull(), F.lit(BAD))
        .otherwise(F.lit(VALID))
    )
    return with_reason.withColumn(STATUS, status).drop("missing_columns")


def check_prices(parsed: DataFrame, today: dt.date) -> DataFrame:
    """Validate price rows.

    Args:
        parsed: Output of :func:`parse_lines` for ``prices``.
        today: Rows dated after this day (the exchange's local date) are ``future date``.

    Returns:
        ``source_file, record, header, symbol, date, open, high, low, close, volume, reason, status``.

    """
    numbers = ("Open", "High", "Low", "Close", "Volume")
    staged = parsed.withColumns({"_date": _raw_date("Date"), **{f"_{n}": _number(n) for n in numbers}})
    o, h, lo, c, v = (F.col(f"_{n}") for n in numbers)
    date = F.col("_date")
    missing = _first([(F.col(n).isNull(), n) for n in schema.PRICE_REQUIRED])
    unparseable = _first([(F.col(f"_{n}").isNull(), n) for n in numbers])
    non_positive = _first([(F.col(f"_{n}") <= 0, n) for n in ("Open", "High", "Low", "Close")])
    reason = _ohlcv_reason(missing, unparseable, non_positive, date, (o, h, lo, c, v), today)
    typed = {
        schema.SYMBOL: F.col("Symbol"),
        schema.DATE: date,
        schema.OPEN: o,
        schema.HIGH: h,
        schema.LOW: lo,
        schema.CLOSE: c,
        schema.VOLUME: v,
    }
    return _finish(staged, reason, typed)


def check_indices(parsed: DataFrame, today: dt.date) -> DataFrame:
    """Validate market index rows: ``Close`` is required; other price fields are checked when present.

    Args:
        parsed: Output of :func:`parse_lines` for ``indices``.
        today: Rows dated after this day are ``future date``.

    Returns:
        ``source_file, record, header, symbol, date, close, reason, status``.

    """
    optional = ("Open", "High", "Low", "Volume")
    numbers = ("Close", *optional)
    staged = parsed.withColumns({"_date": _raw_date("Date"), **{f"_{n}": _number(n) for n in numbers}})
    o, h, lo, c, v = (F.col(f"_{n}") for n in ("Open", "High", "Low", "Close", "Volume"))
    date = F.col("_date")
    missing = _first([(F.col(n).isNull(), n) for n in schema.INDEX_REQUIRED])
    unparseable = _first(
        [(c.isNull(), "Close")] + [(F.col(n).isNotNull() & F.col(f"_{n}").isNull(), n) for n in optional]
    )
    non_positive = _first([(F.col(f"_{n}") <= 0, n) for n in ("Open", "High", "Low", "Close")])
    reason = _ohlcv_reason(missing, unparseable, non_positive, date, (o, h, lo, c, v), today)
    typed = {schema.SYMBOL: F.col("Symbol"), schema.DATE: date, schema.CLOSE: c}
    return _finish(staged, reason, typed)


def check_news(parsed: DataFrame, now: dt.datetime) -> DataFrame:
    """Validate news rows and work out the trading day each headline may first count for.

    Args:
        parsed: Output of :func:`parse_lines` for ``news``.
        now: Headlines published after this instant (timezone-aware) are ``future date``.

    Returns:
        ``source_file, record, header, symbol, published_at (timestamp), headline, effective_date,
        reason, status``; ``effective_date`` is the New York calendar date of publication, plus one
        day when published after the 16:00 close.

    """
    text = F.col("published_at")
    staged = parsed.withColumn("_stamp", F.when(text.rlike(spec.TIMESTAMP_PATTERN), F.try_to_timestamp(text)))
    staged = staged.withColumn("_local", F.from_utc_timestamp("_stamp", schema.MARKET_TIMEZONE))
    local = F.col("_local")
    close_s = schema.MARKET_CLOSE_HOUR * 3600
    seconds = F.hour(local) * 3600 + F.minute(local) * 60 + F.second(local)
    after_close = (seconds > close_s) | ((seconds == close_s) & (F.unix_micros(local) % 1_000_000 > 0))
    effective = F.date_add(F.to_date(local), F.when(after_close, 1).otherwise(0))
    stamp = F.col("_stamp")
    missing = _first([(F.col(n).isNull(), n) for n in schema.NEWS_COLUMNS])
    now_utc = now.astimezone(dt.UTC).replace(tzinfo=None)
    reason = _reason_chain(
        [
            (missing.isNotNull(), F.concat(F.lit(f"{spec.REASON_MISSING_FIELD}: "), missing)),
            (stamp.isNull(), spec.REASON_UNPARSEABLE_DATE),
            (~F.col("Symbol").rlike(schema.SYMBOL_PATTERN), spec.REASON_BAD_SYMBOL),
            (stamp > F.lit(now_utc).cast("timestamp"), spec.REASON_FUTURE_DATE),
        ]
    )
    typed = {
        schema.SYMBOL: F.col("Symbol"),
        "published_at": stamp,
        "headline": F.col("headline"),
        "effective_date": effective,
    }
    return _finish(staged, reason, typed)


def check_sentiment(parsed: DataFrame, today: dt.date) -> DataFrame:
    """Validate raw sentiment scores (``Date, Symbol, sentiment`` in [-1, 1]).

    Args:
        parsed: Output of :func:`parse_lines` for ``sentiment``.
        today: Rows dated after this day are ``future date``.

    Returns:
        ``source_file, record, header, symbol, date, score, reason, status``.

    """
    staged = parsed.withColumns({"_date": _raw_date("Date"), "_score": _number("sentiment")})
    date, score = F.col("_date"), F.col("_score")
    missing = _first([(F.col(n).isNull(), n) for n in schema.SENTIMENT_COLUMNS])
    reason = _reason_chain(
        [
            (missing.isNotNull(), F.concat(F.lit(f"{spec.REASON_MISSING_FIELD}: "), missing)),
            (date.isNull(), spec.REASON_UNPARSEABLE_DATE),
            (score.isNull(), f"{spec.REASON_UNPARSEABLE_NUMBER}: sentiment"),
            (~F.col("Symbol").rlike(schema.SYMBOL_PATTERN), spec.REASON_BAD_SYMBOL),
            (F.abs(score) > 1, spec.REASON_SENTIMENT_RANGE),
            (date > F.lit(today), spec.REASON_FUTURE_DATE),
        ]
    )
    typed = {schema.SYMBOL: F.col("Symbol"), schema.DATE: date, "score": score}
    return _finish(staged, reason, typed)


def resolve_duplicates(checked: DataFrame, keys: Sequence[str], values: Sequence[str]) -> DataFrame:
    """Resolve rows that share a key: exact duplicates are dropped, conflicting ones superseded.

    Among the valid rows with the same key, the row from the file that sorts last by name wins
    (ties within one file: the greatest raw line, so the choice never depends on read order).
    Losers with the winner's values become ``duplicate``; losers with other values become
    ``superseded`` with that reason.

    Args:
        checked: Output of a ``check_<kind>`` function.
        keys: Columns that identify a row, e.g. ``("symbol", "date")``.
        values: Columns compared to tell exact from conflicting duplicates.

    Returns:
        The same rows and columns, with ``status`` and ``reason`` updated.

    """
    order = Window.partitionBy(*keys, STATUS).orderBy(F.col(SOURCE_FILE).desc(), F.col(RECORD).desc())
    ranked = checked.withColumns(
        {"_rank": F.row_number().over(order), "_winner": F.first(F.struct(*values)).over(order)}
    ).withColumn("_same", F.struct(*values).eqNullSafe(F.col("_winner")))
    keep = (F.col(STATUS) != VALID) | (F.col("_rank") == 1)
    status = F.when(keep, F.col(STATUS)).when(F.col("_same"), F.lit(DUPLICATE)).otherwise(F.lit(SUPERSEDED))
    reason = F.when(keep | F.col("_same"), F.col(REASON)).otherwise(F.lit(spec.REASON_SUPERSEDED))
    columns = [c for c in checked.columns if c not in (STATUS, REASON)]
    return ranked.select(*columns, reason.alias(REASON), status.alias(STATUS))
