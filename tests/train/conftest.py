"""Fixtures of the training tests: one planted-signal market and one model trained on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factories import make_curated, run_train, write_params

# A planted signal strong enough for a tiny model to find in a few epochs on 6 tickers.
PLANTED_KAPPA = 0.04
PLANTED_EPOCHS = 6


@pytest.fixture(scope="session")
def planted_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic market with a planted sentiment signal and its curated dataset (no model)."""
    return make_curated(tmp_path_factory.mktemp("planted"), tickers=6, days=520, seed=3, kappa=PLANTED_KAPPA)


@pytest.fixture(scope="session")
def trained(planted_root: Path) -> dict:
    """A tiny TFT trained through the CLI on the planted market: the registry's first champion."""
    params = write_params(planted_root / "tiny-params.yaml")
    result = run_train(
        planted_root, "--devices", "1", "--params", str(params), "--max-epochs", str(PLANTED_EPOCHS)
    )
    run_id = json.loads((planted_root / "checkpoints" / "latest.json").read_text())["run_id"]
    return {
        "root": planted_root,
        "run_id": run_id,
        "bundle": planted_root / "bundles" / run_id,
        "tracking_uri": f"sqlite:///{(planted_root / 'mlflow.db').resolve()}",
        "stdout": result.stdout + result.stderr,
    }
