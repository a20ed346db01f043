"""The Spark job end to end: features, manifest, idempotency, incremental runs, leakage, failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.preprocess.conftest import NOW, TODAY, RawData, tree_digest, write_raw
from tests.preprocess.reference import assert_features_close, reference_features
from tickercast import schema
from tickercast.errors import UserError
from tickercast.features.curate import curate
from tickercast.preprocess.quarantine import COUNT_NAMES

pytestmark = pytest.mark.spark

MANIFEST_KEYS = {
    "schema_version",
    "feature_spec",
    "run_id",
    "created_at",
    "mode",
    "data_version",
    "input_files",
    "counts",
    "counts_by_kind",
    "quarantine_reasons",
    "warnings",
    "columns",
    "index_symbols",
    "calendar",
    "symbols",
    "max_bad_fraction",
}


def _run(root: Path, **kwargs):
    from tickercast.config import load_settings
    from tickercast.preprocess.job import run_job

    settings = load_settings(None, {"data_root": root})
    return run_job(settings, today=TODAY, now=NOW, **kwargs), settings


def _curated(settings) -> pd.DataFrame:
    frame = pd.read_parquet(settings.features_dir)
    return frame.sort_values(["symbol", "date"]).reset_index(drop=True)


def test_every_indicator_matches_the_reference(full_run, raw_data: RawData) -> None:
    _, curated, _ = full_run
    expected = reference_features(raw_data.prices, raw_data.indices, raw_data.news)
    assert_features_close(curated, expected)


def test_spark_job_and_one_machine_curation_agree(full_run, raw_data: RawData) -> None:
    _, curated, _ = full_run
    local = curate(raw_data.prices, raw_data.indices, raw_data.news)
    assert_features_close(curated, local, rtol=1e-12)
    assert curated.dtypes.to_dict() == local.dtypes.to_dict()


def test_manifest_describes_the_published_dataset(full_run, raw_data: RawData) -> None:
    result, curated, root = full_run
    manifest = json.loads((root / "curated" / "manifest.json").read_text())
    assert manifest == result.manifest.as_json()
    assert set(manifest) == MANIFEST_KEYS
    assert set(manifest["counts"]) == {*COUNT_NAMES, "written"}
    assert {kind: set(c) for kind, c in manifest["counts_by_kind"].items()} == {
        kind: set(COUNT_NAMES) for kind in ("prices", "indices", "news")
    }
    assert manifest["schema_version"] == schema.SCHEMA_VERSION
    assert len(manifest["data_version"]) == 16
    counts = manifest["counts"]
    raw_rows = len(raw_data.prices) + len(raw_data.indices) + len(raw_data.news)
    assert counts["read"] == raw_rows
    assert counts["written"] == len(curated) == len(raw_data.prices)
    assert counts["quarantined"] == 0
    assert {f["path"] for f in manifest["input_files"]} == {
        f"{kind}/{name}" for kind in ("prices", "indices", "news") for name in ("a-early.csv", "b-late.csv")
    }
    for entry in manifest["input_files"]:
        assert entry["size"] == (root / "raw" / entry["path"]).stat().st_size
    per_symbol = curated.groupby("symbol")["date"].agg(["min", "max", "size"])
    assert manifest["symbols"] == {
        s: {"first_date": str(r["min"]), "last_date": str(r["max"]), "rows": int(r["size"])}
        for s, r in per_symbol.iterrows()
    }
    assert manifest["calendar"] == {
        "first_date": str(curated["date"].min()),
        "last_date": str(curated["date"].max()),
        "trading_dates": curated["date"].nunique(),
    }
    assert manifest["columns"] == list(curated.columns)
    copy = json.loads((root / "curated" / "features" / "_manifest.json").read_text())
    assert copy["data_version"] == manifest["data_version"]
    quarantine = pd.read_parquet(root / "quarantine")
    assert {"source_file", "record", "reason", "run_id"} <= set(quarantine.columns)
    assert quarantine.empty


def test_rerun_on_the_same_inputs_is_idempotent(full_run, copy_root) -> None:
    first, curated, root = full_run
    again, settings = _run(copy_root(root))
    assert again.manifest.data_version == first.manifest.data_version
    assert again.run_id != first.run_id
    pd.testing.assert_frame_equal(_curated(settings), curated)


def test_incremental_equals_full_and_features_never_see_the_future(
    full_run, raw_data: RawData, tmp_path: Path
) -> None:
    full, curated, _ = full_run
    root = tmp_path / "data"
    write_raw(root, raw_data, part="early")
    _, settings = _run(root)
    early_rows = _curated(settings)
    # Leakage: without any data after the split date's close, every row up to it is identical.
    known = curated[curated["date"] <= raw_data.split].reset_index(drop=True)
    pd.testing.assert_frame_equal(early_rows, known, check_exact=True)

    write_raw(root, raw_data, part="late")
    late, settings = _run(root)
    assert late.mode == "incremental"
    assert late.manifest.data_version == full.manifest.data_version
    pd.testing.assert_frame_equal(_curated(settings), curated, check_exact=True)


def test_an_unreadable_previous_manifest_means_a_full_run(full_run, copy_root) -> None:
    first, curated, source = full_run
    root = copy_root(source)
    garbage = b"\xff\xfe\x00 not a manifest \x9c"
    (root / "curated" / "manifest.json").write_bytes(garbage)
    again, settings = _run(root)
    assert (again.mode, again.mode_reason) == ("full", "the previous manifest cannot be read")
    assert again.manifest.data_version == first.manifest.data_version
    pd.testing.assert_frame_equal(_curated(settings), curated, check_exact=True)

    (root / "curated" / "manifest.json").write_bytes(garbage)
    forced, _ = _run(root, full=True)
    assert (forced.mode, forced.mode_reason) == ("full", "--full")
    assert forced.manifest.data_version == first.manifest.data_version


def test_too_many_bad_rows_publish_nothing(full_run, copy_root) -> None:
    _, _, source = full_run
    root = copy_root(source)
    before = (tree_digest(root / "curated"), tree_digest(root / "quarantine"))
    bad = "Date,Symbol,Open,High,Low,Close,Volume\n" + "not-a-date,ZZZ,1,2,0.5,1,10\n" * 200
    (root / "raw" / "prices" / "c-garbage.csv").write_text(bad)
    with pytest.raises(UserError, match=r"200 of .* input rows .* are bad.*nothing published"):
        _run(root)
    assert (tree_digest(root / "curated"), tree_digest(root / "quarantine")) == before
    assert not list((root / "curated").glob(".staging-*"))


def test_a_price_too_large_to_sum_exactly_publishes_nothing(full_run, copy_root) -> None:
    _, _, source = full_run
    root = copy_root(source)
    before = (tree_digest(root / "curated"), tree_digest(root / "quarantine"))
    rows = "".join(f"2020-01-0{day},HUGE,1e15,1e15,1e15,1e15,10\n" for day in (2, 3, 6))
    (root / "raw" / "prices" / "c-huge.csv").write_text("Date,Symbol,Open,High,Low,Close,Volume\n" + rows)
    with pytest.raises(UserError, match=r"too large to sum exactly.*nothing published"):
        _run(root)
    assert (tree_digest(root / "curated"), tree_digest(root / "quarantine")) == before


def test_missing_prices_is_a_one_line_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tickercast", "preprocess", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no raw prices" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
