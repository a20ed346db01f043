"""The preprocessing job: raw CSVs -> validated, quarantined, leakage-safe curated features.

Entry points: :func:`run_job` (what the CLI, the pipeline and the tests call) and :func:`main`
(a ``spark-submit`` target: ``spark-submit src/tickercast/preprocess/job.py --data DIR``). The same
code runs on ``local[*]``, a standalone cluster (``spark://``) and Kubernetes (``k8s://``): all work
on rows happens in Spark; the driver only lists files and collects small aggregates (counts per
reason and file, the trading dates, the index symbols, the content hash) and the small tables it
broadcasts (per-symbol spans, the market table), which grow with dates and symbols, not rows; it
builds the calendar and the day-to-trading-date map from the trading dates it holds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from tickercast import schema
from tickercast.errors import UserError
from tickercast.features import rules as spec
from tickercast.preprocess import io

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from tickercast.config import Settings

log = logging.getLogger(__name__)

# Changing any rule that shapes the output changes this, so an incremental run never mixes rules.
FEATURE_SPEC = io.content_hash(
    [
        schema.SCHEMA_VERSION,
        list(schema.BASE_CURATED_COLUMNS),
        spec.MARKET_FFILL_LIMIT,
        spec.SENTIMENT_HALF_LIFE_DAYS,
        spec.SENTIMENT_MAX_CARRY_ROWS,
        schema.MARKET_CLOSE_HOUR,
    ]
)
# The columns :func:`_quarantine` selects, in its order: the schema of a quarantine with no rows.
QUARANTINE_DDL = "source_file STRING, record STRING, reason STRING, kind STRING, run_id STRING"


@dataclass
class JobResult:
    """What one run did: counts, reasons, where the output went and how long it took."""

    run_id: str
    mode: str
    manifest: dict[str, Any]
    counts: dict[str, int]
    counts_by_kind: dict[str, dict[str, int]]
    reasons: dict[str, int]
    warnings: list[str]
    duration_s: float
    features_dir: Path
    manifest_path: Path
    quarantine_dir: Path
    published: bool = True
    details: dict[str, Any] = field(default_factory=dict)


def run_job(
    settings: Settings,
    *,
    full: bool = False,
    master: str | None = None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
) -> JobResult:
    """Run the preprocessing job and publish its output atomically.

    Args:
        settings: Effective settings (data root, ``spark`` section).
        full: Recompute every row instead of only what new or changed input affects.
        master: Spark master overriding ``settings.spark.master``.
        today: Rows dated after this day are quarantined as ``future date`` (default: today in New York).
        now: News published after this instant is ``future date`` (default: now).

    Returns:
        The :class:`JobResult` of the published run.

    Raises:
        UserError: No raw prices, no valid rows, or more bad rows than ``spark.max_bad_fraction``;
            nothing is published then and the previous output stays as it was.

    """
    from tickercast.preprocess.session import get_session, job_conf

    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    today = today or now.astimezone(ZoneInfo(schema.MARKET_TIMEZONE)).date()
    root = settings.data_root
    inputs = io.list_inputs(root)
    if not any(f.kind == schema.RAW_PRICES for f in inputs):
        raise UserError(
            f"no raw prices: {schema.raw_dir(root, schema.RAW_PRICES)} has no *.csv files "
            f"(write some with `tickercast data sample --out {root}`)"
        )
    run_id = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    staging = io.staging_dir(settings.curated_dir, run_id)
    spark, created = get_session(settings.spark, master)
    cached: list[DataFrame] = []
    try:
        with job_conf(spark):
            result = _run(spark, settings, inputs, run_id, staging, cached, full=full, today=today, now=now)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if _is_overflow(exc):
            raise UserError(
                "a value in the raw data is too large to sum exactly (the moving sums allow prices up "
                "to about 4e10; see docs/preprocessing.md): check the raw prices for a misplaced "
                "exponent; nothing published, previous output kept"
            ) from exc
        raise
    finally:
        for frame in cached:
            frame.unpersist()
        if created:
            spark.stop()
    result.duration_s = time.monotonic() - started
    return result


def _is_overflow(exc: Exception) -> bool:
    """Tell whether the job stopped on an exact sum out of range (in Spark or in the feature kernel)."""
    from pyspark.errors import ArithmeticException, PythonException

    from tickercast.features.indicators import VALUE_TOO_LARGE

    return isinstance(exc, ArithmeticException) or (
        isinstance(exc, PythonException) and VALUE_TOO_LARGE in str(exc)
    )


def _first_lines(spark: SparkSession, files: list[io.InputFile]) -> dict[str, list[str]]:
    """Read each raw file's first line on the executors (a few bytes per file, one job for all).

    The driver collects one short row per file, as it already lists them.
    """
    from tickercast.preprocess.validate import first_lines

    paths = [str(f.path) for f in files]
    if not paths:
        return {}
    slices = max(1, min(len(paths), 4 * spark.sparkContext.defaultParallelism))
    return dict(spark.sparkContext.parallelize(paths, slices).map(lambda p: (p, first_lines(p))).collect())


def _files_of(inputs: list[io.InputFile], kind: str) -> list[io.InputFile]:
    """Return the raw files of one kind in name order: a file's position is its ``file_index``."""
    return sorted((f for f in inputs if f.kind == kind), key=lambda f: f.name)


