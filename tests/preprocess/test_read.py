"""Listing the raw files (the distributed read itself is exercised by test_job)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickercast.preprocess.read import files_of, list_inputs, staging_dir


def test_list_inputs_skips_hidden_files_and_sorts_by_kind_and_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("prices/b.csv", "prices/a.csv", "prices/_hidden.csv", "prices/.dot.csv", "news/n.csv"):
        path = tmp_path / "raw" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("Date,Symbol\n")
    (tmp_path / "raw" / "prices" / "notes.txt").write_text("not a csv")
    inputs = list_inputs(tmp_path)
    assert "_hidden.csv" in caplog.text and ".dot.csv" in caplog.text
    assert [f.name for f in inputs] == ["prices/a.csv", "prices/b.csv", "news/n.csv"]
    assert inputs[0].as_manifest() == {
        "path": "prices/a.csv",
        "kind": "prices",
        "size": 12,
        "mtime_ns": inputs[0].mtime_ns,
    }
    assert [f.name for f in files_of(list(reversed(inputs)), "prices")] == ["prices/a.csv", "prices/b.csv"]


def test_staging_sits_under_the_curated_folder(tmp_path: Path) -> None:
    assert staging_dir(tmp_path / "curated", "run1") == tmp_path / "curated" / ".staging-run1"
