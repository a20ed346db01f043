"""The training datasets: the split by trading date, no target leakage, too little data refused."""

from __future__ import annotations

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
    # One forecast origin per symbol and date (near a window's end the dataset also holds shorter
    # decoders from the same origin, which train the first days on the last dates).
    assert len(set(test_t)) == 10 and len(set(val_t)) == 10


def test_too_little_history_is_a_user_error(curated: pd.DataFrame) -> None:
    short = curated.groupby("symbol").head(205)
    with pytest.raises(UserError, match=r"too few to split|shorter than the encoder"):
        ds.build_datasets(short, PARAMS)
