"""Start-up and reload: not ready until loaded, new champions swapped in, broken ones refused."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.serve.conftest import Trained, assert_error, copy_data, register_bundle, settings_for, wait_until
from tickercast.model.bundle import ModelBundle
from tickercast.serve.app import create_app


def test_not_ready_until_the_model_is_loaded(trained: Trained, tmp_path: Path, running) -> None:
    """A bundle folder that does not exist yet: alive, not ready, no forecasts; ready once it appears."""
    root = copy_data(trained, tmp_path)
    bundle = tmp_path / "bundle"
    client = running(create_app(settings_for(root, model_dir=bundle, reload_interval_s=0.2)), ready=False)

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert client.get("/healthz").status_code == 200
    assert_error(client.get("/predict", params={"ticker": "KAKX"}), 503, "/readyz")
    assert_error(client.get("/tickers"), 503)
    wait_until(
        lambda: "does not exist" in (client.get("/readyz").json()["detail"] or ""), what="the load error"
    )

    shutil.copytree(trained.bundle, bundle)
    wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness after the bundle appeared")
    assert client.get("/model").json()["run_id"] == trained.metadata["run_id"]
    assert client.get("/tickers").json()["count"] > 0


def test_tampered_bundle_is_never_served(trained: Trained, tmp_path: Path, running) -> None:
    root = copy_data(trained, tmp_path)
    bundle = shutil.copytree(trained.bundle, tmp_path / "bundle")
    with (bundle / "weights.pt").open("ab") as handle:
        handle.write(b"\0")
    client = running(create_app(settings_for(root, model_dir=bundle)), ready=False)
    wait_until(lambda: "modified" in (client.get("/readyz").json()["detail"] or ""), what="the hash failure")
    assert client.get("/readyz").status_code == 503
    assert_error(client.get("/predict", params={"ticker": "KAKX"}), 503)


def test_new_champion_is_swapped_in_and_a_broken_one_is_refused(
    trained: Trained, tmp_path: Path, running, metric
) -> None:
    root = copy_data(trained, tmp_path)
    assert register_bundle(root, trained.bundle) == "1"
    client = running(create_app(settings_for(root, reload_interval_s=0.2)))
    ticker = client.get("/tickers").json()["tickers"][0]
    first = client.get("/predict", params={"ticker": ticker}).json()
    assert first["model_version"] == "1"
    assert client.get("/model").json()["source"] == "models:/tickercast-tft@champion"
    app_state = client.app.state  # type: ignore[attr-defined]
    old = app_state.holder.current

    # A good new champion: picked up without a restart, the old snapshot untouched for whoever holds it.
    good = shutil.copytree(trained.bundle, tmp_path / "good")
    ModelBundle.update_metadata(good, run_id="second-run")
    assert register_bundle(root, good) == "2"
    wait_until(lambda: client.get("/model").json()["model_version"] == "2", what="version 2")
    assert client.get("/model").json()["run_id"] == "second-run"
    second = client.get("/predict", params={"ticker": ticker}).json()
    assert second["model_version"] == "2"
    assert second["predicted_price"] == first["predicted_price"]  # same weights, same forecast
    assert old.model_version == "1" and old.forecast(ticker).p50 == first["predicted_price"]
    assert app_state.holder.current is not old

    # A broken champion (a file changed after sealing): refused, counted, version 2 keeps serving.
    broken = shutil.copytree(trained.bundle, tmp_path / "broken")
    with (broken / "network.pkl").open("ab") as handle:
        handle.write(b"tampered")
    assert register_bundle(root, broken) == "3"
    wait_until(
        lambda: (metric(client.get("/metrics").text, "tickercast_model_reload_failures_total") or 0) >= 1,
        what="a counted reload failure",
    )
    assert client.get("/readyz").status_code == 200
    assert client.get("/model").json()["model_version"] == "2"
    assert client.get("/predict", params={"ticker": ticker}).json()["model_version"] == "2"
    text = client.get("/metrics").text
    assert metric(text, "tickercast_model_reloads_total") == 1
    assert metric(text, "tickercast_model_info", model_version="2", run_id="second-run") == 1
    assert metric(text, "tickercast_model_info", model_version="1") is None


def test_new_curated_data_is_picked_up_with_the_same_model(trained: Trained, tmp_path: Path, running) -> None:
    from tests.factories import write_curated

    root = copy_data(trained, tmp_path)
    client = running(create_app(settings_for(root, model_dir=trained.bundle, reload_interval_s=0.2)))
    before = client.get("/tickers").json()
    curated = trained.curated
    last_date = curated["date"].max()
    write_curated(root, curated[curated["date"] < last_date], data_version="older-slice")
    wait_until(lambda: client.get("/model").json()["serving_data_version"] == "older-slice", what="new data")
    after = client.get("/tickers").json()
    assert after["as_of"] < before["as_of"]
    ticker = after["tickers"][0]
    assert client.get("/predict", params={"ticker": ticker}).json()["data_version"] == "older-slice"
