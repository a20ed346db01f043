"""Test data for the preprocessing stage: small synthetic markets with gaps, split at a date."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

NY = ZoneInfo("America/New_York")
TODAY = dt.date(2026, 1, 15)  # the job's "today": every synthetic row is in the past
NOW = dt.datetime(2026, 1, 15, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class RawData:
    """Raw frames (all text, as read from the CSVs) and the date that splits them in two."""

    prices: pd.DataFrame
    indices: pd.DataFrame
    news: pd.DataFrame
    split: dt.date

    def early_late(self, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rows known at the split date's close, and the rest."""
        frame = getattr(self, kind)
        if kind == "news":
            cutoff = dt.datetime.combine(self.split, dt.time(16, 0), NY)
            stamps = frame["published_at"].map(dt.datetime.fromisoformat)
            early = stamps.map(lambda s: s <= cutoff)
        else:
            early = frame["Date"].str.slice(0, 10) <= self.split.isoformat()
        return frame[early], frame[~early]


def write_raw(root: Path, data: RawData, part: str = "all") -> None:
    """Write raw CSVs: ``a-early.csv`` and ``b-late.csv`` per kind (``part`` = all, early or late)."""
    for kind in ("prices", "indices", "news"):
        folder = root / "raw" / kind
        folder.mkdir(parents=True, exist_ok=True)
        early, late = data.early_late(kind)
        if part in ("all", "early"):
            early.to_csv(folder / "a-early.csv", index=False)
        if part in ("all", "late"):
            late.to_csv(folder / "b-late.csv", index=False)


def tree_digest(path: Path) -> str:
    """Hash every file under a folder (names and bytes), to prove that nothing changed."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def raw_data(tmp_path_factory: pytest.TempPathFactory) -> RawData:
    """Three synthetic tickers over 260 trading days (with holidays), with gaps punched in.

    One ticker misses an isolated day and a run of five days, the S&P index misses two days in a
    row (carried forward) and a run of five (null after three), so every edge case of the windows,
    the sentiment attribution and the market carry-forward is exercised.
    """
    from tickercast.data.synth import generate_market

    source = tmp_path_factory.mktemp("synth")
    generate_market(source, tickers=3, days=260, seed=11)

    def read(kind: str) -> pd.DataFrame:
        files = sorted((source / "raw" / kind).glob("*.csv"))
        return pd.concat([pd.read_csv(f, dtype=str, keep_default_na=False) for f in files], ignore_index=True)

    prices, indices, news = read("prices"), read("indices"), read("news")
    symbols = sorted(prices["Symbol"].unique())
    dates = sorted(prices["Date"].str.slice(0, 10).unique())
    gappy = symbols[1]
    holes = {dates[30], *dates[100:105]}
    prices = prices[~((prices["Symbol"] == gappy) & prices["Date"].str.slice(0, 10).isin(holes))]
    gspc_holes = {*dates[60:62], *dates[150:155]}
    indices = indices[~((indices["Symbol"] == "^GSPC") & indices["Date"].str.slice(0, 10).isin(gspc_holes))]
    return RawData(
        prices.reset_index(drop=True),
        indices.reset_index(drop=True),
        news.reset_index(drop=True),
        split=dt.date.fromisoformat(dates[230]),
    )


@pytest.fixture
def settings_at():
    """Build settings for a data root the way the CLI would (master and limits from flags)."""
    from tickercast.config import load_settings

    def build(root: Path, **spark: object):
        return load_settings(None, {"data_root": root, "spark": {"master": "local[2]", **spark}})

    return build


@pytest.fixture(scope="session")
def full_run(spark, raw_data: RawData, tmp_path_factory: pytest.TempPathFactory):
    """One full job run over all the data; returns (result, curated frame, data root)."""
    from tickercast.config import load_settings
    from tickercast.preprocess.job import run_job

    root = tmp_path_factory.mktemp("full")
    write_raw(root, raw_data)
    settings = load_settings(None, {"data_root": root})
    result = run_job(settings, full=True, today=TODAY, now=NOW)
    curated = pd.read_parquet(settings.features_dir).sort_values(["symbol", "date"]).reset_index(drop=True)
    return result, curated, root


@pytest.fixture
def copy_root(tmp_path: Path):
    """Copy a data root into this test's temporary folder."""

    def copy(root: Path) -> Path:
        target = tmp_path / "data"
        shutil.copytree(root, target)
        return target

    return copy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Silence PySpark's pandas-3 FutureWarning (noise, not a failure) in this package's tests."""
    for item in items:
        if "tests/preprocess/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas"))
