"""MLflow tracking: run parameters, tags, per-epoch losses and artifacts."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from tickercast.train.tracking import flatten


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
