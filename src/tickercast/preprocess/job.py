"""The preprocessing job: raw CSVs -> validated, quarantined, leakage-safe curated features.

:func:`run_job` is what the CLI, the pipeline, the ``spark-submit`` entry
(:mod:`tickercast.preprocess.submit`) and the tests call. A run reads and validates every raw kind
(:mod:`~tickercast.preprocess.read`, :mod:`~tickercast.preprocess.validate`), counts and gates the
rejected rows (:mod:`~tickercast.preprocess.quarantine`), computes the features in full or
incrementally (:mod:`~tickercast.preprocess.incremental`), writes them, and publishes them with
their manifest (:mod:`~tickercast.preprocess.manifest`).

The same code runs on ``local[*]``, a standalone cluster (``spark://``) and Kubernetes (``k8s://``):
all work on rows happens in Spark; the driver only lists files and collects small aggregates (counts
per reason and file, the trading dates, the index symbols, the content hash) and the small tables
it broadcasts (per-symbol spans, the market table), which grow with dates and symbols, not rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from tickercast import schema
from tickercast.errors import UserError
from tickercast.features import rules
from tickercast.preprocess import incremental, quarantine, read
from tickercast.preprocess.manifest import Content, build_manifest, content_of, publish, write_manifest

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from tickercast.config import Settings
    from tickercast.manifest import CuratedManifest
    from tickercast.preprocess.quarantine import Gathered

log = logging.getLogger(__name__)

# The raw kinds in the order the job reads, counts and quarantines them.
KINDS = (schema.RAW_PRICES, schema.RAW_INDICES, schema.RAW_NEWS, schema.RAW_SENTIMENT)


@dataclass
class JobResult:
    """What one run published (its manifest), where it went, and how long it took."""

    manifest: CuratedManifest
    mode_reason: str
    features_dir: Path
    manifest_path: Path
    quarantine_dir: Path
    duration_s: float = 0.0

    @property
    def run_id(self) -> str:
        """The run's id (also on every quarantined row)."""
        return self.manifest.run_id

    @property
    def mode(self) -> str:
        """``full`` or ``incremental``."""
        return self.manifest.mode

    @property
    def counts(self) -> dict[str, int]:
        """Input rows by outcome, and curated rows ``written``."""
        return self.manifest.counts.model_dump()

    @property
    def counts_by_kind(self) -> dict[str, dict[str, int]]:
        """Input rows by outcome per raw kind."""
        return {kind: c.model_dump(exclude={"written"}) for kind, c in self.manifest.counts_by_kind.items()}

    @property
    def reasons(self) -> dict[str, int]:
        """Quarantine reasons and their row counts, most frequent first."""
        return dict(self.manifest.quarantine_reasons)

    @property
    def warnings(self) -> list[str]:
        """Warnings about the input (e.g. empty files)."""
        return list(self.manifest.warnings)


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
    inputs = read.list_inputs(root)
    if not any(f.kind == schema.RAW_PRICES for f in inputs):
        raise UserError(
            f"no raw prices: {schema.raw_dir(root, schema.RAW_PRICES)} has no *.csv files "
            f"(write some with `tickercast data sample --out {root}`)"
        )
    run_id = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    staging = read.staging_dir(settings.curated_dir, run_id)
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


def _run(
    spark: SparkSession,
    settings: Settings,
    inputs: list[read.InputFile],
    run_id: str,
    staging: Path,
    cached: list[DataFrame],
    *,
    full: bool,
    today: dt.date,
    now: dt.datetime,
) -> JobResult:
    """Read -> validate -> count and gate -> features and quarantine -> manifest -> publish."""
    from pyspark.sql import functions as F

    from tickercast.preprocess.validate import STATUS, VALID

    frames = _classified(spark, inputs, today, now, cached)
    stats, gathered = quarantine.file_stats(spark, frames, inputs)
    summary = quarantine.summarise(stats, inputs)
    quarantine.check_gate(summary, settings.spark.max_bad_fraction)

    valid = {kind: frame.where(F.col(STATUS) == VALID) for kind, frame in frames.items()}
    # The counts say which kinds have rejected rows: only their caches are searched for them.
    rejected = {k: f for k, f in frames.items() if summary.counts_by_kind.get(k, {}).get("quarantined")}
    # Rejected rows are ready: the quarantine is written while the driver plans the features.
    with ThreadPoolExecutor(1) as background:
        written = background.submit(
            quarantine.write_quarantine, spark, rejected, inputs, run_id, staging / "quarantine"
        )
        mode, reason, content = _write_features(
            spark, settings, valid, gathered, staging / "features", full=full
        )
        written.result()

    manifest = build_manifest(
        run_id=run_id,
        mode=mode,
        inputs=inputs,
        summary=summary,
        content=content,
        index_symbols=gathered.index_symbols,
        max_bad_fraction=settings.spark.max_bad_fraction,
    )
    write_manifest(manifest, staging)
    publish(staging, settings)
    return JobResult(
        manifest=manifest,
        mode_reason=reason,
        features_dir=settings.features_dir,
        manifest_path=settings.manifest_path,
        quarantine_dir=settings.quarantine_dir,
    )


def _is_overflow(exc: Exception) -> bool:
    """Tell whether the job stopped on an exact sum out of range (in Spark or in the feature kernel)."""
    from pyspark.errors import ArithmeticException, PythonException

    from tickercast.features.indicators import VALUE_TOO_LARGE

    return isinstance(exc, ArithmeticException) or (
        isinstance(exc, PythonException) and VALUE_TOO_LARGE in str(exc)
    )


