"""The fast input path cuts exactly the batches pytorch-forecasting's dataset would, without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.model import reference
from tickercast import schema
from tickercast.model import inference, inputs, windows
from tickercast.model.bundle import ModelBundle

KEYS = (
    "encoder_cat",
    "encoder_cont",
    "encoder_target",
    "encoder_lengths",
    "decoder_cat",
    "decoder_cont",
    "decoder_target",
    "decoder_lengths",
    "decoder_time_idx",
    "groups",
    "target_scale",
)


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> ModelBundle:
    return ModelBundle.load(bundle_dir)


@pytest.fixture(scope="module")
def market(curated: pd.DataFrame) -> pd.DataFrame:
    """The fixture market plus a ticker the model never saw and missing trading days for another.

    The first symbol misses three days inside its last encoder window and several earlier ones (the
    dataset repeats the previous row there); ``ZZNEW`` is a copy of the second symbol's prices.
    """
    symbols = sorted(curated["symbol"].unique())
    gappy = curated[curated["symbol"] == symbols[0]].sort_values("date")
    drop = gappy.index[[-2, -5, -6, -40, -41, -42, -70]]
    new = curated[curated["symbol"] == symbols[1]].assign(symbol="ZZNEW")
    newer = curated[curated["symbol"] == symbols[2]].assign(symbol="ZZNEWER")
    return pd.concat([curated.drop(index=drop), new, newer], ignore_index=True)


def _assert_same_batch(fast: dict[str, torch.Tensor], slow: dict[str, torch.Tensor]) -> None:
    for key in KEYS:
        assert fast[key].dtype == slow[key].dtype, key
        assert fast[key].shape == slow[key].shape, key
        if fast[key].dtype.is_floating_point:
            torch.testing.assert_close(fast[key], slow[key], rtol=0, atol=1e-6, msg=key)
        else:
            assert torch.equal(fast[key], slow[key]), key


def test_prediction_batch_equals_the_datasets(bundle: ModelBundle, market: pd.DataFrame) -> None:
    rows, _ = inference.prediction_inputs(bundle, market)
    for part in reference.unseen_parts(bundle.dataset_parameters, rows):
        (slow,) = reference.dataset_batches(bundle, part, predict=True)
        series = windows.encode(bundle.layout, part)
        fast = windows.collate(bundle.layout, series, windows.prediction_windows(bundle.layout, series))
        _assert_same_batch(fast, slow)


def test_every_window_equals_the_datasets_with_gaps(bundle: ModelBundle, market: pd.DataFrame) -> None:
    """Outside predict mode (the backtest): every window, shortened decoders and gaps included."""
    rows = inputs.model_frame(market, bundle.spec)
    start = int(rows[schema.TIME_IDX].max()) - 45
    gappy = rows[rows[schema.SYMBOL] == sorted(rows[schema.SYMBOL].unique())[0]]
    assert gappy[schema.TIME_IDX].diff().max() > 1  # the case under test has gaps
    for part in reference.unseen_parts(bundle.dataset_parameters, rows):
        (slow,) = reference.dataset_batches(bundle, part, min_prediction_idx=start)
        series = windows.encode(bundle.layout, part)
        fast = windows.collate(bundle.layout, series, windows.all_windows(bundle.layout, series, start))
        _assert_same_batch(fast, slow)


def test_unseen_symbols_are_separate_series(bundle: ModelBundle, market: pd.DataFrame) -> None:
    """Two symbols the model never saw, cut together, give each the batch it gets alone."""
    rows, _ = inference.prediction_inputs(bundle, market)
    layout = bundle.layout
    together = windows.encode(layout, rows)
    batch = windows.collate(layout, together, windows.prediction_windows(layout, together))
    assert {"ZZNEW", "ZZNEWER"} <= set(together.symbols)
    for symbol in ("ZZNEW", "ZZNEWER"):
        alone = windows.encode(layout, rows[rows[schema.SYMBOL] == symbol])
        single = windows.collate(layout, alone, windows.prediction_windows(layout, alone))
        at = together.symbols.index(symbol)
        _assert_same_batch({k: v[at : at + 1] for k, v in batch.items()}, single)
    assert not torch.equal(
        batch["encoder_cont"][together.symbols.index("ZZNEW")],
        batch["encoder_cont"][together.symbols.index("ZZNEWER")],
    )


def test_forecasts_equal_the_dataset_path(bundle: ModelBundle, market: pd.DataFrame) -> None:
    rows, _ = inference.prediction_inputs(bundle, market)
    fast, fast_parts = inference.forecast_rows(bundle, rows, predict=True, interpret=True)
    slow, slow_parts = reference.forecast_rows(bundle, rows, predict=True, interpret=True)
    assert fast_parts is not None and slow_parts is not None
    key = [schema.SYMBOL, "step"]
    fast_sorted = fast.sort_values(key).reset_index(drop=True)
    slow_sorted = slow.sort_values(key).reset_index(drop=True)
    assert len(fast_sorted) == 5 * bundle.horizon
    pd.testing.assert_frame_equal(
        fast_sorted.drop(columns="sample"), slow_sorted.drop(columns="sample"), rtol=0, atol=1e-6
    )
    for part in ("static", "encoder", "decoder", "attention"):
        order_fast = fast[fast["step"] == 1].sort_values(schema.SYMBOL)["sample"].to_numpy()
        order_slow = slow[slow["step"] == 1].sort_values(schema.SYMBOL)["sample"].to_numpy()
        np.testing.assert_allclose(
            fast_parts[part][order_fast], slow_parts[part][order_slow], rtol=0, atol=1e-6
        )


def test_predict_paths_equal_the_dataset_path(
    bundle: ModelBundle, market: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = inference.predict_paths(bundle, market)
    monkeypatch.setattr(inference, "forecast_rows", reference.forecast_rows)
    slow = inference.predict_paths(bundle, market)
    assert fast[["q10", "q50", "q90"]].notna().all().all()
    # Log returns to 1e-6; prices (close * exp(q)) to 1e-6 of the price. The batches differ in
    # composition (unseen symbols no longer get passes of their own), which moves float32 sums.
    pd.testing.assert_frame_equal(fast, slow, rtol=1e-6, atol=1e-6)


def test_backtest_equals_the_dataset_path(
    bundle: ModelBundle, market: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = int(market["time_idx"].max()) - 30
    fast, fast_importance = inference.backtest(bundle, market, start, interpret=True)
    origins = sorted(market["date"].unique())[-30:-3:4]
    fast_walk = inference.walk_forward(bundle, market, origins)
    monkeypatch.setattr(inference, "forecast_rows", reference.forecast_rows)
    slow, slow_importance = inference.backtest(bundle, market, start, interpret=True)
    slow_walk = inference.walk_forward(bundle, market, origins)
    assert len(fast) == len(slow) > 5 * 25
    pd.testing.assert_frame_equal(fast, slow, rtol=1e-6, atol=1e-6)
    assert fast_importance is not None and slow_importance is not None
    for group in ("encoder", "decoder", "static"):
        for name, share in fast_importance[group].items():
            assert share == pytest.approx(slow_importance[group][name], abs=1e-6)
    assert len(fast_walk) == len(slow_walk) > 0
    pd.testing.assert_frame_equal(fast_walk, slow_walk, rtol=1e-6, atol=1e-6)


def test_a_layout_the_path_cannot_reproduce_is_refused(bundle: ModelBundle) -> None:
    parameters = {**bundle.dataset_parameters, "lags": {"log_return": [1]}}
    with pytest.raises(ValueError, match="does not reproduce: lags"):
        windows.Layout.from_parameters(parameters)