def _reported_paths(frame: DataFrame) -> dict[str, str]:
    """Map each local path a file read covers to the path Spark reports for its rows.

    That is the qualified, URL-encoded URI (``file:///data/raw/prices/a%20b.csv``) that
    ``input_file_name()`` returns; Spark lists the same strings (one call), and decoding one gives
    the local path back.
    """
    from urllib.parse import unquote, urlparse

    return {unquote(urlparse(uri).path): uri for uri in frame.inputFiles()}


def _read_rows(
    spark: SparkSession, files: list[io.InputFile], kind: str, firsts: dict[str, list[str]]
) -> tuple[DataFrame, DataFrame]:
    """Read every raw CSV of a kind in one distributed read, with each file's first line.

    ``firsts`` maps each file's path to its first line (:func:`_first_lines`). Spark's CSV reader
    splits every record (RFC 4180: a quoted field may hold line breaks; whitespace trimmed,
    empty -> null) into as many string columns as the widest first line has (at most
    ``N_FIELDS``): a record that fits them exactly, as nearly all do, takes the reader's fast
    path; one with another number of fields is a malformed record to Spark and also gets its raw
    text in ``RAW_RECORD``, where validation looks for fields beyond the header. In ``multiLine``
    mode one parser streams through each file (faster than one set up again for every line);
    each file is then read whole by one task, so the read is spread over files.
    :func:`tickercast.preprocess.validate.parse_rows` maps the columns by each file's header.
    Rows carry the path Spark reports for their file, not its name: the name comes from the small
    table of files, not from string work on millions of rows.

    Returns:
        ``(rows, files)``: ``_path, c0 .. c{n-1}`` and one row per file:
        ``_path, file_index, source_file, header_fields`` (``file_index`` numbers the kind's
        files in name order).

    """
    from pyspark.sql import functions as F

    from tickercast.preprocess.validate import CSV_OPTIONS, FILE_INDEX, N_FIELDS, RAW_RECORD, SOURCE_FILE

    files_ddl = f"_path STRING, {FILE_INDEX} INT, {SOURCE_FILE} STRING, header_fields ARRAY<STRING>"
    of_kind = _files_of(files, kind)
    # At least two columns: a header is recognised by its first two fields.
    width = min(N_FIELDS, max([2, *(len(firsts[str(f.path)]) for f in of_kind)]))
    ddl = ", ".join([*(f"c{i} STRING" for i in range(width)), f"{RAW_RECORD} STRING"])
    if not of_kind:
        return spark.createDataFrame([], f"_path STRING, {ddl}"), spark.createDataFrame([], files_ddl)
    frame = (
        spark.read.schema(ddl)
        .options(header=False, multiLine=True, columnNameOfCorruptRecord=RAW_RECORD, **CSV_OPTIONS)
        .csv([str(f.path) for f in of_kind])
    )
    reported = _reported_paths(frame)
    # A file Spark would not list (none so far) keeps its local path: it then reads as empty.
    table = [
        (reported.get(str(f.path), str(f.path)), i, f.name, firsts[str(f.path)])
        for i, f in enumerate(of_kind)
    ]
    rows = frame.select(F.input_file_name().alias("_path"), *frame.columns)
    return rows, spark.createDataFrame(table, files_ddl)


