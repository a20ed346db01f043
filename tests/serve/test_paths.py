"""The forecast path: every horizon on the exchange calendar, calibrated bands, the horizon cut, skill."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import Trained, assert_error, copy_data, settings_for, wait_until
from tickercast.features.calendar import trading_days_from
from tickercast.files import write_json
from tickercast.model.bundle import CALIBRATION, ModelBundle
from tickercast.serve.app import create_app


@pytest.fixture(scope="module")
def client(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = copy_data(trained, tmp_path_factory.mktemp("paths"))
    with TestClient(create_app(settings_for(root, model_dir=trained.bundle))) as client:
        wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness")
        yield client


@pytest.fixture(scope="module")
def tickers(trained: Trained) -> list[str]:
    return sorted(trained.curated["symbol"].unique())


def test_predict_has_a_path_over_every_horizon_on_the_exchange_calendar(
    client: TestClient, trained: Trained, tickers
) -> None:
    horizon = trained.metadata["horizon"]
    assert horizon == 5
    for ticker in tickers:
        body = client.get("/predict", params={"ticker": ticker}).json()
        path = body["path"]
        assert [point["horizon"] for point in path] == list(range(1, horizon + 1))
        as_of = dt.date.fromisoformat(body["as_of"])
        expected = trading_days_from(as_of + dt.timedelta(days=1), horizon)
        assert [point["forecast_for"] for point in path] == [str(d) for d in expected.astype("datetime64[D]")]
        # The next-day fields are the path's first point.
        first = path[0]
        assert body["forecast_for"] == first["forecast_for"]
        assert body["quantiles"] == {"p10": first["p10"], "p50": first["p50"], "p90": first["p90"]}
        assert body["raw_quantiles"] == first["raw_quantiles"]
        for point in path:
            assert point["p10"] <= point["p50"] <= point["p90"]
            raw = point["raw_quantiles"]
            assert raw["p10"] <= raw["p50"] <= raw["p90"]
            band = point["band"]
            assert (band["lower"], band["upper"]) == (point["p10"], point["p90"])
            assert band == {**band, "level": 0.8, "calibrated": True}
        # The tiny model has no measurable skill: its median is shrunk to the random walk's.
        assert all(point["p50"] == pytest.approx(body["last_close"]) for point in path)
        widths = np.array([point["p90"] - point["p10"] for point in path])
        assert (np.diff(widths) > 0).all(), widths


def test_batch_answers_carry_the_path(client: TestClient, tickers) -> None:
    batch = client.get("/predict/batch", params={"tickers": ",".join(tickers[:2])}).json()["predictions"]
    assert [len(p["path"]) for p in batch] == [5, 5]
    assert batch[0] == client.get("/predict", params={"ticker": tickers[0]}).json()


def test_horizon_cuts_the_path_and_keeps_the_next_day_fields(client: TestClient, tickers) -> None:
    full = client.get("/predict", params={"ticker": tickers[0]}).json()
    cut = client.get("/predict", params={"ticker": tickers[0], "horizon": 2}).json()
    assert cut["path"] == full["path"][:2]
    assert {k: v for k, v in cut.items() if k != "path"} == {k: v for k, v in full.items() if k != "path"}
    assert client.get("/predict", params={"ticker": tickers[0], "horizon": 5}).json() == full


@pytest.mark.parametrize("horizon", [6, 20, 99])
def test_a_horizon_above_the_models_is_422_naming_it(client: TestClient, tickers, horizon: int) -> None:
    response = client.get("/predict", params={"ticker": tickers[0], "horizon": horizon})
    assert_error(response, 422, f"horizon {horizon}", "the served model forecasts 1 to 5 trading days ahead")


@pytest.mark.parametrize("horizon", ["0", "-1", "two", "1.5"])
def test_a_malformed_horizon_is_422(client: TestClient, tickers, horizon: str) -> None:
    response = client.get("/predict", params={"ticker": tickers[0], "horizon": horizon})
    body = assert_error(response, 422, "horizon")
    assert body["errors"][0]["loc"] == ["query", "horizon"]


def test_model_states_horizon_and_skill_per_horizon(client: TestClient, trained: Trained) -> None:
    body = client.get("/model").json()
    meta = trained.metadata
    assert body["horizon"] == meta["horizon"] == 5
    assert body["trained_through"] == meta["trained_through"]
    assert body["calibrated"] is True
    assert [h["horizon"] for h in body["horizons"]] == [1, 2, 3, 4, 5]
    for entry in body["horizons"]:
        figures = meta["calibration"][str(entry["horizon"])]
        assert entry["skill"] == figures["skill"]
        for key in ("shrink", "coverage_raw", "coverage_calibrated", "mae_vs_naive", "n"):
            assert entry[key] == pytest.approx(figures[key]), key
        assert entry["aci_alpha"] == pytest.approx(0.2)
    assert "no measurable skill over the random walk at 5 days" in body["horizons"][-1]["skill"]


def test_metrics_export_the_aci_alpha_of_every_horizon(client: TestClient, metric) -> None:
    text = client.get("/metrics").text
    for h in range(1, 6):
        assert metric(text, "tickercast_aci_alpha", horizon=str(h)) == pytest.approx(0.2)
        assert metric(text, "tickercast_band_settled", horizon=str(h)) == 0
        # Nothing settled yet: no coverage or width sample rather than a made-up number.
        assert metric(text, "tickercast_band_coverage", horizon=str(h)) is None
        assert metric(text, "tickercast_band_width", horizon=str(h)) is None


def test_a_bundle_without_calibration_serves_the_models_bands(
    trained: Trained, tmp_path: Path, running, tickers
) -> None:
    """Bundles from before calibration: raw quantiles served, bands flagged uncalibrated, /model says so."""
    root = copy_data(trained, tmp_path / "data")
    bundle = shutil.copytree(trained.bundle, tmp_path / "old-bundle")
    ModelBundle.update_metadata(bundle, calibration=None)
    (bundle / CALIBRATION).unlink()
    sealed = json.loads((bundle / "manifest.json").read_text())
    del sealed["files"][CALIBRATION]
    write_json(bundle / "manifest.json", sealed)
    client = running(create_app(settings_for(root, model_dir=bundle)))
    body = client.get("/predict", params={"ticker": tickers[0]}).json()
    assert body["calibrated"] is False
    assert body["quantiles"] == body["raw_quantiles"]
    assert all(point["band"]["calibrated"] is False for point in body["path"])
    model = client.get("/model").json()
    assert model["calibrated"] is False
    assert all("not calibrated" in h["skill"] and h["shrink"] is None for h in model["horizons"])
