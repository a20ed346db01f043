"""MLflow tracking, the registry and the promotion gate."""

from __future__ import annotations

import json
import math

import pytest
from mlflow import MlflowClient

from tests.factories import run_train, write_params
from tickercast.train.tracking import champion_version, decide_promotion, flatten


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


def test_flatten_nests_keys_with_dots() -> None:
    assert flatten({"model": {"hidden_size": 8}, "x": 1}) == {"model.hidden_size": "8", "x": "1"}


@pytest.mark.slow
def test_run_records_params_data_version_commit_losses_and_artifacts(trained: dict) -> None:
    client = MlflowClient(trained["tracking_uri"])
    run = client.get_run(trained["run_id"])
    manifest = json.loads((trained["root"] / "curated" / "manifest.json").read_text())
    assert run.data.params["model.hidden_size"] == "8"
    assert run.data.params["data.data_version"] == manifest["data_version"]
    assert run.data.tags["data_version"] == manifest["data_version"]
    assert len(run.data.tags.get("mlflow.source.git.commit", "")) in (0, 40)
    history = client.get_metric_history(trained["run_id"], "train_loss")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 2
    assert len(client.get_metric_history(trained["run_id"], "val_loss")) == len(history)
    top = {f.path for f in client.list_artifacts(trained["run_id"])}
    assert {"bundle", "report", "data", "pyfunc"} <= top
    assert {f.path for f in client.list_artifacts(trained["run_id"], "report")} >= {
        "report/report.md",
        "report/forecast_vs_actual.png",
        "report/variable_importance.png",
    }
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == (trained["root"] / "mlartifacts").resolve().as_uri()


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
    metrics = client.get_run(new_run_id).data.metrics
    assert metrics["gate_candidate_mae"] > metrics["gate_champion_mae"]
    # The champion was re-evaluated on the new run's window: its figure matches its own test MAE
    # (same data, same window here).
    assert metrics["gate_champion_mae"] == pytest.approx(float(champion.tags["test_mae"]), rel=1e-4)
