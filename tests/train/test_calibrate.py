"""Training seals a calibrated, multi-horizon bundle whose calibration saw only held-out outcomes."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from tickercast.model.bundle import ModelBundle
from tickercast.model.calibration import apply_calibration


def test_the_bundle_carries_every_horizon_and_its_calibration(trained: dict) -> None:
    bundle = ModelBundle.load(trained["bundle"])
    assert bundle.horizon == 5
    calibration = bundle.calibration
    assert calibration is not None and sorted(calibration.horizons) == [1, 2, 3, 4, 5]
    meta = bundle.metadata
    assert meta["horizon"] == 5
    assert set(meta["calibration"]) == {"1", "2", "3", "4", "5"}
    for figures in meta["calibration"].values():
        assert 0.0 <= figures["shrink"] <= 1.0 and "random walk" in figures["skill"]
        assert figures["coverage_calibrated"] == pytest.approx(0.8, abs=0.1)


def test_training_saw_nothing_of_the_window_it_was_calibrated_on(trained: dict) -> None:
    meta = ModelBundle.load(trained["bundle"]).metadata
    trained_through = dt.date.fromisoformat(meta["trained_through"])
    test_start = pd.Timestamp(meta["split"]["test_start"]).date()
    assert trained_through < test_start


def test_calibrated_paths_are_ordered_and_widen_with_the_horizon(trained: dict) -> None:
    bundle = ModelBundle.load(trained["bundle"])
    curated = pd.read_parquet(trained["root"] / "curated" / "features")
    paths = apply_calibration(bundle.predict_paths(curated), bundle.calibration)
    assert (paths["c_q10"] <= paths["c_q50"]).all() and (paths["c_q50"] <= paths["c_q90"]).all()
    width = (paths["c_q90"] - paths["c_q10"]).groupby(paths["horizon"]).mean()
    assert width.is_monotonic_increasing
