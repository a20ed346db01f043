"""Validation and quarantine: raw CSV lines -> typed rows, each valid or carrying a reason.

Pure DataFrame -> DataFrame functions; the job reads the files and writes the results. Every raw
kind goes through the same three steps:

1. :func:`parse_rows` maps each data line onto the contract's columns using its own file's header
   (files may order or extend their columns differently) and flags files whose header lacks
   required columns;
2. ``check_<kind>`` parses dates and numbers and sets ``reason`` on the first rule a row breaks;
3. :func:`resolve_duplicates` drops exact duplicates across files and marks the losers of
   conflicting duplicates ``superseded`` (the file that sorts last by name wins); in the same
   pass it can look up columns of each symbol's previous valid row (the features' previous close).

Rows leave here with ``file_index`` (the file's place in name order), ``record`` (the raw line,
kept for rejected rows only) and ``status`` = ``valid``, ``bad`` (a validation reason),
``bad_file`` (the whole file lacks columns), ``duplicate`` (dropped silently) or ``superseded``.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from tickercast import schema
from tickercast.features import rules

N_FIELDS = 24  # the most columns a raw line may carry; the CSV reader drops any beyond
# The reader's column for the raw text of a record whose field count is not the reader's width.
RAW_RECORD = "_raw_record"
# How raw CSV is split into fields: RFC 4180 quotes, whitespace around a field trimmed.
CSV_OPTIONS = {"escape": '"', "ignoreLeadingWhiteSpace": "true", "ignoreTrailingWhiteSpace": "true"}
SOURCE_FILE = "source_file"
# Rows carry their file as its position among the kind's files in name order (a small integer
# through the shuffles and caches); ``source_file`` names it again where rows leave the job.
FILE_INDEX = "file_index"
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

# Fields that may hold a line break (RFC 4180 allows one in a quoted field); in any other, a break
# means a quote was never closed (``rules.REASON_SPANS_LINES``).
MULTILINE_FIELDS = ("headline",)

_INF = float("inf")
_CELL, _SHOWN, _RAW, _REPARSED = "_cell", "_shown", "_raw", "_reparsed"


def _field(position: Column, cells: Sequence[Column]) -> Column:
    """Return the CSV field at a 1-based position (null when the position is 0 or null)."""
    out = F.when(position == 1, cells[0])
    for i, cell in enumerate(cells[1:], start=2):
        out = out.when(position == i, cell)
    return out


def _last_present(columns: Sequence[Column]) -> Column:
    """Return the 1-based position of the last non-null column, null when all are null."""
    return F.greatest(*[F.when(c.isNotNull(), F.lit(i + 1)) for i, c in enumerate(columns)])


def _reparsed(raw: Column) -> Column:
    """Split a raw record into up to ``N_FIELDS`` fields (``f0 ..``), as the reader would.

    For the few records the reader flagged (their field count is not its column count): a
    projection of its own, so the parse runs once per record, whatever reads its fields.
    """
    return F.from_csv(raw, ", ".join(f"f{i} STRING" for i in range(N_FIELDS)), CSV_OPTIONS)


def parse_rows(rows: DataFrame, files: DataFrame, kind: str) -> DataFrame:
    """Map CSV rows onto the contract's columns, using each file's own header.

    A file's header is its first line when at least two of its fields are column names of this
    kind; without one every row of the file lacks every required column. Lines equal to the header
    (the first line, or a repeat of it further down) are dropped. Per-row work is plain comparisons
    (no lambdas, small generated code); everything that looks inside a header runs on the small
    table of files.

    Args:
        rows: ``_path`` (the file as Spark reports it) plus the fields ``c0 .. c{n-1}`` of every
            line (trimmed, empty -> null, ``n`` at most ``N_FIELDS``) and ``RAW_RECORD`` (the raw
            text of a record with another number of fields, else null), as Spark's CSV reader
            returns them.
        files: One row per file: ``_path, file_index, source_file, header_fields`` (the fields of
            its first line).
        kind: The raw kind (``prices``, ``indices``, ``news``, ``sentiment``).

    Returns:
        One row per data line: ``file_index``, the line's fields (``_cell0 ..``) and how many of
        them it shows (``_shown``), from which :func:`_record_text` writes the line back as text for
        rejected rows only; one string column per entry of ``USED_COLUMNS[kind]``,
        ``missing_columns`` (required columns the file's header lacks, empty when complete),
        ``header`` (the header as text, or null when the file has none), ``extra_fields`` (true
        when the line has more fields than its header) and ``_raw`` (the raw text of such a line,
        which its fields alone cannot show). A row whose file is not in ``files`` (which never
        happens) has a null ``file_index`` and lacks every column.

    """
    fields = F.col("header_fields")
    known = F.array(*[F.lit(c) for c in KNOWN_COLUMNS[kind]])
    required = F.array(*[F.lit(c) for c in schema.REQUIRED_COLUMNS[kind]])
    has_header = F.size(F.array_intersect(fields, known)) >= 2
    # What a file's header says, null for a file without one.
    from_header = {
        "_h0": fields[0],
        "_h1": fields[1],
        "_width": F.size(fields),
        "header": F.array_join(fields, ","),
        "missing_columns": F.array_except(required, fields),
        **{f"_pos_{c}": F.array_position(fields, c).cast("int") for c in USED_COLUMNS[kind]},
    }
    header_table = files.select(
        "_path", FILE_INDEX, *[F.when(has_header, column).alias(name) for name, column in from_header.items()]
    )
    joined = rows.join(F.broadcast(header_table), "_path", "left")
    c0 = F.col("c0")
    first = F.when(c0.startswith("\ufeff"), F.substring(c0, 2, 1 << 20)).otherwise(c0)
    is_header = first.eqNullSafe(F.col("_h0")) & F.col("c1").eqNullSafe(F.col("_h1"))
    data = joined.where(~is_header)
    width = F.coalesce(F.col("_width"), F.lit(0))
    cells = [F.col(c) for c in rows.columns if re.fullmatch(r"c[0-9]+", c)]
    shown = F.greatest(width, F.coalesce(_last_present(cells), F.lit(0)))
    # Fields past the file's header: in the reader's columns when the header is narrower than
    # them; past its columns only in a flagged record (and only the widest files need that look).
    raw = F.col(RAW_RECORD)
    flagged = (width >= len(cells)) & raw.isNotNull()
    data = data.withColumn(_REPARSED, F.when(flagged, _reparsed(raw)))
    beyond = F.coalesce(*[F.col(_REPARSED)[f"f{i}"] for i in range(len(cells), N_FIELDS)], F.lit(None))
    extra = F.coalesce(*[F.when(width <= i, c) for i, c in enumerate(cells)]).isNotNull() | beyond.isNotNull()
    return data.select(
        FILE_INDEX,
        *[c.alias(f"{_CELL}{i}") for i, c in enumerate(cells)],
        shown.alias(_SHOWN),
        *[_field(F.col(f"_pos_{name}"), cells).alias(name) for name in USED_COLUMNS[kind]],
        F.coalesce(F.col("missing_columns"), required).alias("missing_columns"),
        "header",
        extra.alias("extra_fields"),
        F.when(extra, raw).alias(_RAW),
    )


def _record_text(frame: DataFrame) -> Column:
    """Write a parsed line back as CSV text (``record``) from the fields :func:`parse_rows` kept.

    A line with more fields than the reader's columns keeps its raw text instead.
    """
    shown = F.col(_SHOWN)
    cells = sorted((c for c in frame.columns if c.startswith(_CELL)), key=lambda c: int(c[len(_CELL) :]))
    rebuilt = F.concat_ws(
        ",", *[F.when(F.lit(i) < shown, F.coalesce(F.col(c), F.lit(""))) for i, c in enumerate(cells)]
    )
    return F.coalesce(F.col(_RAW), rebuilt)


def first_lines(path: str) -> list[str]:
    """Return the fields of a CSV file's first non-blank line (a BOM dropped, whitespace trimmed).

    Runs on the executors, one task per group of files: the driver never opens a raw file. Bytes
    that are not UTF-8 become U+FFFD, as in Spark's own reader, so such a header simply does not
    match and the file is quarantined for its missing columns.
    """
    import csv

    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        for line in handle:
            if line.strip():
                return [field.strip() for field in next(csv.reader([line.lstrip("\ufeff")]))]
    return []


def _with_numbers(frame: DataFrame, numbers: dict[str, str], **columns: Column) -> DataFrame:
    """Add parsed numbers (output name -> text column; null when unparseable, NaN or infinite).

    Two projections: the guard reads each parsed value twice, and a parse inside it would run
    twice per row (Spark does not share an expression between a condition and its branch).

    Args:
        frame: The parsed rows.
        numbers: Output column name -> the text column it parses.
        columns: More columns to add alongside the parsed values.

    """
    casts = {out: F.col(name).try_cast("double") for out, name in numbers.items()}
    parsed = frame.withColumns(casts | columns)
    # NaN compares above infinity in Spark, so this one test rejects NaN and both infinities.
    return parsed.withColumns({out: F.when(F.abs(F.col(out)) < F.lit(_INF), F.col(out)) for out in numbers})


def _matches(text: Column, pattern: str) -> Column:
    r"""Match a whole value against a ``^...$`` pattern, a trailing line break included.

    In Java's regular expressions ``$`` also matches before a final line break, and a quoted
    field may end with one: ``\z`` (the very end) keeps ``"ABC\n"`` from passing as a symbol.
    """
    return text.rlike(pattern.removesuffix("$") + r"\z" if pattern.endswith("$") else pattern)


def _raw_date(name: str) -> Column:
    """Parse the calendar date as written: ISO date or yfinance timestamp (the offset is ignored)."""
    text = F.col(name)
    # The pattern fixes the shape (yyyy-MM-dd first); the cast then rejects days that do not exist.
    return F.when(_matches(text, rules.DATE_PATTERN), F.substring(text, 1, 10).try_cast("date"))


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
            (missing.isNotNull(), F.concat(F.lit(f"{rules.REASON_MISSING_FIELD}: "), missing)),
            (date.isNull(), rules.REASON_UNPARSEABLE_DATE),
            (unparseable.isNotNull(), F.concat(F.lit(f"{rules.REASON_UNPARSEABLE_NUMBER}: "), unparseable)),
            (~_matches(F.col("Symbol"), schema.SYMBOL_PATTERN), rules.REASON_BAD_SYMBOL),
            (non_positive.isNotNull(), F.concat(F.lit(f"{rules.REASON_NON_POSITIVE_PRICE}: "), non_positive)),
            (h < lo, rules.REASON_HIGH_BELOW_LOW),
            ((o < lo) | (o > h), rules.REASON_OPEN_OUTSIDE),
            ((c < lo) | (c > h), rules.REASON_CLOSE_OUTSIDE),
            (v < 0, rules.REASON_NEGATIVE_VOLUME),
            (date > F.lit(today), rules.REASON_FUTURE_DATE),
        ]
    )


def _file_level(reason: Column) -> Column:
    """Prepend the whole-file problems (missing columns, extra fields) to a row's own reason."""
    missing = F.concat(F.lit(f"{rules.REASON_MISSING_COLUMNS}: "), F.array_join("missing_columns", ", "))
    return (
        F.when(F.size("missing_columns") > 0, missing)
        .when(F.col("extra_fields"), F.lit(f"{rules.REASON_MALFORMED}: more fields than the header"))
        .otherwise(reason)
    )


def _spanning_lines(reason: Column, one_line: Sequence[str]) -> Column:
    """Name a rejected record that runs over a line break: most likely an unclosed quote.

    The reader follows RFC 4180, where a quoted field may hold line breaks; in a field that must
    fit on one line, a break means a quote was opened and never closed, so the reader took the
    following lines into this record. The reason says so (the record shows every line it took)
    rather than naming whichever check its mangled fields failed first. Only rejected rows are
    searched: ``&`` stops at the first false operand.
    """
    breaks = [F.col(c).contains(mark) for c in one_line for mark in ("\n", "\r")]
    spans = functools.reduce(operator.or_, breaks)
    return F.when(reason.isNotNull() & spans, F.lit(rules.REASON_SPANS_LINES)).otherwise(reason)


def _finish(frame: DataFrame, reason: Column, typed: dict[str, Column], kind: str) -> DataFrame:
    # Separate projections keep each expression computed once (and the plans small).
    cells = [c for c in frame.columns if c.startswith(_CELL)]
    one_line = [name for name in USED_COLUMNS[kind] if name not in MULTILINE_FIELDS]
    texts = {f"_text_{name}": F.col(name) for name in one_line}
    with_reason = frame.select(
        FILE_INDEX,
        *cells,
        _SHOWN,
        _RAW,
        "header",
        "missing_columns",
        "extra_fields",
        *[col.alias(name) for name, col in typed.items()],
        *[col.alias(name) for name, col in texts.items()],
        reason.alias(REASON),
    )
    # The relabelling reads the row's reason twice: a column here, not its checks run twice.
    relabelled = _file_level(_spanning_lines(F.col(REASON), list(texts)))
    with_reason = with_reason.withColumn(REASON, relabelled).drop("extra_fields", *texts)
    status = (
        F.when(F.size("missing_columns") > 0, F.lit(BAD_FILE))
        .when(F.col(REASON).isNotNull(), F.lit(BAD))
        .otherwise(F.lit(VALID))
    )
    with_status = with_reason.withColumn(STATUS, status)
    # Only a rejected row keeps its text: the line is written back inside the branch, so the
    # millions of valid rows never pay for it.
    record = F.when(F.col(STATUS) != VALID, _record_text(with_status))
    return with_status.select(
        FILE_INDEX,
        record.alias(RECORD),
        *[c for c in with_status.columns if c not in (FILE_INDEX, _SHOWN, _RAW, "missing_columns", *cells)],
    )


def check_prices(parsed: DataFrame, today: dt.date) -> DataFrame:
    """Validate price rows.

    Args:
        parsed: Output of :func:`parse_rows` for ``prices``.
        today: Rows dated after this day (the exchange's local date) are ``future date``.

    Returns:
        ``file_index, record, header, symbol, date, open, high, low, close, volume, reason, status``.

    """
    numbers = ("Open", "High", "Low", "Close", "Volume")
    staged = _with_numbers(parsed, {f"_{n}": n for n in numbers}, _date=_raw_date("Date"))
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
    return _finish(staged, reason, typed, schema.RAW_PRICES)


def check_indices(parsed: DataFrame, today: dt.date) -> DataFrame:
    """Validate market index rows: ``Close`` is required; other price fields are checked when present.

    Args:
        parsed: Output of :func:`parse_rows` for ``indices``.
        today: Rows dated after this day are ``future date``.

    Returns:
        ``file_index, record, header, symbol, date, close, reason, status``.

    """
    optional = ("Open", "High", "Low", "Volume")
    numbers = ("Close", *optional)
    staged = _with_numbers(parsed, {f"_{n}": n for n in numbers}, _date=_raw_date("Date"))
    o, h, lo, c, v = (F.col(f"_{n}") for n in ("Open", "High", "Low", "Close", "Volume"))
    date = F.col("_date")
    missing = _first([(F.col(n).isNull(), n) for n in schema.INDEX_REQUIRED])
    unparseable = _first(
        [(c.isNull(), "Close")] + [(F.col(n).isNotNull() & F.col(f"_{n}").isNull(), n) for n in optional]
    )
    non_positive = _first([(F.col(f"_{n}") <= 0, n) for n in ("Open", "High", "Low", "Close")])
    reason = _ohlcv_reason(missing, unparseable, non_positive, date, (o, h, lo, c, v), today)
    typed = {schema.SYMBOL: F.col("Symbol"), schema.DATE: date, schema.CLOSE: c}
    return _finish(staged, reason, typed, schema.RAW_INDICES)


def check_news(parsed: DataFrame, now: dt.datetime) -> DataFrame:
    """Validate news rows and work out the trading day each headline may first count for.

    Args:
        parsed: Output of :func:`parse_rows` for ``news``.
        now: Headlines published after this instant (timezone-aware) are ``future date``.

    Returns:
        ``file_index, record, header, symbol, published_at (timestamp), headline, effective_date,
        reason, status``; ``effective_date`` is the New York calendar date of publication, plus one
        day when published after the 16:00 close.

    """
    text = F.col("published_at")
    instant = F.when(_matches(text, rules.TIMESTAMP_PATTERN), F.try_to_timestamp(text))
    staged = parsed.withColumn("_stamp", instant)
    staged = staged.withColumn("_local", F.from_utc_timestamp("_stamp", schema.MARKET_TIMEZONE))
    # The New York date, plus one when the time of day is after the close: shifted so that the
    # first microsecond after the close starts the next day, the date falls out of integer math
    # on the local clock (cheaper than taking hours, minutes and seconds apart).
    day_us, close_us = 86_400_000_000, schema.MARKET_CLOSE_HOUR * 3_600_000_000
    shifted = f"(unix_micros(_local) + {day_us - close_us - 1})"
    effective = F.expr(f"date_from_unix_date(int(({shifted} - pmod({shifted}, {day_us})) div {day_us}))")
    stamp = F.col("_stamp")
    missing = _first([(F.col(n).isNull(), n) for n in schema.NEWS_COLUMNS])
    now_utc = now.astimezone(dt.UTC).replace(tzinfo=None)
    reason = _reason_chain(
        [
            (missing.isNotNull(), F.concat(F.lit(f"{rules.REASON_MISSING_FIELD}: "), missing)),
            (stamp.isNull(), rules.REASON_UNPARSEABLE_DATE),
            (~_matches(F.col("Symbol"), schema.SYMBOL_PATTERN), rules.REASON_BAD_SYMBOL),
            (stamp > F.lit(now_utc).cast("timestamp"), rules.REASON_FUTURE_DATE),
        ]
    )
    typed = {
        schema.SYMBOL: F.col("Symbol"),
        "published_at": stamp,
        "headline": F.col("headline"),
        "effective_date": effective,
    }
    return _finish(staged, reason, typed, schema.RAW_NEWS)


def check_sentiment(parsed: DataFrame, today: dt.date) -> DataFrame:
    """Validate raw sentiment scores (``Date, Symbol, sentiment`` in [-1, 1]).

    Args:
        parsed: Output of :func:`parse_rows` for ``sentiment``.
        today: Rows dated after this day are ``future date``.

    Returns:
        ``file_index, record, header, symbol, date, score, reason, status``.

    """
    staged = _with_numbers(parsed, {"_score": "sentiment"}, _date=_raw_date("Date"))
    date, score = F.col("_date"), F.col("_score")
    missing = _first([(F.col(n).isNull(), n) for n in schema.SENTIMENT_COLUMNS])
    reason = _reason_chain(
        [
            (missing.isNotNull(), F.concat(F.lit(f"{rules.REASON_MISSING_FIELD}: "), missing)),
            (date.isNull(), rules.REASON_UNPARSEABLE_DATE),
            (score.isNull(), f"{rules.REASON_UNPARSEABLE_NUMBER}: sentiment"),
            (~_matches(F.col("Symbol"), schema.SYMBOL_PATTERN), rules.REASON_BAD_SYMBOL),
            (F.abs(score) > 1, rules.REASON_SENTIMENT_RANGE),
            (date > F.lit(today), rules.REASON_FUTURE_DATE),
        ]
    )
    typed = {schema.SYMBOL: F.col("Symbol"), schema.DATE: date, "score": score}
    return _finish(staged, reason, typed, schema.RAW_SENTIMENT)


def row_text(columns: Sequence[str]) -> Column:
    """Write a row's values as a CSV line, whole numbers without ``.0``.

    This is the ``record`` of a row whose raw line was not kept, e.g.
    ``2024-01-03,GOOD,10,11,9,10.2,100``.
    """
    parts = [F.regexp_replace(F.col(c).cast("string"), r"\.0$", "") for c in columns]
    return F.concat_ws(",", *[F.coalesce(p, F.lit("")) for p in parts])


def previous_name(column: str) -> str:
    """Name the column :func:`resolve_duplicates` adds for ``column`` of the previous kept row."""
    return f"_previous_{column}"


def resolve_duplicates(
    checked: DataFrame, keys: Sequence[str], values: Sequence[str], previous: Sequence[str] = ()
) -> DataFrame:
    """Resolve rows that share a key: exact duplicates are dropped, conflicting ones superseded.

    Among the valid rows with the same key, the row from the file that sorts last by name wins
    (ties within one file: the greatest values, so the choice never depends on read order; rows
    that tie on those too differ at most in their raw text). Losers with the winner's values
    become ``duplicate``; losers with other values become ``superseded`` with that reason.

    The window is partitioned by the first key only (the symbol) and finds each key's first row by
    comparing neighbours: a window partition per key would pay Spark's per-partition set-up for
    every row.

    Args:
        checked: Output of a ``check_<kind>`` function.
        keys: Columns that identify a row, e.g. ``("symbol", "date")``; the first one partitions.
        values: Columns compared to tell exact from conflicting duplicates.
        previous: Columns to look back on: for each, :func:`previous_name` holds its value on the
            partition's previous valid row (in key order), null on the first. The features need
            the previous close; taken here, in the window that already runs, it saves them one.

    Returns:
        The same rows and columns, with ``status`` and ``reason`` updated, plus the ``previous``
        columns.

    """
    group, rest = keys[0], [*keys[1:], STATUS]
    order = Window.partitionBy(group).orderBy(
        *rest,
        F.col(FILE_INDEX).desc(),
        *[F.col(v).desc() for v in values],
    )
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    same_key_as_previous = functools.reduce(
        operator.and_, [F.lag(F.col(c)).over(order).eqNullSafe(F.col(c)) for c in rest]
    )
    ranked = checked.withColumn("_first", ~F.coalesce(same_key_as_previous, F.lit(False)))
    kept = F.col("_first") & (F.col(STATUS) == VALID)  # the rows that stay valid
    before = order.rowsBetween(Window.unboundedPreceding, -1)
    looked_back = {previous_name(c): F.last(F.when(kept, F.col(c)), True).over(before) for c in previous}
    if set(values) <= set(keys):
        # The values are part of the key (news): a repeated key is always an exact duplicate.
        same = F.lit(True)
        winner = {}
    else:
        row = F.struct(*values)
        winner = {"_winner": F.last(F.when(F.col("_first"), row), True).over(running)}
        same = row.eqNullSafe(F.col("_winner"))
    # Added together, the winner and the looked-back columns are computed in one pass over the
    # sorted rows (added one after the other, each would take a pass of its own).
    ranked = ranked.withColumns(winner | looked_back)
    keep = (F.col(STATUS) != VALID) | F.col("_first")
    status = F.when(keep, F.col(STATUS)).when(same, F.lit(DUPLICATE)).otherwise(F.lit(SUPERSEDED))
    reason = F.when(keep | same, F.col(REASON)).otherwise(F.lit(rules.REASON_SUPERSEDED))
    columns = [c for c in checked.columns if c not in (STATUS, REASON)]
    return ranked.select(*columns, *looked_back, reason.alias(REASON), status.alias(STATUS))


# Per raw kind: the columns that identify a row, the values compared between rows sharing them,
# and the columns of each symbol's previous valid row the features need (the previous close).
DUPLICATE_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    schema.RAW_PRICES: (
        (schema.SYMBOL, schema.DATE),
        (schema.OPEN, schema.HIGH, schema.LOW, schema.CLOSE, schema.VOLUME),
        (schema.CLOSE,),
    ),
    schema.RAW_INDICES: ((schema.SYMBOL, schema.DATE), (schema.CLOSE,), ()),
    schema.RAW_NEWS: ((schema.SYMBOL, "published_at", "headline"), ("headline",), ()),
    schema.RAW_SENTIMENT: ((schema.SYMBOL, schema.DATE), ("score",), ()),
}


