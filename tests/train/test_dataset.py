"""The model's view of the curated data: features, warm-up, missing market data, split, no leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.factories import make_curated
from tickercast.config import ModelParams
from tickercast.errors import UserError
from tickercast.train import dataset as ds

PARAMS = ModelParams(max_encoder_length=10, batch_size=32)


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = make_curated(tmp_path_factory.mktemp("ds"), tickers=3, days=300, seed=11)
    return pd.read_parquet(root / "curated" / "features")


def test_warm_up_rows_are_dropped_and_no_nan_reaches_the_model(curated: pd.DataFrame) -> None:
    frame = ds.model_frame(curated)
    spec = ds.FeatureSpec.from_columns(list(curated.columns))
    assert spec.market_indices == ("gspc", "vix")
    inputs = [*ds.KNOWN_REALS, *spec.unknown_reals]
    assert np.isfinite(frame[inputs].to_numpy()).all()
    # The 200-row moving average is the longest warm-up: each symbol loses its first 199 rows.
    per_symbol = frame.groupby("symbol").size()
    assert (per_symbol == 300 - 199).all()
    first = frame.groupby("symbol")["date"].min()
    ma_ready = curated.dropna(subset=["ma_200"]).groupby("symbol")["date"].min()
    assert (pd.to_datetime(ma_ready) == first).all()


def test_features_are_scale_free(curated: pd.DataFrame) -> None:
    scaled = curated.copy()
    for col in ("open", "high", "low", "close", "ma_20", "ma_50", "ma_200"):
        scaled[col] = scaled[col] * 37.0
    a, b = ds.model_frame(curated), ds.model_frame(scaled)
    spec = ds.FeatureSpec.from_columns(list(curated.columns))
    pd.testing.assert_frame_equal(a[list(spec.unknown_reals)], b[list(spec.unknown_reals)], rtol=1e-9)


def test_missing_market_values_are_filled_and_flagged(curated: pd.DataFrame) -> None:
    spec = ds.FeatureSpec.from_columns(list(curated.columns))
    holed = curated.copy()
    last_date = holed["date"].max()
    holed.loc[holed["date"] == last_date, "mkt_vix_ret"] = np.nan
    frame = ds.model_frame(holed, spec)
    last = frame[frame["date"] == pd.Timestamp(last_date)]
    assert (last["mkt_vix_ret"] == 0.0).all() and (last[ds.MARKET_MISSING] == 1.0).all()
    assert (frame[frame["date"] < pd.Timestamp(last_date)][ds.MARKET_MISSING] == 0.0).all()
    # An index absent altogether (serving a frame without ^VIX) is also "missing", not an error.
    no_vix = ds.model_frame(curated.drop(columns=["mkt_vix_close", "mkt_vix_ret"]), spec)
    assert (no_vix[ds.MARKET_MISSING] == 1.0).all() and (no_vix["mkt_vix_ret"] == 0.0).all()


def test_split_by_trading_date_and_targets_never_leak(curated: pd.DataFrame) -> None:
    data = ds.build_datasets(curated, PARAMS, val_fraction=0.1, test_fraction=0.1)
    split = data.split
    dates = np.sort(data.frame["date"].unique())
    assert pd.Timestamp(dates[-10]) == split.test_start  # 101 dates: 10 test, 10 validation
    assert pd.Timestamp(dates[-20]) == split.val_start

    def targets_and_encoders(dataset) -> tuple[np.ndarray, np.ndarray]:
        x, _ = next(iter(dataset.to_dataloader(train=False, batch_size=10_000)))
        index = dataset.x_to_index(x)
        return index["time_idx"].to_numpy(), x["encoder_lengths"].numpy()

    train_t, _ = targets_and_encoders(data.train)
    val_t, val_enc = targets_and_encoders(data.val)
    test_t, test_enc = targets_and_encoders(data.test)
    assert train_t.max() < split.val_start_idx
    assert split.val_start_idx <= val_t.min() and val_t.max() < split.test_start_idx
    assert test_t.min() == split.test_start_idx
    # Encoders reach back across the cut (full length from the first validation/test sample on).
    assert (val_enc == PARAMS.max_encoder_length).all() and (test_enc == PARAMS.max_encoder_length).all()
    assert len(test_t) == 3 * 10 and len(val_t) == 3 * 10


def test_forecasts_do_not_depend_on_later_rows(curated: pd.DataFrame, tmp_path: Path) -> None:
    """Changing every row after a date leaves every forecast for that date and earlier unchanged."""
    import torch

    from tickercast.train.bundle import ModelBundle
    from tickercast.train.fit import build_network

    torch.manual_seed(0)
    data = ds.build_datasets(curated, PARAMS)
    network = build_network(data, PARAMS)
    ModelBundle.write(
        tmp_path / "b", network, data.train.get_parameters(), data.spec, PARAMS.model_dump(), {}
    )
    bundle = ModelBundle.load(tmp_path / "b")
    cut = data.split.test_start_idx + 4
    changed = curated.copy()
    later = changed["time_idx"] > cut
    for col in ("open", "high", "low", "close", "ma_20", "ma_50", "ma_200", "mkt_gspc_ret", "sentiment"):
        changed.loc[later, col] = changed.loc[later, col] * 1.5
    before, _ = bundle.backtest(curated, data.split.test_start_idx)
    after, _ = bundle.backtest(changed, data.split.test_start_idx)
    keep = pd.to_datetime(before["date"]) <= data.frame.loc[data.frame["time_idx"] == cut, "date"].iloc[0]
    assert keep.sum() == 3 * 5
    pd.testing.assert_frame_equal(before[keep], after[keep.to_numpy()])
    assert not np.allclose(before.loc[~keep, "p50"], after.loc[~keep.to_numpy(), "p50"])


def test_too_little_history_is_a_user_error(curated: pd.DataFrame) -> None:
    short = curated.groupby("symbol").head(205)
    with pytest.raises(UserError, match=r"too few to split|shorter than the encoder"):
        ds.build_datasets(short, PARAMS)


def test_next_trading_day_skips_weekends_and_holidays() -> None:
    assert ds.next_trading_day(pd.Timestamp("2024-12-31")) == pd.Timestamp("2025-01-02")
    assert ds.next_trading_day(pd.Timestamp("2024-03-28")) == pd.Timestamp("2024-04-01")  # Good Friday
    assert ds.next_trading_day(pd.Timestamp("2024-06-07")) == pd.Timestamp("2024-06-10")
