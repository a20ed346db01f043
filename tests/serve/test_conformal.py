"""Adaptive conformal inference in the service: served forecasts settle as closes arrive, across restarts."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.factories import write_curated
from tests.serve.conftest import Trained, copy_data, settings_for, wait_until
from tickercast.serve import conformal
from tickercast.serve.app import create_app
from tickercast.serve.conformal import ConformalStore

DAY = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)]  # Monday to Friday


def pending(symbol: str, horizon: int, lower: float, upper: float, origin: dt.date = DAY[0]) -> dict:
    return {
        "symbol": symbol,
        "origin": origin,
        "horizon": horizon,
        "forecast_for": DAY[DAY.index(origin) + horizon],
        "last_close": 100.0,
        "p50": 100.0,
        "lower": lower,
        "upper": upper,
    }


def closes(rows: list[tuple[str, dt.date, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "date", "close"])


# --- the store on hand-made forecasts ------------------------------------------------------------


def test_forecasts_settle_when_their_close_arrives_and_move_alpha(tmp_path: Path) -> None:
    store = ConformalStore(tmp_path / "serving" / "aci_state.json")
    forecasts = [pending(s, 1, 95, 105) for s in "AB"] + [pending(s, 2, 90, 110) for s in "AB"]
    store.record("m", pd.DataFrame(forecasts))
    # Closes up to day 1: both one-day forecasts settle (A inside, B outside); two-day ones wait.
    assert store.settle(closes([("A", DAY[1], 101.0), ("B", DAY[1], 107.0)])) == {"m": 2}
    model = store.model("m")
    assert [(p.symbol, p.horizon) for p in model.pending] == [("A", 2), ("B", 2)]
    assert [s.inside for s in model.settled[1]] == [True, False]
    # One step for the day's cross-section: alpha += gamma * (0.2 - miss rate 0.5).
    # Horizons without a step yet are left out: they serve the calibration's own qhat.
    assert store.alpha_map("m", [1, 2]) == pytest.approx({1: 0.2 + 0.005 * (0.2 - 0.5)})
    assert [stats.alpha for stats in store.stats("m", [1, 2])] == pytest.approx([0.1985, 0.2])
    (h1, h2) = store.stats("m", [1, 2])
    assert (h1.coverage, h1.width, h1.window, h1.settled) == (0.5, pytest.approx(0.1), 2, 2)
    assert (h2.coverage, h2.width, h2.window) == (None, None, 0)
    # Settling again on the same data changes nothing.
    assert store.settle(closes([("A", DAY[1], 101.0), ("B", DAY[1], 107.0)])) == {}


def test_the_state_round_trips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "serving" / "aci_state.json"
    store = ConformalStore(path)
    store.record("m", pd.DataFrame([pending("A", 1, 95, 105), pending("A", 2, 90, 110)]))
    store.settle(closes([("A", DAY[1], 120.0)]))
    assert not path.exists()  # nothing is written until asked
    store.save()
    again = ConformalStore(path)
    assert again.state == store.state
    assert again.alpha_map("m", [1]) == store.alpha_map("m", [1]) != {}
    # It goes on settling after the restart.
    assert again.settle(closes([("A", DAY[1], 120.0), ("A", DAY[2], 100.0)])) == {"m": 1}
    assert again.model("m").pending == []


def test_a_forecast_whose_day_passed_without_a_close_is_dropped(tmp_path: Path) -> None:
    store = ConformalStore(None)
    store.record("m", pd.DataFrame([pending("A", 1, 95, 105), pending("A", 3, 90, 110)]))
    # A has rows up to day 2 but none on day 1 (a gap): the one-day forecast can never settle.
    assert store.settle(closes([("A", DAY[0], 100.0), ("A", DAY[2], 100.0)])) == {}
    assert [p.horizon for p in store.model("m").pending] == [3]


def test_a_new_snapshot_replaces_the_same_forecasts_and_keeps_older_unsettled_ones() -> None:
    store = ConformalStore(None)
    store.record("m", pd.DataFrame([pending("A", 1, 95, 105), pending("A", 2, 90, 110)]))
    store.record("m", pd.DataFrame([pending("A", 1, 96, 104), pending("A", 1, 96, 104, origin=DAY[1])]))
    kept = [(p.origin, p.horizon, p.lower) for p in store.model("m").pending]
    assert sorted(kept) == [(DAY[0], 1, 96), (DAY[0], 2, 90), (DAY[1], 1, 96)]


def test_the_rolling_window_keeps_the_last_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conformal, "SETTLED_WINDOW", 3)
    store = ConformalStore(None)
    store.record("m", pd.DataFrame([pending(s, 1, 95, 105) for s in "ABCDE"]))
    store.settle(closes([(s, DAY[1], 100.0 if s in "AB" else 200.0) for s in "ABCDE"]))
    (stats,) = store.stats("m", [1])
    assert (stats.window, stats.settled, stats.coverage) == (3, 5, 0.0)


def test_an_unreadable_state_file_starts_fresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "aci_state.json"
    path.write_text('{"version": 1, "models": {"m": {"aci": "not a state"}}}')
    with caplog.at_level(logging.WARNING, logger="tickercast.serve.conformal"):
        store = ConformalStore(path)
        assert store.state.models == {}
    assert "unreadable" in caplog.text and str(path) in caplog.text
    store.record("m", pd.DataFrame([pending("A", 1, 95, 105)]))
    store.save()
    assert json.loads(path.read_text())["models"]["m"]["pending"][0]["symbol"] == "A"


def test_old_model_versions_are_dropped_beyond_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conformal, "MAX_MODELS", 2)
    store = ConformalStore(None)
    for key in ("v1", "v2", "v3"):
        store.model(key)
    assert sorted(store.state.models) == ["v2", "v3"]


# --- the service on a real tiny model ------------------------------------------------------------


def served_bands(client: TestClient, tickers: list[str]) -> pd.DataFrame:
    rows = []
    for ticker in tickers:
        for point in client.get("/predict", params={"ticker": ticker}).json()["path"]:
            band = point["band"]
            rows.append(
                (ticker, point["horizon"], point["forecast_for"], point["p50"], band["lower"], band["upper"])
            )
    return pd.DataFrame(rows, columns=["symbol", "horizon", "forecast_for", "p50", "lower", "upper"])


def test_served_forecasts_settle_on_new_data_and_across_a_restart(
    trained: Trained, tmp_path: Path, metric
) -> None:
    root = copy_data(trained, tmp_path)
    state_file = root / "serving" / "aci_state.json"
    curated = trained.curated
    dates = sorted(curated["date"].unique())
    tickers = sorted(curated["symbol"].unique())
    first, second = dates[-6], dates[-4]  # two trading days apart; the full data ends 3 days later
    write_curated(root, curated[curated["date"] <= first], data_version="first")
    actual = curated.assign(forecast_for=curated["date"].astype(str)).set_index(["symbol", "forecast_for"])

    settings = settings_for(root, model_dir=trained.bundle, reload_interval_s=0.2)
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness")
        bands = served_bands(client, tickers)
        assert state_file.is_file()
        saved = json.loads(state_file.read_text())["models"]["version-1"]
        assert len(saved["pending"]) == len(tickers) * 5

        # New curated data two trading days on: a reload settles the one- and two-day forecasts.
        write_curated(root, curated[curated["date"] <= second], data_version="second")
        wait_until(lambda: client.get("/model").json()["serving_data_version"] == "second", what="new data")
        text = client.get("/metrics").text
        for h in (1, 2):
            rows = bands[bands["horizon"] == h]
            keys = list(zip(rows["symbol"], rows["forecast_for"], strict=True))
            close = actual.loc[keys, "close"].to_numpy()
            inside = (close >= rows["lower"].to_numpy()) & (close <= rows["upper"].to_numpy())
            assert metric(text, "tickercast_band_settled", horizon=str(h)) == len(tickers)
            assert metric(text, "tickercast_band_coverage", horizon=str(h)) == pytest.approx(inside.mean())
            width = ((rows["upper"] - rows["lower"]) / rows["p50"]).mean()
            assert metric(text, "tickercast_band_width", horizon=str(h)) == pytest.approx(width)
            alpha = 0.2 + 0.005 * (0.2 - (1 - inside.mean()))
            assert metric(text, "tickercast_aci_alpha", horizon=str(h)) == pytest.approx(alpha)
            assert client.get("/model").json()["horizons"][h - 1]["aci_alpha"] == pytest.approx(alpha)
        for h in (3, 4, 5):
            assert metric(text, "tickercast_band_settled", horizon=str(h)) == 0
            assert metric(text, "tickercast_aci_alpha", horizon=str(h)) == pytest.approx(0.2)

    # The service stops; the data moves on three more days; a new instance reads the state file and
    # settles what both earlier snapshots served.
    write_curated(root, curated, data_version="full")
    with TestClient(create_app(settings_for(root, model_dir=trained.bundle))) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness after the restart")
        text = client.get("/metrics").text
        settled = {h: metric(text, "tickercast_band_settled", horizon=str(h)) for h in range(1, 6)}
        # Day 1..3 from the second origin and day 3..5 from the first: six per horizon up to 3, three after.
        n = len(tickers)
        assert settled == {1: 2 * n, 2: 2 * n, 3: 2 * n, 4: n, 5: n}
        for h in range(1, 6):
            coverage = metric(text, "tickercast_band_coverage", horizon=str(h))
            assert coverage is not None and 0 <= coverage <= 1
    state = json.loads(state_file.read_text())["models"]["version-1"]
    origins = sorted({(p["origin"], p["horizon"]) for p in state["pending"]})
    # Left waiting: the latest snapshot's five days and the second one's days 4 and 5.
    last = str(dates[-1])
    assert origins == sorted([(last, h) for h in range(1, 6)] + [(str(second), 4), (str(second), 5)])
    assert state["settled_total"] == {"1": 2 * n, "2": 2 * n, "3": 2 * n, "4": n, "5": n}
