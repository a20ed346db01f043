"""The backtest's report: calibration and coverage plots, the cone, report.md, MLflow and latest.json."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.factories import make_curated
from tickercast.config import load_settings
from tickercast.serve import leaderboard as served
from tickercast.train import backtest_report as report
from tickercast.train import baselines
from tickercast.train.backtest import BacktestResult, run_backtest

RUN = {"origins": 12, "step": 3, "horizon": 3}
PLOTS = {"scaled_crps.png", "calibration.png", "pit.png", "coverage_h1.png", "coverage_h3.png", "cone.png"}


def narrow_tft(curated: pd.DataFrame, origins: Sequence[dt.date], horizon: int) -> pd.DataFrame:
    """A stand-in for the TFT: the drift baseline with half its band, so the calibration has work to do."""
    rows = baselines.drift(curated, origins, horizon)
    mid = rows["q50"]
    return rows.assign(model="tft", q10=mid + 0.5 * (rows["q10"] - mid), q90=mid + 0.5 * (rows["q90"] - mid))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_curated(tmp_path_factory.mktemp("backtest-report"), tickers=3, days=330, seed=6, kappa=0.0)


@pytest.fixture(scope="module")
def result(root: Path) -> BacktestResult:
    settings = load_settings(overrides={"data_root": root})
    return run_backtest(settings, models="naive,drift", extra_models={"tft": narrow_tft}, **RUN)


def test_every_plot_is_a_png_embedded_in_the_report_and_an_artifact_of_the_run(
    root: Path, result: BacktestResult
) -> None:
    from mlflow import MlflowClient

    run_dir = result.run_dir
    for name in PLOTS:
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG", name
    text = (run_dir / "report.md").read_text()
    for name in PLOTS:
        assert f"![{name.removesuffix('.png')}]({name})" in text, name
        assert f"### {report.plot_title(name)}" in text
    client = MlflowClient(tracking_uri=load_settings(overrides={"data_root": root}).tracking_uri)
    artifacts = {f.path for f in client.list_artifacts(result.run_id, "backtest")}
    assert {f"backtest/{name}" for name in PLOTS} <= artifacts


def test_coverage_by_level_at_80_percent_is_the_leaderboards_band_coverage(result: BacktestResult) -> None:
    """The calibration plot scores the rows and bands the leaderboard scores (tft: its calibrated band)."""
    table = report.calibration_table(result.records, [1, 3])
    assert set(table["model"]) == {"tft", "tft_raw", "naive", "drift"}
    assert set(table["horizon"]) == {1, 3}
    at_80 = table[np.isclose(table["level"], 0.8)].set_index(["model", "horizon"])["coverage"]
    board = result.leaderboard.set_index(["model", "horizon"])
    for (model, horizon), coverage in at_80.items():
        assert coverage == pytest.approx(board.loc[(model, horizon), "coverage_80"]), (model, horizon)
    # Calibration widens the halved band: the calibrated tft covers more than its raw self.
    assert at_80[("tft", 1)] > at_80[("tft_raw", 1)]
    # Realised coverage grows with the nominal level.
    for _, part in table.groupby(["model", "horizon"]):
        assert part.sort_values("level")["coverage"].is_monotonic_increasing


def test_the_report_states_calibration_per_horizon(result: BacktestResult) -> None:
    text = (result.run_dir / "report.md").read_text()
    section = text.split("## Calibration", 1)[1].split("## Per ticker", 1)[0]
    assert "**Horizon 1 trading day**" in section and "**Horizon 3 trading days**" in section
    table = report.calibration_table(result.records, [1])
    tft_80 = float(table[(table["model"] == "tft") & np.isclose(table["level"], 0.8)]["coverage"].iloc[0])
    assert "| tft | " in section and f"{tft_80:.0%}" in section


def test_latest_json_points_to_the_run_and_is_what_the_service_reads(
    root: Path, result: BacktestResult
) -> None:
    latest_file = root / "reports" / "backtest" / report.LATEST
    payload = json.loads(latest_file.read_text())
    assert payload["run"] == result.run_dir.name
    assert payload["leaderboard"] == json.loads((result.run_dir / "leaderboard.json").read_text())
    assert payload["origins"] == {
        "count": RUN["origins"],
        "first": result.origins[0].isoformat(),
        "last": result.origins[-1].isoformat(),
        "step": RUN["step"],
    }
    assert {p["name"] for p in payload["plots"]} == PLOTS
    assert payload["subject"] == "tft" and payload["champion"] is None
    assert set(payload["skill"]) == {"1", "2", "3"}

    # The service's reader takes it, and would serve every plot the report wrote.
    latest = served.read_latest(root / "reports")
    board = served.leaderboard(latest)
    assert [h.horizon for h in board.horizons] == [1, 2, 3]
    assert {p.name for p in board.plots} == PLOTS
    for name in PLOTS:
        assert served.plot_file(root / "reports", name) == result.run_dir / name


def test_a_later_run_moves_latest_json(root: Path, result: BacktestResult) -> None:
    settings = load_settings(overrides={"data_root": root})
    later = run_backtest(settings, models="naive", track=False, **{**RUN, "origins": 3})
    latest = json.loads((root / "reports" / "backtest" / report.LATEST).read_text())
    assert later.run_dir != result.run_dir and latest["run"] == later.run_dir.name
    assert {row["model"] for row in latest["leaderboard"]} == {"naive"}
    # Only naive ran: no subject, so no PIT histogram; the other plots are there.
    assert "pit.png" not in {p["name"] for p in latest["plots"]}
    assert {"calibration.png", "cone.png", "coverage_h1.png"} <= {p["name"] for p in latest["plots"]}


def test_cone_origin_is_the_last_with_every_horizon_settled() -> None:
    day = [dt.date(2024, 1, d) for d in (2, 3, 4)]
    records = pd.DataFrame(
        {
            "model": "tft",
            "origin": [day[0], day[0], day[1], day[1], day[2], day[2]],
            "horizon": [1, 2, 1, 2, 1, 2],
            "actual": [0.01, 0.02, 0.0, 0.01, 0.03, np.nan],
        }
    )
    assert report.cone_origin(records) == day[1]
    assert report.cone_origin(records.assign(actual=np.nan)) is None


def test_origin_step_counts_trading_days_not_calendar_days() -> None:
    dates = [dt.date(2024, 1, d) for d in (2, 3, 4, 5, 8, 9, 10)]  # a weekend between the 5th and 8th
    history = pd.DataFrame({"symbol": "A", "date": dates, "close": 1.0})
    assert report.origin_step([dates[1], dates[3], dates[5]], history) == 2
    assert report.origin_step([dates[1]], history) is None
    assert report.origin_step([dates[0], dates[1], dates[4]], history) is None  # uneven


def test_plots_with_nothing_settled_are_left_out(tmp_path: Path) -> None:
    records = pd.DataFrame(
        {
            "model": ["naive"],
            "symbol": ["A"],
            "origin": [dt.date(2024, 1, 2)],
            "horizon": [1],
            "forecast_for": [dt.date(2024, 1, 3)],
            "last_close": [10.0],
            "q10": [-0.01],
            "q50": [0.0],
            "q90": [0.01],
            "vol": [0.01],
            "actual": [np.nan],
        }
    )
    history = pd.DataFrame({"symbol": "A", "date": [dt.date(2024, 1, 2)], "close": [10.0]})
    assert report.plot_coverage(tmp_path / "c.png", records, 1) is None
    assert report.plot_cone(tmp_path / "cone.png", records, history, ["naive"]) is None
    assert report.plot_calibration(tmp_path / "cal.png", report.calibration_table(records, [1]), None) is None
    assert report.plot_pit(tmp_path / "pit.png", records, [1], "naive") is None
    assert not list(tmp_path.iterdir())
