"""The model's inputs: scale-free features, warm-up dropped, missing market data flagged, the decoder row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tickercast.model import inputs


def test_warm_up_rows_are_dropped_and_no_nan_reaches_the_model(curated: pd.DataFrame) -> None:
    frame = inputs.model_frame(curated)
    spec = inputs.FeatureSpec.from_columns(list(curated.columns))
    assert spec.market_indices == ("gspc", "vix")
    columns = [*inputs.KNOWN_REALS, *spec.unknown_reals]
    assert np.isfinite(frame[columns].to_numpy()).all()
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
    a, b = inputs.model_frame(curated), inputs.model_frame(scaled)
    spec = inputs.FeatureSpec.from_columns(list(curated.columns))
    pd.testing.assert_frame_equal(a[list(spec.unknown_reals)], b[list(spec.unknown_reals)], rtol=1e-9)


def test_missing_market_values_are_filled_and_flagged(curated: pd.DataFrame) -> None:
    spec = inputs.FeatureSpec.from_columns(list(curated.columns))
    holed = curated.copy()
    last_date = holed["date"].max()
    holed.loc[holed["date"] == last_date, "mkt_vix_ret"] = np.nan
    frame = inputs.model_frame(holed, spec)
    last = frame[frame["date"] == pd.Timestamp(last_date)]
    assert (last["mkt_vix_ret"] == 0.0).all() and (last[inputs.MARKET_MISSING] == 1.0).all()
    assert (frame[frame["date"] < pd.Timestamp(last_date)][inputs.MARKET_MISSING] == 0.0).all()
    # An index absent altogether (serving a frame without ^VIX) is also "missing", not an error.
    no_vix = inputs.model_frame(curated.drop(columns=["mkt_vix_close", "mkt_vix_ret"]), spec)
    assert (no_vix[inputs.MARKET_MISSING] == 1.0).all() and (no_vix["mkt_vix_ret"] == 0.0).all()


def test_the_decoder_row_carries_the_next_trading_days_calendar(curated: pd.DataFrame) -> None:
    import torch
    from pytorch_forecasting import TimeSeriesDataSet

    from tickercast.config import ModelParams

    spec = inputs.FeatureSpec.from_columns(list(curated.columns))
    frame = inputs.model_frame(curated, spec)
    parameters = TimeSeriesDataSet(
        frame, **inputs.dataset_kwargs(spec, ModelParams(max_encoder_length=10, horizon=1))
    ).get_parameters()
    # One symbol ends on Christmas Eve (Tuesday): the next trading day is Thursday 2024-12-26.
    first = sorted(frame["symbol"].unique())[0]
    ends = frame[(frame["symbol"] != first) | (frame["date"] <= "2024-12-24")]
    rows, info = inputs.prediction_rows(parameters, ends, 10)
    dataset = TimeSeriesDataSet.from_parameters(parameters, rows, predict=True, stop_randomization=True)
    by_symbol = info.set_index("symbol")["forecast_for"].astype(str)
    assert by_symbol[first] == "2024-12-26" and by_symbol.drop(first).eq("2025-01-02").all()

    # Independent reference: the decoder row built by hand with pandas' date accessors.
    tail = ends.groupby("symbol", sort=True).tail(10)
    future = tail.groupby("symbol", sort=True).tail(1).copy()
    future["date"] = pd.to_datetime(future["symbol"].map({first: "2024-12-26"}).fillna("2025-01-02"))
    future["time_idx"] += 1
    future["day_of_week"] = future["date"].dt.dayofweek.astype(float)
    future["day_of_month"] = future["date"].dt.day.astype(float)
    future["month"] = future["date"].dt.month.astype(float)
    future[inputs.TARGET] = 0.0
    rows = pd.concat([tail, future], ignore_index=True).sort_values(["symbol", "time_idx"])
    expected = TimeSeriesDataSet.from_parameters(parameters, rows, predict=True, stop_randomization=True)
    (x, _), (y, _) = (next(iter(d.to_dataloader(train=False, batch_size=8))) for d in (dataset, expected))
    for key in ("encoder_cont", "decoder_cont", "decoder_time_idx"):
        assert torch.equal(x[key], y[key]), key


def test_every_horizon_gets_a_decoder_row_on_the_exchange_calendar(curated: pd.DataFrame) -> None:
    from pytorch_forecasting import TimeSeriesDataSet

    from tickercast.config import ModelParams

    spec = inputs.FeatureSpec.from_columns(list(curated.columns))
    frame = inputs.model_frame(curated, spec)
    parameters = TimeSeriesDataSet(
        frame, **inputs.dataset_kwargs(spec, ModelParams(max_encoder_length=10, horizon=3))
    ).get_parameters()
    assert inputs.horizon_of(parameters) == 3
    first = sorted(frame["symbol"].unique())[0]
    ends = frame[(frame["symbol"] != first) | (frame["date"] <= "2024-12-24")]
    rows, info = inputs.prediction_rows(parameters, ends, 10)
    dataset = TimeSeriesDataSet.from_parameters(parameters, rows, predict=True, stop_randomization=True)
    mine = info[info["symbol"] == first]
    # Christmas Day and the weekend are skipped; the path starts after the origin.
    assert mine["forecast_for"].astype(str).tolist() == ["2024-12-26", "2024-12-27", "2024-12-30"]
    assert mine["horizon"].tolist() == [1, 2, 3]
    assert (mine["as_of"].astype(str) == "2024-12-24").all()
    x, _ = next(iter(dataset.to_dataloader(train=False, batch_size=8)))
    assert x["decoder_cont"].shape[1] == 3 and len(dataset) == frame["symbol"].nunique()