def _validated(
    spark: SparkSession, inputs: list[io.InputFile], today: dt.date, now: dt.datetime, cached: list[DataFrame]
) -> dict[str, DataFrame]:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from tickercast.preprocess import validate as v

    firsts = _first_lines(spark, inputs)

    def classified(kind: str, checker, keys, values, finish=None, previous=()) -> DataFrame:
        checked = checker(v.parse_rows(*_read_rows(spark, inputs, kind, firsts), kind))
        # Only rejected rows keep their text (``record``; a superseded row, a valid row that lost,
        # is written out from its values instead), and only a file quarantined as a whole shows its
        # header, so the duplicate shuffle and the cache stay small.
        checked = checked.withColumn("header", F.when(F.col(v.STATUS) == v.BAD_FILE, F.col("header")))
        resolved = v.resolve_duplicates(checked, keys, values, previous)
        if not set(values) <= set(keys):  # news: the values are part of the key, nothing supersedes
            # Every kind that can be superseded is keyed by (symbol, date).
            superseded = F.col(v.STATUS) == v.SUPERSEDED
            rendered = v.row_text([schema.DATE, schema.SYMBOL, *values])
            resolved = resolved.withColumn(v.RECORD, F.when(superseded, rendered).otherwise(F.col(v.RECORD)))
        if finish is not None:
            resolved = finish(resolved)
        # On disk, not in the heap: the driver's memory must not grow with the input.
        cached.append(resolved.persist(StorageLevel.DISK_ONLY))
        return cached[-1]

    price_values = [schema.OPEN, schema.HIGH, schema.LOW, schema.CLOSE, schema.VOLUME]
    return {
        schema.RAW_PRICES: classified(
            schema.RAW_PRICES,
            lambda p: v.check_prices(p, today),
            [schema.SYMBOL, schema.DATE],
            price_values,
            previous=[schema.CLOSE],
        ),
        schema.RAW_INDICES: classified(
            schema.RAW_INDICES,
            lambda p: v.check_indices(p, today),
            [schema.SYMBOL, schema.DATE],
            [schema.CLOSE],
        ),
        schema.RAW_NEWS: classified(
            schema.RAW_NEWS,
            lambda p: v.check_news(p, now),
            [schema.SYMBOL, "published_at", "headline"],
            ["headline"],
            finish=_scored_news,
        ),
        schema.RAW_SENTIMENT: classified(
            schema.RAW_SENTIMENT,
            lambda p: v.check_sentiment(p, today),
            [schema.SYMBOL, schema.DATE],
            ["score"],
        ),
    }


