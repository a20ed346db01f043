"""The model bundle: verified, self-contained, CPU-loadable, reproducible."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.factories import PYTHON, REPO, tickercast_env
from tickercast.train.bundle import BundleError, InsufficientHistoryError, ModelBundle, load_from_registry

pytestmark = pytest.mark.slow

PREDICT_SCRIPT = """
import sys, json
import pandas as pd, torch
from tickercast.train.bundle import ModelBundle
bundle = ModelBundle.load(sys.argv[1])
assert all(p.device.type == "cpu" for p in bundle.network.parameters())
frame = pd.read_parquet(sys.argv[2])
out = bundle.predict(frame)
out.to_json(sys.argv[3], orient="records", date_format="iso", double_precision=15)
"""


@pytest.fixture
def curated(trained: dict) -> pd.DataFrame:
    return pd.read_parquet(trained["root"] / "curated" / "features")


def test_bundle_holds_every_file_with_its_hash(trained: dict) -> None:
    bundle_dir: Path = trained["bundle"]
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    files = {p.name for p in bundle_dir.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == files
    assert {"weights.pt", "network.pkl", "hyperparameters.json", "features.json", "metadata.json"} <= files
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    assert meta["run_id"] == trained["run_id"]
    assert meta["model_version"] == "1"
    assert (
        meta["data_version"]
        == json.loads((trained["root"] / "curated" / "manifest.json").read_text())["data_version"]
    )
    assert meta["test_metrics"]["mae"] > 0
    assert meta["min_history_rows"] >= meta["max_encoder_length"] == 10
    assert "sentiment" in meta["features"] and "mkt_gspc_ret" in meta["features"]


def test_predictions_are_reproduced_in_a_fresh_cpu_process(
    trained: dict, curated: pd.DataFrame, tmp_path: Path
) -> None:
    window = curated.groupby("symbol").tail(60).sample(frac=1.0, random_state=1)  # unsorted on purpose
    window.to_parquet(tmp_path / "window.parquet")
    subprocess.run(
        [
            PYTHON,
            "-c",
            PREDICT_SCRIPT,
            str(trained["bundle"]),
            str(tmp_path / "window.parquet"),
            str(tmp_path / "out.json"),
        ],
        cwd=REPO,
        env={**tickercast_env(tmp_path), "CUDA_VISIBLE_DEVICES": ""},
        check=True,
        capture_output=True,
    )
    fresh = pd.read_json(tmp_path / "out.json", orient="records")
    here = ModelBundle.load(trained["bundle"]).predict(window)

    assert list(here.columns) == ["symbol", "as_of", "forecast_for", "last_close", "p10", "p50", "p90"]
    assert sorted(here["symbol"]) == sorted(curated["symbol"].unique())
    np.testing.assert_allclose(fresh["p50"].to_numpy(), here["p50"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(fresh["p10"].to_numpy(), here["p10"].to_numpy(), rtol=1e-6)
    assert (here["p10"] <= here["p50"]).all() and (here["p50"] <= here["p90"]).all()
    last = curated.sort_values("date").groupby("symbol").tail(1).set_index("symbol")
    for row in here.itertuples():
        assert row.last_close == last.loc[row.symbol, "close"]
        assert row.as_of == last.loc[row.symbol, "date"]
        assert row.forecast_for > row.as_of
        assert 0.7 < row.p50 / row.last_close < 1.3


def test_forecast_date_skips_weekends_and_exchange_holidays(trained: dict, curated: pd.DataFrame) -> None:
    # The synthetic calendar ends on Tuesday 2024-12-31; 2025-01-01 is a holiday.
    out = ModelBundle.load(trained["bundle"]).predict(curated)
    assert set(out["as_of"].astype(str)) == {"2024-12-31"}
    assert set(out["forecast_for"].astype(str)) == {"2025-01-02"}


def test_tampered_or_missing_file_is_rejected(trained: dict, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(trained["bundle"], copy)
    ModelBundle.load(copy)  # intact copy loads

    weights = copy / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights\.pt was modified"):
        ModelBundle.load(copy)

    shutil.copy(trained["bundle"] / "weights.pt", weights)
    (copy / "network.pkl").unlink()
    with pytest.raises(BundleError, match=r"network\.pkl is missing"):
        ModelBundle.load(copy)

    with pytest.raises(BundleError, match="does not exist"):
        ModelBundle.load(tmp_path / "nowhere")


def test_min_history_rows_is_exactly_enough(trained: dict, curated: pd.DataFrame) -> None:
    bundle = ModelBundle.load(trained["bundle"])
    need = bundle.metadata["min_history_rows"]
    ordered = curated.sort_values("date")
    enough = ordered.groupby("symbol").tail(need)
    pd.testing.assert_frame_equal(bundle.predict(enough), bundle.predict(curated))
    short = ordered.groupby("symbol").tail(need - 1)
    with pytest.raises(InsufficientHistoryError, match="not enough history"):
        bundle.predict(short)


def test_explain_gives_importance_shares_and_attention(trained: dict, curated: pd.DataFrame) -> None:
    bundle = ModelBundle.load(trained["bundle"])
    explained = bundle.explain(curated)
    assert set(explained) == set(curated["symbol"].unique())
    for info in explained.values():
        for key in ("encoder_importance", "decoder_importance", "static_importance"):
            assert sum(info[key].values()) == pytest.approx(1.0, abs=1e-5)
        assert "sentiment" in info["encoder_importance"]
        assert len(info["attention"]) == bundle.max_encoder_length


def test_registry_serves_the_same_bundle(trained: dict, curated: pd.DataFrame) -> None:
    bundle, version = load_from_registry("models:/tickercast-tft/1", trained["tracking_uri"])
    assert version == "1" and bundle.metadata["model_version"] == "1"
    local = ModelBundle.load(trained["bundle"])
    pd.testing.assert_frame_equal(bundle.predict(curated), local.predict(curated))
    with pytest.raises(BundleError, match="no registered model"):
        load_from_registry("models:/tickercast-tft/99", trained["tracking_uri"])
    with pytest.raises(BundleError, match="must look like"):
        load_from_registry("runs:/abc/bundle", trained["tracking_uri"])


def test_pyfunc_flavour_predicts_like_the_bundle(
    trained: dict, curated: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["tracking_uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{trained['run_id']}/pyfunc")
    expected = ModelBundle.load(trained["bundle"]).predict(curated)
    pd.testing.assert_frame_equal(model.predict(curated), expected)
