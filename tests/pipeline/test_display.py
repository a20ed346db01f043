"""The pipeline's one-line summaries."""

from __future__ import annotations

from tickercast.pipeline.display import metrics_line


def test_metrics_line_gives_the_served_bands_coverage_beside_the_raw_one() -> None:
    line = metrics_line({"mae": 1.1, "naive_mae": 1.0, "coverage_p10_p90": 0.59, "coverage_calibrated": 0.8})
    assert line == "MAE 1.1000 vs naive 1.0000 (+10.0%), P10–P90 coverage 59% raw, 80% calibrated"
    # Runs from before calibration existed say only what they measured.
    assert metrics_line({"mae": 1.0, "coverage_p10_p90": 0.8}) == "MAE 1.0000, P10–P90 coverage 80%"