def _file_stats(
    spark: SparkSession, frames: dict[str, DataFrame], inputs: list[io.InputFile]
) -> tuple[list[tuple[str, str, str, str | None, int]], dict[str, list]]:
    """Collect (kind, source_file, status, reason, rows), one small row per file and outcome.

    The same pass over the rows builds the caches and gathers what later steps need of them: the
    trading dates (the distinct dates of valid prices, a few thousand at most) and the index
    symbols (the distinct symbols of valid index rows), so no later query reads the rows for them.

    Returns:
        ``(stats, gathered)``: ``gathered`` maps ``trading_dates`` and ``index_symbols`` to their
        distinct values, in order.

    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from tickercast.preprocess.session import sql_conf
    from tickercast.preprocess.validate import FILE_INDEX

    # A duplicate or superseded row shares its date and symbol with the valid row that won.
    gathered = {
        schema.RAW_PRICES: ("trading_dates", schema.DATE),
        schema.RAW_INDICES: ("index_symbols", schema.SYMBOL),
    }
    observations = {}
    parts = []
    for kind, frame in frames.items():
        if kind in gathered:
            name, column = gathered[kind]
            observations[name] = Observation(name)
            valid_value = F.when(F.col("status") == "valid", F.col(column))
            frame = frame.observe(observations[name], F.collect_set(valid_value).alias("values"))
        counts = frame.groupBy(FILE_INDEX, "status", "reason").agg(F.count(F.lit(1)).alias("n"))
        parts.append(counts.withColumn("kind", F.lit(kind)))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    # Adaptive execution would first build each cache in a stage of its own, then read it back to
    # count; without it the counts are taken as the cache is built.
    with sql_conf(spark, {"spark.sql.adaptive.enabled": "false"}):
        collected = union.collect()
    names = {kind: [f.name for f in _files_of(inputs, kind)] for kind in frames}
    stats = []
    for r in collected:
        if r[FILE_INDEX] is None:  # Spark reported a path the job did not list: a bug, not bad data
            raise UserError(f"{r['n']} {r['kind']} rows could not be traced to their file; nothing published")
        stats.append((r["kind"], names[r["kind"]][r[FILE_INDEX]], r["status"], r["reason"], int(r["n"])))
    return stats, {name: sorted(observation.get["values"]) for name, observation in observations.items()}


def _summarise(stats, inputs: list[io.InputFile]) -> tuple[dict, dict, dict, list[str]]:
    counts = {"read": 0, "valid": 0, "quarantined": 0, "bad": 0, "duplicates": 0, "superseded": 0}
    by_kind: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    rows_per_file: dict[str, int] = {}
    for kind, source_file, status, reason, n in stats:
        kind_counts = by_kind.setdefault(kind, {k: 0 for k in counts})
        rows_per_file[source_file] = rows_per_file.get(source_file, 0) + n
        for target in (counts, kind_counts):
            target["read"] += n
            if status == "valid":
                target["valid"] += n
            elif status == "duplicate":
                target["duplicates"] += n
            else:
                target["quarantined"] += n
                target["superseded" if status == "superseded" else "bad"] += n
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + n
    warnings = [f"empty file: {f.name} has no data rows" for f in inputs if rows_per_file.get(f.name, 0) == 0]
    return counts, by_kind, dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))), warnings


def _run(
    spark: SparkSession,
    settings: Settings,
    inputs: list[io.InputFile],
    run_id: str,
    staging: Path,
    cached: list[DataFrame],
    *,
    full: bool,
    today: dt.date,
    now: dt.datetime,
) -> JobResult:
    from pyspark.sql import functions as F

    frames = _validated(spark, inputs, today, now, cached)
    stats, gathered = _file_stats(spark, frames, inputs)
    counts, by_kind, reasons, warnings = _summarise(stats, inputs)
    limit = settings.spark.max_bad_fraction
    if counts["read"] == 0:
        raise UserError("the raw files hold no data rows; nothing to preprocess (previous output kept)")
    bad_fraction = counts["bad"] / counts["read"]
    if bad_fraction > limit:
        top = ", ".join(f"{r} ({n})" for r, n in list(reasons.items())[:5])
        raise UserError(
            f"{counts['bad']} of {counts['read']} input rows ({bad_fraction:.1%}) are bad, more than the "
            f"allowed {limit:.1%} (--max-bad-fraction); nothing published, previous output kept. "
            f"Reasons: {top}"
        )
    if by_kind.get(schema.RAW_PRICES, {}).get("valid", 0) == 0:
        raise UserError("no valid price rows; nothing published, previous output kept")

    valid = {kind: frame.where(F.col("status") == "valid") for kind, frame in frames.items()}
    # The counts say which kinds have rejected rows: only their caches are searched for them.
    rejected = {kind: frame for kind, frame in frames.items() if by_kind.get(kind, {}).get("quarantined")}
    # Rejected rows are ready: the quarantine is written while the driver plans the features.
    with ThreadPoolExecutor(1) as background:
        quarantined = staging / "quarantine"
        quarantine = background.submit(_write_quarantine, spark, rejected, inputs, run_id, quarantined)
        mode, reason, content = _write_features(
            spark,
            settings,
            valid,
            gathered["trading_dates"],
            gathered["index_symbols"],
            staging / "features",
            full=full,
        )
        quarantine.result()

    counts["written"] = content["rows"]
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "feature_spec": FEATURE_SPEC,
        "run_id": run_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "data_version": content["data_version"],
        "input_files": [f.as_manifest() for f in inputs],
        "counts": counts,
        "counts_by_kind": by_kind,
        "quarantine_reasons": reasons,
        "warnings": warnings,
        "columns": content["columns"],
        "index_symbols": gathered["index_symbols"],
        "calendar": content["calendar"],
        "symbols": content["symbols"],
        "max_bad_fraction": limit,
    }
    io.write_json(staging / schema.MANIFEST_FILE, manifest)
    io.write_json(staging / "features" / io.FEATURES_MANIFEST_COPY, manifest)
    io.publish(
        staging,
        {
            "quarantine": settings.quarantine_dir,
            "features": settings.features_dir,
            schema.MANIFEST_FILE: settings.manifest_path,
        },
    )
    return JobResult(
        run_id=run_id,
        mode=mode,
        manifest=manifest,
        counts=counts,
        counts_by_kind=by_kind,
        reasons=reasons,
        warnings=warnings,
        duration_s=0.0,
        features_dir=settings.features_dir,
        manifest_path=settings.manifest_path,
        quarantine_dir=settings.quarantine_dir,
        details={"mode_reason": reason},
    )


def _collected(spark: SparkSession, frame: DataFrame) -> tuple[list[Row], DataFrame]:
    """Compute a small table once; return its rows and a local table of them.

    For tables that grow with trading dates or symbols, not rows, and are broadcast anyway: the
    feature query then broadcasts them from the driver instead of recomputing each in a chain of
    tiny stages.
    """
    rows = frame.collect()
    return rows, spark.createDataFrame(rows, frame.schema)


def _write_features(
    spark: SparkSession,
    settings: Settings,
    valid: dict[str, DataFrame],
    trading_dates: list[dt.date],
    index_symbols: list[str],
    out: Path,
    *,
    full: bool,
) -> tuple[str, str, dict[str, Any]]:
    """Compute the curated rows (in full or incrementally) and write them to ``out``.

    Args:
        spark: The session.
        settings: Effective settings (where the previous output is).
        valid: The valid rows of each raw kind.
        trading_dates: The distinct dates of the valid prices, in order.
        index_symbols: The distinct symbols of the valid index rows, in order.
        out: The staged features directory.
        full: Recompute every row.

    Returns:
        ``(mode, why, content)``: ``full`` or ``incremental``, the reason for the mode, and
        :func:`_content_stats` of the written rows.

    """
    from tickercast.preprocess import transforms as features
    from tickercast.preprocess import write

    prices = valid[schema.RAW_PRICES].select(
        schema.SYMBOL,
        schema.DATE,
        schema.OPEN,
        schema.HIGH,
        schema.LOW,
        schema.CLOSE,
        schema.VOLUME,
        features.PREVIOUS_CLOSE,
    )
    indices = valid[schema.RAW_INDICES].select(schema.SYMBOL, schema.DATE, schema.CLOSE)

    calendar = features.trading_calendar(spark, trading_dates)
    lookups = features.calendar_lookups(spark, trading_dates)
    small = {"spans": features.symbol_spans(prices, calendar)}
    if index_symbols:
        small["market"] = features.market_table(indices, calendar, index_symbols)
    # Independent small queries: run side by side, their latencies overlap.
    with ThreadPoolExecutor(len(small)) as pool:
        tables = pool.map(lambda frame: _collected(spark, frame), small.values())
        collected = dict(zip(small, tables, strict=True))
    market = collected["market"][1] if index_symbols else None
    observations = _observations(valid[schema.RAW_NEWS], valid[schema.RAW_SENTIMENT])
    lookups["spans"] = collected["spans"][1]
    sentiment = features.daily_sentiment(prices, calendar, observations, lookups)

    previous = io.read_manifest(settings.manifest_path)
    mode, reason = "full", "--full" if full else "no previous output"
    columns = spec.curated_columns(index_symbols)
    curated = None
    if not full and previous is not None:
        curated, reason = _incremental(
            spark, settings, previous, prices, calendar, sentiment, market, index_symbols
        )
        if curated is not None:
            mode = "incremental"
    log.info("mode: %s (%s)", mode, reason)
    # The rows are written, and their content hashed, by the Python workers; a full run computes
    # the features there too, where the rows already are (see tickercast.preprocess.write).
    if curated is None:
        rows = features.feature_rows(prices, calendar, sentiment)
        market_arrays = _market_arrays(collected["market"][0], len(trading_dates)) if index_symbols else {}
        metrics = write.write_curated(rows, out, columns, market=market_arrays, compute=True)
    else:
        metrics = write.write_curated(curated, out, columns, compute=False)
    return mode, reason, _content_stats(columns, metrics, trading_dates, collected["spans"][0])


def _market_arrays(rows: list[Row], n_dates: int) -> dict[str, Any]:
    """Turn the collected market table into one array per ``mkt_*`` column, indexed by ``time_idx``."""
    import numpy as np

    arrays: dict[str, Any] = {}
    names = [name for name in (rows[0].__fields__ if rows else []) if name != schema.TIME_IDX]
    for name in names:
        values = np.full(n_dates, np.nan)
        for r in rows:
            if r[name] is not None:
                values[r[schema.TIME_IDX]] = r[name]
        arrays[name] = values
    return arrays


def _write_quarantine(
    spark: SparkSession, frames: dict[str, DataFrame], inputs: list[io.InputFile], run_id: str, out: Path
) -> None:
    """Write the rejected rows (see :func:`_quarantine`) to ``out``."""
    _quarantine(spark, frames, inputs, run_id).write.mode("overwrite").parquet(str(out))


def _scored_news(news: DataFrame) -> DataFrame:
    """Replace each valid headline with its score, before the news is cached.

    Scored where the de-duplicated rows already lie (no shuffle, each symbol's headlines together:
    the scorer takes each distinct headline of a batch once). The cache then holds a number, not
    the text, for the millions of valid rows; a rejected row keeps its raw line in ``record``.
    """
    from pyspark.sql import functions as F

    from tickercast.preprocess import transforms as features

    score = F.when(F.col("status") == "valid", features.headline_scores(F.col("headline")))
    return news.withColumn("score", score).drop("headline")


def _observations(news: DataFrame, sentiment: DataFrame) -> DataFrame:
    """Stack the scored headlines (see :func:`_scored_news`) with the raw sentiment scores."""
    from pyspark.sql import functions as F

    scored = news.select(schema.SYMBOL, "effective_date", "score")
    raw = sentiment.select(schema.SYMBOL, F.col(schema.DATE).alias("effective_date"), "score")
    return scored.unionByName(raw)


def _incremental(spark, settings, previous, prices, calendar, sentiment, market, index_symbols):
    """Recompute only rows whose windows see new or changed input; ``(None, why)`` means run in full."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from tickercast.preprocess import transforms as features

    if (
        previous.get("schema_version") != schema.SCHEMA_VERSION
        or previous.get("feature_spec") != FEATURE_SPEC
    ):
        return None, "the previous output was made with other rules"
    if not settings.features_dir.is_dir() or "calendar" not in previous:
        return None, "no previous features"
    old = spark.read.parquet(str(settings.features_dir))
    last_date = previous["calendar"].get("last_date")
    if last_date is None:
        return None, "the previous output is empty"
    last_date = dt.date.fromisoformat(last_date)
    known_dates = calendar.where(F.col(schema.DATE) <= F.lit(last_date)).count()
    lost = old.select(schema.DATE).distinct().join(calendar, schema.DATE, "left_anti").count()
    if known_dates != previous["calendar"].get("trading_dates") or lost:
        return None, "trading dates changed before the previous last date"

    base = [schema.SYMBOL, schema.DATE, schema.OPEN, schema.HIGH, schema.LOW, schema.CLOSE, schema.VOLUME]
    new_rows = prices.join(sentiment, [schema.SYMBOL, schema.DATE], "left")
    observed = F.col(schema.SENTIMENT_OBSERVED) == 1
    old_rows = old.select(
        *base,
        F.when(observed, F.col(schema.SENTIMENT)).alias("sentiment_mean"),
        F.when(observed, F.col(schema.NEWS_COUNT)).alias(schema.NEWS_COUNT),
    )
    # The previous close is not content: a change there is a change of the row before.
    value_cols = [c for c in old_rows.columns if c not in (schema.SYMBOL, schema.DATE)]
    a, b = new_rows.alias("a"), old_rows.alias("b")
    joined = a.join(b, [schema.SYMBOL, schema.DATE], "full_outer")
    same = F.struct(*[F.col(f"a.{c}") for c in value_cols]).eqNullSafe(
        F.struct(*[F.col(f"b.{c}") for c in value_cols])
    )
    first_changed = joined.where(~same).groupBy(schema.SYMBOL).agg(F.min(schema.DATE).alias("first_changed"))

    by_symbol = Window.partitionBy(schema.SYMBOL)
    numbered = new_rows.withColumn(
        "_rn", F.row_number().over(Window.partitionBy(schema.SYMBOL).orderBy(schema.DATE))
    )
    numbered = numbered.join(first_changed, schema.SYMBOL, "inner").withColumn(
        "_first_rn", F.min(F.when(F.col(schema.DATE) >= F.col("first_changed"), F.col("_rn"))).over(by_symbol)
    )
    tail = numbered.where(F.col("_rn") >= F.col("_first_rn") - schema.MAX_LOOKBACK_ROWS).join(
        F.broadcast(calendar), schema.DATE
    )
    recomputed = features.calendar_columns(features.window_features(tail)).where(
        F.col("_rn") >= F.col("_first_rn")
    )
    kept = old.join(first_changed, schema.SYMBOL, "left").where(
        F.col("first_changed").isNull() | (F.col(schema.DATE) < F.col("first_changed"))
    )
    columns = list(schema.BASE_CURATED_COLUMNS)
    combined = kept.select(*columns).unionByName(recomputed.select(*columns))
    return features.with_market(combined, market, index_symbols), "only new or changed rows recomputed"


