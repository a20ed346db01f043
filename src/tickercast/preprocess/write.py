"""Write the curated rows as Parquet from Spark's Python workers, hashing the content on the way.

Each partition of the curated rows goes to a Python worker as Arrow batches (``mapInArrow``); the
worker computes the features (:mod:`tickercast.features.indicators`), writes one Parquet file with
pyarrow and returns one small row of metrics: its row count, order-free folds of its row hashes
and its first and last dates. Computing and writing where the rows already are saves sending 25
columns back to the JVM and Spark's row-by-row Parquet writer (together two thirds of the stage,
see ``docs/benchmarks.md``).

A file appears under its final name only once complete (written under a hidden temporary name,
then renamed); a retried task writes the same name again. The job writes into a staging folder
that it publishes atomically, so readers never see a partial dataset either way. Executors must
see the output folder at the same path as the driver (local mode, or a shared volume).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tickercast import schema
from tickercast.features import indicators, rules
from tickercast.preprocess import content_hash

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

# The metrics row each partition returns.
METRICS_DDL = "rows BIGINT, xor BIGINT, sum_hi BIGINT, sum_lo BIGINT, first DATE, last DATE"
# Rows per Parquet row group: large enough for readers, small enough that a worker's buffer stays
# a few tens of MB whatever the input size.
ROW_GROUP_ROWS = 1 << 18
_TEMPORARY_SUFFIX = ".tmp"


def curated_schema(columns: Sequence[str]) -> pa.Schema:
    """Return the Arrow schema of the curated files: dates, the symbol, int64 and float64 columns."""
    types = {schema.DATE: pa.date32(), schema.SYMBOL: pa.string()}
    types |= {name: pa.int64() for name in rules.INTEGER_COLUMNS}
    return pa.schema([(name, types.get(name, pa.float64())) for name in columns])


def write_curated(
    frame: DataFrame,
    out: Path,
    columns: Sequence[str],
    *,
    market: Mapping[str, np.ndarray] | None = None,
    compute: bool,
) -> dict[str, Any]:
    """Write ``frame`` under ``out`` as Parquet, one file per partition, and return content metrics.

    Args:
        frame: With ``compute``, the job's rows as :func:`tickercast.preprocess.transforms.feature_rows`
            returns them (each symbol's rows in one partition, in date order); without, curated rows.
        out: The folder to write (created; files already there with other names stay).
        columns: The curated columns in order.
        market: With ``compute``, each ``mkt_*`` column as an array indexed by ``time_idx``.
        compute: Compute the features first (see :func:`tickercast.features.indicators.curated_table`).

    Returns:
        ``rows``, ``xor``, ``sum_hi``, ``sum_lo`` (the folds of :func:`content_hash.content_folds` over all
        rows) and ``first``, ``last`` (dates, ``None`` without rows).

    """
    out.mkdir(parents=True, exist_ok=True)
    target = curated_schema(columns)
    writer = _partition_writer(str(out), target, dict(market or {}), compute)
    rows = frame.mapInArrow(writer, METRICS_DDL).collect()
    for stray in out.glob(f".*{_TEMPORARY_SUFFIX}"):  # from attempts that failed and were retried
        stray.unlink()
    # A partition's xor comes back as a signed 64-bit value: its bits again, as an unsigned int.
    folds = content_hash.combine_folds({**r.asDict(), "xor": r["xor"] & 0xFFFFFFFFFFFFFFFF} for r in rows)
    firsts = [r["first"] for r in rows if r["first"] is not None]
    lasts = [r["last"] for r in rows if r["last"] is not None]
    return {**folds, "first": min(firsts, default=None), "last": max(lasts, default=None)}


def _partition_writer(out: str, target: pa.Schema, market: dict[str, np.ndarray], compute: bool):
    """Build the function a worker runs on one partition's batches (see :func:`write_partition`)."""

    def write(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        assert context is not None, "runs inside a Spark task"
        name = f"part-{context.partitionId():05d}.parquet"
        temporary = os.path.join(out, f".{name}.{context.taskAttemptId()}{_TEMPORARY_SUFFIX}")
        yield write_partition(batches, os.path.join(out, name), temporary, target, market, compute)

    return write


def write_partition(
    batches: Iterable[pa.RecordBatch],
    path: str,
    temporary: str,
    target: pa.Schema,
    market: Mapping[str, np.ndarray],
    compute: bool,
) -> pa.RecordBatch:
    """Write one partition's rows to ``path`` (via ``temporary``) and return its metrics row.

    Nothing is written for a partition without rows. On an error the temporary file is removed.
    """
    tables: Iterable[pa.Table]
    if compute:
        tables = (
            indicators.curated_table(t, market, target.names) for t in indicators.whole_symbols(batches)
        )
    else:
        tables = (pa.Table.from_batches([b]) for b in batches if b.num_rows)
    folds: list[dict[str, int]] = []
    firsts: list[dt.date] = []
    lasts: list[dt.date] = []
    pending: list[pa.Table] = []
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            curated = table.select(target.names).cast(target)
            folds.append(content_hash.content_folds(curated))
            bounds = pc.min_max(curated.column(schema.DATE))
            firsts.append(bounds["min"].as_py())
            lasts.append(bounds["max"].as_py())
            pending.append(curated)
            if sum(t.num_rows for t in pending) >= ROW_GROUP_ROWS:
                writer = writer or _open(temporary, target)
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                pending = []
        if pending:
            writer = writer or _open(temporary, target)
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
        if writer is not None:
            writer.close()
            os.replace(temporary, path)
    except BaseException:
        if writer is not None:
            writer.close()
        Path(temporary).unlink(missing_ok=True)
        raise
    total = content_hash.combine_folds(folds)
    return pa.RecordBatch.from_pydict(
        {
            "rows": [total["rows"]],
            "xor": [total["xor"] - (1 << 64) if total["xor"] >= 1 << 63 else total["xor"]],  # as int64
            "sum_hi": [total["sum_hi"]],
            "sum_lo": [total["sum_lo"]],
            "first": pa.array([min(firsts, default=None)], pa.date32()),
            "last": pa.array([max(lasts, default=None)], pa.date32()),
        }
    )


def _open(path: str, target: pa.Schema) -> pq.ParquetWriter:
    """Open a Parquet file for the curated columns: zstd, a dictionary for the symbol only."""
    # Prices and indicators hardly repeat: a dictionary would be built, then dropped, page by page.
    return pq.ParquetWriter(path, target, compression="zstd", use_dictionary=[schema.SYMBOL])
