"""Evaluation metrics on hand-made forecasts, and the `evaluate` command on a trained model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.factories import PYTHON, REPO, tickercast_env
from tickercast.train.evaluate import common_mae, compute_metrics, pinball_loss

QUANTILES = (0.1, 0.5, 0.9)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["A", "A", "B", "B"],
            "date": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-02", "2024-01-03"]).date,
            "as_of": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-02"]).date,
            "last_close": [100.0, 100.0, 50.0, 50.0],
            "actual": [102.0, 99.0, 50.0, 52.0],
            "p10": [98.0, 97.0, 49.0, 49.0],
            "p50": [101.0, 100.0, 50.0, 50.5],
            "p90": [103.0, 102.0, 51.0, 51.0],
        }
    )


def test_point_metrics_against_hand_computed_values() -> None:
    m = compute_metrics(_frame(), QUANTILES)
    # Errors of P50: -1, +1, 0, -1.5 ; of naive: -2, +1, 0, -2.
    assert m["mae"] == pytest.approx((1 + 1 + 0 + 1.5) / 4)
    assert m["rmse"] == pytest.approx(((1 + 1 + 0 + 2.25) / 4) ** 0.5)
    assert m["mape"] == pytest.approx(100 * (1 / 102 + 1 / 99 + 0 + 1.5 / 52) / 4)
    assert m["naive_mae"] == pytest.approx((2 + 1 + 0 + 2) / 4)
    assert m["skill_vs_naive"] == pytest.approx(1 - 3.5 / 5)
    # Inside [P10, P90]: 102 in [98,103], 99 in [97,102], 50 in [49,51], 52 not in [49,51].
    assert m["coverage_p10_p90"] == pytest.approx(0.75)
    assert "oracle_mae" not in m


def test_pinball_loss_weights_misses_by_quantile() -> None:
    frame = pd.DataFrame({"actual": [10.0], "p10": [12.0], "p50": [10.0], "p90": [9.0]})
    # q=0.1 over-forecast by 2 -> 0.9*2 ; q=0.5 exact -> 0 ; q=0.9 under-forecast by 1 -> 0.9*1.
    assert pinball_loss(frame, QUANTILES) == pytest.approx((1.8 + 0 + 0.9) / 3)


def test_oracle_metrics_when_given() -> None:
    frame = _frame()
    oracle = frame[["symbol", "as_of"]].assign(oracle=frame["actual"].to_numpy())
    m = compute_metrics(frame, QUANTILES, oracle)
    assert m["oracle_mae"] == 0.0


def test_gate_compares_on_shared_samples_only() -> None:
    a = _frame()
    b = _frame().iloc[:2].assign(p50=[102.0, 99.0])
    mae_a, mae_b, n = common_mae(a, b)
    assert n == 2 and mae_a == pytest.approx(1.0) and mae_b == 0.0


@pytest.mark.slow
def test_evaluate_command_reproduces_the_training_figures(trained: dict) -> None:
    root: Path = trained["root"]
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "tickercast",
            "evaluate",
            "--data",
            str(root),
            "--model-uri",
            "models:/tickercast-tft/1",
        ],
        cwd=REPO,
        env=tickercast_env(root),
        capture_output=True,
        text=True,
        check=True,
    )
    client = MlflowClient(trained["tracking_uri"])
    trained_mae = client.get_run(trained["run_id"]).data.metrics["test_mae"]
    assert f"test MAE {trained_mae:.4f}" in " ".join(result.stderr.split())
    runs = client.search_runs(
        [client.get_experiment_by_name("tickercast").experiment_id], "tags.`tickercast.kind` = 'evaluate'"
    )
    assert runs and runs[0].data.metrics["test_mae"] == pytest.approx(trained_mae, rel=1e-9)
    assert (root / "reports" / runs[0].info.run_id / "report.md").is_file()


@pytest.mark.slow
def test_evaluate_without_a_model_is_a_clear_error(tmp_path: Path, trained: dict) -> None:
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "tickercast",
            "evaluate",
            "--data",
            str(trained["root"]),
            "--model-uri",
            "models:/nope@champion",
        ],
        cwd=REPO,
        env=tickercast_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "error: no registered model at models:/nope@champion" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
