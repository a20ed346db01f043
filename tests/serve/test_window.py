"""The service's start reads each ticker's own window, not the whole dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from tests.factories import make_curated, write_curated
from tickercast.manifest import read_manifest
from tickercast.serve.predictor import WINDOW_SLACK, read_latest_window, window_filter


def test_each_ticker_is_read_from_its_own_window(tmp_path: Path) -> None:
    root = make_curated(tmp_path, tickers=4, days=600, seed=5)
    features = root / "curated" / "features"
    full = pd.read_parquet(features)
    full["symbol"] = full["symbol"].astype(str)
    first, second = sorted(full["symbol"].unique())[:2]
    # One ticker was delisted 300 trading days before the others' end; another misses 25 days.
    dates = sorted(full["date"].unique())
    market = full[~((full["symbol"] == first) & (full["date"] > dates[-300]))]
    market = market[~((market["symbol"] == second) & market["date"].isin(dates[-60:-35]))]
    write_curated(root, market.reset_index(drop=True))
    spans = read_manifest(root / "curated" / "manifest.json").symbols

    rows = 40
    window, calendar = read_latest_window(features, rows, spans)
    expected = market.sort_values(["symbol", "date"]).groupby("symbol").tail(rows).reset_index(drop=True)
    pd.testing.assert_frame_equal(window[expected.columns], expected, check_dtype=False)
    assert (
        calendar.index.is_monotonic_increasing
        and calendar.loc[window["date"].max()] == window["time_idx"].max()
    )
    # The read is bounded by the windows: no ticker's rows from before its own window and slack.
    read = ds.dataset(features).count_rows(filter=window_filter(spans, rows))
    assert read <= len(spans) * (rows + WINDOW_SLACK)
    # Without a manifest the service still starts, from every row's keys.
    keys_window, _ = read_latest_window(features, rows)
    pd.testing.assert_frame_equal(keys_window[expected.columns], expected, check_dtype=False)
