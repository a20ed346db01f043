"""Inference over a bundle: next-day forecasts, explanations, backtests that never read the future."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tickercast.model.bundle import ModelBundle
from tickercast.model.inference import InsufficientHistoryError


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
