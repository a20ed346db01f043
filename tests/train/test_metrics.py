"""Leaderboard metrics on hand-made path records, against independent numpy references."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tickercast.train import metrics

ORIGINS = [dt.date(2024, 1, 2) + dt.timedelta(days=7 * i) for i in range(30)]


def _records(seed: int = 0, symbols: tuple[str, ...] = ("A", "B")) -> pd.DataFrame:
    """Records of naive (median 0) and ``sharp`` (knows half the return, narrower band) for h = 1, 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for symbol in symbols:
        close = 100.0 if symbol == "A" else 20.0
        for origin in ORIGINS:
            for h in (1, 2):
                actual = rng.normal(0, 0.01 * np.sqrt(h))
                band = 1.2816 * 0.01 * np.sqrt(h)
                common = {"symbol": symbol, "origin": origin, "horizon": h, "last_close": close}
                common |= {"forecast_for": origin + dt.timedelta(days=h), "vol": 0.01, "actual": actual}
                rows.append({**common, "model": "naive", "q10": -band, "q50": 0.0, "q90": band})
                m = actual / 2
                rows.append({**common, "model": "sharp", "q10": m - band / 2, "q50": m, "q90": m + band / 2})
    return pd.DataFrame(rows)


def _with_scale(records: pd.DataFrame, scale: float = 0.01) -> pd.DataFrame:
    return records.assign(scale=scale)


def test_metrics_match_an_independent_reference() -> None:
    records = _records()
    table = metrics.score(_with_scale(records), by=("horizon",))
    for (model, h), part in records.groupby(["model", "horizon"]):
        row = table[(table["model"] == model) & (table["horizon"] == h)].iloc[0]
        y, close = part["actual"].to_numpy(), part["last_close"].to_numpy()
        q = {c: part[c].to_numpy() for c in ("q10", "q50", "q90")}
        price_error = np.abs(close * np.exp(q["q50"]) - close * np.exp(y))
        pinballs = [
            np.mean(np.maximum(a * (y - q[c]), (a - 1) * (y - q[c])))
            for a, c in zip((0.1, 0.5, 0.9), ("q10", "q50", "q90"), strict=True)
        ]
        assert row["n"] == len(part)
        assert row["mae"] == pytest.approx(price_error.mean())
        assert row["pinball"] == pytest.approx(np.mean(pinballs))
        # Scaled CRPS (Rangapuram et al.): 2 x summed mean quantile loss / summed |y|.
        assert row["scaled_crps"] == pytest.approx(2 * np.mean(pinballs) * len(y) / np.abs(y).sum())
        assert row["coverage_80"] == pytest.approx(np.mean((y >= q["q10"]) & (y <= q["q90"])))
        assert row["width_80"] == pytest.approx(np.mean(np.exp(q["q90"]) - np.exp(q["q10"])))
        assert row["mase"] == pytest.approx(np.mean(np.abs(q["q50"] - y) / 0.01))


def test_mae_vs_naive_direction_and_ranking() -> None:
    board = metrics.leaderboard_table(_with_scale(_records()), ("horizon",), step=5)
    naive = board[board["model"] == "naive"]
    sharp = board[board["model"] == "sharp"]
    assert (naive["mae_vs_naive"] == 1).all()
    assert (naive["mae_vs_naive_lo"] == 1).all() and (naive["mae_vs_naive_hi"] == 1).all()
    # The random walk makes no directional call: half a hit each time.
    assert (naive["direction_accuracy"] == 0.5).all()
    assert (sharp["direction_accuracy"] == 1.0).all()
    # Knowing half the return halves the error; the bootstrap interval holds the point value.
    assert sharp["mae_vs_naive"].between(0.45, 0.55).all()
    assert (sharp["mae_vs_naive_lo"] <= sharp["mae_vs_naive"]).all()
    assert (sharp["mae_vs_naive"] <= sharp["mae_vs_naive_hi"]).all()
    assert (sharp["mae_vs_naive_hi"] < 1).all()
    # Ranked by scaled CRPS within each horizon: the sharper, right model first.
    for _, part in board.groupby("horizon"):
        assert list(part["rank"]) == [1, 2]
        assert list(part["model"]) == ["sharp", "naive"]
        assert part["scaled_crps"].is_monotonic_increasing
    assert list(board.columns) == ["horizon", "model", *metrics.METRICS, "rank"]


