"""The loop that reads the stages table: when a stage is skipped, run, and what it records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tickercast.config import load_settings
from tickercast.errors import UserError
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


def test_the_table_runs_data_preprocess_train_evaluate_then_serve() -> None:
    assert stages.STAGES == ("data", "preprocess", "train", "evaluate", "serve")


@pytest.mark.parametrize("force", [False, True])
def test_a_data_root_never_mixes_two_sources(tmp_path: Path, force: bool) -> None:
    ctx = _context(tmp_path, force)
    ctx.state = {"data": {"request": {"source": "sample"}, "files": ["raw/prices/a.csv"]}}
    ctx.source = stages.Source.synth
    ctx.synth = {"tickers": 3, "days": 10, "seed": 1}
    data = next(stage for stage in stages.PIPELINE if stage.name == "data")
    with pytest.raises(UserError, match="already holds raw data written by sample; use another --data"):
        stages.run_stage(ctx, data, lambda line: None)
