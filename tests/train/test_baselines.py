"""Baselines of the backtest: the truth they are scored on, the random walks on a pure random walk,
and every baseline forecasting from rows up to its origin only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.factories import make_curated
from tickercast.features.calendar import trading_days_from
from tickercast.train import baselines, metrics
from tickercast.train.backtest import audit_cutoff, choose_origins, trading_dates

DAILY_VOL = 0.01


def random_walk(tickers: int = 25, days: int = 800, seed: int = 11) -> pd.DataFrame:
    """Closes of independent Gaussian random walks without drift on the exchange calendar."""
    rng = np.random.default_rng(seed)
    dates = trading_days_from(dt.date(2020, 1, 2), days).astype(dt.date)
    parts = []
    for i in range(tickers):
        close = 50.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, DAILY_VOL, days)))
        parts.append(pd.DataFrame({"symbol": f"T{i:02d}", "date": dates, "close": close}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def walk() -> pd.DataFrame:
    return random_walk()


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = make_curated(tmp_path_factory.mktemp("baselines"), tickers=3, days=330, seed=4, kappa=0.0)
    return pd.read_parquet(root / "curated" / "features")


def _scored(records: pd.DataFrame, curated: pd.DataFrame, origins: list, horizon: int) -> pd.DataFrame:
    rows = metrics.common_rows(records)
    rows = rows.merge(
        metrics.naive_scales(baselines.closes(curated), origins, horizon), on=["symbol", "origin", "horizon"]
    )
    return metrics.leaderboard_table(rows, ("horizon",), step=5)


def test_truth_is_the_log_return_to_the_h_th_trading_day() -> None:
    dates = trading_days_from(dt.date(2024, 6, 28), 6).astype(dt.date)  # spans 4 July
    assert dt.date(2024, 7, 4) not in set(dates)
    curated = pd.DataFrame({"symbol": "A", "date": dates, "close": [10.0, 11, 12, 13, 14, 15]})
    rows = baselines.origin_rows(curated, [dates[1]], horizon=3)
    assert list(rows["forecast_for"]) == list(dates[2:5])
    assert rows["actual"].to_numpy() == pytest.approx(np.log(np.array([12.0, 13, 14]) / 11))
    assert (rows["last_close"] == 11).all()
    # A target beyond the data is unsettled, not dropped.
    late = baselines.origin_rows(curated, [dates[4]], horizon=3)
    assert late["actual"].isna().sum() == 2


def test_random_walks_on_a_random_walk(walk: pd.DataFrame) -> None:
    origins = choose_origins(trading_dates(walk), count=40, step=5, horizon=5)
    records = pd.concat(
        [baselines.naive(walk, origins, 5), baselines.drift(walk, origins, 5)], ignore_index=True
    )
    naive = records[records["model"] == "naive"]
    assert (naive["q50"] == 0).all()
    board = _scored(records, walk, origins, 5)
    drift = board[board["model"] == "drift"]
    # Without a drift to find, estimating one costs little and gains nothing.
    assert drift["mae_vs_naive"].between(0.97, 1.04).all()
    # Empirical bands of past h-day returns keep their 80% promise on the process they came from.
    assert board["coverage_80"].between(0.74, 0.86).all(), board[["horizon", "model", "coverage_80"]]
    # The band widens like sqrt(h) on a random walk.
    width = board[board["model"] == "naive"].set_index("horizon")["width_80"]
    assert width[5] / width[1] == pytest.approx(np.sqrt(5), rel=0.15)


def test_drift_and_bands_from_the_window_before_the_origin(walk: pd.DataFrame) -> None:
    origin = trading_dates(walk)[-10]
    one = walk[walk["symbol"] == "T03"]
    records = baselines.drift(one, [origin], 3)
    y = np.log(one.loc[one["date"] <= origin, "close"].to_numpy())[-baselines.HISTORY_WINDOW :]
    daily = (y[-1] - y[0]) / (len(y) - 1)
    for h in (1, 2, 3):
        row = records[records["horizon"] == h].iloc[0]
        assert row["q50"] == pytest.approx(h * daily)
        returns = y[h:] - y[:-h]
        p10, p50, p90 = np.percentile(returns, [10, 50, 90])
        assert row["q10"] == pytest.approx(h * daily + p10 - p50)
        assert row["q90"] == pytest.approx(h * daily + p90 - p50)


def test_statistical_models_give_path_records(synth: pd.DataFrame) -> None:
    origins = choose_origins(trading_dates(synth), count=3, step=5, horizon=3, min_history=60)
    records = baselines.auto_ets(synth, origins, 3)
    assert list(records.columns) == list(baselines.PATH_COLUMNS)
    assert len(records) == 3 * 3 * 3
    assert (records["q10"] <= records["q50"]).all() and (records["q50"] <= records["q90"]).all()
    assert records["actual"].notna().all() and records["vol"].notna().all()
    assert (records["forecast_for"] > records["origin"]).all()


def test_a_ticker_listed_days_before_an_origin_is_left_unforecast(walk: pd.DataFrame) -> None:
    origin = trading_dates(walk)[-10]
    listed = walk[walk["symbol"] == "T01"].copy()
    listed = listed[listed["date"] > trading_dates(walk)[-14]].assign(symbol="NEW")  # 4 closes by then
    market = pd.concat([walk[walk["symbol"] == "T00"], listed], ignore_index=True)
    records = baselines.auto_ets(market, [origin], 2)
    assert len(records) == 2 and records["q50"].notna().all()
    assert set(records["symbol"]) == {"T00"}  # no record: scored by no model (common rows)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(baselines.BASELINES))
def test_every_baseline_reads_only_rows_up_to_its_origin(synth: pd.DataFrame, name: str) -> None:
    origins = choose_origins(trading_dates(synth), count=2, step=10, horizon=2, min_history=60)
    forecaster = baselines.BASELINES[name]
    records = forecaster(synth, origins, 2)
    assert set(records["origin"]) == set(origins)
    assert (records["model"] == name).all()
    assert (records["q10"] <= records["q90"]).all()
    audit_cutoff(name, forecaster, synth, records, origins, 2)


def test_lightgbm_trains_on_targets_settled_by_the_origin(synth: pd.DataFrame, tmp_path: Path) -> None:
    origins = choose_origins(trading_dates(synth), count=1, step=1, horizon=2, min_history=60)
    records = baselines.lightgbm(synth, origins, 2)
    assert set(records["horizon"]) == {1, 2}
    assert records["symbol"].nunique() == 3
    assert (records["q10"] <= records["q50"]).all() and (records["q50"] <= records["q90"]).all()
    # The same forecast from data cut at the origin: nothing after it was used.
    audit_cutoff("lightgbm", baselines.lightgbm, synth, records, origins, 2)
