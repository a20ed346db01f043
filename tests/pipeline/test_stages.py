"""The loop that reads the stages table: when a stage is skipped, run, and what it records."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.factories import write_curated
from tickercast.config import load_settings
from tickercast.errors import UserError
from tickercast.manifest import find_manifest
from tickercast.pipeline import stages
from tickercast.pipeline.runner import StageFailed
from tickercast.pipeline.state import load_state


def _context(root: Path, force: bool = False) -> stages.Context:
    return stages.Context(
        settings=load_settings(overrides={"data_root": root}),
        source=stages.Source.sample,
        devices=1,
        force=force,
        synth={},
        cli_prefix=[],
        state=load_state(root),
    )


def _stage(inputs: dict[str, Any], output: dict[str, Any], present: bool = True) -> stages.Stage:
    """A stage with no command: it only records ``output``, so the loop is tested without a process."""

    def records(ctx: stages.Context, started: float) -> dict[str, Any]:
        if output.get("fail"):
            raise StageFailed("fake failed: nothing published")
        return dict(output)

    return stages.Stage(
        name="fake",
        fingerprint=lambda ctx, report: dict(inputs),
        present=lambda ctx, previous: present,
        command=lambda ctx: None,
        records=records,
        skipped=lambda ctx, previous: f"skipped v{previous['version']}",
        ran=lambda ctx, record: f"ran v{record['version']}",
    )


def _run(root: Path, stage: stages.Stage, force: bool = False) -> stages.StageRun:
    return stages.run_stage(_context(root, force), stage, lambda line: None)


def test_a_stage_is_skipped_only_while_its_inputs_and_output_are_unchanged(tmp_path: Path) -> None:
    first = _run(tmp_path, _stage({"inputs": "a"}, {"version": 1}))
    assert (first.status, first.detail) == ("ran", "ran v1")
    recorded = load_state(tmp_path)["fake"]
    assert recorded["inputs"] == "a" and recorded["version"] == 1 and "completed_at" in recorded

    assert _run(tmp_path, _stage({"inputs": "a"}, {"version": 2})).detail == "skipped v1"
    assert _run(tmp_path, _stage({"inputs": "a"}, {"version": 2}), force=True).detail == "ran v2"
    assert _run(tmp_path, _stage({"inputs": "b"}, {"version": 3})).detail == "ran v3"
    assert _run(tmp_path, _stage({"inputs": "b"}, {"version": 4}, present=False)).detail == "ran v4"
    assert load_state(tmp_path)["fake"]["version"] == 4


def test_a_failed_stage_keeps_its_last_record(tmp_path: Path) -> None:
    _run(tmp_path, _stage({"inputs": "a"}, {"version": 1}))
    before = load_state(tmp_path)["fake"]
    with pytest.raises(StageFailed, match="fake failed"):
        _run(tmp_path, _stage({"inputs": "b"}, {"fail": True}))
    assert load_state(tmp_path)["fake"] == before


def test_the_table_runs_data_preprocess_train_evaluate_backtest_then_serve() -> None:
    assert stages.STAGES == ("data", "preprocess", "train", "evaluate", "backtest", "serve")


@pytest.mark.parametrize("force", [False, True])
def test_a_data_root_never_mixes_two_sources(tmp_path: Path, force: bool) -> None:
    ctx = _context(tmp_path, force)
    ctx.state = {"data": {"request": {"source": "sample"}, "files": ["raw/prices/a.csv"]}}
    ctx.source = stages.Source.synth
    ctx.synth = {"tickers": 3, "days": 10, "seed": 1}
    data = next(stage for stage in stages.PIPELINE if stage.name == "data")
    with pytest.raises(UserError, match="already holds raw data written by sample; use another --data"):
        stages.run_stage(ctx, data, lambda line: None)


def _leaderboard(root: Path, run: str, tft: tuple[float, float], horizons: int = 5) -> Path:
    """Write a backtest run's leaderboard.json as ``tickercast backtest`` does (tft and naive rows)."""
    rows = []
    for h in range(1, horizons + 1):
        rows.append({"model": "tft", "horizon": h, "rank": 1, "scaled_crps": tft[0] + h / 1000})
        rows[-1]["mae_vs_naive"] = tft[1]
        rows.append({"model": "naive", "horizon": h, "rank": 2, "scaled_crps": 0.7, "mae_vs_naive": 1.0})
    path = root / "reports" / "backtest" / run / "leaderboard.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


def test_the_backtest_stage_records_the_champions_rows_and_skips_while_nothing_changed(
    tmp_path: Path,
) -> None:
    write_curated(tmp_path, pd.DataFrame({"symbol": ["A"], "date": ["2024-01-02"]}), data_version="d1")
    row = next(stage for stage in stages.PIPELINE if stage.name == "backtest")
    assert row.command(_context(tmp_path)) == [
        "backtest",
        "--data",
        str(tmp_path),
        "--models",
        "tft,naive,drift,auto_ets,lightgbm",
    ]
    # The command is what writes the leaderboard; here it was written just before.
    recorded = dataclasses.replace(row, command=lambda ctx: None)

    def run(champion: str, run_dir: str | None = None) -> stages.StageRun:
        ctx = _context(tmp_path)
        ctx.manifest = find_manifest(tmp_path / "curated" / "manifest.json")
        ctx.champion = (champion, f"run-{champion}")
        if run_dir:
            _leaderboard(tmp_path, run_dir, (0.6, 0.99))
        return stages.run_stage(ctx, recorded, lambda line: None)

    first = run("2", "20240102-000000")
    assert first.status == "ran"
    assert first.detail == (
        "champion v2: h1 sCRPS 0.601 (naive 0.700), MAE/naive 0.990; h5 sCRPS 0.605 (naive 0.700), "
        "MAE/naive 0.990"
    )
    saved = load_state(tmp_path)["backtest"]
    assert saved["leaderboard"] == "reports/backtest/20240102-000000/leaderboard.json"
    assert saved["data_version"] == "d1" and saved["model_version"] == "2"
    assert [r["horizon"] for r in saved["tft"]] == [1, 5]

    again = run("2")
    assert again.status == "skipped" and "already backtested on this data: h1 sCRPS 0.601" in again.detail
    # A new champion, or a leaderboard that went away, runs the backtest again.
    assert run("3", "20240103-000000").status == "ran"
    (tmp_path / load_state(tmp_path)["backtest"]["leaderboard"]).unlink()
    assert run("3", "20240104-000000").status == "ran"
    assert load_state(tmp_path)["backtest"]["leaderboard"].startswith("reports/backtest/20240104-000000")


def test_a_backtest_that_wrote_nothing_fails_and_keeps_the_last_record(tmp_path: Path) -> None:
    write_curated(tmp_path, pd.DataFrame({"symbol": ["A"], "date": ["2024-01-02"]}), data_version="d1")
    row = next(stage for stage in stages.PIPELINE if stage.name == "backtest")
    ctx = _context(tmp_path)
    ctx.manifest = find_manifest(tmp_path / "curated" / "manifest.json")
    ctx.champion = ("2", "run-2")
    with pytest.raises(StageFailed, match="wrote no leaderboard"):
        stages.run_stage(ctx, dataclasses.replace(row, command=lambda ctx: None), lambda line: None)
    assert "backtest" not in load_state(tmp_path)