def _content_stats(
    columns: list[str], metrics: dict[str, Any], trading_dates: list[dt.date], spans: list[Row]
) -> dict[str, Any]:
    """Hash the curated content and gather the calendar and per-symbol ranges.

    Args:
        columns: The curated columns as written.
        metrics: What :func:`tickercast.preprocess.write.write_curated` returned for them.
        trading_dates: The trading dates in order (a date's position is its ``time_idx``).
        spans: The rows of :func:`tickercast.preprocess.features.symbol_spans`, one per symbol:
            the curated rows hold one row per valid price row, so the same first and last
            indices and row counts (an incremental run writes the rows a full one would).

    """
    from tickercast.preprocess import write

    symbols = {
        r[schema.SYMBOL]: {
            "first_date": trading_dates[r["_first_idx"]].isoformat(),
            "last_date": trading_dates[r["_last_idx"]].isoformat(),
            "rows": r["_rows"],
        }
        for r in spans
    }
    typed = [[f.name, str(f.type)] for f in write.curated_schema(columns)]
    data_version = io.content_hash(
        [schema.SCHEMA_VERSION, typed, *(metrics[k] for k in ("rows", "xor", "sum_hi", "sum_lo"))]
    )
    return {
        "rows": int(metrics["rows"]),
        "data_version": data_version,
        "columns": list(columns),
        "calendar": {
            "first_date": metrics["first"].isoformat() if metrics["first"] else None,
            "last_date": metrics["last"].isoformat() if metrics["last"] else None,
            "trading_dates": len(trading_dates),
        },
        "symbols": dict(sorted(symbols.items())),
    }


