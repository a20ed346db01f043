"""Rejected rows: counts per file and outcome, the bad-row gate, and the quarantine dataset.

The counts come from one pass over the classified rows (:func:`file_stats`), small rows per file
and outcome; :func:`summarise` adds them up, :func:`check_gate` refuses to publish a run with too
many bad rows, and :func:`write_quarantine` writes the rejected rows with their reasons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tickercast import schema
from tickercast.errors import UserError
from tickercast.preprocess.read import InputFile, files_of

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The columns :func:`quarantine_rows` selects, in its order: the schema of a quarantine with no rows.
QUARANTINE_DDL = "source_file STRING, record STRING, reason STRING, kind STRING, run_id STRING"
# The counts of input rows by outcome, in the order the manifest and the summary show them.
COUNT_NAMES = ("read", "valid", "quarantined", "bad", "duplicates", "superseded")


@dataclass(frozen=True)
class FileStat:
    """How many rows of one file ended with one status and reason."""

    kind: str
    source_file: str
    status: str
    reason: str | None
    rows: int


@dataclass(frozen=True)
class Gathered:
    """What the counting pass collects besides the counts (grows with dates and symbols, not rows)."""

    trading_dates: list[dt.date]
    index_symbols: list[str]


@dataclass(frozen=True)
class Summary:
    """Input rows by outcome, overall and per raw kind, the reasons and the warnings."""

    counts: dict[str, int]
    counts_by_kind: dict[str, dict[str, int]]
    reasons: dict[str, int]
    warnings: list[str]


def file_stats(
    spark: SparkSession, frames: dict[str, DataFrame], inputs: list[InputFile]
) -> tuple[list[FileStat], Gathered]:
    """Count the classified rows per file, status and reason, in one pass that also fills the caches.

    The same pass gathers what later steps need of the rows: the trading dates (the distinct dates
    of valid prices, a few thousand at most) and the index symbols (the distinct symbols of valid
    index rows), so no later query reads the rows for them.

    Args:
        spark: The session.
        frames: Each raw kind's classified rows (cached).
        inputs: The raw files.

    Returns:
        ``(stats, gathered)``: one :class:`FileStat` per file and outcome, and the gathered values.

    Raises:
        UserError: Rows Spark could not trace to a listed file (a bug, not bad data).

    """
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    from tickercast.preprocess.session import sql_conf
    from tickercast.preprocess.validate import FILE_INDEX, REASON, STATUS, VALID

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
            valid_value = F.when(F.col(STATUS) == VALID, F.col(column))
            frame = frame.observe(observations[name], F.collect_set(valid_value).alias("values"))
        counts = frame.groupBy(FILE_INDEX, STATUS, REASON).agg(F.count(F.lit(1)).alias("n"))
        parts.append(counts.withColumn("kind", F.lit(kind)))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    # Adaptive execution would first build each cache in a stage of its own, then read it back to
    # count; without it the counts are taken as the cache is built.
    with sql_conf(spark, {"spark.sql.adaptive.enabled": "false"}):
        collected = union.collect()
    names = {kind: [f.name for f in files_of(inputs, kind)] for kind in frames}
    stats = []
    for r in collected:
        if r[FILE_INDEX] is None:
            raise UserError(f"{r['n']} {r['kind']} rows could not be traced to their file; nothing published")
        source_file = names[r["kind"]][r[FILE_INDEX]]
        stats.append(FileStat(r["kind"], source_file, r[STATUS], r[REASON], int(r["n"])))
    values = {name: sorted(observation.get["values"]) for name, observation in observations.items()}
    return stats, Gathered(values.get("trading_dates", []), values.get("index_symbols", []))


def summarise(stats: list[FileStat], inputs: list[InputFile]) -> Summary:
    """Add the per-file counts up, overall and per kind; warn about files without data rows.

    Args:
        stats: What :func:`file_stats` counted.
        inputs: The raw files.

    Returns:
        The :class:`Summary`; reasons are sorted by count, most frequent first.

    """
    from tickercast.preprocess.validate import DUPLICATE, SUPERSEDED, VALID

    counts = dict.fromkeys(COUNT_NAMES, 0)
    by_kind: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    rows_per_file: dict[str, int] = {}
    for stat in stats:
        kind_counts = by_kind.setdefault(stat.kind, dict.fromkeys(COUNT_NAMES, 0))
        rows_per_file[stat.source_file] = rows_per_file.get(stat.source_file, 0) + stat.rows
        for target in (counts, kind_counts):
            target["read"] += stat.rows
            if stat.status == VALID:
                target["valid"] += stat.rows
            elif stat.status == DUPLICATE:
                target["duplicates"] += stat.rows
            else:  # bad, a bad file, or superseded
                target["quarantined"] += stat.rows
                target["superseded" if stat.status == SUPERSEDED else "bad"] += stat.rows
        if stat.reason is not None:
            reasons[stat.reason] = reasons.get(stat.reason, 0) + stat.rows
    warnings = [f"empty file: {f.name} has no data rows" for f in inputs if rows_per_file.get(f.name, 0) == 0]
    ranked = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return Summary(counts, by_kind, ranked, warnings)


def check_gate(summary: Summary, max_bad_fraction: float) -> None:
    """Refuse to publish a run without data, with too many bad rows, or without valid prices.

    Args:
        summary: The run's counts.
        max_bad_fraction: The largest share of bad input rows allowed.

    Raises:
        UserError: The run must not be published; the message says why.

    """
    counts = summary.counts
    if counts["read"] == 0:
        raise UserError("the raw files hold no data rows; nothing to preprocess (previous output kept)")
    bad_fraction = counts["bad"] / counts["read"]
    if bad_fraction > max_bad_fraction:
        top = ", ".join(f"{r} ({n})" for r, n in list(summary.reasons.items())[:5])
        raise UserError(
            f"{counts['bad']} of {counts['read']} input rows ({bad_fraction:.1%}) are bad, more than the "
            f"allowed {max_bad_fraction:.1%} (--max-bad-fraction); nothing published, previous output kept. "
            f"Reasons: {top}"
        )
    if summary.counts_by_kind.get(schema.RAW_PRICES, {}).get("valid", 0) == 0:
        raise UserError("no valid price rows; nothing published, previous output kept")


def quarantine_rows(
    spark: SparkSession, frames: dict[str, DataFrame], inputs: list[InputFile], run_id: str
) -> DataFrame:
    """Rejected rows with reasons; a file without the required columns is one row (its header).

    Args:
        spark: The session.
        frames: The kinds with rejected rows and their classified rows; without any, the
            quarantine is empty (and has its columns all the same).
        inputs: The raw files.
        run_id: The run, recorded on every row.

    Returns:
        ``source_file, record, reason, kind, run_id`` (:data:`QUARANTINE_DDL`).

    """
    from pyspark.sql import functions as F

    from tickercast.preprocess.validate import BAD, BAD_FILE, FILE_INDEX, SOURCE_FILE, STATUS, SUPERSEDED

    if not frames:
        return spark.createDataFrame([], QUARANTINE_DDL)
    parts = []
    for kind, frame in frames.items():
        rows = frame.where(F.col(STATUS).isin(BAD, SUPERSEDED)).select(
            FILE_INDEX, "record", "reason", F.lit(kind).alias("kind")
        )
        whole_files = (
            frame.where(F.col(STATUS) == BAD_FILE)
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
        [(kind, i, f.name) for kind in frames for i, f in enumerate(files_of(inputs, kind))],
        f"kind STRING, {FILE_INDEX} INT, {SOURCE_FILE} STRING",
    )
    named = out.join(F.broadcast(names), ["kind", FILE_INDEX])  # one row per file: small
    return named.select(SOURCE_FILE, "record", "reason", "kind", F.lit(run_id).alias("run_id"))


def write_quarantine(
    spark: SparkSession, frames: dict[str, DataFrame], inputs: list[InputFile], run_id: str, out: Path
) -> None:
    """Write the rejected rows (see :func:`quarantine_rows`) to ``out`` as Parquet."""
    quarantine_rows(spark, frames, inputs, run_id).write.mode("overwrite").parquet(str(out))
