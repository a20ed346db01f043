"""Inference over a bundle: next-day forecasts, explanations, backtests that never read the future."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tickercast.model.bundle import ModelBundle
from tickercast.model.inference import InsufficientHistoryError, walk_forward


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> ModelBundle:
    return ModelBundle.load(bundle_dir)


def test_each_symbol_is_forecast_from_its_last_row(bundle: ModelBundle, curated: pd.DataFrame) -> None:
    out = bundle.predict(curated.sample(frac=1.0, random_state=2))  # row order does not matter
    assert list(out.columns) == ["symbol", "as_of", "forecast_for", "last_close", "p10", "p50", "p90"]
    last = curated.sort_values("date").groupby("symbol").tail(1).set_index("symbol")
    assert sorted(out["symbol"]) == sorted(last.index)
    for row in out.itertuples():
        assert row.last_close == last.loc[row.symbol, "close"]
        assert row.as_of == last.loc[row.symbol, "date"]
        assert 0.7 < row.p50 / row.last_close < 1.3


def test_forecast_date_skips_weekends_and_exchange_holidays(
    bundle: ModelBundle, curated: pd.DataFrame
) -> None:
    # The synthetic calendar ends on Tuesday 2024-12-31; 2025-01-01 is a holiday.
    out = bundle.predict(curated)
    assert set(out["as_of"].astype(str)) == {"2024-12-31"}
    assert set(out["forecast_for"].astype(str)) == {"2025-01-02"}


def test_min_history_rows_is_exactly_enough(bundle: ModelBundle, curated: pd.DataFrame) -> None:
    need = bundle.metadata["min_history_rows"]
    ordered = curated.sort_values("date")
    enough = ordered.groupby("symbol").tail(need)
    pd.testing.assert_frame_equal(bundle.predict(enough), bundle.predict(curated))
    short = ordered.groupby("symbol").tail(need - 1)
    with pytest.raises(InsufficientHistoryError, match="not enough history"):
        bundle.predict(short)


def test_explain_gives_importance_shares_and_attention(bundle: ModelBundle, curated: pd.DataFrame) -> None:
    explained = bundle.explain(curated)
    assert set(explained) == set(curated["symbol"].unique())
    for info in explained.values():
        for key in ("encoder_importance", "decoder_importance", "static_importance"):
            assert sum(info[key].values()) == pytest.approx(1.0, abs=1e-5)
        assert "sentiment" in info["encoder_importance"]
        assert len(info["attention"]) == bundle.max_encoder_length


def test_backtests_do_not_depend_on_later_rows(bundle: ModelBundle, curated: pd.DataFrame) -> None:
    """Changing every row after a date leaves every forecast for that date and earlier unchanged."""
    start = int(curated["time_idx"].max()) - 20
    cut = start + 4
    changed = curated.copy()
    later = changed["time_idx"] > cut
    for col in ("open", "high", "low", "close", "ma_20", "ma_50", "ma_200", "mkt_gspc_ret", "sentiment"):
        changed.loc[later, col] = changed.loc[later, col] * 1.5
    before, _ = bundle.backtest(curated, start)
    after, _ = bundle.backtest(changed, start)
    cut_date = curated.loc[curated["time_idx"] == cut, "date"].iloc[0]
    keep = pd.to_datetime(before["date"]) <= pd.Timestamp(cut_date)
    assert keep.sum() == 3 * 5
    pd.testing.assert_frame_equal(before[keep], after[keep.to_numpy()])
    assert not np.allclose(before.loc[~keep, "p50"], after.loc[~keep.to_numpy(), "p50"])


def test_backtest_importance_is_a_share_per_group(bundle: ModelBundle, curated: pd.DataFrame) -> None:
    start = int(curated["time_idx"].max()) - 5
    out, importance = bundle.backtest(curated, start, interpret=True)
    assert len(out) == 3 * 6 and list(out.columns[:5]) == ["symbol", "date", "as_of", "last_close", "actual"]
    assert importance is not None
    for group in ("encoder", "decoder", "static"):
        assert sum(importance[group].values()) == pytest.approx(1.0, abs=1e-5)


def test_paths_cover_every_horizon_and_widen_with_it(bundle: ModelBundle, curated: pd.DataFrame) -> None:
    paths = bundle.predict_paths(curated)
    horizon = bundle.horizon
    assert horizon == 5
    assert all(h == list(range(1, horizon + 1)) for h in paths.groupby("symbol")["horizon"].apply(list))
    assert (paths["p10"] <= paths["p50"]).all() and (paths["p50"] <= paths["p90"]).all()
    width = (paths["q90"] - paths["q10"]).to_numpy().reshape(3, horizon)
    assert (np.diff(width, axis=1) >= -1e-12).all()
    first = paths[paths["horizon"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(first[bundle.predict(curated).columns], bundle.predict(curated))
    assert paths["forecast_for"].astype(str).tolist()[:5] == [
        "2025-01-02",
        "2025-01-03",
        "2025-01-06",
        "2025-01-07",
        "2025-01-08",
    ]


def test_walk_forward_reads_nothing_after_its_origin(bundle: ModelBundle, curated: pd.DataFrame) -> None:
    dates = sorted(curated["date"].unique())
    origins = dates[-30:-5:5]
    records = walk_forward(bundle, curated, origins)
    assert set(records["model"]) == {"tft"} and set(records["origin"]) == set(origins)
    assert len(records) == len(origins) * 3 * bundle.horizon
    # The realised return from the origin's close to the forecast day's close.
    close = curated.set_index(["symbol", "date"])["close"]
    row = records.iloc[7]
    expected = np.log(close[(row.symbol, row.forecast_for)] / close[(row.symbol, row.origin)])
    assert row.actual == pytest.approx(expected)
    assert row.last_close == close[(row.symbol, row.origin)]
    # Rows after an origin change only its outcomes, never its forecast.
    cut = origins[2]
    changed = curated.copy()
    later = changed["date"] > cut
    for col in ("open", "high", "low", "close", "ma_20", "rv_20", "sentiment"):
        changed.loc[later, col] = changed.loc[later, col] * 1.5
    again = walk_forward(bundle, changed, origins)
    upto = records["origin"] <= cut
    forecast = ["symbol", "origin", "horizon", "q10", "q50", "q90", "vol", "last_close"]
    pd.testing.assert_frame_equal(records.loc[upto, forecast], again.loc[upto.to_numpy(), forecast])
    assert not np.allclose(records.loc[~upto, "q50"], again.loc[~upto.to_numpy(), "q50"])
    with pytest.raises(ValueError, match="1 to 5 days ahead"):
        walk_forward(bundle, curated, origins, horizon=6)


def test_symbols_the_model_never_saw_are_forecast_as_separate_series(
    bundle: ModelBundle, curated: pd.DataFrame
) -> None:
    from tickercast.model.inference import predict_paths

    # Two tickers listed after the model was trained: each must be its own series, as when alone.
    symbols = sorted(curated["symbol"].unique())
    renamed = curated.assign(symbol=curated["symbol"].replace({symbols[0]: "ZZNEW", symbols[1]: "ZZNEWER"}))
    together = predict_paths(bundle, renamed).set_index(["symbol", "horizon"])
    for symbol in ("ZZNEW", "ZZNEWER"):
        alone = predict_paths(bundle, renamed[renamed["symbol"] == symbol]).set_index(["symbol", "horizon"])
        pd.testing.assert_frame_equal(together.loc[alone.index], alone)
    dates = sorted(renamed["date"].unique())
    origins = dates[-30:-5:5]
    both = walk_forward(bundle, renamed, origins).set_index(["symbol", "origin", "horizon"])
    for symbol in ("ZZNEW", "ZZNEWER"):
        alone = walk_forward(bundle, renamed[renamed["symbol"] == symbol], origins)
        alone = alone.set_index(["symbol", "origin", "horizon"])
        pd.testing.assert_frame_equal(both.loc[alone.index], alone)
