"""Serving fixtures: one tiny real model per test run, apps built on it, helpers to wait and to register."""

from __future__ import annotations

import json
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.factories import make_curated, train_tiny_model
from tickercast.config import Settings, load_settings

TINY_TICKERS = 3
TINY_DAYS = 320


@dataclass(frozen=True)
class Trained:
    """A data root with curated data, a registered champion (version 1) and its bundle folder."""

    root: Path
    bundle: Path

    @property
    def curated(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "curated" / "features").sort_values(["symbol", "date"])

    @property
    def data_version(self) -> str:
        return json.loads((self.root / "curated" / "manifest.json").read_text())["data_version"]

    @property
    def metadata(self) -> dict[str, Any]:
        return json.loads((self.bundle / "metadata.json").read_text())

    def raw_prices(self, ticker: str) -> pd.DataFrame:
        files = sorted((self.root / "raw" / "prices").glob("*.csv"))
        prices = pd.concat([pd.read_csv(f, dtype={"Date": str}) for f in files], ignore_index=True)
        prices = prices[prices["Symbol"] == ticker].drop_duplicates("Date", keep="last")
        return prices.sort_values("Date").reset_index(drop=True)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Train the tiny model once per test run (about 10 s) on a synthetic curated market."""
    root = tmp_path_factory.mktemp("serve-data")
    make_curated(root, tickers=TINY_TICKERS, days=TINY_DAYS)
    bundle = train_tiny_model(root, max_epochs=1)
    return Trained(root=root, bundle=bundle)


def settings_for(root: Path, **serve: Any) -> Settings:
    """Settings for an app on ``root`` (no registry polling unless asked)."""
    return load_settings(overrides={"data_root": root, "serve": {"reload_interval_s": 0, **serve}})


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def running():
    """Enter a TestClient for an app (lifespan on) and wait until it is ready; closes it after."""
    clients: list[TestClient] = []

    def start(app: FastAPI, ready: bool = True) -> TestClient:
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        if ready:
            wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness")
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_error(response, status: int, *fragments: str) -> dict[str, Any]:
    """An error response: the status, a JSON one-line ``detail`` naming the fragments, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and "\n" not in body["detail"]
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def copy_data(trained: Trained, dst: Path) -> Path:
    """A new data root holding only the curated data of ``trained`` (no registry)."""
    shutil.copytree(trained.root / "curated", dst / "curated")
    return dst


def register_bundle(root: Path, bundle: Path, *, champion: bool = True) -> str:
    """Log ``bundle`` as a run's artifact in ``root``'s MLflow store, register it and make it champion."""
    from tickercast.config import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
    from tickercast.train import registry

    tracking_uri = f"sqlite:///{(root / 'mlflow.db').resolve()}"
    client = registry.client_for(tracking_uri)
    experiment = client.get_experiment_by_name("serve-tests")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            "serve-tests", artifact_location=(root / "mlartifacts").resolve().as_uri()
        )
    )
    run_id = client.create_run(experiment_id).info.run_id
    client.log_artifacts(run_id, str(bundle), "bundle")
    client.set_terminated(run_id)
    version = registry.register_version(client, REGISTERED_MODEL_NAME, run_id, "bundle", {})
    if champion:
        client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version)
    return version


@pytest.fixture
def metric():
    """Read one sample of the text exposition: ``metric(text, name, **labels) -> float | None``."""

    def read(text: str, name: str, **labels: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return None

    return read
