"""History sent to POST /forecast: trimming raw rows is exact, and row order does not matter."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.serve.conftest import Trained
from tickercast import schema
from tickercast.model.inputs import WARMUP_COLUMNS
from tickercast.serve.history import curated_rows, history_kind, raw_to_curated
from tickercast.serve.predictor import HistoryError

WINDOW = 49  # the rows a 30-day-encoder model reads


def test_trimmed_raw_history_gives_exactly_the_same_features(trained: Trained) -> None:
    prices = trained.raw_prices(trained.curated["symbol"].iloc[0])
    rows = prices[["Date", "Open", "High", "Low", "Close", "Volume"]].to_dict("records")
    assert len(rows) > WINDOW + schema.MAX_LOOKBACK_ROWS + 50
    full = raw_to_curated(rows, "ABC")
    trimmed = raw_to_curated(rows, "ABC", keep=WINDOW + schema.MAX_LOOKBACK_ROWS)
    assert len(trimmed) == WINDOW + schema.MAX_LOOKBACK_ROWS
    columns = ["date", *WARMUP_COLUMNS]
    pd.testing.assert_frame_equal(
        full[columns].tail(WINDOW).reset_index(drop=True),
        trimmed[columns].tail(WINDOW).reset_index(drop=True),
    )
    assert trimmed[columns].tail(WINDOW).notna().all().all()


def test_raw_rows_in_any_order_give_the_same_features(trained: Trained) -> None:
    prices = trained.raw_prices(trained.curated["symbol"].iloc[0]).tail(260)
    rows = prices[["Date", "Open", "High", "Low", "Close", "Volume"]].to_dict("records")
    shuffled = [rows[i] for i in pd.Series(range(len(rows))).sample(frac=1, random_state=1)]
    keep = WINDOW + schema.MAX_LOOKBACK_ROWS
    expected = raw_to_curated(rows, "ABC", keep=keep)
    pd.testing.assert_frame_equal(raw_to_curated(shuffled, "ABC", keep=keep), expected)


@pytest.mark.parametrize(
    ("rows", "kind"),
    [
        ([{"Date": "2024-01-02", "Close": 1}], "raw"),
        ([{"date": "2024-01-02", "close": 1}], "curated"),
    ],
)
def test_history_kind(rows, kind: str) -> None:
    assert history_kind(rows) == kind


def test_curated_rows_take_the_served_column_types() -> None:
    dtypes = {"date": object, "close": "float64", "time_idx": "int64", "symbol": object}
    frame = curated_rows([{"date": "2024-01-02", "close": 3, "time_idx": 7.0, "unknown": 1}], dtypes)
    assert list(frame.columns) == ["date", "close", "time_idx"]
    assert frame["close"].dtype == "float64" and frame["time_idx"].dtype == "int64"
    with pytest.raises(HistoryError, match="same date"):
        curated_rows([{"date": "2024-01-02", "close": 1}, {"date": "2024-01-02", "close": 2}], dtypes)
