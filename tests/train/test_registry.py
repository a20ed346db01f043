"""The registry: the promotion gate, the champion alias, registered bundles and the pyfunc flavour."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.factories import run_train, write_params
from tickercast.errors import BundleError
from tickercast.model.bundle import ModelBundle
from tickercast.train.gate import MAE_VS_NAIVE_TOLERANCE, SCALED_CRPS_TOLERANCE
from tickercast.train.registry import champion_version, decide_promotion, load_from_registry


@pytest.fixture
def curated(trained: dict) -> pd.DataFrame:
    return pd.read_parquet(trained["root"] / "curated" / "features")


# The one-window rule: the gate's fallback when the backtest cannot compare (no champion, an
# unusable one, or one that saw the whole held-out window). The backtest rule is in test_gate.py.


def test_gate_promotes_when_there_is_no_champion() -> None:
    decision = decide_promotion(1.5, None, None)
    assert decision.promoted and decision.reason == "no champion yet"


def test_gate_promotes_an_equal_or_better_model_and_keeps_the_champion_otherwise() -> None:
    assert decide_promotion(1.0, 1.0, "3").promoted
    assert decide_promotion(0.9, 1.0, "3").promoted
    worse = decide_promotion(1.01, 1.0, "3")
    assert not worse.promoted
    assert "champion v3's 1.0000" in worse.reason and "1.0100" in worse.reason


def test_gate_never_promotes_a_model_with_a_non_finite_mae() -> None:
    assert not decide_promotion(math.nan, None, None).promoted
    assert not decide_promotion(math.inf, 1.0, "1").promoted


def test_gate_replaces_a_champion_that_cannot_be_evaluated() -> None:
    decision = decide_promotion(2.0, None, "4")
    assert decision.promoted and "could not be evaluated" in decision.reason


@pytest.mark.slow
def test_training_seals_its_bundle_with_the_run_and_version(trained: dict) -> None:
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


@pytest.mark.slow
def test_registry_serves_the_same_bundle(trained: dict, curated: pd.DataFrame) -> None:
    bundle, version = load_from_registry("models:/tickercast-tft/1", trained["tracking_uri"])
    assert version == "1" and bundle.metadata["model_version"] == "1"
    local = ModelBundle.load(trained["bundle"])
    pd.testing.assert_frame_equal(bundle.predict(curated), local.predict(curated))
    with pytest.raises(BundleError, match="no registered model"):
        load_from_registry("models:/tickercast-tft/99", trained["tracking_uri"])
    with pytest.raises(BundleError, match="must look like"):
        load_from_registry("runs:/abc/bundle", trained["tracking_uri"])


@pytest.mark.slow
def test_pyfunc_flavour_predicts_like_the_bundle(
    trained: dict, curated: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["tracking_uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{trained['run_id']}/pyfunc")
    expected = ModelBundle.load(trained["bundle"]).predict(curated)
    pd.testing.assert_frame_equal(model.predict(curated), expected)


@pytest.mark.slow
def test_champion_version_names_the_alias_or_none(trained: dict) -> None:
    assert champion_version(trained["tracking_uri"]) is not None
    assert champion_version(trained["tracking_uri"], name="no-such-model") is None


@pytest.mark.slow
def test_gate_keeps_the_champion_when_the_new_model_is_worse(trained: dict) -> None:
    root = trained["root"]
    client = MlflowClient(trained["tracking_uri"])
    champion = client.get_model_version_by_alias("tickercast-tft", "champion")
    # One epoch at a negligible learning rate: an untrained network, no better than naive.
    params = write_params(root / "untrained.yaml", learning_rate=1e-5, dropout=0.0)
    run_train(root, "--devices", "1", "--params", str(params), "--max-epochs", "1")
    new_run_id = json.loads((root / "checkpoints" / "latest.json").read_text())["run_id"]

    assert client.get_model_version_by_alias("tickercast-tft", "champion").version == champion.version
    (new_version,) = client.search_model_versions(f"name='tickercast-tft' and run_id='{new_run_id}'")
    assert new_version.tags["promotion.promoted"] == "false"
    assert new_version.tags["promotion.previous_champion"] == str(champion.version)
    # Judged on the backtest: both walked forward over the new run's held-out window, calibrated
    # online, scored against the random walk on the same rows.
    metrics = client.get_run(new_run_id).data.metrics
    candidate = (metrics["gate_candidate_scaled_crps"], metrics["gate_candidate_mae_vs_naive"])
    champion_figures = (metrics["gate_champion_scaled_crps"], metrics["gate_champion_mae_vs_naive"])
    assert all(math.isfinite(v) and v > 0 for v in (*candidate, *champion_figures))
    assert (
        candidate[0] > champion_figures[0] * (1 + SCALED_CRPS_TOLERANCE)
        or candidate[1] > champion_figures[1] + MAE_VS_NAIVE_TOLERANCE
    )
    reason = new_version.tags["promotion.reason"]
    assert (
        f"scaled CRPS {candidate[0]:.4f} vs champion v{champion.version}'s {champion_figures[0]:.4f}"
        in reason
    )
    assert f"MAE vs naive {candidate[1]:.3f} vs {champion_figures[1]:.3f}" in reason
    assert reason.endswith("champion kept")
