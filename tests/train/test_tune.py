"""Hyper-parameter tuning: Optuna study in SQLite, nested MLflow runs, a params file train accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from tests.factories import PYTHON, REPO, make_curated, tickercast_env
from tickercast.config import load_settings
from tickercast.train.fit import resolve_params

pytestmark = pytest.mark.slow


def test_tune_writes_best_params_and_logs_nested_trials(tmp_path: Path) -> None:
    root = make_curated(tmp_path / "data", tickers=3, days=300, seed=9)
    cmd = [PYTHON, "-m", "tickercast", "tune", "--data", str(root), "--trials", "1", "--max-epochs", "1"]
    env = tickercast_env(root)
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)

    best = root / "tuning" / "best_params.yaml"
    params = resolve_params(load_settings(overrides={"train": {"params_file": best}}))
    storage = f"sqlite:///{root / 'tuning' / 'optuna.db'}"
    study = optuna.load_study(study_name="tickercast-tft", storage=storage)
    assert len(study.trials) == 1
    assert params.hidden_size == study.best_params["hidden_size"]
    assert params.learning_rate == pytest.approx(study.best_params["learning_rate"])

    client = MlflowClient(f"sqlite:///{(root / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("tickercast").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`tickercast.kind` = 'tune'")
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 1
    assert all("val_loss" in c.data.metrics for c in children)
    assert parent.data.metrics["best_val_loss"] == pytest.approx(study.best_value)

    # Rerunning continues the same study (SQLite storage).
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    assert len(optuna.load_study(study_name="tickercast-tft", storage=storage).trials) == 2
