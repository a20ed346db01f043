"""The incremental path: recompute only the curated rows whose windows see new or changed input.

:func:`previous_output` decides from the published manifest alone whether there is a previous
dataset to build on; :func:`recompute` then diffs the new valid rows against it and recomputes
each symbol from its first changed row (with enough rows before it to fill the windows). Either
returns ``None`` with a reason where the run must be full; a full run never reads the manifest.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from tickercast import schema
from tickercast.manifest import CuratedManifest, find_manifest
from tickercast.preprocess.manifest import FEATURE_SPEC

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from tickercast.config import Settings


def previous_output(settings: Settings, *, full: bool) -> tuple[CuratedManifest | None, str]:
    """Return the published dataset's manifest when an incremental run can build on it.

    Args:
        settings: Effective settings (where the published output is).
        full: The run was asked to recompute every row.

    Returns:
        ``(manifest, "")``, or ``(None, why the run is full)``.

    """
    if full:
        return None, "--full"
    if not settings.manifest_path.exists():
        return None, "no previous output"
    previous = find_manifest(settings.manifest_path)  # logs why a broken one cannot be used
    if previous is None:
        return None, "the previous manifest cannot be read"
    if previous.schema_version != schema.SCHEMA_VERSION or previous.feature_spec != FEATURE_SPEC:
        return None, "the previous output was made with other rules"
    if not settings.features_dir.is_dir() or "calendar" not in previous.model_fields_set:
        return None, "no previous features"
    return previous, ""


def recompute(
    spark: SparkSession,
    settings: Settings,
    previous: CuratedManifest,
    prices: DataFrame,
    calendar: DataFrame,
    sentiment: DataFrame,
    market: DataFrame | None,
    index_symbols: list[str],
) -> tuple[DataFrame | None, str]:
    """Combine the previous rows that still hold with the rows recomputed from the first change.

    Args:
        spark: The session.
        settings: Effective settings (where the previous features are).
        previous: The published manifest (from :func:`previous_output`).
        prices: The valid prices with their previous close.
        calendar: The trading calendar (``date, time_idx``).
        sentiment: The daily sentiment per symbol and date.
        market: The market table, or ``None`` without index symbols.
        index_symbols: The index symbols, in order.

    Returns:
        ``(curated rows, why)``, or ``(None, why the run must be full)``.

    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from tickercast.preprocess import transforms

    if previous.calendar.last_date is None:
        return None, "the previous output is empty"
    last_date = dt.date.fromisoformat(previous.calendar.last_date)
    old = spark.read.parquet(str(settings.features_dir))
    known_dates = calendar.where(F.col(schema.DATE) <= F.lit(last_date)).count()
    lost = old.select(schema.DATE).distinct().join(calendar, schema.DATE, "left_anti").count()
    if known_dates != previous.calendar.trading_dates or lost:
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
    recomputed = transforms.calendar_columns(transforms.window_features(tail)).where(
        F.col("_rn") >= F.col("_first_rn")
    )
    kept = old.join(first_changed, schema.SYMBOL, "left").where(
        F.col("first_changed").isNull() | (F.col(schema.DATE) < F.col("first_changed"))
    )
    columns = list(schema.BASE_CURATED_COLUMNS)
    combined = kept.select(*columns).unionByName(recomputed.select(*columns))
    return transforms.with_market(combined, market, index_symbols), "only new or changed rows recomputed"
