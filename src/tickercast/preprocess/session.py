"""The one place that creates a SparkSession for tickercast."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from tickercast.config import SparkSettings

APP_NAME = "tickercast-preprocess"
# Validation and feature stages compile into large generated methods; HotSpot leaves methods over
# 8000 bytecodes interpreted unless told otherwise (a 4x slower scan here). The parallel collector
# trades pause times, which a batch job does not mind, for throughput (10% at 10M rows).
JVM_OPTIONS = "-XX:-DontCompileHugeMethods -XX:+UseParallelGC"
# Runtime SQL options the job needs even on a session it did not create (set for the run, then
# restored). Constraint propagation blows up the optimizer on the validation plans' many aliased,
# filtered columns (an out-of-memory in planning), and buys nothing here.
JOB_SQL_CONF = {
    "spark.sql.constraintPropagation.enabled": "false",
    # The cached, de-duplicated prices are already partitioned by symbol: this lets the join with
    # daily sentiment on (symbol, date) and the feature windows after it keep that partitioning
    # instead of shuffling 10M rows twice more.
    "spark.sql.requireAllClusterKeysForCoPartition": "false",
    "spark.sql.session.timeZone": "UTC",
    # The validated rows are cached on local disk, read back a few times: encoding them costs
    # more CPU than the bytes it saves.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
    # Headlines go to the scorer in large batches: fewer round trips, more repeats scored once.
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    # The job reads the files it listed, by name: above 32 paths Spark would otherwise run a job of
    # one task per path just to look each file up again (1-2 s per raw kind here).
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
}


def launched_by_spark_submit() -> bool:
    """Tell whether this Python driver was started by ``spark-submit`` (which then owns the master)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_session(
    settings: SparkSettings, master: str | None = None, extra_conf: dict[str, str] | None = None
) -> tuple[SparkSession, bool]:
    """Return the active SparkSession, or build one from the settings.

    An already running session (a test's, a notebook's, or the one ``spark-submit`` configured) is
    reused as it is. Otherwise the session runs on ``master`` (default ``settings.master``) with
    UTC as the session time zone (date logic never depends on the machine's zone), executors
    using this interpreter, and the console progress bar off (the CLI prints its own summary).

    Args:
        settings: The ``spark`` section of the settings.
        master: Master URL overriding ``settings.master``; ignored under ``spark-submit`` unless given.
        extra_conf: More ``spark.*`` options.

    Returns:
        ``(session, created)``; the caller stops the session only when ``created`` is true.

    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    builder = SparkSession.builder.appName(APP_NAME)
    if master is not None or not launched_by_spark_submit():
        builder = builder.master(master or settings.master)
    # PySpark starts its Python workers with $PYSPARK_PYTHON; default it to this interpreter so
    # workers import the same tickercast and pandas as the driver.
    python = os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = {
        "spark.driver.memory": settings.driver_memory,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.ui.showConsoleProgress": "false",
        "spark.pyspark.python": python,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.parquet.compression.codec": "zstd",
        "spark.sql.sources.partitionOverwriteMode": "static",
        "spark.driver.extraJavaOptions": JVM_OPTIONS,
        "spark.executor.extraJavaOptions": JVM_OPTIONS,
        **JOB_SQL_CONF,
    }
    conf.update(extra_conf or {})
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session, True


@contextmanager
def sql_conf(session: SparkSession, options: dict[str, str]) -> Iterator[None]:
    """Set runtime SQL options on a session for the duration of a block, then restore them."""
    previous: dict[str, str | None] = {key: session.conf.get(key, None) for key in options}
    for key, value in options.items():
        session.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                session.conf.unset(key)
            else:
                session.conf.set(key, old)


def job_conf(session: SparkSession) -> AbstractContextManager[None]:
    """Apply :data:`JOB_SQL_CONF` to a session for the duration of a run, then restore it."""
    return sql_conf(session, JOB_SQL_CONF)
