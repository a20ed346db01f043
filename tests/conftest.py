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