def test_per_ticker_groups_score_each_symbol_apart() -> None:
    rows = _with_scale(_records())
    by_ticker = metrics.leaderboard_table(rows, ("horizon", "symbol"), step=5)
    assert set(zip(by_ticker["horizon"], by_ticker["symbol"], strict=True)) == {
        (h, s) for h in (1, 2) for s in ("A", "B")
    }
    assert (by_ticker["n"] == len(ORIGINS)).all()
    a = metrics.score(rows[rows["symbol"] == "A"], ("horizon",))
    mine = by_ticker[by_ticker["symbol"] == "A"].set_index(["horizon", "model"])["mae"]
    assert a.set_index(["horizon", "model"])["mae"].sort_index().to_numpy() == pytest.approx(
        mine.sort_index().to_numpy()
    )


def test_common_rows_keep_cells_every_model_forecast_and_settled() -> None:
    records = _records()
    records.loc[(records["model"] == "sharp") & (records["origin"] == ORIGINS[0]), "q50"] = np.nan
    records.loc[records["origin"] == ORIGINS[1], "actual"] = np.nan
    rows = metrics.common_rows(records)
    assert not rows["origin"].isin(ORIGINS[:2]).any()
    assert len(rows) == len(records) - 2 * 2 * 2 * 2


def test_calibrated_columns_replace_the_raw_band() -> None:
    records = _records().assign(c_q10=-1.0, c_q50=0.0, c_q90=1.0)
    records.loc[0, "c_q10"] = np.nan  # a horizon without calibration keeps its raw quantile
    out = metrics.effective_quantiles(records)
    assert out.loc[1:, "q10"].eq(-1.0).all()
    assert out.loc[0, "q10"] == records.loc[0, "q10"]
    assert metrics.effective_quantiles(_records()).equals(_records())


def test_naive_scales_are_the_mean_absolute_h_day_log_change_up_to_the_origin() -> None:
    dates = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(8)]
    close = np.array([10, 11, 10, 12, 13, 12, 12, 15], dtype=float)
    closes = pd.DataFrame({"symbol": "A", "date": dates, "close": close})
    scales = metrics.naive_scales(closes, [dates[5]], horizon=2, window=3)
    log_close = np.log(close)
    for h in (1, 2):
        changes = np.abs(log_close[h:6] - log_close[: 6 - h])[-3:]
        got = scales.loc[scales["horizon"] == h, "scale"].item()
        assert got == pytest.approx(changes.mean())


def test_block_bootstrap_is_reproducible_and_brackets_the_ratio() -> None:
    rng = np.random.default_rng(1)
    model, naive = rng.gamma(2.0, 1.0, 200), rng.gamma(2.0, 1.0, 200)
    lo, hi = metrics.block_bootstrap_ratio(model, naive, block=6)
    assert (lo, hi) == metrics.block_bootstrap_ratio(model, naive, block=6)
    assert lo < model.sum() / naive.sum() < hi
    assert lo > 0.8 and hi < 1.25  # same distribution: the interval holds 1 and is not absurdly wide
    assert lo < 1 < hi
    assert np.isnan(metrics.block_bootstrap_ratio(model[:1], naive[:1], block=3)[0])


def test_block_length_covers_the_overlap_of_forecasts() -> None:
    assert metrics.block_length(27, horizon=1, step=5) == 3
    assert metrics.block_length(8, horizon=20, step=1) == 20
    assert metrics.block_length(1000, horizon=5, step=5) == 10


def test_scoring_needs_the_random_walk() -> None:
    records = _records()
    with pytest.raises(ValueError, match="naive"):
        metrics.score(_with_scale(records[records["model"] != "naive"]))