def classify(rows: DataFrame, files: DataFrame, kind: str, today: dt.date, now: dt.datetime) -> DataFrame:
    """Take one raw kind's rows through every step: parse, check, resolve duplicates.

    Only rejected rows keep their text (``record``; a superseded row, a valid row that lost, is
    written out from its values instead), and only a file rejected as a whole shows its header, so
    the duplicate shuffle and any cache after it stay small.

    Args:
        rows: The rows as :func:`tickercast.preprocess.read.read_rows` returns them.
        files: Its table of files.
        kind: The raw kind.
        today: Rows dated after this day are ``future date``.
        now: News published after this instant is ``future date``.

    Returns:
        One row per data line with ``status`` and ``reason`` (see the module's docstring).

    """
    parsed = parse_rows(rows, files, kind)
    checked = {
        schema.RAW_PRICES: lambda: check_prices(parsed, today),
        schema.RAW_INDICES: lambda: check_indices(parsed, today),
        schema.RAW_NEWS: lambda: check_news(parsed, now),
        schema.RAW_SENTIMENT: lambda: check_sentiment(parsed, today),
    }[kind]()
    checked = checked.withColumn("header", F.when(F.col(STATUS) == BAD_FILE, F.col("header")))
    keys, values, previous = DUPLICATE_KEYS[kind]
    resolved = resolve_duplicates(checked, keys, values, previous)
    if set(values) <= set(keys):  # news: the values are part of the key, nothing is superseded
        return resolved
    # Every kind that can be superseded is keyed by (symbol, date).
    rendered = row_text([schema.DATE, schema.SYMBOL, *values])
    return resolved.withColumn(RECORD, F.when(F.col(STATUS) == SUPERSEDED, rendered).otherwise(F.col(RECORD)))