def _quarantine(
    spark: SparkSession, frames: dict[str, DataFrame], inputs: list[io.InputFile], run_id: str
) -> DataFrame:
    """Rejected rows with reasons; a file without the required columns is one row (its header).

    ``frames`` holds the kinds with rejected rows; without any, the quarantine is empty (and has
    its columns all the same).
    """
    from pyspark.sql import functions as F

    from tickercast.preprocess.validate import FILE_INDEX, SOURCE_FILE

    if not frames:
        return spark.createDataFrame([], QUARANTINE_DDL)
    parts = []
    for kind, frame in frames.items():
        rows = frame.where(F.col("status").isin("bad", "superseded")).select(
            FILE_INDEX, "record", "reason", F.lit(kind).alias("kind")
        )
        whole_files = (
            frame.where(F.col("status") == "bad_file")
            .groupBy(FILE_INDEX)
            .agg(
                F.first(F.coalesce(F.col("header"), F.lit("(no header line)"))).alias("record"),
                F.first("reason").alias("reason"),
            )
            .withColumn("kind", F.lit(kind))
        )
        parts += [rows, whole_files.select(FILE_INDEX, "record", "reason", "kind")]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    names = spark.createDataFrame(
        [(kind, i, f.name) for kind in frames for i, f in enumerate(_files_of(inputs, kind))],
        f"kind STRING, {FILE_INDEX} INT, {SOURCE_FILE} STRING",
    )
    named = out.join(F.broadcast(names), ["kind", FILE_INDEX])  # one row per file: small
    return named.select(SOURCE_FILE, "record", "reason", "kind", F.lit(run_id).alias("run_id"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickercast-preprocess",
        description="Raw CSVs under DIR/raw -> curated features under DIR/curated (a spark-submit target).",
    )
    parser.add_argument("--data", type=Path, help="Data root holding raw/ (default: settings' data_root)")
    parser.add_argument("--master", help="Spark master URL (default: spark-submit's, else settings)")
    parser.add_argument("--full", action="store_true", help="Recompute every row")
    parser.add_argument("--max-bad-fraction", type=float, help="Fail when more input rows than this are bad")
    parser.add_argument("--config", type=Path, help="YAML settings file")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the job from the command line (``spark-submit .../job.py --data DIR``).

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The process exit code: 0 on success, the error's code after a one-line error message.

    """
    from tickercast.config import ConfigError, load_settings
    from tickercast.console import configure_logging, console
    from tickercast.preprocess.cli import print_summary, quiet_pyspark_warnings

    quiet_pyspark_warnings()
    args = _parser().parse_args(argv)
    configure_logging("INFO")
    overrides = {"data_root": args.data, "spark": {"max_bad_fraction": args.max_bad_fraction}}
    try:
        settings = load_settings(args.config, overrides)
        result = run_job(settings, full=args.full, master=args.master)
    except (UserError, ConfigError) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return getattr(exc, "exit_code", 2)
    print_summary(result)
    print(json.dumps({"data_version": result.manifest["data_version"], "rows": result.counts["written"]}))
    return 0


if __name__ == "__main__":  # pragma: no cover, exercised through spark-submit in the cluster test
    from tickercast.preprocess import job as _job

    sys.exit(_job.main())