def _classified(
    spark: SparkSession,
    inputs: list[read.InputFile],
    today: dt.date,
    now: dt.datetime,
    cached: list[DataFrame],
) -> dict[str, DataFrame]:
    """Read and classify every raw kind, each cached on disk (the later steps read it a few times)."""
    from pyspark import StorageLevel

    from tickercast.preprocess import validate

    firsts = read.first_lines(spark, inputs)
    frames = {}
    for kind in KINDS:
        frame = validate.classify(*read.read_rows(spark, inputs, kind, firsts), kind, today, now)
        if kind == schema.RAW_NEWS:
            frame = _scored_news(frame)
        # On disk, not in the heap: the driver's memory must not grow with the input.
        cached.append(frame.persist(StorageLevel.DISK_ONLY))
        frames[kind] = cached[-1]
    return frames


def _scored_news(news: DataFrame) -> DataFrame:
    """Replace each valid headline with its score, before the news is cached.

    Scored where the de-duplicated rows already lie (no shuffle, each symbol's headlines together:
    the scorer takes each distinct headline of a batch once). The cache then holds a number, not
    the text, for the millions of valid rows; a rejected row keeps its raw line in ``record``.
    """
    from pyspark.sql import functions as F

    from tickercast.preprocess import transforms
    from tickercast.preprocess.validate import STATUS, VALID

    score = F.when(F.col(STATUS) == VALID, transforms.headline_scores(F.col("headline")))
    return news.withColumn("score", score).drop("headline")


def _write_features(
    spark: SparkSession,
    settings: Settings,
    valid: dict[str, DataFrame],
    gathered: Gathered,
    out: Path,
    *,
    full: bool,
) -> tuple[str, str, Content]:
    """Compute the curated rows (in full or incrementally) and write them to ``out``.

    Args:
        spark: The session.
        settings: Effective settings (where the previous output is).
        valid: The valid rows of each raw kind.
        gathered: The trading dates and index symbols of the valid rows, in order.
        out: The staged features directory.
        full: Recompute every row.

    Returns:
        ``(mode, why, content)``: ``full`` or ``incremental``, the reason for the mode, and what
        the written rows hold.

    """
    from tickercast.preprocess import transforms, write

    trading_dates, index_symbols = gathered.trading_dates, gathered.index_symbols
    prices = valid[schema.RAW_PRICES].select(
        schema.SYMBOL,
        schema.DATE,
        schema.OPEN,
        schema.HIGH,
        schema.LOW,
        schema.CLOSE,
        schema.VOLUME,
        transforms.PREVIOUS_CLOSE,
    )
    indices = valid[schema.RAW_INDICES].select(schema.SYMBOL, schema.DATE, schema.CLOSE)

    calendar = transforms.trading_calendar(spark, trading_dates)
    lookups = transforms.calendar_lookups(spark, trading_dates)
    small = {"spans": transforms.symbol_spans(prices, calendar)}
    if index_symbols:
        small["market"] = transforms.market_table(indices, calendar, index_symbols)
    # Independent small queries: run side by side, their latencies overlap.
    with ThreadPoolExecutor(len(small)) as pool:
        tables = pool.map(lambda frame: _collected(spark, frame), small.values())
        collected = dict(zip(small, tables, strict=True))
    market = collected["market"][1] if index_symbols else None
    observations = _observations(valid[schema.RAW_NEWS], valid[schema.RAW_SENTIMENT])
    lookups["spans"] = collected["spans"][1]
    sentiment = transforms.daily_sentiment(prices, calendar, observations, lookups)

    columns = rules.curated_columns(index_symbols)
    curated = None
    previous, reason = incremental.previous_output(settings, full=full)
    if previous is not None:
        curated, reason = incremental.recompute(
            spark, settings, previous, prices, calendar, sentiment, market, index_symbols
        )
    mode = "full" if curated is None else "incremental"
    log.info("mode: %s (%s)", mode, reason)
    # The rows are written, and their content hashed, by the Python workers; a full run computes
    # the features there too, where the rows already are (see tickercast.preprocess.write).
    if curated is None:
        rows = transforms.feature_rows(prices, calendar, sentiment)
        market_arrays = _market_arrays(collected["market"][0], len(trading_dates)) if index_symbols else {}
        metrics = write.write_curated(rows, out, columns, market=market_arrays, compute=True)
    else:
        metrics = write.write_curated(curated, out, columns, compute=False)
    return mode, reason, content_of(columns, metrics, trading_dates, collected["spans"][0])


def _collected(spark: SparkSession, frame: DataFrame) -> tuple[list[Row], DataFrame]:
    """Compute a small table once; return its rows and a local table of them.

    For tables that grow with trading dates or symbols, not rows, and are broadcast anyway: the
    feature query then broadcasts them from the driver instead of recomputing each in a chain of
    tiny stages.
    """
    rows = frame.collect()
    return rows, spark.createDataFrame(rows, frame.schema)


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


def _observations(news: DataFrame, sentiment: DataFrame) -> DataFrame:
    """Stack the scored headlines (see :func:`_scored_news`) with the raw sentiment scores."""
    from pyspark.sql import functions as F

    scored = news.select(schema.SYMBOL, "effective_date", "score")
    raw = sentiment.select(schema.SYMBOL, F.col(schema.DATE).alias("effective_date"), "score")
    return scored.unionByName(raw)
