"""Shared fixtures for the data tests: one small simulated market per test session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tickercast import schema
from tickercast.data.synth import generate_market

SYNTH_ARGS = {"tickers": 12, "days": 300, "seed": 11, "kappa": 0.02}


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with a small simulated market (read-only for tests)."""
    root = tmp_path_factory.mktemp("synth")
    generate_market(root, **SYNTH_ARGS)
    return root


def read_raw(root: Path, kind: str) -> pd.DataFrame:
    """Read every CSV of one raw kind as strings, with the source file name."""
    frames = []
    for path in sorted(schema.raw_dir(root, kind).glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame["source_file"] = path.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def parse_price_dates(values: pd.Series) -> pd.Series:
    """Parse contract dates (ISO date or yfinance timestamp with offset) to calendar dates."""
    return pd.to_datetime(values.str.slice(0, 10), format="%Y-%m-%d", errors="raise").dt.date
