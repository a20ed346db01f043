"""Fixtures shared by every test package."""

from __future__ import annotations

import os

import pytest

# Keep libraries quiet and local: no telemetry, no accidental network, one thread per BLAS call.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)


@pytest.fixture(autouse=True)
def _no_tickercast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop a developer's TICKERCAST_* or MLFLOW_TRACKING_URI variables leaking into tests."""
    for name in list(os.environ):
        if name.startswith("TICKERCAST_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def spark():
    """One local SparkSession (one JVM) for the whole test run: 2 cores, few shuffle partitions, no UI."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("tickercast-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
