"""GET /backtest and its plots: the latest backtest's leaderboard, read from reports/backtest/latest.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import Trained, assert_error, copy_data, settings_for
from tickercast.serve.app import create_app

RUN = "20250102-101500"
HORIZONS = (1, 3)
# (model, scaled CRPS at h=1, scaled CRPS at h=3): the ranks differ between the horizons.
SCORES = (("tft", 0.61, 0.66), ("tft_raw", 0.70, 0.74), ("naive", 0.60, 0.65), ("drift", 0.62, 0.64))


def _rows() -> list[dict[str, Any]]:
    rows = []
    for i, h in enumerate(HORIZONS):
        ranked = sorted(SCORES, key=lambda s: s[1 + i])
        for rank, (model, *crps) in enumerate(ranked, start=1):
            rows.append(
                {
                    "model": model,
                    "horizon": h,
                    "rank": rank,
                    "champion": model == "tft",
                    "n": 45,
                    "mae": 1.5,
                    "mae_vs_naive": 1.0 if model == "naive" else 0.99,
                    "mae_vs_naive_lo": 1.0 if model == "naive" else 0.97,
                    "mae_vs_naive_hi": 1.0 if model == "naive" else 1.01,
                    "mase": 1.01,
                    "pinball": 0.005,
                    "scaled_crps": crps[i],
                    "coverage_80": 0.79 if model == "tft" else 0.55,
                    "width_80": 0.05,
                    "direction_accuracy": None,  # a NaN in the report becomes null
                }
            )
    # The file need not be ordered: the service ranks.
    return rows[::-1]


PLOTS = ("calibration.png", "cone.png")


def write_backtest(root: Path, run: str = RUN, plots: tuple[str, ...] = PLOTS) -> Path:
    """Write a backtest run folder with real PNGs and a ``latest.json`` pointing to it, as the report does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backtest = root / "reports" / "backtest"
    run_dir = backtest / run
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in plots:
        plt.imsave(run_dir / name, np.linspace(0, 1, 64).reshape(8, 8))
    (run_dir / "leaderboard.json").write_text(json.dumps(_rows()))
    latest = {
        "format": 1,
        "run": run,
        "created_at": "2025-01-02T10:15:00+00:00",
        "data_version": "abc123",
        "horizon": 3,
        "horizons": [1, 2, 3],
        "origins": {"count": 15, "first": "2024-10-01", "last": "2024-12-20", "step": 5},
        "models": ["tft", "tft_raw", "naive", "drift"],
        "subject": "tft",
        "champion": "tft",
        "skill": {"1": "At 1 trading day, tft has no measurable skill over the random walk.", "3": "At 3."},
        "report": "report.md",
        "plots": [{"name": name, "title": f"the {name} plot"} for name in plots],
        "context": {"data version": "abc123"},
        "leaderboard": _rows(),
    }
    (backtest / "latest.json").write_text(json.dumps(latest))
    return run_dir


@pytest.fixture
def app_on(trained: Trained, tmp_path: Path, running):
    """An app on a fresh data root (the trained curated data, no reports); returns (client, root)."""
    root = copy_data(trained, tmp_path / "data")
    client: TestClient = running(create_app(settings_for(root, model_dir=trained.bundle)))
    return client, root


def test_without_a_backtest_the_endpoint_says_how_to_make_one(app_on) -> None:
    client, _ = app_on
    assert_error(client.get("/backtest"), 404, "no backtest has run", "tickercast backtest")
    assert_error(client.get("/backtest/plots/calibration.png"), 404, "no backtest has run")


def test_the_latest_leaderboard_is_ranked_per_horizon_with_the_champion_marked(app_on) -> None:
    client, root = app_on
    write_backtest(root)
    response = client.get("/backtest")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run"] == RUN and body["created_at"].startswith("2025-01-02T10:15:00")
    assert body["origins"] == {"count": 15, "first": "2024-10-01", "last": "2024-12-20", "step": 5}
    assert body["champion"] == "tft" and body["subject"] == "tft" and body["horizon"] == 3
    assert [board["horizon"] for board in body["horizons"]] == [1, 3]
    for i, board in enumerate(body["horizons"]):
        expected = [model for model, *_ in sorted(SCORES, key=lambda s: s[1 + i])]
        assert [row["model"] for row in board["rows"]] == expected
        assert [row["rank"] for row in board["rows"]] == [1, 2, 3, 4]
        crps = [row["scaled_crps"] for row in board["rows"]]
        assert crps == sorted(crps)
        assert [row["model"] for row in board["rows"] if row["champion"]] == ["tft"]
        assert all(row["direction_accuracy"] is None for row in board["rows"])
    assert body["horizons"][0]["skill"].startswith("At 1 trading day, tft has no measurable skill")
    assert body["plots"] == [
        {"name": name, "title": f"the {name} plot", "url": f"/backtest/plots/{name}"} for name in PLOTS
    ]


def test_the_plots_of_the_latest_run_are_served_and_nothing_else(app_on) -> None:
    client, root = app_on
    run_dir = write_backtest(root)
    png = client.get("/backtest/plots/calibration.png")
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png.content == (run_dir / "calibration.png").read_bytes()
    # A plot name the report may write, but this run does not list.
    assert_error(client.get("/backtest/plots/pit.png"), 404, "no plot 'pit.png'", "calibration.png, cone.png")
    # Files of the run that are not plots, and paths out of the folder, never match the pattern.
    for name in ("leaderboard.json", "report.md", "..%2Flatest.json", "cone.png.bak", "x.png"):
        response = client.get(f"/backtest/plots/{name}")
        assert response.status_code in (404, 422), (name, response.status_code)
        assert response.headers["content-type"].startswith("application/json"), name
    # A listed plot whose file went missing says so.
    (run_dir / "cone.png").unlink()
    assert_error(client.get("/backtest/plots/cone.png"), 404, "file is gone")


def test_a_newer_run_replaces_the_older_at_once(app_on) -> None:
    client, root = app_on
    write_backtest(root)
    assert client.get("/backtest").json()["run"] == RUN
    write_backtest(root, run="20250109-090000", plots=("pit.png",))
    body = client.get("/backtest").json()
    assert body["run"] == "20250109-090000"
    assert [p["name"] for p in body["plots"]] == ["pit.png"]
    assert client.get("/backtest/plots/pit.png").status_code == 200
    assert client.get("/backtest/plots/calibration.png").status_code == 404


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "malformed"),
        (json.dumps({"format": 1, "run": "../../etc", "leaderboard": []}), "malformed"),
        ("FORMAT2", "format 2"),
    ],
)
def test_an_unreadable_summary_is_a_clear_404(app_on, text: str, fragment: str) -> None:
    client, root = app_on
    write_backtest(root)
    latest = root / "reports" / "backtest" / "latest.json"
    if text == "FORMAT2":
        text = json.dumps({**json.loads(latest.read_text()), "format": 2})
    latest.write_text(text)
    assert_error(client.get("/backtest"), 404, fragment)
    assert_error(client.get("/backtest/plots/calibration.png"), 404, fragment)


def test_the_dashboard_has_a_track_record_panel(app_on) -> None:
    client, _ = app_on
    page = client.get("/").text
    assert 'id="backtest-panel"' in page and "Track record in the backtest" in page
    assert "/backtest" in client.get("/static/app.js").text
