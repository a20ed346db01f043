"""The bundle format: every file sealed by its hash, written atomically, loaded on CPU, verified first."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.factories import PYTHON, REPO, tickercast_env
from tickercast.errors import BundleError
from tickercast.model.bundle import ModelBundle

PREDICT_SCRIPT = """
import sys, json
import pandas as pd, torch
from tickercast.model.bundle import ModelBundle
bundle = ModelBundle.load(sys.argv[1])
assert all(p.device.type == "cpu" for p in bundle.network.parameters())
frame = pd.read_parquet(sys.argv[2])
out = bundle.predict(frame)
out.to_json(sys.argv[3], orient="records", date_format="iso", double_precision=15)
"""


def test_bundle_holds_every_file_with_its_hash(bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    files = {p.name for p in bundle_dir.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    assert {"weights.pt", "network.pkl", "hyperparameters.json", "features.json", "metadata.json"} == files
    assert manifest["format"] == "tickercast-bundle"
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    assert meta["run_id"] == "test-run" and meta["model_version"] is None
    # The encoder's rows plus the 20-row volume mean that the first of them needs.
    assert meta["max_encoder_length"] == 10 and meta["min_history_rows"] == 10 + 20 - 1
    assert meta["quantiles"] == [0.1, 0.5, 0.9]
    assert "sentiment" in meta["features"] and "mkt_gspc_ret" in meta["features"]
    assert not [p for p in bundle_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_predictions_are_reproduced_in_a_fresh_cpu_process(
    bundle_dir: Path, curated: pd.DataFrame, tmp_path: Path
) -> None:
    window = curated.groupby("symbol").tail(60).sample(frac=1.0, random_state=1)  # unsorted on purpose
    window.to_parquet(tmp_path / "window.parquet")
    subprocess.run(
        [
            PYTHON,
            "-c",
            PREDICT_SCRIPT,
            str(bundle_dir),
            str(tmp_path / "window.parquet"),
            str(tmp_path / "out.json"),
        ],
        cwd=REPO,
        env={**tickercast_env(tmp_path), "CUDA_VISIBLE_DEVICES": ""},
        check=True,
        capture_output=True,
    )
    fresh = pd.read_json(tmp_path / "out.json", orient="records")
    here = ModelBundle.load(bundle_dir).predict(window)
    assert list(here.columns) == ["symbol", "as_of", "forecast_for", "last_close", "p10", "p50", "p90"]
    assert sorted(here["symbol"]) == sorted(curated["symbol"].unique())
    np.testing.assert_allclose(fresh["p50"].to_numpy(), here["p50"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(fresh["p10"].to_numpy(), here["p10"].to_numpy(), rtol=1e-6)


def test_tampered_or_missing_file_is_rejected(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    ModelBundle.load(copy)  # intact copy loads

    weights = copy / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.pt was modified"):
        ModelBundle.load(copy)

    shutil.copy(bundle_dir / "weights.pt", weights)
    (copy / "network.pkl").unlink()
    with pytest.raises(BundleError, match=r"network\.pkl is missing"):
        ModelBundle.load(copy)

    with pytest.raises(BundleError, match="does not exist"):
        ModelBundle.load(tmp_path / "nowhere")


def test_update_metadata_reseals_the_manifest(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    meta = ModelBundle.update_metadata(copy, model_version="7")
    assert meta["model_version"] == "7"
    assert ModelBundle.load(copy).metadata["model_version"] == "7"  # hashes verified on load


def test_writing_over_a_bundle_replaces_it_whole(
    bundle_dir: Path, curated: pd.DataFrame, tmp_path: Path
) -> None:
    from tests.model.conftest import write_untrained_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    (copy / "stray.txt").write_text("left by an earlier bundle")
    write_untrained_bundle(curated, copy, seed=1)
    assert not (copy / "stray.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    before = ModelBundle.load(bundle_dir).predict(curated)
    after = ModelBundle.load(copy).predict(curated)
    assert not np.allclose(before["p50"], after["p50"])  # a different network, not the old files
