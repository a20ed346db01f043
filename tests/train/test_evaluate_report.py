"""The evaluation report's calibration section and its coverage-by-level plot, on hand-made inputs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from tickercast.model.calibration import apply_calibration, fit_calibration
from tickercast.train.evaluate import COVERAGE_PLOT, Evaluation, compute_metrics, write_report

QUANTILES = (0.1, 0.5, 0.9)
SUMMARY = {
    "1": {
        "shrink": 0.0,
        "coverage_raw": 0.6,
        "coverage_calibrated": 0.8,
        "mae_vs_naive": 1.0,
        "n": 225,
        "skill": "no measurable skill over the random walk at 1 day (shrink 0.00)",
    },
    "5": {
        "shrink": 0.35,
        "coverage_raw": 0.55,
        "coverage_calibrated": 0.81,
        "mae_vs_naive": 0.97,
        "n": 221,
        "skill": "median error 3.0% below the random walk at 5 days (shrink 0.35)",
    },
}


def _evaluation() -> Evaluation:
    predictions = pd.DataFrame(
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
    return Evaluation(metrics=compute_metrics(predictions, QUANTILES), predictions=predictions)


def _records(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Walk-forward records at h = 1 and 5 whose raw band is too narrow (it covers about 40%)."""
    rng = np.random.default_rng(seed)
    rows = []
    start = dt.date(2024, 1, 1)
    for h in (1, 5):
        sigma = 0.01 * np.sqrt(h)
        actual = rng.normal(0, sigma, n)
        rows.append(
            pd.DataFrame(
                {
                    "model": "tft",
                    "symbol": "A",
                    "origin": [start + dt.timedelta(days=i) for i in range(n)],
                    "horizon": h,
                    "q10": -0.4 * sigma,
                    "q50": 0.0,
                    "q90": 0.4 * sigma,
                    "vol": 0.01,
                    "actual": actual,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_the_report_states_shrink_coverage_and_skill_per_horizon(tmp_path: Path) -> None:
    records = _records()
    calibrated = apply_calibration(records, fit_calibration(records))
    report = write_report(tmp_path, _evaluation(), {"run id": "r1"}, calibration=SUMMARY, records=calibrated)
    text = report.read_text()
    section = text.split("## Calibration and stated skill", 1)[1]
    assert "| 1 | 0.00 | 60.0% | 80.0% | 1.000 | 225 | no measurable skill" in section
    assert "| 5 | 0.35 | 55.0% | 81.0% | 0.970 | 221 | median error 3.0% below" in section
    skill = "**Skill:** No measurable skill over the random walk at 1 day (shrink 0.00); median error 3.0%"
    assert skill in section
    assert (tmp_path / COVERAGE_PLOT).read_bytes()[:4] == b"\x89PNG"
    assert f"]({COVERAGE_PLOT})" in section


def test_without_a_calibration_the_report_says_so_and_draws_no_coverage_plot(tmp_path: Path) -> None:
    text = write_report(tmp_path, _evaluation(), {"run id": "r1"}).read_text()
    assert "The model has no calibration" in text
    assert not (tmp_path / COVERAGE_PLOT).exists()
    assert "forecast_vs_actual.png" in text
